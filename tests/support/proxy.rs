//! A recording, fault-injecting HTTP proxy between the `stack` binary and moto server:
//! what real AWS does and emulators don't, configurable per test ([`Faults`]).
//!
//! - counts every call per (service, action) and keeps their order ([`Calls`]);
//! - per-call latency;
//! - a share of calls answered with throttling in each service's own wire format
//!   (EC2 `RequestLimitExceeded` 503, ELBv2/Auto Scaling/IAM `Throttling` 400,
//!   DynamoDB/SSM `ThrottlingException` 400, S3 `SlowDown` 503), per action if wanted,
//!   and a share with 500/503 — both answered before the call reaches moto;
//! - eventual consistency: a fresh EC2 id (parsed from its create response) answers
//!   `*.NotFound` to the first N calls of each action that name it;
//! - lingering load balancer interfaces: `DependencyViolation` for security group and
//!   subnet deletes and gateway detaches for N calls (or a while) after
//!   `DeleteLoadBalancer`;
//! - slow readiness: a new load balancer reads `provisioning` and its targets `initial`
//!   for the first N describes (the response body is rewritten);
//! - 501 `InternalFailure` for whole services (LocalStack community);
//! - holds: the first call of an action waits (before or after reaching moto) until the
//!   test releases it, so a test can kill or interrupt the client at an exact point.
//!
//! The service comes from the SigV4 credential scope, the action from `Action=` or
//! `X-Amz-Target` (S3: method, path and subresource). Random decisions come from a
//! seeded RNG keyed by (service, action, n-th call), so a run is reproducible whatever
//! the interleaving of different actions.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub use super::real_aws::RealAws;
use super::real_aws::{self, RealState, Verdict};

/// What the proxy injects. `Faults::default()` injects nothing.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub seed: u64,
    /// Added to every call.
    pub latency: Duration,
    /// Share of calls answered with the service's throttling error.
    pub throttle: f64,
    /// Per-action throttling share, overriding `throttle` (1.0: always).
    pub throttle_actions: BTreeMap<String, f64>,
    /// Share of calls answered with 500 InternalError or 503 ServiceUnavailable.
    pub server_errors: f64,
    /// Actions whose connection is closed with no answer, as a dropped network does.
    pub hang_up_actions: std::collections::BTreeSet<String>,
    /// A fresh EC2 id answers NotFound to the first N calls of each action naming it.
    pub fresh_not_found: u32,
    /// After DeleteLoadBalancer: DependencyViolation for SG/subnet deletes and detaches.
    pub linger: Linger,
    /// A new load balancer reads `provisioning` for its first N describes.
    pub provisioning: u32,
    /// A target group's targets read `initial` for its first N health describes.
    pub initial_targets: u32,
    /// Every target reads `unhealthy` with this (reason, description), as when the
    /// app answers its health check with a 502.
    pub unhealthy_targets: Option<(String, String)>,
    /// The first N CreateAutoScalingGroup calls answer ValidationError for the
    /// template's instance profile, as AWS does while a fresh profile propagates.
    pub fresh_profile_invalid: u64,
    /// Services answered 501 InternalFailure, as LocalStack community does
    /// (credential-scope names: "elasticloadbalancing", "autoscaling", ...).
    pub unimplemented: Vec<String>,
    /// AWS's instance refresh, scripted (moto lacks it).
    pub refresh: Option<RefreshScript>,
    /// Extra latency for some actions (to make one call of a race arrive last).
    pub action_latency: BTreeMap<String, Duration>,
    /// Answer as AWS does where moto is kinder (see `real_aws`).
    pub real_aws: RealAws,
}

/// Instance refresh as AWS runs it, scripted: moto 5.2.5 answers its calls with an
/// error page (Auto Scaling API Reference: StartInstanceRefresh,
/// DescribeInstanceRefreshes, CancelInstanceRefresh).
#[derive(Debug, Clone, Default)]
pub struct RefreshScript {
    /// Error codes answered to the first StartInstanceRefresh calls, in order
    /// (`InstanceRefreshInProgress` also leaves an older refresh running).
    pub start_errors: Vec<String>,
    /// What successive describes of a started refresh read: (status, percentage
    /// complete, status reason); the last one stays.
    pub states: Vec<(String, u32, String)>,
    /// Instead of `states`: each refresh is `InProgress` for this long after its
    /// start (the percentage following the clock), then `Successful`.
    pub duration: Option<Duration>,
}

/// How long deleted load balancer interfaces linger.
#[derive(Debug, Clone, Default)]
pub enum Linger {
    #[default]
    Off,
    /// The first N calls of each affected action after the delete.
    Calls(u32),
    /// Every affected call for this long after the delete.
    For(Duration),
}

impl Faults {
    /// No injected faults, but AWS's own rules where moto is kinder: what the engine
    /// tests run against by default.
    pub fn real() -> Faults {
        Faults {
            real_aws: RealAws::on(),
            ..Faults::default()
        }
    }

