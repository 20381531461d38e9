//! One Auto Scaling group per service, across all subnets, registered with its target
//! group, health-checked by the load balancer. Creation waits until the instances are
//! in service and their targets healthy.
//!
//! Two attributes live in tags, because AWS's own value moves on its own:
//! `desired_capacity` is what the stack file last asked for (target tracking changes the
//! group's live number, and `up` must not fight it), and `launch_template_digest` says
//! which template content the fleet was rolled to.

use super::LiveMap;
use super::launch_template::LaunchTemplateAttrs;
use super::roll::{self, TemplateRef};
use super::subnet::SubnetAttrs;
use super::target_group::TargetGroupAttrs;
use super::{Created, Ctx, changed, launch_template, scaling_policy};
use crate::aws::{Clients, Context, Error, Patience, retry_when, wait_for};
use crate::desired::Build;
use crate::model::attr;
use crate::model::{
    Address, Desired, Kind, KindAttrs, Live, Ref, TAG_STACK, from_attrs, ids, owned_address,
    to_attrs,
};
use crate::spec::DeploySpec;
use crate::spec::ServiceSpec;
use aws_sdk_autoscaling::types::{AutoScalingGroup, Filter, LaunchTemplateSpecification, Tag};
use aws_sdk_elasticloadbalancingv2::types::TargetHealthDescription;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A group's attributes. `desired_capacity`, `launch_template_digest`, `deploy` and
/// `build` are kept in tags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutoScalingGroupAttrs {
    pub name: String,
    pub launch_template_id: Ref<LaunchTemplateAttrs>,
    /// The template content the fleet was rolled to.
    pub launch_template_digest: String,
    pub min_size: i64,
    pub max_size: i64,
    /// What the file last asked for (target tracking moves the live number).
    pub desired_capacity: i64,
    pub subnet_ids: Vec<Ref<SubnetAttrs>>,
    pub target_group_arns: Vec<Ref<TargetGroupAttrs>>,
    pub health_check_type: String,
    pub health_check_grace_period: i64,
    /// How a new template rolls the group ([`DeploySpec::render`]).
    pub deploy: String,
    /// The app build (artifact key) the fleet was rolled to; a stack that ships no app
    /// wants none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
}

impl KindAttrs for AutoScalingGroupAttrs {
    const KIND: Kind = Kind::AutoScalingGroup;
}

/// What discovery records beside the attributes (`Live::extra`), by key.
pub mod extra {
    /// Instances in service now.
    pub const INSTANCES_IN_SERVICE: &str = "instances_in_service";
    /// The capacity the group has now (target tracking moves it).
    pub const ACTUAL_DESIRED_CAPACITY: &str = "actual_desired_capacity";
    /// The template version the group launches.
    pub const LAUNCH_TEMPLATE_VERSION: &str = "launch_template_version";
    /// The app build before the last roll (`stack rollback` puts it back).
    pub const PREVIOUS_BUILD: &str = "previous_build";
    /// The name of the template the group launches.
    pub const LAUNCH_TEMPLATE_NAME: &str = "launch_template_name";
}

/// A service's group, on its template, in its target group.
pub fn desired(b: &Build, svc: &ServiceSpec) -> Desired {
    let (stack, name) = (&b.spec.stack, &svc.name);
    let digest = launch_template::boot(b, svc).digest;
    let sc = &svc.scaling;
    let group = AutoScalingGroupAttrs {
        name: format!("{stack}-{name}"),
        launch_template_id: Ref::to(name),
        launch_template_digest: digest[..16].to_string(),
        min_size: sc.min.into(),
        max_size: sc.max.into(),
        desired_capacity: sc.desired.into(),
        subnet_ids: b.instance_subnets.clone(),
        target_group_arns: vec![Ref::to(name)],
        health_check_type: "ELB".into(),
        health_check_grace_period: svc.health.grace_period.into(),
        // How a new template rolls the group (a tag; sent with each refresh).
        deploy: svc.deploy.render(),
        // The app build the fleet was rolled to (a tag; `stack rollback` goes back to
        // the one before). Stacks that ship no app have none.
        build: crate::desired::build_key(b.inputs, name),
    };
    Desired::new(
        crate::desired::service(Kind::AutoScalingGroup, name),
        to_attrs(&group),
    )
}

const TAG_DESIRED: &str = "stack:desired-capacity";
const TAG_DIGEST: &str = "stack:launch-template-digest";
/// The roll preferences the group was last given (`deploy:` in the file).
const TAG_DEPLOY: &str = "stack:deploy";
/// The app build (artifact key) the fleet was rolled to, and the one before it.
const TAG_BUILD: &str = "stack:build";
const TAG_PREVIOUS_BUILD: &str = "stack:previous-build";

