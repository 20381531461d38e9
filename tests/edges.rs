//! The edges where users get hurt: data a routine edit would destroy, refusals known
//! before the first write, names someone else holds, the CI contract (exit codes, a
//! JSON document on every failure) and errors a person can act on.

mod support;

use std::process::{Command, Stdio};
use support::*;

const WEB: &str = "stacks/web.yaml";

async fn put_items(endpoint: &str, n: usize) {
    let ddb = aws_sdk_dynamodb::Client::new(&sdk(endpoint).await);
    for i in 0..n {
        ddb.put_item()
            .table_name("directory-employees")
            .item(
                "id",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("e{i}")),
            )
            .send()
            .await
            .unwrap();
    }
}

/// Renaming the table replaces it: the plan says what that destroys, and `up` needs
/// `--force` for it whatever `--yes` says.
#[tokio::test(flavor = "multi_thread")]
async fn replacing_a_table_that_holds_items_needs_force() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    put_items(&moto.url(), 2).await;
    w.edit(WEB, "table: { name: employees,", "table: { name: staff,");

    let plan = stack(&aws.url(), &["plan", &file]);
    assert_ok(&plan);
    let human = text(&plan);
    assert!(human.contains("# destroys all 2 items"), "{human}");
    // Readable: the policy as the lines that change, the user data's diff, the
    // instances a roll replaces.
    assert!(human.contains("~ policy =\n"), "{human}");
    assert!(
        human.contains(
            "-         \"arn:aws:dynamodb:us-east-1:123456789012:table/directory-employees\""
        ),
        "{human}"
    );
    assert!(human.contains("# user data:"), "{human}");
    assert!(
        human.contains("# + write_if_changed \"$ENV_FILE\" \"APP_TABLE=directory-staff"),
        "{human}"
    );
    assert!(
        human.contains("# roll 2 instances: launch template directory-web-"),
        "{human}"
    );
    let plan = json(&stack(&aws.url(), &["plan", &file, "--json"]));
    let table = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "dynamodb_table.main")
        .unwrap();
    assert_eq!(table["action"], "replace");
    assert_eq!(table["destroys"]["count"], 2);
    assert_eq!(table["destroys"]["of"], "items");

    aws.calls.clear();
    let refused = stack(&aws.url(), &["up", &file, "--yes"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("replacing dynamodb_table.main destroys all 2 items"),
        "{}",
        text(&refused)
    );
    assert!(aws.calls.writes().is_empty(), "{:?}", aws.calls.writes());
    let refused = stack(&aws.url(), &["up", &file, "--yes", "--json"]);
    assert_eq!(json(&refused)["error"]["code"], "DataLoss");

    let forced = stack(&aws.url(), &["up", &file, "--yes", "--force"]);
    assert_ok(&forced);
    assert!(
        // The table, and the two templates whose user data names it.
        text(&forced).contains(", 3 replaced, 0 destroyed"),
        "{}",
        text(&forced)
    );
}

/// `down` with a table that holds items refuses before the first write, too.
#[tokio::test(flavor = "multi_thread")]
async fn down_refuses_a_table_with_items_before_any_write() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    put_items(&moto.url(), 3).await;
    aws.calls.clear();
    let down = stack(&aws.url(), &["down", &file, "--yes"]);
    assert_eq!(down.status.code(), Some(1), "{}", text(&down));
    assert!(
        text(&down).contains("removing dynamodb_table.main destroys all 3 items"),
        "{}",
        text(&down)
    );
    assert!(aws.calls.writes().is_empty(), "{:?}", aws.calls.writes());
    assert_ok(&stack(&aws.url(), &["down", &file, "--yes", "--force"]));
    assert!(tagged(&moto.url(), "directory").await.is_empty());
}

