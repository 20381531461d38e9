//! From a checked [`Spec`] to the resources it wants, attribute by attribute, with
//! references between them. Pure: the values that need AWS (the AMI behind `al2023`)
//! come in through [`Inputs`].

use crate::model::{Address, Attrs, Desired, Kind, Value};
use crate::resources::vpc_endpoint;
use crate::spec::{Ami, Arch, Billing, Spec, render_user_data};
use std::collections::BTreeMap;

/// Values resolved from AWS before the desired state can be built.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub region: String,
    /// The image id per service, after `al2023` resolution.
    pub amis: BTreeMap<String, String>,
    /// Endpoint override instances should use (local emulators), rendered into user data.
    pub endpoint_url: Option<String>,
    /// The account the stack lives in, for the ARNs in the instance role's policy.
    pub account_id: String,
    /// The account's partition (`aws`, `aws-cn`, `aws-us-gov`), from the caller's ARN.
    pub partition: String,
    /// The app binaries on this machine, one per architecture the services need, when
    /// the stack ships an app.
    pub artifacts: BTreeMap<Arch, LocalArtifact>,
    /// Each service's CPU architecture, from its instance type.
    pub archs: BTreeMap<String, Arch>,
    /// The ARN of the existing instance profile the stack file names.
    pub instance_profile_arn: Option<String>,
    /// `stack rollback`: per service, the stored build (its artifact key) to install
    /// instead of this machine's.
    pub builds: BTreeMap<String, String>,
}

impl Inputs {
    /// `aws` unless the caller's identity said otherwise.
    pub fn partition(&self) -> &str {
        if self.partition.is_empty() {
            "aws"
        } else {
            &self.partition
        }
    }
}

/// A built (or prebuilt) app binary ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalArtifact {
    pub path: std::path::PathBuf,
    pub sha256: String,
    /// The name it is installed under on the instance.
    pub file_name: String,
    pub arch: Arch,
}

impl LocalArtifact {
    /// Content-addressed: a new binary is a new key, so instances never fetch a
    /// half-replaced object and the key alone says which build a template runs.
    pub fn key(&self) -> String {
        format!(
            "{}{}/{}",
            artifact_prefix(self.arch),
            self.sha256,
            self.file_name
        )
    }
}

/// Where the builds of one architecture live (x86_64 keeps the original layout).
pub fn artifact_prefix(arch: Arch) -> String {
    match arch {
        Arch::X86_64 => ARTIFACT_PREFIX.to_string(),
        Arch::Arm64 => format!("{ARTIFACT_PREFIX}arm64/"),
    }
}

/// The architecture a stored artifact's key was written for.
pub fn arch_of_key(key: &str) -> Arch {
    if key.starts_with(&artifact_prefix(Arch::Arm64)) {
        Arch::Arm64
    } else {
        Arch::X86_64
    }
}

/// Session Manager's interface endpoints (`network.ssm_endpoints`). Agents from
/// 3.3.40.0 on need only the first two; older AMIs still use `ec2messages`.
pub const SSM_ENDPOINT_SERVICES: [&str; 3] = ["ssm", "ssmmessages", "ec2messages"];

/// Every instance's root volume (Security Hub EC2.3: encrypted EBS).
pub const ROOT_VOLUME: &str = "gp3 8GiB encrypted";

/// Where artifacts live in the stack's bucket. Instances may read it, never write it.
pub const ARTIFACT_PREFIX: &str = "artifacts/";

/// What else `stack` keeps in the app's bucket; instances may read it, never write it.
pub const STACK_PREFIX: &str = ".stack/";

/// The write credential's verifier (its SHA-256, hex) in the app's bucket.
pub const VERIFIER_KEY: &str = ".stack/write-token.sha256";

pub fn vpc() -> Address {
    Address::new(Kind::Vpc, "main")
}
pub fn igw() -> Address {
    Address::new(Kind::InternetGateway, "main")
}
pub fn route_table() -> Address {
    Address::new(Kind::RouteTable, "public")
}
pub fn alb_sg() -> Address {
    Address::new(Kind::SecurityGroup, "alb")
}
pub fn load_balancer() -> Address {
    Address::new(Kind::LoadBalancer, "main")
}
pub fn listener() -> Address {
    Address::new(Kind::Listener, "main")
}
pub fn table() -> Address {
    Address::new(Kind::Table, "main")
}
pub fn bucket() -> Address {
    Address::new(Kind::Bucket, "main")
}
/// The uploaded app binary of one architecture (`s3_object.app` is x86_64).
pub fn artifact(arch: Arch) -> Address {
    match arch {
        Arch::X86_64 => Address::new(Kind::Artifact, "app"),
        Arch::Arm64 => Address::new(Kind::Artifact, "app-arm64"),
    }
}
/// The app's write credential (an SSM SecureString; its value never leaves AWS).
pub fn write_token() -> Address {
    Address::new(Kind::Secret, "write_token")
}
/// The bucket the stack's logs go to: load balancer access logs, the app bucket's
/// server access logs, the VPC's flow logs.
pub fn logs_bucket() -> Address {
    Address::new(Kind::Bucket, "logs")
}

