//! The instances' IAM role: EC2 may assume it; one inline policy allows the stack's
//! table, bucket and (read-only) artifact prefix. IAM is global to the account while a
//! stack is regional, so the role's name and its IAM path `/stack/<stack>/<region>/`
//! carry the region, and discovery lists by that path: the same stack name in another
//! region has its own role. Ownership is still decided by the tags.

use super::LiveMap;
use super::{Created, Ctx, absent_ok};
use crate::aws::{Clients, Context, Error, Patience, retry_codes};
use crate::desired::iam_path;
use crate::desired::{ARTIFACT_PREFIX, Build, Inputs, STACK_PREFIX, iam_name};
use crate::model::attr;
use crate::model::{Address, Desired, Kind, KindAttrs, Live, from_attrs, owned_address, to_attrs};
use crate::spec::Spec;
use aws_sdk_iam::types::Tag;
use serde::{Deserialize, Serialize};

/// The role's attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoleAttrs {
    pub name: String,
    /// `/stack/<stack>/<region>/`: discovery lists by it.
    pub path: String,
    /// Who may assume it (a JSON policy document).
    pub assume_role_policy: String,
    /// The one inline policy (JSON; empty for none).
    pub policy: String,
    /// The ARNs of the AWS managed policies attached.
    pub managed_policies: Vec<String>,
}

impl KindAttrs for RoleAttrs {
    const KIND: Kind = Kind::Role;
}

