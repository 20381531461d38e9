//! The instance profile that carries the stack's role onto its instances. Its id is
//! the profile's ARN, which launch templates name.

use super::LiveMap;
use super::iam_role::RoleAttrs;
use super::iam_role::iam_tags;
use super::{Created, Ctx, absent_ok};
use crate::aws::{Clients, Context, Error, Patience, retry_codes};
use crate::desired::Build;
use crate::model::attr;
use crate::model::{
    Address, Desired, Kind, KindAttrs, Live, Ref, from_attrs, owned_address, to_attrs,
};
use serde::{Deserialize, Serialize};

/// The instance profile's attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceProfileAttrs {
    pub name: String,
    pub path: String,
    /// The role it carries (a role's id is its name).
    pub role_name: Ref<RoleAttrs>,
}

impl KindAttrs for InstanceProfileAttrs {
    const KIND: Kind = Kind::InstanceProfile;
}

/// The instances' profile holding the stack's role, unless the file names an existing
/// one.
pub fn desired(b: &Build) -> Vec<Desired> {
    let (stack, region) = (&b.spec.stack, &b.inputs.region);
    if b.inputs.instance_profile_arn.is_some() {
        return Vec::new();
    }
    vec![Desired::new(
        crate::desired::instance_profile(),
        to_attrs(&InstanceProfileAttrs {
            name: crate::desired::iam_name(stack, region),
            path: crate::desired::iam_path(stack, region),
            role_name: Ref::at(crate::desired::role()),
        }),
    )]
}

pub async fn discover(c: &Clients, stack: &str) -> Result<Vec<Live>, Error> {
    let mut out = Vec::new();
    let mut pages = c
        .iam
        .list_instance_profiles()
        .path_prefix(crate::desired::iam_stack_path(stack))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for listed in page
            .ctx("listing", &"IAM instance profiles")?
            .instance_profiles()
        {
            if !super::iam_role::ours_in_region(listed.path(), stack, &c.region) {
                continue;
            }
            // IAM's list calls return no tags on AWS ("this operation does not return
            // tags"); GetInstanceProfile does (moto lacks ListInstanceProfileTags).
            let got = match c
                .iam
                .get_instance_profile()
                .instance_profile_name(listed.instance_profile_name())
                .send()
                .await
                .ctx("reading", &listed.instance_profile_name())
            {
                Ok(r) => r,
                // Deleted between the list and the read.
                Err(e) if e.is_code(&["NoSuchEntity"]) => continue,
                Err(e) => return Err(e),
            };
            let Some(p) = got.instance_profile() else {
                continue;
            };
            let name = p.instance_profile_name();
            let Some(address) = owned_address(stack, p.tags().iter().map(|t| (t.key(), t.value())))
            else {
                continue;
            };
            let role = p.roles().first().map(|r| r.role_name()).unwrap_or_default();
            out.push(Live {
                address,
                id: p.arn().to_string(),
                attrs: to_attrs(&InstanceProfileAttrs {
                    name: name.to_string(),
                    path: p.path().to_string(),
                    role_name: Ref::id(role),
                }),
                extra: [("name".to_string(), name.to_string())].into(),
            });
        }
    }
    Ok(out)
}

async fn add_role(ctx: &Ctx, a: &Address, profile: &str, role: &str) -> Result<(), Error> {
    // A role created a moment ago may not be visible to this call yet.
    retry_codes(&["NoSuchEntity"], Patience::FRESH_ID, || async {
        ctx.c
            .iam
            .add_role_to_instance_profile()
            .instance_profile_name(profile)
            .role_name(role)
            .send()
            .await
            .ctx("adding the role to", a)
    })
    .await
    .map(drop)
}

async fn remove_role(ctx: &Ctx, a: &Address, profile: &str, role: &str) -> Result<(), Error> {
    absent_ok(
        ctx.c
            .iam
            .remove_role_from_instance_profile()
            .instance_profile_name(profile)
            .role_name(role)
            .send()
            .await
            .ctx("removing the role from", a),
        &["NoSuchEntity"],
    )
}

pub async fn create(ctx: &Ctx, a: &Address, want: InstanceProfileAttrs) -> Result<Created, Error> {
    let name = &want.name;
    let r = ctx
        .c
        .iam
        .create_instance_profile()
        .instance_profile_name(name)
        .path(&want.path)
        .set_tags(Some(iam_tags(ctx, a)))
        .send()
        .await
        .ctx("creating", a)?;
    let arn = r
        .instance_profile()
        .map(|p| p.arn().to_string())
        .unwrap_or_default();
    add_role(ctx, a, name, want.role_name.as_id()).await?;
    Ok((arn, [("name".to_string(), name.to_string())].into()))
}

pub async fn update(
    ctx: &Ctx,
    live: &Live,
    want: InstanceProfileAttrs,
    changed: &[String],
) -> Result<(), Error> {
    let a = &live.address;
    let have: InstanceProfileAttrs = from_attrs(&live.attrs)?;
    let name = &have.name;
    if super::changed(changed, attr!(InstanceProfileAttrs.role_name)) {
        let old = have.role_name.as_id();
        if !old.is_empty() {
            remove_role(ctx, a, name, old).await?;
        }
        add_role(ctx, a, name, want.role_name.as_id()).await?;
    }
    Ok(())
}

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    let a = &live.address;
    let have: InstanceProfileAttrs = from_attrs(&live.attrs)?;
    let name = &have.name;
    let role = have.role_name.as_id();
    if !role.is_empty() {
        remove_role(ctx, a, name, role).await?;
    }
    absent_ok(
        ctx.c
            .iam
            .delete_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .ctx("deleting", a),
        &["NoSuchEntity"],
    )
}

impl super::KindOps for InstanceProfileAttrs {
    const FORCE_NEW: &'static [&'static str] = &[
        attr!(InstanceProfileAttrs.name),
        attr!(InstanceProfileAttrs.path),
    ];
    const REFERENCES: &'static [&'static str] = &[attr!(InstanceProfileAttrs.role_name)];
    const UNIQUE_NAME: Option<&'static str> = Some(attr!(InstanceProfileAttrs.name));
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::Iam;
    const LISTING: super::Listing = super::Listing::Profiles;

    super::writes!(typed);
    super::writes!(delete);

    async fn names_taken(c: &Clients, names: &[String], _: &LiveMap) -> Result<Vec<String>, Error> {
        super::conflicts::held_each(names, &["NoSuchEntity"], |n| async move {
            let r = c
                .iam
                .get_instance_profile()
                .instance_profile_name(n)
                .send()
                .await;
            r.ctx("looking up", &"instance profile names").map(|_| true)
        })
        .await
    }
}