/// Every log bucket name of a stack starts so (discovery looks for it by this).
pub fn logs_bucket_prefix(stack: &str) -> String {
    format!("{stack}-logs-")
}

/// Bucket names are global: the account and region make the log bucket's unique
/// (at most 20 + 6 + 12 + 1 + 14 characters, within S3's 63).
pub fn logs_bucket_name(stack: &str, account: &str, region: &str) -> String {
    format!("{}{account}-{region}", logs_bucket_prefix(stack))
}

/// Days the logs are kept (the log bucket's lifecycle, Security Hub S3.13).
pub const LOG_RETENTION_DAYS: i32 = 90;

pub fn role() -> Address {
    Address::new(Kind::Role, "instance")
}
pub fn instance_profile() -> Address {
    Address::new(Kind::InstanceProfile, "instance")
}
pub fn subnet(az: char) -> Address {
    Address::new(Kind::Subnet, az.to_string())
}
/// The zone's private subnet (instances, when they are private).
pub fn private_subnet(az: char) -> Address {
    Address::new(Kind::Subnet, format!("private-{az}"))
}
pub fn private_route_table() -> Address {
    Address::new(Kind::RouteTable, "private")
}
pub fn service(kind: Kind, name: &str) -> Address {
    Address::new(kind, name)
}

/// The AWS name of the stack's load balancer.
pub fn load_balancer_name(stack: &str) -> String {
    format!("{stack}-alb")
}

/// A security group's attributes: inbound `(port, source)` pairs, a source being a
/// CIDR block or another group.
fn security_group(
    vpc: &Value,
    group_name: String,
    description: String,
    ingress: Vec<(u16, Value)>,
) -> Attrs {
    attrs([
        ("vpc_id", vpc.clone()),
        ("group_name", Value::s(group_name)),
        ("description", Value::s(description)),
        (
            "ingress",
            Value::List(
                ingress
                    .into_iter()
                    .map(|(port, source)| Value::List(vec![Value::Int(port.into()), source]))
                    .collect(),
            ),
        ),
    ])
}

/// What every VPC endpoint has: its VPC, the AWS service and the endpoint type.
fn endpoint(vpc: &Value, region: &str, service: &str, kind: &str) -> Attrs {
    attrs([
        ("vpc_id", vpc.clone()),
        (
            "service_name",
            Value::s(vpc_endpoint::service_name(region, service)),
        ),
        ("type", Value::s(kind)),
    ])
}

