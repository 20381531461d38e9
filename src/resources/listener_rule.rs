//! Path rules on the listener: a path pattern sent to a service's target group.
//! Priority, path and target change in place.
//!
//! Priorities are unique per listener and AWS checks each new one against the rules
//! as they stand (`PriorityInUse`), so every priority change of a run goes in one
//! SetRulePriorities call (a swap works only that way), and a rule that takes a
//! priority another rule gives up waits for that rule's delete or move (see
//! [`claims`]).

use super::listener::ListenerAttrs;
use super::target_group::TargetGroupAttrs;
use super::{Created, Ctx, absent_ok, changed, elbv2::elb_tags, listener::forward};
use crate::aws::{Context, Error, Patience, retry_codes};
use crate::desired::Build;
use crate::model::attr;
use crate::model::{Address, Attrs, Desired, Kind, KindAttrs, Live, Ref, Value};
use crate::model::{from_attrs, to_attrs};
use crate::plan::{Action, Plan};
use aws_sdk_elasticloadbalancingv2::types::{
    PathPatternConditionConfig, Rule, RuleCondition, RulePriorityPair,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A listener rule's attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListenerRuleAttrs {
    pub listener_arn: Ref<ListenerAttrs>,
    pub priority: i64,
    pub path_pattern: String,
    pub target_group_arn: Ref<TargetGroupAttrs>,
}

impl KindAttrs for ListenerRuleAttrs {
    const KIND: Kind = Kind::ListenerRule;
}

/// The file's path rules on the main listener.
pub fn desired(b: &Build) -> Vec<Desired> {
    b.spec
        .load_balancer
        .rules
        .iter()
        .map(|rule| {
            Desired::new(
                Address::new(Kind::ListenerRule, &rule.name),
                to_attrs(&ListenerRuleAttrs {
                    listener_arn: Ref::at(crate::desired::listener()),
                    priority: rule.priority.into(),
                    path_pattern: rule.path.clone(),
                    target_group_arn: Ref::at(crate::desired::service(
                        Kind::TargetGroup,
                        &rule.service,
                    )),
                }),
            )
        })
        .collect()
}

pub fn live(address: Address, listener_arn: &str, r: &Rule) -> Live {
    let path = r
        .conditions()
        .iter()
        .find(|c| c.field() == Some("path-pattern"))
        .and_then(|c| {
            c.path_pattern_config()
                .and_then(|p| p.values().first().cloned())
                .or_else(|| c.values().first().cloned())
        })
        .unwrap_or_default();
    let tg = r
        .actions()
        .first()
        .and_then(|a| a.target_group_arn())
        .unwrap_or_default();
    let priority: i64 = r
        .priority()
        .and_then(|p| p.parse().ok())
        .unwrap_or_default();
    let attrs = to_attrs(&ListenerRuleAttrs {
        listener_arn: Ref::id(listener_arn),
        priority,
        path_pattern: path,
        target_group_arn: Ref::id(tg),
    });
    Live {
        address,
        id: r.rule_arn().unwrap_or_default().to_string(),
        attrs,
        extra: Default::default(),
    }
}

/// A rule holds its priority on its listener. Malformed attributes read as empty, as a
/// missing attribute does.
pub fn claims(attrs: &Attrs) -> Vec<String> {
    let r: ListenerRuleAttrs = from_attrs(attrs).unwrap_or_default();
    vec![format!(
        "{}#priority={}",
        r.listener_arn.as_id(),
        r.priority
    )]
}

/// The priority changes of a plan, per listener ARN: (rule ARN, new priority).
pub fn priority_batches(
    plan: &Plan,
    live: &BTreeMap<Address, Live>,
) -> BTreeMap<String, Vec<(String, i32)>> {
    let mut out: BTreeMap<String, Vec<(String, i32)>> = BTreeMap::new();
    for c in &plan.changes {
        if c.address.kind != Kind::ListenerRule || c.action != Action::Update {
            continue;
        }
        let Some(l) = live.get(&c.address) else {
            continue;
        };
        let new = c
            .attributes
            .iter()
            .find(|a| a.name == "priority")
            .and_then(|a| a.after.as_ref())
            .and_then(Value::as_i64);
        if let Some(p) = new {
            let have: ListenerRuleAttrs = from_attrs(&l.attrs).unwrap_or_default();
            out.entry(have.listener_arn.as_id().to_string())
                .or_default()
                .push((l.id.clone(), p as i32));
        }
    }
    out
}

