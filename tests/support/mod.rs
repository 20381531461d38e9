//! Test support: a real moto server per test, the `stack` binary driven end to end, a
//! recording proxy that can stand in for an endpoint lacking services, and SDK clients
//! for checking AWS out of band.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The checkout under test. Read at run time (cargo and nextest set it) because a
/// shared `CARGO_TARGET_DIR` may hold a test binary compiled in another clone.
pub fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn moto_server_path() -> PathBuf {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let out = Command::new(root().join("localstack/moto.sh"))
        .arg("path")
        .output()
        .expect("run localstack/moto.sh path");
    assert!(
        out.status.success(),
        "localstack/moto.sh path failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A moto server on a free loopback port, killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new(moto_server_path())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        // Readiness is polled: the server has no other way to say it listens.
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `stack` binary against `endpoint` with test credentials.
pub fn stack(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stack"))
        .args(args)
        .args(["--endpoint-url", endpoint])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("NO_COLOR", "1")
        .env("STACK_PATIENCE_SCALE", "0.02")
        .stdin(Stdio::null())
        .output()
        .expect("run stack")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// A copy of the repository's stacks/ and userdata/ in a temporary directory, so tests
/// can edit stack files.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["stacks", "userdata"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
            for e in std::fs::read_dir(root().join(sub)).expect("read dir") {
                let e = e.expect("entry");
                if e.path().is_file() {
                    std::fs::copy(e.path(), dir.path().join(sub).join(e.file_name()))
                        .expect("copy");
                }
            }
        }
        Workdir { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn file(&self, rel: &str) -> String {
        self.path(rel).to_string_lossy().into_owned()
    }

    /// Rewrites a file, replacing `from` with `to` (which must be there).
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let p = self.path(rel);
        let text = std::fs::read_to_string(&p).expect("read");
        assert!(text.contains(from), "{rel} does not contain {from:?}");
        std::fs::write(&p, text.replacen(from, to, 1)).expect("write");
    }
}

/// What the proxy saw: (service, action) → count.
#[derive(Clone, Default)]
pub struct Calls(Arc<Mutex<BTreeMap<(String, String), u64>>>);

impl Calls {
    pub fn total(&self) -> u64 {
        self.0.lock().unwrap().values().sum()
    }
    pub fn count(&self, service: &str) -> u64 {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|((s, _), _)| s == service)
            .map(|(_, n)| n)
            .sum()
    }
    pub fn writes(&self) -> Vec<(String, String)> {
        self.0
            .lock()
            .unwrap()
            .keys()
            .filter(|(_, a)| {
                !["Describe", "List", "Get", "Head"]
                    .iter()
                    .any(|p| a.starts_with(p))
            })
            .cloned()
            .collect()
    }
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// An HTTP proxy in front of an upstream endpoint that records every call and can
/// answer 501 for whole services, as LocalStack's community edition does.
pub struct Proxy {
    pub port: u16,
    pub calls: Calls,
    _task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// `upstream`: host:port to forward to (None: answer everything 501).
    pub async fn start(upstream: Option<u16>, unimplemented: &[&str]) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let calls = Calls::default();
        let unimplemented: Vec<String> = unimplemented.iter().map(|s| s.to_string()).collect();
        let c = calls.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let c = c.clone();
                let unimplemented = unimplemented.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, upstream, &unimplemented, &c).await;
                });
            }
        });
        Proxy {
            port,
            calls,
            _task: task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

struct Request {
    head: String,
    body: Vec<u8>,
}

async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Request>> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len = header(&head, "content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 65536];
                let n = sock.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return Ok(Some(Request { head, body }));
        }
        let mut chunk = [0u8; 65536];
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The service from the SigV4 credential scope, the action from the body, target
/// header or method.
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
    } else {
        let line = req.head.lines().next().unwrap_or_default();
        let method = line.split(' ').next().unwrap_or_default();
        match method {
            "GET" => "GetS3".to_string(),
            "HEAD" => "HeadS3".to_string(),
            other => format!("S3{other}"),
        }
    };
    (service, action)
}

