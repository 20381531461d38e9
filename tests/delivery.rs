//! The app's way onto an instance: `stack build` produces a binary Amazon Linux 2023
//! can run, `stack up` ships it through the bucket with an instance role, and the
//! rendered user data, run in a sandbox root with a stand-in `systemctl`, fetches it
//! from the emulator's S3 and starts an app that answers `/health`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

/// Amazon Linux 2023's glibc.
const AL2023_GLIBC: (u32, u32) = (2, 34);

fn built_app(endpoint: &str, work: &Workdir) -> serde_json::Value {
    let o = stack(
        endpoint,
        &["build", &work.file("stacks/web.yaml"), "--json"],
    );
    assert_ok(&o);
    json(&o)
}

/// The highest `GLIBC_x.y` symbol version a binary needs, from its dynamic symbols.
fn highest_glibc(bin: &Path) -> (u32, u32) {
    let out = Command::new("objdump")
        .arg("-T")
        .arg(bin)
        .output()
        .expect("objdump (binutils) runs");
    assert!(out.status.success(), "objdump failed on {}", bin.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut versions: Vec<(u32, u32)> = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .collect();
    versions.sort();
    *versions
        .last()
        .expect("a glibc-linked binary names GLIBC versions")
}

/// Every `stack` command builds the app in one per-user directory, whatever the
/// caller's `CARGO_TARGET_DIR` and working directory: a second build from elsewhere
/// compiles nothing.
#[test]
fn the_app_is_built_in_one_place_whoever_asks() {
    let work = Workdir::new();
    work.use_real_app();
    let file = work.file("stacks/web.yaml");
    let build = |dir: &Path, target: Option<&Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_stack"));
        c.args(["build", &file, "--json"]).current_dir(dir);
        match target {
            Some(t) => c.env("CARGO_TARGET_DIR", t),
            None => c.env_remove("CARGO_TARGET_DIR"),
        };
        c.output().unwrap()
    };
    let first = build(&root(), None);
    assert_ok(&first);
    let elsewhere = tempfile::tempdir().unwrap();
    let second = build(elsewhere.path(), Some(&elsewhere.path().join("target")));
    assert_ok(&second);
    assert_eq!(json(&first)["path"], json(&second)["path"]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!stderr.contains("Compiling"), "rebuilt:\n{stderr}");
    assert!(
        !elsewhere.path().join("target").exists(),
        "built in the caller's directory"
    );
}

#[test]
fn the_app_build_runs_on_amazon_linux_2023() {
    let work = Workdir::new();
    work.use_real_app();
    // No AWS call is needed to build; an unreachable endpoint proves it.
    let built = built_app("http://127.0.0.1:9", &work);
    let bin = PathBuf::from(built["path"].as_str().unwrap());
    let bytes = std::fs::read(&bin).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF");
    assert_eq!(
        u16::from_le_bytes([bytes[18], bytes[19]]),
        0x3e,
        "an x86_64 binary"
    );
    let glibc = highest_glibc(&bin);
    assert!(
        glibc <= AL2023_GLIBC,
        "{} needs GLIBC_{}.{}; Amazon Linux 2023 has {}.{}",
        bin.display(),
        glibc.0,
        glibc.1,
        AL2023_GLIBC.0,
        AL2023_GLIBC.1
    );
    let sha = built["sha256"].as_str().unwrap();
    assert_eq!(
        built["key"].as_str().unwrap(),
        format!("artifacts/{sha}/stack-app")
    );
}

/// Kills the app the sandboxed user data started, whatever the test's outcome.
struct Sandbox {
    root: tempfile::TempDir,
}

impl Sandbox {
    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.root.path().join("run/stack-app.service.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }

    fn file(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root.path().join(rel)).unwrap_or_default()
    }

