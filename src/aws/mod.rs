//! AWS clients built once from the standard config chain, the error type every AWS
//! failure becomes (code first, never message text), and the retry helpers for what
//! the SDK's own retries do not cover: eventual consistency and lingering dependencies.

pub mod calls;
pub mod probe;
pub mod retry;

pub use retry::{Patience, retry_codes, retry_when, scale, wait_for};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::fmt;
use std::time::Duration;

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
    /// Where the clients count their calls.
    pub calls: calls::Calls,
    /// `-v`: a credentials failure lists every source tried.
    pub verbose: bool,
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
    pub iam: aws_sdk_iam::Client,
    pub sts: aws_sdk_sts::Client,
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
    pub iam: aws_sdk_iam::Client,
    pub ssm: aws_sdk_ssm::Client,
}

/// The endpoint URL, checked: a scheme and a host, or a one-line error saying what
/// to type instead.
pub fn check_endpoint(url: &str) -> Result<(), Error> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(' ') => Ok(()),
        Some(_) => Err(Error::Config(format!(
            "--endpoint-url `{url}` has no host (like http://localhost:4566)"
        ))),
        None => Err(Error::Config(format!(
            "--endpoint-url `{url}` needs a scheme: did you mean http://{}?",
            url.split("://").last().unwrap_or(url)
        ))),
    }
}

