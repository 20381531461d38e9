//! Security defaults, read back from the resources `stack up` created: instances take
//! traffic only from the load balancer, the bucket is private and encrypted, launch
//! templates require IMDSv2, the instance role reaches only the stack's table and
//! bucket (and cannot rewrite the app it boots), and credentials never leak.

mod support;

use std::process::{Command, Stdio};
use support::*;

/// Distinctive so that finding it anywhere is proof of a leak.
const SECRET: &str = "wJalrXUtnFEMI-stack-test-secret-K7MDENG";

fn stack_with_secret(endpoint: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stack"))
        .args(args)
        .args(["--endpoint-url", endpoint])
        .env("AWS_ACCESS_KEY_ID", "AKIASTACKTESTKEY0001")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("NO_COLOR", "1")
        .env("STACK_PATIENCE_SCALE", "0.02")
        .stdin(Stdio::null())
        .output()
        .expect("run stack")
}

#[tokio::test(flavor = "multi_thread")]
async fn created_resources_have_secure_defaults_and_no_secret_leaks() {
    let moto = Moto::start();
    // AWS's own rules where moto is kinder (tests/support/real_aws.rs).
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let work = Workdir::new();
    let file = work.file("stacks/web.yaml");
    let plan_file = work.file("saved.plan");
    let runs = [
        stack_with_secret(&aws.url(), &["plan", &file, "--out", &plan_file]),
        stack_with_secret(&aws.url(), &["up", &file, "--yes", "--plan", &plan_file]),
        stack_with_secret(&aws.url(), &["up", &file, "--yes", "--json"]),
        stack_with_secret(&aws.url(), &["outputs", &file, "--json"]),
    ];
    for o in &runs {
        assert_ok(o);
        let out = text(o);
        assert!(!out.contains(SECRET), "a secret was printed:\n{out}");
    }
    let saved = std::fs::read_to_string(&plan_file).unwrap();
    assert!(!saved.contains(SECRET), "a secret was written to the plan");

    let conf = sdk(&moto.url()).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let groups = ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:stack:name")
                .values("directory")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let alb_sg = groups
        .security_groups()
        .iter()
        .find(|g| g.group_name() == Some("directory-alb"))
        .and_then(|g| g.group_id())
        .unwrap()
        .to_string();
    // EC2.2: the VPC's default security group allows nothing.
    let vpc = groups.security_groups()[0].vpc_id().unwrap();
    let in_vpc = || {
        aws_sdk_ec2::types::Filter::builder()
            .name("vpc-id")
            .values(vpc)
            .build()
    };
    let default = ec2
        .describe_security_groups()
        .filters(in_vpc())
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values("default")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let default = &default.security_groups()[0];
    assert!(
        default.ip_permissions().is_empty() && default.ip_permissions_egress().is_empty(),
        "EC2.2: {default:?}"
    );
    // EC2.21: every subnet sits behind an ACL none of whose inbound entries lets the
    // world reach 22 or 3389 (each entry judged alone, whatever the order).
    let acls = ec2
        .describe_network_acls()
        .filters(in_vpc())
        .send()
        .await
        .unwrap();
    let subnets = ec2
        .describe_subnets()
        .filters(in_vpc())
        .send()
        .await
        .unwrap();
    for subnet in subnets.subnets() {
        let id = subnet.subnet_id().unwrap();
        let acl = acls
            .network_acls()
            .iter()
            .find(|a| a.associations().iter().any(|x| x.subnet_id() == Some(id)))
            .unwrap_or_else(|| panic!("EC2.21: {id} has no ACL"));
        assert_ne!(
            acl.is_default(),
            Some(true),
            "EC2.21: {id} is on the default ACL"
        );
        for e in acl.entries() {
            let open_to_world = e.egress() == Some(false)
                && e.rule_action() == Some(&aws_sdk_ec2::types::RuleAction::Allow)
                && e.cidr_block() == Some("0.0.0.0/0");
            if !open_to_world {
                continue;
            }
            let protocol = e.protocol().unwrap_or_default();
            assert_ne!(protocol, "-1", "EC2.21: all traffic from anywhere: {e:?}");
            if protocol == "6" || protocol == "17" {
                let r = e.port_range().unwrap();
                let ports = r.from().unwrap()..=r.to().unwrap();
                assert!(
                    !ports.contains(&22) && !ports.contains(&3389),
                    "EC2.21: {e:?}"
                );
            }
        }
    }
    // EC2.15: no subnet of the stack hands out public IPs (the load balancer needs none).
    for subnet in subnets.subnets() {
        assert_eq!(
            subnet.map_public_ip_on_launch(),
            Some(false),
            "EC2.15: {:?}",
            subnet.cidr_block()
        );
    }
    // EC2.9: the groups launch into private subnets, whose route table leads nowhere
    // but to the S3 and DynamoDB gateway endpoints.
    let asgs = aws_sdk_autoscaling::Client::new(&conf)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("directory-web")
        .auto_scaling_group_names("directory-admin")
        .send()
        .await
        .unwrap();
    let tables = ec2
        .describe_route_tables()
        .filters(in_vpc())
        .send()
        .await
        .unwrap();
    let endpoints = ec2
        .describe_vpc_endpoints()
        .filters(in_vpc())
        .send()
        .await
        .unwrap();
    assert_eq!(asgs.auto_scaling_groups().len(), 2);
    for g in asgs.auto_scaling_groups() {
        let zones = g.vpc_zone_identifier().unwrap_or_default();
        assert!(
            !zones.is_empty(),
            "EC2.9: {:?}",
            g.auto_scaling_group_name()
        );
        for id in zones.split(',') {
            let table = tables
                .route_tables()
                .iter()
                .find(|t| t.associations().iter().any(|a| a.subnet_id() == Some(id)))
                .unwrap_or_else(|| panic!("EC2.9: {id} has no route table of its own"));
            for r in table.routes() {
                assert!(
                    !r.gateway_id().unwrap_or_default().starts_with("igw-")
                        && r.nat_gateway_id().is_none(),
                    "EC2.9: instance subnet {id} routes to the internet: {r:?}"
                );
            }
            for service in ["s3", "dynamodb"] {
                let name = format!("com.amazonaws.us-east-1.{service}");
                let endpoint = endpoints
                    .vpc_endpoints()
                    .iter()
                    .find(|e| e.service_name() == Some(name.as_str()))
                    .unwrap_or_else(|| panic!("EC2.9: no {service} gateway endpoint"));
                assert_eq!(
                    endpoint.vpc_endpoint_type().map(|t| t.as_str()),
                    Some("Gateway"),
                    "EC2.9: {service} costs nothing only as a gateway endpoint"
                );
                assert!(
                    endpoint
                        .route_table_ids()
                        .iter()
                        .any(|t| Some(t.as_str()) == table.route_table_id()),
                    "EC2.9: {id} does not reach {service}"
                );
            }
        }
    }
    // Session Manager's interface endpoints cost money: none unless asked for.
    assert!(
        endpoints
            .vpc_endpoints()
            .iter()
            .all(|e| e.vpc_endpoint_type().map(|t| t.as_str()) == Some("Gateway")),
        "{endpoints:?}"
    );
    for g in groups.security_groups() {
        let name = g.group_name().unwrap();
        if name == "directory-alb" {
            continue;
        }
        // Instance groups: one rule, the service port, from the ALB's group only.
        let rules = g.ip_permissions();
        assert_eq!(rules.len(), 1, "{name}: {rules:?}");
        assert!(rules[0].ip_ranges().is_empty(), "{name} opens to CIDRs");
        assert!(rules[0].ipv6_ranges().is_empty(), "{name} opens to CIDRs");
        let sources: Vec<&str> = rules[0]
            .user_id_group_pairs()
            .iter()
            .filter_map(|p| p.group_id())
            .collect();
        assert_eq!(sources, [alb_sg.as_str()], "{name}");
    }

    let s3 = s3(&conf);
    let bucket = "directory-photos-demo";
    let pab = s3
        .get_public_access_block()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let c = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            c.block_public_acls(),
            c.ignore_public_acls(),
            c.block_public_policy(),
            c.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let enc = s3
        .get_bucket_encryption()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let rules = enc.server_side_encryption_configuration().unwrap().rules();
    assert!(
        rules.iter().any(|r| r
            .apply_server_side_encryption_by_default()
            .is_some_and(|d| d.sse_algorithm().as_str() == "AES256")),
        "{rules:?}"
    );

    for service in ["web", "admin"] {
        let data = template_data(&conf, &format!("directory-{service}")).await;
        let metadata = data.metadata_options();
        let tokens = metadata.and_then(|m| m.http_tokens()).map(|t| t.as_str());
        assert_eq!(tokens, Some("required"), "{service} allows IMDSv1");
        // Metadata hop limit 1: the app runs on the host, nothing a hop further.
        assert_eq!(
            metadata.and_then(|m| m.http_put_response_hop_limit()),
            Some(1),
            "{service}"
        );
        // EC2.3: encrypted root volumes.
        let root = data
            .block_device_mappings()
            .iter()
            .find(|m| m.device_name() == Some("/dev/xvda"))
            .and_then(|m| m.ebs())
            .unwrap_or_else(|| panic!("EC2.3: {service} has no root volume mapping"));
        assert_eq!(root.encrypted(), Some(true), "EC2.3: {service}");
        assert_eq!(root.volume_type().map(|t| t.as_str()), Some("gp3"));
        // EC2.9: nor does a template ask for a public address.
        assert!(
            data.network_interfaces()
                .iter()
                .all(|n| n.associate_public_ip_address() != Some(true)),
            "EC2.9: {service}"
        );
    }

    // S3.13: a lifecycle: noncurrent versions expire, unfinished uploads are removed.
    // (S3.5, the TLS-only policy, is left out on a plain-HTTP emulator, where it would
    // refuse every request: src/desired.rs tests it.)
    let lifecycle = s3
        .get_bucket_lifecycle_configuration()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let rule = &lifecycle.rules()[0];
    assert!(
        rule.noncurrent_version_expiration()
            .and_then(|e| e.noncurrent_days())
            .is_some(),
        "S3.13: {rule:?}"
    );
    assert!(
        rule.abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation())
            .is_some(),
        "{rule:?}"
    );

    // ELB.4 and ELB.6: invalid header fields are dropped, deletion is protected.
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let lbs = elb.describe_load_balancers().send().await.unwrap();
    let lb = lbs.load_balancers()[0].load_balancer_arn().unwrap();
    let attributes = elb
        .describe_load_balancer_attributes()
        .load_balancer_arn(lb)
        .send()
        .await
        .unwrap();
    let attribute = |key: &str| {
        attributes
            .attributes()
            .iter()
            .any(|a| a.key() == Some(key) && a.value() == Some("true"))
    };
    assert!(
        attribute("routing.http.drop_invalid_header_fields.enabled"),
        "ELB.4: {:?}",
        attributes.attributes()
    );
    assert!(
        attribute("deletion_protection.enabled"),
        "ELB.6: {:?}",
        attributes.attributes()
    );

    // ELB.5: access logs, to the stack's log bucket, which AWS's delivery may write.
    let logs = "directory-logs-123456789012-us-east-1";
    let value = |key: &str| {
        attributes
            .attributes()
            .iter()
            .find(|a| a.key() == Some(key))
            .and_then(|a| a.value())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(value("access_logs.s3.enabled"), "true", "ELB.5");
    assert_eq!(value("access_logs.s3.bucket"), logs, "ELB.5");
    let s3c = &s3;
    let policy = s3c.get_bucket_policy().bucket(logs).send().await.unwrap();
    let policy = policy.policy().unwrap();
    assert!(
        policy.contains("arn:aws:iam::127311923021:root")
            && policy.contains("/alb/AWSLogs/123456789012/*"),
        "ELB.5: the us-east-1 ELB account may deliver: {policy}"
    );
    // S3.9: the app bucket's server access logs go there too.
    let logging = s3c
        .get_bucket_logging()
        .bucket("directory-photos-demo")
        .send()
        .await
        .unwrap();
    let target = logging.logging_enabled().expect("S3.9: logging is on");
    assert_eq!(target.target_bucket(), logs, "S3.9");
    assert_eq!(target.target_prefix(), "s3/directory-photos-demo/", "S3.9");
    // EC2.6: the VPC's flows, accepted and rejected, to the log bucket.
    let flows = ec2
        .describe_flow_logs()
        .filter(
            aws_sdk_ec2::types::Filter::builder()
                .name("resource-id")
                .values(vpc)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let flow = flows.flow_logs().first().expect("EC2.6: a flow log");
    assert_eq!(
        flow.log_destination(),
        Some(format!("arn:aws:s3:::{logs}").as_str()),
        "EC2.6"
    );
    assert_eq!(
        flow.traffic_type().map(|t| t.as_str()),
        Some("ALL"),
        "EC2.6"
    );
    // S3.13 on the log bucket: logs expire; SSE-S3, the one ELB supports.
    let rules = s3c
        .get_bucket_lifecycle_configuration()
        .bucket(logs)
        .send()
        .await
        .unwrap();
    assert!(
        rules
            .rules()
            .iter()
            .any(|r| r.expiration().and_then(|e| e.days()) == Some(90)),
        "S3.13: {:?}",
        rules.rules()
    );

    // DynamoDB.6: deletion protection.
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    let table = ddb
        .describe_table()
        .table_name("directory-employees")
        .send()
        .await
        .unwrap();
    assert_eq!(
        table.table().and_then(|t| t.deletion_protection_enabled()),
        Some(true),
        "DynamoDB.6"
    );

    // SSM.1: the instances can be managed by Systems Manager.
    let attached = aws_sdk_iam::Client::new(&conf)
        .list_attached_role_policies()
        .role_name("directory-us-east-1-instance")
        .send()
        .await
        .unwrap();
    assert!(
        attached
            .attached_policies()
            .iter()
            .any(|p| p.policy_arn() == Some("arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")),
        "SSM.1: {:?}",
        attached.attached_policies()
    );

    // The role's policy: every resource it allows is the stack's table or bucket.
    let iam = aws_sdk_iam::Client::new(&conf);
    let role = iam
        .get_role()
        .role_name("directory-us-east-1-instance")
        .send()
        .await
        .unwrap();
    let trust = percent_decode(role.role().unwrap().assume_role_policy_document().unwrap());
    assert!(trust.contains("ec2.amazonaws.com"), "{trust}");
    let doc = iam
        .get_role_policy()
        .role_name("directory-us-east-1-instance")
        .policy_name("stack-access")
        .send()
        .await
        .unwrap();
    let policy: serde_json::Value =
        serde_json::from_str(&percent_decode(doc.policy_document())).unwrap();
    let table = "arn:aws:dynamodb:us-east-1:123456789012:table/directory-employees";
    let allowed = [
        table.to_string(),
        format!("{table}/index/*"),
        format!("arn:aws:s3:::{bucket}"),
        format!("arn:aws:s3:::{bucket}/*"),
        format!("arn:aws:s3:::{bucket}/artifacts/*"),
        format!("arn:aws:s3:::{bucket}/.stack/*"),
    ];
    let mut denies_artifact_writes = false;
    for st in policy["Statement"].as_array().unwrap() {
        let resources: Vec<&str> = match &st["Resource"] {
            serde_json::Value::String(s) => vec![s.as_str()],
            serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_str()).collect(),
            other => panic!("unexpected Resource {other}"),
        };
        for r in &resources {
            assert!(allowed.iter().any(|a| a == r), "the role reaches {r}");
        }
        let actions = st["Action"].to_string();
        assert!(!actions.contains('*'), "wildcard action: {actions}");
        if st["Effect"] == "Deny" {
            denies_artifact_writes = resources
                == [
                    format!("arn:aws:s3:::{bucket}/artifacts/*"),
                    format!("arn:aws:s3:::{bucket}/.stack/*"),
                ]
                && actions.contains("s3:PutObject");
        }
    }
    assert!(
        denies_artifact_writes,
        "instances may rewrite the app or its credential's verifier: {policy}"
    );
    assert!(
        policy.to_string().contains(table),
        "the role cannot reach the table: {policy}"
    );
}

