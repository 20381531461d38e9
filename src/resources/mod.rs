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
use crate::model::{Address, Attrs, Desired, Kind, KindAttrs, Live, ownership_tags, with_kind};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The stack's live resources by address, as discovery found them.
pub type LiveMap = BTreeMap<Address, Live>;

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

/// A kind's whole life, implemented once in its file on the kind's attribute struct
/// (`impl KindOps for VpcAttrs`: the struct its desired form builds, its discovery
/// flattens into and its writes read) and dispatched to by `with_kind!`, which the
/// list of kinds in `model.rs` generates: a new kind is its file plus one line there,
/// and a missing piece does not compile. The defaults are what most kinds are:
/// nothing shared, no data of their own.
pub(crate) trait KindOps: KindAttrs {
    /// Attributes AWS cannot change in place.
    const FORCE_NEW: &'static [&'static str];
    /// Attributes that hold other resources' ids (a reference in the desired form, an
    /// id once live). Destroy order comes from these: a resource goes only after every
    /// live resource holding its id here. `desired_references_are_declared` checks
    /// them against every reference the desired forms make.
    const REFERENCES: &'static [&'static str] = &[];
    /// The attribute whose value AWS names it by (a role's, a table's `name`), so a
    /// reference to it is known before it exists.
    const ID_ATTRIBUTE: Option<&'static str> = None;
    /// What replacing it deletes first costs, for the plan.
    const DOWNTIME: Option<&'static str> = None;
    /// The attribute holding a name AWS allows once (per account or VPC).
    const UNIQUE_NAME: Option<&'static str> = None;
    const SERVICE: Service;
    /// How discovery finds it.
    const LISTING: Listing;
    /// Order beyond the references.
    const ORDERING: Ordering = Ordering {
        update_after_deletes_of: &[],
        delete_after_deletes_of: &[],
    };

    /// Creates it from resolved attributes: its id and what only AWS knows.
    async fn create(ctx: &Ctx, d: &Desired, attrs: &Attrs) -> Result<Created, Error>;
    /// Changes `changed` in place; returns its id afterwards.
    async fn update(
        ctx: &Ctx,
        d: &Desired,
        live: &Live,
        attrs: &Attrs,
        changed: &[String],
    ) -> Result<String, Error>;
    /// Deletes it, waiting out what AWS needs to let go of it.
    async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error>;
    /// Reads it back after a write: `None` while AWS does not list it. By default
    /// through the kind's listing ([`listed`]); a kind whose listing is costly reads
    /// only itself. `attrs` are what was just written.
    async fn read(
        ctx: &Ctx,
        address: &Address,
        id: &str,
        _attrs: &Attrs,
    ) -> Result<Option<Live>, Error> {
        listed(ctx, address, id, &Hints::default()).await
    }
    /// Whether a replacement can create the new one before deleting the old one, so
    /// that what uses it moves over in place (a subnet: the load balancer's
    /// SetSubnets). Names unique per account or VPC cannot exist twice.
    fn create_before_destroy(
        _live: &Live,
        _wanted: &Attrs,
        _all: &BTreeMap<Address, Live>,
    ) -> bool {
        false
    }
    /// Values only one resource may hold at a time (a rule's priority on its listener).
    fn claims(_attrs: &Attrs) -> Vec<String> {
        Vec::new()
    }
    /// Which of `names` (its `UNIQUE_NAME`s the stack wants and none of its live
    /// resources carries) someone else holds already, for the kinds with a
    /// `UNIQUE_NAME`: `up` would fail half-way on them, so the plan finds them first.
    async fn names_taken(
        _c: &Clients,
        _names: &[String],
        _: &LiveMap,
    ) -> Result<Vec<String>, Error> {
        Ok(Vec::new())
    }
    /// Whether AWS refuses to delete it as it stands (deletion protection on).
    fn protected(_live: &Attrs) -> bool {
        false
    }
    /// Whether the file itself allows destroying its data (a bucket's `force_destroy`).
    fn file_allows_loss(_wanted: &Attrs) -> bool {
        false
    }
    /// The data replacing or removing it would destroy (a table's items).
    async fn data_at_risk(_c: &Clients, _live: &Live) -> Result<Option<crate::plan::Loss>, Error> {
        Ok(None)
    }
}

