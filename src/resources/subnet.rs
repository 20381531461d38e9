//! Public subnets, one per availability zone, that give instances a public IP.

use super::vpc::VpcAttrs;
use super::{Created, Ctx, EC2_NOT_YET, ec2_tag_spec};
use crate::aws::{Clients, Context, Error, Patience, retry_codes};
use crate::desired::Build;
use crate::model::attr;
use crate::model::{Address, Attrs, Desired, Kind, KindAttrs, Live, Ref, from_attrs, to_attrs};
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType};
use serde::{Deserialize, Serialize};

/// A subnet's attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubnetAttrs {
    pub vpc_id: Ref<VpcAttrs>,
    pub cidr_block: String,
    pub availability_zone: String,
    pub map_public_ip_on_launch: bool,
}

impl KindAttrs for SubnetAttrs {
    const KIND: Kind = Kind::Subnet;
}

/// Per zone, the public subnet and, when the zone has one, the private subnet.
pub fn desired(b: &Build) -> Vec<Desired> {
    let spec = b.spec;
    let mut out = Vec::new();
    for s in &spec.subnets {
        let zone = format!("{}{}", b.inputs.region, s.az);
        out.push(Desired::new(
            crate::desired::subnet(s.az),
            to_attrs(&SubnetAttrs {
                vpc_id: b.vpc.clone(),
                cidr_block: s.cidr.to_string(),
                availability_zone: zone.clone(),
                map_public_ip_on_launch: !spec.private_instances,
            }),
        ));
        if let Some(p) = s.private {
            out.push(Desired::new(
                crate::desired::private_subnet(s.az),
                to_attrs(&SubnetAttrs {
                    vpc_id: b.vpc.clone(),
                    cidr_block: p.to_string(),
                    availability_zone: zone,
                    map_public_ip_on_launch: false,
                }),
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
    let (Ok(want), Ok(have)) = (
        from_attrs::<SubnetAttrs>(wanted),
        from_attrs::<SubnetAttrs>(&live.attrs),
    ) else {
        return false;
    };
    let Ok(new) = want.cidr_block.parse::<ipnet::Ipv4Net>() else {
        return false;
    };
    let same_vpc = want.vpc_id == have.vpc_id;
    let overlaps = all
        .values()
        .filter(|l| l.address.kind == Kind::Subnet)
        .filter_map(|l| from_attrs::<SubnetAttrs>(&l.attrs).ok())
        .filter_map(|l| l.cidr_block.parse::<ipnet::Ipv4Net>().ok())
        .any(|old| old.contains(&new) || new.contains(&old));
    same_vpc && !overlaps
}

pub async fn discover(c: &Clients, stack: &str) -> Result<Vec<Live>, Error> {
    let mut out = Vec::new();
    let listed = super::ec2_listing!(c.ec2.describe_subnets(), stack, "subnets", subnets);
    for (address, ref s) in listed {
        let attrs = to_attrs(&SubnetAttrs {
            vpc_id: Ref::id(s.vpc_id().unwrap_or_default()),
            cidr_block: s.cidr_block().unwrap_or_default().to_string(),
            availability_zone: s.availability_zone().unwrap_or_default().to_string(),
            map_public_ip_on_launch: s.map_public_ip_on_launch().unwrap_or(false),
        });
        let id = s.subnet_id().unwrap_or_default().to_string();
        out.push(Live {
            address,
            id,
            attrs,
            extra: Default::default(),
        });
    }
    Ok(out)
}

pub async fn create(ctx: &Ctx, a: &Address, want: SubnetAttrs) -> Result<Created, Error> {
    let r = retry_codes(EC2_NOT_YET, Patience::FRESH_ID, || async {
        ctx.c
            .ec2
            .create_subnet()
            .vpc_id(want.vpc_id.as_id())
            .cidr_block(&want.cidr_block)
            .availability_zone(&want.availability_zone)
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
    set_public_ip(ctx, a, &id, &want).await?;
    Ok((id, Default::default()))
}

async fn set_public_ip(ctx: &Ctx, a: &Address, id: &str, want: &SubnetAttrs) -> Result<(), Error> {
    let v = AttributeBooleanValue::builder()
        .value(want.map_public_ip_on_launch)
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
    want: SubnetAttrs,
    _changed: &[String],
) -> Result<(), Error> {
    set_public_ip(ctx, &live.address, &live.id, &want).await
}

/// What AWS answers when it is already deleted.
const GONE: &[&str] = &["InvalidSubnetID.NotFound"];

impl super::KindOps for SubnetAttrs {
    const FORCE_NEW: &'static [&'static str] = &[
        attr!(SubnetAttrs.vpc_id),
        attr!(SubnetAttrs.cidr_block),
        attr!(SubnetAttrs.availability_zone),
    ];
    const REFERENCES: &'static [&'static str] = &[attr!(SubnetAttrs.vpc_id)];
    const DOWNTIME: Option<&'static str> =
        Some("downtime: what runs in the subnet is replaced with it");
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::Ec2;
    const LISTING: super::Listing = super::Listing::Subnets;

    super::writes!(typed);
    super::writes! {
        delete_when_free(Patience::DEPENDENCY, GONE, |c, id| c.ec2.delete_subnet().subnet_id(id))
    }

    fn create_before_destroy(
        live: &crate::model::Live,
        wanted: &crate::model::Attrs,
        all: &std::collections::BTreeMap<crate::model::Address, crate::model::Live>,
    ) -> bool {
        create_before_destroy(live, wanted, all)
    }
}
