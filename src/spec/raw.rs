//! The stack file exactly as written: a serde mirror of the YAML that rejects unknown
//! keys and keeps the location of every value that a later check may need to point at.

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;
use std::marker::PhantomData;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStack {
    pub stack: S<String>,
    #[serde(default)]
    pub region: Option<S<String>>,
    pub network: RawNetwork,
    pub load_balancer: RawLoadBalancer,
    pub services: S<OrderedMap<RawService>>,
    #[serde(default)]
    pub table: Option<RawTable>,
    #[serde(default)]
    pub bucket: Option<RawBucket>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    pub cidr: S<String>,
    pub subnets: S<Vec<RawSubnet>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubnet {
    pub az: S<String>,
    pub cidr: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoadBalancer {
    pub ingress: S<Vec<S<String>>>,
    pub listener: RawListener,
    pub default_service: S<String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub port: S<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(default)]
    pub name: Option<S<String>>,
    pub path: S<String>,
    pub service: S<String>,
    pub priority: S<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub port: S<u16>,
    pub health: RawHealth,
    pub instance: RawInstance,
    pub user_data: S<String>,
    pub scaling: RawScaling,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub path: S<String>,
    #[serde(default)]
    pub interval: Option<S<u32>>,
    #[serde(default)]
    pub healthy: Option<S<u32>>,
    #[serde(default)]
    pub unhealthy: Option<S<u32>>,
    #[serde(default)]
    pub grace_period: Option<S<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstance {
    #[serde(rename = "type")]
    pub instance_type: S<String>,
    pub ami: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScaling {
    pub min: S<u32>,
    pub max: S<u32>,
    pub desired: S<u32>,
    pub cpu_target: S<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    pub name: S<String>,
    pub partition_key: RawKey,
    #[serde(default)]
    pub sort_key: Option<RawKey>,
    #[serde(default)]
    pub billing: Option<S<String>>,
    #[serde(default)]
    pub read_capacity: Option<S<u32>>,
    #[serde(default)]
    pub write_capacity: Option<S<u32>>,
    #[serde(default)]
    pub pitr: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub name: S<String>,
    #[serde(rename = "type")]
    pub key_type: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBucket {
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
