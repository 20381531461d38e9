//! Real AWS, not the emulator: the audit table (docs/aws-fidelity.md) covers every
//! operation the engine calls, and each defect the audit found has a test here that
//! runs through the proxy's real-AWS mode (tests/support/real_aws.rs).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;
use support::*;

const WEB: &str = "stacks/web.yaml";

/// (service, Operation) for every AWS call in src/: the SDK client fields the engine
/// uses (`c.ec2`, `ctx.c.elb`, …) followed by an operation method.
fn operations_in_src() -> BTreeSet<(String, String)> {
    let services = [
        ("ec2", "EC2"),
        ("elb", "ELBv2"),
        ("asg", "AutoScaling"),
        ("ddb", "DynamoDB"),
        ("s3", "S3"),
        ("ssm", "SSM"),
        ("iam", "IAM"),
        ("sts", "STS"),
    ];
    let call = regex::Regex::new(r"\b(ec2|elb|asg|ddb|s3|ssm|iam|sts)\.([a-z0-9_]+)\(").unwrap();
    let mut out = BTreeSet::new();
    let mut dirs = vec![root().join("src")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            // Calls are chained over several lines: `ctx.c\n.ec2\n.create_vpc()`.
            let text: String = std::fs::read_to_string(&p)
                .unwrap()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            for m in call.captures_iter(&text) {
                let method = &m[2];
                if method == "clone" {
                    continue;
                }
                let service = services.iter().find(|(f, _)| *f == &m[1]).unwrap().1;
                out.insert((service.to_string(), pascal(method)));
            }
        }
    }
    out
}

fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// The rows of the audit table: (service, operation) → the other cells.
fn audit_rows() -> Vec<(String, String, Vec<String>)> {
    let doc =
        std::fs::read_to_string(root().join("docs/aws-fidelity.md")).expect("docs/aws-fidelity.md");
    doc.lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|cells| cells.len() >= 5 && cells[0] != "Service" && !cells[0].starts_with("---"))
        .map(|cells| (cells[0].clone(), cells[1].clone(), cells[2..].to_vec()))
        .collect()
}

#[test]
fn every_operation_the_engine_calls_is_in_the_audit_table() {
    let called = operations_in_src();
    assert!(called.len() > 80, "found only {} operations", called.len());
    let rows = audit_rows();
    let listed: BTreeSet<(String, String)> = rows
        .iter()
        .map(|(s, o, _)| (s.clone(), o.clone()))
        .collect();
    let missing: Vec<_> = called.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "src/ calls operations docs/aws-fidelity.md does not audit: {missing:?}"
    );
    let stale: Vec<_> = listed.difference(&called).collect();
    assert!(
        stale.is_empty(),
        "docs/aws-fidelity.md audits operations src/ no longer calls: {stale:?}"
    );
    for (service, op, cells) in &rows {
        assert!(
            cells.iter().take(3).all(|c| !c.is_empty()),
            "{service} {op}: every cell says something"
        );
    }
}

#[test]
fn the_real_aws_mode_finds_the_group_whose_rules_name_another() {
    let xml = "<item><groupId>sg-a</groupId><ipPermissions><item><groups><item><groupId>sg-a</groupId></item></groups></item></ipPermissions><ipPermissionsEgress/></item>\
               <item><groupId>sg-b</groupId><ipPermissions><item><groups><item><groupId>sg-a</groupId></item></groups></item></ipPermissions></item>";
    assert_eq!(
        support::real_aws::referencing_group(xml, "sg-a"),
        Some("sg-b".into())
    );
    assert_eq!(support::real_aws::referencing_group(xml, "sg-b"), None);
}

