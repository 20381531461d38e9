//! The app binary in the stack's bucket, under `artifacts/<sha256>/<file>` (arm64
//! builds under `artifacts/arm64/`). The key names the content, so a new build is a
//! new key: the object is never overwritten while instances may be fetching it. A new
//! key is an in-place update that uploads the new build and keeps the previous one
//! for instances still booting from it.
//!
//! Large binaries go up in parts (multipart upload): each part is retried on its own
//! and bounded by a time sized to it, so a slow uplink finishes instead of timing out
//! a single 20 MB request again and again.

use super::bucket::{BucketAttrs, delete_versions, versions};
use super::{Created, Ctx};
use crate::aws::{Clients, Context, Error};
use crate::desired::Build;
use crate::desired::{ARTIFACT_PREFIX, arch_of_key, artifact};
use crate::model::attr;
use crate::model::{Address, Attrs, Kind, Live, Ref};
use crate::model::{Desired, KindAttrs, from_attrs, to_attrs};
use crate::spec::Arch;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// An uploaded build's attributes (the local file is the payload).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArtifactAttrs {
    /// The app's bucket.
    pub bucket: Ref<BucketAttrs>,
    /// `artifacts/[arm64/]<sha256>/<file>`: the key names the content.
    pub key: String,
}

impl KindAttrs for ArtifactAttrs {
    const KIND: Kind = Kind::Artifact;
}

/// Files above this go up in parts.
pub const MULTIPART_THRESHOLD: u64 = 8 * 1024 * 1024;
/// The size of each part but the last (S3 wants at least 5 MiB).
pub const PART_SIZE: u64 = 8 * 1024 * 1024;
/// The slowest uplink a part must survive: its time limit is its size at this rate.
const SLOWEST_UPLINK_BYTES_PER_SEC: u64 = 64 * 1024;

/// The time one attempt at `bytes` may take: sized by the file, never below the
/// default attempt limit.
fn attempt_budget(bytes: u64) -> Duration {
    Duration::from_secs(bytes / SLOWEST_UPLINK_BYTES_PER_SEC)
        .max(crate::aws::retry::ATTEMPT_TIMEOUT)
}

/// Per-call time limits for an upload of `bytes`: each attempt sized by the bytes,
/// the whole call by all the attempts the SDK may make.
fn upload_timeouts(bytes: u64) -> aws_sdk_s3::config::Builder {
    let attempt = attempt_budget(bytes);
    aws_sdk_s3::config::Builder::new().timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(attempt)
            .operation_timeout(attempt * crate::aws::retry::MAX_ATTEMPTS)
            .build(),
    )
}

/// The app's builds, one per architecture, in the file's bucket.
pub fn desired(b: &Build) -> Vec<Desired> {
    if b.spec.bucket.is_none() {
        return Vec::new();
    }
    b.inputs
        .artifacts
        .values()
        .map(|art| Desired {
            address: crate::desired::artifact(art.arch),
            attrs: to_attrs(&ArtifactAttrs {
                bucket: Ref::at(crate::desired::bucket()),
                key: art.key(),
            }),
            payload: Some(art.path.to_string_lossy().into_owned()),
            after: Vec::new(),
        })
        .collect()
}

/// The newest artifact of each architecture in each bucket the stack owns.
pub async fn discover(c: &Clients, buckets: &[Live]) -> Result<Vec<Live>, Error> {
    let mut out = Vec::new();
    for b in buckets.iter().filter(|b| b.address.kind == Kind::Bucket) {
        let mut newest: BTreeMap<Arch, (aws_smithy_types::DateTime, String)> = BTreeMap::new();
        let mut pages =
            c.s3.list_objects_v2()
                .bucket(&b.id)
                .prefix(ARTIFACT_PREFIX)
                .into_paginator()
                .send();
        while let Some(page) = pages.next().await {
            for o in page.ctx("listing artifacts in", &b.address)?.contents() {
                let (Some(key), Some(at)) = (o.key(), o.last_modified()) else {
                    continue;
                };
                let arch = arch_of_key(key);
                if newest.get(&arch).is_none_or(|(t, _)| at > t) {
                    newest.insert(arch, (*at, key.to_string()));
                }
            }
        }
        for (arch, (_, key)) in newest {
            out.push(Live {
                address: artifact(arch),
                id: key.clone(),
                attrs: to_attrs(&ArtifactAttrs {
                    bucket: Ref::id(&b.id),
                    key,
                }),
                extra: Default::default(),
            });
        }
    }
    Ok(out)
}

