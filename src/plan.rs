//! The differ: desired resources against live ones, attribute by attribute, into a
//! [`Plan`] — pure data that says what `up` would do and why.

use crate::aws::probe::Missing;
use crate::model::{Address, Attrs, Desired, Live, Value};
use crate::resources::{Foreign, create_before_destroy as create_first, forces_replacement};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The name under which a replaced resource's old self is kept while its successor is
/// created first (Terraform calls it deposed).
pub fn deposed(a: &Address) -> Address {
    Address::new(a.kind, format!("{} (old)", a.name))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
}

impl Action {
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttrChange {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forces_replacement: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    pub address: Address,
    pub action: Action,
    /// The live id, for updates, replacements and deletions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub attributes: Vec<AttrChange>,
    /// A replacement that creates the new resource first, moves what uses it over in
    /// place, and only then deletes the old one (`+/-`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_before_destroy: bool,
    /// Lines a person needs to judge the change: the rendered user data's diff, the
    /// instances a roll replaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The live resource has deletion protection on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
    /// Data a replacement or removal destroys (a table's items, a bucket's objects):
    /// `up` and `down` refuse it without `--force`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destroys: Option<Loss>,
}

/// The data a change would destroy, as counted while planning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Loss {
    /// How many were counted (up to one page: `more` says there are others).
    pub count: u64,
    pub more: bool,
    /// `items` or `objects`.
    pub of: String,
    /// The stack file allows it (`force_destroy: true` on the bucket).
    #[serde(default)]
    pub allowed_by_file: bool,
}

