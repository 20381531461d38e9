//! Executes a [`Plan`] as a dependency graph: each step starts once the steps it
//! depends on have succeeded, at most `parallelism` at a time; the dependents of a
//! failed step are skipped; after an interrupt no new step starts. Destroy edges are
//! the apply edges reversed, read from what live resources refer to.
//!
//! The engine never prints: it reports [`Event`]s to an [`Observer`]. It never calls
//! AWS itself either: each step goes to a [`Provider`] (AWS's is
//! [`resources::Ctx`]), so the scheduler is tested with an in-memory one.

use crate::aws::Error;
use crate::model::{Address, Attrs, Desired, Live};
use crate::plan::{Action, Plan, deposed, resolve};
use crate::resources::{self, Ctx};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Create,
    Update,
    Delete,
}

impl Op {
    pub fn verb(self) -> &'static str {
        match self {
            Op::Create => "creating",
            Op::Update => "updating",
            Op::Delete => "destroying",
        }
    }
    pub fn done(self) -> &'static str {
        match self {
            Op::Create => "created",
            Op::Update => "updated",
            Op::Delete => "destroyed",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    Started {
        address: Address,
        op: Op,
    },
    Progress {
        address: Address,
        message: String,
    },
    Succeeded {
        address: Address,
        op: Op,
        elapsed: Duration,
    },
    Failed {
        address: Address,
        op: Op,
        error: Error,
        elapsed: Duration,
    },
    Skipped {
        address: Address,
        op: Op,
        because: String,
    },
}

pub trait Observer: Send + Sync {
    fn event(&self, e: Event);
}

/// Set by Ctrl-C: no new step starts, steps in flight finish.
#[derive(Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Stops the run: no new step starts, and waits in flight stop at their next poll
    /// (the API call in flight finishes).
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// Runs `work` so that its waits stop when this is triggered.
    pub fn covering<F: std::future::Future>(
        &self,
        work: F,
    ) -> impl std::future::Future<Output = F::Output> + use<F> {
        crate::aws::retry::stop_with(self.0.clone(), work)
    }
}

/// What the executor asks of the world, one resource at a time.
pub trait Provider: Clone + Send + Sync + 'static {
    /// Called once before the first step, with the plan and the live resources.
    fn prepare(&mut self, _plan: &Plan, _live: &BTreeMap<Address, Live>) {}
    /// Creates a resource from its resolved attributes; returns it as it now stands.
    fn create<'a>(&'a self, d: &'a Desired, attrs: &'a Attrs)
    -> BoxFuture<'a, Result<Live, Error>>;
    /// Changes the `changed` attributes of `live` in place; returns its id afterwards
    /// (the same, but for what is named by its content, like an app build's object).
    fn update<'a>(
        &'a self,
        d: &'a Desired,
        live: &'a Live,
        attrs: &'a Attrs,
        changed: &'a [String],
    ) -> BoxFuture<'a, Result<String, Error>>;
    fn delete<'a>(&'a self, live: &'a Live) -> BoxFuture<'a, Result<(), Error>>;
    /// Reads the resource back as AWS holds it: `None` while AWS does not list it
    /// (yet). `attrs` are those just written (they name, for instance, the bucket an
    /// object is in).
    fn read<'a>(
        &'a self,
        address: &'a Address,
        id: &'a str,
        attrs: &'a Attrs,
    ) -> BoxFuture<'a, Result<Option<Live>, Error>>;
}

