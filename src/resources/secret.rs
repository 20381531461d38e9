//! The app's write credential: an SSM Parameter Store SecureString that `up` creates
//! with a random value and never shows or writes anywhere else. SecureString under
//! the AWS managed key `alias/aws/ssm` costs nothing.
//!
//! The instances never read it: `up` writes its *verifier* (the SHA-256, hex) to
//! [`VERIFIER_KEY`] in the app's bucket, with the parameter version it was taken from
//! in the object's metadata, and the app checks the digest of what a request
//! presents. Instances in private subnets reach S3 through the free gateway endpoint;
//! SSM would need a paid interface endpoint. A digest of 256 random bits gives
//! nothing away, and the instance role may read `.stack/` but not write it.
//!
//! Its name is `/stack/<stack>/write-token`; discovery lists that path (SSM is
//! regional, like the stack) and trusts only the tags, then compares the verifier's
//! recorded version with the parameter's: a rotation cut short, or a verifier deleted
//! by hand, plans as an in-place update that writes it again. `stack token --rotate`
//! overwrites the value in place and writes the new verifier.

use super::bucket::BucketAttrs;
use super::{Created, Ctx, Foreign, absent_ok};
use crate::aws::{Clients, Context, Error, Patience, retry_codes};
use crate::desired::Build;
use crate::desired::VERIFIER_KEY;
use crate::model::attr;
use crate::model::{Address, Attrs, Kind, Live, Ref, owned_address};
use crate::model::{Desired, KindAttrs, from_attrs, to_attrs};
use aws_sdk_ssm::types::{ParameterTier, ParameterType, ResourceTypeForTagging, Tag};
use serde::{Deserialize, Serialize};

/// The write credential's attributes. The verifier's two are read from the app's
/// bucket, so a live parameter has them only once that bucket is found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecretAttrs {
    pub name: String,
    /// The parameter type (`SecureString`).
    pub r#type: String,
    /// The bucket holding the verifier ([`VERIFIER_KEY`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier_bucket: Option<Ref<BucketAttrs>>,
    /// [`VERIFIER_CURRENT`], or why the verifier is not (`missing`, `stale (…)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<String>,
}

impl KindAttrs for SecretAttrs {
    const KIND: Kind = Kind::Secret;
}

/// What discovery records beside the attributes (`Live::extra`), by key.
pub mod extra {
    /// The parameter's version.
    pub const VERSION: &str = "version";
}

/// The app refuses writes without this credential; stacks without the app have
/// nothing to protect with it.
pub fn desired(b: &Build) -> Vec<Desired> {
    if b.spec.app.is_none() {
        return Vec::new();
    }
    vec![Desired::new(
        crate::desired::write_token(),
        to_attrs(&SecretAttrs {
            name: write_token_name(&b.spec.stack),
            r#type: "SecureString".into(),
            // The app checks credentials against this digest (see below).
            verifier_bucket: Some(Ref::at(crate::desired::bucket())),
            verifier: Some(VERIFIER_CURRENT.into()),
        }),
    )]
}

/// The `verifier` attribute when the bucket's verifier matches the parameter.
pub const VERIFIER_CURRENT: &str = "sha256 of the current value";
/// Object metadata naming the parameter version the verifier was taken from.
const VERSION_METADATA: &str = "parameter-version";

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
            let attrs = to_attrs(&SecretAttrs {
                name: name.clone(),
                r#type: p.r#type().map(|t| t.as_str()).unwrap_or_default().into(),
                verifier_bucket: None,
                verifier: None,
            });
            live.push(Live {
                address,
                id: name,
                attrs,
                extra: [(extra::VERSION.to_string(), p.version().to_string())].into(),
            });
        }
    }
    Ok((live, foreign))
}

/// Reads each credential's verifier from the app bucket (`buckets` holds what S3
/// discovery found) into the `verifier_bucket` and `verifier` attributes.
pub async fn discover_verifiers(
    c: &Clients,
    secrets: &mut [Live],
    buckets: &[Live],
) -> Result<(), Error> {
    let Some(bucket) = buckets
        .iter()
        .find(|b| b.address == crate::desired::bucket())
    else {
        return Ok(());
    };
    for live in secrets.iter_mut() {
        let head =
            c.s3.head_object()
                .bucket(&bucket.id)
                .key(VERIFIER_KEY)
                .send()
                .await
                .ctx("reading the verifier of", &live.address);
        let state = match head {
            Ok(h) => {
                let recorded = h.metadata().and_then(|m| m.get(VERSION_METADATA));
                let current = live.extra.get(extra::VERSION);
                if recorded.is_some() && recorded == current {
                    VERIFIER_CURRENT.to_string()
                } else {
                    format!(
                        "stale (version {}, parameter at {})",
                        recorded.map_or("unknown", |v| v.as_str()),
                        current.map_or("unknown", |v| v.as_str())
                    )
                }
            }
            Err(e) if e.is_code(&["NotFound", "NoSuchKey"]) => "missing".to_string(),
            Err(e) => return Err(e),
        };
        let mut have: SecretAttrs = from_attrs(&live.attrs)?;
        have.verifier_bucket = Some(Ref::id(&bucket.id));
        have.verifier = Some(state);
        live.attrs = to_attrs(&have);
    }
    Ok(())
}