/// Groups and their scaling policies: one tag-filtered list, one policy list.
pub async fn discover_with_policies(c: &Clients, stack: &str) -> Result<Vec<Live>, Error> {
    let mut groups = Vec::new();
    let mut pages = c
        .asg
        .describe_auto_scaling_groups()
        .filters(
            Filter::builder()
                .name(format!("tag:{TAG_STACK}"))
                .values(stack)
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for g in page
            .ctx("listing", &"Auto Scaling groups")?
            .auto_scaling_groups()
        {
            let tags = g
                .tags()
                .iter()
                .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()));
            if let Some(address) = owned_address(stack, tags) {
                groups.push(live(address, g));
            }
        }
    }
    if groups.is_empty() {
        return Ok(groups);
    }
    let names: BTreeMap<String, String> = groups
        .iter()
        .map(|g| (g.id.clone(), g.address.name.clone()))
        .collect();
    let policies = scaling_policy::discover(c, &names).await?;
    groups.extend(policies);
    Ok(groups)
}

fn live(address: Address, g: &AutoScalingGroup) -> Live {
    let tag = |k: &str| {
        g.tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    let desired = tag(TAG_DESIRED)
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(g.desired_capacity().unwrap_or_default().into());
    let subnets: Vec<String> = g
        .vpc_zone_identifier()
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let lt = g
        .launch_template()
        .and_then(|l| l.launch_template_id())
        .unwrap_or_default();
    let attrs = to_attrs(&AutoScalingGroupAttrs {
        name: g.auto_scaling_group_name().unwrap_or_default().to_string(),
        launch_template_id: Ref::id(lt),
        launch_template_digest: tag(TAG_DIGEST).unwrap_or_default(),
        deploy: tag(TAG_DEPLOY).unwrap_or_default(),
        build: Some(tag(TAG_BUILD).unwrap_or_default()),
        min_size: g.min_size().unwrap_or_default().into(),
        max_size: g.max_size().unwrap_or_default().into(),
        desired_capacity: desired,
        subnet_ids: subnets.into_iter().map(Ref::id).collect(),
        target_group_arns: g.target_group_arns().iter().map(Ref::id).collect(),
        health_check_type: g.health_check_type().unwrap_or_default().to_string(),
        health_check_grace_period: g.health_check_grace_period().unwrap_or_default().into(),
    });
    let in_service = g
        .instances()
        .iter()
        .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
        .count();
    let extra = BTreeMap::from([
        (
            extra::INSTANCES_IN_SERVICE.to_string(),
            in_service.to_string(),
        ),
        (
            extra::ACTUAL_DESIRED_CAPACITY.to_string(),
            g.desired_capacity().unwrap_or_default().to_string(),
        ),
        (
            extra::LAUNCH_TEMPLATE_VERSION.to_string(),
            g.launch_template()
                .and_then(|l| l.version())
                .unwrap_or_default()
                .to_string(),
        ),
        (
            extra::PREVIOUS_BUILD.to_string(),
            tag(TAG_PREVIOUS_BUILD).unwrap_or_default(),
        ),
        (
            extra::LAUNCH_TEMPLATE_NAME.to_string(),
            g.launch_template()
                .and_then(|l| l.launch_template_name())
                .unwrap_or_default()
                .to_string(),
        ),
    ]);
    Live {
        id: g.auto_scaling_group_name().unwrap_or_default().to_string(),
        address,
        attrs,
        extra,
    }
}

fn tags(
    ctx: &Ctx,
    a: &Address,
    g: &AutoScalingGroupAttrs,
    previous_build: Option<&str>,
) -> Vec<Tag> {
    let name = &g.name;
    let mut pairs = ctx.tags(a);
    pairs.push((TAG_BUILD.into(), g.build.clone().unwrap_or_default()));
    if let Some(p) = previous_build {
        pairs.push((TAG_PREVIOUS_BUILD.into(), p.to_string()));
    }
    pairs.push((TAG_DESIRED.into(), g.desired_capacity.to_string()));
    pairs.push((TAG_DIGEST.into(), g.launch_template_digest.clone()));
    pairs.push((TAG_DEPLOY.into(), g.deploy.clone()));
    pairs
        .into_iter()
        .map(|(k, v)| {
            // Ownership tags go onto the instances too; the bookkeeping tags stay on the group.
            let propagate =
                !k.starts_with("stack:") || k == TAG_STACK || k == crate::model::TAG_ADDRESS;
            Tag::builder()
                .resource_id(name)
                .resource_type("auto-scaling-group")
                .key(k)
                .value(v)
                .propagate_at_launch(propagate)
                .build()
        })
        .collect()
}

/// A launch template or instance profile made seconds ago can be "invalid" to Auto
/// Scaling until EC2 and IAM catch up. AWS gives this no code of its own (it is a
/// `ValidationError`), so the message tells it from a real mistake in the request.
fn fresh_dependency_not_visible(e: &Error) -> bool {
    match e {
        Error::Aws { code, message, .. } if code == "ValidationError" => {
            let m = message.to_ascii_lowercase();
            m.contains("launch template")
                || m.contains("instance profile")
                || m.contains("iaminstanceprofile")
        }
        _ => false,
    }
}

pub async fn create(ctx: &Ctx, a: &Address, g: AutoScalingGroupAttrs) -> Result<Created, Error> {
    let name = g.name.clone();
    retry_when(fresh_dependency_not_visible, Patience::FRESH_ID, || async {
        ctx.c
            .asg
            .create_auto_scaling_group()
            .auto_scaling_group_name(&name)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(g.launch_template_id.as_id())
                    .version(launch_template::VERSION)
                    .build(),
            )
            .min_size(g.min_size as i32)
            .max_size(g.max_size as i32)
            .desired_capacity(g.desired_capacity as i32)
            .vpc_zone_identifier(ids(&g.subnet_ids).join(","))
            .set_target_group_arns(Some(ids(&g.target_group_arns)))
            .health_check_type(&g.health_check_type)
            .health_check_grace_period(g.health_check_grace_period as i32)
            .set_tags(Some(tags(ctx, a, &g, None)))
            .send()
            .await
            .ctx("creating", a)
    })
    .await?;
    wait_ready(ctx, a, &name, &g).await?;
    Ok((name, Default::default()))
}