/// AWS, through each kind's own file.
impl Provider for Ctx {
    fn prepare(&mut self, plan: &Plan, live: &BTreeMap<Address, Live>) {
        self.shared = Arc::new(resources::Shared::for_plan(plan, live));
    }
    fn create<'a>(
        &'a self,
        d: &'a Desired,
        attrs: &'a Attrs,
    ) -> BoxFuture<'a, Result<Live, Error>> {
        Box::pin(resources::create(self, d, attrs))
    }
    fn update<'a>(
        &'a self,
        d: &'a Desired,
        live: &'a Live,
        attrs: &'a Attrs,
        changed: &'a [String],
    ) -> BoxFuture<'a, Result<String, Error>> {
        Box::pin(resources::update(self, d, live, attrs, changed))
    }
    fn delete<'a>(&'a self, live: &'a Live) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(resources::delete(self, live))
    }
    fn read<'a>(
        &'a self,
        address: &'a Address,
        id: &'a str,
        attrs: &'a Attrs,
    ) -> BoxFuture<'a, Result<Option<Live>, Error>> {
        Box::pin(resources::read(self, address, id, attrs))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Step {
    address: Address,
    op: Op,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StepResult {
    pub address: Address,
    pub op: Op,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Done,
    Failed,
    Skipped,
    NotStarted,
}

/// What the run did, step by step, and the resources as they stand afterwards.
pub struct Outcome {
    pub steps: Vec<StepResult>,
    pub live: BTreeMap<Address, Live>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|s| s.status == Status::Done)
    }

    /// What a run that stopped early left behind: the steps done (those resources are in
    /// place, tagged, and found again by the next run) and the steps not done, with why.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let done: Vec<&StepResult> = self
            .steps
            .iter()
            .filter(|r| r.status == Status::Done)
            .collect();
        if !done.is_empty() {
            out.push_str("Done (these changes stay in place):\n");
            for r in done {
                out.push_str(&format!("  {} {}\n", r.address, r.op.done()));
            }
        }
        let not_done: Vec<&StepResult> = self
            .steps
            .iter()
            .filter(|r| r.status != Status::Done)
            .collect();
        if !not_done.is_empty() {
            out.push_str("Not done:\n");
            for r in not_done {
                let status = match r.status {
                    Status::Failed => "failed",
                    Status::Skipped => "skipped",
                    Status::NotStarted => "not started",
                    Status::Done => "done",
                };
                out.push_str(&format!("  {} {} {status}", r.address, r.op.verb()));
                if let Some(e) = &r.error {
                    out.push_str(&format!(": {e}"));
                }
                out.push('\n');
            }
        }
        out
    }
}

