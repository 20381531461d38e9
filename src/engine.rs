//! The steps every command shares: connect, probe the endpoint, resolve what the stack
//! file leaves to AWS (the AMI), discover live resources, diff.

use crate::aws::probe::{Service, missing_services};
use crate::aws::{Clients, ConnectOptions, Context, Error};
use crate::desired::{self, Inputs};
use crate::model::{Address, Desired, Live, attr, from_attrs};
use crate::plan::{self, Plan};
use crate::resources::asg::AutoScalingGroupAttrs;
use crate::resources::launch_template::LaunchTemplateAttrs;
use crate::resources::{self, Hints, service_of};
use crate::spec::{Ami, Arch, Spec};
use std::collections::BTreeMap;
use std::collections::BTreeSet;

/// The public SSM parameter naming the latest Amazon Linux 2023 AMI for an
/// architecture (`…-x86_64`, `…-arm64`).
pub fn al2023_parameter(arch: Arch) -> String {
    format!(
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{}",
        arch.as_str()
    )
}

pub const ALL_SERVICES: [Service; 7] = [
    Service::Ec2,
    Service::Elbv2,
    Service::AutoScaling,
    Service::DynamoDb,
    Service::S3,
    Service::Iam,
    Service::Ssm,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Make AWS match the stack file.
    Converge,
    /// Remove everything the stack owns.
    Destroy,
    /// Only read what is live (`outputs`, `status`): no AMI lookup, no app build.
    Observe,
}

/// Everything a command needs after looking at AWS.
pub struct Prepared {
    pub clients: Clients,
    pub desired: Vec<Desired>,
    pub live: BTreeMap<Address, Live>,
    pub plan: Plan,
}

/// What the engine has to say while it prepares (the app's build starting).
pub type Say<'a> = &'a (dyn Fn(String) + Sync);

/// Connects, discovers and plans, with nothing to say: for reading what is there
/// (`outputs`, `status`), where no app is built.
pub async fn prepare(spec: &Spec, opts: &ConnectOptions, goal: Goal) -> Result<Prepared, Error> {
    prepare_with(spec, opts, goal, &BTreeMap::new(), &|_| {}).await
}

