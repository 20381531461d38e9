//! The registry of resource kinds. Each kind lives in its own file with its whole life:
//! which attributes force replacement, discovery by tag, create, update, delete and the
//! waits they need. This module only dispatches over the closed [`Kind`] enum.

pub(crate) mod artifact;
pub(crate) mod asg;
pub use asg::{health_warnings, wait_all_healthy};
pub(crate) mod bucket;
pub use bucket::{access_log_prefix, lifecycle_summary};
pub use launch_template::VERSION as LAUNCH_TEMPLATE_VERSION;
pub use load_balancer::ACCESS_LOG_PREFIX;
pub mod conflicts;
mod elbv2;
pub(crate) mod flow_log;
pub(crate) mod iam_role;
pub(crate) mod igw;
pub(crate) mod instance_profile;
pub(crate) mod launch_template;
pub(crate) mod listener;
pub(crate) mod listener_rule;
pub(crate) mod load_balancer;
pub mod network_acl;
mod roll;
pub use roll::instance_templates;
pub(crate) mod route_table;
pub(crate) mod scaling_policy;
pub mod secret;
pub(crate) mod security_group;
pub(crate) mod subnet;
pub(crate) mod table;
pub(crate) mod target_group;
pub(crate) mod vpc;
pub mod vpc_endpoint;

use crate::aws::probe::Service;
use crate::aws::{Clients, Error};
use crate::model::{Address, Attrs, Desired, Kind, Live, from_attrs, ownership_tags};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where long waits report how far they are.
pub type ProgressFn = Arc<dyn Fn(&Address, String) + Send + Sync>;

/// What each operation needs besides its resource.
#[derive(Clone)]
pub struct Ctx {
    pub c: Clients,
    pub stack: String,
    /// `down --force`: empty non-empty buckets.
    pub force: bool,
    /// Reports progress of long waits ("2/2 instances in service").
    pub progress: ProgressFn,
    /// How long to wait for instances to pass health checks.
    pub ready_timeout: std::time::Duration,
    /// What the steps of one run share (set by the executor from the plan).
    pub shared: Arc<Shared>,
}

/// The result of a call sent once per run, shared by every step that needs it.
type SentOnce = tokio::sync::OnceCell<Result<(), Error>>;

/// What the steps of one run share: work that AWS wants in one call although it
/// spans several resources.
#[derive(Default)]
pub struct Shared {
    /// Listener rules' new priorities, per listener ARN. AWS refuses a priority that
    /// another rule still holds (`PriorityInUse`), so a swap must go in one
    /// SetRulePriorities call: the first rule step to run sends the whole batch.
    pub rule_priorities: BTreeMap<String, Vec<(String, i32)>>,
    sent: std::sync::Mutex<BTreeMap<String, Arc<SentOnce>>>,
}

impl Shared {
    /// What one run of `plan` shares between its steps.
    pub fn for_plan(plan: &crate::plan::Plan, live: &BTreeMap<Address, Live>) -> Shared {
        Shared {
            rule_priorities: listener_rule::priority_batches(plan, live),
            sent: Default::default(),
        }
    }

    /// Runs `send` once per `key` in this run; every caller gets its result.
    pub(crate) async fn once<F, Fut>(&self, key: &str, send: F) -> Result<(), Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), Error>>,
    {
        let cell = self
            .sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone();
        cell.get_or_init(send).await.clone()
    }
}

/// The data replacing or removing `live` would destroy: a table's items, a bucket's
/// objects. Counted while planning, so `up` and `down` refuse before any write.
pub async fn data_at_risk(c: &Clients, live: &Live) -> Result<Option<crate::plan::Loss>, Error> {
    match live.address.kind {
        Kind::Table => table::count_items(c, live).await,
        Kind::Bucket => bucket::count_objects(c, live).await,
        Kind::Vpc
        | Kind::Subnet
        | Kind::InternetGateway
        | Kind::RouteTable
        | Kind::SecurityGroup
        | Kind::LoadBalancer
        | Kind::TargetGroup
        | Kind::Listener
        | Kind::ListenerRule
        | Kind::Role
        | Kind::InstanceProfile
        | Kind::LaunchTemplate
        | Kind::AutoScalingGroup
        | Kind::ScalingPolicy
        | Kind::Artifact
        | Kind::Secret
        | Kind::NetworkAcl
        | Kind::FlowLog
        | Kind::VpcEndpoint => Ok(None),
    }
}