/// The writes most kinds have, for their `impl KindOps`: the kind's own
/// `create(ctx, address, attrs)` and `update(ctx, live, attrs, changed)` (the id
/// stays), given the resolved attributes as they are (`map`) or parsed into the kind's
/// struct (`typed`); `delete(ctx, live)`; or a delete that waits until the resource is
/// free (`delete_when_free`).
macro_rules! writes {
    (map) => {
        $crate::resources::writes!(create(ctx, d, attrs) => attrs);
        $crate::resources::writes!(update(ctx, live, attrs, changed) => attrs);
    };
    (typed) => {
        $crate::resources::writes!(create(ctx, d, attrs) => $crate::model::from_attrs(attrs)?);
        $crate::resources::writes!(update(ctx, live, attrs, changed) => $crate::model::from_attrs(attrs)?);
    };
    // A delete by id, retried while something still uses the resource, done once AWS
    // answers one of the `gone` codes: `|clients, id| <the SDK call before .send()>`.
    (delete_when_free($patience:expr, $gone:expr, |$c:ident, $id:ident| $call:expr)) => {
        async fn delete(
            ctx: &$crate::resources::Ctx,
            live: &$crate::model::Live,
        ) -> Result<(), $crate::aws::Error> {
            let ($c, $id) = (&ctx.c, live.id.as_str());
            let send = || $call.send();
            $crate::resources::delete_when_free($patience, $gone, &live.address, send).await
        }
    };
    (create($ctx:ident, $d:ident, $attrs:ident) => $parsed:expr) => {
        async fn create(
            $ctx: &$crate::resources::Ctx,
            $d: &$crate::model::Desired,
            $attrs: &$crate::model::Attrs,
        ) -> Result<$crate::resources::Created, $crate::aws::Error> {
            create($ctx, &$d.address, $parsed).await
        }
    };
    (update($ctx:ident, $live:ident, $attrs:ident, $changed:ident) => $parsed:expr) => {
        async fn update(
            $ctx: &$crate::resources::Ctx,
            _: &$crate::model::Desired,
            $live: &$crate::model::Live,
            $attrs: &$crate::model::Attrs,
            $changed: &[String],
        ) -> Result<String, $crate::aws::Error> {
            update($ctx, $live, $parsed, $changed).await?;
            Ok($live.id.clone())
        }
    };
    (delete) => {
        async fn delete(
            ctx: &$crate::resources::Ctx,
            live: &$crate::model::Live,
        ) -> Result<(), $crate::aws::Error> {
            delete(ctx, live).await
        }
    };
}
pub(crate) use writes;

/// The data replacing or removing `live` would destroy: a table's items, a bucket's
/// objects. Counted while planning, so `up` and `down` refuse before any write.
pub async fn data_at_risk(c: &Clients, live: &Live) -> Result<Option<crate::plan::Loss>, Error> {
    with_kind!(live.address.kind, K => K::data_at_risk(c, live).await)
}

/// Whether a replacement can create the new resource before deleting the old one.
pub fn create_before_destroy(
    kind: Kind,
    live: &Live,
    wanted: &Attrs,
    all: &BTreeMap<Address, Live>,
) -> bool {
    with_kind!(kind, K => K::create_before_destroy(live, wanted, all))
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
    with_kind!(kind, K => K::ORDERING)
}

/// The attributes of a kind that hold other resources' ids ([`KindOps::REFERENCES`]).
pub fn references(kind: Kind) -> &'static [&'static str] {
    with_kind!(kind, K => K::REFERENCES)
}

/// Values only one resource may hold at a time (a listener rule's priority on its
/// listener): a step taking one must wait for the live holder to let it go.
pub fn claims(kind: Kind, attrs: &Attrs) -> Vec<String> {
    with_kind!(kind, K => K::claims(attrs))
}

/// The attribute whose value AWS names a kind by, for the kinds it names by the name
/// the stack gives.
pub fn id_attribute(kind: Kind) -> Option<&'static str> {
    with_kind!(kind, K => K::ID_ATTRIBUTE)
}

/// Whether AWS refuses to delete the resource as it stands (deletion protection).
pub fn protected(live: &Live) -> bool {
    with_kind!(live.address.kind, K => K::protected(&live.attrs))
}

/// Whether the file allows destroying the data of the resource it wants so.
pub fn file_allows_loss(d: &Desired) -> bool {
    with_kind!(d.address.kind, K => K::file_allows_loss(&d.attrs))
}

