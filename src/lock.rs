//! One `up` or `down` of a stack at a time, across machines: a lock that lives in AWS.
//!
//! The lock is an item in a DynamoDB table of the account and region, [`TABLE`], keyed
//! by stack name and written with a conditional `PutItem` (`attribute_not_exists`), so
//! of two runs exactly one gets it. The item names its holder (user@host, pid, command,
//! since when) and carries a random token; release deletes it only while the token is
//! still ours. A run that dies without releasing leaves the lock behind; `--break-lock`
//! removes it explicitly. The table is created on first use, is tagged with no stack's
//! ownership tags and is never deleted, so no stack's `down` can touch another's lock.
//!
//! Why DynamoDB and not an S3 object: table names are per account and region, so the
//! lock store needs no account id and cannot be squatted (bucket names are global: a
//! `stack-locks-<account>-<region>` bucket can be created first by anyone); and the stack's
//! own bucket cannot hold it, since the bucket may not exist yet or may be what `down`
//! deletes. Conditional puts and deletes are DynamoDB's oldest guarantee (Terraform's S3
//! backend locked with it for years).
//!
//! [`Session`] is what `up`/`down` hold while they may change AWS: the lock and the
//! Ctrl-C handling. Before the apply starts, Ctrl-C ends the run (nothing was changed);
//! during the apply it stops new steps and lets calls in flight finish; a second Ctrl-C
//! ends the run at once, abandoning the calls in flight. Ending the run is
//! [`Session::guard`] returning: the command releases the lock and exits 130 through
//! the same path as every other outcome.

use crate::apply::Interrupt;
use crate::aws::{Clients, Context, Error, wait_for};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus, Tag,
};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The lock table. An underscore keeps it apart from stack tables, which are named
/// `<stack>-<name>` with a stack name of lowercase letters, digits and hyphens.
pub const TABLE: &str = "stack_locks";
const KEY: &str = "stack";
const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// user@host
    pub who: String,
    pub pid: u32,
    /// `up` or `down`
    pub command: String,
    /// When the lock was taken, seconds since the Unix epoch.
    pub since: u64,
    token: String,
}

impl Holder {
    fn me(command: &str) -> Holder {
        let user = ["USER", "USERNAME", "LOGNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "unknown".into());
        Holder {
            who: format!("{user}@{}", hostname()),
            pid: std::process::id(),
            command: command.to_string(),
            since: now(),
            token: format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
        }
    }

    fn item(&self, stack: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (KEY.to_string(), AttributeValue::S(stack.to_string())),
            ("holder".to_string(), AttributeValue::S(self.who.clone())),
            ("pid".to_string(), AttributeValue::N(self.pid.to_string())),
            (
                "command".to_string(),
                AttributeValue::S(self.command.clone()),
            ),
            (
                "since".to_string(),
                AttributeValue::N(self.since.to_string()),
            ),
            (
                "since_utc".to_string(),
                AttributeValue::S(rfc3339(self.since)),
            ),
            ("token".to_string(), AttributeValue::S(self.token.clone())),
        ])
    }

    fn from_item(item: &HashMap<String, AttributeValue>) -> Holder {
        let s = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        let n = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_default()
        };
        Holder {
            who: s("holder"),
            pid: n("pid") as u32,
            command: s("command"),
            since: n("since"),
            token: s("token"),
        }
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (pid {}, `{}`, since {}, {} ago)",
            self.who,
            self.pid,
            self.command,
            rfc3339(self.since),
            age(now().saturating_sub(self.since))
        )
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            ["HOSTNAME", "COMPUTERNAME"]
                .iter()
                .find_map(|v| std::env::var(v).ok())
        })
        .unwrap_or_else(|| "unknown-host".into())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// `2025-01-31T12:00:00Z` from seconds since the epoch (civil-from-days, proleptic
/// Gregorian).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `--lock-timeout` and `--break-lock`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// How long to wait for another run's lock; zero fails at once.
    pub timeout: Duration,
    /// Remove whatever lock is there first.
    pub break_lock: bool,
}

/// A lock this process holds.
pub struct Lock {
    ddb: aws_sdk_dynamodb::Client,
    stack: String,
    holder: Holder,
    released: AtomicBool,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lock({} by {})", self.stack, self.holder)
    }
}

fn resource(stack: &str) -> String {
    format!("the lock of stack `{stack}` (DynamoDB table {TABLE})")
}