fn attrs<const N: usize>(pairs: [(&str, Value); N]) -> Attrs {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Every resource the stack file asks for.
pub fn build(spec: &Spec, inputs: &Inputs) -> Vec<Desired> {
    let stack = &spec.stack;
    let mut out = Vec::new();
    let mut push = |address: Address, attrs: Attrs, payload: Option<String>| {
        out.push(Desired {
            address,
            attrs,
            payload,
            after: Vec::new(),
        })
    };
    let vpc_ref = Value::r(&vpc());
    push(
        vpc(),
        attrs([
            ("cidr_block", Value::s(spec.vpc_cidr.to_string())),
            ("enable_dns_support", Value::Bool(true)),
            ("enable_dns_hostnames", Value::Bool(true)),
            // Security Hub EC2.2: the default security group allows nothing.
            ("default_security_group_rules", Value::Int(0)),
        ]),
        None,
    );
    let subnets: Vec<Value> = spec
        .subnets
        .iter()
        .map(|s| Value::r(&subnet(s.az)))
        .collect();
    let private_subnets: Vec<Value> = spec
        .subnets
        .iter()
        .filter(|s| s.private.is_some())
        .map(|s| Value::r(&private_subnet(s.az)))
        .collect();
    // Where the instances run: private subnets by default (Security Hub EC2.9 and
    // EC2.15: no public IPs, no subnet handing them out).
    let instance_subnets = if spec.private_instances {
        private_subnets.clone()
    } else {
        subnets.clone()
    };
    for s in &spec.subnets {
        let zone = Value::s(format!("{}{}", inputs.region, s.az));
        push(
            subnet(s.az),
            attrs([
                ("vpc_id", vpc_ref.clone()),
                ("cidr_block", Value::s(s.cidr.to_string())),
                ("availability_zone", zone.clone()),
                (
                    "map_public_ip_on_launch",
                    Value::Bool(!spec.private_instances),
                ),
            ]),
            None,
        );
        if let Some(p) = s.private {
            push(
                private_subnet(s.az),
                attrs([
                    ("vpc_id", vpc_ref.clone()),
                    ("cidr_block", Value::s(p.to_string())),
                    ("availability_zone", zone),
                    ("map_public_ip_on_launch", Value::Bool(false)),
                ]),
                None,
            );
        }
    }
    push(igw(), attrs([("vpc_id", vpc_ref.clone())]), None);
    // Security Hub EC2.21: no port open to the world but the listener's.
    let mut service_ports: Vec<u16> = spec.services.iter().map(|s| s.port).collect();
    if spec.ssm_endpoints {
        // HTTPS from the instances to the interface endpoints' network interfaces.
        service_ports.push(443);
    }
    service_ports.sort_unstable();
    service_ports.dedup();
    let listener_ports = spec.load_balancer.listener_ports();
    let ingress_cidrs: Vec<String> = spec
        .load_balancer
        .ingress
        .iter()
        .map(|c| c.to_string())
        .collect();
    push(
        Address::new(Kind::NetworkAcl, "main"),
        attrs([
            ("vpc_id", vpc_ref.clone()),
            (
                "subnet_ids",
                Value::List([subnets.clone(), private_subnets.clone()].concat()),
            ),
            (
                "ingress",
                Value::strs(crate::resources::network_acl::ingress_rules(
                    &listener_ports,
                    &ingress_cidrs,
                    &service_ports,
                    &spec.vpc_cidr.to_string(),
                )),
            ),
            (
                "egress",
                Value::strs(crate::resources::network_acl::egress_rules()),
            ),
        ]),
        None,
    );
    push(
        route_table(),
        attrs([
            ("vpc_id", vpc_ref.clone()),
            ("default_route_gateway_id", Value::r(&igw())),
            ("subnet_ids", Value::List(subnets.clone())),
        ]),
        None,
    );
    if !private_subnets.is_empty() {
        // No route to the internet: S3 and DynamoDB through the gateway endpoints.
        push(
            private_route_table(),
            attrs([
                ("vpc_id", vpc_ref.clone()),
                ("default_route_gateway_id", Value::s("")),
                ("subnet_ids", Value::List(private_subnets.clone())),
            ]),
            None,
        );
        let mut gateways = vec!["s3"];
        if spec.table.is_some() {
            gateways.push("dynamodb");
        }
        for service in gateways {
            let mut a = endpoint(&vpc_ref, &inputs.region, service, "Gateway");
            a.insert(
                "route_table_ids".into(),
                Value::List(vec![Value::r(&private_route_table())]),
            );
            push(Address::new(Kind::VpcEndpoint, service), a, None);
        }
    }
    if spec.ssm_endpoints {
        // Session Manager for private instances; billed per endpoint, zone and hour.
        let sg = Address::new(Kind::SecurityGroup, "endpoints");
        push(
            sg.clone(),
            security_group(
                &vpc_ref,
                format!("{stack}-endpoints"),
                format!("stack {stack}: Session Manager endpoints"),
                vec![(443, Value::s(spec.vpc_cidr.to_string()))],
            ),
            None,
        );
        for service in SSM_ENDPOINT_SERVICES {
            let mut a = endpoint(&vpc_ref, &inputs.region, service, "Interface");
            a.extend([
                (
                    "subnet_ids".to_string(),
                    Value::List(private_subnets.clone()),
                ),
                (
                    "security_group_ids".to_string(),
                    Value::List(vec![Value::r(&sg)]),
                ),
                ("private_dns_enabled".to_string(), Value::Bool(true)),
            ]);
            push(Address::new(Kind::VpcEndpoint, service), a, None);
        }
    }
    let lb = &spec.load_balancer;
    push(
        alb_sg(),
        security_group(
            &vpc_ref,
            format!("{stack}-alb"),
            format!("stack {stack}: load balancer"),
            listener_ports
                .iter()
                .flat_map(|p| {
                    lb.ingress
                        .iter()
                        .map(move |c| (*p, Value::s(c.to_string())))
                })
                .collect(),
        ),
        None,
    );
    push(
        load_balancer(),
        attrs([
            ("name", Value::s(load_balancer_name(stack))),
            ("scheme", Value::s("internet-facing")),
            ("drop_invalid_header_fields", Value::Bool(true)),
            ("deletion_protection", Value::Bool(true)),
            // Security Hub ELB.5: access logs, to the log bucket.
            ("access_logs", Value::r(&logs_bucket())),
            ("subnets", Value::List(subnets.clone())),
            ("security_groups", Value::List(vec![Value::r(&alb_sg())])),
        ]),
        None,
    );
    // Instances get the stack's own role unless the file names an existing profile.
    let profile_arn = match &inputs.instance_profile_arn {
        Some(arn) => Value::s(arn),
        None => {
            let iam_name = iam_name(stack, &inputs.region);
            push(
                role(),
                attrs([
                    ("name", Value::s(&iam_name)),
                    ("path", Value::s(iam_path(stack, &inputs.region))),
                    (
                        "assume_role_policy",
                        Value::s(assume_role_policy(inputs.partition())),
                    ),
                    ("policy", Value::s(instance_policy(spec, inputs))),
                    // The SSM agent's permissions (Security Hub SSM.1): a shell through
                    // Session Manager instead of SSH.
                    (
                        "managed_policies",
                        Value::strs([format!(
                            "arn:{}:iam::aws:policy/AmazonSSMManagedInstanceCore",
                            inputs.partition()
                        )]),
                    ),
                ]),
                None,
            );
            push(
                instance_profile(),
                attrs([
                    ("name", Value::s(&iam_name)),
                    ("path", Value::s(iam_path(stack, &inputs.region))),
                    ("role_name", Value::r(&role())),
                ]),
                None,
            );
            Value::r(&instance_profile())
        }
    };
    for svc in &spec.services {
        let name = &svc.name;
        let sg = service(Kind::SecurityGroup, name);
        let tg = service(Kind::TargetGroup, name);
        let lt = service(Kind::LaunchTemplate, name);
        let asg = service(Kind::AutoScalingGroup, name);
        push(
            sg.clone(),
            security_group(
                &vpc_ref,
                format!("{stack}-{name}"),
                format!("stack {stack}: service {name} instances"),
                vec![(svc.port, Value::r(&alb_sg()))],
            ),
            None,
        );
        let h = &svc.health;
        push(
            tg.clone(),
            attrs([
                ("name", Value::s(format!("{stack}-{name}"))),
                ("port", Value::Int(svc.port.into())),
                ("protocol", Value::s("HTTP")),
                ("vpc_id", vpc_ref.clone()),
                ("health_check_path", Value::s(&h.path)),
                ("health_check_interval", Value::Int(h.interval.into())),
                ("healthy_threshold", Value::Int(h.healthy.into())),
                ("unhealthy_threshold", Value::Int(h.unhealthy.into())),
                ("matcher", Value::s("200")),
            ]),
            None,
        );
        let image = match &svc.ami {
            Ami::Id(id) => id.clone(),
            Ami::Al2023 => inputs.amis.get(name).cloned().unwrap_or_default(),
        };
        let user_data =
            render_user_data(&svc.user_data_template, &template_vars(spec, inputs, svc));
        // What an instance boots from: it names the template, and the fleet rolls
        // when it changes.
        let profile = match &profile_arn {
            Value::Str(arn) => arn.clone(),
            _ => iam_name(stack, &inputs.region),
        };
        let digest = sha256_hex(
            format!(
                "{image}\n{}\n{profile}\n{user_data}\n{ROOT_VOLUME}\nhop-limit-1{}",
                svc.instance_type,
                // Moving between public and private subnets replaces every instance.
                if spec.private_instances {
                    "\nprivate"
                } else {
                    ""
                }
            )
            .as_bytes(),
        );
        push(
            lt.clone(),
            attrs([
                // One template per build and configuration, never a second version: groups
                // pin version 1 (what auto rollback needs), and the name says the content.
                ("name", Value::s(launch_template_name(stack, name, &digest))),
                ("image_id", Value::s(&image)),
                ("instance_type", Value::s(&svc.instance_type)),
                (
                    "user_data_sha256",
                    Value::s(sha256_hex(user_data.as_bytes())),
                ),
                ("security_group_ids", Value::List(vec![Value::r(&sg)])),
                ("http_tokens", Value::s("required")),
                ("metadata_hop_limit", Value::Int(1)),
                ("root_volume", Value::s(ROOT_VOLUME)),
                ("iam_instance_profile_arn", profile_arn.clone()),
            ]),
            Some(user_data.clone()),
        );
        let sc = &svc.scaling;
        let mut group = attrs([
            ("name", Value::s(format!("{stack}-{name}"))),
            ("launch_template_id", Value::r(&lt)),
            ("launch_template_digest", Value::s(&digest[..16])),
            ("min_size", Value::Int(sc.min.into())),
            ("max_size", Value::Int(sc.max.into())),
            ("desired_capacity", Value::Int(sc.desired.into())),
            ("subnet_ids", Value::List(instance_subnets.clone())),
            ("target_group_arns", Value::List(vec![Value::r(&tg)])),
            ("health_check_type", Value::s("ELB")),
            (
                "health_check_grace_period",
                Value::Int(h.grace_period.into()),
            ),
            // How a new template rolls the group (a tag; sent with each refresh).
            ("deploy", Value::s(svc.deploy.render())),
        ]);
        // The app build the fleet was rolled to (a tag; `stack rollback` goes back to
        // the one before). Stacks that ship no app have none.
        if let Some(key) = build_key(inputs, name) {
            group.insert("build".into(), Value::s(key));
        }
        push(asg.clone(), group, None);
        push(
            service(Kind::ScalingPolicy, name),
            attrs([
                ("name", Value::s(format!("{stack}-{name}-cpu"))),
                ("autoscaling_group_name", Value::r(&asg)),
                ("metric", Value::s("ASGAverageCPUUtilization")),
                ("target_value", Value::Float(sc.cpu_target)),
            ]),
            None,
        );
    }
    let mut main_listener = attrs([
        ("load_balancer_arn", Value::r(&load_balancer())),
        ("port", Value::Int(lb.port.into())),
        ("protocol", Value::s("HTTP")),
        (
            "default_target_group_arn",
            Value::r(&service(Kind::TargetGroup, &lb.default_service)),
        ),
    ]);
    if let Some(h) = &lb.https {
        main_listener.insert("port".into(), Value::Int(h.port.into()));
        main_listener.insert("protocol".into(), Value::s("HTTPS"));
        main_listener.insert("certificate_arn".into(), Value::s(&h.certificate_arn));
        main_listener.insert("ssl_policy".into(), Value::s(&h.ssl_policy));
        // Plain HTTP only answers with a permanent redirect to HTTPS.
        push(
            Address::new(Kind::Listener, "redirect"),
            attrs([
                ("load_balancer_arn", Value::r(&load_balancer())),
                ("port", Value::Int(lb.port.into())),
                ("protocol", Value::s("HTTP")),
                ("redirect", Value::s(format!("HTTPS:{} 301", h.port))),
            ]),
            None,
        );
    }
    push(listener(), main_listener, None);
    for rule in &lb.rules {
        push(
            Address::new(Kind::ListenerRule, &rule.name),
            attrs([
                ("listener_arn", Value::r(&listener())),
                ("priority", Value::Int(rule.priority.into())),
                ("path_pattern", Value::s(&rule.path)),
                (
                    "target_group_arn",
                    Value::r(&service(Kind::TargetGroup, &rule.service)),
                ),
            ]),
            None,
        );
    }
    if let Some(t) = &spec.table {
        let mut a = attrs([
            ("name", Value::s(&t.name)),
            (
                "partition_key",
                Value::s(format!(
                    "{}:{}",
                    t.partition_key.name, t.partition_key.key_type
                )),
            ),
            (
                "sort_key",
                Value::s(
                    t.sort_key
                        .as_ref()
                        .map(|k| format!("{}:{}", k.name, k.key_type))
                        .unwrap_or_default(),
                ),
            ),
            ("point_in_time_recovery", Value::Bool(t.pitr)),
            ("deletion_protection", Value::Bool(true)),
        ]);
        match t.billing {
            Billing::PayPerRequest => {
                a.insert("billing_mode".into(), Value::s("PAY_PER_REQUEST"));
            }
            Billing::Provisioned { read, write } => {
                a.insert("billing_mode".into(), Value::s("PROVISIONED"));
                a.insert("read_capacity".into(), Value::Int(read.into()));
                a.insert("write_capacity".into(), Value::Int(write.into()));
            }
        }
        push(table(), a, None);
    }
    if let Some(b) = &spec.bucket {
        push(
            bucket(),
            attrs([
                ("name", Value::s(&b.name)),
                ("versioning", Value::Bool(b.versioning)),
                ("block_public_access", Value::Bool(true)),
                ("encryption", Value::s("AES256")),
                ("force_destroy", Value::Bool(b.force_destroy)),
                ("policy", Value::s(bucket_policy(b, inputs))),
                (
                    "lifecycle",
                    Value::s(crate::resources::lifecycle_summary(b.versioning, None)),
                ),
                // Security Hub S3.9: server access logs, to the log bucket.
                ("access_log_bucket", Value::r(&logs_bucket())),
            ]),
            None,
        );
        for art in inputs.artifacts.values() {
            push(
                artifact(art.arch),
                attrs([
                    ("bucket", Value::r(&bucket())),
                    ("key", Value::s(art.key())),
                ]),
                Some(art.path.to_string_lossy().into_owned()),
            );
        }
    }
    // Where the stack's logs go; its objects are AWS's deliveries, so `down` deletes
    // them with the bucket (the plan counts them).
    let logs_name = logs_bucket_name(stack, &inputs.account_id, &inputs.region);
    push(
        logs_bucket(),
        attrs([
            ("name", Value::s(&logs_name)),
            ("versioning", Value::Bool(false)),
            ("block_public_access", Value::Bool(true)),
            // The only encryption ELB access logs support.
            ("encryption", Value::s("AES256")),
            ("force_destroy", Value::Bool(true)),
            (
                "policy",
                Value::s(logs_bucket_policy(spec, inputs, &logs_name)),
            ),
            (
                "lifecycle",
                Value::s(crate::resources::lifecycle_summary(
                    false,
                    Some(LOG_RETENTION_DAYS),
                )),
            ),
            // Logging the log bucket into itself would log its own log writes.
            ("access_log_bucket", Value::s("")),
        ]),
        None,
    );
    // Security Hub EC2.6: the VPC's flows, accepted and rejected.
    push(
        Address::new(Kind::FlowLog, "main"),
        attrs([
            ("vpc_id", vpc_ref.clone()),
            ("log_bucket", Value::r(&logs_bucket())),
            ("traffic_type", Value::s("ALL")),
        ]),
        None,
    );
    // The app refuses writes without this credential; stacks without the app have
    // nothing to protect with it.
    if spec.app.is_some() {
        push(
            write_token(),
            attrs([
                (
                    "name",
                    Value::s(crate::resources::secret::write_token_name(stack)),
                ),
                ("type", Value::s("SecureString")),
                // The app checks credentials against this digest (see secret.rs).
                ("verifier_bucket", Value::r(&bucket())),
                (
                    "verifier",
                    Value::s(crate::resources::secret::VERIFIER_CURRENT),
                ),
            ]),
            None,
        );
    }
    let endpoints: Vec<Address> = out
        .iter()
        .filter(|d| d.address.kind == Kind::VpcEndpoint)
        .map(|d| d.address.clone())
        .collect();
    for d in out.iter_mut() {
        match d.address.kind {
            // Templates name the artifact's key: write them only once it is uploaded.
            Kind::LaunchTemplate => {
                let arch = inputs.archs.get(&d.address.name).copied();
                if let Some(a) = arch.filter(|a| inputs.artifacts.contains_key(a)) {
                    d.after.push(artifact(a));
                }
            }
            // Instances fetch the app at boot: without the route out they fail their
            // health checks and are replaced forever.
            // In private subnets the way out is the endpoints.
            Kind::AutoScalingGroup => {
                d.after.push(route_table());
                d.after.extend(endpoints.iter().cloned());
            }
            _ => {}
        }
    }
    out
}

/// The artifact key service `service` installs: the rollback's stored build, else
/// this machine's build for its architecture.
pub fn build_key(inputs: &Inputs, service: &str) -> Option<String> {
    if let Some(key) = inputs.builds.get(service) {
        return Some(key.clone());
    }
    let arch = inputs.archs.get(service).copied().unwrap_or(Arch::X86_64);
    inputs.artifacts.get(&arch).map(LocalArtifact::key)
}

/// The SHA-256 in an artifact key (`artifacts/[arm64/]<sha256>/<file>`).
pub fn sha_of_key(key: &str) -> &str {
    key.strip_prefix(&artifact_prefix(arch_of_key(key)))
        .unwrap_or(key)
        .split('/')
        .next()
        .unwrap_or_default()
}

/// The build (the app binary's SHA-256) a rendered user data installs: its
/// `SHA256="…"` line.
pub fn build_of_user_data(user_data: &str) -> Option<String> {
    user_data
        .lines()
        .find_map(|l| l.trim().strip_prefix("SHA256=\""))
        .map(|v| v.trim_end_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// A service's launch template for one content digest (`web-stack-web-1f2e3d4c`
/// style): a new build or configuration is a new template.
pub fn launch_template_name(stack: &str, service: &str, digest: &str) -> String {
    format!("{stack}-{service}-{}", &digest[..8])
}

/// IAM path of the stack's role and profile: discovery lists by this prefix. IAM is
/// global to the account and the stack is regional, so the path names the region:
/// the same stack in another region has its own role and profile.
pub fn iam_path(stack: &str, region: &str) -> String {
    format!("/stack/{stack}/{region}/")
}

/// The prefix of every IAM path of a stack, in any region.
pub fn iam_stack_path(stack: &str) -> String {
    format!("/stack/{stack}/")
}

/// The name of the stack's role and instance profile (names are account-wide too).
pub fn iam_name(stack: &str, region: &str) -> String {
    format!("{stack}-{region}-instance")
}

/// The bucket refuses every request not made over TLS (Security Hub S3.5). An
/// endpoint reached over plain HTTP (an emulator) would then refuse every request,
/// the stack's own included, so there the bucket gets no policy.
fn bucket_policy(bucket: &crate::spec::BucketSpec, inputs: &Inputs) -> String {
    if inputs
        .endpoint_url
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"))
    {
        return String::new();
    }
    let arn = format!("arn:{}:s3:::{}", inputs.partition(), bucket.name);
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [arn.clone(), format!("{arn}/*")],
            "Condition": { "Bool": { "aws:SecureTransport": "false" } },
        }],
    })
    .to_string()
}

