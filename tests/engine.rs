//! The core engine end to end: the `stack` binary against a real moto server.

mod support;

use support::*;

const WEB: &str = "stacks/web.yaml";

fn addresses(plan: &serde_json::Value, action: &str) -> Vec<String> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == action)
        .map(|c| c["address"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn full_cycle_plan_up_noop_down() {
    let moto = Moto::start();
    let proxy = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file(WEB);

    let plan = stack(&proxy.url(), &["plan", &file, "--json"]);
    assert_ok(&plan);
    let plan = json(&plan);
    let adds = addresses(&plan, "create");
    for expected in [
        "vpc.main",
        "subnet.a",
        "subnet.b",
        "internet_gateway.main",
        "route_table.public",
        "security_group.alb",
        "security_group.web",
        "security_group.admin",
        "load_balancer.main",
        "target_group.web",
        "target_group.admin",
        "listener.main",
        "listener_rule.admin",
        "launch_template.web",
        "launch_template.admin",
        "autoscaling_group.web",
        "autoscaling_group.admin",
        "scaling_policy.web",
        "scaling_policy.admin",
        "dynamodb_table.main",
        "s3_bucket.main",
        "ssm_parameter.write_token",
        "network_acl.main",
        "flow_log.main",
        "s3_bucket.logs",
    ] {
        assert!(
            adds.contains(&expected.to_string()),
            "{expected} missing from {adds:?}"
        );
    }
    assert_eq!(plan["summary"]["add"], adds.len());
    assert_eq!(plan["summary"]["change"], 0);
    assert!(
        proxy.calls.writes().is_empty(),
        "plan wrote: {:?}",
        proxy.calls.writes()
    );

    let up = stack(&proxy.url(), &["up", &file, "--yes"]);
    assert_ok(&up);
    let out = text(&up);
    assert!(out.contains("Apply complete: 33 created"), "{out}");
    let url_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("url"))
        .expect("url output");
    assert!(url_line.contains("http://directory-alb"), "{url_line}");

    // Converged: plan says so, with the detailed exit code, and `up` writes nothing.
    let again = stack(&proxy.url(), &["plan", &file, "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(text(&again).contains("No changes."), "{}", text(&again));
    proxy.calls.clear();
    let up2 = stack(&proxy.url(), &["up", &file, "--yes"]);
    assert_ok(&up2);
    assert!(text(&up2).contains("No changes."));
    assert!(proxy.calls.total() > 0);
    assert!(
        proxy.calls.writes().is_empty(),
        "second up wrote: {:?}",
        proxy.calls.writes()
    );

    // The resources really carry the stack's tags before down, and none after.
    assert!(tagged(&moto.url(), "directory").await.len() >= 15);
    let down = stack(&proxy.url(), &["down", &file, "--yes"]);
    assert_ok(&down);
    assert!(text(&down).contains("33 destroyed"), "{}", text(&down));
    let left = tagged(&moto.url(), "directory").await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn in_place_update_changes_capacity_and_adds_a_rule() {
    let moto = Moto::start();
    // AWS's own rules where moto is kinder (tests/support/real_aws.rs).
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));

    w.edit(
        WEB,
        "scaling: { min: 2, max: 6, desired: 2, cpu_target: 50 }",
        "scaling: { min: 2, max: 6, desired: 3, cpu_target: 50 }",
    );
    w.edit(
        WEB,
        "    - { path: \"/admin*\", service: admin, priority: 10 }",
        "    - { path: \"/admin*\", service: admin, priority: 10 }\n    - { name: api, path: \"/api/*\", service: web, priority: 20 }",
    );
    w.edit(
        WEB,
        "health: { path: /health, interval: 15,",
        "health: { path: /health, interval: 20,",
    );

    let plan = stack(
        &aws.url(),
        &["plan", &file, "--json", "--detailed-exitcode"],
    );
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let plan = json(&plan);
    assert_eq!(addresses(&plan, "create"), vec!["listener_rule.api"]);
    assert_eq!(
        addresses(&plan, "update"),
        vec!["target_group.web", "autoscaling_group.web"]
    );
    assert!(addresses(&plan, "replace").is_empty());
    assert!(addresses(&plan, "delete").is_empty());
    let asg = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "autoscaling_group.web")
        .unwrap();
    let desired = asg["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "desired_capacity")
        .unwrap();
    assert_eq!(
        (desired["before"].as_i64(), desired["after"].as_i64()),
        (Some(2), Some(3))
    );

    let human = stack(&aws.url(), &["plan", &file]);
    let human = text(&human);
    assert!(human.contains("~ autoscaling_group.web"), "{human}");
    assert!(human.contains("desired_capacity = 2 -> 3"), "{human}");
    assert!(
        human.contains("Plan: 1 to add, 2 to change, 0 to replace, 0 to destroy."),
        "{human}"
    );

    let up = stack(&aws.url(), &["up", &file, "--yes"]);
    assert_ok(&up);
    assert!(
        text(&up).contains("1 created, 2 updated, 0 replaced, 0 destroyed"),
        "{}",
        text(&up)
    );

    // AWS holds the new values.
    let conf = sdk(&moto.url()).await;
    let asg = aws_sdk_autoscaling::Client::new(&conf);
    let g = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("directory-web")
        .send()
        .await
        .unwrap();
    assert_eq!(g.auto_scaling_groups()[0].desired_capacity(), Some(3));
    assert_converged(&aws.url(), &file);
}

#[tokio::test(flavor = "multi_thread")]
async fn down_spares_untagged_and_foreign_resources() {
    let moto = Moto::start();
    // AWS's own rules where moto is kinder (tests/support/real_aws.rs).
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let conf = sdk(&moto.url()).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let untagged = ec2
        .create_vpc()
        .cidr_block("10.20.0.0/16")
        .send()
        .await
        .unwrap();
    let untagged = untagged.vpc().unwrap().vpc_id().unwrap().to_string();
    let tag = |k: &str, v: &str| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
    let foreign = ec2
        .create_vpc()
        .cidr_block("10.30.0.0/16")
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Vpc)
                .tags(tag("stack:name", "other"))
                .tags(tag("stack:address", "vpc.main"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let foreign = foreign.vpc().unwrap().vpc_id().unwrap().to_string();

    let w = Workdir::new();
    let file = w.file(WEB);
    // A whole other stack beside it, of every kind, made by the tool itself.
    std::fs::copy(w.path(WEB), w.path("stacks/shop.yaml")).unwrap();
    w.edit("stacks/shop.yaml", "stack: directory", "stack: shop");
    w.edit(
        "stacks/shop.yaml",
        "name: directory-photos-demo",
        "name: shop-photos-demo",
    );
    assert_ok(&stack(
        &aws.url(),
        &["up", &w.file("stacks/shop.yaml"), "--yes"],
    ));
    let others = owned(&moto.url(), "shop").await;
    assert!(others.len() >= 15, "{others:?}");

    let plan = json(&stack(&aws.url(), &["plan", &file, "--json"]));
    assert!(
        addresses(&plan, "delete").is_empty(),
        "plan would delete: {plan}"
    );
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    // The other stack is being changed by someone right now: its lock is held.
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    let s = |v: &str| aws_sdk_dynamodb::types::AttributeValue::S(v.to_string());
    ddb.put_item()
        .table_name("stack_locks")
        .item("stack", s("shop"))
        .item("holder", s("someone@elsewhere"))
        .item("token", s("theirs"))
        .send()
        .await
        .unwrap();
    let down = stack(&aws.url(), &["down", &file, "--yes"]);
    assert_ok(&down);
    assert!(!text(&down).contains(&untagged) && !text(&down).contains(&foreign));
    for (address, id) in &others {
        assert!(
            !text(&down).contains(id.as_str()),
            "down named {address} {id} of the other stack"
        );
    }
    // The other stack, its lock and the shared lock table are untouched.
    assert_eq!(owned(&moto.url(), "shop").await, others);
    assert_eq!(
        lock_item(&moto.url(), "shop").await.unwrap()["holder"],
        "someone@elsewhere"
    );

    let vpcs = ec2
        .describe_vpcs()
        .vpc_ids(&untagged)
        .vpc_ids(&foreign)
        .send()
        .await
        .unwrap();
    assert_eq!(
        vpcs.vpcs().len(),
        2,
        "a VPC the stack does not own was deleted"
    );
    assert!(tagged(&moto.url(), "directory").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoint_without_elbv2_and_autoscaling_is_named_and_up_changes_nothing() {
    let moto = Moto::start();
    let proxy = Proxy::start(Some(moto.port), &["elasticloadbalancing", "autoscaling"]).await;
    let w = Workdir::new();
    let file = w.file(WEB);

    let plan = stack(&proxy.url(), &["plan", &file]);
    let out = text(&plan);
    assert_eq!(plan.status.code(), Some(1), "{out}");
    assert!(
        out.contains("does not implement Elastic Load Balancing v2"),
        "{out}"
    );
    assert!(out.contains("does not implement Auto Scaling"), "{out}");
    // The rest of the stack is still planned.
    assert!(out.contains("+ vpc.main"), "{out}");
    assert!(!out.contains("load_balancer.main"), "{out}");
    // One probe per missing service, no retry storm: the whole plan is a handful of
    // calls (each 501 retried by the SDK would be ten).
    assert_eq!(proxy.calls.count("elasticloadbalancing"), 1);
    assert_eq!(proxy.calls.count("autoscaling"), 1);
    assert!(
        proxy.calls.total() <= PLAN_CALLS_WITHOUT_ELB_AND_ASG,
        "plan made {} calls",
        proxy.calls.total()
    );

    proxy.calls.clear();
    let up = stack(&proxy.url(), &["up", &file, "--yes"]);
    assert_eq!(up.status.code(), Some(1), "{}", text(&up));
    assert!(text(&up).contains("refusing to apply"), "{}", text(&up));
    assert!(
        proxy.calls.writes().is_empty(),
        "up wrote: {:?}",
        proxy.calls.writes()
    );
    // Refused before taking the stack's lock, with the same few calls as plan.
    assert_eq!(proxy.calls.count("elasticloadbalancing"), 1);
    assert_eq!(proxy.calls.count("autoscaling"), 1);
    assert!(
        proxy.calls.total() <= PLAN_CALLS_WITHOUT_ELB_AND_ASG,
        "up made {} calls",
        proxy.calls.total()
    );
    assert!(tagged(&moto.url(), "directory").await.is_empty());

    // `down` refuses as well rather than leave half a stack behind.
    proxy.calls.clear();
    let down = stack(&proxy.url(), &["down", &file, "--yes"]);
    assert_eq!(down.status.code(), Some(1), "{}", text(&down));
    assert!(
        text(&down).contains("refusing to destroy"),
        "{}",
        text(&down)
    );
    assert!(
        proxy.calls.writes().is_empty(),
        "down wrote: {:?}",
        proxy.calls.writes()
    );
}

/// Read calls of a `plan` of stacks/web.yaml against an empty endpoint lacking ELBv2
/// and Auto Scaling: the probes plus one list per remaining kind (18 when written; 26
/// with the write credential, the network ACL and the flow log; 27 with the VPC
/// endpoints), and room for a few
/// calls repeated when moto answers slowly on a busy machine (seen: 31). A retry storm
/// on the two missing services alone would add 18.
const PLAN_CALLS_WITHOUT_ELB_AND_ASG: u64 = 35;

#[tokio::test(flavor = "multi_thread")]
async fn non_empty_bucket_is_refused_unless_forced() {
    let moto = Moto::start();
    // AWS's own rules where moto is kinder (tests/support/real_aws.rs).
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    let conf = sdk(&moto.url()).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    for body in ["one", "two"] {
        s3.put_object()
            .bucket("directory-photos-demo")
            .key("photos/a.jpg")
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }

    // Refused before the first write: nothing is destroyed, not even what comes first.
    let before = tagged(&moto.url(), "directory").await;
    aws.calls.clear();
    let down = stack(&aws.url(), &["down", &file, "--yes"]);
    assert_eq!(down.status.code(), Some(1), "{}", text(&down));
    let out = text(&down);
    assert!(
        out.contains("removing s3_bucket.main deletes 2 objects"),
        "{out}"
    );
    assert!(out.contains("# deletes 2 objects"), "{out}");
    assert!(out.contains("--force"), "{out}");
    assert!(aws.calls.writes().is_empty(), "{:?}", aws.calls.writes());
    assert_eq!(tagged(&moto.url(), "directory").await, before);
    assert!(
        s3.head_bucket()
            .bucket("directory-photos-demo")
            .send()
            .await
            .is_ok()
    );

    let forced = stack(&aws.url(), &["down", &file, "--yes", "--force"]);
    assert_ok(&forced);
    assert!(
        s3.head_bucket()
            .bucket("directory-photos-demo")
            .send()
            .await
            .is_err()
    );
    assert!(tagged(&moto.url(), "directory").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn up_without_a_terminal_or_yes_refuses() {
    let moto = Moto::start();
    // AWS's own rules where moto is kinder (tests/support/real_aws.rs).
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let up = stack(&aws.url(), &["up", &w.file(WEB)]);
    assert_eq!(up.status.code(), Some(1));
    assert!(text(&up).contains("without --yes"), "{}", text(&up));
    assert!(tagged(&moto.url(), "directory").await.is_empty());
}

/// Resources deleted behind the tool's back (an Auto Scaling group, a listener rule)
/// are found missing by the next plan, which proposes exactly their re-creation; `up`
/// converges.
#[tokio::test(flavor = "multi_thread")]
async fn resources_deleted_out_of_band_are_planned_again_and_nothing_else() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file("stacks/web.yaml");
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    let conf = sdk(&moto.url()).await;
    aws_sdk_autoscaling::Client::new(&conf)
        .delete_auto_scaling_group()
        .auto_scaling_group_name("directory-admin")
        .force_delete(true)
        .send()
        .await
        .unwrap();
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let lbs = elb
        .describe_load_balancers()
        .names("directory-alb")
        .send()
        .await
        .unwrap();
    let lb = lbs.load_balancers()[0].load_balancer_arn().unwrap();
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(lb)
        .send()
        .await
        .unwrap();
    for l in listeners.listeners() {
        let rules = elb
            .describe_rules()
            .listener_arn(l.listener_arn().unwrap())
            .send()
            .await
            .unwrap();
        for r in rules
            .rules()
            .iter()
            .filter(|r| r.is_default() != Some(true))
        {
            elb.delete_rule()
                .rule_arn(r.rule_arn().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    let plan = json(&stack(&aws.url(), &["plan", &file, "--json"]));
    let mut changes: Vec<(String, String)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["address"].as_str().unwrap().to_string(),
                c["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    changes.sort();
    assert_eq!(
        changes,
        [
            ("autoscaling_group.admin".to_string(), "create".to_string()),
            ("listener_rule.admin".to_string(), "create".to_string()),
            ("scaling_policy.admin".to_string(), "create".to_string()),
        ],
        "{plan:#}"
    );
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    assert_converged(&aws.url(), &file);
}

/// `up --json` reports each written resource as AWS holds it after the write (read
/// back, not echoed): the ids AWS gave, references resolved to them.
#[tokio::test(flavor = "multi_thread")]
async fn up_json_reports_what_aws_holds_after_each_write() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    let up = stack(&aws.url(), &["up", &file, "--yes", "--json"]);
    assert_ok(&up);
    let doc = json(&up);
    let resources = doc["resources"].as_object().expect("resources");
    assert_eq!(resources.len(), 33, "{resources:?}");
    let vpc = resources["vpc.main"]["id"].as_str().unwrap();
    assert!(vpc.starts_with("vpc-"), "{vpc}");
    assert_eq!(
        resources["security_group.web"]["attributes"]["vpc_id"], vpc,
        "{resources:?}"
    );
    let group = &resources["autoscaling_group.web"]["attributes"];
    assert_eq!(group["desired_capacity"], 2, "{group}");
    assert_eq!(group["min_size"], 2, "{group}");
    let subnets = group["subnet_ids"].as_array().unwrap();
    assert!(
        !subnets.is_empty()
            && subnets
                .iter()
                .all(|s| s.as_str().unwrap().starts_with("subnet-")),
        "{group}"
    );
}