async fn serve(
    mut sock: TcpStream,
    upstream: Option<u16>,
    unimplemented: &[String],
    calls: &Calls,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut sock, &mut buf).await? {
        let (service, action) = classify(&req);
        *calls
            .0
            .lock()
            .unwrap()
            .entry((service.clone(), action))
            .or_default() += 1;
        let response = match upstream {
            Some(port) if !unimplemented.contains(&service) => forward(port, &req).await?,
            _ => {
                let body = format!(
                    "{{\"__type\": \"InternalFailure\", \"message\": \"The API for service {service} is either not included in your current license plan or has not yet been emulated by LocalStack.\"}}"
                );
                format!(
                    "HTTP/1.1 501 Not Implemented\r\nContent-Type: application/json\r\nx-amzn-ErrorType: InternalFailure\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
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
        dechunk(&body)
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
    let is_head = req.head.starts_with("HEAD ");
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

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = find(b, b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[i + 2 + size + 2..];
    }
    out
}

/// SDK clients on the emulator, for checks and setup outside the tool.
pub async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await
}

/// Every resource of any kind that carries `stack:name = stack`, as "kind id" lines.
pub async fn tagged(endpoint: &str, stack: &str) -> Vec<String> {
    let conf = sdk(endpoint).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let f = || {
        aws_sdk_ec2::types::Filter::builder()
            .name("tag:stack:name")
            .values(stack)
            .build()
    };
    let mut out = Vec::new();
    for v in ec2
        .describe_vpcs()
        .filters(f())
        .send()
        .await
        .unwrap()
        .vpcs()
    {
        out.push(format!("vpc {}", v.vpc_id().unwrap()));
    }
    for s in ec2
        .describe_subnets()
        .filters(f())
        .send()
        .await
        .unwrap()
        .subnets()
    {
        out.push(format!("subnet {}", s.subnet_id().unwrap()));
    }
    for g in ec2
        .describe_security_groups()
        .filters(f())
        .send()
        .await
        .unwrap()
        .security_groups()
    {
        out.push(format!("security_group {}", g.group_id().unwrap()));
    }
    for g in ec2
        .describe_internet_gateways()
        .filters(f())
        .send()
        .await
        .unwrap()
        .internet_gateways()
    {
        out.push(format!("igw {}", g.internet_gateway_id().unwrap()));
    }
    for t in ec2
        .describe_route_tables()
        .filters(f())
        .send()
        .await
        .unwrap()
        .route_tables()
    {
        out.push(format!("route_table {}", t.route_table_id().unwrap()));
    }
    for t in ec2
        .describe_launch_templates()
        .filters(f())
        .send()
        .await
        .unwrap()
        .launch_templates()
    {
        out.push(format!(
            "launch_template {}",
            t.launch_template_id().unwrap()
        ));
    }
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let lbs = elb.describe_load_balancers().send().await.unwrap();
    let tgs = elb.describe_target_groups().send().await.unwrap();
    let arns: Vec<String> = lbs
        .load_balancers()
        .iter()
        .filter_map(|l| l.load_balancer_arn())
        .chain(
            tgs.target_groups()
                .iter()
                .filter_map(|t| t.target_group_arn()),
        )
        .map(str::to_string)
        .collect();
    if !arns.is_empty() {
        let tags = elb
            .describe_tags()
            .set_resource_arns(Some(arns))
            .send()
            .await
            .unwrap();
        for d in tags.tag_descriptions() {
            if d.tags()
                .iter()
                .any(|t| t.key() == Some("stack:name") && t.value() == Some(stack))
            {
                out.push(format!("elbv2 {}", d.resource_arn().unwrap()));
            }
        }
    }
    let asg = aws_sdk_autoscaling::Client::new(&conf);
    for g in asg
        .describe_auto_scaling_groups()
        .send()
        .await
        .unwrap()
        .auto_scaling_groups()
    {
        if g.tags()
            .iter()
            .any(|t| t.key() == Some("stack:name") && t.value() == Some(stack))
        {
            out.push(format!("asg {}", g.auto_scaling_group_name().unwrap()));
        }
    }
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    for name in ddb.list_tables().send().await.unwrap().table_names() {
        let d = ddb.describe_table().table_name(name).send().await.unwrap();
        let arn = d.table().and_then(|t| t.table_arn()).unwrap();
        let tags = ddb
            .list_tags_of_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap();
        if tags
            .tags()
            .iter()
            .any(|t| t.key() == "stack:name" && t.value() == stack)
        {
            out.push(format!("table {name}"));
        }
    }
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    for b in s3.list_buckets().send().await.unwrap().buckets() {
        let name = b.name().unwrap();
        if let Ok(t) = s3.get_bucket_tagging().bucket(name).send().await
            && t.tag_set()
                .iter()
                .any(|t| t.key() == "stack:name" && t.value() == stack)
        {
            out.push(format!("bucket {name}"));
        }
    }
    out
}

pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "command failed ({:?}):\n{}",
        o.status.code(),
        text(o)
    );
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