/// Whether an AWS region name is well formed (`us-east-1`, `us-gov-west-1`,
/// `ap-southeast-4`): checked before any call, so a typo is not a DNS failure later.
pub fn region_is_well_formed(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[0].chars().all(|c| c.is_ascii_lowercase())
        && parts[1..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok_and(|n| n > 0)
}

/// Whether the endpoint is this machine: an emulator, never AWS.
pub fn is_loopback(url: &str) -> bool {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let host = host
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    matches!(host, "localhost" | "[::1]" | "::1") || host.starts_with("127.")
}

impl Clients {
    pub async fn connect(opts: &ConnectOptions) -> Result<Clients, Error> {
        let mut endpoint = opts.endpoint_url.clone();
        if endpoint.is_none() && opts.local {
            endpoint = Some(LOCAL_ENDPOINT.to_string());
        }
        if let Some(e) = &endpoint {
            check_endpoint(e)?;
        }
        if let Some(r) = &opts.region
            && !region_is_well_formed(r)
        {
            return Err(Error::Config(format!(
                "`{r}` is not an AWS region name (like us-east-1)"
            )));
        }
        // An emulator on this machine never needs the instance metadata service, which
        // the default chains would otherwise probe (seconds of timeouts off EC2).
        let local = opts.local || endpoint.as_deref().is_some_and(is_loopback);
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(p) = &opts.profile {
            loader = loader.profile_name(p);
        }
        if let Some(r) = &opts.region {
            loader = loader.region(Region::new(r.clone()));
        } else if local
            && std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            loader = loader.region(Region::new("us-east-1"));
        }
        if let Some(e) = &endpoint {
            loader = loader.endpoint_url(e);
        }
        let no_creds_in_env = std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
            && std::env::var_os("AWS_PROFILE").is_none()
            && opts.profile.is_none();
        if local && no_creds_in_env {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test",
                "test",
                None,
                None,
                "stack-local",
            ));
        }
        // Terraform's AWS provider retries up to 25 times; the SDK's standard mode with a
        // larger budget, per error class, covers the same ground (see `retry`).
        let conf = loader
            .retry_config(retry::sdk_retry_config())
            .timeout_config(retry::sdk_timeout_config())
            .load()
            .await;
        let region = conf.region().map(|r| r.to_string()).ok_or_else(|| {
            Error::Config(
                "no AWS region: pass --region, set `region:` in the stack file, or set AWS_REGION"
                    .into(),
            )
        })?;
        if !region_is_well_formed(&region) {
            return Err(Error::Config(format!(
                "`{region}` (from the AWS configuration) is not an AWS region name (like us-east-1)"
            )));
        }
        // Credentials are resolved once, here, so a missing or broken profile is one
        // line naming it rather than an SDK error chain on the first call.
        if let Some(provider) = conf.credentials_provider() {
            use aws_credential_types::provider::ProvideCredentials;
            if let Err(e) = provider.provide_credentials().await {
                let whose = match &opts.profile {
                    Some(p) => format!("for AWS profile `{p}`"),
                    None => "from the environment, ~/.aws/config or SSO".to_string(),
                };
                let cause = if opts.verbose {
                    causes(&e).join(": ")
                } else {
                    let cause = root_cause(&e);
                    let first = cause.lines().next().unwrap_or_default();
                    first
                        .trim_end_matches("Attempted:")
                        .trim_end()
                        .trim_end_matches('.')
                        .to_string()
                };
                return Err(Error::Config(format!(
                    "no AWS credentials {whose} ({cause}): run `aws sso login{}`, set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use --local for the emulator (-v shows every source tried)",
                    opts.profile
                        .as_ref()
                        .map(|p| format!(" --profile {p}"))
                        .unwrap_or_default()
                )));
            }
        }
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
        let counter = calls::Counter(opts.calls.clone());
        // Every client counts its calls, so `--stats` and the benchmarks can report them.
        macro_rules! client {
            ($krate:ident, $conf:expr) => {
                $krate::Client::from_conf(
                    $krate::config::Builder::from($conf)
                        .interceptor(counter.clone())
                        .build(),
                )
            };
        }
        let s3_conf = |c: &aws_config::SdkConfig| {
            aws_sdk_s3::config::Builder::from(c)
                .force_path_style(endpoint.is_some())
                .interceptor(counter.clone())
                .build()
        };
        Ok(Clients {
            ec2: client!(aws_sdk_ec2, &conf),
            elb: client!(aws_sdk_elasticloadbalancingv2, &conf),
            asg: client!(aws_sdk_autoscaling, &conf),
            ddb: client!(aws_sdk_dynamodb, &conf),
            s3: aws_sdk_s3::Client::from_conf(s3_conf(&conf)),
            ssm: client!(aws_sdk_ssm, &conf),
            iam: client!(aws_sdk_iam, &conf),
            sts: client!(aws_sdk_sts, &conf),
            probe: Box::new(ProbeClients {
                ec2: client!(aws_sdk_ec2, &probe_conf),
                elb: client!(aws_sdk_elasticloadbalancingv2, &probe_conf),
                asg: client!(aws_sdk_autoscaling, &probe_conf),
                ddb: client!(aws_sdk_dynamodb, &probe_conf),
                s3: aws_sdk_s3::Client::from_conf(s3_conf(&probe_conf)),
                iam: client!(aws_sdk_iam, &probe_conf),
                ssm: client!(aws_sdk_ssm, &probe_conf),
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
        /// What else is known of the failed request (boxed: most errors have none,
        /// and every `Result` carries the size of its error).
        detail: Option<Box<Detail>>,
    },
    /// A file or a process of this machine failed: what we were doing, and the
    /// system's own error as the cause.
    Io {
        doing: String,
        cause: std::sync::Arc<std::io::Error>,
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
    /// Ctrl-C arrived while this step waited; the resource exists, unfinished.
    Interrupted {
        resource: String,
        waiting_for: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Aws {
                action,
                resource,
                code,
                message,
                detail,
            } => {
                write!(f, "{action} {resource}: {code}")?;
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                if let Some(id) = detail.as_ref().and_then(|d| d.request_id.as_ref()) {
                    write!(f, " (request id {id})")?;
                }
                Ok(())
            }
            // The cause chain, outermost first, as one line.
            Error::Io { doing, cause } => {
                write!(f, "{doing}: {cause}")?;
                let mut next = std::error::Error::source(cause.as_ref());
                while let Some(e) = next {
                    write!(f, ": {e}")?;
                    next = e.source();
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
            Error::Interrupted {
                resource,
                waiting_for,
            } => write!(
                f,
                "{resource}: interrupted while waiting for {waiting_for}; it exists but may not be ready"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { cause, .. } => Some(cause.as_ref()),
            Error::Aws { .. }
            | Error::Timeout { .. }
            | Error::Config(_)
            | Error::Refused { .. }
            | Error::Cancelled
            | Error::Interrupted { .. } => None,
        }
    }
}

impl Error {
    /// For `map_err`: an io failure while `doing` something, kept as the cause.
    pub fn io(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let doing = doing.into();
        move |cause| Error::Io {
            doing,
            cause: std::sync::Arc::new(cause),
        }
    }

    /// AWS's request id of a failed call.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::Aws { detail, .. } => detail.as_ref()?.request_id.as_deref(),
            _ => None,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => Some(code),
            Error::Io { .. }
            | Error::Timeout { .. }
            | Error::Config(_)
            | Error::Refused { .. }
            | Error::Cancelled
            | Error::Interrupted { .. } => None,
        }
    }

    /// The code a JSON error document carries: AWS's own, or the kind of failure.
    pub fn kind_code(&self) -> &str {
        match self {
            Error::Aws { code, .. } => code,
            Error::Timeout { .. } => "Timeout",
            Error::Io { .. } => "Io",
            Error::Config(_) => "Config",
            Error::Refused { .. } => "Refused",
            Error::Cancelled | Error::Interrupted { .. } => "Interrupted",
        }
    }

    pub fn is_code(&self, codes: &[&str]) -> bool {
        self.code().is_some_and(|c| codes.contains(&c))
    }
}

/// What is known of a failed AWS request beyond its code and message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detail {
    /// AWS's id for the request, for a support case or CloudTrail.
    pub request_id: Option<String>,
    /// A request that never got an answer from AWS (connection, timeout): its whole
    /// cause chain, outermost first, of which the message names the root.
    pub causes: Vec<String>,
}

impl Error {
    /// The error as `-v` shows it: the one line, then each cause of a request that
    /// never got an answer.
    pub fn detailed(&self) -> String {
        let mut out = self.to_string();
        if let Error::Aws {
            detail: Some(d), ..
        } = self
        {
            for c in &d.causes {
                out.push_str("\n  caused by: ");
                out.push_str(c);
            }
        }
        out
    }
}

/// The innermost cause of an error (`Connection refused (os error 111)`).
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    causes(e).pop().unwrap_or_default()
}

/// An error and its causes, outermost first.
pub fn causes(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = vec![e.to_string()];
    let mut next = e.source();
    while let Some(cause) = next {
        out.push(cause.to_string());
        next = cause.source();
    }
    out
}

/// The code and message of an SDK failure; transport failures get a code of our own.
pub fn classify<E, R>(err: &SdkError<E, R>) -> (String, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug + 'static,
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
                format!("{what}: {}", root_cause(err)),
            )
        }
        SdkError::ResponseError(_) => (
            "ResponseError".into(),
            format!("unreadable response: {}", root_cause(err)),
        ),
        _ => ("UnknownError".into(), root_cause(err)),
    }
}