/// [`prepare`], building the app where the goal needs it (saying so through `say`),
/// or with stored builds (artifact keys, per service) installed instead: what
/// `stack rollback` applies.
pub async fn prepare_with(
    spec: &Spec,
    opts: &ConnectOptions,
    goal: Goal,
    builds: &BTreeMap<String, String>,
    say: Say<'_>,
) -> Result<Prepared, Error> {
    let mut opts = opts.clone();
    if let Some(r) = &opts.region
        && !crate::aws::region_is_well_formed(r)
    {
        return Err(Error::Config(format!(
            "`{r}` is not an AWS region name (like us-east-1)"
        )));
    }
    match (&opts.region, &spec.region) {
        (Some(flag), Some(file)) if flag != file => {
            return Err(Error::Config(format!(
                "--region {flag} differs from `region: {file}` in {}: the stack file says where the stack lives; drop --region or change the file",
                spec.file.display()
            )));
        }
        (None, file) => opts.region = file.clone(),
        _ => {}
    }
    let clients = Clients::connect(&opts).await?;
    // The probe first: when nothing answers, it says so at once, while STS's client
    // would retry the dead endpoint for half a minute.
    let missing = missing_services(&clients, &ALL_SERVICES).await?;
    // The account names where a plan applies (and the instance role's ARNs);
    // `outputs` and `status` only read what is there.
    let (account, partition) = if goal == Goal::Observe {
        (String::new(), String::new())
    } else {
        caller(&clients).await?
    };
    let skip: Vec<Service> = missing.iter().map(|m| m.service).collect();
    let desired = match goal {
        Goal::Destroy | Goal::Observe => Vec::new(),
        Goal::Converge => {
            let archs = if skip.contains(&Service::Ec2) {
                spec.services
                    .iter()
                    .map(|s| (s.name.clone(), Arch::guess(&s.instance_type)))
                    .collect()
            } else {
                resolve_architectures(&clients, spec).await?
            };
            let needed: BTreeSet<Arch> = archs.values().copied().collect();
            // The builds run while AWS answers the lookups; a missing toolchain or a
            // binary of the wrong architecture fails here, before any write.
            let artifacts = async {
                let mut out = BTreeMap::new();
                if let Some(app) = spec.app.as_ref().filter(|_| builds.is_empty()) {
                    for &arch in &needed {
                        out.insert(arch, crate::artifact::produce(app, arch, say).await?);
                    }
                }
                Ok::<_, Error>(out)
            };
            let (amis, instance_profile_arn, artifacts) = tokio::try_join!(
                resolve_amis(&clients, spec, &archs),
                resolve_instance_profile(&clients, spec),
                artifacts,
            )?;
            let inputs = Inputs {
                region: clients.region.clone(),
                amis,
                endpoint_url: clients.endpoint_url.clone(),
                account_id: account.clone(),
                partition,
                artifacts,
                archs,
                instance_profile_arn,
                builds: builds.clone(),
            };
            desired::build(spec, &inputs)
                .into_iter()
                .filter(|d| !skip.contains(&service_of(d.address.kind)))
                .collect()
        }
    };
    let hints = Hints {
        bucket_names: spec.bucket.iter().map(|b| b.name.clone()).collect(),
    };
    let mut found = resources::discover(&clients, &spec.stack, &hints, &skip).await?;
    let live = plan::index_live(found.live, &desired);
    if goal == Goal::Converge {
        let wanted: Vec<Desired> = desired
            .iter()
            .filter(|d| !skip.contains(&service_of(d.address.kind)))
            .cloned()
            .collect();
        found
            .foreign
            .extend(resources::conflicts::find(&clients, &wanted, &live).await?);
    }
    let mut plan = plan::diff(&desired, &live);
    plan.stack = spec.stack.clone();
    plan.account = account;
    plan.region = clients.region.clone();
    plan.endpoint = clients.endpoint_url.clone();
    plan.missing_services = missing;
    for change in plan.changes.iter_mut() {
        change.notes = notes(change, &desired, &live);
        // What a replacement or removal would destroy, known before any write.
        if !matches!(change.action, plan::Action::Replace | plan::Action::Delete) {
            continue;
        }
        if let Some(l) = live.get(&change.address) {
            change.protected = resources::protected(l);
            change.destroys = resources::data_at_risk(&clients, l).await?;
            if let Some(loss) = change.destroys.as_mut() {
                // The file's `force_destroy: true` on the bucket allows it too.
                loss.allowed_by_file |= desired
                    .iter()
                    .any(|d| d.address == change.address && resources::file_allows_loss(d));
            }
        }
    }
    // Services that run but fail their health checks, which `up` would wait on.
    if goal == Goal::Converge
        && !skip.contains(&Service::Elbv2)
        && !skip.contains(&Service::AutoScaling)
    {
        let leaving: Vec<&Address> = plan
            .changes
            .iter()
            .filter(|c| matches!(c.action, plan::Action::Replace | plan::Action::Delete))
            .map(|c| &c.address)
            .collect();
        plan.warnings = resources::health_warnings(&clients, &live, &leaving).await?;
    }
    // A name the stack would create but someone else holds is a conflict, not a change.
    plan.conflicts = found
        .foreign
        .into_iter()
        .filter(|f| {
            desired.iter().any(|d| {
                d.address.kind == f.kind
                    && ["name", "group_name"]
                        .iter()
                        .any(|k| d.attrs.get(*k).and_then(|v| v.as_str()) == Some(f.name.as_str()))
            })
        })
        .collect();
    Ok(Prepared {
        clients,
        desired,
        live,
        plan,
    })
}

