//! The subnets' network ACL (Security Hub EC2.21): a VPC's default ACL lets in every
//! port from anywhere, SSH and RDP included. This one lets in the listener port from
//! the load balancer's `ingress` CIDRs, the services' ports from inside the VPC, return
//! traffic on the ephemeral ports (split around 3389, since the control judges every
//! entry on its own), and ICMP (path MTU discovery needs it); it lets
//! everything out. Rules are written as `<number> <allow|deny> <tcp|icmp|all>
//! <ports|type:code|-> <cidr>`, the form plans show and discovery reads back.

use super::subnet::SubnetAttrs;
use super::vpc::VpcAttrs;
use super::{Created, Ctx, EC2_NOT_YET, STILL_IN_USE, absent_ok, changed, ec2_tag_spec};
use crate::aws::{Clients, Context, Error, Patience, retry_codes};
use crate::desired::Build;
use crate::model::attr;
use crate::model::{Address, Desired, Kind, KindAttrs, Live, Ref, from_attrs, ids, to_attrs};
use aws_sdk_ec2::types::{
    Filter, IcmpTypeCode, NetworkAclEntry, PortRange, ResourceType, RuleAction,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A network ACL's attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkAclAttrs {
    pub vpc_id: Ref<VpcAttrs>,
    /// The subnets it is associated with.
    pub subnet_ids: Vec<Ref<SubnetAttrs>>,
    /// Inbound entries, by rule number (AWS's own catch-all left out).
    pub ingress: Vec<Rule>,
    /// Outbound entries, likewise.
    pub egress: Vec<Rule>,
}

impl KindAttrs for NetworkAclAttrs {
    const KIND: Kind = Kind::NetworkAcl;
}

/// The one ACL of every subnet, public and private.
pub fn desired(b: &Build) -> Vec<Desired> {
    let spec = b.spec;
    // Security Hub EC2.21: no port open to the world but the listener's.
    let mut service_ports: Vec<u16> = spec.services.iter().map(|s| s.port).collect();
    if spec.ssm_endpoints {
        // HTTPS from the instances to the interface endpoints' network interfaces.
        service_ports.push(443);
    }
    service_ports.sort_unstable();
    service_ports.dedup();
    let ingress_cidrs: Vec<String> = spec
        .load_balancer
        .ingress
        .iter()
        .map(|c| c.to_string())
        .collect();
    vec![Desired::new(
        Address::new(Kind::NetworkAcl, "main"),
        to_attrs(&NetworkAclAttrs {
            vpc_id: b.vpc.clone(),
            subnet_ids: [b.subnets.clone(), b.private_subnets.clone()].concat(),
            ingress: ingress_rules(
                &spec.load_balancer.listener_ports(),
                &ingress_cidrs,
                &service_ports,
                &spec.vpc_cidr.to_string(),
            ),
            egress: egress_rules(),
        }),
    )]
}

/// The ACL's own catch-all entries; AWS adds them and they cannot be changed.
const DEFAULT_RULE: i32 = 32767;
const ACL_NOT_YET: &[&str] = &["InvalidNetworkAclID.NotFound", "InvalidSubnetID.NotFound"];

/// One entry, parsed from (or rendered to) its one-line form, which is also how it is
/// serialized (so plans show it so).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    number: i32,
    allow: bool,
    /// AWS's protocol number: "6" tcp, "1" icmp, "-1" all.
    protocol: String,
    /// Ports for tcp, type and code for icmp.
    range: Option<(i32, i32)>,
    cidr: String,
}

/// AWS's protocol numbers.
const TCP: &str = "6";
const ICMP: &str = "1";
const ALL: &str = "-1";
const ANYWHERE: &str = "0.0.0.0/0";

impl Rule {
    fn allow(number: i32, protocol: &str, range: Option<(i32, i32)>, cidr: &str) -> Rule {
        Rule {
            number,
            allow: true,
            protocol: protocol.to_string(),
            range,
            cidr: cidr.to_string(),
        }
    }