/// Sends every priority change on the rule's listener in one call, once per run.
async fn set_priorities(ctx: &Ctx, live: &Live, priority: i32) -> Result<(), Error> {
    let have: ListenerRuleAttrs = from_attrs(&live.attrs)?;
    let listener = have.listener_arn.as_id();
    let batch = ctx
        .shared
        .rule_priorities
        .get(listener)
        .filter(|b| b.iter().any(|(arn, _)| *arn == live.id))
        .cloned()
        .unwrap_or_else(|| vec![(live.id.clone(), priority)]);
    let a = live.address.clone();
    ctx.shared
        .once(&format!("priorities:{listener}"), || async move {
            ctx.c
                .elb
                .set_rule_priorities()
                .set_rule_priorities(Some(
                    batch
                        .iter()
                        .map(|(arn, p)| {
                            RulePriorityPair::builder()
                                .rule_arn(arn)
                                .priority(*p)
                                .build()
                        })
                        .collect(),
                ))
                .send()
                .await
                .ctx("changing the priority of", &a)
                .map(drop)
        })
        .await
}

fn condition(want: &ListenerRuleAttrs) -> RuleCondition {
    RuleCondition::builder()
        .field("path-pattern")
        .path_pattern_config(
            PathPatternConditionConfig::builder()
                .values(&want.path_pattern)
                .build(),
        )
        .build()
}

pub async fn create(ctx: &Ctx, a: &Address, want: ListenerRuleAttrs) -> Result<Created, Error> {
    let r = retry_codes(
        &["TargetGroupNotFound", "ListenerNotFound"],
        Patience::FRESH_ID,
        || async {
            ctx.c
                .elb
                .create_rule()
                .listener_arn(want.listener_arn.as_id())
                .priority(want.priority as i32)
                .conditions(condition(&want))
                .actions(forward(want.target_group_arn.as_id()))
                .set_tags(Some(elb_tags(ctx, a)))
                .send()
                .await
                .ctx("creating", a)
        },
    )
    .await?;
    let arn = r
        .rules()
        .first()
        .and_then(|r| r.rule_arn())
        .unwrap_or_default()
        .to_string();
    Ok((arn, Default::default()))
}

pub async fn update(
    ctx: &Ctx,
    live: &Live,
    want: ListenerRuleAttrs,
    changes: &[String],
) -> Result<(), Error> {
    let a = &live.address;
    if changed(changes, attr!(ListenerRuleAttrs.priority)) {
        set_priorities(ctx, live, want.priority as i32).await?;
    }
    if changed(changes, attr!(ListenerRuleAttrs.path_pattern))
        || changed(changes, attr!(ListenerRuleAttrs.target_group_arn))
    {
        ctx.c
            .elb
            .modify_rule()
            .rule_arn(&live.id)
            .conditions(condition(&want))
            .actions(forward(want.target_group_arn.as_id()))
            .send()
            .await
            .ctx("updating", a)?;
    }
    Ok(())
}

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    absent_ok(
        ctx.c
            .elb
            .delete_rule()
            .rule_arn(&live.id)
            .send()
            .await
            .ctx("deleting", &live.address),
        &["RuleNotFound"],
    )
}

impl super::KindOps for ListenerRuleAttrs {
    const FORCE_NEW: &'static [&'static str] = &[attr!(ListenerRuleAttrs.listener_arn)];
    const REFERENCES: &'static [&'static str] = &[
        attr!(ListenerRuleAttrs.listener_arn),
        attr!(ListenerRuleAttrs.target_group_arn),
    ];
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::Elbv2;
    const LISTING: super::Listing = super::Listing::LoadBalancing;
    // Whichever rule update runs first sends the listener's whole batch of
    // priorities, so every rule update waits for every rule delete.
    const ORDERING: super::Ordering = super::Ordering {
        update_after_deletes_of: &[crate::model::Kind::ListenerRule],
        delete_after_deletes_of: &[],
    };

    super::writes!(typed);
    super::writes!(delete);

    fn claims(attrs: &crate::model::Attrs) -> Vec<String> {
        claims(attrs)
    }
}
