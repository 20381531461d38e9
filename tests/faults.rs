//! Surviving real AWS: the `stack` binary against moto behind the fault-injecting proxy
//! (tests/support/proxy.rs) — throttling, 5xx, eventual consistency, lingering
//! interfaces, slow readiness, crashes, Ctrl-C, concurrent runs and exhausted retries.

mod support;

use std::collections::BTreeMap;
use support::*;

const WEB: &str = "stacks/web.yaml";
const STACK: &str = "directory";

/// The addresses the plan would create, of the kinds `owned` can see.
fn expected_addresses(endpoint: &str, file: &str) -> Vec<String> {
    let plan = stack(endpoint, &["plan", file, "--json"]);
    assert_ok(&plan);
    let kinds = [
        "vpc.",
        "subnet.",
        "internet_gateway.",
        "route_table.",
        "security_group.",
        "launch_template.",
        "load_balancer.",
        "target_group.",
        "autoscaling_group.",
        "dynamodb_table.",
        "s3_bucket.",
    ];
    let mut out: Vec<String> = json(&plan)["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "create")
        .map(|c| c["address"].as_str().unwrap().to_string())
        .filter(|a| kinds.iter().any(|k| a.starts_with(k)))
        .collect();
    out.sort();
    out
}

/// Exactly one live resource per address, and exactly the addresses expected.
async fn assert_one_of_each(endpoint: &str, expected: &[String]) {
    let owned = owned(endpoint, STACK).await;
    let mut count: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, id) in &owned {
        count.entry(a.as_str()).or_default().push(id.as_str());
    }
    let dupes: Vec<_> = count.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(dupes.is_empty(), "created twice: {dupes:?}");
    for a in expected {
        assert!(
            count.contains_key(a.as_str()),
            "{a} missing; have {:?}",
            count.keys()
        );
    }
}

