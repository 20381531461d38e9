//! The CI contract, end to end against a real moto server: the human and JSON plans of
//! create, in-place update, replace and destroy compared with files in tests/golden/,
//! `status`, saved plans refused when something moved, `plan --detailed-exitcode`'s
//! exit codes, shell completions and `schema`.
//!
//! What differs between runs (ids, ARNs, the account, DNS names, ports, digests, the
//! temporary directory) is replaced by placeholders before comparing; ids are numbered
//! in order of appearance, so a golden file still shows which id refers to which.
//! `UPDATE_GOLDEN=1 cargo nextest run --test golden` rewrites the files; nothing else
//! does.

mod support;

use regex::{Captures, Regex};
use std::collections::HashMap;
use std::path::PathBuf;
use support::*;

/// The stack every test here plans: tests/golden/stack.yaml with its boot script,
/// copied into a temporary directory so tests can edit it.
const STACK: &str = "golden/stack.yaml";

fn fixture() -> Workdir {
    let w = Workdir::new();
    std::fs::create_dir_all(w.path("golden")).unwrap();
    for f in ["stack.yaml", "boot.sh"] {
        std::fs::copy(golden_path(f), w.path("golden").join(f)).unwrap();
    }
    w
}

/// Replaces what varies between runs with stable placeholders.
fn normalize(text: &str, w: &Workdir) -> String {
    let dir = w.dir.path().to_string_lossy().into_owned();
    let mut out = text.replace(&dir, "<workdir>");
    let mut numbered: HashMap<String, HashMap<String, usize>> = HashMap::new();
    let mut number = |class: &str, value: &str| {
        let seen = numbered.entry(class.to_string()).or_default();
        let n = seen.len() + 1;
        *seen.entry(value.to_string()).or_insert(n)
    };
    let rules: [(&str, &str); 6] = [
        // EC2 ids: vpc-0a1b…, subnet-…, sg-…
        (
            r"\b(vpc|subnet|igw|rtb|rtbassoc|sg|sgr|lt|ami|i|eni|acl|fl|vpce)-([0-9a-f]{8,17})\b",
            "id",
        ),
        // The hashes at the end of ELBv2 ARNs.
        (r"/([0-9a-f]{16})\b", "hash"),
        // The load balancer's DNS name: <name>-<random>.<region>.elb.amazonaws.com
        (
            r"([a-z0-9-]+)-([0-9]+)\.([a-z0-9-]+)\.elb\.amazonaws\.com",
            "dns",
        ),
        (r"\b(127\.0\.0\.1|localhost):([0-9]+)", "port"),
        (r"\b([0-9a-f]{64})\b", "sha256"),
        (r"\b([0-9]{12})\b", "account"),
    ];
    for (pattern, class) in rules {
        let re = Regex::new(pattern).unwrap();
        out = re
            .replace_all(&out, |c: &Captures| match class {
                "id" => format!("{}-<{}>", &c[1], number(&c[1], &c[2])),
                "hash" => format!("/<hash{}>", number(class, &c[1])),
                "dns" => format!("{}-<n>.{}.elb.amazonaws.com", &c[1], &c[3]),
                "port" => format!("{}:<port>", &c[1]),
                _ => format!("<{class}>"),
            })
            .into_owned();
    }
    out
}

fn golden_path(name: &str) -> PathBuf {
    root().join("tests/golden").join(name)
}