    fn parse(s: &str) -> Option<Rule> {
        let f: Vec<&str> = s.split_whitespace().collect();
        let [number, action, proto, range, cidr] = f[..] else {
            return None;
        };
        let (protocol, range) = match proto {
            "tcp" => {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                ("6", Some((a.parse().ok()?, b.parse().ok()?)))
            }
            "icmp" if range == "all" => ("1", Some((-1, -1))),
            "icmp" => {
                let (t, c) = range.split_once(':')?;
                ("1", Some((t.parse().ok()?, c.parse().ok()?)))
            }
            "all" => ("-1", None),
            // Any other protocol by number (17 is udp), as `render` writes it.
            other => {
                other.parse::<i32>().ok()?;
                let range = match range.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => None,
                };
                (other, range)
            }
        };
        Some(Rule {
            number: number.parse().ok()?,
            allow: action == "allow",
            protocol: protocol.to_string(),
            range,
            cidr: cidr.to_string(),
        })
    }

    fn render(&self) -> String {
        let action = if self.allow { "allow" } else { "deny" };
        let (proto, range) = match (self.protocol.as_str(), self.range) {
            ("6", Some((a, b))) if a == b => ("tcp", a.to_string()),
            ("6", Some((a, b))) => ("tcp", format!("{a}-{b}")),
            ("1", Some((-1, -1))) => ("icmp", "all".to_string()),
            ("1", Some((t, c))) => ("icmp", format!("{t}:{c}")),
            ("-1", _) => ("all", "-".to_string()),
            (p, Some((a, b))) => (p, format!("{a}-{b}")),
            (p, None) => (p, "-".to_string()),
        };
        format!("{} {action} {proto} {range} {}", self.number, self.cidr)
    }

    fn of(e: &NetworkAclEntry) -> Rule {
        let protocol = e.protocol().unwrap_or("-1").to_string();
        let range = match protocol.as_str() {
            "6" | "17" => e
                .port_range()
                .map(|p| (p.from().unwrap_or(0), p.to().unwrap_or(0))),
            // All types and codes when none are given (moto stores none at all).
            "1" => Some(e.icmp_type_code().map_or((-1, -1), |t| {
                (t.r#type().unwrap_or(-1), t.code().unwrap_or(-1))
            })),
            _ => None,
        };
        Rule {
            number: e.rule_number().unwrap_or(0),
            allow: e.rule_action() == Some(&RuleAction::Allow),
            protocol,
            range,
            // An IPv6 entry (added by hand) has no IPv4 block: show its own, so the
            // diff sees it and removes it.
            cidr: e
                .cidr_block()
                .or(e.ipv6_cidr_block())
                .unwrap_or("-")
                .to_string(),
        }
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.render())
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let line = String::deserialize(d)?;
        Rule::parse(&line)
            .ok_or_else(|| serde::de::Error::custom(format!("not a network ACL rule: {line}")))
    }
}

/// The ingress rules for a load balancer on `port` open to `ingress`, services on
/// `service_ports`, in a VPC of `vpc_cidr`.
pub fn ingress_rules(
    listener_ports: &[u16],
    ingress: &[String],
    service_ports: &[u16],
    vpc_cidr: &str,
) -> Vec<Rule> {
    let mut out = Vec::new();
    let pairs = listener_ports
        .iter()
        .flat_map(|p| ingress.iter().map(move |c| (p, c)));
    for (i, (&port, cidr)) in pairs.enumerate() {
        out.push(Rule::allow(
            100 + i as i32,
            TCP,
            Some((port.into(), port.into())),
            cidr,
        ));
    }
    for (i, &port) in service_ports.iter().enumerate() {
        out.push(Rule::allow(
            200 + i as i32,
            TCP,
            Some((port.into(), port.into())),
            vpc_cidr,
        ));
    }
    out.push(Rule::allow(300, TCP, Some((1024, 3388)), ANYWHERE));
    out.push(Rule::allow(310, TCP, Some((3390, 65535)), ANYWHERE));
    // ICMP, for path MTU discovery ("fragmentation needed") among others: a stateless
    // ACL that drops it can stall large transfers to hosts outside the VPC.
    out.push(Rule::allow(320, ICMP, Some((-1, -1)), ANYWHERE));
    out
}

