//! `stack up --local`: the demo stack served for real on this machine. The emulator's
//! instances run as processes from their own user data (the real app, fetched from
//! the emulator's S3), behind HAProxy configured from the live listener rules, and
//! CPU target tracking scales them. From `up --local` to `down --local`.

mod support;

use support::local::*;
use support::*;

const WEB: &str = "stacks/web.yaml";

#[tokio::test(flavor = "multi_thread")]
async fn up_local_serves_round_robin_path_rules_data_failover_and_scaling() {
    let moto = Moto::start();
    let w = Workdir::new();
    let local = LocalRun::new(&moto, &w);
    // The demo's stress switch on for web, and a target its stress run crosses even
    // on a machine busy with other tests.
    w.edit(
        WEB,
        "    scaling: { min: 2, max: 6, desired: 2, cpu_target: 50 }",
        "    scaling: { min: 2, max: 4, desired: 2, cpu_target: 5 }\n    stress: true",
    );
    let file = local.file.clone();
    let http_port = local.http_port;
    let run = |args: &[&str]| local.run(args);
    let state = || local.state();
    let up = run(&["up", &file, "--yes", "--local", "--ready-timeout", "240"]);
    assert_ok(&up);
    let base = local.base();
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
    let s = local.wait_for("the dead instance replaced", 120, |s| {
        let r = running(s, "web");
        r.len() == 2 && !r.contains(&web[0])
    });
    let web = running(&s, "web");

    // Stress on one instance pushes web's average CPU over its target: it grows,
    // and shrinks back (draining first) once the stress ends.
    let (code, _, body) = http("POST", &format!("{base}/info/stress?seconds=20"), &[], "");
    assert!(code == 200 || code == 202, "{code} {body}");
    let s = local.wait_for("web scaled out", 120, |s| running(s, "web").len() >= 3);
    assert!(
        s["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["service"] == "web" && g["desired"].as_i64() >= Some(3)),
        "{s:#}"
    );
    local.wait_for("web scaled back in", 180, |s| {
        running(s, "web").len() == 2
            && s["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["service"] == "web" && g["desired"] == 2)
    });

    // A new build rolls the local instances as on AWS (the engine's own roll here),
    // and `up` sees it answer through HAProxy: the build check runs for real.
    let built = json(&run(&["build", &file, "--json"]));
    let mut next = std::fs::read(built["path"].as_str().unwrap()).unwrap();
    next.extend_from_slice(b"\0another build"); // trailing bytes: same program, new digest
    std::fs::write(w.path("bin/next-app"), &next).unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&next))
    };
    let app_line = std::fs::read_to_string(w.path(WEB))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("app:"))
        .unwrap()
        .to_string();
    w.edit(WEB, &app_line, "app: { artifact: ../bin/next-app }");
    let up = run(&["up", &file, "--yes", "--local", "--app-url", &base]);
    assert_ok(&up);
    assert!(
        text(&up).contains(&format!("came from build {}", &sha[..12])),
        "{}",
        text(&up)
    );
    let s = local.state();
    let now = running(&s, "web");
    assert_eq!(now.len(), 2, "{s:#}");
    assert!(
        now.iter().all(|i| !web.contains(i)),
        "rolled: {web:?} → {now:?}"
    );

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
