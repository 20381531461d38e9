//! The stack file exactly as written: a serde mirror of the YAML that rejects unknown
//! keys and keeps the location of every value that a later check may need to point at.
//! The same types give the stack file's JSON Schema (`crate::schema`): a `S<T>` field
//! needs `#[schemars(with = "T")]`, since the location wrapper is no part of the file.

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;
use std::marker::PhantomData;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStack {
    #[schemars(with = "String")]
    pub stack: S<String>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub region: Option<S<String>>,
    pub network: RawNetwork,
    pub load_balancer: RawLoadBalancer,
    #[schemars(with = "std::collections::BTreeMap<String, RawService>")]
    pub services: S<OrderedMap<RawService>>,
    #[serde(default)]
    pub table: Option<RawTable>,
    #[serde(default)]
    pub bucket: Option<RawBucket>,
    #[serde(default)]
    #[schemars(with = "Option<RawApp>")]
    pub app: Option<S<RawApp>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub instance_profile: Option<S<String>>,
}

/// The binary the instances run: built from a cargo package, or prebuilt.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub build: Option<S<String>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub bin: Option<S<String>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub artifact: Option<S<String>>,
    /// The prebuilt binary for arm64 (Graviton) instance types.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub artifact_arm64: Option<S<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    #[schemars(with = "String")]
    pub cidr: S<String>,
    #[schemars(with = "Vec<RawSubnet>")]
    pub subnets: S<Vec<RawSubnet>>,
    /// `private` (default): instances in private subnets without public IPs, reaching
    /// S3 and DynamoDB through gateway endpoints. `public`: instances in the public
    /// subnets with public IPs (for user data that needs the internet).
    #[serde(default)]
    #[schemars(with = "Option<InstancePlacement>")]
    pub instances: Option<S<String>>,
    /// Interface endpoints for Session Manager (ssm, ssmmessages, ec2messages) in the
    /// private subnets: a shell on private instances. Billed per endpoint, zone and hour.
    #[serde(default)]
    pub ssm_endpoints: Option<bool>,
}

/// Where instances run (schema only; the parser checks the text for its location).
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum InstancePlacement {
    Private,
    Public,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSubnet {
    #[schemars(with = "String")]
    pub az: S<String>,
    #[schemars(with = "String")]
    pub cidr: S<String>,
    /// The zone's private subnet (instances); derived from `cidr` when omitted.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub private: Option<S<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLoadBalancer {
    #[schemars(with = "Vec<String>")]
    pub ingress: S<Vec<S<String>>>,
    pub listener: RawListener,
    #[schemars(with = "String")]
    pub default_service: S<String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    #[schemars(with = "u16")]
    pub port: S<u16>,
    /// Serve HTTPS (on 443 unless `port` says otherwise) and redirect `port` to it.
    #[serde(default)]
    #[schemars(with = "Option<RawHttps>")]
    pub https: Option<S<RawHttps>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHttps {
    /// An ACM (or IAM server) certificate in the stack's region.
    #[schemars(with = "String")]
    pub certificate_arn: S<String>,
    /// An ELB security policy (default ELBSecurityPolicy-TLS13-1-2-2021-06).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub ssl_policy: Option<S<String>>,
    /// The HTTPS port (default 443).
    #[serde(default)]
    #[schemars(with = "Option<u16>")]
    pub port: Option<S<u16>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub name: Option<S<String>>,
    #[schemars(with = "String")]
    pub path: S<String>,
    #[schemars(with = "String")]
    pub service: S<String>,
    #[schemars(with = "u32")]
    pub priority: S<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    #[schemars(with = "u16")]
    pub port: S<u16>,
    pub health: RawHealth,
    pub instance: RawInstance,
    #[schemars(with = "String")]
    pub user_data: S<String>,
    pub scaling: RawScaling,
    /// How a new template rolls the group (instance refresh preferences).
    #[serde(default)]
    #[schemars(with = "Option<RawDeploy>")]
    pub deploy: Option<S<RawDeploy>>,
    /// Turn on the app's CPU stress endpoint (`POST /info/stress`) for this service.
    #[serde(default)]
    pub stress: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    #[schemars(with = "String")]
    pub path: S<String>,
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub interval: Option<S<u32>>,
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub healthy: Option<S<u32>>,
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub unhealthy: Option<S<u32>>,
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub grace_period: Option<S<u32>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDeploy {
    /// Percent of the group that stays in service during a roll (0–100, default 100).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub min_healthy: Option<S<u32>>,
    /// Percent the group may grow to during a roll (100–200, default 200).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub max_healthy: Option<S<u32>>,
    /// Seconds a new instance warms up before it counts (default: the grace period).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub warmup: Option<S<u32>>,
    /// Seconds to watch the finished roll before calling it done (0–43200, default 0).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub bake: Option<S<u32>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawInstance {
    #[serde(rename = "type")]
    #[schemars(with = "String")]
    pub instance_type: S<String>,
    #[schemars(with = "String")]
    pub ami: S<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawScaling {
    #[schemars(with = "u32")]
    pub min: S<u32>,
    #[schemars(with = "u32")]
    pub max: S<u32>,
    #[schemars(with = "u32")]
    pub desired: S<u32>,
    #[schemars(with = "f64")]
    pub cpu_target: S<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    #[schemars(with = "String")]
    pub name: S<String>,
    pub partition_key: RawKey,
    #[serde(default)]
    pub sort_key: Option<RawKey>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub billing: Option<S<String>>,
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub read_capacity: Option<S<u32>>,
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub write_capacity: Option<S<u32>>,
    #[serde(default)]
    pub pitr: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    #[schemars(with = "String")]
    pub name: S<String>,
    #[serde(rename = "type")]
    #[schemars(with = "String")]
    pub key_type: S<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBucket {
    #[schemars(with = "String")]
    pub name: S<String>,
    #[serde(default)]
    pub versioning: Option<bool>,
    #[serde(default)]
    pub force_destroy: Option<bool>,
}

/// A YAML mapping kept in file order with the location of each key, so that an error
/// about a service can point at its name.
#[derive(Debug)]
pub struct OrderedMap<V>(pub Vec<(S<String>, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(S<String>, V)> = Vec::new();
                while let Some(key) = map.next_key::<S<String>>()? {
                    if entries.iter().any(|(k, _)| k.value == key.value) {
                        return Err(serde::de::Error::custom(format!(
                            "duplicate key `{}`",
                            key.value
                        )));
                    }
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(OrderedMap(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}