/// Everything may leave.
pub fn egress_rules() -> Vec<Rule> {
    vec![Rule::allow(100, ALL, None, ANYWHERE)]
}

pub async fn discover(c: &Clients, stack: &str) -> Result<Vec<Live>, Error> {
    let mut out = Vec::new();
    let listed = super::ec2_listing!(
        c.ec2.describe_network_acls(),
        stack,
        "network ACLs",
        network_acls
    );
    for (address, ref acl) in listed {
        let rules = |egress: bool| {
            let mut rules: Vec<Rule> = acl
                .entries()
                .iter()
                .filter(|e| e.egress() == Some(egress) && e.rule_number() != Some(DEFAULT_RULE))
                .map(Rule::of)
                .collect();
            rules.sort_by_key(|r| r.number);
            rules
        };
        let mut subnets = Vec::new();
        let mut extra = BTreeMap::new();
        for assoc in acl.associations() {
            if let (Some(s), Some(id)) = (assoc.subnet_id(), assoc.network_acl_association_id()) {
                subnets.push(Ref::id(s));
                extra.insert(format!("association:{s}"), id.to_string());
            }
        }
        let attrs = to_attrs(&NetworkAclAttrs {
            vpc_id: Ref::id(acl.vpc_id().unwrap_or_default()),
            subnet_ids: subnets,
            ingress: rules(false),
            egress: rules(true),
        });
        out.push(Live {
            address,
            id: acl.network_acl_id().unwrap_or_default().to_string(),
            attrs,
            extra,
        });
    }
    Ok(out)
}

pub async fn create(ctx: &Ctx, a: &Address, want: NetworkAclAttrs) -> Result<Created, Error> {
    let r = retry_codes(EC2_NOT_YET, Patience::FRESH_ID, || async {
        ctx.c
            .ec2
            .create_network_acl()
            .vpc_id(want.vpc_id.as_id())
            .tag_specifications(ec2_tag_spec(ctx, a, ResourceType::NetworkAcl))
            .send()
            .await
            .ctx("creating", a)
    })
    .await?;
    let id = r
        .network_acl()
        .and_then(|n| n.network_acl_id())
        .unwrap_or_default()
        .to_string();
    for (egress, rules) in [(false, &want.ingress), (true, &want.egress)] {
        set_rules(ctx, a, &id, egress, &[], rules).await?;
    }
    // The rules first: a subnet moves over to a complete ACL, never to a deny-all one.
    for s in ids(&want.subnet_ids) {
        move_subnet(ctx, a, &s, &id).await?;
    }
    Ok((id, Default::default()))
}

/// Makes the entries on one side read `want` (they read `have`).
async fn set_rules(
    ctx: &Ctx,
    a: &Address,
    id: &str,
    egress: bool,
    have: &[Rule],
    want: &[Rule],
) -> Result<(), Error> {
    let have: BTreeMap<i32, &Rule> = have.iter().map(|r| (r.number, r)).collect();
    for old in have
        .values()
        .filter(|o| !want.iter().any(|w| w.number == o.number))
    {
        absent_ok(
            ctx.c
                .ec2
                .delete_network_acl_entry()
                .network_acl_id(id)
                .egress(egress)
                .rule_number(old.number)
                .send()
                .await
                .ctx("removing a rule of", a),
            &["InvalidNetworkAclEntry.NotFound"],
        )?;
    }
    // Create and Replace take the same fields on different builder types.
    macro_rules! entry {
        ($call:expr, $rule:expr) => {{
            let (ports, icmp) = ranges($rule);
            $call
                .network_acl_id(id)
                .egress(egress)
                .rule_number($rule.number)
                .protocol(&$rule.protocol)
                .rule_action(action($rule))
                .cidr_block(&$rule.cidr)
                .set_port_range(ports)
                .set_icmp_type_code(icmp)
        }};
    }
    for rule in want {
        match have.get(&rule.number) {
            Some(&old) if old == rule => {}
            Some(_) => {
                retry_codes(ACL_NOT_YET, Patience::FRESH_ID, || async {
                    entry!(ctx.c.ec2.replace_network_acl_entry(), rule)
                        .send()
                        .await
                        .ctx("replacing a rule of", a)
                        .map(drop)
                })
                .await?;
            }
            None => {
                retry_codes(ACL_NOT_YET, Patience::FRESH_ID, || async {
                    entry!(ctx.c.ec2.create_network_acl_entry(), rule)
                        .send()
                        .await
                        .ctx("adding a rule to", a)
                        .map(drop)
                })
                .await?;
            }
        }
    }
    Ok(())
}

