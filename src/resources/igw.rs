//! The internet gateway and its attachment to the VPC.

use super::delete_when_free;
use super::vpc::VpcAttrs;
use super::{Created, Ctx, EC2_NOT_YET, STILL_IN_USE, ec2_tag_spec};
use crate::aws::{Clients, Context, Error, Patience, retry_codes};
use crate::desired::Build;
use crate::model::attr;
use crate::model::{Address, Desired, Kind, KindAttrs, Live, Ref, from_attrs, to_attrs};
use aws_sdk_ec2::types::ResourceType;
use serde::{Deserialize, Serialize};

/// The internet gateway's attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InternetGatewayAttrs {
    /// The VPC it is attached to (empty when detached).
    pub vpc_id: Ref<VpcAttrs>,
}

impl KindAttrs for InternetGatewayAttrs {
    const KIND: Kind = Kind::InternetGateway;
}

/// The VPC's internet gateway.
pub fn desired(b: &Build) -> Vec<Desired> {
    vec![Desired::new(
        crate::desired::igw(),
        to_attrs(&InternetGatewayAttrs {
            vpc_id: b.vpc.clone(),
        }),
    )]
}

pub async fn discover(c: &Clients, stack: &str) -> Result<Vec<Live>, Error> {
    let mut out = Vec::new();
    let listed = super::ec2_listing!(
        c.ec2.describe_internet_gateways(),
        stack,
        "internet gateways",
        internet_gateways
    );
    for (address, ref g) in listed {
        let vpc = g
            .attachments()
            .first()
            .and_then(|a| a.vpc_id())
            .unwrap_or_default();
        let attrs = to_attrs(&InternetGatewayAttrs {
            vpc_id: Ref::id(vpc),
        });
        let id = g.internet_gateway_id().unwrap_or_default().to_string();
        out.push(Live {
            address,
            id,
            attrs,
            extra: Default::default(),
        });
    }
    Ok(out)
}

pub async fn create(ctx: &Ctx, a: &Address, want: InternetGatewayAttrs) -> Result<Created, Error> {
    let r = ctx
        .c
        .ec2
        .create_internet_gateway()
        .tag_specifications(ec2_tag_spec(ctx, a, ResourceType::InternetGateway))
        .send()
        .await
        .ctx("creating", a)?;
    let id = r
        .internet_gateway()
        .and_then(|g| g.internet_gateway_id())
        .unwrap_or_default()
        .to_string();
    attach(ctx, a, &id, want.vpc_id.as_id()).await?;
    Ok((id, Default::default()))
}

async fn attach(ctx: &Ctx, a: &Address, id: &str, vpc: &str) -> Result<(), Error> {
    retry_codes(EC2_NOT_YET, Patience::FRESH_ID, || async {
        ctx.c
            .ec2
            .attach_internet_gateway()
            .internet_gateway_id(id)
            .vpc_id(vpc)
            .send()
            .await
            .ctx("attaching", a)
    })
    .await
    .map(drop)
}

/// Detaching fails with DependencyViolation while instances or a load balancer in the
/// VPC still hold public addresses; those go away on their own during `down`.
async fn detach(ctx: &Ctx, a: &Address, id: &str, vpc: &str) -> Result<(), Error> {
    retry_codes(STILL_IN_USE, Patience::DEPENDENCY, || async {
        match ctx
            .c
            .ec2
            .detach_internet_gateway()
            .internet_gateway_id(id)
            .vpc_id(vpc)
            .send()
            .await
            .ctx("detaching", a)
        {
            Err(e) if e.is_code(&["Gateway.NotAttached", "InvalidInternetGatewayID.NotFound"]) => {
                Ok(())
            }
            other => other.map(drop),
        }
    })
    .await
}

pub async fn update(
    ctx: &Ctx,
    live: &Live,
    want: InternetGatewayAttrs,
    _changed: &[String],
) -> Result<(), Error> {
    let have: InternetGatewayAttrs = from_attrs(&live.attrs)?;
    let old = have.vpc_id.as_id();
    if !old.is_empty() {
        detach(ctx, &live.address, &live.id, old).await?;
    }
    attach(ctx, &live.address, &live.id, want.vpc_id.as_id()).await
}

/// What AWS answers when it is already deleted.
const GONE: &[&str] = &["InvalidInternetGatewayID.NotFound"];

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    let have: InternetGatewayAttrs = from_attrs(&live.attrs)?;
    let vpc = have.vpc_id.as_id();
    if !vpc.is_empty() {
        detach(ctx, &live.address, &live.id, vpc).await?;
    }
    // A detach that just went through may not be seen by the delete yet.
    let (ec2, id) = (&ctx.c.ec2, &live.id);
    let send = || ec2.delete_internet_gateway().internet_gateway_id(id).send();
    delete_when_free(Patience::FRESH_ID, GONE, &live.address, send).await
}

impl super::KindOps for InternetGatewayAttrs {
    const FORCE_NEW: &'static [&'static str] = &[];
    const REFERENCES: &'static [&'static str] = &[attr!(InternetGatewayAttrs.vpc_id)];
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::Ec2;
    const LISTING: super::Listing = super::Listing::Gateways;
    // Instances and the load balancer hold public addresses that keep the gateway
    // attached; let them go first rather than retry for minutes.
    const ORDERING: super::Ordering = super::Ordering {
        update_after_deletes_of: &[],
        delete_after_deletes_of: &[
            crate::model::Kind::LoadBalancer,
            crate::model::Kind::AutoScalingGroup,
        ],
    };

    super::writes!(typed);
    super::writes!(delete);
}