/// The steps of a plan and what each waits for.
fn graph(
    plan: &Plan,
    desired: &BTreeMap<Address, Desired>,
    live: &BTreeMap<Address, Live>,
) -> BTreeMap<Step, BTreeSet<Step>> {
    let mut g: BTreeMap<Step, BTreeSet<Step>> = BTreeMap::new();
    let has = |g: &BTreeMap<Step, BTreeSet<Step>>, a: &Address, op: Op| {
        g.contains_key(&Step {
            address: a.clone(),
            op,
        })
    };
    for c in &plan.changes {
        let ops: &[Op] = match c.action {
            Action::Create => &[Op::Create],
            Action::Update => &[Op::Update],
            Action::Replace => &[Op::Delete, Op::Create],
            Action::Delete => &[Op::Delete],
        };
        for &op in ops {
            // The old self of a create-before-destroy replacement is deleted under its
            // deposed address (see `execute`).
            let address = if op == Op::Delete && c.create_before_destroy {
                deposed(&c.address)
            } else {
                c.address.clone()
            };
            g.insert(Step { address, op }, BTreeSet::new());
        }
    }
    // Live references: which live resource holds the id of which.
    let by_id: BTreeMap<&str, &Address> =
        live.values().map(|l| (l.id.as_str(), &l.address)).collect();
    let mut holders: BTreeMap<&Address, BTreeSet<&Address>> = BTreeMap::new();
    for l in live.values() {
        let mut ids = Vec::new();
        for k in resources::references(l.address.kind) {
            if let Some(v) = l.attrs.get(*k) {
                collect_strs(v, &mut ids);
            }
        }
        for id in ids {
            if let Some(target) = by_id.get(id.as_str())
                && *target != &l.address
            {
                holders.entry(*target).or_default().insert(&l.address);
            }
        }
    }
    // Values one resource holds at a time (a rule's priority), by their live holder.
    let live_ids: BTreeMap<&Address, &str> =
        live.values().map(|l| (&l.address, l.id.as_str())).collect();
    let mut claimed: BTreeMap<String, &Address> = BTreeMap::new();
    for l in live.values() {
        for c in resources::claims(l.address.kind, &l.attrs) {
            claimed.insert(c, &l.address);
        }
    }
    let steps: Vec<Step> = g.keys().cloned().collect();
    for s in steps {
        let mut deps = BTreeSet::new();
        match s.op {
            Op::Create | Op::Update => {
                if let Some(d) = desired.get(&s.address) {
                    for dep in d.deps() {
                        for op in [Op::Create, Op::Update] {
                            if has(&g, &dep, op) {
                                deps.insert(Step {
                                    address: dep.clone(),
                                    op,
                                });
                            }
                        }
                    }
                }
                if s.op == Op::Create && has(&g, &s.address, Op::Delete) {
                    deps.insert(Step {
                        address: s.address.clone(),
                        op: Op::Delete,
                    });
                }
                // Taking a value another live resource holds waits until it lets go:
                // its delete, or (for a create) its update moving away. Updates among
                // themselves go in one call (see `resources::Shared`).
                if let Some(d) = desired.get(&s.address) {
                    let wanted = resolve(&d.attrs, &live_ids);
                    for c in resources::claims(s.address.kind, &wanted) {
                        let Some(holder) = claimed.get(&c).filter(|h| ***h != s.address) else {
                            continue;
                        };
                        let ops: &[Op] = if s.op == Op::Create {
                            &[Op::Delete, Op::Update]
                        } else {
                            &[Op::Delete]
                        };
                        for &op in ops {
                            if has(&g, holder, op) {
                                deps.insert(Step {
                                    address: (*holder).clone(),
                                    op,
                                });
                            }
                        }
                    }
                }
                // What a kind's update must let finish first (see `resources::ordering`).
                if s.op == Op::Update {
                    let after = resources::ordering(s.address.kind).update_after_deletes_of;
                    for other in g.keys() {
                        if other.op == Op::Delete && after.contains(&other.address.kind) {
                            deps.insert(other.clone());
                        }
                    }
                }
            }
            Op::Delete => {
                // A deposed resource goes only once its successor stands.
                if let Some(c) = plan
                    .changes
                    .iter()
                    .find(|c| c.create_before_destroy && deposed(&c.address) == s.address)
                {
                    deps.insert(Step {
                        address: c.address.clone(),
                        op: Op::Create,
                    });
                }
                for holder in holders.get(&s.address).into_iter().flatten() {
                    for op in [Op::Delete, Op::Update] {
                        if has(&g, holder, op) {
                            deps.insert(Step {
                                address: (*holder).clone(),
                                op,
                            });
                        }
                    }
                }
                // What must be gone before this kind can go, beyond what refers to it.
                let after = resources::ordering(s.address.kind).delete_after_deletes_of;
                for other in g.keys() {
                    if other.op == Op::Delete && after.contains(&other.address.kind) {
                        deps.insert(other.clone());
                    }
                }
            }
        }
        g.insert(s, deps);
    }
    g
}

fn collect_strs(v: &crate::model::Value, out: &mut Vec<String>) {
    match v {
        crate::model::Value::Str(s) => out.push(s.clone()),
        crate::model::Value::List(l) => l.iter().for_each(|v| collect_strs(v, out)),
        _ => {}
    }
}

