//! Names the stack would create that someone else already holds. AWS refuses a second
//! load balancer, target group, Auto Scaling group, launch template, role or instance
//! profile of the same name (and a second security group of the same name in one VPC),
//! so `up` would fail half-way; `plan` finds them first and `up` refuses before any
//! write. Only names no live resource of the stack carries are looked up, so a
//! converged stack costs no call here.

use super::Foreign;
use crate::aws::{Clients, Context, Error};
use crate::model::{Address, Desired, Kind, Live};
use std::collections::{BTreeMap, BTreeSet};

/// The AWS name a desired resource will carry, for the kinds whose names are unique.
fn wanted_name(d: &Desired) -> Option<&str> {
    // Tables and buckets are checked by their own discovery.
    let attr = super::unique_name(d.address.kind)?;
    d.attrs.get(attr).and_then(|v| v.as_str())
}

/// Names the stack wants, per kind, that none of its live resources carries.
fn unclaimed(desired: &[Desired], live: &BTreeMap<Address, Live>) -> BTreeMap<Kind, Vec<String>> {
    let held: BTreeSet<(Kind, &str)> = live
        .values()
        .flat_map(|l| {
            ["name", "group_name"]
                .into_iter()
                .filter_map(|k| l.attrs.get(k).and_then(|v| v.as_str()))
                .map(move |n| (l.address.kind, n))
        })
        .collect();
    let mut out: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
    for d in desired {
        if let Some(n) = wanted_name(d)
            && !held.contains(&(d.address.kind, n))
        {
            out.entry(d.address.kind).or_default().push(n.to_string());
        }
    }
    out
}

fn foreign(kind: Kind, names: impl IntoIterator<Item = String>) -> Vec<Foreign> {
    names
        .into_iter()
        .map(|name| Foreign { kind, name })
        .collect()
}

/// The names the stack wants that exist already and are not the stack's own.
pub async fn find(
    c: &Clients,
    desired: &[Desired],
    live: &BTreeMap<Address, Live>,
) -> Result<Vec<Foreign>, Error> {
    let wanted = unclaimed(desired, live);
    let mut out = Vec::new();
    for (kind, names) in wanted {
        let taken = match kind {
            Kind::LoadBalancer => load_balancers(c, &names).await?,
            Kind::TargetGroup => target_groups(c, &names).await?,
            Kind::AutoScalingGroup => groups(c, &names).await?,
            Kind::LaunchTemplate => templates(c, &names).await?,
            Kind::Role => roles(c, &names).await?,
            Kind::InstanceProfile => profiles(c, &names).await?,
            Kind::SecurityGroup => security_groups(c, &names, live).await?,
            _ => Vec::new(),
        };
        out.extend(foreign(kind, taken));
    }
    Ok(out)
}

async fn load_balancers(c: &Clients, names: &[String]) -> Result<Vec<String>, Error> {
    match c
        .elb
        .describe_load_balancers()
        .set_names(Some(names.to_vec()))
        .send()
        .await
        .ctx("looking up", &"load balancer names")
    {
        Ok(r) => Ok(r
            .load_balancers()
            .iter()
            .filter_map(|l| l.load_balancer_name())
            .map(str::to_string)
            .collect()),
        Err(e) if e.is_code(&["LoadBalancerNotFound"]) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// One call per name: DescribeTargetGroups fails whole when any name is unknown.
async fn target_groups(c: &Clients, names: &[String]) -> Result<Vec<String>, Error> {
    let mut taken = Vec::new();
    for n in names {
        match c
            .elb
            .describe_target_groups()
            .names(n)
            .send()
            .await
            .ctx("looking up", &"target group names")
        {
            Ok(r) if !r.target_groups().is_empty() => taken.push(n.clone()),
            Ok(_) => {}
            Err(e) if e.is_code(&["TargetGroupNotFound"]) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(taken)
}

async fn groups(c: &Clients, names: &[String]) -> Result<Vec<String>, Error> {
    let r = c
        .asg
        .describe_auto_scaling_groups()
        .set_auto_scaling_group_names(Some(names.to_vec()))
        .send()
        .await
        .ctx("looking up", &"Auto Scaling group names")?;
    Ok(r.auto_scaling_groups()
        .iter()
        .filter_map(|g| g.auto_scaling_group_name())
        .map(str::to_string)
        .collect())
}

async fn templates(c: &Clients, names: &[String]) -> Result<Vec<String>, Error> {
    let r = c
        .ec2
        .describe_launch_templates()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("launch-template-name")
                .set_values(Some(names.to_vec()))
                .build(),
        )
        .send()
        .await
        .ctx("looking up", &"launch template names")?;
    Ok(r.launch_templates()
        .iter()
        .filter_map(|t| t.launch_template_name())
        .map(str::to_string)
        .collect())
}

async fn roles(c: &Clients, names: &[String]) -> Result<Vec<String>, Error> {
    let mut taken = Vec::new();
    for n in names {
        match c
            .iam
            .get_role()
            .role_name(n)
            .send()
            .await
            .ctx("looking up", &"IAM role names")
        {
            Ok(_) => taken.push(n.clone()),
            Err(e) if e.is_code(&["NoSuchEntity"]) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(taken)
}

async fn profiles(c: &Clients, names: &[String]) -> Result<Vec<String>, Error> {
    let mut taken = Vec::new();
    for n in names {
        match c
            .iam
            .get_instance_profile()
            .instance_profile_name(n)
            .send()
            .await
            .ctx("looking up", &"instance profile names")
        {
            Ok(_) => taken.push(n.clone()),
            Err(e) if e.is_code(&["NoSuchEntity"]) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(taken)
}

/// Group names are unique per VPC: only the stack's own VPC, once it exists, can hold
/// a conflicting one.
async fn security_groups(
    c: &Clients,
    names: &[String],
    live: &BTreeMap<Address, Live>,
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