fn writes_other_than_lock(calls: &[(String, String)]) -> Vec<(String, String)> {
    calls
        .iter()
        .filter(|(s, a)| {
            let read = ["Describe", "List", "Get", "Head"]
                .iter()
                .any(|p| a.starts_with(p));
            // The lock's own writes (DynamoDB items) are not changes to the stack.
            let lock = s == "dynamodb" && a.ends_with("Item");
            !read && !lock
        })
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn converges_through_throttling_5xx_eventual_consistency_and_lingering_interfaces() {
    let moto = Moto::start();
    // FAULT_SEED=n replays another sequence of faults.
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let proxy = Proxy::with_faults(Some(moto.port), Faults::aws_like(seed)).await;
    let w = Workdir::new();
    let file = w.file(WEB);

    let up = stack(&proxy.url(), &["up", &file, "--yes"]);
    assert_ok(&up);
    assert!(text(&up).contains("Apply complete"), "{}", text(&up));
    // Every kind of fault really happened on the way.
    for kind in [
        "throttle",
        "5xx",
        "not_found",
        "provisioning",
        "initial",
        "profile_invalid",
    ] {
        assert!(
            proxy.injected(kind) > 0,
            "no {kind} injected: {:?}",
            proxy.injected_all()
        );
    }
    let owned_now = owned(&moto.url(), STACK).await;
    let mut addresses: Vec<&String> = owned_now.iter().map(|(a, _)| a).collect();
    let before = addresses.len();
    addresses.dedup();
    assert_eq!(before, addresses.len(), "duplicates: {owned_now:?}");

    // Converged: a second run, still under faults, changes nothing.
    proxy.calls.clear();
    let again = stack(&proxy.url(), &["up", &file, "--yes"]);
    assert_ok(&again);
    assert!(text(&again).contains("No changes."), "{}", text(&again));
    assert!(proxy.calls.total() > 0);
    assert!(
        proxy.calls.writes().is_empty(),
        "second up wrote: {:?}",
        proxy.calls.writes()
    );

    let down = stack(&proxy.url(), &["down", &file, "--yes"]);
    assert_ok(&down);
    assert!(
        proxy.injected("dependency") > 0,
        "no lingering interfaces injected: {:?}",
        proxy.injected_all()
    );
    let left = tagged(&moto.url(), STACK).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Kills `up` while `action` is held, then checks the next runs: the lock the killed
/// run left names it, `--break-lock` clears it, and `up` converges with exactly one of
/// each resource.
async fn killed_up_then_converges(action: &str, when: When) {
    let moto = Moto::start();
    let proxy = Proxy::with_faults(Some(moto.port), Faults::real()).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    let expected = expected_addresses(&proxy.url(), &file);

    // One step at a time, so the kill lands exactly at the held call, not also at
    // whatever other step happened to be half done.
    let hold = proxy.hold(action, when);
    let run = spawn_stack(&proxy.url(), &["up", &file, "--yes", "--parallelism", "1"]);
    hold.reached().await;
    let pid = run.pid();
    run.signal("KILL");
    let killed = run.wait();
    assert_eq!(killed.status.code(), None, "not killed: {}", text(&killed));
    // A call held before it reached moto dies with the run.
    hold.abandon();

    // The killed run's lock is still there and names it.
    let blocked = stack(&proxy.url(), &["up", &file, "--yes"]);
    assert_eq!(blocked.status.code(), Some(1), "{}", text(&blocked));
    let out = text(&blocked);
    assert!(out.contains("locked by"), "{out}");
    assert!(out.contains(&format!("pid {pid}")), "{out}");
    assert!(out.contains("--break-lock"), "{out}");

    let up = stack(&proxy.url(), &["up", &file, "--yes", "--break-lock"]);
    assert_ok(&up);
    assert!(text(&up).contains("broke the lock"), "{}", text(&up));
    assert!(text(&up).contains("Apply complete"), "{}", text(&up));
    assert_one_of_each(&moto.url(), &expected).await;
    let plan = stack(&proxy.url(), &["plan", &file, "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(lock_item(&moto.url(), STACK).await.is_none(), "lock kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_right_after_the_vpc_is_created() {
    // The VPC exists; the run never learned its id.
    killed_up_then_converges("CreateVpc", When::After).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_between_a_security_group_and_its_rules() {
    // The group exists without its ingress rules: the next run must add them.
    killed_up_then_converges("AuthorizeSecurityGroupIngress", When::Before).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_way_through_the_load_balancer() {
    // The load balancer exists but the run never saw the answer, nor waited for it.
    killed_up_then_converges("CreateLoadBalancer", When::After).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_the_auto_scaling_wait() {
    // The groups exist; the run is waiting for healthy targets.
    killed_up_then_converges("DescribeTargetHealth", When::Before).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_during_up_finishes_calls_in_flight_and_starts_nothing_new() {
    let moto = Moto::start();
    // The load balancer never becomes active: only Ctrl-C can end its wait.
    let proxy = Proxy::with_faults(
        Some(moto.port),
        Faults {
            provisioning: u32::MAX,
            ..Faults::real()
        },
    )
    .await;
    let w = Workdir::new();
    let file = w.file(WEB);

    let hold = proxy.hold("CreateLoadBalancer", When::Before);
    let run = spawn_stack(&proxy.url(), &["up", &file, "--yes", "--parallelism", "1"]);
    hold.reached().await;
    // With one step at a time, the load balancer's is the only one in flight.
    let mark = proxy.calls.mark();
    run.signal("INT");
    eventually("the interrupt to be acknowledged", || {
        run.text().contains("no new step starts")
    });
    hold.release();
    let out = run.wait();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(130), "{all}");

    // The call in flight went through; nothing new was started after it.
    let after = proxy.calls.since(mark);
    assert!(
        writes_other_than_lock(&after).is_empty(),
        "started after Ctrl-C: {after:?}\n{all}"
    );
    assert!(
        owned(&moto.url(), STACK)
            .await
            .iter()
            .any(|(a, _)| a == "load_balancer.main")
    );
    // It says what is done and what is not.
    assert!(all.contains("Done (these changes stay in place):"), "{all}");
    assert!(all.contains("  vpc.main created"), "{all}");
    assert!(all.contains("Not done:"), "{all}");
    assert!(
        all.contains("load_balancer.main creating failed")
            && all.contains("interrupted while waiting for the load balancer to become active"),
        "{all}"
    );
    // Which steps had not started depends on the graph's shape; some had not.
    assert!(all.contains("creating not started"), "{all}");
    assert!(
        all.contains("listener.main creating skipped: load_balancer.main creating failed"),
        "{all}"
    );
    assert!(all.contains("Interrupted. Stopped with work left"), "{all}");
    assert!(
        lock_item(&moto.url(), STACK).await.is_none(),
        "lock not released"
    );

    // The next run (no --break-lock needed) converges.
    proxy.set_faults(|f| f.provisioning = 0);
    let up = stack(&proxy.url(), &["up", &file, "--yes"]);
    assert_ok(&up);
    let plan = stack(&proxy.url(), &["plan", &file, "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

/// A second Ctrl-C quits at once, without waiting for the call in flight: the run
/// returns "interrupted" (exit 130) with the lock released, and the next run converges.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_ctrl_c_quits_at_once_and_releases_the_lock() {
    let moto = Moto::start();
    let proxy = Proxy::with_faults(Some(moto.port), Faults::real()).await;
    let w = Workdir::new();
    let file = w.file(WEB);

    let hold = proxy.hold("CreateLoadBalancer", When::Before);
    let run = spawn_stack(&proxy.url(), &["up", &file, "--yes", "--parallelism", "1"]);
    hold.reached().await;
    run.signal("INT");
    eventually("the interrupt to be acknowledged", || {
        run.text().contains("no new step starts")
    });
    // The load balancer's call is still held: only quitting ends the run now.
    run.signal("INT");
    let out = run.wait();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(130), "{all}");
    assert!(
        all.contains("stack: quitting; run the same command again to converge"),
        "{all}"
    );
    assert!(
        lock_item(&moto.url(), STACK).await.is_none(),
        "lock not released: {all}"
    );
    // The quitting run dropped its connection: the held call never reaches AWS.
    hold.abandon();

    let up = stack(&proxy.url(), &["up", &file, "--yes"]);
    assert_ok(&up);
    let plan = stack(&proxy.url(), &["plan", &file, "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_during_down_finishes_calls_in_flight_and_starts_nothing_new() {
    let moto = Moto::start();
    let proxy = Proxy::with_faults(Some(moto.port), Faults::real()).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    assert_ok(&stack(&proxy.url(), &["up", &file, "--yes"]));

    let hold = proxy.hold("DeleteLoadBalancer", When::Before);
    let run = spawn_stack(
        &proxy.url(),
        &["down", &file, "--yes", "--parallelism", "1"],
    );
    hold.reached().await;
    let mark = proxy.calls.mark();
    run.signal("INT");
    eventually("the interrupt to be acknowledged", || {
        run.text().contains("no new step starts")
    });
    hold.release();
    let out = run.wait();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(130), "{all}");
    let after = proxy.calls.since(mark);
    assert!(
        writes_other_than_lock(&after).is_empty(),
        "started after Ctrl-C: {after:?}\n{all}"
    );
    // The delete in flight finished.
    assert!(all.contains("load_balancer.main destroyed"), "{all}");
    assert!(
        !owned(&moto.url(), STACK)
            .await
            .iter()
            .any(|(a, _)| a == "load_balancer.main")
    );
    assert!(all.contains("Not done:"), "{all}");
    assert!(all.contains("vpc.main destroying not started"), "{all}");
    assert!(!tagged(&moto.url(), STACK).await.is_empty());

    let down = stack(&proxy.url(), &["down", &file, "--yes"]);
    assert_ok(&down);
    let left = tagged(&moto.url(), STACK).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn second_up_fails_fast_naming_the_holder_or_waits_with_lock_timeout() {
    let moto = Moto::start();
    let proxy = Proxy::with_faults(Some(moto.port), Faults::real()).await;
    let w = Workdir::new();
    let file = w.file(WEB);

    // One step at a time: while its first call is held, the first run makes no other.
    let hold = proxy.hold("CreateVpc", When::Before);
    let first = spawn_stack(&proxy.url(), &["up", &file, "--yes", "--parallelism", "1"]);
    hold.reached().await;
    let lock = lock_item(&moto.url(), STACK)
        .await
        .expect("first run holds the lock");
    assert_eq!(lock["pid"], first.pid().to_string());
    assert_eq!(lock["command"], "up");

    let mark = proxy.calls.mark();
    let second = stack(&proxy.url(), &["up", &file, "--yes"]);
    let out = text(&second);
    assert_eq!(second.status.code(), Some(1), "{out}");
    assert!(out.contains("stack `directory`: locked by"), "{out}");
    assert!(out.contains(&lock["holder"]), "{out}");
    assert!(out.contains(&format!("pid {}", first.pid())), "{out}");
    assert!(out.contains("`up`"), "{out}");
    // It changed nothing while the first run held the stack.
    assert!(
        writes_other_than_lock(&proxy.calls.since(mark)).is_empty(),
        "{:?}",
        proxy.calls.since(mark)
    );

    // A third run waits for the lock instead, then finds nothing left to do.
    let puts = proxy.calls.action("PutItem");
    let third = spawn_stack(
        &proxy.url(),
        &["up", &file, "--yes", "--lock-timeout", "60"],
    );
    eventually("the third run to wait for the lock", || {
        proxy.calls.action("PutItem") > puts && third.text().contains("waiting up to 60s")
    });
    hold.release();
    assert_ok(&first.wait());
    let third = third.wait();
    assert_ok(&third);
    assert!(text(&third).contains("No changes."), "{}", text(&third));
    assert!(lock_item(&moto.url(), STACK).await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn break_lock_removes_a_stale_lock_explicitly() {
    let moto = Moto::start();
    // AWS's own rules where moto is kinder (tests/support/real_aws.rs).
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    // A lock left by a run on another machine that died.
    let conf = sdk(&moto.url()).await;
    create_lock_table(&moto.url()).await;
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    use aws_sdk_dynamodb::types::*;
    let s = |v: &str| AttributeValue::S(v.to_string());
    ddb.put_item()
        .table_name("stack_locks")
        .item("stack", s(STACK))
        .item("holder", s("ghost@elsewhere"))
        .item("pid", AttributeValue::N("4242".into()))
        .item("command", s("down"))
        .item("since", AttributeValue::N("1700000000".into()))
        .item("token", s("deadbeef"))
        .send()
        .await
        .unwrap();

    let blocked = stack(&aws.url(), &["up", &file, "--yes"]);
    assert_eq!(blocked.status.code(), Some(1), "{}", text(&blocked));
    assert!(
        text(&blocked)
            .contains("locked by ghost@elsewhere (pid 4242, `down`, since 2023-11-14T22:13:20Z"),
        "{}",
        text(&blocked)
    );
    assert!(tagged(&moto.url(), STACK).await.is_empty());

    let up = stack(&aws.url(), &["up", &file, "--yes", "--break-lock"]);
    assert_ok(&up);
    assert!(
        text(&up).contains("broke the lock of stack `directory` held by ghost@elsewhere"),
        "{}",
        text(&up)
    );
    assert!(lock_item(&moto.url(), STACK).await.is_none());
    assert!(!tagged(&moto.url(), STACK).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_retries_name_the_code_the_resource_and_what_is_left() {
    let moto = Moto::start();
    let proxy = Proxy::with_faults(
        Some(moto.port),
        Faults {
            throttle_actions: BTreeMap::from([("CreateTargetGroup".to_string(), 1.0)]),
            ..Faults::real()
        },
    )
    .await;
    let w = Workdir::new();
    let file = w.file(WEB);

    let up = stack(&proxy.url(), &["up", &file, "--yes"]);
    let out = text(&up);
    assert_eq!(up.status.code(), Some(1), "{out}");
    // Bounded: exactly 10 attempts per target group (two of them), then it gave up.
    assert_eq!(proxy.calls.action("CreateTargetGroup"), 20, "{out}");
    assert!(
        out.contains("target_group.web creating failed: creating target_group.web: Throttling: Rate exceeded (retries exhausted: still throttled after up to 10 attempts"),
        "{out}"
    );
    // With AWS's id for the request, for a support case or CloudTrail.
    assert!(
        out.lines()
            .any(|l| l.contains("target_group.web creating failed")
                && l.contains("(request id ")
                && l.contains("-fault-")),
        "{out}"
    );
    // What was left in place, and what was not done.
    assert!(out.contains("Done (these changes stay in place):"), "{out}");
    assert!(out.contains("  vpc.main created"), "{out}");
    assert!(out.contains("  load_balancer.main created"), "{out}");
    assert!(
        out.contains("listener.main creating skipped: target_group.web creating failed"),
        "{out}"
    );
    assert!(out.contains("Stopped with work left"), "{out}");
    assert!(lock_item(&moto.url(), STACK).await.is_none(), "lock kept");

    // Once AWS lets go, the next run (no --break-lock: the lock was released on
    // failure) finishes the job.
    proxy.set_faults(|f| f.throttle_actions.clear());
    let again = stack(&proxy.url(), &["up", &file, "--yes"]);
    assert_ok(&again);
    let plan = stack(&proxy.url(), &["plan", &file, "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

/// A request that never gets an answer fails its step with the root cause; `-v`
/// shows every cause under it.
#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_connection_names_its_cause_and_v_shows_the_chain() {
    let moto = Moto::start();
    let proxy = Proxy::with_faults(
        Some(moto.port),
        Faults {
            hang_up_actions: ["CreateTargetGroup".to_string()].into(),
            ..Faults::real()
        },
    )
    .await;
    let w = Workdir::new();
    let file = w.file(WEB);
    let failed_line = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("target_group.web: creating failed"))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no failure line in {out}"))
    };

    let up = stack(&proxy.url(), &["up", &file, "--yes"]);
    let out = text(&up);
    assert_eq!(up.status.code(), Some(1), "{out}");
    assert!(proxy.injected("hang_up") > 0, "{out}");
    let line = failed_line(&out);
    assert!(
        line.contains("creating target_group.web: ConnectionError: "),
        "{line}"
    );
    assert!(!out.contains("caused by:"), "{out}");

    let verbose = stack(&proxy.url(), &["up", &file, "--yes", "-v"]);
    let out = text(&verbose);
    assert_eq!(verbose.status.code(), Some(1), "{out}");
    let at = out.find(&failed_line(&out)).unwrap();
    let causes: Vec<&str> = out[at..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  caused by: "))
        .collect();
    assert!(causes.len() >= 2, "{out}");
}

/// The proxy itself: each fault arrives as the SDK would see it from AWS.
#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_speaks_each_services_error_format() {
    use aws_sdk_ec2::error::ProvideErrorMetadata;
    let moto = Moto::start();
    let proxy = Proxy::with_faults(
        Some(moto.port),
        Faults {
            throttle: 1.0,
            ..Faults::real()
        },
    )
    .await;
    let conf = sdk(&proxy.url())
        .await
        .into_builder()
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let asg = aws_sdk_autoscaling::Client::new(&conf);
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let code = |e: &dyn ProvideErrorMetadata| e.code().unwrap_or("?").to_string();
    let ec2_err = ec2.describe_vpcs().send().await.unwrap_err();
    assert_eq!(code(&ec2_err), "RequestLimitExceeded");
    assert_eq!(ec2_err.raw_response().unwrap().status().as_u16(), 503);
    let elb_err = elb.describe_load_balancers().send().await.unwrap_err();
    assert_eq!(code(&elb_err), "Throttling");
    let asg_err = asg.describe_auto_scaling_groups().send().await.unwrap_err();
    assert_eq!(code(&asg_err), "Throttling");
    let ddb_err = ddb.list_tables().send().await.unwrap_err();
    assert_eq!(code(&ddb_err), "ThrottlingException");
    let s3_err = s3.list_buckets().send().await.unwrap_err();
    assert_eq!(code(&s3_err), "SlowDown");
    assert_eq!(s3_err.raw_response().unwrap().status().as_u16(), 503);
    assert_eq!(proxy.injected("throttle"), 5);

    // 5xx instead.
    proxy.set_faults(|f| {
        f.throttle = 0.0;
        f.server_errors = 1.0;
    });
    let e = ddb.list_tables().send().await.unwrap_err();
    let status = e.raw_response().unwrap().status().as_u16();
    assert!(status == 500 || status == 503, "{status}");

    // A fresh VPC is invisible to its first call of each action, then visible.
    proxy.set_faults(|f| {
        f.server_errors = 0.0;
        f.fresh_not_found = 1;
    });
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.9.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let modify = || {
        ec2.modify_vpc_attribute()
            .vpc_id(&vpc)
            .enable_dns_hostnames(
                aws_sdk_ec2::types::AttributeBooleanValue::builder()
                    .value(true)
                    .build(),
            )
            .send()
    };
    assert_eq!(code(&modify().await.unwrap_err()), "InvalidVpcID.NotFound");
    modify().await.unwrap();
    let subnet = || {
        ec2.create_subnet()
            .vpc_id(&vpc)
            .cidr_block("10.9.1.0/24")
            .send()
    };
    assert_eq!(code(&subnet().await.unwrap_err()), "InvalidVpcID.NotFound");
    let subnet = subnet().await.unwrap();
    let subnet = subnet.subnet().unwrap().subnet_id().unwrap().to_string();

    // After a load balancer is deleted, its interfaces hold the subnet for two calls.
    proxy.set_faults(|f| {
        f.fresh_not_found = 0;
        f.linger = Linger::Calls(2);
    });
    let sg = ec2
        .create_security_group()
        .group_name("lb")
        .description("lb")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap();
    let subnet2 = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.9.2.0/24")
        .availability_zone("us-east-1b")
        .send()
        .await
        .unwrap();
    let subnet2 = subnet2.subnet().unwrap().subnet_id().unwrap().to_string();
    let lb = elb
        .create_load_balancer()
        .name("probe-alb")
        .subnets(&subnet)
        .subnets(&subnet2)
        .security_groups(sg.group_id().unwrap())
        .send()
        .await
        .unwrap();
    let arn = lb.load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_string();
    elb.delete_load_balancer()
        .load_balancer_arn(&arn)
        .send()
        .await
        .unwrap();
    let delete = || ec2.delete_subnet().subnet_id(&subnet).send();
    assert_eq!(code(&delete().await.unwrap_err()), "DependencyViolation");
    assert_eq!(code(&delete().await.unwrap_err()), "DependencyViolation");
    delete().await.unwrap();
    assert_eq!(proxy.injected("dependency"), 2);
}
