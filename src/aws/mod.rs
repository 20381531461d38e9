//! AWS clients built once from the standard config chain, the error type every AWS
//! failure becomes (code first, never message text), and the retry helpers for what
//! the SDK's own retries do not cover: eventual consistency and lingering dependencies.

pub mod calls;
pub mod probe;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

/// The endpoint LocalStack and `localstack/moto.sh` listen on.
pub const LOCAL_ENDPOINT: &str = "http://localhost:4566";

/// How to reach AWS, from flags and environment.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub profile: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// `--local`: the LocalStack-compatible endpoint with test credentials when none are set.
    pub local: bool,
}

/// One client per service, sharing one configuration.
#[derive(Clone)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub asg: aws_sdk_autoscaling::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub region: String,
    /// Set when talking to something other than AWS (an emulator).
    pub endpoint_url: Option<String>,
    /// Clients that never retry, for probing which services an endpoint has.
    pub probe: Box<ProbeClients>,
}

#[derive(Clone)]
pub struct ProbeClients {
    pub ec2: aws_sdk_ec2::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub asg: aws_sdk_autoscaling::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
}

impl Clients {
    pub async fn connect(opts: &ConnectOptions) -> Result<Clients, Error> {
        let mut endpoint = opts.endpoint_url.clone();
        if endpoint.is_none() && opts.local {
            endpoint = Some(LOCAL_ENDPOINT.to_string());
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(p) = &opts.profile {
            loader = loader.profile_name(p);
        }
        if let Some(r) = &opts.region {
            loader = loader.region(Region::new(r.clone()));
        } else if opts.local && std::env::var_os("AWS_REGION").is_none() {
            loader = loader.region(Region::new("us-east-1"));
        }
        if let Some(e) = &endpoint {
            loader = loader.endpoint_url(e);
        }
        let no_creds_in_env = std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
            && std::env::var_os("AWS_PROFILE").is_none()
            && opts.profile.is_none();
        if opts.local && no_creds_in_env {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test",
                "test",
                None,
                None,
                "stack-local",
            ));
        }
        // Terraform's AWS provider retries up to 25 times; the SDK's standard mode
        // (exponential backoff with full jitter, throttling and transient errors only)
        // with a larger budget covers the same ground.
        let conf = loader
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(10)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(10)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .build(),
            )
            .load()
            .await;
        let region = conf.region().map(|r| r.to_string()).ok_or_else(|| {
            Error::Config(
                "no AWS region: pass --region, set `region:` in the stack file, or set AWS_REGION"
                    .into(),
            )
        })?;
        let probe_conf = conf
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_timeout(Duration::from_secs(10))
                    .build(),
            )
            .build();
        let counter = calls::Counter;
        // Every client counts its calls, so `--stats` and the benchmarks can report them.
        macro_rules! client {
            ($krate:ident, $conf:expr) => {
                $krate::Client::from_conf(
                    $krate::config::Builder::from($conf)
                        .interceptor(counter)
                        .build(),
                )
            };
        }
        let s3_conf = |c: &aws_config::SdkConfig| {
            aws_sdk_s3::config::Builder::from(c)
                .force_path_style(endpoint.is_some())
                .interceptor(counter)
                .build()
        };
        Ok(Clients {
            ec2: client!(aws_sdk_ec2, &conf),
            elb: client!(aws_sdk_elasticloadbalancingv2, &conf),
            asg: client!(aws_sdk_autoscaling, &conf),
            ddb: client!(aws_sdk_dynamodb, &conf),
            s3: aws_sdk_s3::Client::from_conf(s3_conf(&conf)),
            ssm: client!(aws_sdk_ssm, &conf),
            probe: Box::new(ProbeClients {
                ec2: client!(aws_sdk_ec2, &probe_conf),
                elb: client!(aws_sdk_elasticloadbalancingv2, &probe_conf),
                asg: client!(aws_sdk_autoscaling, &probe_conf),
                ddb: client!(aws_sdk_dynamodb, &probe_conf),
                s3: aws_sdk_s3::Client::from_conf(s3_conf(&probe_conf)),
            }),
            region,
            endpoint_url: endpoint,
        })
    }
}