/// AWS's id for a request: in the error's metadata (parsed from the body, where EC2
/// and the Query APIs put it) or in a response header (JSON APIs, S3).
fn request_id<E, R>(err: &SdkError<E, R>) -> Option<String>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug + 'static,
    SdkError<E, R>: HasHeaders,
{
    let from_body = match err {
        SdkError::ServiceError(se) => se.err().meta().extra("aws_request_id"),
        _ => None,
    };
    from_body
        .map(str::to_string)
        .or_else(|| err.header_any(&["x-amzn-requestid", "x-amz-request-id"]))
        .filter(|id| !id.is_empty())
}

/// Response headers of a failed call, where there was a response.
trait HasHeaders {
    fn header_any(&self, names: &[&str]) -> Option<String>;
}

impl<E> HasHeaders for SdkError<E, aws_smithy_runtime_api::http::Response> {
    fn header_any(&self, names: &[&str]) -> Option<String> {
        let r = self.raw_response()?;
        names
            .iter()
            .find_map(|n| r.headers().get(*n))
            .map(str::to_string)
    }
}

/// Adds "what we were doing to which resource" to SDK results.
pub trait Context<T> {
    fn ctx(self, action: &str, resource: &dyn fmt::Display) -> Result<T, Error>;
}

impl<T, E> Context<T> for Result<T, SdkError<E, aws_smithy_runtime_api::http::Response>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    fn ctx(self, action: &str, resource: &dyn fmt::Display) -> Result<T, Error> {
        self.map_err(|e| {
            let (code, mut message) = classify(&e);
            let status = e.raw_response().map(|r| r.status().as_u16());
            // The SDK retried these until its budget ran out: say so.
            if let Some(note) = retry::exhausted_note(retry::class_of(&code, status)) {
                message = if message.is_empty() {
                    note
                } else {
                    format!("{message} ({note})")
                };
            }
            let detail = Detail {
                request_id: request_id(&e),
                causes: match &e {
                    SdkError::ServiceError(_) => Vec::new(),
                    other => causes(other),
                },
            };
            Error::Aws {
                action: action.to_string(),
                resource: resource.to_string(),
                code,
                message,
                detail: Some(Box::new(detail)),
            }
        })
    }
}
