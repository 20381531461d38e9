//! Names the stack would create that someone else already holds. AWS refuses a second
//! load balancer, target group, Auto Scaling group, launch template, role or instance
//! profile of the same name (and a second security group of the same name in one VPC),
//! so `up` would fail half-way; `plan` finds them first and `up` refuses before any
//! write. Only names no live resource of the stack carries are looked up, so a
//! converged stack costs no call here; each kind looks up its own
//! (`KindOps::names_taken`).

use super::Foreign;
use crate::aws::{Clients, Error};
use crate::model::{Address, Desired, Kind, Live, with_kind};
use crate::resources::KindOps;
use std::collections::{BTreeMap, BTreeSet};

/// The AWS name a desired resource will carry, for the kinds whose names are unique.
fn wanted_name(d: &Desired) -> Option<&str> {
    // Tables and buckets are checked by their own discovery.
    let attr = super::unique_name(d.address.kind)?;
    d.attrs.get(attr).and_then(|v| v.as_str())
}

/// Names the stack wants, per kind, that none of its live resources carries.
fn unclaimed(desired: &[Desired], live: &BTreeMap<Address, Live>) -> BTreeMap<Kind, Vec<String>> {
    let held: BTreeSet<(Kind, &str)> = live
        .values()
        .filter_map(|l| {
            let attr = super::unique_name(l.address.kind)?;
            let name = l.attrs.get(attr).and_then(|v| v.as_str())?;
            Some((l.address.kind, name))
        })
        .collect();
    let mut out: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
    for d in desired {
        if let Some(n) = wanted_name(d)
            && !held.contains(&(d.address.kind, n))
        {
            out.entry(d.address.kind).or_default().push(n.to_string());
        }
    }
    out
}

fn foreign(kind: Kind, names: impl IntoIterator<Item = String>) -> Vec<Foreign> {
    names
        .into_iter()
        .map(|name| Foreign { kind, name })
        .collect()
}

/// The names the stack wants that exist already and are not the stack's own.
pub async fn find(
    c: &Clients,
    desired: &[Desired],
    live: &BTreeMap<Address, Live>,
) -> Result<Vec<Foreign>, Error> {
    let wanted = unclaimed(desired, live);
    let mut out = Vec::new();
    for (kind, names) in wanted {
        let taken = with_kind!(kind, K => K::names_taken(c, &names, live).await)?;
        out.extend(foreign(kind, taken));
    }
    Ok(out)
}

/// Which of `names` are held, asking one name per call (`held`): for the APIs whose
/// lookup of several names fails whole when one is unknown. A name AWS answers one of
/// the `absent` codes for is free.
pub(crate) async fn held_each<F, Fut>(
    names: &[String],
    absent: &[&str],
    held: F,
) -> Result<Vec<String>, Error>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<bool, Error>>,
{
    let mut taken = Vec::new();
    for n in names {
        match held(n.clone()).await {
            Ok(true) => taken.push(n.clone()),
            Ok(false) => {}
            Err(e) if e.is_code(absent) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(taken)
}
