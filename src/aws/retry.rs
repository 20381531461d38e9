//! The retry policy, one rule per class of failure:
//!
//! | class | examples | who retries | budget |
//! | --- | --- | --- | --- |
//! | throttling | `RequestLimitExceeded`, `Throttling`, `ThrottlingException`, `SlowDown` | the SDK | 10 attempts, exponential backoff with full jitter from 0.5 s up to 20 s |
//! | transient | HTTP 500/502/503/504, timeouts, dropped connections | the SDK | 10 attempts, backoff from 0.1 s up to 20 s |
//! | not yet | `*.NotFound` for an id just created (eventual consistency) | [`retry_codes`] | 5 minutes ([`Patience::FRESH_ID`]) |
//! | still in use | `DependencyViolation`, `ResourceInUse` while a load balancer's interfaces linger | [`retry_codes`] | 15 minutes ([`Patience::DEPENDENCY`]) |
//! | missing service | HTTP 501 from the probe | nobody | one call |
//! | anything else | validation errors, access denied | nobody | one call |
//!
//! Every SDK call is also bounded in total time ([`CALL_TIMEOUT`]) whatever its retries.
//! When a budget runs out the error keeps AWS's code and says the retries were exhausted.
//! `STACK_PATIENCE_SCALE` scales every backoff and window (tests use 0.02).
//!
//! After Ctrl-C no wait polls again and no "not yet" error is retried: the call in
//! flight finishes, and its step reports where it stopped. The flag is the run's own
//! (its [`crate::apply::Interrupt`]), given to the work it covers with [`stop_with`];
//! nothing is process-wide, so two runs in one process (tests) stop independently.

use super::Error;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_types::retry::RetrySpec;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
// Tokio's clock, so that tests with paused time run the backoffs at once.
use tokio::time::Instant;

/// Attempts per SDK call (the first one included), for throttling and transient errors.
pub const MAX_ATTEMPTS: u32 = 10;
/// The most one SDK call may take, all its attempts and backoffs included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(180);
/// The most one attempt may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Error codes AWS uses for throttling, as the SDK classifies them.
pub const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// The class of a failed call, which decides who retries it and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Throttling,
    Transient,
    Other,
}

/// Classifies a failure by its code and HTTP status (never by message text).
pub fn class_of(code: &str, status: Option<u16>) -> Class {
    if THROTTLING.contains(&code) || status == Some(429) {
        Class::Throttling
    } else if matches!(status, Some(500 | 502 | 503 | 504))
        || matches!(
            code,
            "Timeout" | "ConnectionError" | "RequestTimeout" | "RequestTimeoutException"
        )
    {
        Class::Transient
    } else {
        Class::Other
    }
}

/// `STACK_PATIENCE_SCALE` (e.g. `0.02`), else 1.
pub fn scale() -> f64 {
    std::env::var("STACK_PATIENCE_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|k| *k > 0.0)
        .unwrap_or(1.0)
}

fn scaled(d: Duration) -> Duration {
    d.mul_f64(scale()).max(Duration::from_millis(1))
}

/// The SDK's retry configuration: standard mode, [`MAX_ATTEMPTS`], throttling backing
/// off longer than transient errors, full jitter.
pub fn sdk_retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(scaled(Duration::from_millis(500)))
        .with_max_backoff(scaled(Duration::from_secs(20)))
        .with_retry_spec(
            RetrySpec::v2_1()
                .with_non_throttling_initial_backoff(scaled(Duration::from_millis(100))),
        )
}

/// Per-attempt and per-call time limits.
pub fn sdk_timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(CALL_TIMEOUT)
        .build()
}

/// The note added to an error whose retries ran out.
pub fn exhausted_note(class: Class) -> Option<String> {
    let what = match class {
        Class::Throttling => "throttled",
        Class::Transient => "failing",
        Class::Other => return None,
    };
    Some(format!(
        "retries exhausted: still {what} after up to {MAX_ATTEMPTS} attempts within {}s",
        CALL_TIMEOUT.as_secs()
    ))
}

tokio::task_local! {
    /// The stop flag of the run this task works for.
    static STOP: Arc<AtomicBool>;
}

