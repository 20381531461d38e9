//! The load balancer's listeners: `listener.main` forwards to the default service
//! (HTTP, or HTTPS with a certificate and a security policy), and with HTTPS
//! `listener.redirect` answers plain HTTP with a permanent redirect to it.
//!
//! A port belongs to one listener at a time: switching a stack to HTTPS moves
//! `listener.main` from 80 to 443 in place (ModifyListener), and the redirect listener
//! takes 80 only once it is free (a claim, see `claims`).

use super::{Created, Ctx, absent_ok, attr_i64, attr_str, elbv2::elb_tags};
use crate::aws::{Context, Error, Patience, retry_codes};
use crate::desired::Build;
use crate::model::{Address, Attrs, Live, Value};
use crate::model::{Desired, Kind, attrs};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, Listener, ProtocolEnum, RedirectActionConfig,
    RedirectActionStatusCodeEnum,
};

pub const FORCE_NEW: &[&str] = &["load_balancer_arn"];

/// The main listener (HTTP, or HTTPS with `https:`) to the default service; with
/// `https:`, the plain HTTP port's redirect too.
pub fn desired(b: &Build) -> Vec<Desired> {
    let lb = &b.spec.load_balancer;
    let mut out = Vec::new();
    let mut main = attrs([
        (
            "load_balancer_arn",
            Value::r(&crate::desired::load_balancer()),
        ),
        ("port", Value::Int(lb.port.into())),
        ("protocol", Value::s("HTTP")),
        (
            "default_target_group_arn",
            Value::r(&crate::desired::service(
                Kind::TargetGroup,
                &lb.default_service,
            )),
        ),
    ]);
    if let Some(h) = &lb.https {
        main.insert("port".into(), Value::Int(h.port.into()));
        main.insert("protocol".into(), Value::s("HTTPS"));
        main.insert("certificate_arn".into(), Value::s(&h.certificate_arn));
        main.insert("ssl_policy".into(), Value::s(&h.ssl_policy));
        // Plain HTTP only answers with a permanent redirect to HTTPS.
        out.push(Desired::new(
            Address::new(Kind::Listener, "redirect"),
            attrs([
                (
                    "load_balancer_arn",
                    Value::r(&crate::desired::load_balancer()),
                ),
                ("port", Value::Int(lb.port.into())),
                ("protocol", Value::s("HTTP")),
                ("redirect", Value::s(format!("HTTPS:{} 301", h.port))),
            ]),
        ));
    }
    out.push(Desired::new(crate::desired::listener(), main));
    out
}

pub fn live(address: Address, l: &Listener) -> Live {
    let action = l.default_actions().first();
    let mut attrs = Attrs::from([
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
    ]);
    match action.and_then(|a| a.redirect_config()) {
        Some(r) => {
            attrs.insert(
                "redirect".into(),
                Value::s(format!(
                    "{}:{} {}",
                    r.protocol().unwrap_or_default(),
                    r.port().unwrap_or_default(),
                    r.status_code()
                        .map(|c| c.as_str().trim_start_matches("HTTP_"))
                        .unwrap_or_default()
                )),
            );
        }
        None => {
            let tg = action
                .and_then(|a| a.target_group_arn())
                .unwrap_or_default();
            attrs.insert("default_target_group_arn".into(), Value::s(tg));
        }
    }
    if let Some(c) = l.certificates().first() {
        attrs.insert(
            "certificate_arn".into(),
            Value::s(c.certificate_arn().unwrap_or_default()),
        );
    }
    // HTTPS only: moto reports a policy on HTTP listeners too, AWS none.
    if let Some(p) = l.ssl_policy()
        && l.protocol() == Some(&ProtocolEnum::Https)
    {
        attrs.insert("ssl_policy".into(), Value::s(p));
    }
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

/// `HTTPS:443 301` → a redirect keeping host, path and query.
fn redirect(spec: &str) -> Action {
    let (target, code) = spec.split_once(' ').unwrap_or((spec, "301"));
    let (protocol, port) = target.split_once(':').unwrap_or((target, "443"));
    Action::builder()
        .r#type(ActionTypeEnum::Redirect)
        .redirect_config(
            RedirectActionConfig::builder()
                .protocol(protocol)
                .port(port)
                .status_code(RedirectActionStatusCodeEnum::from(
                    format!("HTTP_{code}").as_str(),
                ))
                .build(),
        )
        .build()
}

fn default_action(attrs: &Attrs) -> Action {
    match attr_str(attrs, "redirect") {
        "" => forward(attr_str(attrs, "default_target_group_arn")),
        r => redirect(r),
    }
}

/// The certificate, for an HTTPS listener only.
fn certificates(attrs: &Attrs) -> Option<Vec<Certificate>> {
    let arn = attr_str(attrs, "certificate_arn");
    (!arn.is_empty()).then(|| vec![Certificate::builder().certificate_arn(arn).build()])
}

fn ssl_policy(attrs: &Attrs) -> Option<String> {
    Some(attr_str(attrs, "ssl_policy").to_string()).filter(|p| !p.is_empty())
}

/// A listener holds its port on its load balancer.
pub fn claims(attrs: &Attrs) -> Vec<String> {
    vec![format!(
        "{}#port={}",
        attr_str(attrs, "load_balancer_arn"),
        attr_i64(attrs, "port")
    )]
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
                .set_certificates(certificates(attrs))
                .set_ssl_policy(ssl_policy(attrs))
                .default_actions(default_action(attrs))
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

/// Port, protocol, certificate, policy and action in one ModifyListener: HTTP to
/// HTTPS (or back) happens in place, the rules staying on the listener.
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
        .set_certificates(certificates(attrs))
        .set_ssl_policy(ssl_policy(attrs))
        .default_actions(default_action(attrs))
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

/// This kind's life, as the registry (`resources::KindOps`) calls it.
pub(crate) struct Ops;

impl super::KindOps for Ops {
    const FORCE_NEW: &'static [&'static str] = FORCE_NEW;
    const REFERENCES: &'static [&'static str] = &["load_balancer_arn", "default_target_group_arn"];
    const DOWNTIME: Option<&'static str> =
        Some("downtime: requests fail until the new one is in place");
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::Elbv2;
    const LISTING: super::Listing = super::Listing::LoadBalancing;

    super::writes!(map);

    fn claims(attrs: &crate::model::Attrs) -> Vec<String> {
        claims(attrs)
    }
}
