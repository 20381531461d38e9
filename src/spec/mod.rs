//! The stack file: parsed from YAML ([`raw`]) and checked into a [`Spec`] before any
//! AWS call. Every rejection carries the file, line and column of the offending value.

pub mod raw;
mod userdata;

use ipnet::Ipv4Net;
use raw::{RawStack, S};
use serde_saphyr::Location;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

pub use userdata::{TEMPLATE_VARIABLES, render as render_user_data};

/// One problem in a stack file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A file that cannot be read has no line to point at.
        if self.line == 0 {
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every problem found in a stack file, in file order.
#[derive(Debug, Clone)]
pub struct SpecErrors(pub Vec<Diagnostic>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// The private subnet a zone gets when the file names none: the same-sized block in
/// the other half of the VPC (10.20.1.0/24 in 10.20.0.0/16 gives 10.20.129.0/24).
/// `None` when the public block is half the VPC or more.
pub fn derive_private(public: Ipv4Net, vpc: Ipv4Net) -> Option<Ipv4Net> {
    if public.prefix_len() <= vpc.prefix_len() {
        return None;
    }
    let half = 1u32 << (31 - u32::from(vpc.prefix_len()));
    let addr = u32::from(public.network()) ^ half;
    Ipv4Net::new(std::net::Ipv4Addr::from(addr), public.prefix_len()).ok()
}

/// A stack file that passed every check.
#[derive(Debug, Clone)]
pub struct Spec {
    pub file: PathBuf,
    pub stack: String,
    pub region: Option<String>,
    pub vpc_cidr: Ipv4Net,
    pub subnets: Vec<SubnetSpec>,
    /// Instances in the private subnets (the default) or in the public ones.
    pub private_instances: bool,
    /// Session Manager's interface endpoints in the private subnets.
    pub ssm_endpoints: bool,
    pub load_balancer: LoadBalancerSpec,
    pub services: Vec<ServiceSpec>,
    pub table: Option<TableSpec>,
    pub bucket: Option<BucketSpec>,
    /// The app binary shipped to the instances through the bucket.
    pub app: Option<AppSpec>,
    /// An existing instance profile to use instead of the one the stack creates.
    pub instance_profile: Option<String>,
}

/// Where the app binary comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppSpec {
    /// A cargo package built for Amazon Linux 2023 (glibc 2.34), once per architecture
    /// the services' instance types need.
    Build {
        package_dir: PathBuf,
        bin: Option<String>,
    },
    /// Linux binaries built elsewhere, one per architecture (`artifact` for x86_64,
    /// `artifact_arm64` for Graviton).
    Prebuilt { paths: BTreeMap<Arch, PathBuf> },
}

/// A CPU architecture of EC2 instance types, as AWS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
}