/// Whether a replacement can create the new resource before deleting the old one, so
/// that whatever uses it moves over in place (a subnet: the load balancer's SetSubnets,
/// the groups' VPCZoneIdentifier) instead of being replaced with it.
pub fn create_before_destroy(
    kind: Kind,
    live: &Live,
    wanted: &Attrs,
    all: &BTreeMap<Address, Live>,
) -> bool {
    match kind {
        Kind::Subnet => subnet::create_before_destroy(live, wanted, all),
        Kind::LaunchTemplate => launch_template::create_before_destroy(live, wanted),
        // Names unique per account or VPC (target groups, groups, templates, tables,
        // buckets, roles) cannot exist twice; the rest is held by nothing that could
        // move over.
        Kind::Vpc
        | Kind::InternetGateway
        | Kind::RouteTable
        | Kind::SecurityGroup
        | Kind::LoadBalancer
        | Kind::TargetGroup
        | Kind::Listener
        | Kind::ListenerRule
        | Kind::Role
        | Kind::InstanceProfile
        | Kind::AutoScalingGroup
        | Kind::ScalingPolicy
        | Kind::Table
        | Kind::Bucket
        | Kind::Artifact
        | Kind::Secret
        | Kind::NetworkAcl
        | Kind::FlowLog
        | Kind::VpcEndpoint => false,
    }
}

/// Order a kind needs beyond the references between resources (which the executor
/// reads from the attributes).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ordering {
    /// Its update waits until every resource of these kinds that goes has gone.
    pub update_after_deletes_of: &'static [Kind],
    /// Its delete waits until every resource of these kinds that goes has gone.
    pub delete_after_deletes_of: &'static [Kind],
}

pub fn ordering(kind: Kind) -> Ordering {
    match kind {
        // Whichever rule update runs first sends the listener's whole batch of
        // priorities, so every rule update waits for every rule delete.
        Kind::ListenerRule => Ordering {
            update_after_deletes_of: &[Kind::ListenerRule],
            ..Ordering::default()
        },
        // Instances and the load balancer hold public addresses that keep the gateway
        // attached; let them go first rather than retry for minutes.
        Kind::InternetGateway => Ordering {
            delete_after_deletes_of: &[Kind::LoadBalancer, Kind::AutoScalingGroup],
            ..Ordering::default()
        },
        Kind::Vpc
        | Kind::Subnet
        | Kind::RouteTable
        | Kind::SecurityGroup
        | Kind::LoadBalancer
        | Kind::TargetGroup
        | Kind::Listener
        | Kind::Role
        | Kind::InstanceProfile
        | Kind::LaunchTemplate
        | Kind::AutoScalingGroup
        | Kind::ScalingPolicy
        | Kind::Table
        | Kind::Bucket
        | Kind::Artifact
        | Kind::Secret
        | Kind::NetworkAcl
        | Kind::FlowLog
        | Kind::VpcEndpoint => Ordering::default(),
    }
}

/// Values only one resource may hold at a time (a listener rule's priority on its
/// listener): a step taking one must wait for the live holder to let it go.
pub fn claims(kind: Kind, attrs: &Attrs) -> Vec<String> {
    match kind {
        Kind::ListenerRule => listener_rule::claims(attrs),
        Kind::Listener => listener::claims(attrs),
        Kind::Vpc
        | Kind::Subnet
        | Kind::InternetGateway
        | Kind::RouteTable
        | Kind::SecurityGroup
        | Kind::LoadBalancer
        | Kind::TargetGroup
        | Kind::Role
        | Kind::InstanceProfile
        | Kind::LaunchTemplate
        | Kind::AutoScalingGroup
        | Kind::ScalingPolicy
        | Kind::Table
        | Kind::Bucket
        | Kind::Artifact
        | Kind::Secret
        | Kind::NetworkAcl
        | Kind::FlowLog
        | Kind::VpcEndpoint => Vec::new(),
    }
}