/// Every failure the engine reports.
#[derive(Debug, Clone)]
pub enum Error {
    /// An AWS API call failed: what we were doing, to which resource, and AWS's code.
    Aws {
        action: String,
        resource: String,
        code: String,
        message: String,
    },
    /// A wait for readiness ran out of time.
    Timeout {
        resource: String,
        waiting_for: String,
        after: Duration,
    },
    /// Something about the environment (no region, a refused operation).
    Config(String),
    /// A resource is in a state the tool will not touch (another owner, a non-empty bucket).
    Refused { resource: String, reason: String },
    /// The run was interrupted before this step started.
    Cancelled,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Aws {
                action,
                resource,
                code,
                message,
            } => {
                write!(f, "{action} {resource}: {code}")?;
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            Error::Timeout {
                resource,
                waiting_for,
                after,
            } => write!(
                f,
                "{resource}: gave up after {}s waiting for {waiting_for}",
                after.as_secs()
            ),
            Error::Config(m) => f.write_str(m),
            Error::Refused { resource, reason } => write!(f, "{resource}: {reason}"),
            Error::Cancelled => f.write_str("interrupted before it started"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => Some(code),
            Error::Timeout { .. } | Error::Config(_) | Error::Refused { .. } | Error::Cancelled => {
                None
            }
        }
    }

    pub fn is_code(&self, codes: &[&str]) -> bool {
        self.code().is_some_and(|c| codes.contains(&c))
    }
}

/// The code and message of an SDK failure; transport failures get a code of our own.
pub fn classify<E, R>(err: &SdkError<E, R>) -> (String, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code().unwrap_or("UnknownError").to_string();
            let message = e.message().unwrap_or_default().to_string();
            (code, message)
        }
        SdkError::TimeoutError(_) => ("Timeout".into(), "the request timed out".into()),
        SdkError::DispatchFailure(d) => {
            let what = if d.is_io() {
                "connection failed"
            } else if d.is_timeout() {
                "connection timed out"
            } else {
                "request could not be sent"
            };
            (
                "ConnectionError".into(),
                format!(
                    "{what}: {}",
                    aws_smithy_types::error::display::DisplayErrorContext(err)
                ),
            )
        }
        SdkError::ResponseError(_) => (
            "ResponseError".into(),
            format!(
                "unreadable response: {}",
                aws_smithy_types::error::display::DisplayErrorContext(err)
            ),
        ),
        _ => (
            "UnknownError".into(),
            aws_smithy_types::error::display::DisplayErrorContext(err).to_string(),
        ),
    }
}

/// Adds "what we were doing to which resource" to SDK results.
pub trait Context<T> {
    fn ctx(self, action: &str, resource: &dyn fmt::Display) -> Result<T, Error>;
}

impl<T, E, R> Context<T> for Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    fn ctx(self, action: &str, resource: &dyn fmt::Display) -> Result<T, Error> {
        self.map_err(|e| {
            let (code, message) = classify(&e);
            Error::Aws {
                action: action.to_string(),
                resource: resource.to_string(),
                code,
                message,
            }
        })
    }
}

/// How long to keep retrying errors that mean "not yet" rather than "no".
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    pub total: Duration,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Patience {
    /// A fresh id may be invisible to the next call for seconds (eventual consistency).
    pub const FRESH_ID: Patience = Patience {
        total: Duration::from_secs(60),
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
        match std::env::var("STACK_PATIENCE_SCALE")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
        {
            Some(k) if k > 0.0 => Patience {
                total: self.total.mul_f64(k),
                first_delay: self.first_delay.mul_f64(k),
                max_delay: self.max_delay.mul_f64(k),
            },
            _ => self,
        }
    }
}

/// Retries `op` while it fails with one of `codes`, with jittered exponential backoff,
/// until `patience` runs out; then returns the last error.
pub async fn retry_codes<T, F, Fut>(
    codes: &[&str],
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
            Err(e) if e.is_code(codes) && start.elapsed() + delay < patience.total => {
                let jittered = delay.mul_f64(0.5 + fastrand::f64() * 0.5);
                tokio::time::sleep(jittered).await;
                delay = (delay * 2).min(patience.max_delay);
            }
            other => return other,
        }
    }
}

/// Polls `check` until it reports `Some`, or gives up with a timeout error.
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
        if start.elapsed() >= total.total {
            return Err(Error::Timeout {
                resource: resource.to_string(),
                waiting_for: waiting_for.to_string(),
                after: start.elapsed(),
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(total.max_delay);
    }
}
