//! VPC endpoints, so instances in private subnets reach AWS without a NAT gateway.
//!
//! - Gateway endpoints (`s3`, `dynamodb`, free): AWS adds a prefix-list route to each
//!   route table named; the private route table gets them.
//! - Interface endpoints (`ssm`, `ssmmessages`, `ec2messages`, billed per hour and
//!   zone, only with `network.ssm_endpoints`): a network interface in each private
//!   subnet behind the endpoints' security group, with private DNS so the SSM agent
//!   finds them under the public names.
//!
//! EC2 sends states in lowercase (`available`), which the SDK's enum does not match:
//! compare the string. DeleteVpcEndpoints reports failures in `Unsuccessful` with a
//! 200, and moto keeps deleted endpoints around in state `deleted`.

use super::ec2_tag_spec;
use super::route_table::RouteTableAttrs;
use super::security_group::SecurityGroupAttrs;
use super::subnet::SubnetAttrs;
use super::vpc::VpcAttrs;
use super::{Created, Ctx, EC2_NOT_YET, changed};
use crate::aws::{Clients, Context, Error, Patience, retry_codes, wait_for};
use crate::desired::{Build, SSM_ENDPOINT_SERVICES};
use crate::model::attr;
use crate::model::{Address, Live, Ref, from_attrs, ids, to_attrs};
use crate::model::{Desired, Kind, KindAttrs};
use aws_sdk_ec2::types::{ResourceType, VpcEndpoint, VpcEndpointType};
use serde::{Deserialize, Serialize};

/// A VPC endpoint's attributes: what every endpoint has, then what only a gateway
/// (`route_table_ids`) or only an interface endpoint (the rest) has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VpcEndpointAttrs {
    pub vpc_id: Ref<VpcAttrs>,
    /// `com.amazonaws.<region>.<service>`.
    pub service_name: String,
    /// `Gateway` or `Interface`, as AWS spells it.
    pub r#type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_table_ids: Option<Vec<Ref<RouteTableAttrs>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_ids: Option<Vec<Ref<SubnetAttrs>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_group_ids: Option<Vec<Ref<SecurityGroupAttrs>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_dns_enabled: Option<bool>,
}

impl KindAttrs for VpcEndpointAttrs {
    const KIND: Kind = Kind::VpcEndpoint;
}

impl VpcEndpointAttrs {
    fn is_gateway(&self) -> bool {
        self.r#type == "Gateway"
    }
}

/// The ids of an optional list of references (none when absent).
fn id_list<T>(refs: &Option<Vec<Ref<T>>>) -> Vec<String> {
    refs.as_deref().map(ids).unwrap_or_default()
}

/// What every VPC endpoint has: its VPC, the AWS service and the endpoint type.
fn endpoint(b: &Build, service: &str, kind: &str) -> VpcEndpointAttrs {
    VpcEndpointAttrs {
        vpc_id: b.vpc.clone(),
        service_name: service_name(&b.inputs.region, service),
        r#type: kind.into(),
        ..Default::default()
    }
}

/// With private subnets, the gateway endpoints on their route table: S3, and DynamoDB
/// when the stack has a table.
pub fn gateways(b: &Build) -> Vec<Desired> {
    if b.private_subnets.is_empty() {
        return Vec::new();
    }
    let mut gateways = vec!["s3"];
    if b.spec.table.is_some() {
        gateways.push("dynamodb");
    }
    gateways
        .into_iter()
        .map(|service| {
            let a = VpcEndpointAttrs {
                route_table_ids: Some(vec![Ref::at(crate::desired::private_route_table())]),
                ..endpoint(b, service, "Gateway")
            };
            Desired::new(Address::new(Kind::VpcEndpoint, service), to_attrs(&a))
        })
        .collect()
}

/// With `network.ssm_endpoints`, Session Manager's interface endpoints for private
/// instances; billed per endpoint, zone and hour.
pub fn interfaces(b: &Build) -> Vec<Desired> {
    if !b.spec.ssm_endpoints {
        return Vec::new();
    }
    SSM_ENDPOINT_SERVICES
        .into_iter()
        .map(|service| {
            let a = VpcEndpointAttrs {
                subnet_ids: Some(b.private_subnets.clone()),
                security_group_ids: Some(vec![Ref::at(crate::desired::endpoints_sg())]),
                private_dns_enabled: Some(true),
                ..endpoint(b, service, "Interface")
            };
            Desired::new(Address::new(Kind::VpcEndpoint, service), to_attrs(&a))
        })
        .collect()
}

const NOT_FOUND: &[&str] = &[
    "InvalidVpcEndpointId.NotFound",
    "InvalidVpcEndpoint.NotFound",
];
/// How long an endpoint may take to become available or go (the provider's 10 min).
const WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// The AWS service name of an endpoint for `service` (`s3`, `ssm`…) in `region`.
pub fn service_name(region: &str, service: &str) -> String {
    format!("com.amazonaws.{region}.{service}")
}

