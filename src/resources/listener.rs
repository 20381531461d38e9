//! The load balancer's HTTP listener, forwarding to the default service.

use super::{Created, Ctx, absent_ok, attr_i64, attr_str, elbv2::elb_tags};
use crate::aws::{Context, Error, Patience, retry_codes};
use crate::model::{Address, Attrs, Live, Value};
use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, Listener, ProtocolEnum};

pub const FORCE_NEW: &[&str] = &["load_balancer_arn"];

pub fn live(address: Address, l: &Listener) -> Live {
    let tg = l
        .default_actions()
        .first()
        .and_then(|a| a.target_group_arn())
        .unwrap_or_default();
    let attrs = Attrs::from([
        (
            "load_balancer_arn".into(),
            Value::s(l.load_balancer_arn().unwrap_or_default()),
        ),
        (
            "port".into(),
            Value::Int(l.port().unwrap_or_default().into()),
        ),
        (
            "protocol".into(),
            Value::s(l.protocol().map(|p| p.as_str()).unwrap_or_default()),
        ),
        ("default_target_group_arn".into(), Value::s(tg)),
    ]);
    Live {
        address,
        id: l.listener_arn().unwrap_or_default().to_string(),
        attrs,
        extra: Default::default(),
    }
}

pub(crate) fn forward(tg: &str) -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(tg)
        .build()
}

pub async fn create(ctx: &Ctx, a: &Address, attrs: &Attrs) -> Result<Created, Error> {
    let r = retry_codes(
        &["TargetGroupNotFound", "LoadBalancerNotFound"],
        Patience::FRESH_ID,
        || async {
            ctx.c
                .elb
                .create_listener()
                .load_balancer_arn(attr_str(attrs, "load_balancer_arn"))
                .port(attr_i64(attrs, "port") as i32)
                .protocol(ProtocolEnum::from(attr_str(attrs, "protocol")))
                .default_actions(forward(attr_str(attrs, "default_target_group_arn")))
                .set_tags(Some(elb_tags(ctx, a)))
                .send()
                .await
                .ctx("creating", a)
        },
    )
    .await?;
    let arn = r
        .listeners()
        .first()
        .and_then(|l| l.listener_arn())
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
        .modify_listener()
        .listener_arn(&live.id)
        .port(attr_i64(attrs, "port") as i32)
        .protocol(ProtocolEnum::from(attr_str(attrs, "protocol")))
        .default_actions(forward(attr_str(attrs, "default_target_group_arn")))
        .send()
        .await
        .ctx("updating", &live.address)
        .map(drop)
}

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    absent_ok(
        ctx.c
            .elb
            .delete_listener()
            .listener_arn(&live.id)
            .send()
            .await
            .ctx("deleting", &live.address),
        &["ListenerNotFound"],
    )
}