impl Ctx {
    pub fn tags(&self, a: &Address) -> Vec<(String, String)> {
        ownership_tags(&self.stack, a)
    }

    pub fn report(&self, a: &Address, msg: impl Into<String>) {
        (self.progress)(a, msg.into())
    }
}

/// Whether a change of `attr` can only be made by replacing the resource.
pub fn forces_replacement(kind: Kind, attr: &str) -> bool {
    let list: &[&str] = match kind {
        Kind::Vpc => vpc::FORCE_NEW,
        Kind::Subnet => subnet::FORCE_NEW,
        Kind::InternetGateway => igw::FORCE_NEW,
        Kind::RouteTable => route_table::FORCE_NEW,
        Kind::SecurityGroup => security_group::FORCE_NEW,
        Kind::LoadBalancer => load_balancer::FORCE_NEW,
        Kind::TargetGroup => target_group::FORCE_NEW,
        Kind::Listener => listener::FORCE_NEW,
        Kind::ListenerRule => listener_rule::FORCE_NEW,
        Kind::Role => iam_role::FORCE_NEW,
        Kind::InstanceProfile => instance_profile::FORCE_NEW,
        Kind::LaunchTemplate => launch_template::FORCE_NEW,
        Kind::AutoScalingGroup => asg::FORCE_NEW,
        Kind::ScalingPolicy => scaling_policy::FORCE_NEW,
        Kind::Table => table::FORCE_NEW,
        Kind::Bucket => bucket::FORCE_NEW,
        Kind::Artifact => artifact::FORCE_NEW,
        Kind::Secret => secret::FORCE_NEW,
        Kind::FlowLog => flow_log::FORCE_NEW,
        Kind::VpcEndpoint => vpc_endpoint::FORCE_NEW,
        Kind::NetworkAcl => network_acl::FORCE_NEW,
    };
    list.contains(&attr)
}

/// Creates a resource from its resolved attributes; returns it as AWS now holds it.
pub async fn create(ctx: &Ctx, d: &Desired, attrs: &Attrs) -> Result<Live, Error> {
    let a = &d.address;
    let (id, extra) = match a.kind {
        Kind::Vpc => vpc::create(ctx, a, attrs).await?,
        Kind::Subnet => subnet::create(ctx, a, from_attrs(attrs)?).await?,
        Kind::InternetGateway => igw::create(ctx, a, attrs).await?,
        Kind::RouteTable => route_table::create(ctx, a, attrs).await?,
        Kind::SecurityGroup => security_group::create(ctx, a, from_attrs(attrs)?).await?,
        Kind::LoadBalancer => load_balancer::create(ctx, a, from_attrs(attrs)?).await?,
        Kind::TargetGroup => target_group::create(ctx, a, from_attrs(attrs)?).await?,
        Kind::Listener => listener::create(ctx, a, from_attrs(attrs)?).await?,
        Kind::ListenerRule => listener_rule::create(ctx, a, from_attrs(attrs)?).await?,
        Kind::Role => iam_role::create(ctx, a, from_attrs(attrs)?).await?,
        Kind::InstanceProfile => instance_profile::create(ctx, a, from_attrs(attrs)?).await?,
        Kind::LaunchTemplate => {
            let user_data = d.payload.as_deref().unwrap_or("");
            launch_template::create(ctx, a, from_attrs(attrs)?, user_data).await?
        }
        Kind::AutoScalingGroup => asg::create(ctx, a, from_attrs(attrs)?).await?,
        Kind::ScalingPolicy => scaling_policy::put(ctx, a, from_attrs(attrs)?).await?,
        Kind::Table => table::create(ctx, a, attrs).await?,
        Kind::Bucket => bucket::create(ctx, a, attrs).await?,
        Kind::Artifact => {
            artifact::create(ctx, a, attrs, d.payload.as_deref().unwrap_or("")).await?
        }
        Kind::Secret => secret::create(ctx, a, attrs).await?,
        Kind::FlowLog => flow_log::create(ctx, a, attrs).await?,
        Kind::VpcEndpoint => vpc_endpoint::create(ctx, a, attrs).await?,
        Kind::NetworkAcl => network_acl::create(ctx, a, attrs).await?,
    };
    Ok(Live {
        address: a.clone(),
        id,
        attrs: attrs.clone(),
        extra,
    })
}