/// Elastic Load Balancing's account per region, the principal of access log delivery
/// in the regions older than August 2022 (newer ones take the service principal).
fn elb_log_account(region: &str) -> Option<&'static str> {
    Some(match region {
        "us-east-1" => "127311923021",
        "us-east-2" => "033677994240",
        "us-west-1" => "027434742980",
        "us-west-2" => "797873946194",
        "af-south-1" => "098369216593",
        "ap-east-1" => "754344448648",
        "ap-south-1" => "718504428378",
        "ap-northeast-1" => "582318560864",
        "ap-northeast-2" => "600734575887",
        "ap-northeast-3" => "383597477331",
        "ap-southeast-1" => "114774131450",
        "ap-southeast-2" => "783225319266",
        "ap-southeast-3" => "589379963580",
        "ca-central-1" => "985666609251",
        "eu-central-1" => "054676820928",
        "eu-west-1" => "156460612806",
        "eu-west-2" => "652711504416",
        "eu-west-3" => "009996457667",
        "eu-south-1" => "635631232127",
        "eu-north-1" => "897822967062",
        "me-south-1" => "076674570225",
        "sa-east-1" => "507241528517",
        "us-gov-west-1" => "048591011584",
        "us-gov-east-1" => "190560391635",
        "cn-north-1" => "638102146993",
        "cn-northwest-1" => "037604701340",
        _ => return None,
    })
}

