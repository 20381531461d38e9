//! Security groups: the load balancer's (the listener port from `ingress`) and one per
//! service (its port, only from the load balancer's group). Ingress rules are a set of
//! `[port, source]` pairs, where the source is a CIDR block or a group id.

use super::LiveMap;
use super::vpc::VpcAttrs;
use super::{Created, Ctx, EC2_NOT_YET, absent_ok, ec2_tag_spec};
use crate::aws::{Clients, Context, Error, Patience, retry_codes};
use crate::desired::Build;
use crate::model::attr;
use crate::model::{Address, Desired, Kind, KindAttrs, Live, Ref, Value, from_attrs, to_attrs};
use crate::spec::ServiceSpec;
use aws_sdk_ec2::types::{IpPermission, IpRange, ResourceType, UserIdGroupPair};
use serde::{Deserialize, Serialize};

/// A security group's attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityGroupAttrs {
    pub vpc_id: Ref<VpcAttrs>,
    pub group_name: String,
    pub description: String,
    /// Compared as a set (AWS lists them in its own order).
    pub ingress: Vec<Ingress>,
}

impl KindAttrs for SecurityGroupAttrs {
    const KIND: Kind = Kind::SecurityGroup;
}

/// An inbound rule: `[port, source]`, or, read from AWS, a rule this tool does not
/// write, `["<protocol>:<from>-<to>"]`, kept visible so the diff removes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ingress {
    Port(i64, Source),
    Foreign((String,)),
}

/// Where a rule admits traffic from: a CIDR block or another group. Once resolved (or
/// as AWS lists it) a group is its id, so sources compare by what they serialize to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Source {
    Cidr(String),
    Group(Ref<SecurityGroupAttrs>),
}

impl Source {
    /// The CIDR block or the group's id (empty while the group's id is unknown).
    fn as_str(&self) -> &str {
        match self {
            Source::Cidr(c) => c,
            Source::Group(g) => g.as_id(),
        }
    }

    fn value(&self) -> Value {
        match self {
            Source::Cidr(c) => Value::s(c),
            Source::Group(g) => g.clone().into(),
        }
    }
}

impl PartialEq for Source {
    fn eq(&self, other: &Self) -> bool {
        self.value() == other.value()
    }
}

/// A security group: inbound `(port, source)` pairs.
fn group(
    b: &Build,
    address: Address,
    group_name: String,
    description: String,
    ingress: Vec<(u16, Source)>,
) -> Desired {
    Desired::new(
        address,
        to_attrs(&SecurityGroupAttrs {
            vpc_id: b.vpc.clone(),
            group_name,
            description,
            ingress: ingress
                .into_iter()
                .map(|(port, source)| Ingress::Port(port.into(), source))
                .collect(),
        }),
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
        vec![(443, Source::Cidr(b.spec.vpc_cidr.to_string()))],
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
                    .map(move |c| (*p, Source::Cidr(c.to_string())))
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
        vec![(svc.port, Source::Group(Ref::at(crate::desired::alb_sg())))],
    )
}

pub async fn discover(c: &Clients, stack: &str) -> Result<Vec<Live>, Error> {
    let mut out = Vec::new();
    let listed = super::ec2_listing!(
        c.ec2.describe_security_groups(),
        stack,
        "security groups",
        security_groups
    );
    for (address, ref g) in listed {
        let mut rules = Vec::new();
        for p in g.ip_permissions() {
            if p.ip_protocol() != Some("tcp") || p.from_port() != p.to_port() {
                // Not a rule this tool writes; keep it visible so the diff removes it.
                rules.push(Ingress::Foreign((format!(
                    "{}:{}-{}",
                    p.ip_protocol().unwrap_or_default(),
                    p.from_port().unwrap_or(-1),
                    p.to_port().unwrap_or(-1)
                ),)));
                continue;
            }
            let port: i64 = p.from_port().unwrap_or_default().into();
            for r in p.ip_ranges() {
                let cidr = r.cidr_ip().unwrap_or_default().to_string();
                rules.push(Ingress::Port(port, Source::Cidr(cidr)));
            }
            for pair in p.user_id_group_pairs() {
                let group = Ref::id(pair.group_id().unwrap_or_default());
                rules.push(Ingress::Port(port, Source::Group(group)));
            }
        }
        let attrs = to_attrs(&SecurityGroupAttrs {
            vpc_id: Ref::id(g.vpc_id().unwrap_or_default()),
            group_name: g.group_name().unwrap_or_default().to_string(),
            description: g.description().unwrap_or_default().to_string(),
            ingress: rules,
        });
        let id = g.group_id().unwrap_or_default().to_string();
        out.push(Live {
            address,
            id,
            attrs,
            extra: Default::default(),
        });
    }
    Ok(out)
}

