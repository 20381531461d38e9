//! `stack up --local`: the demo stack served for real on this machine. The emulator's
//! instances run as processes from their own user data (the real app, fetched from
//! the emulator's S3), behind HAProxy configured from the live listener rules, and
//! CPU target tracking scales them. From `up --local` to `down --local`.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};
use support::*;

const WEB: &str = "stacks/web.yaml";

/// One HTTP/1.1 exchange on loopback: (status, head, body).
fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut s = std::net::TcpStream::connect(authority).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn local_state(endpoint: &str, file: &str, env: &[(&str, String)]) -> serde_json::Value {
    let mut c = stack_command(endpoint, &["status", file, "--local", "--json"]);
    for (k, v) in env {
        c.env(k, v);
    }
    json(&c.output().unwrap())["local"].clone()
}

/// Waits up to `secs` for `cond` on the local state; panics with the last state.
fn wait_state(
    what: &str,
    secs: u64,
    mut read: impl FnMut() -> serde_json::Value,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = read();
        if cond(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {secs}s: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn running(s: &serde_json::Value, service: &str) -> Vec<String> {
    s["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["service"] == service && i["state"] == "running")
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn up_local_serves_round_robin_path_rules_data_failover_and_scaling() {
    let moto = Moto::start();
    let w = Workdir::new();
    w.use_real_app();
    // The demo's stress switch on for web, and a target its stress run crosses.
    w.edit(
        WEB,
        "    scaling: { min: 2, max: 6, desired: 2, cpu_target: 50 }",
        "    scaling: { min: 2, max: 4, desired: 2, cpu_target: 20 }\n    stress: true",
    );
    let file = w.file(WEB);
    let http_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let aws_cli = std::process::Command::new(root().join("localstack/moto.sh"))
        .arg("aws")
        .output()
        .unwrap();
    let aws_dir = std::path::PathBuf::from(String::from_utf8_lossy(&aws_cli.stdout).trim())
        .parent()
        .unwrap()
        .to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(aws_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let env: Vec<(&str, String)> = vec![
        ("STACK_LOCAL_DIR", w.file("local")),
        ("STACK_LOCAL_PORT_OFFSET", (http_port - 80).to_string()),
        ("PATH", path.to_string_lossy().into_owned()),
    ];
    let run = |args: &[&str]| {
        let mut c = stack_command(&moto.url(), args);
        for (k, v) in &env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let state = || local_state(&moto.url(), &file, &env);

    let up = run(&["up", &file, "--yes", "--local", "--ready-timeout", "240"]);
    assert_ok(&up);
    let base = format!("http://127.0.0.1:{http_port}");
    assert!(
        text(&up).contains(&format!("Serving locally at {base}/")),
        "{}",
        text(&up)
    );
    let s = state();
    let web = running(&s, "web");
    let admin = running(&s, "admin");
    assert_eq!((web.len(), admin.len()), (2, 1), "{s:#}");

    // Round robin: both web instances answer, each with its own id and zone.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let (code, _, body) = http("GET", &format!("{base}/info?format=json"), &[], "");
        assert_eq!(code, 200, "{body}");
        let info: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            info["availability_zone"]
                .as_str()
                .unwrap()
                .starts_with("us-east-1"),
            "{info}"
        );
        seen.insert(info["instance_id"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, web.iter().cloned().collect(), "round robin over web");

    // The path rule: /admin reaches the admin instance only.
    let token = String::from_utf8(run(&["token", &file]).stdout).unwrap();
    let token = token.trim();
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("admin:{token}")
        )
    );
    for _ in 0..3 {
        let (code, _, body) = http(
            "GET",
            &format!("{base}/admin"),
            &[("Authorization", &basic)],
            "",
        );
        assert_eq!(code, 200, "{body}");
        assert!(
            body.contains(&admin[0]),
            "the admin page comes from {}: {body}",
            admin[0]
        );
    }

    // The data path: a create through the load balancer, read back through it.
    let bearer = format!("Bearer {token}");
    let (code, head, body) = http(
        "POST",
        &format!("{base}/api/employees"),
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        r#"{"full_name":"Ada Lovelace","location":"London","job_title":"Analyst"}"#,
    );
    assert_eq!(code, 201, "{head}\n{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = created["id"].as_str().unwrap();
    let (code, _, body) = http("GET", &format!("{base}/api/employees/{id}"), &[], "");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("Ada Lovelace"), "{body}");

    // A crashed instance: HAProxy stops sending to it at once, the group replaces it.
    let victim = s["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == web[0].as_str())
        .unwrap()
        .clone();
    let pid = victim["pid"].as_u64().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    for _ in 0..6 {
        let (code, _, body) = http("GET", &format!("{base}/info?format=json"), &[], "");
        assert_eq!(code, 200, "served while {} is dead: {body}", web[0]);
        assert!(!body.contains(&web[0]), "{body}");
    }
    let s = wait_state("the dead instance replaced", 120, &state, |s| {
        let r = running(s, "web");
        r.len() == 2 && !r.contains(&web[0])
    });
    let web = running(&s, "web");

    // Stress on one instance pushes web's average CPU over its target: it grows,
    // and shrinks back (draining first) once the stress ends.
    let (code, _, body) = http("POST", &format!("{base}/info/stress?seconds=8"), &[], "");
    assert!(code == 200 || code == 202, "{code} {body}");
    let s = wait_state("web scaled out", 120, &state, |s| {
        running(s, "web").len() >= 3
    });
    assert!(
        s["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["service"] == "web" && g["desired"].as_i64() >= Some(3)),
        "{s:#}"
    );
    wait_state("web scaled back in", 180, &state, |s| {
        running(s, "web").len() == 2
            && s["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["service"] == "web" && g["desired"] == 2)
    });
    let _ = web;

    // Down stops everything it started: no process, no port.
    let ports: Vec<u16> = state()["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["port"].as_u64().map(|p| p as u16))
        .collect();
    let supervisor = state()["supervisor_pid"].as_u64().unwrap();
    assert_ok(&run(&["down", &file, "--yes", "--force", "--local"]));
    assert!(!std::path::Path::new(&format!("/proc/{supervisor}")).exists());
    assert!(!port_open(http_port), "HAProxy still listens");
    for p in ports {
        assert!(!port_open(p), "an instance still listens on {p}");
    }
    assert!(tagged(&moto.url(), "directory").await.is_empty());
}
