//! Resource addresses, attribute values and ownership tags: the vocabulary shared by
//! discovery, the differ, the planner and the executor.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

/// The one list of kinds: the enum, [`Kind::ALL`], the names in addresses and the
/// dispatch to each kind's file (`with_kind!`, over `resources::KindOps`) all come
/// from it, so a kind cannot be left out of one of them.
macro_rules! kinds {
    ($d:tt $($kind:ident => $name:literal in $module:ident :: $attrs:ident,)+) => {
        /// Every kind of AWS resource a stack manages, in the order they are first created.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Kind {
            $($kind,)+
        }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$kind,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$kind => $name,)+
                }
            }
        }

        /// `with_kind!(kind, K => expr)`: `expr` with `K` the kind's attribute struct
        /// (`resources::vpc::VpcAttrs`), whose `resources::KindOps` is the kind's life.
        macro_rules! with_kind {
            ($d k:expr, $d ops:ident => $d body:expr) => {
                match $d k {
                    $(crate::model::Kind::$kind => {
                        type $d ops = crate::resources::$module::$attrs;
                        $d body
                    })+
                }
            };
        }
        pub(crate) use with_kind;
    };
}

kinds! { $
    Vpc => "vpc" in vpc::VpcAttrs,
    Subnet => "subnet" in subnet::SubnetAttrs,
    InternetGateway => "internet_gateway" in igw::InternetGatewayAttrs,
    RouteTable => "route_table" in route_table::RouteTableAttrs,
    SecurityGroup => "security_group" in security_group::SecurityGroupAttrs,
    LoadBalancer => "load_balancer" in load_balancer::LoadBalancerAttrs,
    TargetGroup => "target_group" in target_group::TargetGroupAttrs,
    Listener => "listener" in listener::ListenerAttrs,
    ListenerRule => "listener_rule" in listener_rule::ListenerRuleAttrs,
    Role => "iam_role" in iam_role::RoleAttrs,
    InstanceProfile => "iam_instance_profile" in instance_profile::InstanceProfileAttrs,
    LaunchTemplate => "launch_template" in launch_template::LaunchTemplateAttrs,
    AutoScalingGroup => "autoscaling_group" in asg::AutoScalingGroupAttrs,
    ScalingPolicy => "scaling_policy" in scaling_policy::ScalingPolicyAttrs,
    Table => "dynamodb_table" in table::TableAttrs,
    Bucket => "s3_bucket" in bucket::BucketAttrs,
    Artifact => "s3_object" in artifact::ArtifactAttrs,
    Secret => "ssm_parameter" in secret::SecretAttrs,
    NetworkAcl => "network_acl" in network_acl::NetworkAclAttrs,
    FlowLog => "flow_log" in flow_log::FlowLogAttrs,
    VpcEndpoint => "vpc_endpoint" in vpc_endpoint::VpcEndpointAttrs,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

/// Which resource: its kind and its logical name within the stack (`subnet.a`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    pub kind: Kind,
    pub name: String,
}

impl Address {
    pub fn new(kind: Kind, name: impl Into<String>) -> Address {
        Address {
            kind,
            name: name.into(),
        }
    }

    pub fn parse(s: &str) -> Option<Address> {
        let (kind, name) = s.split_once('.')?;
        Some(Address::new(Kind::parse(kind)?, name))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind.as_str(), self.name)
    }
}

impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Address::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("bad address `{s}`")))
    }
}