async fn upload(ctx: &Ctx, a: &Address, want: &ArtifactAttrs, path: &str) -> Result<(), Error> {
    let key = want.key.as_str();
    let bucket = want.bucket.as_id();
    let size = tokio::fs::metadata(path)
        .await
        .map_err(Error::io(format!("{a}: cannot read the app build {path}")))?
        .len();
    if size > MULTIPART_THRESHOLD {
        return upload_parts(ctx, a, bucket, key, path, size).await;
    }
    let body = ByteStream::from_path(path)
        .await
        .map_err(|e| Error::Config(format!("{a}: cannot read the app build {path}: {e}")))?;
    ctx.report(a, format!("uploading {key}"));
    ctx.c
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body)
        .content_type("application/octet-stream")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .customize()
        .config_override(upload_timeouts(size))
        .send()
        .await
        .ctx("uploading", a)?;
    Ok(())
}

/// A multipart upload: parts in order, each retried by the SDK on its own; on failure
/// the upload is aborted so no parts are left to bill for.
async fn upload_parts(
    ctx: &Ctx,
    a: &Address,
    bucket: &str,
    key: &str,
    path: &str,
    size: u64,
) -> Result<(), Error> {
    let started = ctx
        .c
        .s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .content_type("application/octet-stream")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .ctx("starting the upload of", a)?;
    let upload_id = started.upload_id().unwrap_or_default().to_string();
    let parts = size.div_ceil(PART_SIZE);
    let result = async {
        let mut done = Vec::new();
        for n in 0..parts {
            let offset = n * PART_SIZE;
            let len = PART_SIZE.min(size - offset);
            ctx.report(
                a,
                format!(
                    "uploading {key}: part {} of {parts} ({} MiB)",
                    n + 1,
                    size >> 20
                ),
            );
            let body = ByteStream::read_from()
                .path(path)
                .offset(offset)
                .length(aws_sdk_s3::primitives::Length::Exact(len))
                .build()
                .await
                .map_err(|e| {
                    Error::Config(format!("{a}: cannot read the app build {path}: {e}"))
                })?;
            let part_number = (n + 1) as i32;
            let r = ctx
                .c
                .s3
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .part_number(part_number)
                .content_length(len as i64)
                .body(body)
                .customize()
                .config_override(upload_timeouts(len))
                .send()
                .await
                .ctx("uploading a part of", a)?;
            done.push(
                CompletedPart::builder()
                    .part_number(part_number)
                    .set_e_tag(r.e_tag().map(str::to_string))
                    .build(),
            );
        }
        ctx.c
            .s3
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await
            .ctx("completing the upload of", a)
            .map(drop)
    }
    .await;
    if result.is_err() {
        // Parts of an unfinished upload are stored (and billed) until aborted.
        let _ = ctx
            .c
            .s3
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .send()
            .await;
    }
    result
}

pub async fn create(ctx: &Ctx, a: &Address, attrs: &Attrs, path: &str) -> Result<Created, Error> {
    let want: ArtifactAttrs = from_attrs(attrs)?;
    upload(ctx, a, &want, path).await?;
    Ok((want.key, Default::default()))
}

