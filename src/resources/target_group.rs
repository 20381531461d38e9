//! One target group per service, with the service's health check.

use super::delete_when_free;
use super::vpc::VpcAttrs;
use super::{Created, Ctx, attr_i64, attr_str, elbv2::elb_tags};
use crate::aws::{Context, Error, Patience, retry_when};
use crate::desired::Build;
use crate::model::KindAttrs;
use crate::model::Ref;
use crate::model::{Address, Attrs, Live, Value};
use crate::model::{Desired, Kind, attrs};
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

pub const FORCE_NEW: &[&str] = &["name", "port", "protocol", "vpc_id"];

/// A service's target group, with the file's health check.
pub fn desired(b: &Build, svc: &ServiceSpec) -> Desired {
    let (stack, name) = (&b.spec.stack, &svc.name);
    let h = &svc.health;
    Desired::new(
        crate::desired::service(Kind::TargetGroup, name),
        attrs([
            ("name", Value::s(format!("{stack}-{name}"))),
            ("port", Value::Int(svc.port.into())),
            ("protocol", Value::s("HTTP")),
            ("vpc_id", Value::from(b.vpc.clone())),
            ("health_check_path", Value::s(&h.path)),
            ("health_check_interval", Value::Int(h.interval.into())),
            ("healthy_threshold", Value::Int(h.healthy.into())),
            ("unhealthy_threshold", Value::Int(h.unhealthy.into())),
            ("matcher", Value::s("200")),
        ]),
    )
}

pub fn live(address: Address, tg: &TargetGroup) -> Live {
    let attrs = Attrs::from([
        (
            "name".into(),
            Value::s(tg.target_group_name().unwrap_or_default()),
        ),
        (
            "port".into(),
            Value::Int(tg.port().unwrap_or_default().into()),
        ),
        (
            "protocol".into(),
            Value::s(tg.protocol().map(|p| p.as_str()).unwrap_or_default()),
        ),
        ("vpc_id".into(), Value::s(tg.vpc_id().unwrap_or_default())),
        (
            "health_check_path".into(),
            Value::s(tg.health_check_path().unwrap_or_default()),
        ),
        (
            "health_check_interval".into(),
            Value::Int(
                tg.health_check_interval_seconds()
                    .unwrap_or_default()
                    .into(),
            ),
        ),
        (
            "healthy_threshold".into(),
            Value::Int(tg.healthy_threshold_count().unwrap_or_default().into()),
        ),
        (
            "unhealthy_threshold".into(),
            Value::Int(tg.unhealthy_threshold_count().unwrap_or_default().into()),
        ),
        (
            "matcher".into(),
            Value::s(tg.matcher().and_then(|m| m.http_code()).unwrap_or_default()),
        ),
    ]);
    Live {
        address,
        id: tg.target_group_arn().unwrap_or_default().to_string(),
        attrs,
        extra: Default::default(),
    }
}

fn matcher(attrs: &Attrs) -> Matcher {
    Matcher::builder()
        .http_code(attr_str(attrs, "matcher"))
        .build()
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

pub async fn create(ctx: &Ctx, a: &Address, attrs: &Attrs) -> Result<Created, Error> {
    let r = retry_when(fresh_vpc_not_visible, Patience::FRESH_ID, || async {
        ctx.c
            .elb
            .create_target_group()
            .name(attr_str(attrs, "name"))
            .protocol(ProtocolEnum::from(attr_str(attrs, "protocol")))
            .port(attr_i64(attrs, "port") as i32)
            .vpc_id(attr_str(attrs, "vpc_id"))
            .target_type(TargetTypeEnum::Instance)
            .health_check_path(attr_str(attrs, "health_check_path"))
            .health_check_interval_seconds(attr_i64(attrs, "health_check_interval") as i32)
            .health_check_timeout_seconds(timeout_for(attr_i64(attrs, "health_check_interval")))
            .healthy_threshold_count(attr_i64(attrs, "healthy_threshold") as i32)
            .unhealthy_threshold_count(attr_i64(attrs, "unhealthy_threshold") as i32)
            .matcher(matcher(attrs))
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
    attrs: &Attrs,
    _changed: &[String],
) -> Result<(), Error> {
    ctx.c
        .elb
        .modify_target_group()
        .target_group_arn(&live.id)
        .health_check_path(attr_str(attrs, "health_check_path"))
        .health_check_interval_seconds(attr_i64(attrs, "health_check_interval") as i32)
        .health_check_timeout_seconds(timeout_for(attr_i64(attrs, "health_check_interval")))
        .healthy_threshold_count(attr_i64(attrs, "healthy_threshold") as i32)
        .unhealthy_threshold_count(attr_i64(attrs, "unhealthy_threshold") as i32)
        .matcher(matcher(attrs))
        .send()
        .await
        .ctx("updating the health check of", &live.address)
        .map(drop)
}

/// What AWS answers when it is already deleted.
const GONE: &[&str] = &["TargetGroupNotFound"];

/// A target group still referenced by a listener or rule answers ResourceInUse until
/// that reference is gone.
pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    let (elb, id) = (&ctx.c.elb, &live.id);
    let send = || elb.delete_target_group().target_group_arn(id).send();
    delete_when_free(Patience::DEPENDENCY, GONE, &live.address, send).await
}