/// Takes the stack's lock for `command`, creating the lock table on first use. Fails
/// naming the holder if another run holds it past `opts.timeout`. `say` reports what
/// happens meanwhile (waiting, a lock broken).
pub async fn acquire(
    c: &Clients,
    stack: &str,
    command: &str,
    opts: &Options,
    say: &dyn Fn(String),
) -> Result<Lock, Error> {
    let me = Holder::me(command);
    let deadline = Instant::now() + opts.timeout;
    let mut break_lock = opts.break_lock;
    let mut told_waiting = false;
    let mut delay = Duration::from_millis(250);
    loop {
        let put = c
            .ddb
            .put_item()
            .table_name(TABLE)
            .set_item(Some(me.item(stack)))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", KEY)
            .send()
            .await
            .ctx("taking", &resource(stack));
        match put {
            Ok(_) => {
                return Ok(Lock {
                    ddb: c.ddb.clone(),
                    stack: stack.to_string(),
                    holder: me,
                    released: AtomicBool::new(false),
                });
            }
            Err(e) if e.is_code(&["ResourceNotFoundException"]) => {
                create_table(c).await?;
                continue;
            }
            Err(e) if e.is_code(&[CONDITION_FAILED]) => {}
            Err(e) => return Err(e),
        }
        let Some(holder) = read(c, stack).await? else {
            // Released between our put and our read: try again at once.
            continue;
        };
        if holder.token == me.token {
            // Our put went through but its answer was lost; the SDK's retry then
            // found our own lock.
            return Ok(Lock {
                ddb: c.ddb.clone(),
                stack: stack.to_string(),
                holder: me,
                released: AtomicBool::new(false),
            });
        }
        if break_lock {
            let r = c
                .ddb
                .delete_item()
                .table_name(TABLE)
                .key(KEY, AttributeValue::S(stack.to_string()))
                .condition_expression("#t = :t")
                .expression_attribute_names("#t", "token")
                .expression_attribute_values(":t", AttributeValue::S(holder.token.clone()))
                .send()
                .await
                .ctx("breaking", &resource(stack));
            match r {
                Ok(_) => {
                    say(format!(
                        "broke the lock of stack `{stack}` held by {holder}"
                    ));
                    break_lock = false;
                }
                // Someone else took or released it meanwhile: look again.
                Err(e) if e.is_code(&[CONDITION_FAILED]) => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        if Instant::now() >= deadline {
            return Err(Error::Refused {
                resource: format!("stack `{stack}`"),
                reason: format!(
                    "locked by {holder}; wait for that run to finish (or pass --lock-timeout SECONDS to wait), or, if it is gone, run again with --break-lock"
                ),
            });
        }
        if !told_waiting {
            say(format!(
                "stack `{stack}` is locked by {holder}; waiting up to {}s",
                opts.timeout.as_secs()
            ));
            told_waiting = true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(delay.mul_f64(0.5 + fastrand::f64() * 0.5).min(left)).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// The current holder of a stack's lock, if any (read-only; no lock table, no lock).
pub async fn holder(c: &Clients, stack: &str) -> Result<Option<Holder>, Error> {
    match read(c, stack).await {
        Err(e) if e.is_code(&["ResourceNotFoundException"]) => Ok(None),
        other => other,
    }
}

async fn read(c: &Clients, stack: &str) -> Result<Option<Holder>, Error> {
    let r = c
        .ddb
        .get_item()
        .table_name(TABLE)
        .key(KEY, AttributeValue::S(stack.to_string()))
        .consistent_read(true)
        .send()
        .await
        .ctx("reading", &resource(stack))?;
    Ok(r.item().map(Holder::from_item))
}

async fn create_table(c: &Clients) -> Result<(), Error> {
    let what = format!("the lock table {TABLE}");
    let r = c
        .ddb
        .create_table()
        .table_name(TABLE)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(KEY)
                .key_type(KeyType::Hash)
                .build()
                .expect("name and type are set"),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(KEY)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type are set"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .tags(
            Tag::builder()
                .key("stack:purpose")
                .value("locks for the stack CLI; shared by every stack of this account and region")
                .build()
                .expect("key and value are set"),
        )
        .send()
        .await
        .ctx("creating", &what);
    match r {
        // Another run is creating it at the same moment.
        Err(e) if e.is_code(&["ResourceInUseException"]) => {}
        other => other.map(drop)?,
    }
    wait_for(
        &what,
        "the lock table to become ACTIVE",
        Duration::from_secs(120),
        || async {
            match c
                .ddb
                .describe_table()
                .table_name(TABLE)
                .send()
                .await
                .ctx("reading", &what)
            {
                Ok(r) => Ok((r.table().and_then(|t| t.table_status())
                    == Some(&TableStatus::Active))
                .then_some(())),
                Err(e) if e.is_code(&["ResourceNotFoundException"]) => Ok(None),
                Err(e) => Err(e),
            }
        },
    )
    .await
}

impl Lock {
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// Deletes the lock if it is still ours. Safe to call more than once.
    pub async fn release(&self) -> Result<(), Error> {
        if self.released.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let r = self
            .ddb
            .delete_item()
            .table_name(TABLE)
            .key(KEY, AttributeValue::S(self.stack.clone()))
            .condition_expression("#t = :t")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":t", AttributeValue::S(self.holder.token.clone()))
            .send()
            .await
            .ctx("releasing", &resource(&self.stack));
        match r {
            Err(e) if e.is_code(&[CONDITION_FAILED]) => {
                // Gone already (a retried delete whose first answer was lost) is fine;
                // someone else's lock in its place is not ours to delete.
                let item = self
                    .ddb
                    .get_item()
                    .table_name(TABLE)
                    .key(KEY, AttributeValue::S(self.stack.clone()))
                    .consistent_read(true)
                    .send()
                    .await
                    .ctx("reading", &resource(&self.stack))?;
                match item.item().map(Holder::from_item) {
                    None => Ok(()),
                    Some(other) => Err(Error::Refused {
                        resource: resource(&self.stack),
                        reason: format!(
                            "this run's lock was broken (--break-lock) while it ran and is now held by {other}; check that no other run changed the stack meanwhile"
                        ),
                    }),
                }
            }
            other => other.map(drop),
        }
    }

    /// Release for exit paths: bounded in time, problems reported through `say`.
    async fn release_or_warn(&self, say: &(dyn Fn(String) + Sync)) {
        match tokio::time::timeout(Duration::from_secs(10), self.release()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => say(format!("warning: {e}")),
            Err(_) => say(format!(
                "warning: could not release {} in time; the next run needs --break-lock",
                resource(&self.stack)
            )),
        }
    }
}

/// What `up`/`down` hold while they may change AWS: the stack's lock (if taken) and the
/// Ctrl-C handling described in the module docs. Nothing here exits the process: a
/// Ctrl-C that ends the run makes [`Session::guard`] return, and the command returns
/// "interrupted" like any other outcome (the lock released on the way).
pub struct Session {
    lock: Option<Arc<Lock>>,
    interrupt: Interrupt,
    applying: Arc<AtomicBool>,
    /// Set when Ctrl-C ends the run, with what to tell the user.
    quit: Arc<(tokio::sync::Notify, std::sync::Mutex<Option<String>>)>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Session {
    /// `say` hears the first Ctrl-C of an apply (which lets the calls in flight
    /// finish); the one that ends the run is returned by [`Session::guard`].
    pub fn start(lock: Option<Lock>, say: Arc<dyn Fn(String) + Send + Sync>) -> Session {
        let lock = lock.map(Arc::new);
        let interrupt = Interrupt::default();
        let applying = Arc::new(AtomicBool::new(false));
        let quit = Arc::new((tokio::sync::Notify::new(), std::sync::Mutex::new(None)));
        let watcher = {
            let (interrupt, applying, quit) = (interrupt.clone(), applying.clone(), quit.clone());
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_err() {
                    return;
                }
                let why = if applying.load(Ordering::SeqCst) {
                    interrupt.trigger();
                    say("interrupted — no new step starts; waiting for the calls in flight (Ctrl-C again to quit now)".into());
                    if tokio::signal::ctrl_c().await.is_err() {
                        return;
                    }
                    "quitting; run the same command again to converge"
                } else {
                    "interrupted before anything was changed"
                };
                *quit.1.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.to_string());
                // A permit, should the guarded work not be waiting yet.
                quit.0.notify_one();
            })
        };
        Session {
            lock,
            interrupt,
            applying,
            quit,
            watcher,
        }
    }

    /// Runs `work` unless Ctrl-C ends the run first; then `work` is dropped (the call
    /// in flight is abandoned, as quitting would) and the reason returned.
    /// Its waits stop at the first Ctrl-C of the apply.
    pub async fn guard<T>(&self, work: impl std::future::Future<Output = T>) -> Result<T, String> {
        tokio::select! {
            r = self.interrupt.covering(work) => Ok(r),
            () = self.quit.0.notified() => Err(self
                .quit
                .1
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_default()),
        }
    }

    /// The flag the executor watches.
    pub fn interrupt(&self) -> Interrupt {
        self.interrupt.clone()
    }

    /// From now on Ctrl-C stops the apply gracefully instead of quitting.
    pub fn applying(&self) {
        self.applying.store(true, Ordering::SeqCst);
    }

    pub fn interrupted(&self) -> bool {
        self.interrupt.is_set()
    }

    /// Stops watching Ctrl-C and releases the lock. A release that fails is reported
    /// through `say` and is not fatal: the run's own result stands.
    pub async fn finish(self, say: &(dyn Fn(String) + Sync)) {
        self.watcher.abort();
        if let Some(l) = &self.lock {
            l.release_or_warn(say).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn holders_round_trip_through_items() {
        let me = Holder::me("up");
        assert_eq!(Holder::from_item(&me.item("web")), me);
        assert!(me.to_string().contains(&format!("pid {}", me.pid)));
        assert!(me.to_string().contains("`up`"));
    }

    #[test]
    fn the_lock_table_cannot_be_a_stack_table() {
        // Stack tables are `<stack>-<name>`; stack names have no underscore.
        assert!(!TABLE.contains('-'));
    }
}