impl Loss {
    /// "destroys all 3 items", "deletes more than 1000 objects".
    pub fn describe(&self) -> String {
        let verb = if self.of == "items" {
            "destroys all"
        } else {
            "deletes"
        };
        let more = if self.more { "more than " } else { "" };
        format!("{verb} {more}{} {}", self.count, self.of)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// Where the plan applies: the stack, the account and region of the credentials,
    /// and the endpoint when it is not AWS.
    pub stack: String,
    pub account: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub changes: Vec<Change>,
    /// Resources that match the stack file.
    pub unchanged: usize,
    /// Services the endpoint does not implement; their resources are not listed.
    pub missing_services: Vec<Missing>,
    /// Names the stack wants that another owner holds.
    pub conflicts: Vec<Foreign>,
    /// What is wrong with what runs, though the plan does not change it (targets
    /// failing their health checks); the exit code is unaffected.
    pub warnings: Vec<String>,
}

impl Plan {
    /// "stack `web` in account 123456789012, region us-east-1" (and the endpoint).
    pub fn target(&self) -> String {
        let mut t = format!("stack `{}` in ", self.stack);
        if !self.account.is_empty() {
            t.push_str(&format!("account {}, ", self.account));
        }
        t.push_str(&format!("region {}", self.region));
        if let Some(e) = &self.endpoint {
            t.push_str(&format!(" (endpoint {e})"));
        }
        t
    }

    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn change(&self, a: &Address) -> Option<&Change> {
        self.changes.iter().find(|c| &c.address == a)
    }
}

/// Live resources keyed by address. A second resource claiming an address (left by a
/// crash, or tags copied by hand) gets its own address, so the plan removes it. Of
/// several, the address goes to the one closest to what the file wants (a run
/// stopped mid-replacement leaves the new one and the old one: the new one stays).
pub fn index_live(live: Vec<Live>, desired: &[Desired]) -> BTreeMap<Address, Live> {
    let differences = |l: &Live| {
        let Some(d) = desired.iter().find(|d| d.address == l.address) else {
            return 0;
        };
        d.attrs
            .iter()
            .filter(|(_, v)| v.is_known())
            .filter(|(k, v)| l.attrs.get(*k).map(Value::normalized) != Some(v.normalized()))
            .count()
    };
    let mut live = live;
    live.sort_by_key(|l| (l.address.clone(), differences(l)));
    let mut out: BTreeMap<Address, Live> = BTreeMap::new();
    for mut l in live {
        if out.contains_key(&l.address) {
            l.address.name = format!(
                "{}#{}",
                l.address.name,
                l.id.rsplit('/').next().unwrap_or(&l.id)
            );
        }
        out.insert(l.address.clone(), l);
    }
    out
}

/// Compares desired resources (in dependency order) with live ones.
pub fn diff(desired: &[Desired], live: &BTreeMap<Address, Live>) -> Plan {
    let mut plan = Plan::default();
    let mut stable: BTreeMap<&Address, &str> = BTreeMap::new();
    // Resources whose id is the name the file gives them: a reference to one is known
    // before it exists, so the plan shows the name, not "(known after apply)".
    for d in desired {
        if let Some(attr) = crate::resources::id_attribute(d.address.kind)
            && let Some(name) = d.attrs.get(attr).and_then(Value::as_str)
            && live.get(&d.address).is_none_or(|l| l.id == name)
        {
            stable.insert(&d.address, name);
        }
    }
    // Replaced resources, and whether the new one comes first: only then can what
    // holds the old id move over in place; otherwise it is replaced too.
    let mut replaced: BTreeMap<&Address, bool> = BTreeMap::new();
    for d in desired {
        let resolved = resolve(&d.attrs, &stable);
        let Some(l) = live.get(&d.address) else {
            plan.changes.push(Change {
                address: d.address.clone(),
                action: Action::Create,
                id: None,
                attributes: resolved
                    .into_iter()
                    .map(|(name, v)| AttrChange {
                        name,
                        before: None,
                        after: Some(v),
                        forces_replacement: false,
                    })
                    .collect(),
                create_before_destroy: false,
                notes: Vec::new(),
                protected: false,
                destroys: None,
            });
            continue;
        };
        let mut changes = Vec::new();
        for (name, after) in &resolved {
            let before = l.attrs.get(name);
            if before.map(Value::normalized) == Some(after.normalized()) {
                continue;
            }
            let mut refs = Vec::new();
            d.attrs[name].refs(&mut refs);
            let dep_replaced = refs.iter().any(|r| replaced.get(r) == Some(&false));
            changes.push(AttrChange {
                name: name.clone(),
                before: before.cloned(),
                after: Some(after.clone()),
                forces_replacement: dep_replaced || forces_replacement(d.address.kind, name),
            });
        }
        if changes.is_empty() {
            plan.unchanged += 1;
            stable.insert(&d.address, &l.id);
            continue;
        }
        let mut create_before_destroy = false;
        let action = if changes.iter().any(|c| c.forces_replacement) {
            create_before_destroy = create_first(d.address.kind, l, &resolved, live);
            replaced.insert(&d.address, create_before_destroy);
            Action::Replace
        } else {
            stable.insert(&d.address, &l.id);
            Action::Update
        };
        plan.changes.push(Change {
            address: d.address.clone(),
            action,
            id: Some(l.id.clone()),
            attributes: changes,
            create_before_destroy,
            notes: Vec::new(),
            protected: false,
            destroys: None,
        });
    }
    let wanted: BTreeSet<&Address> = desired.iter().map(|d| &d.address).collect();
    for (a, l) in live {
        if !wanted.contains(a) {
            plan.changes.push(Change {
                address: a.clone(),
                action: Action::Delete,
                id: Some(l.id.clone()),
                attributes: l
                    .attrs
                    .iter()
                    .map(|(name, v)| AttrChange {
                        name: name.clone(),
                        before: Some(v.clone()),
                        after: None,
                        forces_replacement: false,
                    })
                    .collect(),
                create_before_destroy: false,
                notes: Vec::new(),
                protected: false,
                destroys: None,
            });
        }
    }
    plan.changes.sort_by(|a, b| a.address.cmp(&b.address));
    plan
}

/// Refs to resources that keep their id become that id; others are known after apply.
pub fn resolve(attrs: &Attrs, ids: &BTreeMap<&Address, &str>) -> Attrs {
    let lookup = |a: &Address| ids.get(a).map(|s| s.to_string());
    attrs
        .iter()
        .map(|(k, v)| (k.clone(), v.resolve(&lookup)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    fn d(a: &Address, attrs: &[(&str, Value)]) -> Desired {
        Desired {
            after: Vec::new(),
            address: a.clone(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            payload: None,
        }
    }

    fn l(a: &Address, id: &str, attrs: &[(&str, Value)]) -> Live {
        Live {
            address: a.clone(),
            id: id.into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            extra: Default::default(),
        }
    }

    #[test]
    fn replacing_a_dependency_replaces_what_holds_its_id() {
        let vpc = Address::new(Kind::Vpc, "main");
        let sub = Address::new(Kind::Subnet, "a");
        let desired = vec![
            d(&vpc, &[("cidr_block", Value::s("10.1.0.0/16"))]),
            d(
                &sub,
                &[
                    ("vpc_id", Value::r(&vpc)),
                    ("map_public_ip_on_launch", Value::Bool(true)),
                ],
            ),
        ];
        let live = index_live(
            vec![
                l(&vpc, "vpc-1", &[("cidr_block", Value::s("10.0.0.0/16"))]),
                l(
                    &sub,
                    "subnet-1",
                    &[
                        ("vpc_id", Value::s("vpc-1")),
                        ("map_public_ip_on_launch", Value::Bool(false)),
                    ],
                ),
            ],
            &desired,
        );
        let plan = diff(&desired, &live);
        assert_eq!(plan.change(&vpc).unwrap().action, Action::Replace);
        let s = plan.change(&sub).unwrap();
        assert_eq!(s.action, Action::Replace);
        let vpc_attr = s.attributes.iter().find(|c| c.name == "vpc_id").unwrap();
        assert_eq!(vpc_attr.after, Some(Value::unknown()));
        assert!(vpc_attr.forces_replacement);
    }

    #[test]
    fn lists_compare_as_sets_and_extra_live_resources_are_deleted() {
        let sg = Address::new(Kind::SecurityGroup, "alb");
        let old = Address::new(Kind::SecurityGroup, "gone");
        let desired = vec![d(&sg, &[("ingress", Value::strs(["b", "a"]))])];
        let live = index_live(
            vec![
                l(&sg, "sg-1", &[("ingress", Value::strs(["a", "b"]))]),
                l(&old, "sg-2", &[]),
            ],
            &desired,
        );
        let plan = diff(&desired, &live);
        assert_eq!(plan.unchanged, 1);
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.changes[0].action, Action::Delete);
        assert_eq!(plan.changes[0].address, old);
    }

    #[test]
    fn a_subnet_with_a_new_cidr_is_created_first_and_its_users_move_in_place() {
        let sub = Address::new(Kind::Subnet, "a");
        let other = Address::new(Kind::Subnet, "b");
        let lb = Address::new(Kind::LoadBalancer, "main");
        let subnet = |cidr: &str| {
            [
                ("vpc_id", Value::s("vpc-1")),
                ("cidr_block", Value::s(cidr)),
            ]
        };
        let desired = vec![
            d(&sub, &subnet("10.0.3.0/24")),
            d(&other, &subnet("10.0.2.0/24")),
            d(
                &lb,
                &[
                    ("name", Value::s("x-alb")),
                    (
                        "subnets",
                        Value::List(vec![Value::r(&sub), Value::r(&other)]),
                    ),
                ],
            ),
        ];
        let live_with = |old_cidr: &str| {
            index_live(
                vec![
                    l(&sub, "subnet-1", &subnet(old_cidr)),
                    l(&other, "subnet-2", &subnet("10.0.2.0/24")),
                    l(
                        &lb,
                        "arn:lb",
                        &[
                            ("name", Value::s("x-alb")),
                            ("subnets", Value::strs(["subnet-1", "subnet-2"])),
                        ],
                    ),
                ],
                &desired,
            )
        };
        let plan = diff(&desired, &live_with("10.0.1.0/24"));
        let s = plan.change(&sub).unwrap();
        assert_eq!(s.action, Action::Replace);
        assert!(s.create_before_destroy);
        let l = plan.change(&lb).unwrap();
        assert_eq!(l.action, Action::Update, "{:?}", l.attributes);
        // A new CIDR overlapping a live subnet cannot stand beside it: the old way.
        let plan = diff(&desired, &live_with("10.0.3.0/25"));
        assert!(!plan.change(&sub).unwrap().create_before_destroy);
        assert_eq!(plan.change(&lb).unwrap().action, Action::Replace);
    }

    #[test]
    fn of_two_claiming_an_address_the_one_matching_the_file_keeps_it() {
        let sub = Address::new(Kind::Subnet, "a");
        let desired = vec![d(&sub, &[("cidr_block", Value::s("10.0.3.0/24"))])];
        let live = index_live(
            vec![
                l(
                    &sub,
                    "subnet-old",
                    &[("cidr_block", Value::s("10.0.1.0/24"))],
                ),
                l(
                    &sub,
                    "subnet-new",
                    &[("cidr_block", Value::s("10.0.3.0/24"))],
                ),
            ],
            &desired,
        );
        assert_eq!(live[&sub].id, "subnet-new");
        assert_eq!(live.len(), 2);
    }
}
