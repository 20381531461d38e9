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
    let (_moto, aws, w, up) = deploy(RefreshScript {
        start_errors: vec![],
        states: vec![
            state("Pending", 0, ""),
            state("InProgress", 50, ""),
            state("Successful", 100, ""),
        ],
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
        ] {
            assert!(body.contains(pref), "{pref} missing from {body}");
        }
    }
    assert!(text(&up).contains("50% done"), "{}", text(&up));
    assert!(
        !roll_pending(&aws, &w),
        "the digest is recorded after success"
    );
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
        plan.contains("(may terminate first, 50–150% of the group in service, 30 s warmup)"),
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