/// Runs `work` with `flag` as its stop flag: once set, the waits and "not yet" retries
/// inside stop at their next poll.
pub async fn stop_with<F: Future>(flag: Arc<AtomicBool>, work: F) -> F::Output {
    STOP.scope(flag, work).await
}

/// Whether the run this task works for was told to stop (never, outside a run).
pub fn stopping() -> bool {
    STOP.try_with(|f| f.load(Ordering::SeqCst)).unwrap_or(false)
}

/// How long to keep retrying errors that mean "not yet" rather than "no".
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    pub total: Duration,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Patience {
    /// A fresh id may be invisible to the next call for seconds, sometimes minutes
    /// (eventual consistency); terraform-provider-aws waits up to 5 minutes.
    pub const FRESH_ID: Patience = Patience {
        total: Duration::from_secs(300),
        first_delay: Duration::from_millis(250),
        max_delay: Duration::from_secs(5),
    };
    /// Network interfaces of a deleted load balancer linger for minutes.
    pub const DEPENDENCY: Patience = Patience {
        total: Duration::from_secs(900),
        first_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(15),
    };

    /// Overrides for tests and impatient users: `STACK_PATIENCE_SCALE=0.01`.
    fn scaled(self) -> Patience {
        let k = scale();
        Patience {
            total: self.total.mul_f64(k),
            first_delay: self.first_delay.mul_f64(k),
            max_delay: self.max_delay.mul_f64(k),
        }
    }
}

/// A delay with jitter: between half and all of `d`.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// Retries `op` while it fails with one of `codes`, with jittered exponential backoff,
/// until `patience` runs out or the run is interrupted; then returns the last error.
pub async fn retry_codes<T, F, Fut>(codes: &[&str], patience: Patience, op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    retry_when(|e| e.is_code(codes), patience, op).await
}

/// Like [`retry_codes`], for errors told apart by more than their code.
pub async fn retry_when<T, F, Fut>(
    retryable: impl Fn(&Error) -> bool,
    patience: Patience,
    mut op: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let patience = patience.scaled();
    let start = Instant::now();
    let mut delay = patience.first_delay;
    loop {
        match op().await {
            Err(e) if retryable(&e) && !stopping() && start.elapsed() + delay < patience.total => {
                tokio::time::sleep(jitter(delay)).await;
                delay = (delay * 2).min(patience.max_delay);
            }
            other => return other,
        }
    }
}

/// Polls `check` until it reports `Some`, or gives up with a timeout error (or an
/// interrupted one after Ctrl-C).
pub async fn wait_for<T, F, Fut>(
    resource: &(dyn fmt::Display + Sync),
    waiting_for: &str,
    total: Duration,
    mut check: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, Error>>,
{
    let total = Patience {
        total,
        first_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(10),
    }
    .scaled();
    let start = Instant::now();
    let mut delay = total.first_delay;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if stopping() {
            return Err(Error::Interrupted {
                resource: resource.to_string(),
                waiting_for: waiting_for.to_string(),
            });
        }
        if start.elapsed() >= total.total {
            return Err(Error::Timeout {
                resource: resource.to_string(),
                waiting_for: waiting_for.to_string(),
                after: start.elapsed(),
            });
        }
        tokio::time::sleep(jitter(delay)).await;
        delay = (delay * 2).min(total.max_delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_codes_and_status_not_messages() {
        assert_eq!(
            class_of("RequestLimitExceeded", Some(503)),
            Class::Throttling
        );
        assert_eq!(class_of("Throttling", Some(400)), Class::Throttling);
        assert_eq!(class_of("SlowDown", Some(503)), Class::Throttling);
        assert_eq!(class_of("InternalError", Some(500)), Class::Transient);
        assert_eq!(class_of("Timeout", None), Class::Transient);
        assert_eq!(class_of("InvalidVpcID.NotFound", Some(400)), Class::Other);
        assert_eq!(class_of("ValidationError", Some(400)), Class::Other);
        assert!(exhausted_note(Class::Other).is_none());
        assert!(
            exhausted_note(Class::Throttling)
                .unwrap()
                .contains("10 attempts")
        );
    }
}