pub async fn update(ctx: &Ctx, live: &Live, attrs: &Attrs, path: &str) -> Result<(), Error> {
    let a = &live.address;
    let want: ArtifactAttrs = from_attrs(attrs)?;
    upload(ctx, a, &want, path).await?;
    // Keep the new build and the one running now; older builds of this architecture go.
    let bucket = want.bucket.as_id();
    let keep = [want.key.as_str(), live.id.as_str()];
    let arch = arch_of_key(&want.key);
    let stale: Vec<_> = versions(ctx, a, bucket, Some(ARTIFACT_PREFIX))
        .await?
        .into_iter()
        .filter(|o| !keep.contains(&o.key()) && arch_of_key(o.key()) == arch)
        .collect();
    delete_versions(ctx, a, bucket, stale).await
}

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    let a = &live.address;
    let have: ArtifactAttrs = from_attrs(&live.attrs)?;
    let bucket = have.bucket.as_id();
    let all = match versions(ctx, a, bucket, Some(ARTIFACT_PREFIX)).await {
        Err(e) if e.is_code(&["NoSuchBucket"]) => return Ok(()),
        other => other?,
    };
    // Only this architecture's builds: the other's may still be wanted.
    let arch = arch_of_key(&live.id);
    let mine = all
        .into_iter()
        .filter(|o| arch_of_key(o.key()) == arch)
        .collect();
    delete_versions(ctx, a, bucket, mine).await
}

impl super::KindOps for ArtifactAttrs {
    const FORCE_NEW: &'static [&'static str] = &[attr!(ArtifactAttrs.bucket)];
    const REFERENCES: &'static [&'static str] = &[attr!(ArtifactAttrs.bucket)];
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::S3;
    const LISTING: super::Listing = super::Listing::Buckets;

    async fn create(
        ctx: &super::Ctx,
        d: &crate::model::Desired,
        attrs: &crate::model::Attrs,
    ) -> Result<super::Created, crate::aws::Error> {
        create(ctx, &d.address, attrs, d.payload.as_deref().unwrap_or("")).await
    }

    async fn update(
        ctx: &super::Ctx,
        d: &crate::model::Desired,
        live: &crate::model::Live,
        attrs: &crate::model::Attrs,
        _changed: &[String],
    ) -> Result<String, crate::aws::Error> {
        update(ctx, live, attrs, d.payload.as_deref().unwrap_or("")).await?;
        // Named by its content: the new build is a new key.
        Ok(from_attrs::<ArtifactAttrs>(attrs)?.key)
    }

    super::writes!(delete);

    /// The object itself (one HeadObject), rather than the bucket listing: a build's
    /// upload is on every deploy's path.
    async fn read(
        ctx: &super::Ctx,
        address: &Address,
        id: &str,
        attrs: &crate::model::Attrs,
    ) -> Result<Option<crate::model::Live>, crate::aws::Error> {
        let want: ArtifactAttrs = from_attrs(attrs)?;
        let bucket = want.bucket.as_id();
        match ctx
            .c
            .s3
            .head_object()
            .bucket(bucket)
            .key(id)
            .send()
            .await
            .ctx("reading", address)
        {
            Ok(_) => Ok(Some(Live {
                address: address.clone(),
                id: id.to_string(),
                attrs: to_attrs(&ArtifactAttrs {
                    bucket: Ref::id(bucket),
                    key: id.to_string(),
                }),
                extra: Default::default(),
            })),
            Err(e) if e.is_code(&["NotFound", "NoSuchKey"]) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Value, attrs};

    #[test]
    fn attributes_are_the_map_they_were() {
        let key = "artifacts/0123/app".to_string();
        let want = ArtifactAttrs {
            bucket: Ref::at(crate::desired::bucket()),
            key: key.clone(),
        };
        let map = attrs([
            ("bucket", Value::r(&crate::desired::bucket())),
            ("key", Value::s(&key)),
        ]);
        assert_eq!(to_attrs(&want), map);
        let resolved: Attrs = map
            .iter()
            .map(|(k, v)| (k.clone(), v.resolve(&|_| Some("photos".to_string()))))
            .collect();
        let back: ArtifactAttrs = from_attrs(&resolved).unwrap();
        assert_eq!(
            (back.bucket.as_id(), back.key.as_str()),
            ("photos", key.as_str())
        );
    }
}