/// The targets of a target group with their health.
pub(super) async fn target_health(
    c: &Clients,
    tg: &str,
    a: &Address,
) -> Result<Vec<TargetHealthDescription>, Error> {
    let h = c
        .elb
        .describe_target_health()
        .target_group_arn(tg)
        .send()
        .await
        .ctx("reading target health for", a)?;
    Ok(h.target_health_descriptions().to_vec())
}

pub(super) fn is_healthy(d: &TargetHealthDescription) -> bool {
    d.target_health()
        .and_then(|t| t.state())
        .map(|s| s.as_str())
        == Some("healthy")
}

/// In service and healthy behind the load balancer: what "the app answers" means per group.
async fn wait_ready(
    ctx: &Ctx,
    a: &Address,
    name: &str,
    g: &AutoScalingGroupAttrs,
) -> Result<(), Error> {
    let want = g.desired_capacity.max(g.min_size) as usize;
    if want == 0 {
        return Ok(());
    }
    let tgs = ids(&g.target_group_arns);
    wait_for(
        a,
        "instances to pass health checks",
        ctx.ready_timeout,
        || async {
            let r = ctx
                .c
                .asg
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(name)
                .send()
                .await
                .ctx("reading", a)?;
            let Some(g) = r.auto_scaling_groups().first() else {
                return Ok(None);
            };
            let ids: Vec<String> = g
                .instances()
                .iter()
                .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
                .filter_map(|i| i.instance_id().map(str::to_string))
                .collect();
            if ids.len() < want {
                ctx.report(a, format!("{}/{want} instances in service", ids.len()));
                return Ok(None);
            }
            for tg in &tgs {
                let healthy = target_health(&ctx.c, tg, a)
                    .await?
                    .iter()
                    .filter(|d| {
                        d.target()
                            .and_then(|t| t.id())
                            .is_some_and(|id| ids.iter().any(|i| i == id))
                    })
                    .filter(|d| is_healthy(d))
                    .count();
                if healthy < want {
                    ctx.report(a, format!("{healthy}/{want} targets healthy"));
                    return Ok(None);
                }
            }
            ctx.report(a, format!("{want}/{want} instances healthy"));
            Ok(Some(()))
        },
    )
    .await
}

