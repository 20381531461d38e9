//! Safe deploys: a new template rolls the fleet launching before it terminates, `up`
//! waits for the roll and fails with AWS's reason when it fails, and the template
//! digest is recorded only after success. AWS's instance refresh is scripted by the
//! proxy (moto lacks it; tests/edges.rs covers the emulator's answer).

mod support;

use support::*;

const WEB: &str = "stacks/web.yaml";

fn state(s: &str, pct: u32, reason: &str) -> (String, u32, String) {
    (s.to_string(), pct, reason.to_string())
}

/// Up, then a template change (a new instance type) under a scripted refresh.
async fn deploy(script: RefreshScript) -> (Moto, Proxy, Workdir, std::process::Output) {
    let moto = Moto::start();
    let aws = Proxy::with_faults(
        Some(moto.port),
        Faults {
            refresh: Some(script),
            ..Faults::real()
        },
    )
    .await;
    let w = Workdir::new();
    let file = w.file(WEB);
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    w.edit(WEB, "type: t3.micro", "type: t3.small");
    let up = stack(&aws.url(), &["up", &file, "--yes"]);
    (moto, aws, w, up)
}

fn roll_pending(aws: &Proxy, w: &Workdir) -> bool {
    let plan = json(&stack(&aws.url(), &["plan", &w.file(WEB), "--json"]));
    plan["changes"].as_array().unwrap().iter().any(|c| {
        c["address"] == "autoscaling_group.web"
            && c["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["name"] == "launch_template_digest")
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_roll_launches_before_it_terminates_and_up_waits_for_it() {
    let (moto, aws, w, up) = deploy(RefreshScript {
        start_errors: vec![],
        states: vec![
            state("Pending", 0, ""),
            state("InProgress", 50, ""),
            state("Successful", 100, ""),
        ],
        ..Default::default()
    })
    .await;
    assert_ok(&up);
    let starts = aws.refresh_starts();
    assert_eq!(starts.len(), 1, "one refresh, for web: {starts:?}");
    for body in &starts {
        for pref in [
            "Preferences.MinHealthyPercentage=100",
            "Preferences.MaxHealthyPercentage=200",
            "Preferences.SkipMatching=true",
            "Preferences.InstanceWarmup=120",
            // Auto rollback, which AWS accepts only with a desired configuration on a
            // numbered version (the proxy's real-AWS rule).
            "Preferences.AutoRollback=true",
            "DesiredConfiguration.LaunchTemplate.LaunchTemplateId=lt-",
            "DesiredConfiguration.LaunchTemplate.Version=1",
        ] {
            assert!(body.contains(pref), "{pref} missing from {body}");
        }
    }
    assert!(text(&up).contains("50% done"), "{}", text(&up));
    assert!(
        !roll_pending(&aws, &w),
        "the digest is recorded after success"
    );
    // The group ends on the new template, at its numbered version, and the old
    // template is gone.
    let conf = sdk(&moto.url()).await;
    let name = template_name(&conf, "directory-web").await;
    let templates = aws_sdk_ec2::Client::new(&conf)
        .describe_launch_templates()
        .send()
        .await
        .unwrap();
    let web: Vec<&str> = templates
        .launch_templates()
        .iter()
        .filter_map(|t| t.launch_template_name())
        .filter(|n| n.starts_with("directory-web-"))
        .collect();
    assert_eq!(web, [name.as_str()], "one template per service remains");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_roll_fails_up_with_the_reason_and_stays_pending() {
    let (_moto, aws, w, up) = deploy(RefreshScript {
        start_errors: vec![],
        states: vec![
            state("InProgress", 20, ""),
            state(
                "RollbackSuccessful",
                0,
                "Instances failed to pass health checks",
            ),
        ],
        ..Default::default()
    })
    .await;
    assert_eq!(up.status.code(), Some(1), "{}", text(&up));
    let out = text(&up);
    assert!(out.contains("InstanceRefreshRollbackSuccessful"), "{out}");
    assert!(
        out.contains("Instances failed to pass health checks"),
        "{out}"
    );
    assert!(roll_pending(&aws, &w), "the next plan still shows the roll");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_already_running_is_cancelled_then_ours_starts() {
    let (_moto, aws, w, up) = deploy(RefreshScript {
        start_errors: vec!["InstanceRefreshInProgress".into()],
        states: vec![state("Successful", 100, "")],
        ..Default::default()
    })
    .await;
    assert_ok(&up);
    assert!(text(&up).contains("cancelling it first"), "{}", text(&up));
    assert_eq!(aws.calls.action("CancelInstanceRefresh"), 1);
    assert!(!roll_pending(&aws, &w));
}

#[tokio::test(flavor = "multi_thread")]
async fn access_denied_on_start_records_nothing_as_done() {
    let (_moto, aws, w, up) = deploy(RefreshScript {
        start_errors: vec!["AccessDenied".into(), "AccessDenied".into()],
        states: vec![state("Successful", 100, "")],
        ..Default::default()
    })
    .await;
    assert_eq!(up.status.code(), Some(1), "{}", text(&up));
    assert!(text(&up).contains("AccessDenied"), "{}", text(&up));
    assert!(roll_pending(&aws, &w));
}

/// Every `up` waits for the services' targets, also when nothing changes, and says
/// why they are not healthy: AWS's reason per target group, and where to look.
#[tokio::test(flavor = "multi_thread")]
async fn up_fails_with_the_health_check_reason_when_targets_are_unhealthy() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    aws.set_faults(|f| {
        f.unhealthy_targets = Some((
            "Target.ResponseCodeMismatch".into(),
            "Health checks failed with these codes: [502]".into(),
        ))
    });
    let up = stack(&aws.url(), &["up", &file, "--yes", "--ready-timeout", "20"]);
    assert_eq!(up.status.code(), Some(1), "{}", text(&up));
    let out = text(&up);
    assert!(out.contains("autoscaling_group.web (directory-web): 0/2 targets healthy: Target.ResponseCodeMismatch: Health checks failed with these codes: [502]"), "{out}");
    assert!(out.contains("stack status"), "{out}");
    let doc = json(&stack(
        &aws.url(),
        &["up", &file, "--yes", "--ready-timeout", "20", "--json"],
    ));
    assert_eq!(doc["error"]["code"], "Unhealthy", "{doc}");
    // `plan` warns, with AWS's reason, and its exit code still says "no changes".
    let plan = stack(&aws.url(), &["plan", &file, "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(
        text(&plan).contains("Warning: autoscaling_group.admin (directory-admin): 0/1 targets healthy: Target.ResponseCodeMismatch"),
        "{}",
        text(&plan)
    );
    let plan = json(&stack(&aws.url(), &["plan", &file, "--json"]));
    assert_eq!(plan["warnings"].as_array().map(Vec::len), Some(2), "{plan}");
    // Healthy again: the same `up` succeeds, writing nothing.
    aws.set_faults(|f| f.unhealthy_targets = None);
    aws.calls.clear();
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    assert!(aws.calls.writes().is_empty(), "{:?}", aws.calls.writes());
    let plan = json(&stack(&aws.url(), &["plan", &file, "--json"]));
    assert_eq!(plan["warnings"], serde_json::json!([]), "{plan}");
}

/// A service's `deploy:` keys reach the refresh as its preferences, and a change to
/// them alone is an in-place update of the group's `deploy` attribute (no roll).
#[tokio::test(flavor = "multi_thread")]
async fn deploy_keys_tune_the_roll() {
    let moto = Moto::start();
    let aws = Proxy::with_faults(
        Some(moto.port),
        Faults {
            refresh: Some(RefreshScript {
                start_errors: vec![],
                states: vec![state("Successful", 100, "")],
                ..Default::default()
            }),
            ..Faults::real()
        },
    )
    .await;
    let w = Workdir::new();
    let file = w.file(WEB);
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    let scaling = "scaling: { min: 2, max: 6, desired: 2, cpu_target: 50 }";
    w.edit(
        WEB,
        scaling,
        &format!(
            "{scaling}\n    deploy: {{ min_healthy: 50, max_healthy: 150, warmup: 30, bake: 60 }}"
        ),
    );
    let plan = json(&stack(&aws.url(), &["plan", &file, "--json"]));
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{plan}");
    assert_eq!(changes[0]["address"], "autoscaling_group.web");
    let attrs: Vec<&str> = changes[0]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(attrs, ["deploy"], "{plan}");
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    assert!(
        aws.refresh_starts().is_empty(),
        "no roll for new preferences"
    );
    assert_converged(&aws.url(), &file);

    w.edit(WEB, "type: t3.micro", "type: t3.small");
    let plan = text(&stack(&aws.url(), &["plan", &file]));
    assert!(
        plan.contains("; may terminate first, 50–150% of the group in service, 30 s warmup"),
        "{plan}"
    );
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    let starts = aws.refresh_starts();
    let web = starts
        .iter()
        .find(|b| b.contains("directory-web"))
        .expect("web rolled");
    for pref in [
        "Preferences.MinHealthyPercentage=50",
        "Preferences.MaxHealthyPercentage=150",
        "Preferences.InstanceWarmup=30",
        "Preferences.BakeTime=60",
    ] {
        assert!(web.contains(pref), "{pref} missing from {web}");
    }
}

/// Each group's in-service instances and the template each came from, read from moto.
async fn fleet(conf: &aws_config::SdkConfig, group: &str) -> Vec<(String, String)> {
    let g = aws_sdk_autoscaling::Client::new(conf)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .unwrap();
    let ids: Vec<String> = g.auto_scaling_groups()[0]
        .instances()
        .iter()
        .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let r = aws_sdk_ec2::Client::new(conf)
        .describe_instances()
        .set_instance_ids(Some(ids))
        .send()
        .await
        .unwrap();
    r.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            let lt = i
                .tags()
                .iter()
                .find(|t| t.key() == Some("aws:ec2launchtemplate:id"))
                .and_then(|t| t.value())
                .unwrap_or_default();
            (i.instance_id().unwrap().to_string(), lt.to_string())
        })
        .collect()
}

/// moto has no instance refresh: the engine rolls the group itself, launching a batch
/// before it terminates one, so no group is ever below its size; every instance is
/// replaced and the group ends at its size, on the new template.
#[tokio::test(flavor = "multi_thread")]
async fn without_instance_refresh_the_engine_rolls_launching_first() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let conf = sdk(&moto.url()).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    let before = fleet(&conf, "directory-web").await;
    assert_eq!(before.len(), 2);
    w.edit(WEB, "type: t3.micro", "type: t3.small");
    // The first termination of the roll waits: by then the batch has launched.
    let hold = aws.hold("TerminateInstanceInAutoScalingGroup", When::Before);
    let run = spawn_stack(&aws.url(), &["up", &file, "--yes"]);
    hold.reached().await;
    let web = fleet(&conf, "directory-web").await;
    let admin = fleet(&conf, "directory-admin").await;
    assert!(
        (web.len() >= 2 && !admin.is_empty()) && (web.len() > 2 || admin.len() > 1),
        "launched before the first termination: web {web:?}, admin {admin:?}"
    );
    hold.release();
    let up = run.wait();
    assert_ok(&up);
    let out = text(&up);
    assert!(
        out.contains("instance refresh unavailable at this endpoint"),
        "{out}"
    );
    assert!(
        out.contains("rolling 2 instance(s) here, 2 at a time (launch before terminate)"),
        "{out}"
    );
    let after = fleet(&conf, "directory-web").await;
    let new_template = &after[0].1;
    assert_eq!(after.len(), 2, "back to its size: {after:?}");
    assert!(after.iter().all(|(_, lt)| lt == new_template));
    assert!(
        after
            .iter()
            .all(|(id, _)| before.iter().all(|(b, _)| b != id)),
        "every instance replaced: {before:?} → {after:?}"
    );
    assert_ne!(&before[0].1, new_template);
    assert_converged(&aws.url(), &file);
}

/// A roll killed halfway (the batch launched, nothing terminated yet) leaves the
/// group above its size on two templates; the next `up` finishes it and returns the
/// group to its size.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_roll_resumes_and_returns_to_size() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let conf = sdk(&moto.url()).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    w.edit(WEB, "type: t3.micro", "type: t3.small");
    let hold = aws.hold("TerminateInstanceInAutoScalingGroup", When::Before);
    let run = spawn_stack(&aws.url(), &["up", &file, "--yes"]);
    hold.reached().await;
    run.signal("KILL");
    hold.abandon();
    let _ = run.wait();
    // The killed run's lock stays; it is broken as its message says.
    let up = stack(&aws.url(), &["up", &file, "--yes", "--break-lock"]);
    assert_ok(&up);
    for (group, size) in [("directory-web", 2), ("directory-admin", 1)] {
        let f = fleet(&conf, group).await;
        assert_eq!(f.len(), size, "{group}: {f:?}\n{}", text(&up));
        assert!(f.iter().all(|(_, lt)| lt == &f[0].1), "{group}: {f:?}");
    }
    assert_converged(&aws.url(), &file);
}

/// The tags a group keeps about its builds: (`stack:build`, `stack:previous-build`).
async fn builds_of(conf: &aws_config::SdkConfig, group: &str) -> (String, String) {
    let g = aws_sdk_autoscaling::Client::new(conf)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .unwrap();
    let tag = |k: &str| {
        g.auto_scaling_groups()[0]
            .tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .unwrap_or_default()
            .to_string()
    };
    (tag("stack:build"), tag("stack:previous-build"))
}

/// A new app build: the stand-in binary with other bytes. Returns its SHA-256.
fn new_build(w: &Workdir, text: &[u8]) -> String {
    use sha2::Digest;
    let bytes = elf_stand_in(X86_64, text);
    std::fs::write(w.path("bin/stack-app"), &bytes).unwrap();
    hex::encode(sha2::Sha256::digest(&bytes))
}

/// `stack rollback` puts back the build each group ran before its last roll, through
/// the same rolling path, and refuses before any write when there is none or the file
/// would change more than the build.
#[tokio::test(flavor = "multi_thread")]
async fn rollback_puts_the_previous_build_back() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let conf = sdk(&moto.url()).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    let (first, none) = builds_of(&conf, "directory-web").await;
    assert!(
        first.starts_with("artifacts/") && none.is_empty(),
        "{first} {none}"
    );

    aws.calls.clear();
    let refused = stack(&aws.url(), &["rollback", &file, "--yes"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("no service has a previous build"),
        "{}",
        text(&refused)
    );
    assert!(aws.calls.writes().is_empty(), "{:?}", aws.calls.writes());

    let second_sha = new_build(&w, b"the second build");
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    let (second, previous) = builds_of(&conf, "directory-web").await;
    assert!(second.contains(&second_sha), "{second}");
    assert_eq!(previous, first, "the roll recorded the build it left");

    // A file that changes more than the build is refused before any write.
    w.edit(WEB, "min: 2, max: 6", "min: 2, max: 7");
    aws.calls.clear();
    let refused = stack(
        &aws.url(),
        &["rollback", &file, "--service", "web", "--yes"],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("also changes `max_size`"),
        "{}",
        text(&refused)
    );
    assert!(aws.calls.writes().is_empty(), "{:?}", aws.calls.writes());
    w.edit(WEB, "min: 2, max: 7", "min: 2, max: 6");

    let before = fleet(&conf, "directory-web").await;
    let back = stack(
        &aws.url(),
        &["rollback", &file, "--service", "web", "--yes"],
    );
    assert_ok(&back);
    let out = text(&back);
    assert!(out.contains("rolling web back to build"), "{out}");
    assert!(out.contains("rolled here"), "{out}");
    let (now, previous) = builds_of(&conf, "directory-web").await;
    assert_eq!(
        (now.as_str(), previous.as_str()),
        (first.as_str(), second.as_str())
    );
    let after = fleet(&conf, "directory-web").await;
    assert!(
        after
            .iter()
            .all(|(id, _)| before.iter().all(|(b, _)| b != id)),
        "rolled: {before:?} → {after:?}"
    );
    // Only web: admin keeps the second build, and the next plan rolls web forward.
    assert_eq!(builds_of(&conf, "directory-admin").await.0, second);
    assert!(roll_pending(&aws, &w), "the file's build is pending again");
}

/// After a roll `up` asks where the app answers (`--app-url`; a stand-in server here)
/// until every answer carries the new build, and fails when the old one still answers.
#[tokio::test(flavor = "multi_thread")]
async fn up_checks_the_new_build_answers_through_the_app_url() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    let plain = stack(&aws.url(), &["up", &file, "--yes"]);
    assert_ok(&plain);
    let sha = new_build(&w, b"a build the server reports");
    let answering = std::sync::Arc::new(std::sync::Mutex::new(String::from("an-old-build")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let build = answering.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf).await;
            let b = build.lock().unwrap().clone();
            let _ = s
                .write_all(
                    format!("HTTP/1.1 200 OK\r\nx-app-build: {b}\r\ncontent-length: 0\r\n\r\n")
                        .as_bytes(),
                )
                .await;
        }
    });
    let up = stack(
        &aws.url(),
        &[
            "up",
            &file,
            "--yes",
            "--app-url",
            &url,
            "--ready-timeout",
            "5",
        ],
    );
    assert_eq!(up.status.code(), Some(1), "{}", text(&up));
    assert!(
        text(&up).contains("not every answer through"),
        "{}",
        text(&up)
    );
    assert!(text(&up).contains("build an-old-build"), "{}", text(&up));

    // The roll itself is done; with the new build answering the same `up` passes.
    *answering.lock().unwrap() = sha.clone();
    w.edit(WEB, "type: t3.micro", "type: t3.small");
    let up = stack(&aws.url(), &["up", &file, "--yes", "--app-url", &url]);
    assert_ok(&up);
    assert!(
        text(&up).contains(&format!("came from build {}", &sha[..12])),
        "{}",
        text(&up)
    );
    // Without --app-url at an emulator there is nothing to ask: said, not failed.
    w.edit(WEB, "type: t3.small", "type: t3.micro");
    let up = stack(&aws.url(), &["up", &file, "--yes"]);
    assert_ok(&up);
    assert!(text(&up).contains("build check: skipped"), "{}", text(&up));
}

/// Mistakes in the deploy flags are refused before anything is written.
#[tokio::test(flavor = "multi_thread")]
async fn bad_deploy_flags_are_refused_before_any_write() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    for (args, says) in [
        (
            vec!["up", file.as_str(), "--yes", "--app-url", "www.example.com"],
            "--app-url `www.example.com` is not an http:// or https:// URL",
        ),
        (
            vec!["rollback", file.as_str(), "--yes", "--service", "api"],
            "--service api:",
        ),
    ] {
        let out = stack(&aws.url(), &args);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains(says), "{}", text(&out));
        assert!(!text(&out).contains("panicked"), "{}", text(&out));
    }
    assert!(aws.calls.writes().is_empty(), "{:?}", aws.calls.writes());
}