/// IAM's list calls return no tags on AWS: the instance profile must be found again
/// through GetInstanceProfile, or every later plan re-creates it.
#[tokio::test(flavor = "multi_thread")]
async fn instance_profile_is_found_again_though_list_calls_carry_no_tags() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    aws.calls.clear();
    let plan = stack(&aws.url(), &["plan", &file, "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(aws.calls.action("ListInstanceProfiles") >= 1);
    assert!(aws.calls.action("GetInstanceProfile") >= 1);

    let down = stack(&aws.url(), &["down", &file, "--yes"]);
    assert_ok(&down);
    let iam = aws_sdk_iam::Client::new(&sdk(&moto.url()).await);
    let left = iam
        .list_instance_profiles()
        .path_prefix("/stack/")
        .send()
        .await
        .unwrap();
    assert!(
        left.instance_profiles().is_empty(),
        "down left {:?}",
        left.instance_profiles()
    );
}

fn rule_priorities(
    rules: &aws_sdk_elasticloadbalancingv2::operation::describe_rules::DescribeRulesOutput,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = rules
        .rules()
        .iter()
        .filter(|r| r.is_default() != Some(true))
        .map(|r| {
            let path = r.conditions()[0]
                .path_pattern_config()
                .map(|p| p.values()[0].clone())
                .unwrap_or_default();
            (path, r.priority().unwrap_or_default().to_string())
        })
        .collect();
    out.sort();
    out
}

async fn listener_rules(moto: &Moto) -> Vec<(String, String)> {
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&sdk(&moto.url()).await);
    let lb = elb.describe_load_balancers().send().await.unwrap();
    let lb = lb.load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_string();
    let l = elb
        .describe_listeners()
        .load_balancer_arn(lb)
        .send()
        .await
        .unwrap();
    let arn = l.listeners()[0].listener_arn().unwrap().to_string();
    rule_priorities(&elb.describe_rules().listener_arn(arn).send().await.unwrap())
}

/// A swap of two priorities goes in one SetRulePriorities call (AWS refuses a
/// priority another rule still holds), and a rule that takes over a deleted rule's
/// priority is created only after that delete.
#[tokio::test(flavor = "multi_thread")]
async fn rule_priorities_swap_in_one_call_and_a_freed_priority_waits_for_its_delete() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    w.edit(
        WEB,
        "    - { path: \"/admin*\", service: admin, priority: 10 }",
        "    - { path: \"/admin*\", service: admin, priority: 10 }\n    - { name: api, path: \"/api/*\", service: web, priority: 20 }",
    );
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    assert_eq!(
        listener_rules(&moto).await,
        vec![
            ("/admin*".to_string(), "10".to_string()),
            ("/api/*".to_string(), "20".to_string())
        ]
    );

    w.edit(
        WEB,
        "service: admin, priority: 10",
        "service: admin, priority: 20",
    );
    w.edit(
        WEB,
        "service: web, priority: 20",
        "service: web, priority: 10",
    );
    aws.calls.clear();
    let swap = stack(&aws.url(), &["up", &file, "--yes"]);
    assert_ok(&swap);
    assert_eq!(aws.calls.action("SetRulePriorities"), 1, "{}", text(&swap));
    assert_eq!(
        listener_rules(&moto).await,
        vec![
            ("/admin*".to_string(), "20".to_string()),
            ("/api/*".to_string(), "10".to_string())
        ]
    );

    // Renamed: a new rule at the priority the old one gives up. The delete is made to
    // arrive late; the create must still come after it.
    w.edit(
        WEB,
        "{ name: api, path: \"/api/*\"",
        "{ name: v1, path: \"/v1/*\"",
    );
    aws.set_faults(|f| {
        f.action_latency
            .insert("DeleteRule".into(), Duration::from_millis(300));
    });
    let mark = aws.calls.mark();
    let renamed = stack(&aws.url(), &["up", &file, "--yes"]);
    assert_ok(&renamed);
    let order: Vec<String> = aws
        .calls
        .since(mark)
        .into_iter()
        .map(|(_, a)| a)
        .filter(|a| a == "DeleteRule" || a == "CreateRule")
        .collect();
    assert_eq!(order, ["DeleteRule", "CreateRule"], "{}", text(&renamed));
    assert_eq!(
        listener_rules(&moto).await,
        vec![
            ("/admin*".to_string(), "20".to_string()),
            ("/v1/*".to_string(), "10".to_string())
        ]
    );
}

/// Starts `up` and kills it the moment the stack's table has been created, so the
/// table is left CREATING (the proxy keeps it so for its next calls).
async fn kill_after_create_table(aws: &Proxy, moto: &Moto, file: &str) {
    // The lock's own table exists already, so the held CreateTable is the stack's.
    create_lock_table(&moto.url()).await;
    let hold = aws.hold("CreateTable", When::After);
    // One step at a time: nothing else (the bucket, created and then tagged) is half
    // done when the run dies.
    let run = spawn_stack(&aws.url(), &["up", file, "--yes", "--parallelism", "1"]);
    hold.reached().await;
    run.signal("KILL");
    drop(run.wait());
    hold.abandon();
}