/// One look at the groups' target health: per target group with fewer healthy targets
/// than the group's desired capacity, a line with the count and AWS's reason.
async fn unhealthy(c: &Clients, groups: &[&Live]) -> Result<Vec<String>, Error> {
    let mut found = Vec::new();
    for g in groups {
        let want: usize = g
            .extra
            .get(extra::ACTUAL_DESIRED_CAPACITY)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let attrs: AutoScalingGroupAttrs = from_attrs(&g.attrs)?;
        for tg in ids(&attrs.target_group_arns) {
            let targets = target_health(c, &tg, &g.address).await?;
            let healthy = targets.iter().filter(|d| is_healthy(d)).count();
            if healthy < want {
                let why = targets
                    .iter()
                    .filter_map(|d| d.target_health())
                    .find(|t| t.reason().is_some())
                    .map(|t| {
                        format!(
                            ": {}: {}",
                            t.reason().map(|r| r.as_str()).unwrap_or_default(),
                            t.description().unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                found.push(format!(
                    "{} ({}): {healthy}/{want} targets healthy{why}",
                    g.address, g.id
                ));
            }
        }
    }
    Ok(found)
}

/// What `plan` warns about: the live groups whose targets are not all healthy now.
/// Groups the plan replaces or removes are left out.
pub async fn health_warnings(
    c: &Clients,
    live: &BTreeMap<Address, Live>,
    leaving: &[&Address],
) -> Result<Vec<String>, Error> {
    let groups: Vec<&Live> = live
        .values()
        .filter(|l| {
            l.address.kind == crate::model::Kind::AutoScalingGroup && !leaving.contains(&&l.address)
        })
        .collect();
    unhealthy(c, &groups).await
}

/// After every `up`: each group's targets healthy behind the load balancer, within
/// `timeout`. When they are not, the error names, per target group, how many are
/// healthy and AWS's reason and description, and where to look.
pub async fn wait_all_healthy(
    c: &Clients,
    live: &BTreeMap<Address, Live>,
    timeout: Duration,
    progress: &(dyn Fn(String) + Sync),
) -> Result<(), Error> {
    let groups: Vec<&Live> = live
        .values()
        .filter(|l| l.address.kind == crate::model::Kind::AutoScalingGroup)
        .collect();
    if groups.is_empty() {
        return Ok(());
    }
    let last = std::sync::Mutex::new(Vec::<String>::new());
    let waited = wait_for(
        &"the stack's services",
        "every target to pass its health check",
        timeout,
        || async {
            let found = unhealthy(c, &groups).await?;
            let all_healthy = found.is_empty();
            if !all_healthy {
                progress(found.join("; "));
            }
            *last.lock().unwrap_or_else(|e| e.into_inner()) = found;
            Ok(all_healthy.then_some(()))
        },
    )
    .await;
    match waited {
        Err(Error::Timeout { after, .. }) => Err(Error::Refused {
            resource: "the stack's services".into(),
            reason: format!(
                "not every target passed its health check after {}s: {}. Look at the boot log on an instance (/var/log/stack-userdata.log, through Session Manager) and run `stack status`",
                after.as_secs(),
                last.lock().unwrap_or_else(|e| e.into_inner()).join("; ")
            ),
        }),
        other => other,
    }
}

pub async fn update(
    ctx: &Ctx,
    live: &Live,
    want: AutoScalingGroupAttrs,
    changes: &[String],
) -> Result<(), Error> {
    let a = &live.address;
    let name = &live.id;
    let have: AutoScalingGroupAttrs = from_attrs(&live.attrs)?;
    let wanted = TemplateRef {
        id: want.launch_template_id.as_id().to_string(),
        version: launch_template::VERSION.to_string(),
    };
    // A group whose fleet was rolled before (its digest is recorded) rolls onto a new
    // template; until the roll succeeds it keeps its current one, at a numbered
    // version (an older group may name `$Default`): AWS rolls back only to that.
    let rolls = (changed(changes, attr!(AutoScalingGroupAttrs.launch_template_digest))
        || changed(changes, attr!(AutoScalingGroupAttrs.launch_template_id)))
        && !have.launch_template_digest.is_empty();
    let current = if rolls {
        let id = have.launch_template_id.as_id().to_string();
        let version = match live.extra.get(extra::LAUNCH_TEMPLATE_VERSION) {
            Some(v) if v.parse::<u64>().is_ok() => v.clone(),
            _ => launch_template::default_version(ctx, a, &id).await?,
        };
        TemplateRef { id, version }
    } else {
        wanted.clone()
    };
    let mut call = ctx
        .c
        .asg
        .update_auto_scaling_group()
        .auto_scaling_group_name(name)
        .min_size(want.min_size as i32)
        .max_size(want.max_size as i32)
        .vpc_zone_identifier(ids(&want.subnet_ids).join(","))
        .health_check_type(&want.health_check_type)
        .health_check_grace_period(want.health_check_grace_period as i32)
        .launch_template(current.spec());
    if changed(changes, attr!(AutoScalingGroupAttrs.desired_capacity)) {
        call = call.desired_capacity(want.desired_capacity as i32);
    }
    call.send().await.ctx("updating", a)?;
    if changed(changes, attr!(AutoScalingGroupAttrs.target_group_arns)) {
        let wanted = ids(&want.target_group_arns);
        let held = ids(&have.target_group_arns);
        let gone: Vec<String> = held
            .iter()
            .filter(|t| !wanted.contains(t))
            .cloned()
            .collect();
        let added: Vec<String> = wanted
            .iter()
            .filter(|t| !held.contains(t))
            .cloned()
            .collect();
        if !added.is_empty() {
            ctx.c
                .asg
                .attach_load_balancer_target_groups()
                .auto_scaling_group_name(name)
                .set_target_group_arns(Some(added))
                .send()
                .await
                .ctx("attaching target groups to", a)?;
        }
        if !gone.is_empty() {
            ctx.c
                .asg
                .detach_load_balancer_target_groups()
                .auto_scaling_group_name(name)
                .set_target_group_arns(Some(gone))
                .send()
                .await
                .ctx("detaching target groups from", a)?;
        }
    }
    // The template digest is what the fleet was rolled to: it changes only once the
    // roll succeeded, so a roll that failed or was interrupted stays in the next plan.
    let mut before_roll = want.clone();
    if rolls {
        before_roll.launch_template_digest = have.launch_template_digest.clone();
        before_roll.build = have.build.clone();
    }
    set_tags(ctx, a, &before_roll, None).await?;
    if rolls {
        let grace = want.health_check_grace_period as u32;
        let prefs = DeploySpec::parse(&want.deploy).unwrap_or(DeploySpec {
            min_healthy: 100,
            max_healthy: 200,
            warmup: grace,
            bake: 0,
        });
        roll::roll(ctx, a, name, prefs, &wanted).await?;
        // The build rolled away from is what `stack rollback` puts back.
        let old_build = have.build.as_deref().unwrap_or_default();
        let new_build = want.build.as_deref().unwrap_or_default();
        let previous = (!old_build.is_empty() && old_build != new_build).then_some(old_build);
        set_tags(ctx, a, &want, previous).await?;
    }
    Ok(())
}

async fn set_tags(
    ctx: &Ctx,
    a: &Address,
    g: &AutoScalingGroupAttrs,
    previous_build: Option<&str>,
) -> Result<(), Error> {
    ctx.c
        .asg
        .create_or_update_tags()
        .set_tags(Some(tags(ctx, a, g, previous_build)))
        .send()
        .await
        .ctx("tagging", a)
        .map(drop)
}

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    let a = &live.address;
    match ctx
        .c
        .asg
        .delete_auto_scaling_group()
        .auto_scaling_group_name(&live.id)
        .force_delete(true)
        .send()
        .await
        .ctx("deleting", a)
    {
        Err(e) if e.is_code(&["ValidationError"]) => return Ok(()),
        other => other.map(drop)?,
    }
    ctx.report(a, "waiting for instances to terminate");
    wait_for(
        a,
        "the group and its instances to be deleted",
        Duration::from_secs(900),
        || async {
            let r = ctx
                .c
                .asg
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(&live.id)
                .send()
                .await
                .ctx("reading", a)?;
            Ok(r.auto_scaling_groups().is_empty().then_some(()))
        },
    )
    .await
}

impl super::KindOps for AutoScalingGroupAttrs {
    const FORCE_NEW: &'static [&'static str] = &[attr!(AutoScalingGroupAttrs.name)];
    const REFERENCES: &'static [&'static str] = &[
        attr!(AutoScalingGroupAttrs.launch_template_id),
        attr!(AutoScalingGroupAttrs.subnet_ids),
        attr!(AutoScalingGroupAttrs.target_group_arns),
    ];
    const ID_ATTRIBUTE: Option<&'static str> = Some(attr!(AutoScalingGroupAttrs.name));
    const DOWNTIME: Option<&'static str> =
        Some("downtime: every instance of the group is terminated before new ones launch");
    const UNIQUE_NAME: Option<&'static str> = Some(attr!(AutoScalingGroupAttrs.name));
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::AutoScaling;
    const LISTING: super::Listing = super::Listing::Groups;

    super::writes!(typed);
    super::writes!(delete);

    async fn names_taken(c: &Clients, names: &[String], _: &LiveMap) -> Result<Vec<String>, Error> {
        let r = c
            .asg
            .describe_auto_scaling_groups()
            .set_auto_scaling_group_names(Some(names.to_vec()))
            .send()
            .await
            .ctx("looking up", &"Auto Scaling group names")?;
        Ok(r.auto_scaling_groups()
            .iter()
            .filter_map(|g| g.auto_scaling_group_name())
            .map(str::to_string)
            .collect())
    }
}
