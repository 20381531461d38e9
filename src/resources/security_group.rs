//! Security groups: the load balancer's (the listener port from `ingress`) and one per
//! service (its port, only from the load balancer's group). Ingress rules are a set of
//! `[port, source]` pairs, where the source is a CIDR block or a group id.

use super::delete_when_free;
use super::{
    Created, Ctx, EC2_NOT_YET, absent_ok, attr_str, ec2_owned, ec2_owner_filter, ec2_tag_spec,
};
use crate::aws::{Clients, Context, Error, Patience, retry_codes};
use crate::desired::Build;
use crate::model::{Address, Attrs, Live, Value};
use crate::model::{Desired, Kind, attrs};
use crate::spec::ServiceSpec;
use aws_sdk_ec2::types::{IpPermission, IpRange, ResourceType, UserIdGroupPair};

pub const FORCE_NEW: &[&str] = &["vpc_id", "group_name", "description"];

/// A security group: inbound `(port, source)` pairs, a source being a CIDR block or
/// another group.
fn group(
    b: &Build,
    address: Address,
    group_name: String,
    description: String,
    ingress: Vec<(u16, Value)>,
) -> Desired {
    Desired::new(
        address,
        attrs([
            ("vpc_id", Value::from(b.vpc.clone())),
            ("group_name", Value::s(group_name)),
            ("description", Value::s(description)),
            (
                "ingress",
                Value::List(
                    ingress
                        .into_iter()
                        .map(|(port, source)| Value::List(vec![Value::Int(port.into()), source]))
                        .collect(),
                ),
            ),
        ]),
    )
}

/// With `network.ssm_endpoints`, the endpoints' group: HTTPS from inside the VPC.
pub fn for_endpoints(b: &Build) -> Vec<Desired> {
    if !b.spec.ssm_endpoints {
        return Vec::new();
    }
    let stack = &b.spec.stack;
    vec![group(
        b,
        crate::desired::endpoints_sg(),
        format!("{stack}-endpoints"),
        format!("stack {stack}: Session Manager endpoints"),
        vec![(443, Value::s(b.spec.vpc_cidr.to_string()))],
    )]
}

/// The load balancer's group: its listener ports from the file's `ingress` CIDRs.
pub fn for_load_balancer(b: &Build) -> Vec<Desired> {
    let stack = &b.spec.stack;
    let lb = &b.spec.load_balancer;
    vec![group(
        b,
        crate::desired::alb_sg(),
        format!("{stack}-alb"),
        format!("stack {stack}: load balancer"),
        lb.listener_ports()
            .iter()
            .flat_map(|p| {
                lb.ingress
                    .iter()
                    .map(move |c| (*p, Value::s(c.to_string())))
            })
            .collect(),
    )]
}

/// A service's instances' group: its port from the load balancer's group only.
pub fn for_service(b: &Build, svc: &ServiceSpec) -> Desired {
    let (stack, name) = (&b.spec.stack, &svc.name);
    group(
        b,
        crate::desired::service(Kind::SecurityGroup, name),
        format!("{stack}-{name}"),
        format!("stack {stack}: service {name} instances"),
        vec![(svc.port, Value::r(&crate::desired::alb_sg()))],
    )
}

pub async fn discover(c: &Clients, stack: &str) -> Result<Vec<Live>, Error> {
    let mut pages = c
        .ec2
        .describe_security_groups()
        .filters(ec2_owner_filter(stack))
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        for g in page.ctx("listing", &"security groups")?.security_groups() {
            let Some(address) = ec2_owned(stack, g.tags()) else {
                continue;
            };
            let mut rules = Vec::new();
            for p in g.ip_permissions() {
                if p.ip_protocol() != Some("tcp") || p.from_port() != p.to_port() {
                    // Not a rule this tool writes; keep it visible so the diff removes it.
                    rules.push(Value::List(vec![Value::s(format!(
                        "{}:{}-{}",
                        p.ip_protocol().unwrap_or_default(),
                        p.from_port().unwrap_or(-1),
                        p.to_port().unwrap_or(-1)
                    ))]));
                    continue;
                }
                let port = Value::Int(p.from_port().unwrap_or_default().into());
                for r in p.ip_ranges() {
                    rules.push(Value::List(vec![
                        port.clone(),
                        Value::s(r.cidr_ip().unwrap_or_default()),
                    ]));
                }
                for pair in p.user_id_group_pairs() {
                    rules.push(Value::List(vec![
                        port.clone(),
                        Value::s(pair.group_id().unwrap_or_default()),
                    ]));
                }
            }
            let attrs = Attrs::from([
                ("vpc_id".into(), Value::s(g.vpc_id().unwrap_or_default())),
                (
                    "group_name".into(),
                    Value::s(g.group_name().unwrap_or_default()),
                ),
                (
                    "description".into(),
                    Value::s(g.description().unwrap_or_default()),
                ),
                ("ingress".into(), Value::List(rules)),
            ]);
            let id = g.group_id().unwrap_or_default().to_string();
            out.push(Live {
                address,
                id,
                attrs,
                extra: Default::default(),
            });
        }
    }
    Ok(out)
}

