//! Discovery of the load balancer, target groups, listeners and rules. ELBv2 cannot
//! filter by tag, so it lists load balancers and target groups, reads their tags 20
//! ARNs per call, and then descends only into the stack's own load balancer.

use super::{listener, listener_rule, load_balancer, target_group};
use crate::aws::{Clients, Context, Error};
use crate::model::{Address, Live, owned_address};
use aws_sdk_elasticloadbalancingv2::types::{LoadBalancer, TargetGroup};
use std::collections::BTreeMap;

/// ELBv2's limit on ARNs per DescribeTags call.
const TAG_BATCH: usize = 20;

/// Tags of many ARNs, 20 per call, concurrently.
async fn tags_of(
    c: &Clients,
    arns: &[String],
) -> Result<BTreeMap<String, Vec<(String, String)>>, Error> {
    let calls = arns.chunks(TAG_BATCH).map(|chunk| async move {
        c.elb
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .ctx("reading tags of", &"load balancer resources")
    });
    let mut out = BTreeMap::new();
    for r in futures_util::future::try_join_all(calls).await? {
        for d in r.tag_descriptions() {
            let tags = d
                .tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_string(),
                        t.value().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            out.insert(d.resource_arn().unwrap_or_default().to_string(), tags);
        }
    }
    Ok(out)
}

fn owner(stack: &str, tags: Option<&Vec<(String, String)>>) -> Option<Address> {
    owned_address(stack, tags?.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

pub async fn discover(c: &Clients, stack: &str) -> Result<Vec<Live>, Error> {
    let (lbs, tgs) = tokio::try_join!(
        async {
            let mut v: Vec<LoadBalancer> = Vec::new();
            let mut pages = c.elb.describe_load_balancers().into_paginator().send();
            while let Some(p) = pages.next().await {
                v.extend(
                    p.ctx("listing", &"load balancers")?
                        .load_balancers()
                        .iter()
                        .cloned(),
                );
            }
            Ok::<_, Error>(v)
        },
        async {
            let mut v: Vec<TargetGroup> = Vec::new();
            let mut pages = c.elb.describe_target_groups().into_paginator().send();
            while let Some(p) = pages.next().await {
                v.extend(
                    p.ctx("listing", &"target groups")?
                        .target_groups()
                        .iter()
                        .cloned(),
                );
            }
            Ok::<_, Error>(v)
        },
    )?;
    let arns: Vec<String> = lbs
        .iter()
        .filter_map(|l| l.load_balancer_arn())
        .chain(tgs.iter().filter_map(|t| t.target_group_arn()))
        .map(str::to_string)
        .collect();
    let tags = tags_of(c, &arns).await?;
    let mut out = Vec::new();
    for tg in &tgs {
        let arn = tg.target_group_arn().unwrap_or_default();
        if let Some(address) = owner(stack, tags.get(arn)) {
            out.push(target_group::live(address, tg));
        }
    }
    let mut owned_lbs = Vec::new();
    for lb in &lbs {
        let arn = lb.load_balancer_arn().unwrap_or_default();
        if let Some(address) = owner(stack, tags.get(arn)) {
            let mut l = load_balancer::live(address, lb);
            load_balancer::read_attributes(c, &mut l).await?;
            out.push(l);
            owned_lbs.push(arn.to_string());
        }
    }
    // Listeners and rules of the stack's load balancer(s): usually one of each call.
    let mut listeners = Vec::new();
    for arn in &owned_lbs {
        let r = c
            .elb
            .describe_listeners()
            .load_balancer_arn(arn)
            .send()
            .await
            .ctx("listing listeners of", arn)?;
        listeners.extend(r.listeners().iter().cloned());
    }
    let mut rules = Vec::new();
    for l in &listeners {
        let arn = l.listener_arn().unwrap_or_default();
        let mut marker = None;
        loop {
            let r = c
                .elb
                .describe_rules()
                .listener_arn(arn)
                .set_marker(marker.clone())
                .send()
                .await
                .ctx("listing rules of", &arn)?;
            rules.extend(
                r.rules()
                    .iter()
                    .filter(|r| !r.is_default().unwrap_or(false))
                    .cloned()
                    .map(|r| (arn.to_string(), r)),
            );
            marker = r.next_marker().map(str::to_string);
            if marker.is_none() {
                break;
            }
        }
    }
    let arns: Vec<String> = listeners
        .iter()
        .filter_map(|l| l.listener_arn())
        .chain(rules.iter().filter_map(|(_, r)| r.rule_arn()))
        .map(str::to_string)
        .collect();
    let tags = if arns.is_empty() {
        BTreeMap::new()
    } else {
        tags_of(c, &arns).await?
    };
    for l in &listeners {
        if let Some(address) = owner(stack, tags.get(l.listener_arn().unwrap_or_default())) {
            out.push(listener::live(address, l));
        }
    }
    for (listener_arn, r) in &rules {
        if let Some(address) = owner(stack, tags.get(r.rule_arn().unwrap_or_default())) {
            out.push(listener_rule::live(address, listener_arn, r));
        }
    }
    Ok(out)
}

pub(crate) fn elb_tags(
    ctx: &super::Ctx,
    a: &Address,
) -> Vec<aws_sdk_elasticloadbalancingv2::types::Tag> {
    ctx.tags(a)
        .into_iter()
        .map(|(k, v)| {
            aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
        })
        .collect()
}
