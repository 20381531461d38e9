//! The CPU target-tracking policy of each Auto Scaling group. Policies cannot carry
//! tags; a policy belongs to the stack when its group does.

use super::asg::AutoScalingGroupAttrs;
use super::{Created, Ctx, absent_ok};
use crate::aws::{Clients, Context, Error};
use crate::desired::Build;
use crate::model::attr;
use crate::model::{Address, Desired, Kind, KindAttrs, Live, Ref, from_attrs, to_attrs};
use crate::spec::ServiceSpec;
use aws_sdk_autoscaling::types::{
    MetricType, PredefinedMetricSpecification, TargetTrackingConfiguration,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A scaling policy's attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScalingPolicyAttrs {
    pub name: String,
    /// Its group (a group's id is its name).
    pub autoscaling_group_name: Ref<AutoScalingGroupAttrs>,
    /// The predefined metric tracked (`ASGAverageCPUUtilization`).
    pub metric: String,
    #[serde(default = "default_target")]
    pub target_value: f64,
}

impl KindAttrs for ScalingPolicyAttrs {
    const KIND: Kind = Kind::ScalingPolicy;
}

/// The target a policy read without one gets.
fn default_target() -> f64 {
    50.0
}

/// A service's target tracking policy on average CPU.
pub fn desired(b: &Build, svc: &ServiceSpec) -> Desired {
    let (stack, name) = (&b.spec.stack, &svc.name);
    Desired::new(
        crate::desired::service(Kind::ScalingPolicy, name),
        to_attrs(&ScalingPolicyAttrs {
            name: format!("{stack}-{name}-cpu"),
            autoscaling_group_name: Ref::to(name),
            metric: "ASGAverageCPUUtilization".into(),
            target_value: svc.scaling.cpu_target,
        }),
    )
}

/// `groups`: the stack's group names and the service each belongs to.
pub async fn discover(c: &Clients, groups: &BTreeMap<String, String>) -> Result<Vec<Live>, Error> {
    let mut out = Vec::new();
    let mut pages = c.asg.describe_policies().into_paginator().send();
    while let Some(page) = pages.next().await {
        for p in page.ctx("listing", &"scaling policies")?.scaling_policies() {
            let group = p.auto_scaling_group_name().unwrap_or_default();
            let Some(service) = groups.get(group) else {
                continue;
            };
            let cfg = p.target_tracking_configuration();
            let metric = cfg
                .and_then(|c| c.predefined_metric_specification())
                .and_then(|m| m.predefined_metric_type())
                .map(|t| t.as_str().to_string())
                .unwrap_or_default();
            let attrs = to_attrs(&ScalingPolicyAttrs {
                name: p.policy_name().unwrap_or_default().to_string(),
                autoscaling_group_name: Ref::id(group),
                metric,
                target_value: cfg.and_then(|c| c.target_value()).unwrap_or_default(),
            });
            out.push(Live {
                address: Address::new(Kind::ScalingPolicy, service),
                id: p.policy_name().unwrap_or_default().to_string(),
                attrs,
                extra: BTreeMap::from([(
                    "policy_arn".to_string(),
                    p.policy_arn().unwrap_or_default().to_string(),
                )]),
            });
        }
    }
    Ok(out)
}

/// PutScalingPolicy creates or replaces the policy of that name.
pub async fn put(ctx: &Ctx, a: &Address, want: ScalingPolicyAttrs) -> Result<Created, Error> {
    let name = want.name.clone();
    ctx.c
        .asg
        .put_scaling_policy()
        .auto_scaling_group_name(want.autoscaling_group_name.as_id())
        .policy_name(&name)
        .policy_type("TargetTrackingScaling")
        .target_tracking_configuration(
            TargetTrackingConfiguration::builder()
                .predefined_metric_specification(
                    PredefinedMetricSpecification::builder()
                        .predefined_metric_type(MetricType::from(want.metric.as_str()))
                        .build(),
                )
                .target_value(want.target_value)
                .build(),
        )
        .send()
        .await
        .ctx("putting", a)?;
    Ok((name, Default::default()))
}

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    let have: ScalingPolicyAttrs = from_attrs(&live.attrs)?;
    absent_ok(
        ctx.c
            .asg
            .delete_policy()
            .auto_scaling_group_name(have.autoscaling_group_name.as_id())
            .policy_name(&live.id)
            .send()
            .await
            .ctx("deleting", &live.address),
        &["ValidationError"],
    )
}

impl super::KindOps for ScalingPolicyAttrs {
    const FORCE_NEW: &'static [&'static str] = &[
        attr!(ScalingPolicyAttrs.name),
        attr!(ScalingPolicyAttrs.autoscaling_group_name),
    ];
    const REFERENCES: &'static [&'static str] = &[attr!(ScalingPolicyAttrs.autoscaling_group_name)];
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::AutoScaling;
    const LISTING: super::Listing = super::Listing::Groups;

    async fn create(
        ctx: &super::Ctx,
        d: &crate::model::Desired,
        attrs: &crate::model::Attrs,
    ) -> Result<super::Created, crate::aws::Error> {
        put(ctx, &d.address, crate::model::from_attrs(attrs)?).await
    }

    async fn update(
        ctx: &super::Ctx,
        _d: &crate::model::Desired,
        live: &crate::model::Live,
        attrs: &crate::model::Attrs,
        _changed: &[String],
    ) -> Result<String, crate::aws::Error> {
        put(ctx, &live.address, crate::model::from_attrs(attrs)?)
            .await
            .map(|(id, _)| id)
    }

    super::writes!(delete);
}
