//! The stack's VPC, with DNS support and hostnames on (instances need them to reach
//! AWS endpoints by name).

use super::{Created, Ctx, EC2_NOT_YET, absent_ok, changed, ec2_tag_spec};
use crate::aws::{Clients, Context, Error, Patience, retry_codes};
use crate::desired::Build;
use crate::model::attr;
use crate::model::{Address, Attrs, Live};
use crate::model::{Desired, Kind, KindAttrs, from_attrs, to_attrs};
use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, ResourceType, SecurityGroup, VpcAttributeName,
};
use serde::{Deserialize, Serialize};

/// The VPC's attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VpcAttrs {
    pub cidr_block: String,
    pub enable_dns_support: bool,
    pub enable_dns_hostnames: bool,
    /// Inbound and outbound rules of the VPC's default security group.
    pub default_security_group_rules: i64,
}

impl KindAttrs for VpcAttrs {
    const KIND: Kind = Kind::Vpc;
}

/// The stack's one VPC.
pub fn desired(b: &Build) -> Vec<Desired> {
    vec![Desired::new(
        crate::desired::vpc(),
        to_attrs(&VpcAttrs {
            cidr_block: b.spec.vpc_cidr.to_string(),
            enable_dns_support: true,
            enable_dns_hostnames: true,
            // Security Hub EC2.2: the default security group allows nothing.
            default_security_group_rules: 0,
        }),
    )]
}

pub async fn discover(c: &Clients, stack: &str) -> Result<Vec<Live>, Error> {
    let mut out = Vec::new();
    let listed = super::ec2_listing!(c.ec2.describe_vpcs(), stack, "VPCs", vpcs);
    for (address, ref v) in listed {
        let id = v.vpc_id().unwrap_or_default().to_string();
        let (support, hostnames, default_group) = tokio::try_join!(
            dns_attr(c, &id, VpcAttributeName::EnableDnsSupport),
            dns_attr(c, &id, VpcAttributeName::EnableDnsHostnames),
            default_group(c, &id),
        )?;
        let rules = default_group.map_or(0, |g| {
            g.ip_permissions().len() + g.ip_permissions_egress().len()
        });
        let attrs = to_attrs(&VpcAttrs {
            cidr_block: v.cidr_block().unwrap_or_default().to_string(),
            enable_dns_support: support,
            enable_dns_hostnames: hostnames,
            default_security_group_rules: rules as i64,
        });
        out.push(Live {
            address,
            id,
            attrs,
            extra: Default::default(),
        });
    }
    Ok(out)
}

/// The VPC's default security group, which AWS creates with every VPC (allowing all
/// traffic among its members and all traffic out).
async fn default_group(c: &Clients, vpc: &str) -> Result<Option<SecurityGroup>, Error> {
    let filter = |name: &str, value: &str| Filter::builder().name(name).values(value).build();
    let r = retry_codes(EC2_NOT_YET, Patience::FRESH_ID, || async {
        c.ec2
            .describe_security_groups()
            .filters(filter("vpc-id", vpc))
            .filters(filter("group-name", "default"))
            .send()
            .await
            .ctx("reading the default security group of", &vpc)
    })
    .await?;
    Ok(r.security_groups().first().cloned())
}

/// Strips every rule of the VPC's default security group (Security Hub EC2.2): nothing
/// uses it, and a resource put into it by mistake must not be reachable.
async fn close_default_group(ctx: &Ctx, a: &Address, vpc: &str) -> Result<(), Error> {
    let Some(g) = default_group(&ctx.c, vpc).await? else {
        return Ok(());
    };
    let id = g.group_id().unwrap_or_default();
    if !g.ip_permissions().is_empty() {
        absent_ok(
            ctx.c
                .ec2
                .revoke_security_group_ingress()
                .group_id(id)
                .set_ip_permissions(Some(g.ip_permissions().to_vec()))
                .send()
                .await
                .ctx("closing the default security group of", a),
            &["InvalidPermission.NotFound"],
        )?;
    }
    if !g.ip_permissions_egress().is_empty() {
        absent_ok(
            ctx.c
                .ec2
                .revoke_security_group_egress()
                .group_id(id)
                .set_ip_permissions(Some(g.ip_permissions_egress().to_vec()))
                .send()
                .await
                .ctx("closing the default security group of", a),
            &["InvalidPermission.NotFound"],
        )?;
    }
    Ok(())
}