/// Names the stack would create that someone else holds are found by `plan`, and `up`
/// refuses before writing anything.
#[tokio::test(flavor = "multi_thread")]
async fn names_taken_by_others_are_refused_before_any_write() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let conf = sdk(&moto.url()).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let w = Workdir::new();
    let file = w.file(WEB);
    // A template's name carries its content digest: the one this file would create.
    let planned = json(&stack(&aws.url(), &["plan", &file, "--json"]));
    let admin_template = planned["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "launch_template.admin")
        .and_then(|c| {
            c["attributes"]
                .as_array()?
                .iter()
                .find(|a| a["name"] == "name")
        })
        .and_then(|a| a["after"].as_str())
        .unwrap()
        .to_string();
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.99.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    aws_sdk_elasticloadbalancingv2::Client::new(&conf)
        .create_target_group()
        .name("directory-web")
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(8080)
        .vpc_id(&vpc_id)
        .send()
        .await
        .unwrap();
    ec2.create_launch_template()
        .launch_template_name(&admin_template)
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .build(),
        )
        .send()
        .await
        .unwrap();
    aws_sdk_iam::Client::new(&conf)
        .create_role()
        .role_name("directory-us-east-1-instance")
        .assume_role_policy_document("{}")
        .send()
        .await
        .unwrap();

    let plan = stack(&aws.url(), &["plan", &file]);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    for taken in [
        "target_group `directory-web`".to_string(),
        format!("launch_template `{admin_template}`"),
        "iam_role `directory-us-east-1-instance`".to_string(),
    ] {
        assert!(text(&plan).contains(&taken), "{taken}: {}", text(&plan));
    }
    aws.calls.clear();
    let up = stack(&aws.url(), &["up", &file, "--yes", "--json"]);
    assert_eq!(up.status.code(), Some(1), "{}", text(&up));
    assert_eq!(json(&up)["error"]["code"], "NameConflict");
    assert!(aws.calls.writes().is_empty(), "{:?}", aws.calls.writes());
}

/// A mistyped flag exits 1, never the 2 that means "changes pending"; help exits 0.
#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_stack"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let typo = run(&["plan", "stacks/web.yaml", "--detailed-exitcodee"]);
    assert_eq!(typo.status.code(), Some(1), "{}", text(&typo));
    let typo = run(&["plan", "stacks/web.yaml", "--json", "--detailed-exitcodee"]);
    assert_eq!(typo.status.code(), Some(1));
    assert_eq!(json(&typo)["error"]["code"], "UsageError");
    assert_eq!(run(&["--help"]).status.code(), Some(0));
    let help = run(&["plan", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    // Every flag says what it does (on its line, or the next when clap wraps it);
    // commands that make no AWS call take no AWS flags.
    for command in [
        "plan", "up", "down", "outputs", "status", "build", "validate",
    ] {
        let help = String::from_utf8_lossy(&run(&[command, "--help"]).stdout).into_owned();
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let flag = line.trim_start();
            if !(flag.starts_with("--") || flag.starts_with('-') && flag.contains(", --")) {
                continue;
            }
            let described = flag.split("  ").filter(|p| !p.trim().is_empty()).count() >= 2
                || lines
                    .get(i + 1)
                    .is_some_and(|next| next.starts_with("          ") && !next.trim().is_empty());
            assert!(described, "`{command} --help`: no description for {line}");
        }
    }
    let validate = String::from_utf8_lossy(&run(&["validate", "--help"]).stdout).into_owned();
    assert!(!validate.contains("--endpoint-url"), "{validate}");
}

/// Every command that takes `--json` prints one JSON document when it fails.
#[tokio::test(flavor = "multi_thread")]
async fn json_commands_print_an_error_document_on_failure() {
    let bad = root().join("tests/invalid/overlapping-subnets.yaml");
    let v = stack(
        "http://127.0.0.1:9",
        &["validate", path_str(&bad), "--json"],
    );
    assert_eq!(v.status.code(), Some(1));
    let doc = json(&v);
    assert_eq!(doc["format_version"], 1);
    assert_eq!(doc["error"]["code"], "InvalidStackFile");
    assert!(doc["error"]["diagnostics"][0]["line"].as_u64().unwrap() > 0);

    // Nothing listens on the port: still a document, naming the cause.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let w = Workdir::new();
    let endpoint = format!("http://127.0.0.1:{closed}");
    let file = w.file(WEB);
    for command in ["plan", "up", "down", "outputs", "status"] {
        let mut args = vec![command, file.as_str(), "--json"];
        if matches!(command, "up" | "down") {
            args.push("--yes");
        }
        let o = stack(&endpoint, &args);
        assert_eq!(o.status.code(), Some(1), "{command}: {}", text(&o));
        let doc = json(&o);
        assert_eq!(doc["error"]["code"], "Config", "{command}");
        let message = doc["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("nothing answers at {endpoint}")),
            "{command}: {message}"
        );
        assert!(!text(&o).contains("DispatchFailure"), "{}", text(&o));
    }

    // A run with nothing to do still reports its API calls.
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    let noop = json(&stack(&aws.url(), &["up", &file, "--yes", "--json"]));
    assert!(noop["api_calls"]["EC2"].is_object(), "{noop}");
}