/// Changes `changed` attributes in place.
pub async fn update(
    ctx: &Ctx,
    d: &Desired,
    live: &Live,
    attrs: &Attrs,
    changed: &[String],
) -> Result<(), Error> {
    match d.address.kind {
        Kind::Vpc => vpc::update(ctx, live, attrs, changed).await,
        Kind::Subnet => subnet::update(ctx, live, from_attrs(attrs)?, changed).await,
        Kind::InternetGateway => igw::update(ctx, live, attrs, changed).await,
        Kind::RouteTable => route_table::update(ctx, live, attrs, changed).await,
        Kind::SecurityGroup => security_group::update(ctx, live, from_attrs(attrs)?, changed).await,
        Kind::LoadBalancer => load_balancer::update(ctx, live, from_attrs(attrs)?, changed).await,
        Kind::TargetGroup => target_group::update(ctx, live, from_attrs(attrs)?, changed).await,
        Kind::Listener => listener::update(ctx, live, from_attrs(attrs)?, changed).await,
        Kind::ListenerRule => listener_rule::update(ctx, live, from_attrs(attrs)?, changed).await,
        Kind::Role => iam_role::update(ctx, live, from_attrs(attrs)?, changed).await,
        Kind::InstanceProfile => {
            instance_profile::update(ctx, live, from_attrs(attrs)?, changed).await
        }
        // Every attribute forces a new template: the differ never plans an update.
        Kind::LaunchTemplate => Err(Error::Refused {
            resource: live.address.to_string(),
            reason: "launch templates are replaced, never updated in place".into(),
        }),
        Kind::AutoScalingGroup => asg::update(ctx, live, from_attrs(attrs)?, changed).await,
        Kind::ScalingPolicy => scaling_policy::put(ctx, &live.address, from_attrs(attrs)?)
            .await
            .map(drop),
        Kind::Table => table::update(ctx, live, attrs, changed).await,
        Kind::Bucket => bucket::update(ctx, live, attrs, changed).await,
        Kind::Artifact => {
            artifact::update(ctx, live, attrs, d.payload.as_deref().unwrap_or("")).await
        }
        Kind::Secret => secret::update(ctx, live, attrs).await,
        Kind::FlowLog => flow_log::update(ctx, live).await,
        Kind::VpcEndpoint => vpc_endpoint::update(ctx, live, attrs, changed).await,
        Kind::NetworkAcl => network_acl::update(ctx, live, attrs, changed).await,
    }
}

/// Deletes a resource the stack owns, waiting out what AWS needs to let go of it.
pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    match live.address.kind {
        Kind::Vpc => vpc::delete(ctx, live).await,
        Kind::Subnet => subnet::delete(ctx, live).await,
        Kind::InternetGateway => igw::delete(ctx, live).await,
        Kind::RouteTable => route_table::delete(ctx, live).await,
        Kind::SecurityGroup => security_group::delete(ctx, live).await,
        Kind::LoadBalancer => load_balancer::delete(ctx, live).await,
        Kind::TargetGroup => target_group::delete(ctx, live).await,
        Kind::Listener => listener::delete(ctx, live).await,
        Kind::ListenerRule => listener_rule::delete(ctx, live).await,
        Kind::Role => iam_role::delete(ctx, live).await,
        Kind::InstanceProfile => instance_profile::delete(ctx, live).await,
        Kind::LaunchTemplate => launch_template::delete(ctx, live).await,
        Kind::AutoScalingGroup => asg::delete(ctx, live).await,
        Kind::ScalingPolicy => scaling_policy::delete(ctx, live).await,
        Kind::Table => table::delete(ctx, live).await,
        Kind::Bucket => bucket::delete(ctx, live).await,
        Kind::Artifact => artifact::delete(ctx, live).await,
        Kind::Secret => secret::delete(ctx, live).await,
        Kind::FlowLog => flow_log::delete(ctx, live).await,
        Kind::VpcEndpoint => vpc_endpoint::delete(ctx, live).await,
        Kind::NetworkAcl => network_acl::delete(ctx, live).await,
    }
}