/// The account and partition (`aws`, `aws-cn`, `aws-us-gov`) of the credentials: the
/// partition is the second field of the caller's ARN.
async fn caller(c: &Clients) -> Result<(String, String), Error> {
    let r = c
        .sts
        .get_caller_identity()
        .send()
        .await
        .ctx("asking which account the credentials belong to", &"STS")?;
    let partition = r
        .arn()
        .and_then(|arn| arn.split(':').nth(1))
        .filter(|p| !p.is_empty())
        .unwrap_or("aws")
        .to_string();
    Ok((r.account().unwrap_or_default().to_string(), partition))
}

/// Each service's CPU architecture, from its instance type: one DescribeInstanceTypes
/// call for every type the file names. A type that supports x86_64 runs the x86_64
/// build; Graviton types (arm64 only) need an arm64 build and image.
async fn resolve_architectures(c: &Clients, spec: &Spec) -> Result<BTreeMap<String, Arch>, Error> {
    let types: BTreeSet<&str> = spec
        .services
        .iter()
        .map(|s| s.instance_type.as_str())
        .collect();
    let mut found: BTreeMap<String, Arch> = BTreeMap::new();
    let mut pages = c
        .ec2
        .describe_instance_types()
        .set_instance_types(Some(
            types
                .iter()
                .map(|t| aws_sdk_ec2::types::InstanceType::from(*t))
                .collect(),
        ))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.ctx("looking up", &"the instance types the stack file names")?;
        for t in page.instance_types() {
            let archs = t
                .processor_info()
                .map(|p| p.supported_architectures())
                .unwrap_or_default();
            let arch = if archs.iter().any(|a| a.as_str() == "x86_64") {
                Arch::X86_64
            } else if archs.iter().any(|a| a.as_str() == "arm64") {
                Arch::Arm64
            } else {
                continue;
            };
            if let Some(name) = t.instance_type() {
                found.insert(name.as_str().to_string(), arch);
            }
        }
    }
    spec.services
        .iter()
        .map(|s| match found.get(&s.instance_type) {
            Some(a) => Ok((s.name.clone(), *a)),
            None => Err(Error::Config(format!(
                "service `{}`: AWS reports no x86_64 or arm64 instance type `{}` in {}",
                s.name, s.instance_type, c.region
            ))),
        })
        .collect()
}

/// The ARN of the existing profile the stack file names; it must exist before `up`.
async fn resolve_instance_profile(c: &Clients, spec: &Spec) -> Result<Option<String>, Error> {
    let Some(name) = &spec.instance_profile else {
        return Ok(None);
    };
    let r = c
        .iam
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
        .ctx(
            "looking up the instance profile named in the stack file",
            name,
        )?;
    Ok(r.instance_profile().map(|p| p.arn().to_string()))
}

async fn resolve_amis(
    c: &Clients,
    spec: &Spec,
    archs: &BTreeMap<String, Arch>,
) -> Result<BTreeMap<String, String>, Error> {
    let wanted: BTreeSet<Arch> = spec
        .services
        .iter()
        .filter(|s| s.ami == Ami::Al2023)
        .filter_map(|s| archs.get(&s.name).copied())
        .collect();
    let mut images = BTreeMap::new();
    for arch in wanted {
        let parameter = al2023_parameter(arch);
        let r = c
            .ssm
            .get_parameter()
            .name(&parameter)
            .send()
            .await
            .ctx("resolving `ami: al2023` through SSM parameter", &parameter)?;
        let image = r
            .parameter()
            .and_then(|p| p.value())
            .unwrap_or_default()
            .to_string();
        images.insert(arch, image);
    }
    Ok(spec
        .services
        .iter()
        .filter(|s| s.ami == Ami::Al2023)
        .filter_map(|s| {
            let arch = archs.get(&s.name)?;
            Some((s.name.clone(), images.get(arch)?.clone()))
        })
        .collect())
}