impl Arch {
    /// AWS's name (`ProcessorInfo.SupportedArchitectures`, SSM parameter suffixes).
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The Rust target triple that builds for it.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// `e_machine` in an ELF header for binaries of this architecture.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62,
            Arch::Arm64 => 183,
        }
    }

    pub fn from_elf_machine(m: u16) -> Option<Arch> {
        [Arch::X86_64, Arch::Arm64]
            .into_iter()
            .find(|a| a.elf_machine() == m)
    }

    /// A guess from the type's name alone (Graviton families end their family part in
    /// `g`: t4g, m7g, c7gn, r8gd). Only `stack build`, which makes no AWS call, uses it;
    /// plan and up ask AWS (`DescribeInstanceTypes`).
    pub fn guess(instance_type: &str) -> Arch {
        let family = instance_type.split('.').next().unwrap_or_default();
        let after_generation = family
            .trim_start_matches(|c: char| c.is_ascii_alphabetic())
            .trim_start_matches(|c: char| c.is_ascii_digit());
        if after_generation.starts_with('g') {
            Arch::Arm64
        } else {
            Arch::X86_64
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct SubnetSpec {
    /// The zone letter (`a`); the full zone name needs the region.
    pub az: char,
    pub cidr: Ipv4Net,
    /// The zone's private subnet, when instances are private.
    pub private: Option<Ipv4Net>,
}

#[derive(Debug, Clone)]
pub struct LoadBalancerSpec {
    pub ingress: Vec<Ipv4Net>,
    /// The HTTP port: the service itself, or with `https` a redirect to it.
    pub port: u16,
    pub https: Option<HttpsSpec>,
    pub default_service: String,
    pub rules: Vec<RuleSpec>,
}

/// TLS on the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsSpec {
    pub certificate_arn: String,
    pub ssl_policy: String,
    pub port: u16,
}

/// TLS 1.3 and 1.2 with forward secrecy only: AWS's recommended policy for new
/// listeners since 2023.
pub const DEFAULT_SSL_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";

impl LoadBalancerSpec {
    /// The ports the listeners open, HTTP's first.
    pub fn listener_ports(&self) -> Vec<u16> {
        let mut ports = vec![self.port];
        ports.extend(self.https.as_ref().map(|h| h.port));
        ports
    }

    /// The URL users reach the stack at.
    pub fn url(&self, dns_name: &str) -> String {
        match &self.https {
            Some(h) if h.port == 443 => format!("https://{dns_name}/"),
            Some(h) => format!("https://{dns_name}:{}/", h.port),
            None if self.port == 80 => format!("http://{dns_name}/"),
            None => format!("http://{dns_name}:{}/", self.port),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub name: String,
    pub path: String,
    pub service: String,
    pub priority: u32,
}

#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub port: u16,
    pub health: HealthSpec,
    pub instance_type: String,
    pub ami: Ami,
    pub user_data_path: PathBuf,
    pub user_data_template: String,
    pub scaling: ScalingSpec,
    pub deploy: DeploySpec,
    /// The app's CPU stress endpoint is on (off unless the file says so).
    pub stress: bool,
}

/// How a new template rolls a group: instance refresh preferences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeploySpec {
    pub min_healthy: u32,
    pub max_healthy: u32,
    pub warmup: u32,
    pub bake: u32,
}

impl DeploySpec {
    /// The canonical text form: a tag on the group and the plan's `deploy` attribute.
    pub fn render(&self) -> String {
        format!(
            "min_healthy={}% max_healthy={}% warmup={}s bake={}s",
            self.min_healthy, self.max_healthy, self.warmup, self.bake
        )
    }

    /// Reads [`DeploySpec::render`]'s form back; `None` for anything else.
    pub fn parse(text: &str) -> Option<DeploySpec> {
        let mut d = DeploySpec {
            min_healthy: 100,
            max_healthy: 200,
            warmup: 0,
            bake: 0,
        };
        let mut seen = 0;
        for part in text.split_whitespace() {
            let (k, v) = part.split_once('=')?;
            let n: u32 = v.trim_end_matches(['%', 's']).parse().ok()?;
            match k {
                "min_healthy" => d.min_healthy = n,
                "max_healthy" => d.max_healthy = n,
                "warmup" => d.warmup = n,
                "bake" => d.bake = n,
                _ => return None,
            }
            seen += 1;
        }
        (seen == 4).then_some(d)
    }
}

#[derive(Debug, Clone)]
pub struct HealthSpec {
    pub path: String,
    pub interval: u32,
    pub healthy: u32,
    pub unhealthy: u32,
    pub grace_period: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ami {
    /// The latest Amazon Linux 2023 for x86_64, resolved through SSM at plan time.
    Al2023,
    Id(String),
}

#[derive(Debug, Clone)]
pub struct ScalingSpec {
    pub min: u32,
    pub max: u32,
    pub desired: u32,
    pub cpu_target: f64,
}

#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: String,
    pub partition_key: KeySpec,
    pub sort_key: Option<KeySpec>,
    pub billing: Billing,
    pub pitr: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub name: String,
    pub key_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Billing {
    PayPerRequest,
    Provisioned { read: u32, write: u32 },
}

#[derive(Debug, Clone)]
pub struct BucketSpec {
    pub name: String,
    pub versioning: bool,
    pub force_destroy: bool,
}

/// The longest stack name: `<stack>-<service>` must stay within the 32 characters
/// AWS allows for load balancer and target group names.
pub const MAX_STACK_NAME: usize = 20;

impl Spec {
    /// Reads and checks a stack file. No AWS call is made.
    pub fn load(path: &Path) -> Result<Spec, SpecErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SpecErrors(vec![Diagnostic {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                message: format!("cannot read the stack file: {e}"),
            }])
        })?;
        Spec::parse(path, &text)
    }

    /// Checks stack file text; `path` names it in errors and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Spec, SpecErrors> {
        let raw: RawStack = serde_saphyr::from_str(text).map_err(|e| {
            let loc = e.location();
            SpecErrors(vec![Diagnostic {
                file: path.to_path_buf(),
                line: loc.map_or(0, |l| l.line()),
                column: loc.map_or(0, |l| l.column()),
                message: in_stack_file_words(
                    &plain_message(&e),
                    text,
                    loc.map_or(0, |l| l.line()),
                    loc.map_or(0, |l| l.column()),
                ),
            }])
        })?;
        let mut v = Validator {
            file: path.to_path_buf(),
            base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            errors: Vec::new(),
        };
        let spec = v.check(raw);
        if v.errors.is_empty() {
            Ok(spec)
        } else {
            v.errors
                .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
            v.errors.dedup();
            Err(SpecErrors(v.errors))
        }
    }

    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// The key and the value written at a location of the file: `port: eighty` at the