    /// Runs the user data as cloud-init would: bash, as the only argument.
    fn boot(&self, script: &Path, aws_cli: &Path) -> std::process::Output {
        let stub_dir = root().join("localstack/instance");
        let path = std::env::join_paths(
            [stub_dir, aws_cli.parent().unwrap().to_path_buf()]
                .into_iter()
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
        )
        .unwrap();
        Command::new("bash")
            .arg(script)
            .env("STACK_ROOT", self.root.path())
            .env("PATH", path)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            // Off EC2 the app must not wait on instance metadata; point it nowhere.
            .env("APP_IMDS_ENDPOINT", "http://127.0.0.1:9")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET on loopback: (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split_whitespace().nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

#[tokio::test(flavor = "multi_thread")]
async fn user_data_installs_the_shipped_app_and_it_answers() {
    let moto = Moto::start();
    let work = Workdir::new();
    work.use_real_app();
    let port = free_port();
    for _ in 0..2 {
        work.edit("stacks/web.yaml", "port: 8080", &format!("port: {port}"));
    }
    let file = work.file("stacks/web.yaml");
    assert_ok(&stack(&moto.url(), &["up", &file, "--yes"]));

    let conf = sdk(&moto.url()).await;
    // The template the instances boot from, as EC2 holds it.
    let data = template_data(&conf, "directory-web").await;
    use base64::Engine as _;
    let user_data = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(data.user_data().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(!user_data.contains("{{"), "placeholders left:\n{user_data}");
    let profile = data.iam_instance_profile().and_then(|p| p.arn()).unwrap();
    assert!(
        profile
            .ends_with(":instance-profile/stack/directory/us-east-1/directory-us-east-1-instance"),
        "{profile}"
    );

    // The artifact in the bucket is the build, under its digest.
    let built = built_app(&moto.url(), &work);
    let key = built["key"].as_str().unwrap();
    assert!(user_data.contains(key), "user data names {key}");
    assert_eq!(
        artifact_keys(&conf, "directory-photos-demo").await,
        vec![key]
    );

    // First boot: fetched from the emulator's S3, installed, unit written, started.
    let sandbox = Sandbox {
        root: tempfile::tempdir().unwrap(),
    };
    let script = sandbox.root.path().join("user-data.sh");
    std::fs::write(&script, &user_data).unwrap();
    let aws_cli = PathBuf::from(
        String::from_utf8(
            Command::new("bash")
                .arg(root().join("localstack/moto.sh"))
                .arg("aws")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim(),
    );
    let first = sandbox.boot(&script, &aws_cli);
    let log = sandbox.file("var/log/stack-userdata.log");
    assert!(
        first.status.success(),
        "user data failed:\n{log}\n{}",
        sandbox.file("var/log/stack-app.service.log")
    );
    assert!(log.contains("installed build"), "{log}");
    assert!(
        log.contains(&format!("app answers on port {port}")),
        "{log}"
    );
    let unit = sandbox.file("etc/systemd/system/stack-app.service");
    for line in [
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "DynamicUser=yes",
    ] {
        assert!(unit.contains(line), "unit lacks {line}:\n{unit}");
    }
    let env = sandbox.file("etc/stack-app/env");
    assert!(env.contains("APP_TABLE=directory-employees"), "{env}");
    assert!(
        env.contains(&format!("APP_ENDPOINT_URL={}", moto.url())),
        "{env}"
    );
    let calls = sandbox.file("systemctl.calls");
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            "daemon-reload",
            "enable stack-app.service",
            "restart stack-app.service"
        ]
    );

    // The app it started answers, and reaches the table through the emulator.
    let (status, body) = get(port, "/health").expect("the app answers");
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(port, "/api/employees").expect("the app answers");
    assert_eq!(status, 200, "{body}");
    let pid = sandbox.pid().expect("the stub recorded the app's pid");

    // Second run (a reboot, or cloud-init run again): nothing fetched, nothing restarted.
    let second = sandbox.boot(&script, &aws_cli);
    let log = sandbox.file("var/log/stack-userdata.log");
    assert!(second.status.success(), "second run failed:\n{log}");
    assert!(log.contains("already installed"), "{log}");
    assert_eq!(log.matches("installed build").count(), 1, "{log}");
    assert_eq!(
        sandbox.file("systemctl.calls").lines().last(),
        Some("start stack-app.service")
    );
    assert_eq!(sandbox.pid(), Some(pid), "the app was restarted");
    assert_eq!(get(port, "/health").map(|r| r.0), Some(200));
}