fn action(rule: &Rule) -> RuleAction {
    if rule.allow {
        RuleAction::Allow
    } else {
        RuleAction::Deny
    }
}

fn ranges(rule: &Rule) -> (Option<PortRange>, Option<IcmpTypeCode>) {
    match (rule.protocol.as_str(), rule.range) {
        ("1", Some((t, c))) => (
            None,
            Some(IcmpTypeCode::builder().r#type(t).code(c).build()),
        ),
        (_, Some((from, to))) => (Some(PortRange::builder().from(from).to(to).build()), None),
        _ => (None, None),
    }
}

/// Moves `subnet` to the ACL `to`, waiting while a fresh subnet's association is not
/// visible yet.
async fn move_subnet(ctx: &Ctx, a: &Address, subnet: &str, to: &str) -> Result<(), Error> {
    retry_codes(ACL_NOT_YET, Patience::FRESH_ID, || {
        try_move(ctx, a, subnet, to)
    })
    .await
}

/// One attempt. Every subnet is associated with exactly one ACL, so the move replaces
/// its current association.
async fn try_move(ctx: &Ctx, a: &Address, subnet: &str, to: &str) -> Result<(), Error> {
    let found = ctx
        .c
        .ec2
        .describe_network_acls()
        .filters(
            Filter::builder()
                .name("association.subnet-id")
                .values(subnet)
                .build(),
        )
        .send()
        .await
        .ctx("finding the network ACL of a subnet of", a)?;
    let association = found
        .network_acls()
        .iter()
        .flat_map(|n| n.associations())
        .find(|x| x.subnet_id() == Some(subnet))
        .and_then(|x| x.network_acl_association_id())
        .map(str::to_string);
    let Some(association) = association else {
        return Err(Error::Aws {
            detail: None,
            action: "finding the network ACL of a subnet of".into(),
            resource: a.to_string(),
            code: "InvalidSubnetID.NotFound".into(),
            message: format!("{subnet} has no network ACL association yet"),
        });
    };
    ctx.c
        .ec2
        .replace_network_acl_association()
        .association_id(association)
        .network_acl_id(to)
        .send()
        .await
        .ctx("associating a subnet with", a)
        .map(drop)
}

/// The VPC's default ACL, where subnets go back to when they leave this one.
async fn default_acl(ctx: &Ctx, a: &Address, vpc: &str) -> Result<String, Error> {
    let found = retry_codes(EC2_NOT_YET, Patience::FRESH_ID, || async {
        ctx.c
            .ec2
            .describe_network_acls()
            .filters(Filter::builder().name("vpc-id").values(vpc).build())
            .filters(Filter::builder().name("default").values("true").build())
            .send()
            .await
            .ctx("finding the default network ACL for", a)
    })
    .await?;
    found
        .network_acls()
        .first()
        .and_then(|n| n.network_acl_id())
        .map(str::to_string)
        .ok_or_else(|| Error::Aws {
            detail: None,
            action: "finding the default network ACL for".into(),
            resource: a.to_string(),
            code: "InvalidNetworkAclID.NotFound".into(),
            message: format!("{vpc} has no default network ACL"),
        })
}

pub async fn update(
    ctx: &Ctx,
    live: &Live,
    want: NetworkAclAttrs,
    changes: &[String],
) -> Result<(), Error> {
    let a = &live.address;
    let have: NetworkAclAttrs = from_attrs(&live.attrs)?;
    let sides = [
        (
            false,
            attr!(NetworkAclAttrs.ingress),
            &have.ingress,
            &want.ingress,
        ),
        (
            true,
            attr!(NetworkAclAttrs.egress),
            &have.egress,
            &want.egress,
        ),
    ];
    for (egress, key, have, want) in sides {
        if changed(changes, key) {
            set_rules(ctx, a, &live.id, egress, have, want).await?;
        }
    }
    if changed(changes, attr!(NetworkAclAttrs.subnet_ids)) {
        let vpc = have.vpc_id.as_id();
        let (want, have) = (ids(&want.subnet_ids), ids(&have.subnet_ids));
        for s in want.iter().filter(|s| !have.contains(s)) {
            move_subnet(ctx, a, s, &live.id).await?;
        }
        let leaving: Vec<&String> = have.iter().filter(|s| !want.contains(s)).collect();
        if !leaving.is_empty() {
            let default = default_acl(ctx, a, vpc).await?;
            for s in leaving {
                move_subnet_if_present(ctx, a, s, &default).await?;
            }
        }
    }
    Ok(())
}

/// A subnet on its way out (deleted by the same run) needs no move.
async fn move_subnet_if_present(
    ctx: &Ctx,
    a: &Address,
    subnet: &str,
    to: &str,
) -> Result<(), Error> {
    absent_ok(
        try_move(ctx, a, subnet, to).await,
        &["InvalidSubnetID.NotFound"],
    )
}

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    let a = &live.address;
    let have: NetworkAclAttrs = from_attrs(&live.attrs)?;
    if !have.subnet_ids.is_empty() {
        let default = default_acl(ctx, a, have.vpc_id.as_id()).await?;
        for s in &ids(&have.subnet_ids) {
            move_subnet_if_present(ctx, a, s, &default).await?;
        }
    }
    retry_codes(STILL_IN_USE, Patience::DEPENDENCY, || async {
        absent_ok(
            ctx.c
                .ec2
                .delete_network_acl()
                .network_acl_id(&live.id)
                .send()
                .await
                .ctx("deleting", a),
            &["InvalidNetworkAclID.NotFound"],
        )
    })
    .await
}