/// Compares `actual` with tests/golden/`name`, or rewrites the file with
/// `UPDATE_GOLDEN=1`.
fn golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); create it with UPDATE_GOLDEN=1 cargo nextest run --test golden",
            path.display()
        )
    });
    if expected == actual {
        return;
    }
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let mut diff = String::new();
    for i in 0..e.len().max(a.len()) {
        let (x, y) = (e.get(i), a.get(i));
        if x != y {
            diff.push_str(&format!(
                "line {}:\n  golden: {}\n  actual: {}\n",
                i + 1,
                x.unwrap_or(&"<none>"),
                y.unwrap_or(&"<none>")
            ));
            if diff.lines().count() > 30 {
                break;
            }
        }
    }
    panic!(
        "{} differs from the output:\n{diff}\nIf the change is intended, rewrite the file with UPDATE_GOLDEN=1 cargo nextest run --test golden and review the diff.\n--- actual ---\n{actual}",
        path.display()
    );
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `plan` as text and as JSON, both compared with their golden files; returns the JSON.
fn plan_goldens(endpoint: &str, w: &Workdir, name: &str) -> serde_json::Value {
    let file = w.file(STACK);
    let human = stack(endpoint, &["plan", &file, "--detailed-exitcode"]);
    assert_eq!(human.status.code(), Some(2), "{}", text(&human));
    golden(&format!("{name}.txt"), &normalize(&stdout(&human), w));
    let machine = stack(endpoint, &["plan", &file, "--json"]);
    assert_ok(&machine);
    golden(&format!("{name}.json"), &normalize(&stdout(&machine), w));
    json(&machine)
}

fn actions(plan: &serde_json::Value) -> Vec<(String, String)> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["action"].as_str().unwrap().to_string(),
                c["address"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn normalize_numbers_ids_and_hides_what_varies() {
    let w = fixture();
    let raw = format!(
        "vpc-0a1b2c3d4e5f60718 subnet-11112222 vpc-0a1b2c3d4e5f60718 vpc-99998888\n\
         arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/directory-web/0123456789abcdef\n\
         http://directory-alb-1234567.us-east-1.elb.amazonaws.com/ http://127.0.0.1:45123\n\
         {} {}\n",
        "ab".repeat(32),
        w.file(STACK)
    );
    assert_eq!(
        normalize(&raw, &w),
        "vpc-<1> subnet-<1> vpc-<1> vpc-<2>\n\
         arn:aws:elasticloadbalancing:us-east-1:<account>:targetgroup/directory-web/<hash1>\n\
         http://directory-alb-<n>.us-east-1.elb.amazonaws.com/ http://127.0.0.1:<port>\n\
         <sha256> <workdir>/golden/stack.yaml\n"
    );
}

/// One stack through its life: planned from nothing, created, changed in place, forced
/// into replacements, shrunk, and destroyed; every plan compared with its golden file.
#[tokio::test(flavor = "multi_thread")]
async fn plan_goldens_for_create_update_replace_destroy() {
    let moto = Moto::start();
    // AWS's own rules where moto is kinder (tests/support/real_aws.rs).
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let url = aws.url();
    let w = fixture();
    let file = w.file(STACK);

    let create = plan_goldens(&url, &w, "plan-create");
    assert!(
        actions(&create).iter().all(|(a, _)| a == "create"),
        "{create}"
    );
    let total = actions(&create).len();
    assert_eq!(create["summary"]["add"], total);
    let up = stack(&url, &["up", &file, "--yes"]);
    assert_ok(&up);
    assert!(
        text(&up).contains(&format!("Apply complete: {total} created")),
        "{}",
        text(&up)
    );

    // In place: capacity and CPU target of one service, who may reach the listener.
    let edits = [
        (
            "scaling: { min: 2, max: 6, desired: 2, cpu_target: 50 }",
            "scaling: { min: 2, max: 6, desired: 3, cpu_target: 60 }",
        ),
        ("ingress: [0.0.0.0/0]", "ingress: [10.0.0.0/8]"),
    ];
    for (from, to) in edits {
        w.edit(STACK, from, to);
    }
    let update = plan_goldens(&url, &w, "plan-update");
    assert!(
        actions(&update).iter().all(|(a, _)| a == "update"),
        "{update}"
    );
    for (from, to) in edits {
        w.edit(STACK, to, from);
    }

    // Replacement: a new partition key for the table, a new CIDR for a subnet (and
    // everything that holds the subnet's id with it).
    let edits = [
        (
            "partition_key: { name: id, type: S }",
            "partition_key: { name: employee_id, type: S }",
        ),
        (
            "{ az: b, cidr: 10.20.2.0/24 }",
            "{ az: b, cidr: 10.20.3.0/24 }",
        ),
    ];
    for (from, to) in edits {
        w.edit(STACK, from, to);
    }
    let replace = plan_goldens(&url, &w, "plan-replace");
    let replaced: Vec<String> = actions(&replace)
        .into_iter()
        .filter(|(a, _)| a == "replace")
        .map(|(_, address)| address)
        .collect();
    assert!(
        replaced.contains(&"dynamodb_table.main".to_string())
            && replaced.contains(&"subnet.b".to_string()),
        "{replaced:?}"
    );
    let human = std::fs::read_to_string(golden_path("plan-replace.txt")).unwrap();
    assert!(
        human.contains("-/+ dynamodb_table.main") && human.contains("# forces replacement"),
        "{human}"
    );
    for (from, to) in edits {
        w.edit(STACK, to, from);
    }

    // Converged again after the edits were undone.
    let same = stack(&url, &["plan", &file, "--detailed-exitcode"]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));

    // Destroy: the admin service and its rule leave the file; nothing else refers to
    // them, so the plan only deletes.
    let body = std::fs::read_to_string(w.path(STACK)).unwrap();
    let admin = body.find("  admin:\n").unwrap()..body.find("table:").unwrap();
    let rule = "  rules:\n    - { path: \"/admin*\", service: admin, priority: 10 }\n";
    let shrunk = format!("{}{}", &body[..admin.start], &body[admin.end..]).replace(rule, "");
    assert!(!shrunk.contains("admin"), "{shrunk}");
    std::fs::write(w.path(STACK), shrunk).unwrap();
    let destroy = plan_goldens(&url, &w, "plan-destroy");
    let mut gone: Vec<String> = actions(&destroy)
        .into_iter()
        .map(|(a, address)| {
            assert_eq!(a, "delete", "{destroy}");
            address
        })
        .collect();
    gone.sort();
    assert_eq!(
        gone,
        [
            "autoscaling_group.admin",
            "launch_template.admin",
            "listener_rule.admin",
            "scaling_policy.admin",
            "security_group.admin",
            "target_group.admin",
        ]
    );

    // `down` shows the whole destroy plan before doing it.
    let down = stack(&url, &["down", &file, "--yes"]);
    assert_ok(&down);
    golden("down.txt", &normalize(&stdout(&down), &w));
    assert!(
        text(&down).contains(&format!("Destroy complete: {total} destroyed")),
        "{}",
        text(&down)
    );
    assert!(tagged(&url, "golden").await.is_empty());
}