/// An attribute value. `Ref` stands for the id of another resource of the stack until
/// that id is known; `Unknown` is a value only AWS can tell, after apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Ref(RefTo),
    Unknown(UnknownMarker),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefTo {
    #[serde(rename = "ref")]
    pub address: Address,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownMarker {
    pub known_after_apply: bool,
}

impl Value {
    pub fn s(v: impl Into<String>) -> Value {
        Value::Str(v.into())
    }

    pub fn r(a: &Address) -> Value {
        Value::Ref(RefTo { address: a.clone() })
    }

    pub fn unknown() -> Value {
        Value::Unknown(UnknownMarker {
            known_after_apply: true,
        })
    }

    pub fn strs<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Value {
        Value::List(items.into_iter().map(|s| Value::Str(s.into())).collect())
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_list(&self) -> &[Value] {
        match self {
            Value::List(l) => l,
            _ => &[],
        }
    }

    /// The strings of a list (ids after resolution).
    pub fn str_list(&self) -> Vec<String> {
        self.as_list()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }

    pub fn is_known(&self) -> bool {
        match self {
            Value::Ref(_) | Value::Unknown(_) => false,
            Value::List(l) => l.iter().all(Value::is_known),
            Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Str(_) => true,
        }
    }

    /// Every resource this value refers to.
    pub fn refs<'a>(&'a self, out: &mut Vec<&'a Address>) {
        match self {
            Value::Ref(r) => out.push(&r.address),
            Value::List(l) => l.iter().for_each(|v| v.refs(out)),
            Value::Bool(_)
            | Value::Int(_)
            | Value::Float(_)
            | Value::Str(_)
            | Value::Unknown(_) => {}
        }
    }

    /// Replaces references with ids from `ids`, or with `Unknown` when an id is not known yet.
    pub fn resolve(&self, ids: &dyn Fn(&Address) -> Option<String>) -> Value {
        match self {
            Value::Ref(r) => ids(&r.address).map_or_else(Value::unknown, Value::Str),
            Value::List(l) => Value::List(l.iter().map(|v| v.resolve(ids)).collect()),
            other => other.clone(),
        }
    }

    /// Lists are compared as sets: AWS returns them in its own order.
    pub fn normalized(&self) -> Value {
        match self {
            Value::List(l) => {
                let mut items: Vec<Value> = l.iter().map(Value::normalized).collect();
                items.sort_by_key(|v| v.to_string());
                Value::List(items)
            }
            other => other.clone(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::List(l) => {
                f.write_str("[")?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Ref(r) => write!(f, "{}.id", r.address),
            Value::Unknown(_) => f.write_str("(known after apply)"),
        }
    }
}

pub type Attrs = BTreeMap<String, Value>;

/// Attributes from `(name, value)` pairs (tests write the map form by hand).
#[cfg(test)]
pub fn attrs<const N: usize>(pairs: [(&str, Value); N]) -> Attrs {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// A kind's attributes as one struct, whose fields are the attribute names: built by
/// the kind's `desired`, flattened from what AWS reports, read by create and update.
pub trait KindAttrs: Serialize + DeserializeOwned {
    const KIND: Kind;
}

/// The name of attribute `field` of the attribute struct `T`, as the plan and the map
/// name it: `attr!(VpcAttrs.cidr_block)`. A misspelt or removed field does not compile,
/// so the names in `FORCE_NEW`, `REFERENCES` and an update's `changed` checks are the
/// struct's own. Usable in constants.
macro_rules! attr {
    ($t:ident . $field:ident) => {
        $crate::model::field_name({
            let _ = ::std::mem::offset_of!($t, $field);
            stringify!($field)
        })
    };
}
pub(crate) use attr;

/// A field's name as serde writes it: without the `r#` of a raw identifier (`r#type`).
pub const fn field_name(ident: &'static str) -> &'static str {
    match ident.as_bytes() {
        [b'r', b'#', rest @ ..] => match std::str::from_utf8(rest) {
            Ok(name) => name,
            Err(_) => ident,
        },
        _ => ident,
    }
}

/// A typed value into attributes (the plan's form). Optional fields absent from the
/// struct's serialization (`skip_serializing_if`) are absent from the map.
pub fn to_attrs<T: KindAttrs>(t: &T) -> Attrs {
    serde_json::to_value(t)
        .and_then(serde_json::from_value)
        .unwrap_or_else(|e| panic!("{} attributes are a map of values: {e}", T::KIND.as_str()))
}

/// Attributes (resolved for create and update, or as discovery read them) into the
/// kind's struct. Kinds' structs take `#[serde(default)]`: an attribute missing from
/// the map reads as empty, as it did from the map.
pub fn from_attrs<T: KindAttrs>(attrs: &Attrs) -> Result<T, crate::aws::Error> {
    serde_json::to_value(attrs)
        .and_then(serde_json::from_value)
        .map_err(|e| {
            crate::aws::Error::Config(format!(
                "malformed attributes of a {}: {e}",
                T::KIND.as_str()
            ))
        })
}

/// A reference to a resource of the kind whose attributes are `T`: its address until
/// the executor resolves it (`{"ref": "kind.name"}`, [`Value::Ref`]), then its id (a
/// plain string); `Unknown` when the id is not known yet.
pub struct Ref<T> {
    target: Target,
    kind: PhantomData<fn() -> T>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
enum Target {
    Id(String),
    Address(RefTo),
    Unknown(UnknownMarker),
}

impl<T: KindAttrs> Ref<T> {
    /// The stack's resource `T::KIND`.`name`.
    pub fn to(name: impl Into<String>) -> Ref<T> {
        Ref::at(Address::new(T::KIND, name))
    }

    /// The resource at `address`, which must be of kind `T::KIND`.
    pub fn at(address: Address) -> Ref<T> {
        assert_eq!(address.kind, T::KIND, "a reference to {address}");
        Ref::with(Target::Address(RefTo { address }))
    }
}

impl<T> Ref<T> {
    fn with(target: Target) -> Ref<T> {
        Ref {
            target,
            kind: PhantomData,
        }
    }

    /// A resource known by its id (one the stack does not own, or a resolved reference).
    pub fn id(id: impl Into<String>) -> Ref<T> {
        Ref::with(Target::Id(id.into()))
    }

    /// The id, once resolved (empty before).
    pub fn as_id(&self) -> &str {
        match &self.target {
            Target::Id(id) => id,
            Target::Address(_) | Target::Unknown(_) => "",
        }
    }
}

/// The ids of resolved references.
pub fn ids<T>(refs: &[Ref<T>]) -> Vec<String> {
    refs.iter().map(|r| r.as_id().to_string()).collect()
}

/// No resource: an empty id (as a missing attribute read before).
impl<T> Default for Ref<T> {
    fn default() -> Self {
        Ref::id("")
    }
}

impl<T> Clone for Ref<T> {
    fn clone(&self) -> Self {
        Ref::with(self.target.clone())
    }
}

impl<T> PartialEq for Ref<T> {
    fn eq(&self, other: &Self) -> bool {
        self.target == other.target
    }
}

impl<T> fmt::Debug for Ref<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.target.fmt(f)
    }
}

impl<T> Serialize for Ref<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.target.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Ref<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Target::deserialize(d).map(Ref::with)
    }
}

impl<T> From<Ref<T>> for Value {
    fn from(r: Ref<T>) -> Value {
        match r.target {
            Target::Id(id) => Value::Str(id),
            Target::Address(to) => Value::Ref(to),
            Target::Unknown(u) => Value::Unknown(u),
        }
    }
}

/// A resource as the stack file wants it.
#[derive(Debug, Clone)]
pub struct Desired {
    pub address: Address,
    pub attrs: Attrs,
    /// Data sent on create or update but compared through an attribute (rendered user
    /// data is compared by its digest, `user_data_sha256`; an artifact's local path by
    /// the digest in its key).
    pub payload: Option<String>,
    /// Resources that must be in place first though no attribute holds their id (a
    /// launch template's user data names the artifact's key).
    pub after: Vec<Address>,
}

impl Desired {
    /// A resource with no payload and no dependency beyond its references.
    pub fn new(address: Address, attrs: Attrs) -> Desired {
        Desired {
            address,
            attrs,
            payload: None,
            after: Vec::new(),
        }
    }

    /// The resources this one refers to, hence must exist first.
    pub fn deps(&self) -> Vec<Address> {
        let mut out = Vec::new();
        for v in self.attrs.values() {
            v.refs(&mut out);
        }
        out.extend(&self.after);
        let mut deps: Vec<Address> = out.into_iter().cloned().collect();
        deps.sort();
        deps.dedup();
        deps
    }
}

/// A resource as AWS reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Live {
    pub address: Address,
    /// The id other resources use to refer to this one (vpc-…, an ARN, a table name).
    pub id: String,
    pub attrs: Attrs,
    /// Values needed to update or delete that are not compared (association ids, ARNs).
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

/// Tag keys that mark ownership. A resource belongs to stack S when it carries
/// `stack:name = S`; `stack:address` says which resource of the stack it is.
pub const TAG_STACK: &str = "stack:name";
pub const TAG_ADDRESS: &str = "stack:address";

/// The tags every resource of a stack carries.
pub fn ownership_tags(stack: &str, address: &Address) -> Vec<(String, String)> {
    vec![
        (TAG_STACK.to_string(), stack.to_string()),
        (TAG_ADDRESS.to_string(), address.to_string()),
        ("Name".to_string(), format!("{stack}-{}", address.name)),
    ]
}

/// Reads ownership from a resource's tags: `Some(address)` when `stack` owns it.
pub fn owned_address<'a, I>(stack: &str, tags: I) -> Option<Address>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut owner = None;
    let mut address = None;
    for (k, v) in tags {
        if k == TAG_STACK {
            owner = Some(v);
        } else if k == TAG_ADDRESS {
            address = Address::parse(v);
        }
    }
    if owner == Some(stack) { address } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_are_the_keys_serde_writes() {
        #[derive(Serialize)]
        struct Endpoint {
            vpc_id: String,
            r#type: String,
        }
        const NAMES: &[&str] = &[attr!(Endpoint.vpc_id), attr!(Endpoint.r#type)];
        assert_eq!(NAMES, ["vpc_id", "type"]);
        let e = Endpoint {
            vpc_id: String::new(),
            r#type: String::new(),
        };
        let keys: Vec<String> = match serde_json::to_value(&e) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            other => panic!("{other:?}"),
        };
        let mut names = NAMES.to_vec();
        names.sort();
        assert_eq!(keys, names);
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Probe {
        vpc_id: Ref<Probe>,
        subnet_ids: Vec<Ref<Probe>>,
        port: i64,
        target: f64,
        on: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        build: Option<String>,
    }

    impl KindAttrs for Probe {
        const KIND: Kind = Kind::Vpc;
    }

    #[test]
    fn typed_attributes_serialize_as_the_map_did() {
        let p = Probe {
            vpc_id: Ref::to("main"),
            subnet_ids: vec![Ref::id("subnet-1")],
            port: 80,
            target: 50.0,
            on: true,
            build: None,
        };
        let a = to_attrs(&p);
        let want = attrs([
            ("vpc_id", Value::r(&Address::new(Kind::Vpc, "main"))),
            ("subnet_ids", Value::strs(["subnet-1"])),
            ("port", Value::Int(80)),
            ("target", Value::Float(50.0)),
            ("on", Value::Bool(true)),
        ]);
        assert_eq!(a, want);
        assert_eq!(from_attrs::<Probe>(&a).unwrap(), p);
        // Resolved by the executor: the reference is an id.
        let resolved: Attrs = a
            .iter()
            .map(|(k, v)| (k.clone(), v.resolve(&|_| Some("vpc-1".to_string()))))
            .collect();
        let back: Probe = from_attrs(&resolved).unwrap();
        assert_eq!(back.vpc_id.as_id(), "vpc-1");
        assert_eq!(ids(&back.subnet_ids), ["subnet-1"]);
        assert!(from_attrs::<Probe>(&Attrs::new()).is_err());
    }
}