/// A proxy whose tables stay CREATING/UPDATING for six calls.
async fn busy_tables(moto: &Moto) -> Proxy {
    Proxy::with_faults(
        Some(moto.port),
        Faults {
            real_aws: RealAws {
                table_busy_calls: 6,
                ..RealAws::on()
            },
            ..Faults::real()
        },
    )
    .await
}

/// A table a killed run left CREATING: `down` waits it out (DynamoDB answers
/// ResourceInUseException until it is ACTIVE) instead of failing at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_table_left_creating_is_deleted_once_active() {
    let moto = Moto::start();
    let aws = busy_tables(&moto).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    kill_after_create_table(&aws, &moto, &file).await;
    // The killed run's lock stays behind; it is gone, so breaking it is right.
    let down = stack(&aws.url(), &["down", &file, "--yes", "--break-lock"]);
    assert_ok(&down);
    assert!(aws.injected("real_aws") >= 1, "the table read busy");
    let ddb = aws_sdk_dynamodb::Client::new(&sdk(&moto.url()).await);
    let tables = ddb.list_tables().send().await.unwrap();
    assert_eq!(tables.table_names(), ["stack_locks"]);
}

/// A table a killed run left CREATING: the next `up` waits for ACTIVE before
/// UpdateTable, which a busy table refuses.
#[tokio::test(flavor = "multi_thread")]
async fn a_table_left_creating_is_updated_once_active() {
    let moto = Moto::start();
    let aws = busy_tables(&moto).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    kill_after_create_table(&aws, &moto, &file).await;
    w.edit(
        WEB,
        "billing: pay_per_request",
        "billing: provisioned, read_capacity: 2, write_capacity: 2",
    );
    let up = stack(&aws.url(), &["up", &file, "--yes", "--break-lock"]);
    assert_ok(&up);
    assert!(text(&up).contains("dynamodb_table.main"), "{}", text(&up));
    let ddb = aws_sdk_dynamodb::Client::new(&sdk(&moto.url()).await);
    let t = ddb
        .describe_table()
        .table_name("directory-employees")
        .send()
        .await
        .unwrap();
    assert_eq!(
        t.table()
            .and_then(|t| t.billing_mode_summary())
            .and_then(|b| b.billing_mode())
            .map(|b| b.as_str()),
        Some("PROVISIONED")
    );
}

/// Point-in-time recovery can be unavailable for minutes after a table is created
/// (the Terraform provider waits 20): `up` keeps asking.
#[tokio::test(flavor = "multi_thread")]
async fn point_in_time_recovery_waits_while_backups_are_unavailable() {
    let moto = Moto::start();
    // 3 s: beyond a minute at the tests' patience scale (0.02), well within 20.
    let aws = Proxy::with_faults(
        Some(moto.port),
        Faults {
            real_aws: RealAws {
                pitr_unavailable: Duration::from_secs(3),
                ..RealAws::on()
            },
            ..Faults::real()
        },
    )
    .await;
    let w = Workdir::new();
    let file = w.file(WEB);
    let up = stack(&aws.url(), &["up", &file, "--yes"]);
    assert_ok(&up);
    assert!(aws.injected("real_aws") >= 2, "backups read unavailable");
    let ddb = aws_sdk_dynamodb::Client::new(&sdk(&moto.url()).await);
    let b = ddb
        .describe_continuous_backups()
        .table_name("directory-employees")
        .send()
        .await
        .unwrap();
    let status = b
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status())
        .map(|s| s.as_str().to_string());
    assert_eq!(status.as_deref(), Some("ENABLED"));
}