async fn dns_attr(c: &Clients, id: &str, name: VpcAttributeName) -> Result<bool, Error> {
    // Listed a moment ago, yet a fresh VPC can still be unknown to the next call.
    let r = retry_codes(EC2_NOT_YET, Patience::FRESH_ID, || async {
        c.ec2
            .describe_vpc_attribute()
            .vpc_id(id)
            .attribute(name.clone())
            .send()
            .await
            .ctx("reading attributes of", &id)
    })
    .await?;
    let v = match name {
        VpcAttributeName::EnableDnsHostnames => r.enable_dns_hostnames(),
        _ => r.enable_dns_support(),
    };
    Ok(v.and_then(|b| b.value()).unwrap_or(false))
}

pub async fn create(ctx: &Ctx, a: &Address, attrs: &Attrs) -> Result<Created, Error> {
    let want: VpcAttrs = from_attrs(attrs)?;
    let r = ctx
        .c
        .ec2
        .create_vpc()
        .cidr_block(&want.cidr_block)
        .tag_specifications(ec2_tag_spec(ctx, a, ResourceType::Vpc))
        .send()
        .await
        .ctx("creating", a)?;
    let id = r
        .vpc()
        .and_then(|v| v.vpc_id())
        .unwrap_or_default()
        .to_string();
    let both = [SUPPORT, HOSTNAMES].map(String::from);
    set_dns(ctx, a, &id, &want, &both).await?;
    close_default_group(ctx, a, &id).await?;
    Ok((id, Default::default()))
}

const SUPPORT: &str = attr!(VpcAttrs.enable_dns_support);
const HOSTNAMES: &str = attr!(VpcAttrs.enable_dns_hostnames);

async fn set_dns(
    ctx: &Ctx,
    a: &Address,
    id: &str,
    want: &VpcAttrs,
    which: &[String],
) -> Result<(), Error> {
    // AWS takes one attribute per call.
    for (key, on) in [
        (SUPPORT, want.enable_dns_support),
        (HOSTNAMES, want.enable_dns_hostnames),
    ] {
        if !changed(which, key) {
            continue;
        }
        let value = AttributeBooleanValue::builder().value(on).build();
        retry_codes(EC2_NOT_YET, Patience::FRESH_ID, || async {
            let call = ctx.c.ec2.modify_vpc_attribute().vpc_id(id);
            let call = if key == SUPPORT {
                call.enable_dns_support(value.clone())
            } else {
                call.enable_dns_hostnames(value.clone())
            };
            call.send().await.ctx("setting DNS attributes of", a)
        })
        .await?;
    }
    Ok(())
}

pub async fn update(
    ctx: &Ctx,
    live: &Live,
    attrs: &Attrs,
    changed: &[String],
) -> Result<(), Error> {
    let want: VpcAttrs = from_attrs(attrs)?;
    set_dns(ctx, &live.address, &live.id, &want, changed).await?;
    if super::changed(changed, attr!(VpcAttrs.default_security_group_rules)) {
        close_default_group(ctx, &live.address, &live.id).await?;
    }
    Ok(())
}

/// What AWS answers when it is already deleted.
const GONE: &[&str] = &["InvalidVpcID.NotFound"];

impl super::KindOps for VpcAttrs {
    const FORCE_NEW: &'static [&'static str] = &[attr!(VpcAttrs.cidr_block)];
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::Ec2;
    const LISTING: super::Listing = super::Listing::Vpcs;

    super::writes!(map);
    super::writes! {
        delete_when_free(Patience::DEPENDENCY, GONE, |c, id| c.ec2.delete_vpc().vpc_id(id))
    }
}