    /// Everything AWS does that moto doesn't, at once: 20% throttling, 5% 5xx, fresh
    /// ids invisible for two calls, interfaces lingering for three, a load balancer
    /// provisioning and targets initial for three describes.
    pub fn aws_like(seed: u64) -> Faults {
        Faults {
            seed,
            latency: Duration::from_millis(2),
            throttle: 0.20,
            server_errors: 0.05,
            fresh_not_found: 2,
            linger: Linger::Calls(3),
            provisioning: 3,
            initial_targets: 3,
            fresh_profile_invalid: 2,
            ..Faults::real()
        }
    }

    pub fn unimplemented(services: &[&str]) -> Faults {
        Faults {
            unimplemented: services.iter().map(|s| s.to_string()).collect(),
            ..Faults::real()
        }
    }
}

/// What the proxy saw: (service, action) → count, and the order of calls.
#[derive(Clone, Default)]
pub struct Calls {
    counts: Arc<Mutex<BTreeMap<(String, String), u64>>>,
    log: Arc<Mutex<Vec<(String, String)>>>,
}

fn is_read(action: &str) -> bool {
    ["Describe", "List", "Get", "Head", "Scan", "Query"]
        .iter()
        .any(|p| action.starts_with(p))
}

impl Calls {
    fn record(&self, service: &str, action: &str) {
        *self
            .counts
            .lock()
            .unwrap()
            .entry((service.to_string(), action.to_string()))
            .or_default() += 1;
        self.log
            .lock()
            .unwrap()
            .push((service.to_string(), action.to_string()));
    }
    pub fn total(&self) -> u64 {
        self.counts.lock().unwrap().values().sum()
    }
    /// Calls to one service.
    pub fn count(&self, service: &str) -> u64 {
        self.counts
            .lock()
            .unwrap()
            .iter()
            .filter(|((s, _), _)| s == service)
            .map(|(_, n)| n)
            .sum()
    }
    /// Calls of one action, any service.
    pub fn action(&self, action: &str) -> u64 {
        self.counts
            .lock()
            .unwrap()
            .iter()
            .filter(|((_, a), _)| a == action)
            .map(|(_, n)| n)
            .sum()
    }
    /// Every (service, action) that changes something.
    pub fn writes(&self) -> Vec<(String, String)> {
        self.counts
            .lock()
            .unwrap()
            .keys()
            .filter(|(_, a)| !is_read(a))
            .cloned()
            .collect()
    }
    /// How many calls so far: a mark for [`Calls::since`].
    pub fn mark(&self) -> usize {
        self.log.lock().unwrap().len()
    }
    /// The calls after a mark, in order.
    pub fn since(&self, mark: usize) -> Vec<(String, String)> {
        self.log.lock().unwrap()[mark..].to_vec()
    }
    pub fn clear(&self) {
        self.counts.lock().unwrap().clear();
        self.log.lock().unwrap().clear();
    }
}

/// When a hold takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// The request waits before it reaches moto: the call has not happened.
    Before,
    /// The request reached moto; its response waits: the call happened, the client
    /// does not know yet.
    After,
}

struct HoldInner {
    action: String,
    when: When,
    armed: AtomicBool,
    /// Released without going on: the held call never reaches moto (or its answer
    /// never reaches the client).
    abandoned: AtomicBool,
    reached: watch::Sender<bool>,
    released: watch::Sender<bool>,
}

/// A held call. Dropping it releases the call.
pub struct Hold(Arc<HoldInner>);

impl Hold {
    /// Waits (up to a minute) until the held call arrives.
    pub async fn reached(&self) {
        let mut rx = self.0.reached.subscribe();
        tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|r| *r))
            .await
            .unwrap_or_else(|_| panic!("no {} call arrived within a minute", self.0.action))
            .expect("hold dropped");
    }
    pub fn is_reached(&self) -> bool {
        *self.0.reached.borrow()
    }
    /// Lets the held call go on.
    pub fn release(&self) {
        self.0.released.send_replace(true);
    }
    /// Drops the held call, as a client killed while it waited would have: a call held
    /// `Before` never reaches moto.
    pub fn abandon(&self) {
        self.0.abandoned.store(true, Ordering::SeqCst);
        self.release();
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.release();
    }
}

#[derive(Default)]
struct State {
    faults: Faults,
    /// Per (service, action): calls so far (for the seeded RNG).
    seq: HashMap<(String, String), u64>,
    /// Fresh id → calls per action that have seen NotFound.
    fresh: HashMap<String, HashMap<String, u32>>,
    /// New load balancer ARN → describes left reading `provisioning`.
    provisioning: HashMap<String, u32>,
    /// Target group ARN → health describes so far.
    target_describes: HashMap<String, u32>,
    /// When the last load balancer was deleted, and affected calls since per action.
    linger: Option<(Instant, HashMap<String, u32>)>,
    holds: Vec<Arc<HoldInner>>,
    /// Faults injected, by kind ("throttle", "5xx", "not_found", "dependency",
    /// "provisioning", "initial", "501").
    injected: BTreeMap<String, u64>,
    real: Arc<Mutex<RealState>>,
    /// Scripted instance refreshes: start request bodies, describes per id, and the
    /// older refresh an `InstanceRefreshInProgress` left (cancelled or not).
    refresh_starts: Vec<String>,
    refresh_seen: HashMap<String, usize>,
    refresh_started: HashMap<String, Instant>,
    older_refresh: Option<bool>,
    /// Each group's launch template version, as the last Create/Update sent it.
    group_versions: HashMap<String, String>,
}