/// Runs the plan. `desired` holds every resource of the stack file (unchanged ones
/// too: their ids resolve references); `live` is what discovery found.
pub async fn execute<P: Provider>(
    provider: P,
    plan: &Plan,
    desired: Vec<Desired>,
    live: BTreeMap<Address, Live>,
    parallelism: usize,
    observer: Arc<dyn Observer>,
    interrupt: Interrupt,
) -> Outcome {
    let desired: BTreeMap<Address, Desired> = desired
        .into_iter()
        .map(|d| (d.address.clone(), d))
        .collect();
    // The old selves of create-before-destroy replacements move aside: their
    // successors take the address, and what holds their ids still finds them.
    let mut live = live;
    for c in plan.changes.iter().filter(|c| c.create_before_destroy) {
        if let Some(mut old) = live.remove(&c.address) {
            old.address = deposed(&c.address);
            live.insert(old.address.clone(), old);
        }
    }
    let mut waits = graph(plan, &desired, &live);
    let mut provider = provider;
    provider.prepare(plan, &live);
    let changes: BTreeMap<Address, &crate::plan::Change> = plan
        .changes
        .iter()
        .map(|c| (c.address.clone(), c))
        .collect();
    let state = Arc::new(Mutex::new(live));
    let mut results: BTreeMap<Step, StepResult> = BTreeMap::new();
    let mut running: JoinSet<(Step, Result<(), Error>, Duration)> = JoinSet::new();
    let parallelism = parallelism.max(1);
    loop {
        if !interrupt.is_set() {
            let ready: Vec<Step> = waits
                .iter()
                .filter(|(s, deps)| deps.is_empty() && !results.contains_key(s))
                .map(|(s, _)| s.clone())
                .take(parallelism.saturating_sub(running.len()))
                .collect();
            for step in ready {
                results.insert(
                    step.clone(),
                    StepResult {
                        address: step.address.clone(),
                        op: step.op,
                        status: Status::NotStarted,
                        error: None,
                    },
                );
                observer.event(Event::Started {
                    address: step.address.clone(),
                    op: step.op,
                });
                let provider = provider.clone();
                let state = state.clone();
                let d = desired.get(&step.address).cloned();
                let changed: Vec<String> = changes
                    .get(&step.address)
                    .map(|c| c.attributes.iter().map(|a| a.name.clone()).collect())
                    .unwrap_or_default();
                running.spawn(interrupt.covering(async move {
                    let start = Instant::now();
                    // A panic in a step (a bug) fails that step, like any error.
                    let r = std::panic::AssertUnwindSafe(run_step(
                        &provider,
                        &step,
                        d.as_ref(),
                        &changed,
                        &state,
                    ))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        Err(Error::Config(format!("internal error: {what}")))
                    });
                    (step, r, start.elapsed())
                }));
            }
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        // Steps catch their own panics, and the set is never aborted while it runs.
        let Ok((step, result, elapsed)) = joined else {
            continue;
        };
        match result {
            Ok(()) => {
                observer.event(Event::Succeeded {
                    address: step.address.clone(),
                    op: step.op,
                    elapsed,
                });
                results.get_mut(&step).expect("started").status = Status::Done;
                for deps in waits.values_mut() {
                    deps.remove(&step);
                }
            }
            Err(error) => {
                let r = results.get_mut(&step).expect("started");
                r.status = Status::Failed;
                r.error = Some(error.to_string());
                observer.event(Event::Failed {
                    address: step.address.clone(),
                    op: step.op,
                    error,
                    elapsed,
                });
                skip_dependents(&step, &waits, &mut results, observer.as_ref());
            }
        }
        waits.remove(&step);
    }
    // Whatever never started: interrupted, or waiting on a skipped step.
    for s in waits.keys() {
        results.entry(s.clone()).or_insert_with(|| StepResult {
            address: s.address.clone(),
            op: s.op,
            status: Status::NotStarted,
            error: None,
        });
    }
    let live = Arc::try_unwrap(state)
        .map(|m| m.into_inner().unwrap_or_default())
        .unwrap_or_default();
    Outcome {
        steps: results.into_values().collect(),
        live,
    }
}

fn skip_dependents(
    failed: &Step,
    waits: &BTreeMap<Step, BTreeSet<Step>>,
    results: &mut BTreeMap<Step, StepResult>,
    observer: &dyn Observer,
) {
    let mut stack = vec![failed.clone()];
    while let Some(f) = stack.pop() {
        for (s, deps) in waits {
            if deps.contains(&f) && !results.contains_key(s) {
                results.insert(
                    s.clone(),
                    StepResult {
                        address: s.address.clone(),
                        op: s.op,
                        status: Status::Skipped,
                        error: Some(format!("{} {} failed", f.address, f.op.verb())),
                    },
                );
                observer.event(Event::Skipped {
                    address: s.address.clone(),
                    op: s.op,
                    because: format!("{} was not {}", f.address, f.op.done()),
                });
                stack.push(s.clone());
            }
        }
    }
}