/// Who may write to the log bucket: ELB's access log delivery under `alb/`, S3's
/// server access logging under `s3/`, and VPC flow log delivery under `AWSLogs/`,
/// each only for this account; and (on AWS) nothing without TLS.
fn logs_bucket_policy(spec: &Spec, inputs: &Inputs, name: &str) -> String {
    let p = inputs.partition();
    let account = &inputs.account_id;
    let arn = format!("arn:{p}:s3:::{name}");
    let elb_principal = match elb_log_account(&inputs.region) {
        Some(elb) => serde_json::json!({ "AWS": format!("arn:{p}:iam::{elb}:root") }),
        None => serde_json::json!({ "Service": "logdelivery.elasticloadbalancing.amazonaws.com" }),
    };
    let source = serde_json::json!({ "aws:SourceAccount": account });
    let mut statements = vec![
        serde_json::json!({
            "Sid": "LoadBalancerAccessLogs",
            "Effect": "Allow",
            "Principal": elb_principal,
            "Action": "s3:PutObject",
            "Resource": format!(
                "{arn}/{}/AWSLogs/{account}/*",
                crate::resources::ACCESS_LOG_PREFIX
            ),
        }),
        serde_json::json!({
            "Sid": "FlowLogsWrite",
            "Effect": "Allow",
            "Principal": { "Service": "delivery.logs.amazonaws.com" },
            "Action": "s3:PutObject",
            "Resource": format!("{arn}/AWSLogs/{account}/*"),
            "Condition": { "StringEquals": {
                "aws:SourceAccount": account,
                "s3:x-amz-acl": "bucket-owner-full-control",
            } },
        }),
        serde_json::json!({
            "Sid": "FlowLogsAclCheck",
            "Effect": "Allow",
            "Principal": { "Service": "delivery.logs.amazonaws.com" },
            "Action": ["s3:GetBucketAcl", "s3:ListBucket"],
            "Resource": arn.clone(),
            "Condition": { "StringEquals": source },
        }),
    ];
    if let Some(b) = &spec.bucket {
        statements.push(serde_json::json!({
            "Sid": "S3ServerAccessLogs",
            "Effect": "Allow",
            "Principal": { "Service": "logging.s3.amazonaws.com" },
            "Action": "s3:PutObject",
            "Resource": format!(
                "{arn}/{}*",
                crate::resources::access_log_prefix(&b.name)
            ),
            "Condition": {
                "StringEquals": source,
                "ArnLike": { "aws:SourceArn": format!("arn:{p}:s3:::{}", b.name) },
            },
        }));
    }
    let plain_http = inputs
        .endpoint_url
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    if !plain_http {
        statements.push(serde_json::json!({
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": { "AWS": "*" },
            "Action": "s3:*",
            "Resource": [arn.clone(), format!("{arn}/*")],
            "Condition": { "Bool": { "aws:SecureTransport": "false" } },
        }));
    }
    serde_json::json!({ "Version": "2012-10-17", "Statement": statements }).to_string()
}

