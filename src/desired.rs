//! From a checked [`Spec`] to the resources it wants, attribute by attribute, with
//! references between them. Pure: the values that need AWS (the AMI behind `al2023`)
//! come in through [`Inputs`].

use crate::model::{Address, Desired, Kind, Ref};
use crate::resources::instance_profile::InstanceProfileAttrs;
use crate::resources::subnet::SubnetAttrs;
use crate::resources::vpc::VpcAttrs;
use crate::resources::{
    artifact, asg, bucket, flow_log, iam_role, igw, instance_profile, launch_template, listener,
    listener_rule, load_balancer, network_acl, route_table, scaling_policy, secret, security_group,
    subnet, table, target_group, vpc, vpc_endpoint,
};
use crate::spec::{Arch, Spec};
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
/// The Session Manager endpoints' group (`network.ssm_endpoints`).
pub fn endpoints_sg() -> Address {
    Address::new(Kind::SecurityGroup, "endpoints")
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

/// What the kinds' `desired` functions (in `resources/`) share: the file, the values
/// from AWS, and the references several kinds hold.
pub struct Build<'a> {
    pub spec: &'a Spec,
    pub inputs: &'a Inputs,
    /// `vpc.main`'s id.
    pub vpc: Ref<VpcAttrs>,
    /// The public subnets (the load balancer's).
    pub subnets: Vec<Ref<SubnetAttrs>>,
    /// The private subnets, in the zones that have one.
    pub private_subnets: Vec<Ref<SubnetAttrs>>,
    /// Where the instances run: private subnets by default (Security Hub EC2.9 and
    /// EC2.15: no public IPs, no subnet handing them out).
    pub instance_subnets: Vec<Ref<SubnetAttrs>>,
    /// The instances' profile: the existing one the file names, else the stack's own.
    pub profile_arn: Ref<InstanceProfileAttrs>,
}

impl<'a> Build<'a> {
    pub fn new(spec: &'a Spec, inputs: &'a Inputs) -> Build<'a> {
        let subnets: Vec<Ref<SubnetAttrs>> =
            spec.subnets.iter().map(|s| Ref::at(subnet(s.az))).collect();
        let private_subnets: Vec<Ref<SubnetAttrs>> = spec
            .subnets
            .iter()
            .filter(|s| s.private.is_some())
            .map(|s| Ref::at(private_subnet(s.az)))
            .collect();
        let instance_subnets = if spec.private_instances {
            private_subnets.clone()
        } else {
            subnets.clone()
        };
        // Instances get the stack's own role unless the file names an existing profile.
        let profile_arn = match &inputs.instance_profile_arn {
            Some(arn) => Ref::id(arn),
            None => Ref::at(instance_profile()),
        };
        Build {
            spec,
            inputs,
            vpc: Ref::at(vpc()),
            subnets,
            private_subnets,
            instance_subnets,
            profile_arn,
        }
    }
}

/// Every resource the stack file asks for, each built by its kind's file. The order is
/// the one the differ walks (references before what holds them), kept as it was.
pub fn build(spec: &Spec, inputs: &Inputs) -> Vec<Desired> {
    let b = Build::new(spec, inputs);
    let mut out = [
        vpc::desired(&b),
        subnet::desired(&b),
        igw::desired(&b),
        network_acl::desired(&b),
        route_table::desired(&b),
        vpc_endpoint::gateways(&b),
        security_group::for_endpoints(&b),
        vpc_endpoint::interfaces(&b),
        security_group::for_load_balancer(&b),
        load_balancer::desired(&b),
        iam_role::desired(&b),
        instance_profile::desired(&b),
    ]
    .concat();
    for svc in &spec.services {
        out.extend([
            security_group::for_service(&b, svc),
            target_group::desired(&b, svc),
            launch_template::desired(&b, svc),
            asg::desired(&b, svc),
            scaling_policy::desired(&b, svc),
        ]);
    }
    out.extend(
        [
            listener::desired(&b),
            listener_rule::desired(&b),
            table::desired(&b),
            bucket::app(&b),
            artifact::desired(&b),
            bucket::logs(&b),
            flow_log::desired(&b),
            secret::desired(&b),
        ]
        .concat(),
    );
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

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

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

    /// The example stacks' desired forms, and the web stack's with the parts it
    /// leaves off (Session Manager's interface endpoints).
    fn examples() -> Vec<(String, Vec<Desired>)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut out = Vec::new();
        for f in [
            "stacks/web.yaml",
            "stacks/minimal.yaml",
            "tests/golden/stack.yaml",
        ] {
            let mut spec = Spec::load(&root.join(f)).expect("a valid example");
            out.push((f.to_string(), build(&spec, &Inputs::default())));
            // With this machine's app build, as `up` has it.
            let arch = Arch::X86_64;
            let app = LocalArtifact {
                path: "app".into(),
                sha256: "ab".repeat(32),
                file_name: "app".into(),
                arch,
            };
            let inputs = Inputs {
                artifacts: [(arch, app)].into(),
                ..Inputs::default()
            };
            out.push((format!("{f} with an app build"), build(&spec, &inputs)));
            if !spec.ssm_endpoints && spec.subnets.iter().any(|s| s.private.is_some()) {
                spec.ssm_endpoints = true;
                let with = build(&spec, &Inputs::default());
                out.push((format!("{f} with ssm_endpoints"), with));
            }
        }
        out
    }

    /// Every reference a desired form makes is declared by its kind (destroy order
    /// depends on the declarations; that each declared name is a field, `attr!`
    /// checks at compile time).
    #[test]
    fn desired_references_are_declared() {
        for (f, desired) in examples() {
            for d in desired {
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
            }
        }
    }

    /// Each kind's struct (its `KindOps`) is its own, and every desired form reads
    /// into it and renders back unchanged: no attribute the struct does not have, none
    /// of the wrong type.
    #[test]
    fn desired_forms_round_trip_through_their_kinds_structs() {
        use crate::model::{KindAttrs, from_attrs, to_attrs, with_kind};
        for kind in Kind::ALL.iter().copied() {
            let own = with_kind!(kind, K => <K as KindAttrs>::KIND);
            assert_eq!(own, kind);
        }
        let mut seen = std::collections::BTreeSet::new();
        for (f, desired) in examples() {
            for d in desired {
                let back = with_kind!(d.address.kind, K => {
                    let typed: K = from_attrs(&d.attrs)
                        .unwrap_or_else(|e| panic!("{f}: {}: {e}", d.address));
                    to_attrs(&typed)
                });
                assert_eq!(back, d.attrs, "{f}: {}", d.address);
                seen.insert(d.address.kind);
            }
        }
        let unbuilt: Vec<&Kind> = Kind::ALL.iter().filter(|k| !seen.contains(k)).collect();
        assert!(unbuilt.is_empty(), "no example builds {unbuilt:?}");
    }
}