/// One permission per rule: a TCP port from a CIDR block or from a group.
fn permission(rule: &Ingress) -> Option<IpPermission> {
    let Ingress::Port(port, source) = rule else {
        return None;
    };
    let port = *port as i32;
    let source = source.as_str();
    if source.is_empty() {
        return None;
    }
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
fn raw_permission(rule: &Ingress) -> Option<IpPermission> {
    let Ingress::Foreign((text,)) = rule else {
        return None;
    };
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

async fn authorize(ctx: &Ctx, a: &Address, id: &str, rules: &[Ingress]) -> Result<(), Error> {
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

pub async fn create(ctx: &Ctx, a: &Address, want: SecurityGroupAttrs) -> Result<Created, Error> {
    let r = retry_codes(EC2_NOT_YET, Patience::FRESH_ID, || async {
        ctx.c
            .ec2
            .create_security_group()
            .group_name(&want.group_name)
            .description(&want.description)
            .vpc_id(want.vpc_id.as_id())
            .tag_specifications(ec2_tag_spec(ctx, a, ResourceType::SecurityGroup))
            .send()
            .await
            .ctx("creating", a)
    })
    .await?;
    let id = r.group_id().unwrap_or_default().to_string();
    authorize(ctx, a, &id, &want.ingress).await?;
    Ok((id, Default::default()))
}

pub async fn update(
    ctx: &Ctx,
    live: &Live,
    want: SecurityGroupAttrs,
    _changed: &[String],
) -> Result<(), Error> {
    // Rules are compared as sets, but sent as written.
    let have: SecurityGroupAttrs = from_attrs(&live.attrs)?;
    let (want, have) = (want.ingress, have.ingress);
    let among = |r: &Ingress, set: &[Ingress]| set.contains(r);
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
    let added: Vec<Ingress> = want.iter().filter(|r| !among(r, &have)).cloned().collect();
    authorize(ctx, &live.address, &live.id, &added).await
}

/// What AWS answers when it is already deleted.
const GONE: &[&str] = &["InvalidGroup.NotFound"];

impl super::KindOps for SecurityGroupAttrs {
    const FORCE_NEW: &'static [&'static str] = &[
        attr!(SecurityGroupAttrs.vpc_id),
        attr!(SecurityGroupAttrs.group_name),
        attr!(SecurityGroupAttrs.description),
    ];
    const REFERENCES: &'static [&'static str] = &[
        attr!(SecurityGroupAttrs.vpc_id),
        attr!(SecurityGroupAttrs.ingress),
    ];
    const UNIQUE_NAME: Option<&'static str> = Some(attr!(SecurityGroupAttrs.group_name));
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::Ec2;
    const LISTING: super::Listing = super::Listing::SecurityGroups;

    super::writes!(typed);
    super::writes! {
        delete_when_free(Patience::DEPENDENCY, GONE, |c, id| {
            c.ec2.delete_security_group().group_id(id)
        })
    }

    /// Group names are unique per VPC: only the stack's own VPC, once it exists, can hold
    /// a conflicting one.
    async fn names_taken(
        c: &Clients,
        names: &[String],
        live: &LiveMap,
    ) -> Result<Vec<String>, Error> {
        let Some(vpc) = live.get(&crate::desired::vpc()) else {
            return Ok(Vec::new());
        };
        let filter = |name: &str, values: Vec<String>| {
            aws_sdk_ec2::types::Filter::builder()
                .name(name)
                .set_values(Some(values))
                .build()
        };
        let r = c
            .ec2
            .describe_security_groups()
            .filters(filter("vpc-id", vec![vpc.id.clone()]))
            .filters(filter("group-name", names.to_vec()))
            .send()
            .await
            .ctx("looking up", &"security group names")?;
        Ok(r.security_groups()
            .iter()
            .filter_map(|g| g.group_name())
            .map(str::to_string)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::attrs;

    #[test]
    fn rules_read_back_as_written_and_compare_by_value() {
        let alb = Address::new(Kind::SecurityGroup, "alb");
        let want = SecurityGroupAttrs {
            vpc_id: Ref::id("vpc-1"),
            group_name: "g".into(),
            description: "d".into(),
            ingress: vec![
                Ingress::Port(8080, Source::Group(Ref::at(alb.clone()))),
                Ingress::Port(80, Source::Cidr("0.0.0.0/0".into())),
            ],
        };
        let map = to_attrs(&want);
        assert_eq!(
            map["ingress"],
            Value::List(vec![
                Value::List(vec![Value::Int(8080), Value::r(&alb)]),
                Value::List(vec![Value::Int(80), Value::s("0.0.0.0/0")]),
            ])
        );
        // Resolved, the group is an id, as AWS lists it.
        let resolved: SecurityGroupAttrs = from_attrs(&attrs([(
            "ingress",
            Value::List(vec![
                Value::List(vec![Value::Int(8080), Value::s("sg-1")]),
                Value::List(vec![Value::s("udp:53-53")]),
            ]),
        )]))
        .unwrap();
        assert_eq!(
            resolved.ingress[0],
            Ingress::Port(8080, Source::Group(Ref::id("sg-1")))
        );
        assert_eq!(resolved.ingress[1], Ingress::Foreign(("udp:53-53".into(),)));
        assert!(permission(&resolved.ingress[0]).is_some());
        assert!(raw_permission(&resolved.ingress[1]).is_some());
    }
}