/// Only EC2 instances may take the role. Service principals carry the partition's
/// DNS suffix (`ec2.amazonaws.com.cn` in China).
fn assume_role_policy(partition: &str) -> String {
    let principal = if partition == "aws-cn" {
        "ec2.amazonaws.com.cn"
    } else {
        "ec2.amazonaws.com"
    };
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": principal },
            "Action": "sts:AssumeRole",
        }],
    })
    .to_string()
}

/// What the instances may touch: the stack's table, the stack's bucket, and the
/// artifact prefix read-only (an instance must not be able to replace the binary
/// the others boot from).
fn instance_policy(spec: &Spec, inputs: &Inputs) -> String {
    let mut statements = Vec::new();
    if let Some(t) = &spec.table {
        let arn = format!(
            "arn:{}:dynamodb:{}:{}:table/{}",
            inputs.partition(),
            inputs.region,
            inputs.account_id,
            t.name
        );
        statements.push(serde_json::json!({
            "Sid": "StackTable",
            "Effect": "Allow",
            "Action": [
                "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem",
                "dynamodb:DeleteItem", "dynamodb:DescribeTable", "dynamodb:GetItem",
                "dynamodb:PutItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:UpdateItem",
            ],
            "Resource": [arn.clone(), format!("{arn}/index/*")],
        }));
    }
    if let Some(b) = &spec.bucket {
        let arn = format!("arn:{}:s3:::{}", inputs.partition(), b.name);
        statements.push(serde_json::json!({
            "Sid": "StackBucket",
            "Effect": "Allow",
            "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
            "Resource": arn,
        }));
        statements.push(serde_json::json!({
            "Sid": "StackObjects",
            "Effect": "Allow",
            "Action": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
            "Resource": format!("{arn}/*"),
        }));
        // The builds and the write credential's verifier: an instance must not
        // replace what the others boot from or check credentials against.
        statements.push(serde_json::json!({
            "Sid": "ArtifactsReadOnly",
            "Effect": "Deny",
            "Action": ["s3:DeleteObject", "s3:PutObject"],
            "Resource": [format!("{arn}/{ARTIFACT_PREFIX}*"), format!("{arn}/{STACK_PREFIX}*")],
        }));
    }
    if statements.is_empty() {
        // Nothing to allow: the role gets no inline policy at all.
        return String::new();
    }
    serde_json::json!({ "Version": "2012-10-17", "Statement": statements }).to_string()
}

