//! Public subnets, one per availability zone, that give instances a public IP.

use super::delete_when_free;
use super::vpc::VpcAttrs;
use super::{
    Created, Ctx, EC2_NOT_YET, attr_bool, attr_str, ec2_owned, ec2_owner_filter, ec2_tag_spec,
};
use crate::aws::{Clients, Context, Error, Patience, retry_codes};
use crate::desired::Build;
use crate::model::Ref;
use crate::model::{Address, Attrs, Live, Value};
use crate::model::{Desired, attrs};
use crate::model::{Kind, KindAttrs};
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType};
use serde::{Deserialize, Serialize};

/// A subnet's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubnetAttrs {
    pub vpc_id: Ref<VpcAttrs>,
    pub cidr_block: String,
    pub availability_zone: String,
    pub map_public_ip_on_launch: bool,
}

impl KindAttrs for SubnetAttrs {
    const KIND: Kind = Kind::Subnet;
}

pub const FORCE_NEW: &[&str] = &["vpc_id", "cidr_block", "availability_zone"];

/// Per zone, the public subnet and, when the zone has one, the private subnet.
pub fn desired(b: &Build) -> Vec<Desired> {
    let spec = b.spec;
    let mut out = Vec::new();
    for s in &spec.subnets {
        let zone = Value::s(format!("{}{}", b.inputs.region, s.az));
        out.push(Desired::new(
            crate::desired::subnet(s.az),
            attrs([
                ("vpc_id", Value::from(b.vpc.clone())),
                ("cidr_block", Value::s(s.cidr.to_string())),
                ("availability_zone", zone.clone()),
                (
                    "map_public_ip_on_launch",
                    Value::Bool(!spec.private_instances),
                ),
            ]),
        ));
        if let Some(p) = s.private {
            out.push(Desired::new(
                crate::desired::private_subnet(s.az),
                attrs([
                    ("vpc_id", Value::from(b.vpc.clone())),
                    ("cidr_block", Value::s(p.to_string())),
                    ("availability_zone", zone),
                    ("map_public_ip_on_launch", Value::Bool(false)),
                ]),
            ));
        }
    }
    out
}

/// A subnet with a new CIDR can stand beside the old one while the load balancer and
/// the groups move to it, as long as it stays in the same VPC and overlaps no live
/// subnet (AWS refuses overlapping subnets: `InvalidSubnet.Conflict`).
pub fn create_before_destroy(
    live: &Live,
    wanted: &Attrs,
    all: &std::collections::BTreeMap<Address, Live>,
) -> bool {
    let Ok(new) = attr_str(wanted, "cidr_block").parse::<ipnet::Ipv4Net>() else {
        return false;
    };
    let same_vpc = wanted.get("vpc_id") == live.attrs.get("vpc_id");
    let overlaps = all
        .values()
        .filter(|l| l.address.kind == crate::model::Kind::Subnet)
        .filter_map(|l| {
            attr_str(&l.attrs, "cidr_block")
                .parse::<ipnet::Ipv4Net>()
                .ok()
        })
        .any(|old| old.contains(&new) || new.contains(&old));
    same_vpc && !overlaps
}

pub async fn discover(c: &Clients, stack: &str) -> Result<Vec<Live>, Error> {
    let mut pages = c
        .ec2
        .describe_subnets()
        .filters(ec2_owner_filter(stack))
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        for s in page.ctx("listing", &"subnets")?.subnets() {
            let Some(address) = ec2_owned(stack, s.tags()) else {
                continue;
            };
            let attrs = Attrs::from([
                ("vpc_id".into(), Value::s(s.vpc_id().unwrap_or_default())),
                (
                    "cidr_block".into(),
                    Value::s(s.cidr_block().unwrap_or_default()),
                ),
                (
                    "availability_zone".into(),
                    Value::s(s.availability_zone().unwrap_or_default()),
                ),
                (
                    "map_public_ip_on_launch".into(),
                    Value::Bool(s.map_public_ip_on_launch().unwrap_or(false)),
                ),
            ]);
            let id = s.subnet_id().unwrap_or_default().to_string();
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

pub async fn create(ctx: &Ctx, a: &Address, attrs: &Attrs) -> Result<Created, Error> {
    let r = retry_codes(EC2_NOT_YET, Patience::FRESH_ID, || async {
        ctx.c
            .ec2
            .create_subnet()
            .vpc_id(attr_str(attrs, "vpc_id"))
            .cidr_block(attr_str(attrs, "cidr_block"))
            .availability_zone(attr_str(attrs, "availability_zone"))
            .tag_specifications(ec2_tag_spec(ctx, a, ResourceType::Subnet))
            .send()
            .await
            .ctx("creating", a)
    })
    .await?;
    let id = r
        .subnet()
        .and_then(|s| s.subnet_id())
        .unwrap_or_default()
        .to_string();
    set_public_ip(ctx, a, &id, attrs).await?;
    Ok((id, Default::default()))
}

async fn set_public_ip(ctx: &Ctx, a: &Address, id: &str, attrs: &Attrs) -> Result<(), Error> {
    let v = AttributeBooleanValue::builder()
        .value(attr_bool(attrs, "map_public_ip_on_launch"))
        .build();
    retry_codes(EC2_NOT_YET, Patience::FRESH_ID, || async {
        ctx.c
            .ec2
            .modify_subnet_attribute()
            .subnet_id(id)
            .map_public_ip_on_launch(v.clone())
            .send()
            .await
            .ctx("setting public IPs on", a)
    })
    .await
    .map(drop)
}

pub async fn update(
    ctx: &Ctx,
    live: &Live,
    attrs: &Attrs,
    _changed: &[String],
) -> Result<(), Error> {
    set_public_ip(ctx, &live.address, &live.id, attrs).await
}

/// What AWS answers when it is already deleted.
const GONE: &[&str] = &["InvalidSubnetID.NotFound"];

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    let send = || ctx.c.ec2.delete_subnet().subnet_id(&live.id).send();
    delete_when_free(Patience::DEPENDENCY, GONE, &live.address, send).await
}
