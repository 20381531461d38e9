//! The `stack-app` binary itself: configuration errors, JSON logs, and
//! shutdown on SIGTERM / SIGINT.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::closed_endpoint;
use support::moto::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_stack-app");

/// Runs the binary with only `vars` set; returns (exit code, stderr).
fn run_with(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run stack-app");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn missing_config_exits_2_with_one_line() {
    let (code, err) = run_with(&[]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("APP_TABLE") && err.contains("required"),
        "{err}"
    );

    let (code, err) = run_with(&[("APP_TABLE", "employees")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("APP_BUCKET"), "{err}");

    // No write credential: refused at start rather than serving open writes.
    let (code, err) = run_with(&[("APP_TABLE", "t"), ("APP_BUCKET", "b")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("APP_WRITE_TOKEN_VERIFIER"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn invalid_config_exits_2_naming_the_variable() {
    for (var, value) in [
        ("APP_PORT", "99999"),
        ("APP_BIND", "not-an-ip"),
        ("APP_CACHE_TTL_SECS", "soon"),
        ("APP_STRESS_ENABLED", "perhaps"),
        ("APP_ENDPOINT_URL", "localhost:4566"),
        ("APP_IMDS_ENDPOINT", "ftp://x"),
    ] {
        let (code, err) = run_with(&[
            ("APP_TABLE", "t"),
            ("APP_BUCKET", "b"),
            ("APP_WRITE_TOKEN_VERIFIER", ".stack/write-token.sha256"),
            (var, value),
        ]);
        assert_eq!(code, Some(2), "{var}={value}: {err}");
        assert!(
            err.starts_with("stack-app: configuration error: ") && err.contains(var),
            "{err}"
        );
        assert!(err.contains(value), "the bad value is quoted: {err}");
    }
}

/// Starts the binary on a free port (no AWS needed), waits for `/health`,
/// sends `signal`, and checks it exits 0 having logged JSON lines.
async fn stops_cleanly_on(signal: &str) {
    let port = free_port();
    let port_s = port.to_string();
    let (endpoint, imds) = (closed_endpoint(), closed_endpoint());
    let mut child = tokio::process::Command::new(BIN)
        .env_clear()
        .envs([
            ("APP_TABLE", "t"),
            ("APP_BUCKET", "b"),
            ("APP_WRITE_TOKEN_VERIFIER", ".stack/write-token.sha256"),
            ("APP_PORT", port_s.as_str()),
            ("APP_BIND", "127.0.0.1"),
            ("APP_ENDPOINT_URL", endpoint.as_str()),
            ("APP_IMDS_ENDPOINT", imds.as_str()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn stack-app");

    let deadline = Instant::now() + Duration::from_secs(30);
    let base = format!("http://127.0.0.1:{port}");
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stack-app did not start listening"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "stack-app exited early"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = support::http::get(&format!("{base}/health")).await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    // The build it reports is the digest of the file it runs from, as `sha256sum` says.
    let sum = Command::new("sha256sum").arg(BIN).output().unwrap();
    let digest = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(digest.len(), 64);
    assert_eq!(r.header("x-app-build").as_deref(), Some(digest.as_str()));
    // As the load balancer sends it: the id is echoed and carried by the log line.
    let trace = "Root=1-674b1c2d-0123456789abcdef01234567";
    let r = support::http::send(
        "GET",
        &format!("{base}/health"),
        &[("x-amzn-trace-id", trace)],
        "",
    )
    .await;
    assert_eq!(r.header("x-request-id").as_deref(), Some(trace));

    let pid = child.id().expect("pid").to_string();
    let ok = Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {signal} failed");
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("stack-app did not exit after the signal")
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["ts"].is_string() && l["level"].is_string() && l["msg"].is_string())
    );
    let req = lines
        .iter()
        .find(|l| l["msg"] == "request")
        .expect("a request line");
    assert_eq!(req["method"], "GET");
    assert_eq!(req["route"], "/health");
    assert_eq!(req["status"], 200);
    assert!(req["duration_ms"].is_number());
    assert!(
        lines
            .iter()
            .any(|l| l["msg"] == "request" && l["request_id"] == trace),
        "{stdout}"
    );
    // `ts`, `level`, `msg` lead every line, for grep and eyes.
    assert!(
        stdout.lines().all(|l| l.starts_with("{\"ts\":")),
        "{stdout}"
    );
    let name = if signal == "-TERM" {
        "SIGTERM"
    } else {
        "SIGINT"
    };
    assert!(lines.iter().any(|l| l["signal"] == name), "{stdout}");
    assert_eq!(lines.last().unwrap()["msg"], "stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly() {
    stops_cleanly_on("-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_cleanly() {
    stops_cleanly_on("-INT").await;
}