/// The commonest mistakes get one line with the cause and the next step.
#[test]
fn common_mistakes_get_one_line_with_the_next_step() {
    let w = Workdir::new();
    let file = w.file(WEB);
    let empty = w.path("empty-aws-config");
    std::fs::write(&empty, "").unwrap();
    let bare = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_stack"))
            .args(args)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env("AWS_CONFIG_FILE", &empty)
            .env("AWS_SHARED_CREDENTIALS_FILE", &empty)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let no_scheme = bare(&["plan", &file, "--endpoint-url", "localhost:4566"]);
    assert_eq!(no_scheme.status.code(), Some(1));
    assert!(
        text(&no_scheme).contains("needs a scheme: did you mean http://localhost:4566?"),
        "{}",
        text(&no_scheme)
    );
    let region = bare(&["plan", &file, "--region", "useast1"]);
    assert_eq!(region.status.code(), Some(1));
    assert!(
        text(&region).contains("`useast1` is not an AWS region name"),
        "{}",
        text(&region)
    );
    let other_region = bare(&["plan", &file, "--region", "us-west-2"]);
    assert_eq!(other_region.status.code(), Some(1));
    assert!(
        text(&other_region).contains("--region us-west-2 differs from `region: us-east-1`"),
        "{}",
        text(&other_region)
    );
    let profile = bare(&["plan", &file, "--profile", "nope"]);
    assert_eq!(profile.status.code(), Some(1));
    assert!(
        text(&profile).contains("no AWS credentials for AWS profile `nope`"),
        "{}",
        text(&profile)
    );
    assert_eq!(text(&profile).lines().count(), 1, "{}", text(&profile));
    // A loopback endpoint needs no credentials (test ones are used, no metadata
    // service is asked): what fails is that nothing listens there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let local = bare(&[
        "plan",
        &file,
        "--endpoint-url",
        &format!("http://127.0.0.1:{closed}"),
    ]);
    assert_eq!(local.status.code(), Some(1));
    assert!(
        text(&local).contains("nothing answers at http://127.0.0.1:"),
        "{}",
        text(&local)
    );
    assert!(text(&local).contains("localstack/moto.sh start"));
    assert_eq!(text(&local).lines().count(), 1, "{}", text(&local));
}

/// The plan says where it applies; `down` of a stack with nothing deployed says so;
/// the outputs list the URL first.
#[tokio::test(flavor = "multi_thread")]
async fn plans_say_where_they_apply() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    let down = stack(&aws.url(), &["down", &file, "--yes"]);
    assert_ok(&down);
    assert!(
        text(&down).contains(
            "Nothing to destroy: stack `directory` in account 123456789012, region us-east-1"
        ),
        "{}",
        text(&down)
    );
    let plan = stack(&aws.url(), &["plan", &file]);
    assert!(
        text(&plan)
            .starts_with("Plan for stack `directory` in account 123456789012, region us-east-1"),
        "{}",
        text(&plan)
    );
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    let outs = stack(&aws.url(), &["outputs", &file]);
    let first = text(&outs).lines().nth(1).unwrap_or_default().to_string();
    assert!(first.trim_start().starts_with("url"), "{}", text(&outs));
}

/// An emulator without instance refresh is asked once, not retried as if the error
/// page it answers were a passing fault.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_instance_refresh_is_asked_once() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    w.edit(WEB, "type: t3.micro", "type: t3.small");
    aws.calls.clear();
    let up = stack(&aws.url(), &["up", &file, "--yes"]);
    assert_ok(&up);
    assert_eq!(aws.calls.action("StartInstanceRefresh"), 1, "{}", text(&up));
}