/// Names of the table and bucket the stack file asks for: tags can't be listed across
/// all buckets in one call, so discovery checks these names (and the stack's prefix).
#[derive(Debug, Clone, Default)]
pub struct Hints {
    pub bucket_names: Vec<String>,
}

/// A resource with a name the stack wants but that someone else owns.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Foreign {
    pub kind: Kind,
    pub name: String,
}

/// Everything discovery found.
#[derive(Debug, Default)]
pub struct Found {
    pub live: Vec<Live>,
    pub foreign: Vec<Foreign>,
}

/// The service that manages a kind.
pub fn service_of(kind: Kind) -> Service {
    match kind {
        Kind::Vpc
        | Kind::Subnet
        | Kind::InternetGateway
        | Kind::RouteTable
        | Kind::SecurityGroup
        | Kind::LaunchTemplate
        | Kind::NetworkAcl
        | Kind::FlowLog
        | Kind::VpcEndpoint => Service::Ec2,
        Kind::LoadBalancer | Kind::TargetGroup | Kind::Listener | Kind::ListenerRule => {
            Service::Elbv2
        }
        Kind::AutoScalingGroup | Kind::ScalingPolicy => Service::AutoScaling,
        Kind::Table => Service::DynamoDb,
        Kind::Bucket | Kind::Artifact => Service::S3,
        Kind::Role | Kind::InstanceProfile => Service::Iam,
        Kind::Secret => Service::Ssm,
    }
}

/// The listings discovery runs: one per kind, or one for the kinds AWS lists together
/// (a load balancer with its target groups, listeners and rules; a group with its
/// scaling policy; a bucket with the app's build in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Listing {
    Vpcs,
    Subnets,
    Gateways,
    RouteTables,
    SecurityGroups,
    LaunchTemplates,
    NetworkAcls,
    FlowLogs,
    VpcEndpoints,
    LoadBalancing,
    Groups,
    Tables,
    Buckets,
    Roles,
    Profiles,
    Parameters,
}

/// How each kind is found again: a new kind without its line here does not compile,
/// so none is left undiscovered (and created again on every run).
fn listing(kind: Kind) -> Listing {
    match kind {
        Kind::Vpc => Listing::Vpcs,
        Kind::Subnet => Listing::Subnets,
        Kind::InternetGateway => Listing::Gateways,
        Kind::RouteTable => Listing::RouteTables,
        Kind::SecurityGroup => Listing::SecurityGroups,
        Kind::LaunchTemplate => Listing::LaunchTemplates,
        Kind::NetworkAcl => Listing::NetworkAcls,
        Kind::FlowLog => Listing::FlowLogs,
        Kind::VpcEndpoint => Listing::VpcEndpoints,
        Kind::LoadBalancer | Kind::TargetGroup | Kind::Listener | Kind::ListenerRule => {
            Listing::LoadBalancing
        }
        Kind::AutoScalingGroup | Kind::ScalingPolicy => Listing::Groups,
        Kind::Table => Listing::Tables,
        Kind::Bucket | Kind::Artifact => Listing::Buckets,
        Kind::Role => Listing::Roles,
        Kind::InstanceProfile => Listing::Profiles,
        Kind::Secret => Listing::Parameters,
    }
}