async fn run_step<P: Provider>(
    provider: &P,
    step: &Step,
    desired: Option<&Desired>,
    changed: &[String],
    state: &Mutex<BTreeMap<Address, Live>>,
) -> Result<(), Error> {
    match step.op {
        Op::Delete => {
            let live = state
                .lock()
                .expect("state lock")
                .get(&step.address)
                .cloned();
            if let Some(live) = live {
                provider.delete(&live).await?;
                state.lock().expect("state lock").remove(&step.address);
            }
            Ok(())
        }
        Op::Create | Op::Update => {
            let d = desired
                .ok_or_else(|| Error::Config(format!("{}: not in the stack file", step.address)))?;
            let attrs = {
                let s = state.lock().expect("state lock");
                let ids: BTreeMap<&Address, &str> =
                    s.iter().map(|(a, l)| (a, l.id.as_str())).collect();
                resolve(&d.attrs, &ids)
            };
            if let Some(missing) = attrs.iter().find(|(_, v)| !v.is_known()) {
                return Err(Error::Config(format!(
                    "{}: `{}` refers to a resource that does not exist",
                    step.address, missing.0
                )));
            }
            let written = if step.op == Op::Create {
                provider.create(d, &attrs).await?
            } else {
                let live = state
                    .lock()
                    .expect("state lock")
                    .get(&step.address)
                    .cloned();
                let live = live
                    .ok_or_else(|| Error::Config(format!("{}: no longer exists", step.address)))?;
                let id = provider.update(d, &live, &attrs, changed).await?;
                Live { id, attrs, ..live }
            };
            let held = read_back(provider, step, written).await?;
            state
                .lock()
                .expect("state lock")
                .insert(step.address.clone(), held);
            Ok(())
        }
    }
}