impl State {
    fn inject(&mut self, kind: &str) {
        *self.injected.entry(kind.to_string()).or_default() += 1;
    }
}

/// An HTTP proxy in front of moto.
pub struct Proxy {
    pub port: u16,
    pub calls: Calls,
    state: Arc<Mutex<State>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A recording proxy in real-AWS mode that answers 501 for `unimplemented`
    /// services, or for everything when `upstream` is None.
    pub async fn start(upstream: Option<u16>, unimplemented: &[&str]) -> Proxy {
        Proxy::with_faults(upstream, Faults::unimplemented(unimplemented)).await
    }

    pub async fn with_faults(upstream: Option<u16>, faults: Faults) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let calls = Calls::default();
        let state = Arc::new(Mutex::new(State {
            faults,
            ..State::default()
        }));
        let (c, st) = (calls.clone(), state.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (c, st) = (c.clone(), st.clone());
                tokio::spawn(async move {
                    let _ = serve(sock, upstream, &c, &st).await;
                });
            }
        });
        Proxy {
            port,
            calls,
            state,
            _task: task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Changes the faults from now on (ids already fresh stay fresh).
    pub fn set_faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.state.lock().unwrap().faults);
    }

    /// Holds the next call of `action`.
    pub fn hold(&self, action: &str, when: When) -> Hold {
        let inner = Arc::new(HoldInner {
            action: action.to_string(),
            when,
            armed: AtomicBool::new(true),
            abandoned: AtomicBool::new(false),
            reached: watch::channel(false).0,
            released: watch::channel(false).0,
        });
        self.state.lock().unwrap().holds.push(inner.clone());
        Hold(inner)
    }

    /// How many faults of a kind were injected ("throttle", "5xx", "not_found",
    /// "dependency", "provisioning", "initial", "501").
    pub fn injected(&self, kind: &str) -> u64 {
        self.state
            .lock()
            .unwrap()
            .injected
            .get(kind)
            .copied()
            .unwrap_or(0)
    }

    /// The bodies of the StartInstanceRefresh calls the script answered.
    pub fn refresh_starts(&self) -> Vec<String> {
        self.state.lock().unwrap().refresh_starts.clone()
    }

    pub fn injected_all(&self) -> BTreeMap<String, u64> {
        self.state.lock().unwrap().injected.clone()
    }
}

// ---- HTTP ----

pub struct Request {
    pub head: String,
    pub body: Vec<u8>,
}

impl Request {
    pub fn method(&self) -> &str {
        self.head.split(' ').next().unwrap_or_default()
    }
    fn target(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or_default()
    }
}

async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Request>> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            if header(&head, "transfer-encoding").is_some_and(|t| t.contains("chunked")) {
                // Read until the terminating chunk, then forward with a length.
                loop {
                    if let Some(body) = complete_chunked(&buf[end + 4..]) {
                        let (body, used) = body;
                        buf.drain(..end + 4 + used);
                        let head = head
                            .lines()
                            .filter(|l| !l.to_ascii_lowercase().starts_with("transfer-encoding:"))
                            .collect::<Vec<_>>()
                            .join("\r\n")
                            + &format!("\r\nContent-Length: {}", body.len());
                        return Ok(Some(Request { head, body }));
                    }
                    if !fill(sock, buf).await? {
                        return Ok(None);
                    }
                }
            }
            let len = header(&head, "content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                if !fill(sock, buf).await? {
                    return Ok(None);
                }
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return Ok(Some(Request { head, body }));
        }
        if !fill(sock, buf).await? {
            return Ok(None);
        }
    }
}

async fn fill(sock: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 65536];
    let n = sock.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

