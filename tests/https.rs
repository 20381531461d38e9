//! HTTPS on the listener: a certificate from the emulator's ACM, an HTTP-only stack
//! switched to HTTPS in place (the listener keeps its ARN and its rules, port 80
//! becomes a redirect, the load balancer's group opens exactly 80 and 443, the outputs
//! say https://), and back.

mod support;

use support::*;

const WEB: &str = "stacks/web.yaml";

/// A certificate requested from the emulator's ACM with the AWS CLI (moto answers
/// with an ARN that HTTPS listeners accept there).
fn certificate(endpoint: &str) -> String {
    let aws = std::process::Command::new(root().join("localstack/moto.sh"))
        .arg("aws")
        .output()
        .unwrap();
    assert!(
        aws.status.success(),
        "{}",
        String::from_utf8_lossy(&aws.stderr)
    );
    let aws = String::from_utf8(aws.stdout).unwrap().trim().to_string();
    let out = std::process::Command::new(aws)
        .args([
            "acm",
            "request-certificate",
            "--domain-name",
            "directory.example.com",
            "--validation-method",
            "DNS",
            "--endpoint-url",
            endpoint,
            "--region",
            "us-east-1",
            "--output",
            "text",
            "--query",
            "CertificateArn",
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_stack_switches_to_https_in_place_and_back() {
    let moto = Moto::start();
    // AWS's rules: an HTTPS listener needs its certificate (tests/support/real_aws.rs).
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let w = Workdir::new();
    let file = w.file(WEB);
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    let conf = sdk(&moto.url()).await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let lb_arn = elb
        .describe_load_balancers()
        .names("directory-alb")
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_string();
    let listeners = |elb: aws_sdk_elasticloadbalancingv2::Client, lb: String| async move {
        let mut l = elb
            .describe_listeners()
            .load_balancer_arn(lb)
            .send()
            .await
            .unwrap()
            .listeners()
            .to_vec();
        l.sort_by_key(|l| l.port());
        l
    };
    let before = listeners(elb.clone(), lb_arn.clone()).await;
    assert_eq!(before.len(), 1);
    let main_arn = before[0].listener_arn().unwrap().to_string();

    let cert = certificate(&moto.url());
    w.edit(
        WEB,
        "listener: { port: 80 }",
        &format!("listener: {{ port: 80, https: {{ certificate_arn: \"{cert}\" }} }}"),
    );
    let plan = text(&stack(&aws.url(), &["plan", &file]));
    // Attribute columns are aligned; compare with single spaces.
    let plan = plan.split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        "~ listener.main",
        "~ port = 80 -> 443",
        "~ protocol = \"HTTP\" -> \"HTTPS\"",
        "+ ssl_policy = \"ELBSecurityPolicy-TLS13-1-2-2021-06\"",
        "+ listener.redirect",
        "+ redirect = \"HTTPS:443 301\"",
        "~ security_group.alb",
    ] {
        assert!(plan.contains(expected), "missing {expected:?}:\n{plan}");
    }
    assert!(!plan.contains("-/+ listener"), "{plan}");
    let up = stack(&aws.url(), &["up", &file, "--yes"]);
    assert_ok(&up);

    let after = listeners(elb.clone(), lb_arn.clone()).await;
    assert_eq!(after.len(), 2, "{after:?}");
    let (http, https) = (&after[0], &after[1]);
    assert_eq!(
        https.listener_arn(),
        Some(main_arn.as_str()),
        "changed in place"
    );
    assert_eq!(
        (https.port(), https.protocol().unwrap().as_str()),
        (Some(443), "HTTPS")
    );
    assert_eq!(
        https.certificates()[0].certificate_arn(),
        Some(cert.as_str())
    );
    assert_eq!(
        https.ssl_policy(),
        Some("ELBSecurityPolicy-TLS13-1-2-2021-06")
    );
    let rules = elb
        .describe_rules()
        .listener_arn(&main_arn)
        .send()
        .await
        .unwrap();
    assert!(
        rules.rules().iter().any(|r| r.priority() == Some("10")),
        "the path rule stayed on the listener"
    );
    assert_eq!(
        (http.port(), http.protocol().unwrap().as_str()),
        (Some(80), "HTTP")
    );
    let redirect = http.default_actions()[0]
        .redirect_config()
        .expect("a redirect");
    assert_eq!(
        (
            redirect.protocol(),
            redirect.port(),
            redirect.status_code().map(|c| c.as_str())
        ),
        (Some("HTTPS"), Some("443"), Some("HTTP_301"))
    );
    // The load balancer's group opens exactly the two listener ports.
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let groups = ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values("directory-alb")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut ports: Vec<i32> = groups.security_groups()[0]
        .ip_permissions()
        .iter()
        .filter_map(|p| p.from_port())
        .collect();
    ports.sort();
    assert_eq!(ports, [80, 443]);
    let outputs = json(&stack(&aws.url(), &["outputs", &file, "--json"]));
    assert!(
        outputs["outputs"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://directory-alb"),
        "{outputs}"
    );
    assert_converged(&aws.url(), &file);

    // And back to plain HTTP, in place: the redirect goes first, then 80 is the app's.
    w.edit(
        WEB,
        &format!("listener: {{ port: 80, https: {{ certificate_arn: \"{cert}\" }} }}"),
        "listener: { port: 80 }",
    );
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    let back = listeners(elb.clone(), lb_arn.clone()).await;
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0].listener_arn(), Some(main_arn.as_str()));
    assert_eq!(
        (back[0].port(), back[0].protocol().unwrap().as_str()),
        (Some(80), "HTTP")
    );
    assert_converged(&aws.url(), &file);
}