/// Writes the verifier of `value` (parameter `version`) to the bucket.
async fn put_verifier(
    c: &Clients,
    what: &(dyn std::fmt::Display + Sync),
    bucket: &str,
    value: &str,
    version: i64,
) -> Result<(), Error> {
    let digest = crate::desired::sha256_hex(value.as_bytes());
    retry_codes(&["NoSuchBucket"], Patience::FRESH_ID, || async {
        c.s3.put_object()
            .bucket(bucket)
            .key(VERIFIER_KEY)
            .content_type("text/plain")
            .metadata(VERSION_METADATA, version.to_string())
            .body(digest.clone().into_bytes().into())
            .send()
            .await
            .ctx("writing the verifier of", what)
    })
    .await
    .map(drop)
}

/// PutParameter without `Overwrite`: an existing parameter of that name (someone
/// else's, found by the conflict check first) is refused, never overwritten.
pub async fn create(ctx: &Ctx, a: &Address, attrs: &Attrs) -> Result<Created, Error> {
    let want: SecretAttrs = from_attrs(attrs)?;
    let name = want.name.clone();
    let tags: Vec<Tag> = ctx
        .tags(a)
        .into_iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect();
    let value = generate()?;
    let out = ctx
        .c
        .ssm
        .put_parameter()
        .name(&name)
        .description(format!(
            "stack {}: the app's write credential (stack token --rotate)",
            ctx.stack
        ))
        .r#type(ParameterType::from(want.r#type.as_str()))
        .tier(ParameterTier::Standard)
        .value(&value)
        .set_tags(Some(tags))
        .send()
        .await
        .ctx("creating", a)?;
    put_verifier(&ctx.c, a, verifier_bucket(&want), &value, out.version()).await?;
    Ok((name, Default::default()))
}

/// The name and type force a new parameter; a missing or stale verifier is written
/// again from the value AWS holds.
pub async fn update(ctx: &Ctx, live: &Live, attrs: &Attrs) -> Result<(), Error> {
    let want: SecretAttrs = from_attrs(attrs)?;
    let out = ctx
        .c
        .ssm
        .get_parameter()
        .name(&live.id)
        .with_decryption(true)
        .send()
        .await
        .ctx("reading", &live.address)?;
    let p = out.parameter();
    put_verifier(
        &ctx.c,
        &live.address,
        verifier_bucket(&want),
        p.and_then(|p| p.value()).unwrap_or_default(),
        p.map_or(0, |p| p.version()),
    )
    .await
}

/// The verifier's bucket, once resolved (empty when there is none).
fn verifier_bucket(s: &SecretAttrs) -> &str {
    s.verifier_bucket.as_ref().map_or("", Ref::as_id)
}

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    let have: SecretAttrs = from_attrs(&live.attrs)?;
    let bucket = verifier_bucket(&have);
    if !bucket.is_empty() {
        let a = &live.address;
        match super::bucket::versions(ctx, a, bucket, Some(VERIFIER_KEY)).await {
            Err(e) if e.is_code(&["NoSuchBucket"]) => {}
            other => super::bucket::delete_versions(ctx, a, bucket, other?).await?,
        }
    }
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

/// A new random value for an existing parameter, and its verifier in `bucket`.
/// PutParameter with `Overwrite` may not carry tags (AWS answers
/// ValidationException), and keeps the ones it has.
pub async fn rotate(c: &Clients, name: &str, bucket: &str) -> Result<i64, Error> {
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
    put_verifier(c, &name, bucket, &value, out.version()).await?;
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

impl super::KindOps for SecretAttrs {
    const FORCE_NEW: &'static [&'static str] =
        &[attr!(SecretAttrs.name), attr!(SecretAttrs.r#type)];
    const REFERENCES: &'static [&'static str] = &[attr!(SecretAttrs.verifier_bucket)];
    const ID_ATTRIBUTE: Option<&'static str> = Some(attr!(SecretAttrs.name));
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::Ssm;
    const LISTING: super::Listing = super::Listing::Parameters;

    super::writes!(create(ctx, d, attrs) => attrs);

    async fn update(
        ctx: &super::Ctx,
        _d: &crate::model::Desired,
        live: &crate::model::Live,
        attrs: &crate::model::Attrs,
        _changed: &[String],
    ) -> Result<String, crate::aws::Error> {
        update(ctx, live, attrs).await?;
        Ok(live.id.clone())
    }

    super::writes!(delete);

    /// The parameter, and its verifier object in the app bucket.
    async fn read(
        ctx: &Ctx,
        address: &Address,
        id: &str,
        attrs: &Attrs,
    ) -> Result<Option<Live>, Error> {
        let mut held: Vec<Live> = super::listed(ctx, address, id, &Default::default())
            .await?
            .into_iter()
            .collect();
        let bucket = verifier_bucket(&from_attrs(attrs)?).to_string();
        if !bucket.is_empty() {
            let app_bucket = Live {
                address: crate::desired::bucket(),
                id: bucket,
                attrs: Attrs::new(),
                extra: Default::default(),
            };
            discover_verifiers(&ctx.c, &mut held, &[app_bucket]).await?;
        }
        Ok(held.pop())
    }
}