/// Every write ends with a read (terraform-provider-aws's rule): the run records what
/// AWS holds, not what was sent. A new id may not be listed at once (eventual
/// consistency), so an absent resource is asked for again, as long as AWS is given to
/// show a fresh id. What the write alone knows (a load balancer's DNS name from its
/// create) is kept where the read does not say it.
async fn read_back<P: Provider>(provider: &P, step: &Step, written: Live) -> Result<Live, Error> {
    let waiting_for = format!(
        "AWS to list it (id {}) after it was {}",
        written.id,
        step.op.done()
    );
    let mut held = crate::aws::wait_for(
        &step.address,
        &waiting_for,
        crate::aws::Patience::FRESH_ID.total,
        || provider.read(&step.address, &written.id, &written.attrs),
    )
    .await?;
    for (k, v) in written.extra {
        held.extra.entry(k).or_insert(v);
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, Value};
    use crate::plan::{AttrChange, Change};

    fn step(a: &Address, op: Op) -> Step {
        Step {
            address: a.clone(),
            op,
        }
    }

    #[test]
    fn create_before_destroy_orders_new_then_users_then_old() {
        let sub = Address::new(Kind::Subnet, "a");
        let lb = Address::new(Kind::LoadBalancer, "main");
        let change = |a: &Address, action, cbd| Change {
            address: a.clone(),
            action,
            id: Some("x".into()),
            attributes: vec![AttrChange {
                name: "n".into(),
                before: None,
                after: None,
                forces_replacement: false,
            }],
            create_before_destroy: cbd,
            notes: Vec::new(),
            protected: false,
            destroys: None,
        };
        let plan = Plan {
            changes: vec![
                change(&sub, Action::Replace, true),
                change(&lb, Action::Update, false),
            ],
            ..Plan::default()
        };
        let desired: BTreeMap<Address, Desired> = [
            (
                sub.clone(),
                Desired {
                    address: sub.clone(),
                    attrs: Default::default(),
                    payload: None,
                    after: vec![],
                },
            ),
            (
                lb.clone(),
                Desired {
                    address: lb.clone(),
                    attrs: [("subnets".to_string(), Value::List(vec![Value::r(&sub)]))].into(),
                    payload: None,
                    after: vec![],
                },
            ),
        ]
        .into();
        let old = deposed(&sub);
        let live: BTreeMap<Address, Live> = [
            (
                old.clone(),
                Live {
                    address: old.clone(),
                    id: "subnet-old".into(),
                    attrs: Default::default(),
                    extra: Default::default(),
                },
            ),
            (
                lb.clone(),
                Live {
                    address: lb.clone(),
                    id: "arn:lb".into(),
                    attrs: [("subnets".to_string(), Value::strs(["subnet-old"]))].into(),
                    extra: Default::default(),
                },
            ),
        ]
        .into();
        let g = graph(&plan, &desired, &live);
        assert!(g[&step(&sub, Op::Create)].is_empty());
        assert!(g[&step(&lb, Op::Update)].contains(&step(&sub, Op::Create)));
        let delete_old = &g[&step(&old, Op::Delete)];
        assert!(delete_old.contains(&step(&sub, Op::Create)));
        assert!(delete_old.contains(&step(&lb, Op::Update)));
        assert!(!g.contains_key(&step(&sub, Op::Delete)));
    }

    /// An in-memory provider: logs when each step starts and ends, fails the
    /// addresses it is told to, holds each step for `delay`, and can raise an
    /// interrupt from inside a step (as Ctrl-C during a call does).
    #[derive(Clone, Default)]
    struct Memory {
        log: Arc<Mutex<Vec<(String, &'static str)>>>,
        fail: Arc<BTreeSet<Address>>,
        in_flight: Arc<std::sync::atomic::AtomicUsize>,
        max_in_flight: Arc<std::sync::atomic::AtomicUsize>,
        delay: Duration,
        interrupt_during: Option<(Address, Interrupt)>,
        /// What "AWS" holds, by address; a read adds `state: available`, as AWS
        /// adds what a create does not send.
        held: Arc<Mutex<BTreeMap<Address, Live>>>,
        /// Reads of a new id that find nothing before it is listed (`usize::MAX`:
        /// never listed).
        unlisted_reads: usize,
        reads: Arc<Mutex<BTreeMap<Address, usize>>>,
        /// A step that panics (a bug in a kind's code).
        panic_at: Option<Address>,
        /// A step that waits for what never comes, until the run is interrupted.
        wait_at: Option<Address>,
    }

    impl Memory {
        async fn step(&self, what: String, a: &Address) -> Result<(), Error> {
            let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(n, Ordering::SeqCst);
            self.log.lock().unwrap().push((what.clone(), "start"));
            if let Some((at, i)) = &self.interrupt_during
                && at == a
            {
                i.trigger();
            }
            tokio::time::sleep(self.delay).await;
            if self.wait_at.as_ref() == Some(a) {
                crate::aws::wait_for(a, "what never comes", Duration::from_secs(3600), || async {
                    Ok::<Option<()>, Error>(None)
                })
                .await?;
            }
            if self.panic_at.as_ref() == Some(a) {
                panic!("bug in {a}");
            }
            self.log.lock().unwrap().push((what, "end"));
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if self.fail.contains(a) {
                return Err(Error::Refused {
                    resource: a.to_string(),
                    reason: "told to fail".into(),
                });
            }
            Ok(())
        }
        fn position(&self, what: &str, when: &str) -> usize {
            self.log
                .lock()
                .unwrap()
                .iter()
                .position(|(w, t)| w == what && *t == when)
                .unwrap_or_else(|| panic!("{what} never {when}s"))
        }
    }

    impl Provider for Memory {
        fn create<'a>(
            &'a self,
            d: &'a Desired,
            attrs: &'a Attrs,
        ) -> BoxFuture<'a, Result<Live, Error>> {
            Box::pin(async move {
                self.step(format!("create {}", d.address), &d.address)
                    .await?;
                let live = Live {
                    address: d.address.clone(),
                    id: format!("id-{}", d.address.name),
                    attrs: attrs.clone(),
                    extra: Default::default(),
                };
                self.held
                    .lock()
                    .unwrap()
                    .insert(d.address.clone(), live.clone());
                Ok(live)
            })
        }
        fn update<'a>(
            &'a self,
            d: &'a Desired,
            live: &'a Live,
            _attrs: &'a Attrs,
            _changed: &'a [String],
        ) -> BoxFuture<'a, Result<String, Error>> {
            Box::pin(async move {
                self.step(format!("update {}", d.address), &d.address)
                    .await?;
                Ok(live.id.clone())
            })
        }
        fn delete<'a>(&'a self, live: &'a Live) -> BoxFuture<'a, Result<(), Error>> {
            Box::pin(self.step(format!("delete {}", live.address), &live.address))
        }
        fn read<'a>(
            &'a self,
            address: &'a Address,
            id: &'a str,
            _attrs: &'a Attrs,
        ) -> BoxFuture<'a, Result<Option<Live>, Error>> {
            Box::pin(async move {
                let n = {
                    let mut reads = self.reads.lock().unwrap();
                    let n = reads.entry(address.clone()).or_default();
                    *n += 1;
                    *n
                };
                if n <= self.unlisted_reads {
                    return Ok(None);
                }
                Ok(self
                    .held
                    .lock()
                    .unwrap()
                    .get(address)
                    .filter(|l| l.id == id)
                    .map(|l| {
                        let mut l = l.clone();
                        l.attrs.insert("state".into(), Value::s("available"));
                        l
                    }))
            })
        }
    }

    struct Events(Mutex<Vec<Event>>);
    impl Observer for Events {
        fn event(&self, e: Event) {
            self.0.lock().unwrap().push(e);
        }
    }

    /// A VPC, `n` subnets that refer to it, and a table that refers to nothing.
    fn stack(n: usize) -> Vec<Desired> {
        let vpc = Address::new(Kind::Vpc, "main");
        let mut out = vec![Desired {
            address: vpc.clone(),
            attrs: Default::default(),
            payload: None,
            after: vec![],
        }];
        for i in 0..n {
            out.push(Desired {
                address: Address::new(Kind::Subnet, format!("s{i}")),
                attrs: [("vpc_id".to_string(), Value::r(&vpc))].into(),
                payload: None,
                after: vec![],
            });
        }
        out.push(Desired {
            address: Address::new(Kind::Table, "main"),
            attrs: Default::default(),
            payload: None,
            after: vec![],
        });
        out
    }

    async fn run(
        p: &Memory,
        desired: Vec<Desired>,
        parallelism: usize,
        i: Interrupt,
    ) -> (Outcome, Vec<Event>) {
        let plan = crate::plan::diff(&desired, &BTreeMap::new());
        let events = Arc::new(Events(Mutex::new(Vec::new())));
        let outcome = execute(
            p.clone(),
            &plan,
            desired,
            BTreeMap::new(),
            parallelism,
            events.clone(),
            i,
        )
        .await;
        let seen = events.0.lock().unwrap().clone();
        (outcome, seen)
    }

    fn status(o: &Outcome, a: &str) -> Status {
        o.steps
            .iter()
            .find(|s| s.address.to_string() == a)
            .map(|s| s.status)
            .unwrap_or_else(|| panic!("no step for {a}"))
    }

    #[tokio::test]
    async fn steps_wait_for_what_they_refer_to_and_run_in_parallel_up_to_the_cap() {
        let p = Memory {
            delay: Duration::from_millis(20),
            ..Memory::default()
        };
        let (outcome, _) = run(&p, stack(6), 3, Interrupt::default()).await;
        assert!(outcome.ok());
        let vpc_done = p.position("create vpc.main", "end");
        for i in 0..6 {
            assert!(p.position(&format!("create subnet.s{i}"), "start") > vpc_done);
        }
        assert_eq!(
            p.max_in_flight.load(Ordering::SeqCst),
            3,
            "the cap is reached, never passed"
        );
        // What each create returned is what the run ends with.
        assert_eq!(outcome.live[&Address::new(Kind::Subnet, "s0")].id, "id-s0");
        assert_eq!(
            outcome.live[&Address::new(Kind::Subnet, "s0")].attrs["vpc_id"],
            Value::s("id-main"),
            "references resolved to the id the VPC's create returned"
        );
    }

    #[tokio::test]
    async fn a_failure_skips_its_dependents_and_nothing_else() {
        let p = Memory {
            fail: Arc::new([Address::new(Kind::Vpc, "main")].into()),
            ..Memory::default()
        };
        let (outcome, events) = run(&p, stack(2), 10, Interrupt::default()).await;
        assert!(!outcome.ok());
        assert_eq!(status(&outcome, "vpc.main"), Status::Failed);
        assert_eq!(status(&outcome, "subnet.s0"), Status::Skipped);
        assert_eq!(status(&outcome, "subnet.s1"), Status::Skipped);
        assert_eq!(status(&outcome, "dynamodb_table.main"), Status::Done);
        let skipped = events
            .iter()
            .filter(|e| matches!(e, Event::Skipped { because, .. } if because == "vpc.main was not created"))
            .count();
        assert_eq!(skipped, 2);
        assert!(
            !p.log
                .lock()
                .unwrap()
                .iter()
                .any(|(w, _)| w.starts_with("create subnet"))
        );
    }

    #[tokio::test]
    async fn after_an_interrupt_no_step_starts_and_those_in_flight_finish() {
        let i = Interrupt::default();
        let p = Memory {
            delay: Duration::from_millis(30),
            interrupt_during: Some((Address::new(Kind::Vpc, "main"), i.clone())),
            ..Memory::default()
        };
        let (outcome, _) = run(&p, stack(2), 2, i).await;
        // The VPC and the table started together; both finish, nothing else starts.
        assert_eq!(status(&outcome, "vpc.main"), Status::Done);
        assert_eq!(status(&outcome, "dynamodb_table.main"), Status::Done);
        assert_eq!(status(&outcome, "subnet.s0"), Status::NotStarted);
        assert_eq!(status(&outcome, "subnet.s1"), Status::NotStarted);
        assert_eq!(
            p.log.lock().unwrap().len(),
            4,
            "two steps, started and ended"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_id_not_yet_listed_is_read_again_and_the_run_records_what_aws_holds() {
        let p = Memory {
            unlisted_reads: 3,
            ..Memory::default()
        };
        let (outcome, _) = run(&p, stack(1), 4, Interrupt::default()).await;
        assert!(outcome.ok());
        let vpc = Address::new(Kind::Vpc, "main");
        assert_eq!(p.reads.lock().unwrap()[&vpc], 4, "three misses, then found");
        assert_eq!(
            outcome.live[&vpc].attrs["state"],
            Value::s("available"),
            "the run ends with what the read returned, not what the create sent"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_resource_never_listed_after_its_create_fails_and_skips_its_dependents() {
        let p = Memory {
            unlisted_reads: usize::MAX,
            ..Memory::default()
        };
        let (outcome, events) = run(&p, stack(1), 4, Interrupt::default()).await;
        assert_eq!(status(&outcome, "vpc.main"), Status::Failed);
        assert_eq!(status(&outcome, "subnet.s0"), Status::Skipped);
        let error = events
            .iter()
            .find_map(|e| match e {
                Event::Failed { address, error, .. } if address.kind == Kind::Vpc => {
                    Some(error.to_string())
                }
                _ => None,
            })
            .expect("the VPC's step failed");
        assert!(
            error.contains("AWS to list it (id id-main) after it was created"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_panicking_step_fails_like_an_error_and_skips_its_dependents() {
        let p = Memory {
            panic_at: Some(Address::new(Kind::Vpc, "main")),
            ..Memory::default()
        };
        let (outcome, _) = run(&p, stack(1), 4, Interrupt::default()).await;
        assert_eq!(status(&outcome, "vpc.main"), Status::Failed);
        let error = outcome
            .steps
            .iter()
            .find(|s| s.address.kind == Kind::Vpc)
            .and_then(|s| s.error.clone())
            .unwrap_or_default();
        assert_eq!(error, "internal error: bug in vpc.main");
        assert_eq!(status(&outcome, "subnet.s0"), Status::Skipped);
        assert_eq!(status(&outcome, "dynamodb_table.main"), Status::Done);
    }

    #[tokio::test]
    async fn an_interrupt_stops_the_waits_of_its_own_run_only() {
        let vpc = Address::new(Kind::Vpc, "main");
        let i = Interrupt::default();
        let p = Memory {
            interrupt_during: Some((vpc.clone(), i.clone())),
            wait_at: Some(vpc.clone()),
            ..Memory::default()
        };
        let (outcome, events) = run(&p, stack(1), 2, i).await;
        assert_eq!(status(&outcome, "vpc.main"), Status::Failed);
        assert!(events.iter().any(|e| matches!(
            e,
            Event::Failed { error: Error::Interrupted { waiting_for, .. }, .. }
                if waiting_for == "what never comes"
        )));
        // Another run in this process is not stopped by it.
        assert!(!crate::aws::retry::stopping());
        let (other, _) = run(&Memory::default(), stack(1), 2, Interrupt::default()).await;
        assert!(other.ok());
    }
}
