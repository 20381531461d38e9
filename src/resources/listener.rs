//! The load balancer's listeners: `listener.main` forwards to the default service
//! (HTTP, or HTTPS with a certificate and a security policy), and with HTTPS
//! `listener.redirect` answers plain HTTP with a permanent redirect to it.
//!
//! A port belongs to one listener at a time: switching a stack to HTTPS moves
//! `listener.main` from 80 to 443 in place (ModifyListener), and the redirect listener
//! takes 80 only once it is free (a claim, see `claims`).

use super::load_balancer::LoadBalancerAttrs;
use super::target_group::TargetGroupAttrs;
use super::{Created, Ctx, absent_ok, elbv2::elb_tags};
use crate::aws::{Context, Error, Patience, retry_codes};
use crate::desired::Build;
use crate::model::attr;
use crate::model::{Address, Attrs, Desired, Kind, KindAttrs, Live, Ref, from_attrs, to_attrs};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, Listener, ProtocolEnum, RedirectActionConfig,
    RedirectActionStatusCodeEnum,
};
use serde::{Deserialize, Serialize};

/// A listener's attributes: it forwards to a target group or answers with a redirect.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListenerAttrs {
    pub load_balancer_arn: Ref<LoadBalancerAttrs>,
    pub port: i64,
    pub protocol: String,
    /// Where a forwarding listener sends requests (absent on a redirect listener).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_target_group_arn: Option<Ref<TargetGroupAttrs>>,
    /// A redirect listener's answer: `HTTPS:443 301`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<String>,
    /// HTTPS only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_arn: Option<String>,
    /// HTTPS only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_policy: Option<String>,
}

impl KindAttrs for ListenerAttrs {
    const KIND: Kind = Kind::Listener;
}

/// The main listener (HTTP, or HTTPS with `https:`) to the default service; with
/// `https:`, the plain HTTP port's redirect too.
pub fn desired(b: &Build) -> Vec<Desired> {
    let lb = &b.spec.load_balancer;
    let mut out = Vec::new();
    let mut main = ListenerAttrs {
        load_balancer_arn: Ref::at(crate::desired::load_balancer()),
        port: lb.port.into(),
        protocol: "HTTP".into(),
        default_target_group_arn: Some(Ref::at(crate::desired::service(
            Kind::TargetGroup,
            &lb.default_service,
        ))),
        ..Default::default()
    };
    if let Some(h) = &lb.https {
        main.port = h.port.into();
        main.protocol = "HTTPS".into();
        main.certificate_arn = Some(h.certificate_arn.clone());
        main.ssl_policy = Some(h.ssl_policy.clone());
        // Plain HTTP only answers with a permanent redirect to HTTPS.
        out.push(Desired::new(
            Address::new(Kind::Listener, "redirect"),
            to_attrs(&ListenerAttrs {
                load_balancer_arn: Ref::at(crate::desired::load_balancer()),
                port: lb.port.into(),
                protocol: "HTTP".into(),
                redirect: Some(format!("HTTPS:{} 301", h.port)),
                ..Default::default()
            }),
        ));
    }
    out.push(Desired::new(crate::desired::listener(), to_attrs(&main)));
    out
}

pub fn live(address: Address, l: &Listener) -> Live {
    let action = l.default_actions().first();
    let mut have = ListenerAttrs {
        load_balancer_arn: Ref::id(l.load_balancer_arn().unwrap_or_default()),
        port: l.port().unwrap_or_default().into(),
        protocol: l
            .protocol()
            .map(|p| p.as_str())
            .unwrap_or_default()
            .to_string(),
        ..Default::default()
    };
    match action.and_then(|a| a.redirect_config()) {
        Some(r) => {
            have.redirect = Some(format!(
                "{}:{} {}",
                r.protocol().unwrap_or_default(),
                r.port().unwrap_or_default(),
                r.status_code()
                    .map(|c| c.as_str().trim_start_matches("HTTP_"))
                    .unwrap_or_default()
            ));
        }
        None => {
            let tg = action
                .and_then(|a| a.target_group_arn())
                .unwrap_or_default();
            have.default_target_group_arn = Some(Ref::id(tg));
        }
    }
    if let Some(c) = l.certificates().first() {
        have.certificate_arn = Some(c.certificate_arn().unwrap_or_default().to_string());
    }
    // HTTPS only: moto reports a policy on HTTP listeners too, AWS none.
    if let Some(p) = l.ssl_policy()
        && l.protocol() == Some(&ProtocolEnum::Https)
    {
        have.ssl_policy = Some(p.to_string());
    }
    Live {
        address,
        id: l.listener_arn().unwrap_or_default().to_string(),
        attrs: to_attrs(&have),
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

fn default_action(want: &ListenerAttrs) -> Action {
    match want.redirect.as_deref().unwrap_or_default() {
        "" => forward(
            want.default_target_group_arn
                .as_ref()
                .map(Ref::as_id)
                .unwrap_or_default(),
        ),
        r => redirect(r),
    }
}

/// The certificate, for an HTTPS listener only.
fn certificates(want: &ListenerAttrs) -> Option<Vec<Certificate>> {
    let arn = want.certificate_arn.as_deref().unwrap_or_default();
    (!arn.is_empty()).then(|| vec![Certificate::builder().certificate_arn(arn).build()])
}

fn ssl_policy(want: &ListenerAttrs) -> Option<String> {
    want.ssl_policy.clone().filter(|p| !p.is_empty())
}

/// A listener holds its port on its load balancer. Malformed attributes read as
/// empty, as a missing attribute does.
pub fn claims(attrs: &Attrs) -> Vec<String> {
    let l: ListenerAttrs = from_attrs(attrs).unwrap_or_default();
    vec![format!("{}#port={}", l.load_balancer_arn.as_id(), l.port)]
}

pub async fn create(ctx: &Ctx, a: &Address, want: ListenerAttrs) -> Result<Created, Error> {
    let r = retry_codes(
        &["TargetGroupNotFound", "LoadBalancerNotFound"],
        Patience::FRESH_ID,
        || async {
            ctx.c
                .elb
                .create_listener()
                .load_balancer_arn(want.load_balancer_arn.as_id())
                .port(want.port as i32)
                .protocol(ProtocolEnum::from(want.protocol.as_str()))
                .set_certificates(certificates(&want))
                .set_ssl_policy(ssl_policy(&want))
                .default_actions(default_action(&want))
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
    want: ListenerAttrs,
    _changed: &[String],
) -> Result<(), Error> {
    ctx.c
        .elb
        .modify_listener()
        .listener_arn(&live.id)
        .port(want.port as i32)
        .protocol(ProtocolEnum::from(want.protocol.as_str()))
        .set_certificates(certificates(&want))
        .set_ssl_policy(ssl_policy(&want))
        .default_actions(default_action(&want))
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

impl super::KindOps for ListenerAttrs {
    const FORCE_NEW: &'static [&'static str] = &[attr!(ListenerAttrs.load_balancer_arn)];
    const REFERENCES: &'static [&'static str] = &[
        attr!(ListenerAttrs.load_balancer_arn),
        attr!(ListenerAttrs.default_target_group_arn),
    ];
    const DOWNTIME: Option<&'static str> =
        Some("downtime: requests fail until the new one is in place");
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::Elbv2;
    const LISTING: super::Listing = super::Listing::LoadBalancing;

    super::writes!(typed);
    super::writes!(delete);

    fn claims(attrs: &crate::model::Attrs) -> Vec<String> {
        claims(attrs)
    }
}
