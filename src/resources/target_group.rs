//! One target group per service, with the service's health check.

use super::LiveMap;
use super::vpc::VpcAttrs;
use super::{Created, Ctx, elbv2::elb_tags};
use crate::aws::{Clients, Context, Error, Patience, retry_when};
use crate::desired::Build;
use crate::model::attr;
use crate::model::{Address, Desired, Kind, KindAttrs, Live, Ref, to_attrs};
use crate::spec::ServiceSpec;
use aws_sdk_elasticloadbalancingv2::types::{Matcher, ProtocolEnum, TargetGroup, TargetTypeEnum};
use serde::{Deserialize, Serialize};

/// A target group's attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TargetGroupAttrs {
    pub name: String,
    pub port: i64,
    pub protocol: String,
    pub vpc_id: Ref<VpcAttrs>,
    pub health_check_path: String,
    pub health_check_interval: i64,
    pub healthy_threshold: i64,
    pub unhealthy_threshold: i64,
    pub matcher: String,
}

impl KindAttrs for TargetGroupAttrs {
    const KIND: Kind = Kind::TargetGroup;
}

/// A service's target group, with the file's health check.
pub fn desired(b: &Build, svc: &ServiceSpec) -> Desired {
    let (stack, name) = (&b.spec.stack, &svc.name);
    let h = &svc.health;
    Desired::new(
        crate::desired::service(Kind::TargetGroup, name),
        to_attrs(&TargetGroupAttrs {
            name: format!("{stack}-{name}"),
            port: svc.port.into(),
            protocol: "HTTP".into(),
            vpc_id: b.vpc.clone(),
            health_check_path: h.path.clone(),
            health_check_interval: h.interval.into(),
            healthy_threshold: h.healthy.into(),
            unhealthy_threshold: h.unhealthy.into(),
            matcher: "200".into(),
        }),
    )
}

pub fn live(address: Address, tg: &TargetGroup) -> Live {
    let attrs = to_attrs(&TargetGroupAttrs {
        name: tg.target_group_name().unwrap_or_default().to_string(),
        port: tg.port().unwrap_or_default().into(),
        protocol: tg
            .protocol()
            .map(|p| p.as_str())
            .unwrap_or_default()
            .to_string(),
        vpc_id: Ref::id(tg.vpc_id().unwrap_or_default()),
        health_check_path: tg.health_check_path().unwrap_or_default().to_string(),
        health_check_interval: tg
            .health_check_interval_seconds()
            .unwrap_or_default()
            .into(),
        healthy_threshold: tg.healthy_threshold_count().unwrap_or_default().into(),
        unhealthy_threshold: tg.unhealthy_threshold_count().unwrap_or_default().into(),
        matcher: tg
            .matcher()
            .and_then(|m| m.http_code())
            .unwrap_or_default()
            .to_string(),
    });
    Live {
        address,
        id: tg.target_group_arn().unwrap_or_default().to_string(),
        attrs,
        extra: Default::default(),
    }
}

fn matcher(tg: &TargetGroupAttrs) -> Matcher {
    Matcher::builder().http_code(&tg.matcher).build()
}

/// The health check's timeout: AWS wants it below the interval, and its HTTP default
/// (6 s) would refuse the 5 and 6 s intervals the stack file allows.
fn timeout_for(interval: i64) -> i32 {
    (interval - 1).clamp(2, 5) as i32
}

/// A VPC made seconds ago can be unknown to ELBv2 ("The VPC ID 'vpc-…' is not found"):
/// a `ValidationError` like any real mistake in the request, so only one naming the
/// VPC is retried.
fn fresh_vpc_not_visible(e: &Error) -> bool {
    matches!(e, Error::Aws { code, message, .. }
        if code == "ValidationError" && message.to_ascii_lowercase().contains("vpc"))
}

pub async fn create(ctx: &Ctx, a: &Address, want: TargetGroupAttrs) -> Result<Created, Error> {
    let r = retry_when(fresh_vpc_not_visible, Patience::FRESH_ID, || async {
        ctx.c
            .elb
            .create_target_group()
            .name(&want.name)
            .protocol(ProtocolEnum::from(want.protocol.as_str()))
            .port(want.port as i32)
            .vpc_id(want.vpc_id.as_id())
            .target_type(TargetTypeEnum::Instance)
            .health_check_path(&want.health_check_path)
            .health_check_interval_seconds(want.health_check_interval as i32)
            .health_check_timeout_seconds(timeout_for(want.health_check_interval))
            .healthy_threshold_count(want.healthy_threshold as i32)
            .unhealthy_threshold_count(want.unhealthy_threshold as i32)
            .matcher(matcher(&want))
            .set_tags(Some(elb_tags(ctx, a)))
            .send()
            .await
            .ctx("creating", a)
    })
    .await?;
    let arn = r
        .target_groups()
        .first()
        .and_then(|t| t.target_group_arn())
        .unwrap_or_default()
        .to_string();
    Ok((arn, Default::default()))
}

pub async fn update(
    ctx: &Ctx,
    live: &Live,
    want: TargetGroupAttrs,
    _changed: &[String],
) -> Result<(), Error> {
    ctx.c
        .elb
        .modify_target_group()
        .target_group_arn(&live.id)
        .health_check_path(&want.health_check_path)
        .health_check_interval_seconds(want.health_check_interval as i32)
        .health_check_timeout_seconds(timeout_for(want.health_check_interval))
        .healthy_threshold_count(want.healthy_threshold as i32)
        .unhealthy_threshold_count(want.unhealthy_threshold as i32)
        .matcher(matcher(&want))
        .send()
        .await
        .ctx("updating the health check of", &live.address)
        .map(drop)
}

/// What AWS answers when it is already deleted.
const GONE: &[&str] = &["TargetGroupNotFound"];

impl super::KindOps for TargetGroupAttrs {
    const FORCE_NEW: &'static [&'static str] = &[
        attr!(TargetGroupAttrs.name),
        attr!(TargetGroupAttrs.port),
        attr!(TargetGroupAttrs.protocol),
        attr!(TargetGroupAttrs.vpc_id),
    ];
    const REFERENCES: &'static [&'static str] = &[attr!(TargetGroupAttrs.vpc_id)];
    const DOWNTIME: Option<&'static str> =
        Some("downtime: requests fail until the new one is in place");
    const UNIQUE_NAME: Option<&'static str> = Some(attr!(TargetGroupAttrs.name));
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::Elbv2;
    const LISTING: super::Listing = super::Listing::LoadBalancing;

    super::writes!(typed);
    // Still referenced by a listener or rule, it answers ResourceInUse until that goes.
    super::writes! {
        delete_when_free(Patience::DEPENDENCY, GONE, |c, id| {
            c.elb.delete_target_group().target_group_arn(id)
        })
    }

    /// One call per name: DescribeTargetGroups fails whole when any name is unknown.
    async fn names_taken(c: &Clients, names: &[String], _: &LiveMap) -> Result<Vec<String>, Error> {
        super::conflicts::held_each(names, &["TargetGroupNotFound"], |n| async move {
            let r = c.elb.describe_target_groups().names(n).send().await;
            let r = r.ctx("looking up", &"target group names")?;
            Ok(!r.target_groups().is_empty())
        })
        .await
    }
}