/// SSM.1 on private instances: Session Manager's three interface endpoints, only when
/// the file asks (they are billed by the hour), in the private subnets behind a group
/// that admits HTTPS from the VPC alone; taking the option away removes them.
#[tokio::test(flavor = "multi_thread")]
async fn session_manager_endpoints_are_an_option() {
    let moto = Moto::start();
    // AWS's parameter rules for CreateVpcEndpoint (tests/support/real_aws.rs).
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let work = Workdir::new();
    let file = work.file("stacks/web.yaml");
    let network = "  cidr: 10.20.0.0/16\n";
    work.edit(
        "stacks/web.yaml",
        network,
        &format!("{network}  ssm_endpoints: true\n"),
    );
    let up = stack(&aws.url(), &["up", &file, "--yes"]);
    assert_ok(&up);
    for service in ["ssm", "ssmmessages", "ec2messages"] {
        assert!(
            text(&up).contains(&format!("vpc_endpoint.{service}: created")),
            "{}",
            text(&up)
        );
    }

    let conf = sdk(&moto.url()).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let endpoints = ec2.describe_vpc_endpoints().send().await.unwrap();
    let interface: Vec<_> = endpoints
        .vpc_endpoints()
        .iter()
        .filter(|e| e.vpc_endpoint_type().map(|t| t.as_str()) == Some("Interface"))
        .collect();
    let names: Vec<&str> = interface.iter().filter_map(|e| e.service_name()).collect();
    assert_eq!(
        names.len(),
        3,
        "SSM.1: ssm, ssmmessages, ec2messages: {names:?}"
    );
    let groups = aws_sdk_autoscaling::Client::new(&conf)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("directory-web")
        .send()
        .await
        .unwrap();
    let mut instance_subnets: Vec<String> = groups.auto_scaling_groups()[0]
        .vpc_zone_identifier()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    instance_subnets.sort();
    for e in &interface {
        assert_eq!(e.private_dns_enabled(), Some(true), "SSM.1: {e:?}");
        let mut subnets = e.subnet_ids().to_vec();
        subnets.sort();
        assert_eq!(
            subnets, instance_subnets,
            "SSM.1: in the instances' subnets"
        );
        let group_ids: Vec<&str> = e.groups().iter().filter_map(|g| g.group_id()).collect();
        let sg = ec2
            .describe_security_groups()
            .set_group_ids(Some(group_ids.iter().map(|g| g.to_string()).collect()))
            .send()
            .await
            .unwrap();
        let rules = sg.security_groups()[0].ip_permissions();
        assert_eq!(rules.len(), 1, "{rules:?}");
        assert_eq!(
            (rules[0].from_port(), rules[0].to_port()),
            (Some(443), Some(443))
        );
        let cidrs: Vec<&str> = rules[0]
            .ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip())
            .collect();
        assert_eq!(cidrs, ["10.20.0.0/16"], "HTTPS from the VPC only");
    }
    assert_converged(&aws.url(), &file);

    // Off again: the paid endpoints and their group go, the free ones stay.
    work.edit(
        "stacks/web.yaml",
        &format!("{network}  ssm_endpoints: true\n"),
        network,
    );
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    let after = ec2.describe_vpc_endpoints().send().await.unwrap();
    let live: Vec<(&str, &str)> = after
        .vpc_endpoints()
        .iter()
        .filter(|e| e.state().map(|s| s.as_str()) != Some("deleted"))
        .map(|e| {
            (
                e.service_name().unwrap_or_default(),
                e.vpc_endpoint_type()
                    .map(|t| t.as_str())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(live.len(), 2, "{live:?}");
    assert!(live.iter().all(|(_, t)| *t == "Gateway"), "{live:?}");
    assert_converged(&aws.url(), &file);
}