/// A new CIDR for one zone replaces only that zone's subnets (the public one, and the
/// private one derived from it): the new ones are created first, the load balancer
/// and the groups move to them in place, then the old ones go. The load balancer
/// keeps its ARN and DNS name.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_subnet_cidr_moves_the_load_balancer_and_groups_in_place() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    let before = json(&stack(&aws.url(), &["outputs", &file, "--json"]));
    w.edit(
        WEB,
        "{ az: a, cidr: 10.20.1.0/24 }",
        "{ az: a, cidr: 10.20.3.0/24 }",
    );

    let plan = json(&stack(&aws.url(), &["plan", &file, "--json"]));
    let action = |a: &str| {
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["address"] == a)
            .map(|c| {
                (
                    c["action"].as_str().unwrap().to_string(),
                    c["create_before_destroy"] == true,
                )
            })
    };
    assert_eq!(action("subnet.a"), Some(("replace".into(), true)), "{plan}");
    assert_eq!(
        action("subnet.private-a"),
        Some(("replace".into(), true)),
        "{plan}"
    );
    for a in [
        "load_balancer.main",
        "autoscaling_group.web",
        "autoscaling_group.admin",
        "route_table.public",
        "route_table.private",
        "network_acl.main",
    ] {
        assert_eq!(action(a), Some(("update".into(), false)), "{a}: {plan}");
    }
    assert_eq!(plan["summary"]["replace"], 2, "{plan}");
    let human = text(&stack(&aws.url(), &["plan", &file]));
    assert!(human.contains("+/- subnet.a"), "{human}");

    let up = stack(&aws.url(), &["up", &file, "--yes"]);
    assert_ok(&up);
    let after = json(&stack(&aws.url(), &["outputs", &file, "--json"]));
    assert_eq!(
        before["outputs"]["load_balancer_dns"], after["outputs"]["load_balancer_dns"],
        "the load balancer was kept"
    );
    let conf = sdk(&moto.url()).await;
    let subnets = aws_sdk_ec2::Client::new(&conf)
        .describe_subnets()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:stack:name")
                .values("directory")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut cidrs: Vec<&str> = subnets
        .subnets()
        .iter()
        .filter_map(|s| s.cidr_block())
        .collect();
    cidrs.sort();
    assert_eq!(
        cidrs,
        [
            "10.20.130.0/24",
            "10.20.131.0/24",
            "10.20.2.0/24",
            "10.20.3.0/24"
        ]
    );
    let new_a = subnets
        .subnets()
        .iter()
        .find(|s| s.cidr_block() == Some("10.20.131.0/24"))
        .and_then(|s| s.subnet_id())
        .unwrap()
        .to_string();
    let groups = aws_sdk_autoscaling::Client::new(&conf)
        .describe_auto_scaling_groups()
        .send()
        .await
        .unwrap();
    for g in groups.auto_scaling_groups() {
        assert!(
            g.vpc_zone_identifier().unwrap_or_default().contains(&new_a),
            "{:?}",
            g.vpc_zone_identifier()
        );
    }
    assert_converged(&aws.url(), &file);
}

/// Ctrl-C at the confirmation prompt (a real terminal, through `script`'s pty) quits
/// with one message and exit code 130, having changed nothing.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_at_the_prompt_exits_130_with_one_message() {
    use std::io::{Read, Write};
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let command = format!("{} up {}", env!("CARGO_BIN_EXE_stack"), w.file(WEB));
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("AWS_ENDPOINT_URL", aws.url())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("NO_COLOR", "1")
        .env("STACK_PATIENCE_SCALE", "0.02")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs the command in a terminal");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = seen.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let output = || String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    eventually("the confirmation prompt", || {
        output().contains("Only 'yes' will be accepted")
    });
    assert!(output().contains("Apply these changes to stack `directory`"));
    aws.calls.clear();
    child.stdin.as_mut().unwrap().write_all(b"\x03").unwrap();
    // Polled rather than `wait`ed: `wait` would close stdin, an end of input that
    // `script` passes on to the prompt as a second answer.
    let mut status = None;
    eventually("the run to end", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let status = status.unwrap();
    drop(child.stdin.take());
    reader.join().unwrap();
    let out = output();
    assert_eq!(status.code(), Some(130), "{out}");
    assert_eq!(out.matches("interrupted").count(), 1, "{out}");
    assert!(!out.contains("cancelled"), "{out}");
    // Nothing but the release of the stack's lock, taken before the prompt.
    let writes = aws.calls.writes();
    assert!(
        writes
            .iter()
            .all(|(s, a)| s == "dynamodb" && a == "DeleteItem"),
        "{writes:?}"
    );
    assert!(tagged(&moto.url(), "directory").await.is_empty());
}

/// An instance type AWS does not know is named by `plan` and `up` refuses before any
/// write (DescribeInstanceTypes answers `InvalidInstanceType` for the whole call).
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_instance_type_is_refused_before_any_write() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    w.edit(WEB, "type: t3.micro", "type: t3.gigantic");
    for command in ["plan", "up"] {
        let o = stack(
            &aws.url(),
            &[command, &file, "--yes"][..if command == "up" { 3 } else { 2 }],
        );
        assert_eq!(o.status.code(), Some(1), "{command}: {}", text(&o));
        assert!(text(&o).contains("InvalidInstanceType"), "{}", text(&o));
        assert!(text(&o).contains("t3.gigantic"), "{}", text(&o));
    }
    assert!(aws.calls.writes().is_empty(), "{:?}", aws.calls.writes());
}