/// IAM is global, stacks are regional: the same stack in two regions has two roles,
/// each with its own region's policy, and `down` in one leaves the other's alone.
#[tokio::test(flavor = "multi_thread")]
async fn the_same_stack_in_two_regions_keeps_its_own_iam() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let east = w.file(WEB);
    let text_east = std::fs::read_to_string(&east).unwrap();
    let west = w.file("stacks/web-west.yaml");
    std::fs::write(
        &west,
        text_east
            .replace("region: us-east-1", "region: us-west-2")
            .replace("directory-photos-demo", "directory-photos-west"),
    )
    .unwrap();
    assert_ok(&stack(&aws.url(), &["up", &east, "--yes"]));
    assert_ok(&stack(&aws.url(), &["up", &west, "--yes"]));

    let iam = aws_sdk_iam::Client::new(&sdk(&moto.url()).await);
    let policy = |region: &'static str| {
        let iam = iam.clone();
        async move {
            let p = iam
                .get_role_policy()
                .role_name(format!("directory-{region}-instance"))
                .policy_name("stack-access")
                .send()
                .await
                .unwrap();
            p.policy_document().to_string()
        }
    };
    let (pe, pw) = (policy("us-east-1").await, policy("us-west-2").await);
    assert!(
        pe.contains("us-east-1") && !pe.contains("us-west-2"),
        "{pe}"
    );
    assert!(
        pw.contains("us-west-2") && !pw.contains("us-east-1"),
        "{pw}"
    );

    assert_ok(&stack(&aws.url(), &["down", &west, "--yes"]));
    let profiles = iam
        .list_instance_profiles()
        .path_prefix("/stack/directory/")
        .send()
        .await
        .unwrap();
    let names: Vec<&str> = profiles
        .instance_profiles()
        .iter()
        .map(|p| p.instance_profile_name())
        .collect();
    assert_eq!(names, ["directory-us-east-1-instance"]);
    assert_converged(&aws.url(), &east);
}

/// Graviton instance types need an arm64 image and an arm64 build: a binary of the
/// wrong architecture is refused before any write, the right one ships beside the
/// x86_64 one.
#[tokio::test(flavor = "multi_thread")]
async fn graviton_services_get_an_arm64_image_and_build() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    // admin on Graviton; the stack ships only the x86_64 stand-in so far.
    w.edit(
        WEB,
        "instance: { type: t3.micro, ami: al2023 }\n    user_data: ../userdata/app.sh\n    scaling: { min: 1",
        "instance: { type: t4g.micro, ami: al2023 }\n    user_data: ../userdata/app.sh\n    scaling: { min: 1",
    );
    let plan = stack(&aws.url(), &["plan", &file]);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    assert!(text(&plan).contains("artifact_arm64"), "{}", text(&plan));

    // An x86_64 binary named as the arm64 one is refused too.
    w.edit(
        WEB,
        "app: { artifact: ../bin/stack-app }",
        "app: { artifact: ../bin/stack-app, artifact_arm64: ../bin/stack-app-arm64 }",
    );
    let arm = w.path("bin/stack-app-arm64");
    std::fs::write(&arm, elf_stand_in(X86_64, b"wrong")).unwrap();
    let wrong = stack(&aws.url(), &["up", &file, "--yes"]);
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(
        text(&wrong).contains("is a x86_64 binary, but it is shipped for arm64"),
        "{}",
        text(&wrong)
    );
    assert!(aws.calls.writes().is_empty(), "{:?}", aws.calls.writes());

    std::fs::write(&arm, elf_stand_in(AARCH64, b"arm64 stand-in")).unwrap();
    let up = stack(&aws.url(), &["up", &file, "--yes"]);
    assert_ok(&up);
    let conf = sdk(&moto.url()).await;
    let ssm = aws_sdk_ssm::Client::new(&conf);
    let image = |arch: &'static str| {
        let ssm = ssm.clone();
        async move {
            ssm.get_parameter()
                .name(format!(
                    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"
                ))
                .send()
                .await
                .unwrap()
                .parameter()
                .unwrap()
                .value()
                .unwrap()
                .to_string()
        }
    };
    let admin = template_data(&conf, "directory-admin").await;
    let web = template_data(&conf, "directory-web").await;
    assert_eq!(admin.image_id(), Some(image("arm64").await.as_str()));
    assert_eq!(web.image_id(), Some(image("x86_64").await.as_str()));
    let admin_ud = template_user_data(&conf, "directory-admin").await;
    assert!(admin_ud.contains("KEY=\"artifacts/arm64/"), "{admin_ud}");
    let web_ud = template_user_data(&conf, "directory-web").await;
    assert!(!web_ud.contains("artifacts/arm64/"), "{web_ud}");
    let keys = artifact_keys(&conf, "directory-photos-demo").await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("artifacts/arm64/")));
    assert_converged(&aws.url(), &file);
}