/// A whole chunked body and the bytes it used, or None if incomplete.
fn complete_chunked(mut b: &[u8]) -> Option<(Vec<u8>, usize)> {
    let total = b.len();
    let mut out = Vec::new();
    loop {
        let i = find(b, b"\r\n")?;
        let size_text = String::from_utf8_lossy(&b[..i]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailers end with an empty line.
            let rest = &b[i + 2..];
            let end = find(rest, b"\r\n")?;
            let mut used = i + 2 + end + 2;
            if end > 0 {
                used = i + 2 + find(rest, b"\r\n\r\n")? + 4;
            }
            return Some((out, total - b.len() + used));
        }
        if b.len() < i + 2 + size + 2 {
            return None;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[i + 2 + size + 2..];
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn url_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The service from the SigV4 credential scope; the action from the target header, the
/// form body, or for S3 the method, path and subresource.
fn classify(req: &Request) -> (String, String) {
    let auth = header(&req.head, "authorization").unwrap_or_default();
    let service = auth
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unknown")
        .to_string();
    let body = String::from_utf8_lossy(&req.body);
    let action = if let Some(t) = header(&req.head, "x-amz-target") {
        t.rsplit('.').next().unwrap_or(t).to_string()
    } else if let Some(a) = body.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        a.to_string()
    } else if service == "s3" {
        s3_action(req)
    } else {
        format!("{}{}", req.method(), req.target())
    };
    (service, action)
}

fn s3_action(req: &Request) -> String {
    let (path, query) = req.target().split_once('?').unwrap_or((req.target(), ""));
    let keys: Vec<&str> = query
        .split('&')
        .map(|kv| kv.split('=').next().unwrap_or_default())
        .filter(|k| !k.is_empty() && !k.starts_with("x-id"))
        .collect();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let sub = |name: &str| keys.contains(&name);
    let method = req.method();
    let name = match (method, segments.len()) {
        ("GET", 0) => "ListBuckets",
        ("PUT", 1) if sub("tagging") => "PutBucketTagging",
        ("GET", 1) if sub("tagging") => "GetBucketTagging",
        ("PUT", 1) if sub("logging") => "PutBucketLogging",
        ("GET", 1) if sub("logging") => "GetBucketLogging",
        ("PUT", 1) if sub("versioning") => "PutBucketVersioning",
        ("GET", 1) if sub("versioning") => "GetBucketVersioning",
        ("PUT", 1) if sub("publicAccessBlock") => "PutPublicAccessBlock",
        ("GET", 1) if sub("publicAccessBlock") => "GetPublicAccessBlock",
        ("PUT", 1) if sub("encryption") => "PutBucketEncryption",
        ("GET", 1) if sub("encryption") => "GetBucketEncryption",
        ("PUT", 1) if sub("lifecycle") => "PutBucketLifecycleConfiguration",
        ("GET", 1) if sub("lifecycle") => "GetBucketLifecycleConfiguration",
        ("DELETE", 1) if sub("policy") => "DeleteBucketPolicy",
        ("PUT", 1) if sub("policy") => "PutBucketPolicy",
        ("GET", 1) if sub("policy") => "GetBucketPolicy",
        ("GET", 1) if sub("versions") => "ListObjectVersions",
        ("GET", 1) if sub("location") => "GetBucketLocation",
        ("POST", 1) if sub("delete") => "DeleteObjects",
        ("GET", 1) => "ListObjects",
        ("PUT", 1) => "CreateBucket",
        ("DELETE", 1) => "DeleteBucket",
        ("HEAD", 1) => "HeadBucket",
        ("POST", _) if sub("uploads") => "CreateMultipartUpload",
        ("PUT", _) if sub("uploadId") => "UploadPart",
        ("POST", _) if sub("uploadId") => "CompleteMultipartUpload",
        ("DELETE", _) if sub("uploadId") => "AbortMultipartUpload",
        ("GET", _) if sub("uploadId") => "ListParts",
        ("PUT", _) if sub("tagging") => "PutObjectTagging",
        ("GET", _) if sub("tagging") => "GetObjectTagging",
        ("PUT", _) => "PutObject",
        ("GET", _) => "GetObject",
        ("HEAD", _) => "HeadObject",
        ("DELETE", _) => "DeleteObject",
        _ => return format!("S3{method}"),
    };
    name.to_string()
}

// ---- error answers in each service's wire format ----

fn response(
    status: u16,
    reason: &str,
    headers: &[(&str, String)],
    body: &str,
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

fn request_id() -> String {
    format!(
        "{:08x}-fault-{:012x}",
        fastrand::u32(..),
        fastrand::u64(..) & 0xffff_ffff_ffff
    )
}

/// A 200 answer with a body.
pub fn response_with_body(status: u16, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    response(
        status,
        "OK",
        &[("Content-Type", content_type.to_string())],
        body,
        head_only,
    )
}

/// The region of the SigV4 credential scope.
pub fn credential_region(head: &str) -> String {
    header(head, "authorization")
        .unwrap_or_default()
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').nth(2))
        .unwrap_or_default()
        .to_string()
}

/// An AWS error as `service` would send it.
pub fn aws_error(
    service: &str,
    status: u16,
    code: &str,
    message: &str,
    head_only: bool,
) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let rid = request_id();
    match service {
        "ec2" => response(
            status,
            reason,
            &[("Content-Type", "text/xml;charset=UTF-8".into())],
            &format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>{rid}</RequestID></Response>"
            ),
            head_only,
        ),
        "dynamodb" | "ssm" => {
            let version = if service == "dynamodb" { "1.0" } else { "1.1" };
            response(
                status,
                reason,
                &[
                    ("Content-Type", format!("application/x-amz-json-{version}")),
                    ("x-amzn-ErrorType", code.to_string()),
                    ("x-amzn-RequestId", rid),
                ],
                &format!(
                    "{{\"__type\":\"com.amazonaws.{service}#{code}\",\"message\":\"{message}\"}}"
                ),
                head_only,
            )
        }
        "s3" => response(
            status,
            reason,
            &[
                ("Content-Type", "application/xml".into()),
                ("x-amz-request-id", rid.clone()),
            ],
            &format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{rid}</RequestId></Error>"
            ),
            head_only,
        ),
        // The query protocols: ELBv2, Auto Scaling, IAM, STS, CloudWatch.
        _ => {
            let kind = if status >= 500 { "Receiver" } else { "Sender" };
            response(
                status,
                reason,
                &[
                    ("Content-Type", "text/xml".into()),
                    ("x-amzn-RequestId", rid.clone()),
                ],
                &format!(
                    "<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>"
                ),
                head_only,
            )
        }
    }
}