impl super::KindOps for NetworkAclAttrs {
    const FORCE_NEW: &'static [&'static str] = &[attr!(NetworkAclAttrs.vpc_id)];
    const REFERENCES: &'static [&'static str] = &[
        attr!(NetworkAclAttrs.vpc_id),
        attr!(NetworkAclAttrs.subnet_ids),
    ];
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::Ec2;
    const LISTING: super::Listing = super::Listing::NetworkAcls;

    super::writes!(typed);
    super::writes!(delete);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip_and_keep_ssh_and_rdp_closed_to_the_world() {
        let rules = ingress_rules(&[80, 443], &["0.0.0.0/0".into()], &[8080], "10.20.0.0/16");
        assert_eq!(rules.len(), 6, "{rules:?}");
        for r in rules.iter().chain(&egress_rules()) {
            assert_eq!(Rule::parse(&r.render()).as_ref(), Some(r));
        }
        // Entries this tool never writes still round-trip, so an update can remove them.
        for foreign in ["130 deny 17 53-53 10.0.0.0/8", "140 allow tcp 22 ::/0"] {
            assert_eq!(
                Rule::parse(foreign).map(|r| r.render()).as_deref(),
                Some(foreign)
            );
        }
        // EC2.21 judges every inbound entry alone: none from anywhere may cover 22 or 3389.
        for r in &rules {
            if r.cidr == "0.0.0.0/0" && r.allow {
                assert_ne!(r.protocol, "-1", "{r:?}");
                if r.protocol == "6" {
                    let (from, to) = r.range.unwrap();
                    for port in [22, 3389] {
                        assert!(!(from..=to).contains(&port), "{r:?} opens {port}");
                    }
                }
            }
        }
    }
}