/// One permission per rule: a TCP port from a CIDR block or from a group.
fn permission(rule: &Value) -> Option<IpPermission> {
    let items = rule.as_list();
    let port = items.first()?.as_i64()? as i32;
    let source = items.get(1)?.as_str()?;
    let b = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(port)
        .to_port(port);
    Some(if source.starts_with("sg-") {
        b.user_id_group_pairs(UserIdGroupPair::builder().group_id(source).build())
            .build()
    } else {
        b.ip_ranges(IpRange::builder().cidr_ip(source).build())
            .build()
    })
}

/// Rules that are not `[port, source]` pairs (added by hand) are revoked as written.
fn raw_permission(rule: &Value) -> Option<IpPermission> {
    let text = rule.as_list().first()?.as_str()?;
    let (proto, ports) = text.split_once(':')?;
    let (from, to) = ports.split_once('-')?;
    Some(
        IpPermission::builder()
            .ip_protocol(proto)
            .from_port(from.parse().ok()?)
            .to_port(to.parse().ok()?)
            .build(),
    )
}

async fn authorize(ctx: &Ctx, a: &Address, id: &str, rules: &[Value]) -> Result<(), Error> {
    let perms: Vec<IpPermission> = rules.iter().filter_map(permission).collect();
    if perms.is_empty() {
        return Ok(());
    }
    retry_codes(EC2_NOT_YET, Patience::FRESH_ID, || async {
        absent_ok(
            ctx.c
                .ec2
                .authorize_security_group_ingress()
                .group_id(id)
                .set_ip_permissions(Some(perms.clone()))
                .send()
                .await
                .ctx("adding ingress rules to", a),
            &["InvalidPermission.Duplicate"],
        )
    })
    .await
}

pub async fn create(ctx: &Ctx, a: &Address, attrs: &Attrs) -> Result<Created, Error> {
    let r = retry_codes(EC2_NOT_YET, Patience::FRESH_ID, || async {
        ctx.c
            .ec2
            .create_security_group()
            .group_name(attr_str(attrs, "group_name"))
            .description(attr_str(attrs, "description"))
            .vpc_id(attr_str(attrs, "vpc_id"))
            .tag_specifications(ec2_tag_spec(ctx, a, ResourceType::SecurityGroup))
            .send()
            .await
            .ctx("creating", a)
    })
    .await?;
    let id = r.group_id().unwrap_or_default().to_string();
    let rules = attrs
        .get("ingress")
        .map(|v| v.as_list().to_vec())
        .unwrap_or_default();
    authorize(ctx, a, &id, &rules).await?;
    Ok((id, Default::default()))
}

pub async fn update(
    ctx: &Ctx,
    live: &Live,
    attrs: &Attrs,
    _changed: &[String],
) -> Result<(), Error> {
    // Rules are compared as sets, but sent as written: `normalized` also sorts the
    // inside of each `[port, source]` pair, which would no longer read as a rule.
    let rules = |a: &Attrs| {
        a.get("ingress")
            .map(|v| v.as_list().to_vec())
            .unwrap_or_default()
    };
    let (want, have) = (rules(attrs), rules(&live.attrs));
    let among = |r: &Value, set: &[Value]| set.iter().any(|s| s.normalized() == r.normalized());
    let gone: Vec<IpPermission> = have
        .iter()
        .filter(|r| !among(r, &want))
        .filter_map(|r| permission(r).or_else(|| raw_permission(r)))
        .collect();
    if !gone.is_empty() {
        ctx.c
            .ec2
            .revoke_security_group_ingress()
            .group_id(&live.id)
            .set_ip_permissions(Some(gone))
            .send()
            .await
            .ctx("removing ingress rules from", &live.address)?;
    }
    let added: Vec<Value> = want.iter().filter(|r| !among(r, &have)).cloned().collect();
    authorize(ctx, &live.address, &live.id, &added).await
}

/// What AWS answers when it is already deleted.
const GONE: &[&str] = &["InvalidGroup.NotFound"];

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    let send = || ctx.c.ec2.delete_security_group().group_id(&live.id).send();
    delete_when_free(Patience::DEPENDENCY, GONE, &live.address, send).await
}