impl Listing {
    async fn run(self, c: &Clients, stack: &str, hints: &Hints) -> Result<Found, Error> {
        let live = |live: Vec<Live>| Found {
            live,
            foreign: Vec::new(),
        };
        let both = |(live, foreign): (Vec<Live>, Vec<Foreign>)| Found { live, foreign };
        Ok(match self {
            Listing::Vpcs => live(vpc::discover(c, stack).await?),
            Listing::Subnets => live(subnet::discover(c, stack).await?),
            Listing::Gateways => live(igw::discover(c, stack).await?),
            Listing::RouteTables => live(route_table::discover(c, stack).await?),
            Listing::SecurityGroups => live(security_group::discover(c, stack).await?),
            Listing::LaunchTemplates => live(launch_template::discover(c, stack).await?),
            Listing::NetworkAcls => live(network_acl::discover(c, stack).await?),
            Listing::FlowLogs => live(flow_log::discover(c, stack).await?),
            Listing::VpcEndpoints => live(vpc_endpoint::discover(c, stack).await?),
            Listing::LoadBalancing => live(elbv2::discover(c, stack).await?),
            Listing::Groups => live(asg::discover_with_policies(c, stack).await?),
            Listing::Tables => both(table::discover(c, stack).await?),
            Listing::Buckets => {
                let (buckets, foreign) = bucket::discover(c, stack, &hints.bucket_names).await?;
                let artifacts = artifact::discover(c, &buckets).await?;
                both(([buckets, artifacts].concat(), foreign))
            }
            Listing::Roles => live(iam_role::discover(c, stack).await?),
            Listing::Profiles => live(instance_profile::discover(c, stack).await?),
            Listing::Parameters => both(secret::discover(c, stack).await?),
        })
    }
}

/// Lists every resource carrying the stack's tags: one paginated, tag-filtered list per
/// kind (see [`listing`]), all at once. Services in `skip` (missing at the endpoint)
/// are not asked.
pub async fn discover(
    c: &Clients,
    stack: &str,
    hints: &Hints,
    skip: &[Service],
) -> Result<Found, Error> {
    let listings: std::collections::BTreeSet<Listing> = Kind::ALL
        .iter()
        .filter(|k| !skip.contains(&service_of(**k)))
        .map(|k| listing(*k))
        .collect();
    let lists =
        futures_util::future::try_join_all(listings.iter().map(|l| l.run(c, stack, hints))).await?;
    let mut found = Found::default();
    for list in lists {
        found.live.extend(list.live);
        found.foreign.extend(list.foreign);
    }
    // The write credential's verifier lives in the app bucket: read once both are known.
    if !skip.contains(&Service::S3) {
        let (mut secrets, rest): (Vec<Live>, Vec<Live>) = found
            .live
            .into_iter()
            .partition(|l| l.address.kind == Kind::Secret);
        let buckets: Vec<Live> = rest
            .iter()
            .filter(|l| l.address.kind == Kind::Bucket)
            .cloned()
            .collect();
        secret::discover_verifiers(c, &mut secrets, &buckets).await?;
        found.live = [rest, secrets].concat();
    }
    Ok(found)
}

// ---- helpers shared by the EC2 kinds ----

pub(crate) fn ec2_tag_spec(
    ctx: &Ctx,
    a: &Address,
    rt: aws_sdk_ec2::types::ResourceType,
) -> aws_sdk_ec2::types::TagSpecification {
    let mut b = aws_sdk_ec2::types::TagSpecification::builder().resource_type(rt);
    for (k, v) in ctx.tags(a) {
        b = b.tags(aws_sdk_ec2::types::Tag::builder().key(k).value(v).build());
    }
    b.build()
}

pub(crate) fn ec2_owner_filter(stack: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(format!("tag:{}", crate::model::TAG_STACK))
        .values(stack)
        .build()
}

pub(crate) fn ec2_owned(stack: &str, tags: &[aws_sdk_ec2::types::Tag]) -> Option<Address> {
    crate::model::owned_address(
        stack,
        tags.iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
    )
}

pub(crate) fn attr_str<'a>(attrs: &'a Attrs, k: &str) -> &'a str {
    attrs.get(k).and_then(|v| v.as_str()).unwrap_or_default()
}

pub(crate) fn attr_i64(attrs: &Attrs, k: &str) -> i64 {
    attrs.get(k).and_then(|v| v.as_i64()).unwrap_or_default()
}

pub(crate) fn attr_bool(attrs: &Attrs, k: &str) -> bool {
    attrs.get(k).and_then(|v| v.as_bool()).unwrap_or_default()
}

pub(crate) fn attr_list(attrs: &Attrs, k: &str) -> Vec<String> {
    attrs.get(k).map(|v| v.str_list()).unwrap_or_default()
}

pub(crate) fn changed(changed: &[String], k: &str) -> bool {
    changed.iter().any(|c| c == k)
}

