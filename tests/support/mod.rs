//! Test support: a real moto server per test, the `stack` binary driven end to end (or
//! in the background, to kill or interrupt it), a recording and fault-injecting proxy
//! ([`proxy`]), and SDK clients for checking AWS out of band.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

pub fn free_port() -> u16 {
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
            // AWS's managed policies exist in every account; moto loads them on request.
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
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

/// The `stack` binary against `endpoint` with test credentials, ready to run.
pub fn stack_command(endpoint: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stack"));
    // The endpoint through the environment: commands that make no AWS call take no
    // --endpoint-url flag.
    c.args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env("NO_COLOR", "1")
        .env("STACK_PATIENCE_SCALE", "0.02")
        .stdin(Stdio::null());
    c
}

/// Runs the `stack` binary against `endpoint` with test credentials.
pub fn stack(endpoint: &str, args: &[&str]) -> Output {
    stack_command(endpoint, args).output().expect("run stack")
}

/// A `stack` run in the background whose output can be watched while it runs.
pub struct Running {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// Starts the `stack` binary in the background, its output captured.
pub fn spawn_stack(endpoint: &str, args: &[&str]) -> Running {
    let mut child = stack_command(endpoint, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stack");
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    fn pump(
        mut from: impl std::io::Read + Send + 'static,
        to: Arc<Mutex<Vec<u8>>>,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                to.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    }
    let readers = vec![
        pump(child.stdout.take().expect("stdout"), stdout.clone()),
        pump(child.stderr.take().expect("stderr"), stderr.clone()),
    ];
    Running {
        child,
        stdout,
        stderr,
        readers,
    }
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything printed so far, stdout then stderr.
    pub fn text(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.stdout.lock().unwrap()),
            String::from_utf8_lossy(&self.stderr.lock().unwrap())
        )
    }

    /// Sends a signal (`INT`, `KILL`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} {} failed", self.pid());
    }

    /// Waits (up to two minutes) for the run to end.
    pub fn wait(mut self) -> Output {
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("stack did not finish within two minutes:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Output {
            status,
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }
}

/// Polls `cond` until it holds, failing after `what` took a minute.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// ELF `e_machine` values.
pub const X86_64: u16 = 62;
pub const AARCH64: u16 = 183;

/// A file whose ELF header says "64-bit little-endian executable for `machine`",
/// followed by `rest`: what the engine reads to tell a binary's architecture.
pub fn elf_stand_in(machine: u16, rest: &[u8]) -> Vec<u8> {
    let mut h = b"\x7fELF\x02\x01\x01".to_vec();
    h.resize(16, 0);
    h.extend_from_slice(&2u16.to_le_bytes()); // e_type: executable
    h.extend_from_slice(&machine.to_le_bytes());
    h.resize(64, 0);
    h.extend_from_slice(rest);
    h
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
        // The example stacks build the app for Amazon Linux (minutes, once); engine
        // tests only need some Linux binary to ship, so they get a small stand-in.
        // tests/delivery.rs builds and boots the real one.
        let stand_in = dir.path().join("bin/stack-app");
        std::fs::create_dir_all(stand_in.parent().expect("parent")).expect("mkdir");
        std::fs::write(
            &stand_in,
            elf_stand_in(X86_64, b"stand-in for the app binary"),
        )
        .expect("write");
        let web = dir.path().join("stacks/web.yaml");
        let text = std::fs::read_to_string(&web).expect("read");
        std::fs::write(
            &web,
            text.replace(
                "app: { build: ../app }",
                "app: { artifact: ../bin/stack-app }",
            ),
        )
        .expect("write");
        Workdir { dir }
    }

    /// The real app package in the checkout, for tests that build it.
    pub fn use_real_app(&self) {
        let app = root().join("app");
        self.edit(
            "stacks/web.yaml",
            "app: { artifact: ../bin/stack-app }",
            &format!("app: {{ build: \"{}\" }}", app.display()),
        );
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

#[allow(dead_code)]
pub mod local;
pub mod proxy;
pub mod real_aws;
#[allow(unused_imports)]
pub use proxy::{Calls, Faults, Hold, Linger, Proxy, RealAws, RefreshScript, When};

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

/// An S3 client on the emulator (path-style addressing, as a custom endpoint needs).
pub fn s3(conf: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(conf)
            .force_path_style(true)
            .build(),
    )
}

/// The launch template a group launches from now: `<stack>-<service>-<digest>`, for
/// `prefix` `<stack>-<service>` (a template is made per build).
pub async fn template_name(conf: &aws_config::SdkConfig, prefix: &str) -> String {
    let g = aws_sdk_autoscaling::Client::new(conf)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(prefix)
        .send()
        .await
        .unwrap();
    let name = g.auto_scaling_groups()[0]
        .launch_template()
        .and_then(|t| t.launch_template_name())
        .unwrap()
        .to_string();
    assert!(name.starts_with(&format!("{prefix}-")), "{name}");
    name
}

/// What the launch template of group `group` (`<stack>-<service>`) holds, as EC2
/// reports it.
pub async fn template_data(
    conf: &aws_config::SdkConfig,
    group: &str,
) -> aws_sdk_ec2::types::ResponseLaunchTemplateData {
    let name = template_name(conf, group).await;
    let v = aws_sdk_ec2::Client::new(conf)
        .describe_launch_template_versions()
        .launch_template_name(&name)
        .versions("$Default")
        .send()
        .await
        .unwrap();
    v.launch_template_versions()[0]
        .launch_template_data()
        .unwrap()
        .clone()
}

/// `plan --detailed-exitcode` says AWS matches the file.
pub fn assert_converged(endpoint: &str, file: &str) {
    let o = stack(endpoint, &["plan", file, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// A launch template's default user data, decoded.
pub async fn template_user_data(conf: &aws_config::SdkConfig, name: &str) -> String {
    use base64::Engine as _;
    let data = template_data(conf, name).await;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(data.user_data().unwrap_or_default())
            .unwrap(),
    )
    .unwrap()
}

/// The keys under `artifacts/` in a bucket.
pub async fn artifact_keys(conf: &aws_config::SdkConfig, bucket: &str) -> Vec<String> {
    let listed = s3(conf)
        .list_objects_v2()
        .bucket(bucket)
        .prefix("artifacts/")
        .send()
        .await
        .unwrap();
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
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
    for e in ec2
        .describe_vpc_endpoints()
        .filters(f())
        .send()
        .await
        .unwrap()
        .vpc_endpoints()
    {
        // moto keeps deleted endpoints, as AWS does for a while.
        if e.state().map(|s| s.as_str()) != Some("deleted") {
            out.push(format!("vpc_endpoint {}", e.vpc_endpoint_id().unwrap()));
        }
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
    let s3 = s3(&conf);
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
    let iam = aws_sdk_iam::Client::new(&conf);
    let owned = |tags: &[aws_sdk_iam::types::Tag]| {
        tags.iter()
            .any(|t| t.key() == "stack:name" && t.value() == stack)
    };
    for r in iam.list_roles().send().await.unwrap().roles() {
        let tags = iam
            .list_role_tags()
            .role_name(r.role_name())
            .send()
            .await
            .unwrap();
        if owned(tags.tags()) {
            out.push(format!("iam_role {}", r.role_name()));
        }
    }
    for listed in iam
        .list_instance_profiles()
        .send()
        .await
        .unwrap()
        .instance_profiles()
    {
        // List calls carry no tags on AWS (nor through the real-AWS proxy).
        let got = iam
            .get_instance_profile()
            .instance_profile_name(listed.instance_profile_name())
            .send()
            .await
            .unwrap();
        let p = got.instance_profile().unwrap();
        if owned(p.tags()) {
            out.push(format!(
                "iam_instance_profile {}",
                p.instance_profile_name()
            ));
        }
    }
    let ssm = aws_sdk_ssm::Client::new(&conf);
    // moto holds AWS's public parameters too: list only the stacks' path.
    let mut pages = ssm
        .get_parameters_by_path()
        .path("/stack")
        .recursive(true)
        .into_paginator()
        .send();
    let mut names = Vec::new();
    while let Some(page) = pages.next().await {
        for p in page.unwrap().parameters() {
            names.push(p.name().unwrap_or_default().to_string());
        }
    }
    for name in &names {
        let tags = ssm
            .list_tags_for_resource()
            .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .send()
            .await
            .unwrap();
        if tags
            .tag_list()
            .iter()
            .any(|t| t.key() == "stack:name" && t.value() == stack)
        {
            out.push(format!("ssm_parameter {name}"));
        }
    }
    out
}

/// An SSM parameter's value, decrypted, or None when there is none of that name.
pub async fn parameter_value(endpoint: &str, name: &str) -> Option<(String, i64)> {
    let ssm = aws_sdk_ssm::Client::new(&sdk(endpoint).await);
    let got = ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .ok()?;
    let p = got.parameter()?;
    Some((p.value()?.to_string(), p.version()))
}

/// IAM returns policy documents URL-encoded.
pub fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
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

/// Every resource carrying `stack:name = stack`, as (`stack:address`, id) pairs, read
/// through the SDK: VPCs, subnets, gateways, route tables, security groups, launch
/// templates, load balancers, target groups, Auto Scaling groups, tables and buckets.
/// A resource created twice shows up as its address twice.
pub async fn owned(endpoint: &str, stack: &str) -> Vec<(String, String)> {
    let conf = sdk(endpoint).await;
    let mut out = Vec::new();
    let address = |tags: &mut dyn Iterator<Item = (&str, &str)>| {
        let tags: Vec<(&str, &str)> = tags.collect();
        if !tags.contains(&("stack:name", stack)) {
            return None;
        }
        tags.iter()
            .find(|(k, _)| *k == "stack:address")
            .map(|(_, v)| v.to_string())
    };
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let f = || {
        aws_sdk_ec2::types::Filter::builder()
            .name("tag:stack:name")
            .values(stack)
            .build()
    };
    macro_rules! ec2_kind {
        ($call:ident, $list:ident, $id:ident) => {
            for r in ec2.$call().filters(f()).send().await.unwrap().$list() {
                let mut tags = r
                    .tags()
                    .iter()
                    .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()));
                if let Some(a) = address(&mut tags) {
                    out.push((a, r.$id().unwrap_or_default().to_string()));
                }
            }
        };
    }
    ec2_kind!(describe_vpcs, vpcs, vpc_id);
    ec2_kind!(describe_subnets, subnets, subnet_id);
    ec2_kind!(
        describe_internet_gateways,
        internet_gateways,
        internet_gateway_id
    );
    ec2_kind!(describe_route_tables, route_tables, route_table_id);
    ec2_kind!(describe_security_groups, security_groups, group_id);
    ec2_kind!(
        describe_launch_templates,
        launch_templates,
        launch_template_id
    );
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
    for chunk in arns.chunks(20) {
        let tags = elb
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        for d in tags.tag_descriptions() {
            let mut tags = d
                .tags()
                .iter()
                .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()));
            if let Some(a) = address(&mut tags) {
                out.push((a, d.resource_arn().unwrap_or_default().to_string()));
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
        let mut tags = g
            .tags()
            .iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()));
        if let Some(a) = address(&mut tags) {
            out.push((
                a,
                g.auto_scaling_group_name().unwrap_or_default().to_string(),
            ));
        }
    }
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    for name in ddb.list_tables().send().await.unwrap().table_names() {
        let d = ddb.describe_table().table_name(name).send().await.unwrap();
        let arn = d.table().and_then(|t| t.table_arn()).unwrap_or_default();
        let tags = ddb
            .list_tags_of_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap();
        let mut tags = tags.tags().iter().map(|t| (t.key(), t.value()));
        if let Some(a) = address(&mut tags) {
            out.push((a, name.clone()));
        }
    }
    let s3 = s3(&conf);
    for b in s3.list_buckets().send().await.unwrap().buckets() {
        let name = b.name().unwrap_or_default();
        if let Ok(t) = s3.get_bucket_tagging().bucket(name).send().await {
            let mut tags = t.tag_set().iter().map(|t| (t.key(), t.value()));
            if let Some(a) = address(&mut tags) {
                out.push((a, name.to_string()));
            }
        }
    }
    out.sort();
    out
}

/// The lock table `up` and `down` create on first use (see src/lock.rs), made out of
/// band so a test's first CreateTable is the stack's own.
pub async fn create_lock_table(endpoint: &str) {
    use aws_sdk_dynamodb::types::*;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk(endpoint).await);
    ddb.create_table()
        .table_name("stack_locks")
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("stack")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("stack")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

/// The stack's lock item (see src/lock.rs), if any, as attribute → value text.
pub async fn lock_item(endpoint: &str, stack: &str) -> Option<BTreeMap<String, String>> {
    let conf = sdk(endpoint).await;
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    let r = ddb
        .get_item()
        .table_name("stack_locks")
        .key(
            "stack",
            aws_sdk_dynamodb::types::AttributeValue::S(stack.to_string()),
        )
        .consistent_read(true)
        .send()
        .await
        .ok()?;
    r.item().map(|item| {
        item.iter()
            .map(|(k, v)| {
                let v = v.as_s().or_else(|_| v.as_n()).cloned().unwrap_or_default();
                (k.clone(), v)
            })
            .collect()
    })
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that failed half-way leaves no stray run behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