fn template_vars<'a>(
    spec: &Spec,
    inputs: &Inputs,
    svc: &crate::spec::ServiceSpec,
) -> BTreeMap<&'a str, String> {
    let mut vars = BTreeMap::new();
    vars.insert("stack", spec.stack.clone());
    vars.insert("service", svc.name.clone());
    vars.insert("region", inputs.region.clone());
    vars.insert("port", svc.port.to_string());
    if let Some(t) = &spec.table {
        vars.insert("table", t.name.clone());
    }
    if let Some(b) = &spec.bucket {
        vars.insert("bucket", b.name.clone());
        vars.insert("artifact_bucket", b.name.clone());
    }
    if let Some(key) = build_key(inputs, &svc.name) {
        vars.insert("artifact_sha256", sha_of_key(&key).to_string());
        vars.insert("artifact_key", key);
    }
    vars.insert("stress", svc.stress.to_string());
    if spec.app.is_some() {
        // A digest only: the value stays in SSM.
        vars.insert("write_token_verifier", VERIFIER_KEY.to_string());
    }
    if let Some(e) = &inputs.endpoint_url {
        vars.insert("endpoint_url", e.clone());
    }
    vars
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> Spec {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stacks/web.yaml");
        Spec::load(&file).expect("stacks/web.yaml is valid")
    }

    fn find<'a>(all: &'a [Desired], a: &Address) -> &'a Desired {
        all.iter().find(|d| &d.address == a).expect("built")
    }

    #[test]
    fn groups_wait_for_the_route_out() {
        let built = build(&web(), &Inputs::default());
        for svc in ["web", "admin"] {
            let group = find(&built, &service(Kind::AutoScalingGroup, svc));
            assert!(group.deps().contains(&route_table()), "{:?}", group.deps());
        }
    }

    #[test]
    fn the_bucket_denies_requests_without_tls_except_on_a_plain_http_emulator() {
        let on_aws = build(&web(), &Inputs::default());
        let policy = find(&on_aws, &bucket()).attrs["policy"].to_string();
        assert!(policy.contains("aws:SecureTransport"), "{policy}");
        assert!(
            policy.contains("arn:aws:s3:::directory-photos-demo/*"),
            "{policy}"
        );
        let emulator = Inputs {
            endpoint_url: Some("http://localhost:4566".into()),
            ..Inputs::default()
        };
        let local = build(&web(), &emulator);
        assert_eq!(find(&local, &bucket()).attrs["policy"], Value::s(""));
    }

    #[test]
    fn iam_names_the_region_and_arns_the_partition() {
        let inputs = Inputs {
            region: "cn-north-1".into(),
            partition: "aws-cn".into(),
            account_id: "123456789012".into(),
            ..Inputs::default()
        };
        let built = build(&web(), &inputs);
        let r = find(&built, &role());
        let attr = |k: &str| r.attrs[k].as_str().unwrap_or_default().to_string();
        assert_eq!(attr("name"), "directory-cn-north-1-instance");
        assert_eq!(attr("path"), "/stack/directory/cn-north-1/");
        let policy = attr("policy");
        assert!(
            policy
                .contains("arn:aws-cn:dynamodb:cn-north-1:123456789012:table/directory-employees"),
            "{policy}"
        );
        assert!(
            policy.contains("arn:aws-cn:s3:::directory-photos-demo"),
            "{policy}"
        );
        assert!(!policy.contains("arn:aws:"), "{policy}");
        assert!(attr("assume_role_policy").contains("ec2.amazonaws.com.cn"));
        // Without a known partition, the commercial one.
        let plain = build(&web(), &Inputs::default());
        let policy = find(&plain, &role()).attrs["policy"].to_string();
        assert!(
            policy.contains("arn:aws:s3:::directory-photos-demo"),
            "{policy}"
        );
    }

    /// Every reference a desired form makes is declared by its kind (destroy order
    /// depends on the declarations), and every declared attribute exists.
    #[test]
    fn desired_references_are_declared() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for f in [
            "stacks/web.yaml",
            "stacks/minimal.yaml",
            "tests/golden/stack.yaml",
        ] {
            let spec = Spec::load(&root.join(f)).expect("a valid example");
            for d in build(&spec, &Inputs::default()) {
                let declared = crate::resources::references(d.address.kind);
                for (name, value) in &d.attrs {
                    let mut refs = Vec::new();
                    value.refs(&mut refs);
                    assert!(
                        refs.is_empty() || declared.contains(&name.as_str()),
                        "{f}: {}.{name} refers to {refs:?} but is not declared",
                        d.address
                    );
                }
                for name in declared {
                    assert!(
                        d.attrs.contains_key(*name),
                        "{f}: {} declares `{name}`, which it does not have",
                        d.address
                    );
                }
            }
        }
    }
}