fn throttling(service: &str, head_only: bool) -> Vec<u8> {
    match service {
        "ec2" => aws_error(
            service,
            503,
            "RequestLimitExceeded",
            "Request limit exceeded.",
            head_only,
        ),
        "dynamodb" | "ssm" => aws_error(
            service,
            400,
            "ThrottlingException",
            "Rate of requests exceeds the allowed throughput.",
            head_only,
        ),
        "s3" => aws_error(
            service,
            503,
            "SlowDown",
            "Please reduce your request rate.",
            head_only,
        ),
        _ => aws_error(service, 400, "Throttling", "Rate exceeded", head_only),
    }
}

fn server_error(service: &str, unavailable: bool, head_only: bool) -> Vec<u8> {
    if unavailable {
        aws_error(
            service,
            503,
            "ServiceUnavailable",
            "The service is unavailable. Please try again shortly.",
            head_only,
        )
    } else {
        let code = if service == "dynamodb" {
            "InternalServerError"
        } else {
            "InternalError"
        };
        aws_error(
            service,
            500,
            code,
            "We encountered an internal error. Please try again.",
            head_only,
        )
    }
}

// ---- fault decisions ----

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The EC2 create actions whose new id is eventually consistent, and the element
/// holding the id in their response.
const FRESH_IDS: &[(&str, &str)] = &[
    ("CreateVpc", "vpcId"),
    ("CreateSubnet", "subnetId"),
    ("CreateSecurityGroup", "groupId"),
    ("CreateInternetGateway", "internetGatewayId"),
    ("CreateRouteTable", "routeTableId"),
    ("CreateLaunchTemplate", "launchTemplateId"),
];

fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find("</")? + start;
    Some(&xml[start..end])
}

/// The NotFound error a call naming a fresh `id` gets, as its service would send it.
fn not_found(service: &str, action: &str, id: &str) -> Option<(String, String)> {
    let code = match service {
        "ec2" => {
            let prefix = id.split('-').next().unwrap_or_default();
            match prefix {
                "vpc" => "InvalidVpcID.NotFound",
                "subnet" => "InvalidSubnetID.NotFound",
                "sg" => "InvalidGroup.NotFound",
                "igw" if action.ends_with("Route") => "InvalidGatewayID.NotFound",
                "igw" => "InvalidInternetGatewayID.NotFound",
                "rtb" => "InvalidRouteTableID.NotFound",
                "lt" => "InvalidLaunchTemplateId.NotFound",
                _ => return None,
            }
        }
        "elasticloadbalancing" if action == "CreateLoadBalancer" => {
            match id.split('-').next().unwrap_or_default() {
                "subnet" => "SubnetNotFound",
                "sg" => "InvalidSecurityGroup",
                _ => return None,
            }
        }
        "elasticloadbalancing" if action == "CreateTargetGroup" && id.starts_with("vpc-") => {
            "ValidationError"
        }
        _ => return None,
    };
    Some((code.to_string(), format!("The ID '{id}' does not exist")))
}

enum Decision {
    Answer(Vec<u8>),
    Forward,
}

