//! The app's write credential: an SSM Parameter Store SecureString that `up` creates
//! with a random value and never reads back, shows or writes anywhere else. The
//! instances get only the parameter's *name* (in user data) and an IAM grant to read
//! that one parameter; the app fetches the value itself. SecureString under the AWS
//! managed key `alias/aws/ssm` costs nothing and needs no KMS grant for a principal
//! of the account that may call `ssm:GetParameter` on it.
//!
//! Its name is `/stack/<stack>/write-token`; discovery lists that path (SSM is
//! regional, like the stack) and trusts only the tags. `stack token --rotate`
//! overwrites the value in place.

use super::{Created, Ctx, Foreign, absent_ok, attr_str};
use crate::aws::{Clients, Context, Error, Patience, retry_codes};
use crate::model::{Address, Attrs, Kind, Live, Value, owned_address};
use aws_sdk_ssm::types::{ParameterTier, ParameterType, ResourceTypeForTagging, Tag};

pub const FORCE_NEW: &[&str] = &["name", "type"];

/// The SSM path every parameter of a stack lives under.
pub fn path(stack: &str) -> String {
    format!("/stack/{stack}/")
}

/// The parameter holding the write credential of a stack's app.
pub fn write_token_name(stack: &str) -> String {
    format!("{}write-token", path(stack))
}

/// 32 bytes from the operating system's CSPRNG, URL-safe base64 (43 characters):
/// usable as a bearer token and as an HTTP Basic password without escaping.
pub fn generate() -> Result<String, Error> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Config(format!("the system's random source failed: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub async fn discover(c: &Clients, stack: &str) -> Result<(Vec<Live>, Vec<Foreign>), Error> {
    let mut live = Vec::new();
    let mut foreign = Vec::new();
    // Without decryption: discovery needs names and types, never the values.
    let mut pages = c
        .ssm
        .get_parameters_by_path()
        .path(path(stack).trim_end_matches('/'))
        .recursive(false)
        .with_decryption(false)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for p in page.ctx("listing", &"SSM parameters")?.parameters() {
            let name = p.name().unwrap_or_default().to_string();
            let tags = c
                .ssm
                .list_tags_for_resource()
                .resource_type(ResourceTypeForTagging::Parameter)
                .resource_id(&name)
                .send()
                .await
                .ctx("reading tags of", &name)?;
            let owner = owned_address(stack, tags.tag_list().iter().map(|t| (t.key(), t.value())));
            let Some(address) = owner.filter(|a| a.kind == Kind::Secret) else {
                foreign.push(Foreign {
                    kind: Kind::Secret,
                    name,
                });
                continue;
            };
            let attrs = Attrs::from([
                ("name".into(), Value::s(&name)),
                (
                    "type".into(),
                    Value::s(p.r#type().map(|t| t.as_str()).unwrap_or_default()),
                ),
            ]);
            live.push(Live {
                address,
                id: name,
                attrs,
                extra: Default::default(),
            });
        }
    }
    Ok((live, foreign))
}

/// PutParameter without `Overwrite`: an existing parameter of that name (someone
/// else's, found by the conflict check first) is refused, never overwritten.
pub async fn create(ctx: &Ctx, a: &Address, attrs: &Attrs) -> Result<Created, Error> {
    let name = attr_str(attrs, "name").to_string();
    let tags: Vec<Tag> = ctx
        .tags(a)
        .into_iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect();
    ctx.c
        .ssm
        .put_parameter()
        .name(&name)
        .description(format!(
            "stack {}: the app's write credential (stack token --rotate)",
            ctx.stack
        ))
        .r#type(ParameterType::from(attr_str(attrs, "type")))
        .tier(ParameterTier::Standard)
        .value(generate()?)
        .set_tags(Some(tags))
        .send()
        .await
        .ctx("creating", a)?;
    Ok((name, Default::default()))
}

/// Only the name and type are attributes, and both force a new parameter.
pub async fn update(_ctx: &Ctx, _live: &Live) -> Result<(), Error> {
    Ok(())
}

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    absent_ok(
        ctx.c
            .ssm
            .delete_parameter()
            .name(&live.id)
            .send()
            .await
            .ctx("deleting", &live.address),
        &["ParameterNotFound"],
    )
}

/// A new random value for an existing parameter. PutParameter with `Overwrite` may
/// not carry tags (AWS answers ValidationException), and keeps the ones it has.
pub async fn rotate(c: &Clients, name: &str) -> Result<i64, Error> {
    let value = generate()?;
    let out = retry_codes(&["TooManyUpdates"], Patience::FRESH_ID, || async {
        c.ssm
            .put_parameter()
            .name(name)
            .r#type(ParameterType::SecureString)
            .overwrite(true)
            .value(&value)
            .send()
            .await
            .ctx("rotating", &name)
    })
    .await?;
    Ok(out.version())
}

/// The current value, decrypted: for `stack token`, at the user's explicit request.
pub async fn reveal(c: &Clients, name: &str) -> Result<String, Error> {
    let out = c
        .ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .ctx("reading", &name)?;
    Ok(out
        .parameter()
        .and_then(|p| p.value())
        .unwrap_or_default()
        .to_string())
}
