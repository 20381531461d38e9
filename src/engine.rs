//! The steps every command shares: connect, probe the endpoint, resolve what the stack
//! file leaves to AWS (the AMI), discover live resources, diff.

use crate::aws::probe::{Service, missing_services};
use crate::aws::{Clients, ConnectOptions, Context, Error};
use crate::desired::{self, Inputs};
use crate::model::{Address, Desired, Live};
use crate::plan::{self, Plan};
use crate::resources::{self, Hints, service_of};
use crate::spec::{Ami, Spec};
use std::collections::BTreeMap;

/// The public SSM parameter naming the latest Amazon Linux 2023 AMI for x86_64.
pub const AL2023_PARAMETER: &str =
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";

pub const ALL_SERVICES: [Service; 6] = [
    Service::Ec2,
    Service::Elbv2,
    Service::AutoScaling,
    Service::DynamoDb,
    Service::S3,
    Service::Iam,
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

pub async fn prepare(spec: &Spec, opts: &ConnectOptions, goal: Goal) -> Result<Prepared, Error> {
    let mut opts = opts.clone();
    if opts.region.is_none() {
        opts.region = spec.region.clone();
    }
    let clients = Clients::connect(&opts).await?;
    let missing = missing_services(&clients, &ALL_SERVICES).await?;
    let skip: Vec<Service> = missing.iter().map(|m| m.service).collect();
    let desired = match goal {
        Goal::Destroy | Goal::Observe => Vec::new(),
        Goal::Converge => {
            // The build runs while AWS answers the lookups.
            let artifact = async {
                match &spec.app {
                    Some(app) => crate::artifact::produce(app).await.map(Some),
                    None => Ok(None),
                }
            };
            let (amis, account_id, instance_profile_arn, artifact) = tokio::try_join!(
                resolve_amis(&clients, spec),
                account_id(&clients),
                resolve_instance_profile(&clients, spec),
                artifact,
            )?;
            let inputs = Inputs {
                region: clients.region.clone(),
                amis,
                endpoint_url: clients.endpoint_url.clone(),
                account_id,
                artifact,
                instance_profile_arn,
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
    let found = resources::discover(&clients, &spec.stack, &hints, &skip).await?;
    let live = plan::index_live(found.live);
    let mut plan = plan::diff(&desired, &live);
    plan.missing_services = missing;
    // A name the stack would create but someone else holds is a conflict, not a change.
    plan.conflicts = found
        .foreign
        .into_iter()
        .filter(|f| {
            desired.iter().any(|d| {
                d.address.kind == f.kind
                    && d.attrs.get("name").and_then(|v| v.as_str()) == Some(f.name.as_str())
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

async fn account_id(c: &Clients) -> Result<String, Error> {
    let r = c
        .sts
        .get_caller_identity()
        .send()
        .await
        .ctx("asking which account the credentials belong to", &"STS")?;
    Ok(r.account().unwrap_or_default().to_string())
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

async fn resolve_amis(c: &Clients, spec: &Spec) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    if !spec.services.iter().any(|s| s.ami == Ami::Al2023) {
        return Ok(out);
    }
    let r = c
        .ssm
        .get_parameter()
        .name(AL2023_PARAMETER)
        .send()
        .await
        .ctx(
            "resolving `ami: al2023` through SSM parameter",
            &AL2023_PARAMETER,
        )?;
    let image = r
        .parameter()
        .and_then(|p| p.value())
        .unwrap_or_default()
        .to_string();
    for s in &spec.services {
        if s.ami == Ami::Al2023 {
            out.insert(s.name.clone(), image.clone());
        }
    }
    Ok(out)
}