/// `status` of a stack that does not exist, of a running one, and of one whose group
/// AWS resized; it only reads, and only discovers (no AMI lookup, no build).
#[tokio::test(flavor = "multi_thread")]
async fn status_summarises_resources_groups_and_target_health() {
    let moto = Moto::start();
    // AWS's own rules where moto is kinder (tests/support/real_aws.rs).
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let proxy = Proxy::start(Some(moto.port), &[]).await;
    let w = fixture();
    let file = w.file(STACK);

    let none = stack(&proxy.url(), &["status", &file]);
    assert_ok(&none);
    golden("status-none.txt", &normalize(&stdout(&none), &w));
    let none = stack(&proxy.url(), &["status", &file, "--json"]);
    assert_ok(&none);
    golden("status-none.json", &normalize(&stdout(&none), &w));
    let none = json(&none);
    assert_eq!(none["exists"], false);
    assert_eq!(none["resources"].as_array().unwrap().len(), 0);
    let plan = json(&stack(&aws.url(), &["plan", &file, "--json"]));
    let mut planned: Vec<String> = actions(&plan).into_iter().map(|(_, a)| a).collect();
    planned.sort();

    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    proxy.calls.clear();
    let human = stack(&proxy.url(), &["status", &file]);
    assert_ok(&human);
    golden("status.txt", &normalize(&stdout(&human), &w));
    let machine = stack(&proxy.url(), &["status", &file, "--json"]);
    assert_ok(&machine);
    golden("status.json", &normalize(&stdout(&machine), &w));
    assert!(
        proxy.calls.writes().is_empty(),
        "status wrote: {:?}",
        proxy.calls.writes()
    );
    // No AMI lookup, no identity call: status only reads what the stack owns.
    assert_eq!(
        proxy.calls.action("GetParameter") + proxy.calls.count("sts"),
        0
    );

    let s = json(&machine);
    assert_eq!(s["format_version"], 1);
    assert_eq!(s["exists"], true);
    let mut shown: Vec<String> = s["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap().to_string())
        .collect();
    shown.sort();
    assert_eq!(shown, planned);
    assert_eq!(s["load_balancer"]["state"], "active");
    assert!(
        s["load_balancer"]["url"]
            .as_str()
            .unwrap()
            .starts_with("http://golden-alb"),
        "{s}"
    );
    // AWS's own view of the groups, checked against what the tool reports.
    let conf = sdk(&moto.url()).await;
    let asg = aws_sdk_autoscaling::Client::new(&conf);
    let live = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("golden-web")
        .send()
        .await
        .unwrap();
    let live = &live.auto_scaling_groups()[0];
    let web = s["autoscaling_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["address"] == "autoscaling_group.web")
        .unwrap();
    assert_eq!(web["desired"], live.desired_capacity().unwrap());
    assert_eq!(
        (web["min"].as_i64(), web["max"].as_i64()),
        (Some(2), Some(6))
    );
    assert_eq!(web["instances"], live.instances().len());
    assert_eq!(web["in_service"], 2);
    let tg = s["target_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["address"] == "target_group.web")
        .unwrap();
    assert_eq!(
        tg["total"].as_u64().unwrap(),
        tg["healthy"].as_u64().unwrap()
            + tg["unhealthy"].as_u64().unwrap()
            + tg["initial"].as_u64().unwrap()
            + tg["other"].as_u64().unwrap(),
        "{tg}"
    );
    assert_eq!(tg["total"], 2, "{tg}");

    // AWS moved on (target tracking, an operator): status shows the live numbers.
    asg.set_desired_capacity()
        .auto_scaling_group_name("golden-web")
        .desired_capacity(3)
        .send()
        .await
        .unwrap();
    let moved = json(&stack(&proxy.url(), &["status", &file, "--json"]));
    let web = moved["autoscaling_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["address"] == "autoscaling_group.web")
        .unwrap()
        .clone();
    assert_eq!(web["desired"], 3, "{web}");
    assert_eq!(web["instances"], 3, "{web}");

    // An endpoint without ELBv2 and Auto Scaling (LocalStack's community edition):
    // status names them, shows the rest, and is still a successful read.
    let partial = Proxy::start(Some(moto.port), &["elasticloadbalancing", "autoscaling"]).await;
    let o = stack(&partial.url(), &["status", &file]);
    assert_ok(&o);
    let out = text(&o);
    for missing in ["Elastic Load Balancing v2", "Auto Scaling"] {
        assert!(
            out.contains(&format!("does not implement {missing}")),
            "{out}"
        );
    }
    assert!(
        out.contains("vpc.main") && out.contains("dynamodb_table.main"),
        "{out}"
    );
    assert!(!out.contains("load_balancer.main"), "{out}");
    assert!(
        partial.calls.writes().is_empty(),
        "{:?}",
        partial.calls.writes()
    );
}

/// `up --plan` applies a saved plan only while neither the file nor AWS moved.
#[tokio::test(flavor = "multi_thread")]
async fn saved_plan_is_refused_once_the_file_or_the_live_resources_moved() {
    let moto = Moto::start();
    // AWS's own rules where moto is kinder (tests/support/real_aws.rs).
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let url = aws.url();
    let w = fixture();
    let file = w.file(STACK);
    let saved = w.file("plan.json");

    let plan = stack(&url, &["plan", &file, "--out", &saved]);
    assert_ok(&plan);
    assert!(text(&plan).contains("Saved the plan to"), "{}", text(&plan));

    // The stack file changed.
    let (from, to) = ("desired: 2, cpu_target: 50", "desired: 3, cpu_target: 50");
    w.edit(STACK, from, to);
    let up = stack(&url, &["up", &file, "--plan", &saved, "--yes"]);
    assert_eq!(up.status.code(), Some(1), "{}", text(&up));
    assert!(
        text(&up).contains("changed since the plan was made"),
        "{}",
        text(&up)
    );
    assert!(tagged(&url, "golden").await.is_empty());
    w.edit(STACK, to, from);

    // The live resources changed: a VPC of this stack appeared out of band.
    let conf = sdk(&url).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let tag = |k: &str, v: &str| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.20.0.0/16")
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Vpc)
                .tags(tag("stack:name", "golden"))
                .tags(tag("stack:address", "vpc.main"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let up = stack(&url, &["up", &file, "--plan", &saved, "--yes"]);
    assert_eq!(up.status.code(), Some(1), "{}", text(&up));
    assert!(
        text(&up).contains("the live resources changed since the plan was made"),
        "{}",
        text(&up)
    );
    assert_eq!(tagged(&url, "golden").await, vec![format!("vpc {vpc}")]);

    // As it was when planned: the saved plan applies.
    ec2.delete_vpc().vpc_id(&vpc).send().await.unwrap();
    let up = stack(&url, &["up", &file, "--plan", &saved, "--yes"]);
    assert_ok(&up);
    assert!(text(&up).contains("Apply complete:"), "{}", text(&up));
    let again = stack(&url, &["plan", &file, "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
}

/// 0 without changes and 2 with them are checked in tests/engine.rs; an error is 1,
/// even when there are changes too.
#[tokio::test(flavor = "multi_thread")]
async fn detailed_exitcode_is_1_on_errors() {
    let w = fixture();
    let file = w.file(STACK);

    // Nothing listens there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let o = stack(&dead, &["plan", &file, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("nothing answers at"), "{}", text(&o));

    // An invalid file.
    let bad = root().join("tests/invalid/unknown-top-key.yaml");
    let o = stack(&dead, &["plan", path_str(&bad), "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("nothing was sent to AWS"), "{}", text(&o));

    // Changes pending, but the endpoint lacks a service `up` needs: the error wins.
    let moto = Moto::start();
    let proxy = Proxy::start(Some(moto.port), &["autoscaling"]).await;
    let o = stack(&proxy.url(), &["plan", &file, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("+ vpc.main"), "{}", text(&o));
}

/// Each shell's script offers every subcommand clap knows, in that shell's own syntax,
/// and the flags of `plan`.
#[test]
fn completions_name_every_command() {
    use clap::CommandFactory;
    let commands: Vec<String> = stack::cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    assert!(
        ["plan", "up", "down", "status", "schema", "outputs"]
            .iter()
            .all(|c| commands.iter().any(|k| k == c)),
        "{commands:?}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_stack"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_ok(&o);
        let out = stdout(&o);
        let top_level = out
            .lines()
            .find(|l| l.contains("opts=") && l.contains("--version"))
            .unwrap_or_default();
        for c in &commands {
            let offered = match shell {
                "bash" => top_level.split([' ', '"']).any(|w| w == c),
                "zsh" => out.contains(&format!("'{c}:")),
                _ => out.contains(&format!("-a \"{c}\"")),
            };
            assert!(offered, "{shell} completions do not offer `{c}`:\n{out}");
        }
        assert!(out.contains("detailed-exitcode"), "{shell}: {out}");
    }
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_stack"))
        .arg("schema")
        .output()
        .unwrap();
    assert_ok(&o);
    let committed = std::fs::read_to_string(root().join("schema/stack.schema.json")).unwrap();
    assert!(
        stdout(&o) == committed,
        "schema/stack.schema.json is stale; regenerate it with: cargo run -q -- schema > schema/stack.schema.json"
    );
    let schema: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(schema["title"], "stack file");
}