fn state(e: &VpcEndpoint) -> String {
    e.state()
        .map(|s| s.as_str().to_ascii_lowercase())
        .unwrap_or_default()
}

/// References to sorted ids, so that the order AWS lists them in is no change.
fn sorted<T>(v: &[String]) -> Vec<Ref<T>> {
    let mut v = v.to_vec();
    v.sort();
    v.into_iter().map(Ref::id).collect()
}

fn attrs_of(e: &VpcEndpoint) -> VpcEndpointAttrs {
    let kind = e
        .vpc_endpoint_type()
        .map(|t| t.as_str())
        .unwrap_or("Gateway");
    let all = VpcEndpointAttrs {
        vpc_id: Ref::id(e.vpc_id().unwrap_or_default()),
        service_name: e.service_name().unwrap_or_default().to_string(),
        r#type: kind.to_string(),
        ..Default::default()
    };
    if all.is_gateway() {
        return VpcEndpointAttrs {
            route_table_ids: Some(sorted(e.route_table_ids())),
            ..all
        };
    }
    let groups: Vec<String> = e
        .groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect();
    VpcEndpointAttrs {
        subnet_ids: Some(sorted(e.subnet_ids())),
        security_group_ids: Some(sorted(&groups)),
        private_dns_enabled: Some(e.private_dns_enabled().unwrap_or(false)),
        ..all
    }
}

pub async fn discover(c: &Clients, stack: &str) -> Result<Vec<Live>, Error> {
    let mut out = Vec::new();
    let listed = super::ec2_listing!(
        c.ec2.describe_vpc_endpoints(),
        stack,
        "VPC endpoints",
        vpc_endpoints
    );
    for (address, ref e) in listed {
        if matches!(state(e).as_str(), "deleted" | "deleting") {
            continue;
        }
        out.push(Live {
            address,
            id: e.vpc_endpoint_id().unwrap_or_default().to_string(),
            attrs: to_attrs(&attrs_of(e)),
            extra: Default::default(),
        });
    }
    Ok(out)
}

/// The endpoint as EC2 describes it now; `None` once it is gone.
async fn describe(ctx: &Ctx, a: &Address, id: &str) -> Result<Option<VpcEndpoint>, Error> {
    let r = ctx
        .c
        .ec2
        .describe_vpc_endpoints()
        .vpc_endpoint_ids(id)
        .send()
        .await
        .ctx("reading", a);
    match r {
        Err(e) if e.is_code(NOT_FOUND) => Ok(None),
        Err(e) => Err(e),
        Ok(r) => Ok(r
            .vpc_endpoints()
            .iter()
            .find(|e| e.vpc_endpoint_id() == Some(id) && state(e) != "deleted")
            .cloned()),
    }
}

/// Waits until the endpoint is `available` (an interface endpoint takes a minute or
/// two); `failed` ends the wait with AWS's reason.
async fn wait_available(ctx: &Ctx, a: &Address, id: &str) -> Result<(), Error> {
    wait_for(a, "the endpoint to be available", WAIT, || async {
        // A fresh id may not be visible yet: keep polling.
        let Some(e) = describe(ctx, a, id).await? else {
            return Ok(None);
        };
        match state(&e).as_str() {
            "available" => Ok(Some(())),
            "failed" | "rejected" | "expired" => {
                let err = e.last_error();
                Err(Error::Aws {
                    detail: None,
                    action: "creating".into(),
                    resource: a.to_string(),
                    code: err
                        .and_then(|x| x.code())
                        .unwrap_or("EndpointFailed")
                        .to_string(),
                    message: err
                        .and_then(|x| x.message())
                        .unwrap_or("the endpoint failed")
                        .to_string(),
                })
            }
            s => {
                ctx.report(a, format!("endpoint {s}"));
                Ok(None)
            }
        }
    })
    .await
}