/// What replacing a resource of the kind deletes first costs, for the plan.
pub fn downtime(kind: Kind) -> Option<&'static str> {
    with_kind!(kind, K => K::DOWNTIME)
}

/// The attribute holding a name AWS allows once, for the kinds that have one.
pub fn unique_name(kind: Kind) -> Option<&'static str> {
    with_kind!(kind, K => K::UNIQUE_NAME)
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
    with_kind!(kind, K => K::FORCE_NEW).contains(&attr)
}

/// Creates a resource from its resolved attributes; returns it as AWS now holds it.
pub async fn create(ctx: &Ctx, d: &Desired, attrs: &Attrs) -> Result<Live, Error> {
    let (id, extra) = with_kind!(d.address.kind, K => K::create(ctx, d, attrs).await)?;
    Ok(Live {
        address: d.address.clone(),
        id,
        attrs: attrs.clone(),
        extra,
    })
}

/// Changes `changed` attributes in place; returns the resource's id afterwards (an
/// app build's object is the new key).
pub async fn update(
    ctx: &Ctx,
    d: &Desired,
    live: &Live,
    attrs: &Attrs,
    changed: &[String],
) -> Result<String, Error> {
    with_kind!(d.address.kind, K => K::update(ctx, d, live, attrs, changed).await)
}

/// Deletes a resource the stack owns, waiting out what AWS needs to let go of it.
pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    with_kind!(live.address.kind, K => K::delete(ctx, live).await)
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
    with_kind!(kind, K => K::SERVICE)
}

/// The listings discovery runs: one per kind, or one for the kinds AWS lists together
/// (a load balancer with its target groups, listeners and rules; a group with its
/// scaling policy; a bucket with the app's build in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Listing {
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

/// How each kind is found again ([`KindOps::LISTING`]: a kind cannot be without one,
/// and be created again on every run).
fn listing(kind: Kind) -> Listing {
    with_kind!(kind, K => K::LISTING)
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

/// One resource as AWS now holds it ([`KindOps::read`]); `None` while AWS does not
/// list it. `attrs` are what was just written.
pub async fn read(
    ctx: &Ctx,
    address: &Address,
    id: &str,
    attrs: &Attrs,
) -> Result<Option<Live>, Error> {
    with_kind!(address.kind, K => K::read(ctx, address, id, attrs).await)
}

/// One resource as AWS now holds it, through its kind's listing (the same flatten
/// discovery uses, so what a run records is what the next plan compares); `None` while
/// AWS does not list it. `hints` name the buckets the listing looks at.
pub(crate) async fn listed(
    ctx: &Ctx,
    address: &Address,
    id: &str,
    hints: &Hints,
) -> Result<Option<Live>, Error> {
    let found = listing(address.kind).run(&ctx.c, &ctx.stack, hints).await?;
    Ok(found
        .live
        .into_iter()
        .find(|l| l.address == *address && l.id == id))
}

// ---- helpers shared by the EC2 kinds ----

/// The items of an EC2 `Describe*` listing that carry the stack's tags, each with its
/// address, every page read: `ec2_listing!(c.ec2.describe_vpcs(), stack, "VPCs", vpcs)`
/// (the call, which gets the stack's tag filter; what it lists, for errors; the items'
/// accessor), or `ec2_listing!(filtered <call>, …)` for a call that filters itself.
/// The call is written out, so `tests/fidelity.rs` sees the operation.
macro_rules! ec2_listing {
    (filtered $call:expr, $stack:expr, $what:literal, $items:ident) => {{
        let mut pages = $call.into_paginator().send();
        let mut owned = Vec::new();
        while let Some(page) = pages.next().await {
            let page = $crate::aws::Context::ctx(page, "listing", &$what)?;
            for item in page.$items() {
                if let Some(address) = $crate::resources::ec2_owned($stack, item.tags()) {
                    owned.push((address, item.clone()));
                }
            }
        }
        owned
    }};
    ($call:expr, $stack:expr, $what:literal, $items:ident) => {
        $crate::resources::ec2_listing!(
            filtered $call.filters($crate::resources::ec2_owner_filter($stack)),
            $stack,
            $what,
            $items
        )
    };
}
pub(crate) use ec2_listing;

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
