//! Route tables: the public one (a default route to the internet gateway, associated
//! with every public subnet) and the private one (no default route: the private
//! subnets reach S3 and DynamoDB through the gateway endpoints' prefix-list routes,
//! which AWS adds and this module leaves alone).

use super::igw::InternetGatewayAttrs;
use super::subnet::SubnetAttrs;
use super::vpc::VpcAttrs;
use super::{Created, Ctx, EC2_NOT_YET, STILL_IN_USE, absent_ok, changed, ec2_tag_spec};
use crate::aws::{Clients, Context, Error, Patience, retry_codes};
use crate::desired::Build;
use crate::model::attr;
use crate::model::{Address, Desired, Kind, KindAttrs, Live, Ref, from_attrs, ids, to_attrs};
use aws_sdk_ec2::types::ResourceType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A route table's attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteTableAttrs {
    pub vpc_id: Ref<VpcAttrs>,
    /// The default route's gateway; an empty id for no default route.
    pub default_route_gateway_id: Ref<InternetGatewayAttrs>,
    /// The subnets associated with it.
    pub subnet_ids: Vec<Ref<SubnetAttrs>>,
}

impl KindAttrs for RouteTableAttrs {
    const KIND: Kind = Kind::RouteTable;
}

/// The public subnets' route table (the default route to the internet gateway) and,
/// with private subnets, theirs.
pub fn desired(b: &Build) -> Vec<Desired> {
    let mut out = vec![Desired::new(
        crate::desired::route_table(),
        to_attrs(&RouteTableAttrs {
            vpc_id: b.vpc.clone(),
            default_route_gateway_id: Ref::at(crate::desired::igw()),
            subnet_ids: b.subnets.clone(),
        }),
    )];
    if !b.private_subnets.is_empty() {
        // No route to the internet: S3 and DynamoDB through the gateway endpoints.
        out.push(Desired::new(
            crate::desired::private_route_table(),
            to_attrs(&RouteTableAttrs {
                vpc_id: b.vpc.clone(),
                default_route_gateway_id: Ref::id(""),
                subnet_ids: b.private_subnets.clone(),
            }),
        ));
    }
    out
}

const DEFAULT_ROUTE: &str = "0.0.0.0/0";
/// A route to a fresh gateway answers `InvalidGatewayID.NotFound`, not the gateway's
/// own NotFound code.
const ROUTE_NOT_YET: &[&str] = &[
    "InvalidRouteTableID.NotFound",
    "InvalidGatewayID.NotFound",
    "InvalidInternetGatewayID.NotFound",
];

pub async fn discover(c: &Clients, stack: &str) -> Result<Vec<Live>, Error> {
    let mut out = Vec::new();
    let listed = super::ec2_listing!(
        c.ec2.describe_route_tables(),
        stack,
        "route tables",
        route_tables
    );
    for (address, ref t) in listed {
        let gateway = t
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some(DEFAULT_ROUTE))
            .and_then(|r| r.gateway_id())
            .unwrap_or_default();
        let mut extra = BTreeMap::new();
        let mut subnets = Vec::new();
        for assoc in t.associations() {
            if let (Some(s), Some(id)) = (assoc.subnet_id(), assoc.route_table_association_id()) {
                subnets.push(s.to_string());
                extra.insert(format!("association:{s}"), id.to_string());
            }
        }
        let attrs = to_attrs(&RouteTableAttrs {
            vpc_id: Ref::id(t.vpc_id().unwrap_or_default()),
            default_route_gateway_id: Ref::id(gateway),
            subnet_ids: subnets.into_iter().map(Ref::id).collect(),
        });
        let id = t.route_table_id().unwrap_or_default().to_string();
        out.push(Live {
            address,
            id,
            attrs,
            extra,
        });
    }
    Ok(out)
}

pub async fn create(ctx: &Ctx, a: &Address, want: RouteTableAttrs) -> Result<Created, Error> {
    let r = retry_codes(EC2_NOT_YET, Patience::FRESH_ID, || async {
        ctx.c
            .ec2
            .create_route_table()
            .vpc_id(want.vpc_id.as_id())
            .tag_specifications(ec2_tag_spec(ctx, a, ResourceType::RouteTable))
            .send()
            .await
            .ctx("creating", a)
    })
    .await?;
    let id = r
        .route_table()
        .and_then(|t| t.route_table_id())
        .unwrap_or_default()
        .to_string();
    set_route(ctx, a, &id, want.default_route_gateway_id.as_id(), false).await?;
    let mut extra = BTreeMap::new();
    for s in ids(&want.subnet_ids) {
        let assoc = associate(ctx, a, &id, &s).await?;
        extra.insert(format!("association:{s}"), assoc);
    }
    Ok((id, extra))
}