/// column of `eighty` gives (`port`, `eighty`).
fn written_at(text: &str, line: u64, column: u64) -> (Option<String>, String) {
    let Some(l) = text.lines().nth(line.saturating_sub(1) as usize) else {
        return (None, String::new());
    };
    let at = l
        .char_indices()
        .nth(column.saturating_sub(1) as usize)
        .map_or(l.len(), |(i, _)| i);
    let value = l[at..]
        .split([',', '}', ']', '#'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let before = l[..at].trim_end();
    let key = before.strip_suffix(':').map(|k| {
        k.rsplit(['{', ',', ' ', '-'])
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    });
    (key.filter(|k| !k.is_empty()), value)
}

/// A parser's message in the stack file's words: which key, what was found there,
/// what it expects.
fn in_stack_file_words(message: &str, text: &str, line: u64, column: u64) -> String {
    let (key, found) = written_at(text, line, column);
    let key = key.map_or_else(|| "this value".to_string(), |k| format!("`{k}`"));
    let found = if found.is_empty() {
        String::new()
    } else {
        format!("; found `{found}`")
    };
    let expects = |what: &str| format!("{key} expects {what}{found}");
    match message {
        "expected sequence start" => expects("a list, like [0.0.0.0/0] or one `- item` per line"),
        "expected mapping start" => expects("a mapping, like { name: value }"),
        "expected a whole number from 0 to 65535" => expects("a whole number from 0 to 65535"),
        "expected a whole number from 0 to 4294967295" => expects("a whole number"),
        "expected a number" | "invalid floating point" => expects("a number"),
        "invalid boolean" => expects("true or false"),
        m if m.starts_with("duplicate mapping key: ") => {
            let k = m["duplicate mapping key: ".len()..]
                .split(',')
                .next()
                .unwrap_or_default();
            format!("`{k}` appears twice in the same mapping; keep one")
        }
        m if m.starts_with("missing field ") => format!(
            "{} is missing here: add it, or check that this block is indented like its neighbours",
            &m["missing field ".len()..]
        ),
        other => other.to_string(),
    }
}

/// serde-saphyr appends " at line L, column C" to messages; we print the location first.
fn plain_message(e: &serde_saphyr::Error) -> String {
    let options = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
    let text = e.render_with_options(options);
    let text = text.lines().next().unwrap_or_default().to_string();
    let text = match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    // Say what was expected in the stack file's terms, not Rust's.
    match text.as_str() {
        "invalid u16" => "expected a whole number from 0 to 65535".to_string(),
        "invalid u32" => "expected a whole number from 0 to 4294967295".to_string(),
        "invalid f64" => "expected a number".to_string(),
        _ => text,
    }
}

struct Validator {
    file: PathBuf,
    base: PathBuf,
    errors: Vec<Diagnostic>,
}

impl Validator {
    fn error(&mut self, at: Location, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            file: self.file.clone(),
            line: at.line(),
            column: at.column(),
            message: message.into(),
        });
    }

    fn check(&mut self, raw: RawStack) -> Spec {
        let stack = self.stack_name(&raw.stack);
        let region = raw.region.as_ref().map(|r| {
            if !crate::aws::region_is_well_formed(&r.value) {
                self.error(
                    r.referenced,
                    format!("`{}` is not an AWS region name (like us-east-1)", r.value),
                );
            }
            r.value.clone()
        });
        let vpc_cidr = self.cidr(&raw.network.cidr, "VPC");
        if let Some(net) = vpc_cidr
            && !(16..=28).contains(&net.prefix_len())
        {
            self.error(
                raw.network.cidr.referenced,
                format!(
                    "a VPC CIDR block must be between /16 and /28, not /{}",
                    net.prefix_len()
                ),
            );
        }
        let private_instances = match &raw.network.instances {
            None => true,
            Some(v) if v.value == "private" => true,
            Some(v) if v.value == "public" => false,
            Some(v) => {
                self.error(
                    v.referenced,
                    format!("instances: `{}` is neither `private` nor `public`", v.value),
                );
                true
            }
        };
        let ssm_endpoints = raw.network.ssm_endpoints.unwrap_or(false);
        if ssm_endpoints && !private_instances {
            self.error(
                raw.network.cidr.referenced,
                "ssm_endpoints serves private instances; public ones reach Session Manager without them (drop one of the two)",
            );
        }
        let subnets = self.subnets(&raw.network.subnets, vpc_cidr, private_instances);
        let services = self.services(&stack, &raw.services);
        let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
        let load_balancer = self.load_balancer(&raw.load_balancer, &names, region.as_deref());
        // AWS health-checks only targets a listener routes to (others read `unused`),
        // so an unrouted service would never pass `up`'s health wait.
        for (name, _) in &raw.services.value.0 {
            let routed = load_balancer.default_service == name.value
                || load_balancer.rules.iter().any(|r| r.service == name.value);
            if !routed {
                self.error(
                    name.referenced,
                    format!(
                        "service `{}` is reached by no listener rule and is not the default service; AWS never health-checks its targets, so it could never become healthy",
                        name.value
                    ),
                );
            }
        }
        let table = raw.table.as_ref().map(|t| self.table(&stack, t));
        let bucket = raw.bucket.as_ref().map(|b| self.bucket(b));
        let app = raw.app.as_ref().and_then(|a| self.app(a, bucket.is_some()));
        for (name, raw_svc) in &raw.services.value.0 {
            if let Some(svc) = services.iter().find(|s| s.name == name.value) {
                self.placeholders_have_values(
                    svc,
                    &raw_svc.user_data,
                    &[
                        ("artifact", raw.app.is_some(), "app"),
                        ("table", raw.table.is_some(), "table"),
                        ("bucket", raw.bucket.is_some(), "bucket"),
                    ],
                );
            }
        }
        let instance_profile = raw
            .instance_profile
            .as_ref()
            .map(|p| self.instance_profile(p));
        Spec {
            file: self.file.clone(),
            stack,
            region,
            vpc_cidr: vpc_cidr.unwrap_or_default(),
            subnets,
            private_instances,
            ssm_endpoints,
            load_balancer,
            services,
            table,
            bucket,
            app,
            instance_profile,
        }
    }

    fn app(&mut self, app: &S<raw::RawApp>, has_bucket: bool) -> Option<AppSpec> {
        if !has_bucket {
            self.error(
                app.referenced,
                "the app is shipped through the stack's bucket: add a `bucket:` section",
            );
        }
        let a = &app.value;
        let prebuilt = a.artifact.is_some() || a.artifact_arm64.is_some();
        match (&a.build, prebuilt) {
            (Some(build), false) => {
                let dir = self.base.join(&build.value);
                if !dir.join("Cargo.toml").is_file() {
                    self.error(
                        build.referenced,
                        format!(
                            "`{}` has no Cargo.toml; `build` names a cargo package directory",
                            build.value
                        ),
                    );
                    return None;
                }
                Some(AppSpec::Build {
                    package_dir: dir,
                    bin: a.bin.as_ref().map(|b| b.value.clone()),
                })
            }
            (None, true) => {
                if let Some(bin) = &a.bin {
                    self.error(bin.referenced, "`bin` goes with `build`, not `artifact`");
                }
                let mut paths = BTreeMap::new();
                for (arch, given) in [
                    (Arch::X86_64, &a.artifact),
                    (Arch::Arm64, &a.artifact_arm64),
                ] {
                    let Some(artifact) = given else { continue };
                    let path = self.base.join(&artifact.value);
                    if !path.is_file() {
                        self.error(
                            artifact.referenced,
                            format!(
                                "artifact `{}` is not a file ({})",
                                artifact.value,
                                path.display()
                            ),
                        );
                        continue;
                    }
                    paths.insert(arch, path);
                }
                (!paths.is_empty()).then_some(AppSpec::Prebuilt { paths })
            }
            _ => {
                self.error(
                    app.referenced,
                    "`app` needs exactly one of `build` (a cargo package to build) or `artifact`/`artifact_arm64` (prebuilt binaries)",
                );
                None
            }
        }
    }

    /// A placeholder must have something to render: a template that installs the
    /// artifact needs a stack that ships one, one that names the table or the bucket
    /// needs those sections (else the instance boots with an empty value).
    fn placeholders_have_values(
        &mut self,
        svc: &ServiceSpec,
        user_data: &S<String>,
        has: &[(&str, bool, &str)],
    ) {
        for name in userdata::used(&svc.user_data_template) {
            let Some((_, _, section)) = has.iter().find(|(prefix, present, _)| {
                !present && (name == *prefix || name.starts_with(&format!("{prefix}_")))
            }) else {
                continue;
            };
            self.error(
                user_data.referenced,
                format!(
                    "user data template `{}` uses `{{{{ {name} }}}}` but the stack has no `{section}:` section to fill it",
                    user_data.value
                ),
            );
            return;
        }
    }

    fn instance_profile(&mut self, p: &S<String>) -> String {
        let n = &p.value;
        let ok = (1..=128).contains(&n.len())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
        if !ok {
            self.error(
                p.referenced,
                format!("instance profile name `{n}` must be 1-128 letters, digits or +=,.@_-"),
            );
        }
        n.clone()
    }

    fn stack_name(&mut self, name: &S<String>) -> String {
        let n = &name.value;
        let ok = n.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !n.ends_with('-')
            && !n.contains("--");
        if !ok {
            self.error(
                name.referenced,
                format!(
                    "stack name `{n}` must start with a lowercase letter and hold only lowercase letters, digits and single hyphens"
                ),
            );
        } else if let Some((prefix, what)) = [
            (
                "internal-",
                "load balancer names (AWS reserves it for internal load balancers)",
            ),
            (
                "sg-",
                "security group names (AWS reserves it for group ids)",
            ),
        ]
        .into_iter()
        .find(|(p, _)| format!("{n}-").starts_with(p))
        {
            // `<stack>-alb` and `<stack>-<service>` would begin with a prefix AWS refuses.
            self.error(
                name.referenced,
                format!(
                    "stack name `{n}` would make names beginning with `{prefix}`, which AWS refuses in {what}"
                ),
            );
        } else if n.len() > MAX_STACK_NAME {
            self.error(
                name.referenced,
                format!(
                    "stack name `{n}` is {} characters; at most {MAX_STACK_NAME} fit in AWS load balancer names",
                    n.len()
                ),
            );
        }
        n.clone()
    }

    fn cidr(&mut self, text: &S<String>, what: &str) -> Option<Ipv4Net> {
        match text.value.parse::<Ipv4Net>() {
            Ok(net) if net.network() == net.addr() => Some(net),
            Ok(net) => {
                self.error(
                    text.referenced,
                    format!(
                        "{what} CIDR `{}` has host bits set; did you mean {}?",
                        text.value,
                        net.trunc()
                    ),
                );
                None
            }
            Err(_) => {
                self.error(
                    text.referenced,
                    format!(
                        "`{}` is not an IPv4 CIDR block (like 10.0.0.0/16)",
                        text.value
                    ),
                );
                None
            }
        }
    }

    fn subnets(
        &mut self,
        raw: &S<Vec<raw::RawSubnet>>,
        vpc: Option<Ipv4Net>,
        private: bool,
    ) -> Vec<SubnetSpec> {
        let mut out: Vec<(SubnetSpec, Location)> = Vec::new();
        // Every block declared so far, public and private, for the overlap checks.
        let mut taken: Vec<(Ipv4Net, String)> = Vec::new();
        for s in &raw.value {
            let az = {
                let v = &s.az.value;
                let mut chars = v.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if c.is_ascii_lowercase() => Some(c),
                    _ => {
                        self.error(
                            s.az.referenced,
                            format!(
                                "availability zone `{v}` must be a zone letter such as `a` (the region comes from `region`)"
                            ),
                        );
                        None
                    }
                }
            };
            let cidr = self.cidr(&s.cidr, "subnet");
            if let (Some(cidr), Some(vpc)) = (cidr, vpc) {
                self.subnet_block(cidr, vpc, &taken, s.cidr.referenced, "subnet");
                taken.push((cidr, format!("subnet {cidr}")));
            }
            let private_cidr = match (&s.private, private) {
                (Some(p), false) => {
                    self.error(
                        p.referenced,
                        "a private subnet needs `instances: private` on the network",
                    );
                    None
                }
                (Some(p), true) => self.cidr(p, "private subnet"),
                (None, true) => cidr.zip(vpc).and_then(|(c, v)| derive_private(c, v)),
                (None, false) => None,
            };
            if private && let (Some(p), Some(vpc)) = (private_cidr, vpc) {
                let at = s
                    .private
                    .as_ref()
                    .map_or(s.cidr.referenced, |p| p.referenced);
                let what = if s.private.is_some() {
                    "private subnet".to_string()
                } else {
                    "private subnet (derived from `cidr`; give it with `private: CIDR`)".to_string()
                };
                self.subnet_block(p, vpc, &taken, at, &what);
                let zone = s.az.value.as_str();
                taken.push((p, format!("zone {zone}'s private subnet {p}")));
            } else if private && s.private.is_none() && cidr.is_some() && vpc.is_some() {
                self.error(
                    s.cidr.referenced,
                    "no room to derive this zone's private subnet from `cidr`; give it with `private: CIDR`",
                );
            }
            if let (Some(az), Some(cidr)) = (az, cidr) {
                out.push((
                    SubnetSpec {
                        az,
                        cidr,
                        private: private_cidr,
                    },
                    s.az.referenced,
                ));
            }
        }
        let zones: BTreeSet<char> = out.iter().map(|(s, _)| s.az).collect();
        if zones.len() < 2 && raw.value.len() == out.len() {
            self.error(
                raw.referenced,
                format!(
                    "an Application Load Balancer needs subnets in at least two availability zones; found {}",
                    zones.len()
                ),
            );
        }
        let mut seen = BTreeSet::new();
        for (s, at) in &out {
            if !seen.insert(s.az) {
                self.error(
                    *at,
                    format!(
                        "two subnets in zone `{}`; each zone takes one public subnet",
                        s.az
                    ),
                );
            }
        }
        out.into_iter().map(|(s, _)| s).collect()
    }

    /// Inside the VPC, at least a /28, overlapping nothing declared before it.
    fn subnet_block(
        &mut self,
        cidr: Ipv4Net,
        vpc: Ipv4Net,
        taken: &[(Ipv4Net, String)],
        at: Location,
        what: &str,
    ) {
        if !vpc.contains(&cidr) {
            self.error(at, format!("{what} {cidr} is not inside the VPC's {vpc}"));
        } else if cidr.prefix_len() > 28 {
            self.error(
                at,
                format!("{what} {cidr} is smaller than the /28 AWS allows"),
            );
        }
        for (other, name) in taken {
            if other.contains(&cidr) || cidr.contains(other) {
                self.error(at, format!("{what} {cidr} overlaps {name}"));
            }
        }
    }

    fn services(
        &mut self,
        stack: &str,
        raw: &S<raw::OrderedMap<raw::RawService>>,
    ) -> Vec<ServiceSpec> {
        if raw.value.0.is_empty() {
            self.error(raw.referenced, "a stack needs at least one service");
        }
        let mut out = Vec::new();
        for (name, s) in &raw.value.0 {
            let n = &name.value;
            let ok = n.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !n.ends_with('-');
            if !ok {
                self.error(
                    name.referenced,
                    format!(
                        "service name `{n}` must start with a lowercase letter and hold only lowercase letters, digits and hyphens"
                    ),
                );
            }
            if n == "alb" || n == "endpoints" {
                self.error(
                    name.referenced,
                    format!(
                        "service name `{n}` is reserved for a security group of the stack's own"
                    ),
                );
            }
            let tg_name = format!("{stack}-{n}");
            if tg_name.len() > 32 {
                self.error(
                    name.referenced,
                    format!(
                        "target group name `{tg_name}` would be {} characters; AWS allows 32 (shorten the stack or service name)",
                        tg_name.len()
                    ),
                );
            }
            self.port(&s.port);
            let health = self.health(&s.health);
            let instance_type = {
                let t = &s.instance.instance_type;
                let mut parts = t.value.split('.');
                let ok = matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None)
                    if !a.is_empty() && !b.is_empty()
                        && t.value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'));
                if !ok {
                    self.error(
                        t.referenced,
                        format!("`{}` is not an EC2 instance type (like t3.micro)", t.value),
                    );
                }
                t.value.clone()
            };
            let ami = {
                let a = &s.instance.ami;
                if a.value == "al2023" {
                    Ami::Al2023
                } else if a.value.strip_prefix("ami-").is_some_and(|h| {
                    (8..=17).contains(&h.len()) && h.chars().all(|c| c.is_ascii_hexdigit())
                }) {
                    Ami::Id(a.value.clone())
                } else {
                    self.error(
                        a.referenced,
                        format!(
                            "ami `{}` must be `al2023` or an image id like ami-0123456789abcdef0",
                            a.value
                        ),
                    );
                    Ami::Al2023
                }
            };
            let user_data_path = self.base.join(&s.user_data.value);
            let user_data_template = match std::fs::read_to_string(&user_data_path) {
                Ok(text) => {
                    if let Err(e) = userdata::check(&text) {
                        self.errors.push(Diagnostic {
                            file: user_data_path.clone(),
                            line: e.line,
                            column: e.column,
                            message: e.message,
                        });
                    }
                    if text.len() > 12_000 {
                        self.error(
                            s.user_data.referenced,
                            format!(
                                "user data template `{}` is {} bytes; rendered user data must stay under AWS's 16 KiB after base64",
                                s.user_data.value,
                                text.len()
                            ),
                        );
                    }
                    text
                }
                Err(e) => {
                    self.error(
                        s.user_data.referenced,
                        format!(
                            "cannot read user data template `{}`: {e}",
                            s.user_data.value
                        ),
                    );
                    String::new()
                }
            };
            let scaling = self.scaling(&s.scaling);
            let deploy = self.deploy(s.deploy.as_ref(), health.grace_period);
            out.push(ServiceSpec {
                name: n.clone(),
                port: s.port.value,
                health,
                instance_type,
                ami,
                user_data_path,
                user_data_template,
                scaling,
                deploy,
                stress: s.stress.unwrap_or(false),
            });
        }
        out
    }

    fn port(&mut self, port: &S<u16>) {
        if port.value == 0 {
            self.error(port.referenced, "port must be between 1 and 65535");
        }
    }

    fn range(&mut self, v: &Option<S<u32>>, default: u32, lo: u32, hi: u32, what: &str) -> u32 {
        match v {
            None => default,
            Some(v) if (lo..=hi).contains(&v.value) => v.value,
            Some(v) => {
                self.error(
                    v.referenced,
                    format!("{what} must be between {lo} and {hi}, not {}", v.value),
                );
                default
            }
        }
    }

    /// Instance refresh preferences: launch before terminate unless the file says
    /// otherwise; AWS wants max − min at most 100.
    fn deploy(&mut self, d: Option<&S<raw::RawDeploy>>, grace_period: u32) -> DeploySpec {
        let none = raw::RawDeploy {
            min_healthy: None,
            max_healthy: None,
            warmup: None,
            bake: None,
        };
        let raw = d.map_or(&none, |d| &d.value);
        let spec = DeploySpec {
            min_healthy: self.range(&raw.min_healthy, 100, 0, 100, "deploy min_healthy (%)"),
            max_healthy: self.range(&raw.max_healthy, 200, 100, 200, "deploy max_healthy (%)"),
            warmup: self.range(
                &raw.warmup,
                grace_period,
                0,
                7200,
                "deploy warmup (seconds)",
            ),
            bake: self.range(&raw.bake, 0, 0, 43200, "deploy bake (seconds)"),
        };
        if let Some(d) = d
            && spec.max_healthy - spec.min_healthy > 100
        {
            self.error(
                d.referenced,
                format!(
                    "deploy max_healthy − min_healthy must be at most 100 (AWS's limit), not {}",
                    spec.max_healthy - spec.min_healthy
                ),
            );
        }
        spec
    }

    fn health(&mut self, h: &raw::RawHealth) -> HealthSpec {
        if !h.path.value.starts_with('/') || h.path.value.len() > 1024 {
            self.error(
                h.path.referenced,
                format!(
                    "health check path `{}` must start with `/` and be at most 1024 characters",
                    h.path.value
                ),
            );
        }
        HealthSpec {
            path: h.path.value.clone(),
            interval: self.range(&h.interval, 15, 5, 300, "health check interval (seconds)"),
            healthy: self.range(&h.healthy, 2, 2, 10, "healthy threshold"),
            unhealthy: self.range(&h.unhealthy, 3, 2, 10, "unhealthy threshold"),
            grace_period: self.range(&h.grace_period, 120, 0, 7200, "grace period (seconds)"),
        }
    }

    fn scaling(&mut self, s: &raw::RawScaling) -> ScalingSpec {
        let (min, max, desired) = (s.min.value, s.max.value, s.desired.value);
        if max == 0 {
            self.error(s.max.referenced, "max must be at least 1");
        }
        if min > max {
            self.error(
                s.min.referenced,
                format!("min ({min}) is greater than max ({max})"),
            );
        } else if desired < min || desired > max {
            self.error(
                s.desired.referenced,
                format!("desired ({desired}) must lie between min ({min}) and max ({max})"),
            );
        }
        let cpu = s.cpu_target.value;
        if !(cpu > 0.0 && cpu <= 100.0) {
            self.error(
                s.cpu_target.referenced,
                format!("cpu_target is a CPU percentage between 1 and 100, not {cpu}"),
            );
        }
        ScalingSpec {
            min,
            max,
            desired,
            cpu_target: cpu,
        }
    }

    /// The certificate must be an ACM or IAM certificate ARN, ACM's in the stack's
    /// region (a load balancer cannot use one from elsewhere).
    fn https(&mut self, h: &S<raw::RawHttps>, http_port: u16, region: Option<&str>) -> HttpsSpec {
        let h_raw = &h.value;
        let arn = &h_raw.certificate_arn;
        let parts: Vec<&str> = arn.value.splitn(6, ':').collect();
        let well_formed = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && ((parts[2] == "acm"
                && !parts[3].is_empty()
                && parts[5].starts_with("certificate/"))
                || (parts[2] == "iam"
                    && parts[3].is_empty()
                    && parts[5].starts_with("server-certificate/")));
        if !well_formed {
            self.error(
                arn.referenced,
                format!(
                    "`{}` is not a certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)",
                    arn.value
                ),
            );
        } else if let Some(region) = region
            && parts[2] == "acm"
            && parts[3] != region
        {
            self.error(
                arn.referenced,
                format!(
                    "the certificate is in {}, the stack in {region}: a load balancer uses certificates of its own region",
                    parts[3]
                ),
            );
        }
        let ssl_policy = match &h_raw.ssl_policy {
            None => DEFAULT_SSL_POLICY.to_string(),
            Some(p) => {
                if !p.value.starts_with("ELBSecurityPolicy-") {
                    self.error(
                        p.referenced,
                        format!(
                            "`{}` is not an ELB security policy (ELBSecurityPolicy-…; default {DEFAULT_SSL_POLICY})",
                            p.value
                        ),
                    );
                }
                p.value.clone()
            }
        };
        let port = match &h_raw.port {
            None => 443,
            Some(p) => {
                self.port(p);
                if p.value == http_port {
                    self.error(
                        p.referenced,
                        format!("the HTTPS port must differ from the listener's {http_port}, which redirects to it"),
                    );
                }
                p.value
            }
        };
        if port == http_port && h_raw.port.is_none() {
            self.error(
                h.referenced,
                "the listener's port is 443, which HTTPS takes: give the HTTP port (80) as `port`",
            );
        }
        HttpsSpec {
            certificate_arn: arn.value.clone(),
            ssl_policy,
            port,
        }
    }

    fn load_balancer(
        &mut self,
        lb: &raw::RawLoadBalancer,
        services: &BTreeSet<&str>,
        region: Option<&str>,
    ) -> LoadBalancerSpec {
        let mut ingress: Vec<Ipv4Net> = Vec::new();
        for c in &lb.ingress.value {
            let Some(net) = self.cidr(c, "ingress") else {
                continue;
            };
            // AWS refuses the whole rule set when one permission appears twice.
            if ingress.contains(&net) {
                self.error(c.referenced, format!("ingress lists {net} twice"));
            } else {
                ingress.push(net);
            }
        }
        // AWS's default quota: 60 inbound rules per security group.
        if lb.ingress.value.len() > 60 {
            self.error(
                lb.ingress.referenced,
                format!(
                    "ingress lists {} CIDR blocks; a security group takes at most 60 inbound rules",
                    lb.ingress.value.len()
                ),
            );
        }
        if lb.ingress.value.is_empty() {
            self.error(
                lb.ingress.referenced,
                "ingress needs at least one CIDR block (0.0.0.0/0 for the whole internet)",
            );
        }
        self.port(&lb.listener.port);
        let https = lb
            .listener
            .https
            .as_ref()
            .map(|h| self.https(h, lb.listener.port.value, region));
        self.known_service(&lb.default_service, services);
        let mut rules: Vec<RuleSpec> = Vec::new();
        let mut priorities: BTreeMap<u32, Location> = BTreeMap::new();
        for r in &lb.rules {
            self.known_service(&r.service, services);
            self.path_pattern(&r.path);
            let p = r.priority.value;
            if !(1..=50_000).contains(&p) {
                self.error(
                    r.priority.referenced,
                    format!("rule priority must be between 1 and 50000, not {p}"),
                );
            }
            if let Some(first) = priorities.get(&p) {
                let msg = format!(
                    "rule priority {p} is already used by the rule at line {}",
                    first.line()
                );
                self.error(r.priority.referenced, msg);
            } else {
                priorities.insert(p, r.priority.referenced);
            }
            let name = match &r.name {
                Some(n) => {
                    let ok = n
                        .value
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_lowercase())
                        && n.value.len() <= 64
                        && n.value
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                    if !ok {
                        self.error(
                            n.referenced,
                            format!(
                                "rule name `{}` must start with a lowercase letter and hold only lowercase letters, digits and hyphens (at most 64)",
                                n.value
                            ),
                        );
                    }
                    n.value.clone()
                }
                None => r.service.value.clone(),
            };
            if rules.iter().any(|x| x.name == name) {
                let at = r
                    .name
                    .as_ref()
                    .map_or(r.service.referenced, |n| n.referenced);
                self.error(
                    at,
                    format!(
                        "a second rule named `{name}`; give rules that route to the same service distinct `name`s"
                    ),
                );
            }
            rules.push(RuleSpec {
                name,
                path: r.path.value.clone(),
                service: r.service.value.clone(),
                priority: p,
            });
        }
        // AWS's default quota: 100 rules per listener (the default rule not counted).
        if lb.rules.len() > 100 {
            let at = lb.rules[100].priority.referenced;
            self.error(
                at,
                format!(
                    "{} rules; a listener takes at most 100 besides its default",
                    lb.rules.len()
                ),
            );
        }
        LoadBalancerSpec {
            ingress,
            port: lb.listener.port.value,
            https,
            default_service: lb.default_service.value.clone(),
            rules,
        }
    }

    fn known_service(&mut self, name: &S<String>, services: &BTreeSet<&str>) {
        if !services.contains(name.value.as_str()) {
            let known = services.iter().copied().collect::<Vec<_>>().join(", ");
            self.error(
                name.referenced,
                format!("unknown service `{}` (services: {known})", name.value),
            );
        }
    }

    /// The characters and length ELBv2 accepts in a path-pattern condition.
    fn path_pattern(&mut self, path: &S<String>) {
        let p = &path.value;
        let allowed = |c: char| c.is_ascii_alphanumeric() || "_-.$/~\"'@:+&*?".contains(c);
        if !p.starts_with('/') {
            self.error(
                path.referenced,
                format!("path pattern `{p}` must start with `/`"),
            );
        } else if p.len() > 128 {
            self.error(
                path.referenced,
                format!("path pattern is {} characters; AWS allows 128", p.len()),
            );
        } else if let Some(c) = p.chars().find(|&c| !allowed(c)) {
            self.error(
                path.referenced,
                format!(
                    "path pattern `{p}` contains `{c}`; AWS allows letters, digits, * ? and _-.$/~\"'@:+&"
                ),
            );
        }
    }

    fn table(&mut self, stack: &str, t: &raw::RawTable) -> TableSpec {
        let full = format!("{stack}-{}", t.name.value);
        if !t
            .name
            .value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            || full.len() > 255
            || t.name.value.is_empty()
        {
            self.error(
                t.name.referenced,
                format!(
                    "table name `{}` may hold only letters, digits, `_`, `-` and `.`, up to 255 characters with the stack prefix",
                    t.name.value
                ),
            );
        }
        let partition_key = self.key(&t.partition_key);
        let sort_key = t.sort_key.as_ref().map(|k| self.key(k));
        if let Some(sk) = &t.sort_key
            && sk.name.value == t.partition_key.name.value
        {
            self.error(
                sk.name.referenced,
                format!(
                    "sort key `{}` has the partition key's name; DynamoDB wants two different attributes",
                    sk.name.value
                ),
            );
        }
        let billing = match t.billing.as_ref().map(|b| b.value.as_str()) {
            None | Some("pay_per_request") => {
                for c in [&t.read_capacity, &t.write_capacity].into_iter().flatten() {
                    self.error(
                        c.referenced,
                        "capacity applies only to `billing: provisioned`",
                    );
                }
                Billing::PayPerRequest
            }
            Some("provisioned") => {
                let at = t
                    .billing
                    .as_ref()
                    .map_or(Location::UNKNOWN, |b| b.referenced);
                let read = t.read_capacity.as_ref().map(|c| c.value);
                let write = t.write_capacity.as_ref().map(|c| c.value);
                match (read, write) {
                    (Some(read), Some(write)) if read > 0 && write > 0 => {
                        Billing::Provisioned { read, write }
                    }
                    _ => {
                        self.error(
                            at,
                            "`billing: provisioned` needs read_capacity and write_capacity of at least 1",
                        );
                        Billing::PayPerRequest
                    }
                }
            }
            Some(other) => {
                let at = t
                    .billing
                    .as_ref()
                    .map_or(Location::UNKNOWN, |b| b.referenced);
                self.error(
                    at,
                    format!("billing `{other}` must be `pay_per_request` or `provisioned`"),
                );
                Billing::PayPerRequest
            }
        };
        TableSpec {
            name: full,
            partition_key,
            sort_key,
            billing,
            pitr: t.pitr.unwrap_or(true),
        }
    }

    fn key(&mut self, k: &raw::RawKey) -> KeySpec {
        if !matches!(k.key_type.value.as_str(), "S" | "N" | "B") {
            self.error(
                k.key_type.referenced,
                format!(
                    "key type `{}` must be S (string), N (number) or B (binary)",
                    k.key_type.value
                ),
            );
        }
        if k.name.value.is_empty() || k.name.value.len() > 255 {
            self.error(k.name.referenced, "key name must be 1 to 255 characters");
        }
        KeySpec {
            name: k.name.value.clone(),
            key_type: k.key_type.value.clone(),
        }
    }

    fn bucket(&mut self, b: &raw::RawBucket) -> BucketSpec {
        if let Err(why) = check_bucket_name(&b.name.value) {
            self.error(
                b.name.referenced,
                format!("bucket name `{}` {why}", b.name.value),
            );
        }
        BucketSpec {
            name: b.name.value.clone(),
            versioning: b.versioning.unwrap_or(false),
            force_destroy: b.force_destroy.unwrap_or(false),
        }
    }
}