/// What a person needs to judge a change beyond its attributes: the rendered user
/// data's lines that change (the plan compares only its digest), and how many running
/// instances a roll of a group replaces.
fn notes(
    change: &plan::Change,
    desired: &[Desired],
    live: &BTreeMap<Address, Live>,
) -> Vec<String> {
    let changed = |name: &str| change.attributes.iter().any(|a| a.name == name);
    let Some(l) = live.get(&change.address) else {
        return Vec::new();
    };
    match change.address.kind {
        crate::model::Kind::LaunchTemplate
            if changed(attr!(LaunchTemplateAttrs.user_data_sha256)) =>
        {
            let old = l
                .extra
                .get(crate::resources::launch_template::extra::USER_DATA)
                .map(String::as_str)
                .unwrap_or_default();
            let new = desired
                .iter()
                .find(|d| d.address == change.address)
                .and_then(|d| d.payload.as_deref())
                .unwrap_or_default();
            let mut out = vec!["user data:".to_string()];
            out.extend(crate::render::line_diff(old, new, 1));
            out
        }
        crate::model::Kind::AutoScalingGroup
            if changed(attr!(AutoScalingGroupAttrs.launch_template_digest))
                && change.action == plan::Action::Update =>
        {
            let n = l
                .extra
                .get(crate::resources::asg::extra::INSTANCES_IN_SERVICE)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            let how = desired
                .iter()
                .find(|d| d.address == change.address)
                .and_then(|d| from_attrs::<AutoScalingGroupAttrs>(&d.attrs).ok())
                .and_then(|g| crate::spec::DeploySpec::parse(&g.deploy))
                .map(|d| {
                    format!(
                        "; {}, {}–{}% of the group in service, {} s warmup, rolls back by itself on failure",
                        if d.min_healthy >= 100 {
                            "launch before terminate"
                        } else {
                            "may terminate first"
                        },
                        d.min_healthy,
                        d.max_healthy,
                        d.warmup
                    )
                })
                .unwrap_or_default();
            // Which template and build go out: the build from the `SHA256=` line of
            // each user data.
            let lt = Address::new(crate::model::Kind::LaunchTemplate, &change.address.name);
            let new_lt = desired.iter().find(|d| d.address == lt);
            let build = |user_data: Option<&str>| {
                crate::desired::build_of_user_data(user_data?)
                    .map(|v| v.chars().take(12).collect::<String>())
            };
            let old_build = build(
                live.get(&lt)
                    .and_then(|l| {
                        l.extra
                            .get(crate::resources::launch_template::extra::USER_DATA)
                    })
                    .map(String::as_str),
            );
            let new_build = build(new_lt.and_then(|d| d.payload.as_deref()));
            let builds = match (old_build, new_build) {
                (Some(o), Some(n)) if o != n => format!(", build {o}… → {n}…"),
                _ => String::new(),
            };
            let old_template = format!(
                "{} v{}",
                l.extra
                    .get(crate::resources::asg::extra::LAUNCH_TEMPLATE_NAME)
                    .map(String::as_str)
                    .unwrap_or("?"),
                l.extra
                    .get(crate::resources::asg::extra::LAUNCH_TEMPLATE_VERSION)
                    .map(String::as_str)
                    .unwrap_or("?")
            );
            let new_name = new_lt
                .and_then(|d| from_attrs::<LaunchTemplateAttrs>(&d.attrs).ok())
                .map(|t| t.name);
            let new_template = format!(
                "{} v{}",
                new_name.as_deref().unwrap_or("?"),
                crate::resources::LAUNCH_TEMPLATE_VERSION
            );
            vec![format!(
                "roll {n} instance{}: launch template {old_template} → {new_template}{builds}{how}",
                if n == 1 { "" } else { "s" }
            )]
        }
        _ => Vec::new(),
    }
}