async fn set_route(
    ctx: &Ctx,
    a: &Address,
    id: &str,
    gateway: &str,
    replace: bool,
) -> Result<(), Error> {
    retry_codes(ROUTE_NOT_YET, Patience::FRESH_ID, || async {
        if gateway.is_empty() {
            // No default route wanted (the private table).
            if !replace {
                return Ok(());
            }
            return absent_ok(
                ctx.c
                    .ec2
                    .delete_route()
                    .route_table_id(id)
                    .destination_cidr_block(DEFAULT_ROUTE)
                    .send()
                    .await
                    .ctx("removing the default route of", a),
                &["InvalidRoute.NotFound"],
            );
        }
        if replace {
            ctx.c
                .ec2
                .replace_route()
                .route_table_id(id)
                .destination_cidr_block(DEFAULT_ROUTE)
                .gateway_id(gateway)
                .send()
                .await
                .ctx("replacing the default route of", a)
                .map(drop)
        } else {
            ctx.c
                .ec2
                .create_route()
                .route_table_id(id)
                .destination_cidr_block(DEFAULT_ROUTE)
                .gateway_id(gateway)
                .send()
                .await
                .ctx("adding the default route to", a)
                .map(drop)
        }
    })
    .await
}

async fn associate(ctx: &Ctx, a: &Address, id: &str, subnet: &str) -> Result<String, Error> {
    let r = retry_codes(EC2_NOT_YET, Patience::FRESH_ID, || async {
        ctx.c
            .ec2
            .associate_route_table()
            .route_table_id(id)
            .subnet_id(subnet)
            .send()
            .await
            .ctx("associating a subnet with", a)
    })
    .await?;
    Ok(r.association_id().unwrap_or_default().to_string())
}

async fn disassociate(ctx: &Ctx, live: &Live, subnet: &str) -> Result<(), Error> {
    let Some(assoc) = live.extra.get(&format!("association:{subnet}")) else {
        return Ok(());
    };
    absent_ok(
        ctx.c
            .ec2
            .disassociate_route_table()
            .association_id(assoc)
            .send()
            .await
            .ctx("disassociating a subnet from", &live.address),
        &["InvalidAssociationID.NotFound"],
    )
}

pub async fn update(
    ctx: &Ctx,
    live: &Live,
    want: RouteTableAttrs,
    changes: &[String],
) -> Result<(), Error> {
    let a = &live.address;
    let have: RouteTableAttrs = from_attrs(&live.attrs)?;
    if changed(changes, attr!(RouteTableAttrs.default_route_gateway_id)) {
        let had_route = !have.default_route_gateway_id.as_id().is_empty();
        set_route(
            ctx,
            a,
            &live.id,
            want.default_route_gateway_id.as_id(),
            had_route,
        )
        .await?;
    }
    if changed(changes, attr!(RouteTableAttrs.subnet_ids)) {
        let want = ids(&want.subnet_ids);
        let have = ids(&have.subnet_ids);
        for s in have.iter().filter(|s| !want.contains(s)) {
            disassociate(ctx, live, s).await?;
        }
        for s in want.iter().filter(|s| !have.contains(s)) {
            associate(ctx, a, &live.id, s).await?;
        }
    }
    Ok(())
}

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    for s in ids(&from_attrs::<RouteTableAttrs>(&live.attrs)?.subnet_ids) {
        disassociate(ctx, live, &s).await?;
    }
    retry_codes(STILL_IN_USE, Patience::DEPENDENCY, || async {
        absent_ok(
            ctx.c
                .ec2
                .delete_route_table()
                .route_table_id(&live.id)
                .send()
                .await
                .ctx("deleting", &live.address),
            &["InvalidRouteTableID.NotFound"],
        )
    })
    .await
}

impl super::KindOps for RouteTableAttrs {
    const FORCE_NEW: &'static [&'static str] = &[attr!(RouteTableAttrs.vpc_id)];
    const REFERENCES: &'static [&'static str] = &[
        attr!(RouteTableAttrs.vpc_id),
        attr!(RouteTableAttrs.subnet_ids),
        attr!(RouteTableAttrs.default_route_gateway_id),
    ];
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::Ec2;
    const LISTING: super::Listing = super::Listing::RouteTables;

    super::writes!(typed);
    super::writes!(delete);
}