/// S3's general-purpose bucket naming rules.
fn check_bucket_name(n: &str) -> Result<(), &'static str> {
    if !(3..=63).contains(&n.len()) {
        return Err("must be 3 to 63 characters long");
    }
    if !n
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Err("may hold only lowercase letters, digits, `-` and `.`");
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge_ok(n.chars().next()) || !edge_ok(n.chars().last()) {
        return Err("must begin and end with a letter or digit");
    }
    if n.contains("..") || n.contains(".-") || n.contains("-.") {
        return Err("must not hold `..`, `.-` or `-.`");
    }
    if n.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("must not look like an IP address");
    }
    if n.starts_with("xn--") || n.starts_with("sthree-") || n.ends_with("-s3alias") {
        return Err("uses a prefix or suffix S3 reserves");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_subnet_is_derived_in_the_other_half_of_the_vpc() {
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        let vpc = net("10.20.0.0/16");
        assert_eq!(
            derive_private(net("10.20.1.0/24"), vpc),
            Some(net("10.20.129.0/24"))
        );
        assert_eq!(
            derive_private(net("10.20.200.0/24"), vpc),
            Some(net("10.20.72.0/24"))
        );
        assert_eq!(
            derive_private(net("10.20.0.0/17"), vpc),
            Some(net("10.20.128.0/17"))
        );
        assert_eq!(derive_private(net("10.20.0.0/16"), vpc), None);
    }
}