/// Building for arm64 needs that Rust target; without it `plan` says so, before any
/// write. (This machine has only the x86_64 target; where aarch64 is installed the
/// build would run, so there the check has nothing to show.)
#[tokio::test(flavor = "multi_thread")]
async fn building_for_graviton_without_the_rust_target_says_so_before_any_write() {
    let sysroot = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let installed = std::path::Path::new(String::from_utf8_lossy(&sysroot.stdout).trim())
        .join("lib/rustlib/aarch64-unknown-linux-gnu/lib")
        .is_dir();
    if installed {
        eprintln!("aarch64-unknown-linux-gnu is installed here: nothing to refuse");
        return;
    }
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    w.use_real_app();
    w.edit(WEB, "type: t3.micro", "type: t4g.micro");
    let up = stack(&aws.url(), &["up", &w.file(WEB), "--yes"]);
    assert_eq!(up.status.code(), Some(1), "{}", text(&up));
    assert!(
        text(&up).contains("rustup target add aarch64-unknown-linux-gnu"),
        "{}",
        text(&up)
    );
    assert!(aws.calls.writes().is_empty(), "{:?}", aws.calls.writes());
}

/// A large app binary goes up in parts, each retried on its own, instead of one
/// request that a slow uplink cannot finish within the attempt limit.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_artifact_goes_up_in_parts_each_retried_on_its_own() {
    let moto = Moto::start();
    let aws = Proxy::with_faults(
        Some(moto.port),
        Faults {
            seed: 7,
            throttle_actions: [("UploadPart".to_string(), 0.4)].into(),
            ..Faults::real()
        },
    )
    .await;
    let w = Workdir::new();
    let mut body = Vec::with_capacity(17 << 20);
    let mut x: u32 = 1;
    while body.len() < 17 << 20 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        body.extend_from_slice(&x.to_le_bytes());
    }
    let bin = elf_stand_in(X86_64, &body);
    std::fs::write(w.path("bin/stack-app"), &bin).unwrap();
    let up = stack(&aws.url(), &["up", &w.file(WEB), "--yes"]);
    assert_ok(&up);
    assert_eq!(aws.calls.action("CreateMultipartUpload"), 1);
    assert_eq!(aws.calls.action("CompleteMultipartUpload"), 1);
    assert!(aws.calls.action("UploadPart") >= 3);
    assert!(aws.injected("throttle") >= 1, "some part was throttled");
    // One PutObject: the write credential's 64-byte verifier, not the build.
    assert_eq!(aws.calls.action("PutObject"), 1);
    let conf = sdk(&moto.url()).await;
    let key = artifact_keys(&conf, "directory-photos-demo").await[0].clone();
    let got = s3(&conf)
        .get_object()
        .bucket("directory-photos-demo")
        .key(&key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(got.len(), bin.len());
    assert!(
        got.as_ref() == bin.as_slice(),
        "the stored object is the build"
    );
}

/// The CPU burner is off unless the stack file turns it on for a service.
#[tokio::test(flavor = "multi_thread")]
async fn stress_is_off_unless_the_stack_file_turns_it_on() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    let conf = sdk(&moto.url()).await;
    for svc in ["web", "admin"] {
        let ud = template_user_data(&conf, &format!("directory-{svc}")).await;
        assert!(ud.contains("APP_STRESS_ENABLED=false"), "{svc}: {ud}");
    }
    w.edit(
        WEB,
        "scaling: { min: 2, max: 6, desired: 2, cpu_target: 50 }",
        "scaling: { min: 2, max: 6, desired: 2, cpu_target: 50 }\n    stress: true",
    );
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    let web = template_user_data(&conf, "directory-web").await;
    let admin = template_user_data(&conf, "directory-admin").await;
    assert!(web.contains("APP_STRESS_ENABLED=true"), "{web}");
    assert!(admin.contains("APP_STRESS_ENABLED=false"), "{admin}");
}
