//! The app binary in the stack's bucket, under `artifacts/<sha256>/<file>`. The key
//! names the content, so a new build is a new key: the object is never overwritten
//! while instances may be fetching it. A new key is an in-place update that uploads
//! the new build and keeps the previous one for instances still booting from it.

use super::bucket::{delete_versions, versions};
use super::{Created, Ctx, attr_str};
use crate::aws::{Clients, Context, Error};
use crate::desired::{ARTIFACT_PREFIX, artifact};
use crate::model::{Address, Attrs, Kind, Live, Value};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

pub const FORCE_NEW: &[&str] = &["bucket"];

/// The newest artifact in each bucket the stack owns.
pub async fn discover(c: &Clients, buckets: &[Live]) -> Result<Vec<Live>, Error> {
    let mut out = Vec::new();
    for b in buckets.iter().filter(|b| b.address.kind == Kind::Bucket) {
        let mut newest: Option<(aws_smithy_types::DateTime, String)> = None;
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
                if newest.as_ref().is_none_or(|(t, _)| at > t) {
                    newest = Some((*at, key.to_string()));
                }
            }
        }
        if let Some((_, key)) = newest {
            out.push(Live {
                address: artifact(),
                id: key.clone(),
                attrs: Attrs::from([
                    ("bucket".into(), Value::s(&b.id)),
                    ("key".into(), Value::s(key)),
                ]),
                extra: Default::default(),
            });
        }
    }
    Ok(out)
}

async fn upload(ctx: &Ctx, a: &Address, attrs: &Attrs, path: &str) -> Result<(), Error> {
    let key = attr_str(attrs, "key");
    let body = ByteStream::from_path(path)
        .await
        .map_err(|e| Error::Config(format!("{a}: cannot read the app build {path}: {e}")))?;
    ctx.report(a, format!("uploading {key}"));
    ctx.c
        .s3
        .put_object()
        .bucket(attr_str(attrs, "bucket"))
        .key(key)
        .body(body)
        .content_type("application/octet-stream")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .ctx("uploading", a)?;
    Ok(())
}

pub async fn create(ctx: &Ctx, a: &Address, attrs: &Attrs, path: &str) -> Result<Created, Error> {
    upload(ctx, a, attrs, path).await?;
    Ok((attr_str(attrs, "key").to_string(), Default::default()))
}

pub async fn update(ctx: &Ctx, live: &Live, attrs: &Attrs, path: &str) -> Result<(), Error> {
    let a = &live.address;
    upload(ctx, a, attrs, path).await?;
    // Keep the new build and the one running now; older builds go.
    let bucket = attr_str(attrs, "bucket");
    let keep = [attr_str(attrs, "key"), live.id.as_str()];
    let stale: Vec<_> = versions(ctx, a, bucket, Some(ARTIFACT_PREFIX))
        .await?
        .into_iter()
        .filter(|o| !keep.contains(&o.key()))
        .collect();
    delete_versions(ctx, a, bucket, stale).await
}

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    let a = &live.address;
    let bucket = attr_str(&live.attrs, "bucket");
    let all = match versions(ctx, a, bucket, Some(ARTIFACT_PREFIX)).await {
        Err(e) if e.is_code(&["NoSuchBucket"]) => return Ok(()),
        other => other?,
    };
    delete_versions(ctx, a, bucket, all).await
}
