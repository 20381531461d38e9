//! `stack status`: what the stack looks like in AWS right now — each resource it owns,
//! instance counts of its Auto Scaling groups, target health per target group, the load
//! balancer's state and address.
//!
//! It starts from the engine's discovery ([`crate::engine::prepare`] with nothing
//! desired: no AMI lookup, no app build, so it works wherever the credentials can
//! read) and adds a few read calls: one `DescribeAutoScalingGroups` for all groups, one
//! `DescribeTargetHealth` per target group and one `DescribeTable` per table. It never
//! writes and never prints; [`crate::render`] turns the [`Status`] into text or JSON.
//! Whether AWS matches the stack file is `stack plan`'s question, not this one's.

use crate::aws::probe::Missing;
use crate::aws::{Clients, Context, Error};
use crate::engine::Prepared;
use crate::model::{Address, Kind, Live};
use crate::spec::Spec;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::Serialize;
use std::collections::BTreeMap;

/// Target health reads in flight at once.
const CONCURRENCY: usize = 5;

/// The live summary of a stack.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub stack: String,
    pub region: String,
    /// Whether AWS holds any resource of the stack.
    pub exists: bool,
    /// Every resource the stack owns, in address order.
    pub resources: Vec<Resource>,
    pub load_balancer: Option<LoadBalancer>,
    pub autoscaling_groups: Vec<Group>,
    pub target_groups: Vec<TargetHealth>,
    /// Services the endpoint does not implement: their resources are not shown.
    pub missing_services: Vec<Missing>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Resource {
    pub address: Address,
    pub id: String,
    /// A one-line state where AWS tells it cheaply (load balancer, groups, target
    /// groups, tables); `None` for the rest, which exist and have no state to speak of.
    pub state: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadBalancer {
    pub address: Address,
    pub state: String,
    pub dns_name: String,
    pub url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub address: Address,
    pub name: String,
    pub desired: i64,
    pub min: i64,
    pub max: i64,
    /// Instances in the `InService` lifecycle state.
    pub in_service: usize,
    /// Every instance the group holds, whatever its state.
    pub instances: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetHealth {
    pub address: Address,
    pub healthy: usize,
    pub unhealthy: usize,
    /// Registered, first health checks not yet passed.
    pub initial: usize,
    /// Draining, unused or unavailable.
    pub other: usize,
    pub total: usize,
}

/// Reads the status of the stack that `p` discovered. Only `p.live`, `p.clients` and
/// the missing services are used: the plan in `p` is not this command's business.
pub async fn read(spec: &Spec, p: &Prepared) -> Result<Status, Error> {
    let of = |k: Kind| p.live.values().filter(move |l| l.address.kind == k);
    let (groups, health, tables) = tokio::try_join!(
        groups(&p.clients, of(Kind::AutoScalingGroup).collect()),
        target_health(&p.clients, of(Kind::TargetGroup).collect()),
        tables(&p.clients, of(Kind::Table).collect()),
    )?;
    let load_balancer = of(Kind::LoadBalancer).next().map(|lb| {
        let dns_name = lb
            .extra
            .get(crate::resources::load_balancer::extra::DNS_NAME)
            .cloned()
            .unwrap_or_default();
        LoadBalancer {
            address: lb.address.clone(),
            state: lb
                .extra
                .get(crate::resources::load_balancer::extra::STATE)
                .cloned()
                .unwrap_or_default(),
            url: spec.load_balancer.url(&dns_name),
            dns_name,
        }
    });
    let mut state: BTreeMap<&Address, String> = BTreeMap::new();
    if let Some(lb) = &load_balancer {
        state.insert(&lb.address, lb.state.clone());
    }
    for g in &groups {
        state.insert(
            &g.address,
            format!("{}/{} in service", g.in_service, g.instances),
        );
    }
    for t in &health {
        state.insert(&t.address, format!("{}/{} healthy", t.healthy, t.total));
    }
    for (a, s) in &tables {
        state.insert(a, s.clone());
    }
    let resources = p
        .live
        .values()
        .map(|l| Resource {
            address: l.address.clone(),
            id: l.id.clone(),
            state: state.get(&l.address).cloned(),
        })
        .collect();
    Ok(Status {
        stack: spec.stack.clone(),
        region: p.clients.region.clone(),
        exists: !p.live.is_empty(),
        resources,
        load_balancer,
        autoscaling_groups: groups,
        target_groups: health,
        missing_services: p.plan.missing_services.clone(),
    })
}

/// Sizes and instance counts, one call per 50 groups.
async fn groups(c: &Clients, live: Vec<&Live>) -> Result<Vec<Group>, Error> {
    let by_name: BTreeMap<&str, &Live> = live.iter().map(|l| (l.id.as_str(), *l)).collect();
    let names: Vec<String> = by_name.keys().map(|n| n.to_string()).collect();
    let mut out = Vec::new();
    for chunk in names.chunks(50) {
        let mut pages = c
            .asg
            .describe_auto_scaling_groups()
            .set_auto_scaling_group_names(Some(chunk.to_vec()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for g in page
                .ctx("describing", &"Auto Scaling groups")?
                .auto_scaling_groups()
            {
                let name = g.auto_scaling_group_name().unwrap_or_default();
                let Some(l) = by_name.get(name) else {
                    continue;
                };
                let instances = g.instances();
                out.push(Group {
                    address: l.address.clone(),
                    name: name.to_string(),
                    desired: g.desired_capacity().unwrap_or_default().into(),
                    min: g.min_size().unwrap_or_default().into(),
                    max: g.max_size().unwrap_or_default().into(),
                    in_service: instances
                        .iter()
                        .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
                        .count(),
                    instances: instances.len(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(out)
}

/// Target health counts, one call per target group.
async fn target_health(c: &Clients, live: Vec<&Live>) -> Result<Vec<TargetHealth>, Error> {
    let mut out: Vec<TargetHealth> = stream::iter(live)
        .map(|l| async move {
            let r = c
                .elb
                .describe_target_health()
                .target_group_arn(&l.id)
                .send()
                .await
                .ctx("reading target health of", &l.address)?;
            let mut t = TargetHealth {
                address: l.address.clone(),
                healthy: 0,
                unhealthy: 0,
                initial: 0,
                other: 0,
                total: 0,
            };
            for d in r.target_health_descriptions() {
                t.total += 1;
                match d
                    .target_health()
                    .and_then(|h| h.state())
                    .map(|s| s.as_str())
                {
                    Some("healthy") => t.healthy += 1,
                    Some("unhealthy") => t.unhealthy += 1,
                    Some("initial") => t.initial += 1,
                    _ => t.other += 1,
                }
            }
            Ok::<_, Error>(t)
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    out.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(out)
}

/// Each table's status (`ACTIVE`, `UPDATING`…).
async fn tables(c: &Clients, live: Vec<&Live>) -> Result<Vec<(Address, String)>, Error> {
    let mut out = Vec::new();
    for l in live {
        let r = c
            .ddb
            .describe_table()
            .table_name(&l.id)
            .send()
            .await
            .ctx("describing", &l.address)?;
        let status = r
            .table()
            .and_then(|t| t.table_status())
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        out.push((l.address.clone(), status));
    }
    Ok(out)
}