fn decide(
    st: &mut State,
    service: &str,
    action: &str,
    body: &str,
    head_only: bool,
    upstream: bool,
) -> Decision {
    let f = st.faults.clone();
    if !upstream || f.unimplemented.iter().any(|s| s == service) {
        st.inject("501");
        let message = format!(
            "The API for service {service} is either not included in your current license plan or has not yet been emulated by LocalStack."
        );
        return Decision::Answer(response(
            501,
            "Not Implemented",
            &[
                ("Content-Type", "application/json".into()),
                ("x-amzn-ErrorType", "InternalFailure".into()),
            ],
            &format!("{{\"__type\": \"InternalFailure\", \"message\": \"{message}\"}}"),
            head_only,
        ));
    }
    let n = {
        let e = st
            .seq
            .entry((service.to_string(), action.to_string()))
            .or_default();
        *e += 1;
        *e
    };
    let mut rng = fastrand::Rng::with_seed(
        f.seed ^ fnv(service).rotate_left(7) ^ fnv(action) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    let share = f
        .throttle_actions
        .get(action)
        .copied()
        .unwrap_or(f.throttle);
    if rng.f64() < share {
        st.inject("throttle");
        return Decision::Answer(throttling(service, head_only));
    }
    if rng.f64() < f.server_errors {
        st.inject("5xx");
        return Decision::Answer(server_error(service, rng.bool(), head_only));
    }
    if let Some(script) = &f.refresh
        && service == "autoscaling"
        && let Some(answer) = refresh(st, script, action, body, head_only)
    {
        return Decision::Answer(answer);
    }
    if action == "CreateAutoScalingGroup" && n <= f.fresh_profile_invalid {
        st.inject("profile_invalid");
        return Decision::Answer(aws_error(
            service,
            400,
            "ValidationError",
            "You must use a valid fully-formed launch template. Value (stack-instance) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name",
            head_only,
        ));
    }
    // Eventual consistency: a fresh id named by a call that is not a delete.
    let deleting = ["Delete", "Detach", "Disassociate"]
        .iter()
        .any(|p| action.starts_with(p));
    if f.fresh_not_found > 0 && !deleting {
        let hit = st.fresh.iter_mut().find_map(|(id, per_action)| {
            let seen = per_action.get(action).copied().unwrap_or(0);
            if seen >= f.fresh_not_found || !contains_id(body, id) {
                return None;
            }
            let answer = not_found(service, action, id)?;
            per_action.insert(action.to_string(), seen + 1);
            Some(answer)
        });
        if let Some((code, message)) = hit {
            st.inject("not_found");
            return Decision::Answer(aws_error(service, 400, &code, &message, head_only));
        }
    }
    // Interfaces of a deleted load balancer still hold its subnets and groups.
    if matches!(
        action,
        "DeleteSecurityGroup" | "DeleteSubnet" | "DetachInternetGateway"
    ) && let Some((at, per_action)) = &mut st.linger
    {
        let lingering = match f.linger {
            Linger::Off => false,
            Linger::Calls(k) => {
                let seen = per_action.entry(action.to_string()).or_default();
                *seen += 1;
                *seen <= k
            }
            Linger::For(d) => at.elapsed() < d,
        };
        if lingering {
            st.inject("dependency");
            return Decision::Answer(aws_error(
                service,
                400,
                "DependencyViolation",
                "resource has a dependent object",
                head_only,
            ));
        }
    }
    Decision::Forward
}

/// The scripted instance refresh calls; None for other actions.
fn refresh(
    st: &mut State,
    script: &RefreshScript,
    action: &str,
    body: &str,
    head_only: bool,
) -> Option<Vec<u8>> {
    let param = |k: &str| {
        body.split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_string()
    };
    let ok = |name: &str, result: String| {
        response(
            200,
            "OK",
            &[("Content-Type", "text/xml".into())],
            &format!(
                "<{name}Response xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\"><{name}Result>{result}</{name}Result><ResponseMetadata><RequestId>scripted</RequestId></ResponseMetadata></{name}Response>"
            ),
            head_only,
        )
    };
    let member = |id: &str, group: &str, status: &str, pct: u32, reason: &str| {
        format!(
            "<member><InstanceRefreshId>{id}</InstanceRefreshId><AutoScalingGroupName>{group}</AutoScalingGroupName><Status>{status}</Status><StatusReason>{reason}</StatusReason><PercentageComplete>{pct}</PercentageComplete><InstancesToUpdate>{}</InstancesToUpdate></member>",
            if pct >= 100 { 0 } else { 1 }
        )
    };
    match action {
        "CreateAutoScalingGroup" | "UpdateAutoScalingGroup" => {
            let version = param("LaunchTemplate.Version");
            if !version.is_empty() {
                st.group_versions.insert(
                    param("AutoScalingGroupName"),
                    super::percent_decode(&version),
                );
            }
            None
        }
        "StartInstanceRefresh" => {
            st.inject("refresh");
            // AWS: "The AutoRollback parameter cannot be set to true when the
            // DesiredConfiguration parameter is empty", and a rollback needs the group
            // and the desired configuration on numbered versions (not $Default/$Latest).
            if param("Preferences.AutoRollback") == "true" {
                let numbered = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
                let desired =
                    super::percent_decode(&param("DesiredConfiguration.LaunchTemplate.Version"));
                let group = st
                    .group_versions
                    .get(&param("AutoScalingGroupName"))
                    .cloned()
                    .unwrap_or_default();
                let refusal = if param("DesiredConfiguration.LaunchTemplate.LaunchTemplateId")
                    .is_empty()
                {
                    Some(
                        "The AutoRollback parameter cannot be set to true when the DesiredConfiguration parameter is empty.",
                    )
                } else if !numbered(&desired) || !numbered(&group) {
                    Some(
                        "AutoRollback requires the group and the desired configuration to use a specific launch template version, not $Default or $Latest.",
                    )
                } else {
                    None
                };
                if let Some(message) = refusal {
                    return Some(aws_error(
                        "autoscaling",
                        400,
                        "ValidationError",
                        message,
                        head_only,
                    ));
                }
            }
            let errors_left = script
                .start_errors
                .len()
                .saturating_sub(st.injected.get("refresh_error").copied().unwrap_or(0) as usize);
            if errors_left > 0 {
                let code = &script.start_errors[script.start_errors.len() - errors_left];
                *st.injected.entry("refresh_error".into()).or_default() += 1;
                if code == "InstanceRefreshInProgress" {
                    st.older_refresh = Some(false);
                }
                let status = if code == "AccessDenied" { 403 } else { 400 };
                return Some(aws_error(
                    "autoscaling",
                    status,
                    code,
                    "scripted answer to StartInstanceRefresh",
                    head_only,
                ));
            }
            st.refresh_starts.push(body.to_string());
            let id = format!("refresh-{}", st.refresh_starts.len());
            st.refresh_seen.insert(id.clone(), 0);
            st.refresh_started.insert(id.clone(), Instant::now());
            Some(ok(
                "StartInstanceRefresh",
                format!("<InstanceRefreshId>{id}</InstanceRefreshId>"),
            ))
        }
        "CancelInstanceRefresh" => {
            st.older_refresh = st.older_refresh.map(|_| true);
            Some(ok(
                "CancelInstanceRefresh",
                "<InstanceRefreshId>refresh-older</InstanceRefreshId>".into(),
            ))
        }
        "DescribeInstanceRefreshes" => {
            let group = param("AutoScalingGroupName");
            let id = param("InstanceRefreshIds.member.1");
            let started = st.refresh_started.get(&id).copied();
            let members = if let Some(seen) = st.refresh_seen.get_mut(&id) {
                let (status, pct, reason) = match (script.duration, started) {
                    (Some(d), Some(t)) if t.elapsed() < d => (
                        "InProgress".to_string(),
                        (100.0 * t.elapsed().as_secs_f64() / d.as_secs_f64()) as u32,
                        String::new(),
                    ),
                    (Some(_), _) => ("Successful".into(), 100, String::new()),
                    (None, _) => script
                        .states
                        .get(*seen)
                        .or(script.states.last())
                        .cloned()
                        .unwrap_or(("Successful".into(), 100, String::new())),
                };
                *seen += 1;
                member(&id, &group, &status, pct, &reason)
            } else {
                match st.older_refresh {
                    Some(cancelled) => member(
                        "refresh-older",
                        &group,
                        if cancelled { "Cancelled" } else { "InProgress" },
                        30,
                        "",
                    ),
                    None => String::new(),
                }
            };
            Some(ok(
                "DescribeInstanceRefreshes",
                format!("<InstanceRefreshes>{members}</InstanceRefreshes>"),
            ))
        }
        _ => None,
    }
}

/// Whether a (decoded) request body names `id` as a whole value.
fn contains_id(body: &str, id: &str) -> bool {
    body.match_indices(id).any(|(i, _)| {
        let after = body[i + id.len()..].chars().next();
        !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

/// Learns from a response: fresh ids, new load balancers, deleted ones; rewrites
/// readiness while it is injected.
fn observe(st: &mut State, service: &str, action: &str, body: &str, resp: Vec<u8>) -> Vec<u8> {
    let Some(end) = find(&resp, b"\r\n\r\n") else {
        return resp;
    };
    let status_ok = resp.starts_with(b"HTTP/1.1 2") || resp.starts_with(b"HTTP/1.0 2");
    if !status_ok {
        return resp;
    }
    let text = String::from_utf8_lossy(&resp[end + 4..]).into_owned();
    if service == "ec2"
        && let Some((_, el)) = FRESH_IDS.iter().find(|(a, _)| *a == action)
        && let Some(id) = element(&text, el)
    {
        st.fresh.insert(id.to_string(), HashMap::new());
    }
    if service != "elasticloadbalancing" {
        return resp;
    }
    match action {
        "CreateLoadBalancer" => {
            if let Some(arn) = element(&text, "LoadBalancerArn")
                && st.faults.provisioning > 0
            {
                st.provisioning
                    .insert(arn.to_string(), st.faults.provisioning);
            }
            resp
        }
        "DeleteLoadBalancer" => {
            st.linger = Some((Instant::now(), HashMap::new()));
            resp
        }
        "DescribeLoadBalancers" if st.faults.provisioning > 0 => {
            let hit = st
                .provisioning
                .iter_mut()
                .find(|(arn, left)| **left > 0 && body.contains(arn.as_str()));
            match hit {
                Some((_, left)) if text.contains("<Code>active</Code>") => {
                    *left -= 1;
                    st.inject("provisioning");
                    rewrite(
                        &resp,
                        end,
                        &text.replace("<Code>active</Code>", "<Code>provisioning</Code>"),
                    )
                }
                _ => resp,
            }
        }
        "DescribeTargetHealth" => {
            let Some(arn) = body
                .split('&')
                .find_map(|kv| kv.strip_prefix("TargetGroupArn="))
                .map(str::to_string)
            else {
                return resp;
            };
            if let Some((reason, description)) = st.faults.unhealthy_targets.clone() {
                st.inject("unhealthy");
                return rewrite(
                    &resp,
                    end,
                    &text.replace(
                        "<State>healthy</State>",
                        &format!(
                            "<State>unhealthy</State><Reason>{reason}</Reason><Description>{description}</Description>"
                        ),
                    ),
                );
            }
            let seen = st.target_describes.entry(arn).or_default();
            *seen += 1;
            if *seen <= st.faults.initial_targets && text.contains("<State>healthy</State>") {
                st.inject("initial");
                rewrite(
                    &resp,
                    end,
                    &text.replace("<State>healthy</State>", "<State>initial</State>"),
                )
            } else {
                resp
            }
        }
        _ => resp,
    }
}

/// A successful response as the real-AWS mode rewrites it.
fn real_after(
    cfg: &RealAws,
    st: &Arc<Mutex<RealState>>,
    service: &str,
    action: &str,
    body: &str,
    resp: Vec<u8>,
) -> Vec<u8> {
    let Some(end) = find(&resp, b"\r\n\r\n") else {
        return resp;
    };
    if !(resp.starts_with(b"HTTP/1.1 2") || resp.starts_with(b"HTTP/1.0 2")) {
        return resp;
    }
    let text = String::from_utf8_lossy(&resp[end + 4..]).into_owned();
    match real_aws::after(cfg, st, service, action, body, &text) {
        Some(new) if new != text => rewrite(&resp, end, &new),
        _ => resp,
    }
}

/// The same response with a new body (and length).
fn rewrite(resp: &[u8], end: usize, body: &str) -> Vec<u8> {
    let head = String::from_utf8_lossy(&resp[..end]);
    let mut lines: Vec<String> = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:"))
        .map(str::to_string)
        .collect();
    lines.push(format!("Content-Length: {}", body.len()));
    let mut out = lines.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

fn take_hold(st: &State, action: &str, when: When) -> Option<Arc<HoldInner>> {
    st.holds
        .iter()
        .find(|h| {
            h.action == action
                && h.when == when
                && h.armed
                    .compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
        })
        .cloned()
}

/// Waits for the test to release a held call; false if it was abandoned.
async fn wait_hold(h: Arc<HoldInner>) -> bool {
    h.reached.send_replace(true);
    let mut rx = h.released.subscribe();
    let _ = rx.wait_for(|r| *r).await;
    !h.abandoned.load(Ordering::SeqCst)
}

async fn serve(
    mut sock: TcpStream,
    upstream: Option<u16>,
    calls: &Calls,
    state: &Arc<Mutex<State>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut sock, &mut buf).await? {
        let (service, action) = classify(&req);
        calls.record(&service, &action);
        let head_only = req.method() == "HEAD";
        let body = url_decode(&String::from_utf8_lossy(&req.body));
        let latency = state.lock().unwrap().faults.latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let before = take_hold(&state.lock().unwrap(), &action, When::Before);
        if let Some(h) = before
            && !wait_hold(h).await
        {
            return Ok(());
        }
        let extra = state
            .lock()
            .unwrap()
            .faults
            .action_latency
            .get(&action)
            .copied();
        if let Some(d) = extra {
            tokio::time::sleep(d).await;
        }
        {
            let mut st = state.lock().unwrap();
            if st.faults.hang_up_actions.contains(&action) {
                st.inject("hang_up");
                return Ok(());
            }
        }
        let decision = decide(
            &mut state.lock().unwrap(),
            &service,
            &action,
            &body,
            head_only,
            upstream.is_some(),
        );
        let (real_cfg, real_state) = {
            let st = state.lock().unwrap();
            (st.faults.real_aws.clone(), st.real.clone())
        };
        let decision = match (decision, upstream) {
            (Decision::Forward, Some(port)) => {
                match real_aws::before(&real_cfg, &real_state, port, &req, &service, &action, &body)
                    .await
                {
                    Verdict::Answer(r) => {
                        state.lock().unwrap().inject("real_aws");
                        Decision::Answer(r)
                    }
                    Verdict::Forward => Decision::Forward,
                }
            }
            (d, _) => d,
        };
        let response = match decision {
            Decision::Answer(r) => r,
            Decision::Forward => {
                let port = upstream.expect("an upstream when forwarding");
                let r = forward(port, &req).await?;
                let r = real_after(&real_cfg, &real_state, &service, &action, &body, r);
                let r = observe(&mut state.lock().unwrap(), &service, &action, &body, r);
                let after = take_hold(&state.lock().unwrap(), &action, When::After);
                if let Some(h) = after
                    && !wait_hold(h).await
                {
                    return Ok(());
                }
                r
            }
        };
        sock.write_all(&response).await?;
    }
    Ok(())
}

/// One request over a fresh upstream connection, read to its end.
async fn forward(port: u16, req: &Request) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(("127.0.0.1", port)).await?;
    let head: Vec<&str> = req
        .head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    let mut out = head.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    out.extend_from_slice(&req.body);
    up.write_all(&out).await?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp).await?;
    // Keep the client's connection usable: the response must carry its own length.
    let Some(end) = find(&resp, b"\r\n\r\n") else {
        return Ok(resp);
    };
    let head = String::from_utf8_lossy(&resp[..end]).into_owned();
    let body = resp[end + 4..].to_vec();
    let body = if header(&head, "transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        complete_chunked(&body).map(|(b, _)| b).unwrap_or_default()
    } else {
        body
    };
    let mut fixed: Vec<String> = head
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("connection:")
                && !l.starts_with("transfer-encoding:")
                && !l.starts_with("content-length:")
        })
        .map(str::to_string)
        .collect();
    let is_head = req.method() == "HEAD";
    let len = if is_head {
        header(&head, "content-length").unwrap_or("0").to_string()
    } else {
        body.len().to_string()
    };
    fixed.push(format!("Content-Length: {len}"));
    let mut out = fixed.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    if !is_head {
        out.extend_from_slice(&body);
    }
    Ok(out)
}