/// A delete (or detach) that finds the resource already gone has done its job.
pub(crate) fn absent_ok<T>(r: Result<T, Error>, gone: &[&str]) -> Result<(), Error> {
    match r {
        Err(e) if e.is_code(gone) => Ok(()),
        other => other.map(drop),
    }
}

/// Deletes resource `a` with one call (`send`), retried while AWS says something
/// still uses it (`DependencyViolation`, `ResourceInUse`: a load balancer's interfaces
/// linger for minutes) within `patience`; `gone` codes mean it is already deleted.
pub(crate) async fn delete_when_free<T, E, F, Fut>(
    patience: crate::aws::Patience,
    gone: &[&str],
    a: &Address,
    send: F,
) -> Result<(), Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<
            Output = Result<
                T,
                aws_smithy_runtime_api::client::result::SdkError<
                    E,
                    aws_smithy_runtime_api::http::Response,
                >,
            >,
        >,
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
{
    use crate::aws::Context;
    crate::aws::retry_codes(STILL_IN_USE, patience, || async {
        absent_ok(send().await.ctx("deleting", a), gone)
    })
    .await
}

/// The id of a new resource and the values kept beside it.
pub(crate) type Created = (String, std::collections::BTreeMap<String, String>);

/// EC2 codes that mean "that id is not visible yet" right after a create.
pub(crate) const EC2_NOT_YET: &[&str] = &[
    "InvalidVpcID.NotFound",
    "InvalidSubnetID.NotFound",
    "InvalidInternetGatewayID.NotFound",
    "InvalidRouteTableID.NotFound",
    "InvalidGroup.NotFound",
    "InvalidLaunchTemplateId.NotFound",
    "InvalidLaunchTemplateName.NotFoundException",
];

/// Codes that mean "still in use by something on its way out".
pub(crate) const STILL_IN_USE: &[&str] = &["DependencyViolation", "ResourceInUse"];

#[cfg(test)]
mod tests {
    use crate::model::{KindAttrs, to_attrs};

    /// The attribute names of a typed kind.
    fn fields<T: KindAttrs + Default>() -> Vec<String> {
        to_attrs(&T::default()).into_keys().collect()
    }

    /// `FORCE_NEW` still names attributes by string: each must be a field of the kind's
    /// struct, or a typo would silently never force a replacement.
    #[test]
    fn forced_attributes_are_fields_of_the_typed_kinds() {
        let kinds: [(&[&str], Vec<String>); 12] = [
            (super::vpc::FORCE_NEW, fields::<super::vpc::VpcAttrs>()),
            (
                super::subnet::FORCE_NEW,
                fields::<super::subnet::SubnetAttrs>(),
            ),
            (
                super::security_group::FORCE_NEW,
                fields::<super::security_group::SecurityGroupAttrs>(),
            ),
            (
                super::target_group::FORCE_NEW,
                fields::<super::target_group::TargetGroupAttrs>(),
            ),
            (
                super::iam_role::FORCE_NEW,
                fields::<super::iam_role::RoleAttrs>(),
            ),
            (
                super::instance_profile::FORCE_NEW,
                fields::<super::instance_profile::InstanceProfileAttrs>(),
            ),
            (
                super::launch_template::FORCE_NEW,
                fields::<super::launch_template::LaunchTemplateAttrs>(),
            ),
            (
                super::asg::FORCE_NEW,
                fields::<super::asg::AutoScalingGroupAttrs>(),
            ),
            (
                super::scaling_policy::FORCE_NEW,
                fields::<super::scaling_policy::ScalingPolicyAttrs>(),
            ),
            (
                super::load_balancer::FORCE_NEW,
                fields::<super::load_balancer::LoadBalancerAttrs>(),
            ),
            (
                super::listener::FORCE_NEW,
                fields::<super::listener::ListenerAttrs>(),
            ),
            (
                super::listener_rule::FORCE_NEW,
                fields::<super::listener_rule::ListenerRuleAttrs>(),
            ),
        ];
        for (forced, fields) in kinds {
            for name in forced {
                assert!(fields.iter().any(|f| f == name), "{name} not in {fields:?}");
            }
        }
    }
}