pub async fn create(ctx: &Ctx, a: &Address, want: VpcEndpointAttrs) -> Result<Created, Error> {
    // One token per attempt sequence: a retried call after a lost answer does not
    // make a second endpoint.
    let token = format!("stack-{}-{}", a, fastrand::u64(..));
    let r = retry_codes(EC2_NOT_YET, Patience::FRESH_ID, || async {
        let mut call = ctx
            .c
            .ec2
            .create_vpc_endpoint()
            .client_token(&token)
            .vpc_endpoint_type(VpcEndpointType::from(want.r#type.as_str()))
            .vpc_id(want.vpc_id.as_id())
            .service_name(&want.service_name)
            .tag_specifications(ec2_tag_spec(ctx, a, ResourceType::VpcEndpoint));
        if want.is_gateway() {
            call = call.set_route_table_ids(Some(id_list(&want.route_table_ids)));
        } else {
            call = call
                .set_subnet_ids(Some(id_list(&want.subnet_ids)))
                .set_security_group_ids(Some(id_list(&want.security_group_ids)))
                .private_dns_enabled(want.private_dns_enabled.unwrap_or(false));
        }
        call.send().await.ctx("creating", a)
    })
    .await?;
    let id = r
        .vpc_endpoint()
        .and_then(|e| e.vpc_endpoint_id())
        .unwrap_or_default()
        .to_string();
    wait_available(ctx, a, &id).await?;
    Ok((id, Default::default()))
}

/// Route tables (gateway), subnets and groups (interface) are added and removed in
/// one ModifyVpcEndpoint call; private DNS is switched in the same call.
pub async fn update(
    ctx: &Ctx,
    live: &Live,
    want: VpcEndpointAttrs,
    changed_attrs: &[String],
) -> Result<(), Error> {
    let a = &live.address;
    let have: VpcEndpointAttrs = from_attrs(&live.attrs)?;
    let delta = |want: Vec<String>, have: Vec<String>| {
        let add: Vec<String> = want.iter().filter(|x| !have.contains(x)).cloned().collect();
        let remove: Vec<String> = have.iter().filter(|x| !want.contains(x)).cloned().collect();
        (add, remove)
    };
    let (add_rt, remove_rt) = delta(
        id_list(&want.route_table_ids),
        id_list(&have.route_table_ids),
    );
    let (add_sn, remove_sn) = delta(id_list(&want.subnet_ids), id_list(&have.subnet_ids));
    let (add_sg, remove_sg) = delta(
        id_list(&want.security_group_ids),
        id_list(&have.security_group_ids),
    );
    let mut call = ctx.c.ec2.modify_vpc_endpoint().vpc_endpoint_id(&live.id);
    let empty = |v: &Vec<String>| v.is_empty();
    if !empty(&add_rt) {
        call = call.set_add_route_table_ids(Some(add_rt));
    }
    if !empty(&remove_rt) {
        call = call.set_remove_route_table_ids(Some(remove_rt));
    }
    if !empty(&add_sn) {
        call = call.set_add_subnet_ids(Some(add_sn));
    }
    if !empty(&remove_sn) {
        call = call.set_remove_subnet_ids(Some(remove_sn));
    }
    if !empty(&add_sg) {
        call = call.set_add_security_group_ids(Some(add_sg));
    }
    if !empty(&remove_sg) {
        call = call.set_remove_security_group_ids(Some(remove_sg));
    }
    if changed(changed_attrs, attr!(VpcEndpointAttrs.private_dns_enabled)) {
        call = call.private_dns_enabled(want.private_dns_enabled.unwrap_or(false));
    }
    retry_codes(EC2_NOT_YET, Patience::FRESH_ID, || {
        let call = call.clone();
        async move { call.send().await.ctx("updating", a) }
    })
    .await?;
    wait_available(ctx, a, &live.id).await
}

/// Deletes, then waits until EC2 no longer lists it: an interface endpoint's network
/// interfaces hold its subnets and security group until then.
pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    let a = &live.address;
    let r = ctx
        .c
        .ec2
        .delete_vpc_endpoints()
        .vpc_endpoint_ids(&live.id)
        .send()
        .await
        .ctx("deleting", a);
    let r = match r {
        Err(e) if e.is_code(NOT_FOUND) => return Ok(()),
        other => other?,
    };
    if let Some(e) = r.unsuccessful().first().and_then(|u| u.error())
        && !NOT_FOUND.contains(&e.code().unwrap_or_default())
    {
        return Err(Error::Aws {
            detail: None,
            action: "deleting".into(),
            resource: a.to_string(),
            code: e.code().unwrap_or("Unsuccessful").to_string(),
            message: e.message().unwrap_or_default().to_string(),
        });
    }
    wait_for(a, "the endpoint to be deleted", WAIT, || async {
        Ok(describe(ctx, a, &live.id).await?.is_none().then_some(()))
    })
    .await
}

impl super::KindOps for VpcEndpointAttrs {
    const FORCE_NEW: &'static [&'static str] = &[
        attr!(VpcEndpointAttrs.vpc_id),
        attr!(VpcEndpointAttrs.service_name),
        attr!(VpcEndpointAttrs.r#type),
    ];
    const REFERENCES: &'static [&'static str] = &[
        attr!(VpcEndpointAttrs.vpc_id),
        attr!(VpcEndpointAttrs.route_table_ids),
        attr!(VpcEndpointAttrs.subnet_ids),
        attr!(VpcEndpointAttrs.security_group_ids),
    ];
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::Ec2;
    const LISTING: super::Listing = super::Listing::VpcEndpoints;

    super::writes!(typed);
    super::writes!(delete);
}