/// The instances' role, unless the file names an existing instance profile.
pub fn desired(b: &Build) -> Vec<Desired> {
    let (stack, inputs) = (&b.spec.stack, b.inputs);
    if inputs.instance_profile_arn.is_some() {
        return Vec::new();
    }
    vec![Desired::new(
        crate::desired::role(),
        to_attrs(&RoleAttrs {
            name: iam_name(stack, &inputs.region),
            path: iam_path(stack, &inputs.region),
            assume_role_policy: assume_role_policy(inputs.partition()),
            policy: instance_policy(b.spec, inputs),
            // The SSM agent's permissions (Security Hub SSM.1): a shell through
            // Session Manager instead of SSH.
            managed_policies: vec![format!(
                "arn:{}:iam::aws:policy/AmazonSSMManagedInstanceCore",
                inputs.partition()
            )],
        }),
    )]
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

/// The name of the role's one inline policy.
pub const POLICY_NAME: &str = "stack-access";

pub(crate) fn iam_tags(ctx: &Ctx, a: &Address) -> Vec<Tag> {
    ctx.tags(a)
        .into_iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}

/// IAM returns policy documents URL-encoded and formatted its own way; compare them
/// as compact JSON with sorted keys, the form the desired side is written in.
pub(crate) fn canonical_policy(doc: &str) -> String {
    let decoded = if doc.trim_start().starts_with('%') {
        percent_decode(doc)
    } else {
        doc.to_string()
    };
    serde_json::from_str::<serde_json::Value>(&decoded)
        .map(|v| v.to_string())
        .unwrap_or(decoded)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub async fn discover(c: &Clients, stack: &str) -> Result<Vec<Live>, Error> {
    let mut out = Vec::new();
    let mut pages = c
        .iam
        .list_roles()
        .path_prefix(crate::desired::iam_stack_path(stack))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for role in page.ctx("listing", &"IAM roles")?.roles() {
            if !ours_in_region(role.path(), stack, &c.region) {
                continue;
            }
            let name = role.role_name();
            // ListRoles leaves tags out; the stack has one role, so one more call.
            let tags = c
                .iam
                .list_role_tags()
                .role_name(name)
                .send()
                .await
                .ctx("reading the tags of", &name)?;
            let Some(address) =
                owned_address(stack, tags.tags().iter().map(|t| (t.key(), t.value())))
            else {
                continue;
            };
            let policy = match c
                .iam
                .get_role_policy()
                .role_name(name)
                .policy_name(POLICY_NAME)
                .send()
                .await
                .ctx("reading the policy of", &address)
            {
                Ok(p) => canonical_policy(p.policy_document()),
                Err(e) if e.is_code(&["NoSuchEntity"]) => String::new(),
                Err(e) => return Err(e),
            };
            let attached = c
                .iam
                .list_attached_role_policies()
                .role_name(name)
                .send()
                .await
                .ctx("reading the managed policies of", &address)?;
            let managed: Vec<String> = attached
                .attached_policies()
                .iter()
                .filter_map(|p| p.policy_arn())
                .map(str::to_string)
                .collect();
            let attrs = to_attrs(&RoleAttrs {
                managed_policies: managed,
                name: name.to_string(),
                path: role.path().to_string(),
                assume_role_policy: canonical_policy(
                    role.assume_role_policy_document().unwrap_or_default(),
                ),
                policy,
            });
            out.push(Live {
                address,
                id: name.to_string(),
                attrs,
                extra: Default::default(),
            });
        }
    }
    Ok(out)
}

/// Whether an IAM path under the stack's prefix belongs to this region: its own
/// `/stack/<stack>/<region>/`, or the region-less `/stack/<stack>/` of stacks made
/// before IAM names carried the region (found so they are replaced, not orphaned).
pub(crate) fn ours_in_region(path: &str, stack: &str, region: &str) -> bool {
    path == iam_path(stack, region) || path == crate::desired::iam_stack_path(stack)
}

async fn put_policy(ctx: &Ctx, a: &Address, name: &str, policy: &str) -> Result<(), Error> {
    if policy.is_empty() {
        return absent_ok(
            ctx.c
                .iam
                .delete_role_policy()
                .role_name(name)
                .policy_name(POLICY_NAME)
                .send()
                .await
                .ctx("removing the policy of", a),
            &["NoSuchEntity"],
        );
    }
    // A role a second old can answer NoSuchEntity (IAM is eventually consistent).
    retry_codes(&["NoSuchEntity"], Patience::FRESH_ID, || async {
        ctx.c
            .iam
            .put_role_policy()
            .role_name(name)
            .policy_name(POLICY_NAME)
            .policy_document(policy)
            .send()
            .await
            .ctx("setting the policy of", a)
    })
    .await
    .map(drop)
}

pub async fn create(ctx: &Ctx, a: &Address, want: RoleAttrs) -> Result<Created, Error> {
    let name = &want.name;
    // Tags travel with the create call: a crash right after leaves an owned role
    // that the next run discovers.
    ctx.c
        .iam
        .create_role()
        .role_name(name)
        .path(&want.path)
        .assume_role_policy_document(&want.assume_role_policy)
        .description(format!("stack {}: instance role", ctx.stack))
        .set_tags(Some(iam_tags(ctx, a)))
        .send()
        .await
        .ctx("creating", a)?;
    put_policy(ctx, a, name, &want.policy).await?;
    set_managed(ctx, a, name, &[], &want.managed_policies).await?;
    Ok((name.to_string(), Default::default()))
}

/// Attaches and detaches AWS managed policies (the SSM agent's, Security Hub SSM.1).
async fn set_managed(
    ctx: &Ctx,
    a: &Address,
    role: &str,
    have: &[String],
    want: &[String],
) -> Result<(), Error> {
    for arn in want.iter().filter(|p| !have.contains(p)) {
        // A role a second old can answer NoSuchEntity (IAM is eventually consistent).
        retry_codes(&["NoSuchEntity"], Patience::FRESH_ID, || async {
            ctx.c
                .iam
                .attach_role_policy()
                .role_name(role)
                .policy_arn(arn)
                .send()
                .await
                .ctx("attaching a managed policy to", a)
        })
        .await?;
    }
    for arn in have.iter().filter(|p| !want.contains(p)) {
        absent_ok(
            ctx.c
                .iam
                .detach_role_policy()
                .role_name(role)
                .policy_arn(arn)
                .send()
                .await
                .ctx("detaching a managed policy from", a),
            &["NoSuchEntity"],
        )?;
    }
    Ok(())
}

pub async fn update(
    ctx: &Ctx,
    live: &Live,
    want: RoleAttrs,
    changed: &[String],
) -> Result<(), Error> {
    let a = &live.address;
    if super::changed(changed, attr!(RoleAttrs.assume_role_policy)) {
        ctx.c
            .iam
            .update_assume_role_policy()
            .role_name(&live.id)
            .policy_document(&want.assume_role_policy)
            .send()
            .await
            .ctx("setting who may assume", a)?;
    }
    if super::changed(changed, attr!(RoleAttrs.policy)) {
        put_policy(ctx, a, &live.id, &want.policy).await?;
    }
    if super::changed(changed, attr!(RoleAttrs.managed_policies)) {
        set_managed(
            ctx,
            a,
            &live.id,
            &from_attrs::<RoleAttrs>(&live.attrs)?.managed_policies,
            &want.managed_policies,
        )
        .await?;
    }
    Ok(())
}

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    let a = &live.address;
    // AWS refuses to delete a role with managed policies attached (DeleteConflict).
    set_managed(
        ctx,
        a,
        &live.id,
        &from_attrs::<RoleAttrs>(&live.attrs)?.managed_policies,
        &[],
    )
    .await?;
    absent_ok(
        ctx.c
            .iam
            .delete_role_policy()
            .role_name(&live.id)
            .policy_name(POLICY_NAME)
            .send()
            .await
            .ctx("removing the policy of", a),
        &["NoSuchEntity"],
    )?;
    // Removing the role from its profile takes a moment to be seen by DeleteRole.
    absent_ok(
        retry_codes(&["DeleteConflict"], Patience::DEPENDENCY, || async {
            ctx.c
                .iam
                .delete_role()
                .role_name(&live.id)
                .send()
                .await
                .ctx("deleting", a)
        })
        .await,
        &["NoSuchEntity"],
    )
}

impl super::KindOps for RoleAttrs {
    const FORCE_NEW: &'static [&'static str] = &[attr!(RoleAttrs.name), attr!(RoleAttrs.path)];
    const ID_ATTRIBUTE: Option<&'static str> = Some(attr!(RoleAttrs.name));
    const UNIQUE_NAME: Option<&'static str> = Some(attr!(RoleAttrs.name));
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::Iam;
    const LISTING: super::Listing = super::Listing::Roles;

    super::writes!(typed);
    super::writes!(delete);

    async fn names_taken(c: &Clients, names: &[String], _: &LiveMap) -> Result<Vec<String>, Error> {
        super::conflicts::held_each(names, &["NoSuchEntity"], |n| async move {
            let r = c.iam.get_role().role_name(n).send().await;
            r.ctx("looking up", &"IAM role names").map(|_| true)
        })
        .await
    }
}
