//! The S3 bucket: public access blocked, encrypted by default, versioning as set.
//! Bucket names are global and chosen by the user, so discovery checks the names the
//! stack file gives and trusts only their tags. A non-empty bucket is deleted only
//! with `force_destroy: true` or `down --force`, every object version first.

use super::{Created, Ctx, Foreign, absent_ok, changed};
use crate::aws::{Clients, Context, Error, Patience, retry_codes};
use crate::desired::{ARTIFACT_PREFIX, STACK_PREFIX};
use crate::desired::{Build, Inputs, LOG_RETENTION_DAYS, logs_bucket_name};
use crate::model::attr;
use crate::model::{Address, Attrs, Kind, Live, Ref, owned_address};
use crate::model::{Desired, KindAttrs, from_attrs, to_attrs};
use crate::plan::Loss;
use crate::spec::Spec;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    BucketLoggingStatus, BucketVersioningStatus, CreateBucketConfiguration, Delete,
    ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, LoggingEnabled,
    NoncurrentVersionExpiration, ObjectIdentifier, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule, Tag, Tagging, VersioningConfiguration,
};
use serde::{Deserialize, Serialize};

/// A bucket's attributes. `force_destroy` (and `versioning`, which moto cannot
/// always report) are kept in tags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BucketAttrs {
    pub name: String,
    pub versioning: bool,
    pub block_public_access: bool,
    /// The default encryption's algorithm (`AES256`).
    pub encryption: String,
    /// Whether `down` may delete the objects with the bucket.
    pub force_destroy: bool,
    /// The bucket policy as compact JSON, empty for none.
    pub policy: String,
    /// The lifecycle in [`lifecycle_summary`]'s words.
    pub lifecycle: String,
    /// Where the server access logs go: the log bucket, or the id `""` for nowhere
    /// (the log bucket itself).
    pub access_log_bucket: Ref<BucketAttrs>,
}

impl KindAttrs for BucketAttrs {
    const KIND: Kind = Kind::Bucket;
}

/// The file's bucket, if it has one.
pub fn app(b: &Build) -> Vec<Desired> {
    let Some(bucket) = &b.spec.bucket else {
        return Vec::new();
    };
    vec![Desired::new(
        crate::desired::bucket(),
        to_attrs(&BucketAttrs {
            name: bucket.name.clone(),
            versioning: bucket.versioning,
            block_public_access: true,
            encryption: "AES256".into(),
            force_destroy: bucket.force_destroy,
            policy: bucket_policy(bucket, b.inputs),
            lifecycle: lifecycle_summary(bucket.versioning, None),
            // Security Hub S3.9: server access logs, to the log bucket.
            access_log_bucket: Ref::at(crate::desired::logs_bucket()),
        }),
    )]
}

/// Where the stack's logs go; its objects are AWS's deliveries, so `down` deletes
/// them with the bucket (the plan counts them).
pub fn logs(b: &Build) -> Vec<Desired> {
    let inputs = b.inputs;
    let name = logs_bucket_name(&b.spec.stack, &inputs.account_id, &inputs.region);
    vec![Desired::new(
        crate::desired::logs_bucket(),
        to_attrs(&BucketAttrs {
            policy: logs_bucket_policy(b.spec, inputs, &name),
            name,
            versioning: false,
            block_public_access: true,
            // The only encryption ELB access logs support.
            encryption: "AES256".into(),
            force_destroy: true,
            lifecycle: lifecycle_summary(false, Some(LOG_RETENTION_DAYS)),
            // Logging the log bucket into itself would log its own log writes.
            access_log_bucket: Ref::id(""),
        }),
    )]
}

/// The bucket refuses every request not made over TLS (Security Hub S3.5). An
/// endpoint reached over plain HTTP (an emulator) would then refuse every request,
/// the stack's own included, so there the bucket gets no policy.
fn bucket_policy(bucket: &crate::spec::BucketSpec, inputs: &Inputs) -> String {
    if inputs
        .endpoint_url
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"))
    {
        return String::new();
    }
    let arn = format!("arn:{}:s3:::{}", inputs.partition(), bucket.name);
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [arn.clone(), format!("{arn}/*")],
            "Condition": { "Bool": { "aws:SecureTransport": "false" } },
        }],
    })
    .to_string()
}

/// Elastic Load Balancing's account per region, the principal of access log delivery
/// in the regions older than August 2022 (newer ones take the service principal).
fn elb_log_account(region: &str) -> Option<&'static str> {
    Some(match region {
        "us-east-1" => "127311923021",
        "us-east-2" => "033677994240",
        "us-west-1" => "027434742980",
        "us-west-2" => "797873946194",
        "af-south-1" => "098369216593",
        "ap-east-1" => "754344448648",
        "ap-south-1" => "718504428378",
        "ap-northeast-1" => "582318560864",
        "ap-northeast-2" => "600734575887",
        "ap-northeast-3" => "383597477331",
        "ap-southeast-1" => "114774131450",
        "ap-southeast-2" => "783225319266",
        "ap-southeast-3" => "589379963580",
        "ca-central-1" => "985666609251",
        "eu-central-1" => "054676820928",
        "eu-west-1" => "156460612806",
        "eu-west-2" => "652711504416",
        "eu-west-3" => "009996457667",
        "eu-south-1" => "635631232127",
        "eu-north-1" => "897822967062",
        "me-south-1" => "076674570225",
        "sa-east-1" => "507241528517",
        "us-gov-west-1" => "048591011584",
        "us-gov-east-1" => "190560391635",
        "cn-north-1" => "638102146993",
        "cn-northwest-1" => "037604701340",
        _ => return None,
    })
}

/// Who may write to the log bucket: ELB's access log delivery under `alb/`, S3's
/// server access logging under `s3/`, and VPC flow log delivery under `AWSLogs/`,
/// each only for this account; and (on AWS) nothing without TLS.
fn logs_bucket_policy(spec: &Spec, inputs: &Inputs, name: &str) -> String {
    let p = inputs.partition();
    let account = &inputs.account_id;
    let arn = format!("arn:{p}:s3:::{name}");
    let elb_principal = match elb_log_account(&inputs.region) {
        Some(elb) => serde_json::json!({ "AWS": format!("arn:{p}:iam::{elb}:root") }),
        None => serde_json::json!({ "Service": "logdelivery.elasticloadbalancing.amazonaws.com" }),
    };
    let source = serde_json::json!({ "aws:SourceAccount": account });
    let mut statements = vec![
        serde_json::json!({
            "Sid": "LoadBalancerAccessLogs",
            "Effect": "Allow",
            "Principal": elb_principal,
            "Action": "s3:PutObject",
            "Resource": format!(
                "{arn}/{}/AWSLogs/{account}/*",
                crate::resources::ACCESS_LOG_PREFIX
            ),
        }),
        serde_json::json!({
            "Sid": "FlowLogsWrite",
            "Effect": "Allow",
            "Principal": { "Service": "delivery.logs.amazonaws.com" },
            "Action": "s3:PutObject",
            "Resource": format!("{arn}/AWSLogs/{account}/*"),
            "Condition": { "StringEquals": {
                "aws:SourceAccount": account,
                "s3:x-amz-acl": "bucket-owner-full-control",
            } },
        }),
        serde_json::json!({
            "Sid": "FlowLogsAclCheck",
            "Effect": "Allow",
            "Principal": { "Service": "delivery.logs.amazonaws.com" },
            "Action": ["s3:GetBucketAcl", "s3:ListBucket"],
            "Resource": arn.clone(),
            "Condition": { "StringEquals": source },
        }),
    ];
    if let Some(b) = &spec.bucket {
        statements.push(serde_json::json!({
            "Sid": "S3ServerAccessLogs",
            "Effect": "Allow",
            "Principal": { "Service": "logging.s3.amazonaws.com" },
            "Action": "s3:PutObject",
            "Resource": format!(
                "{arn}/{}*",
                crate::resources::access_log_prefix(&b.name)
            ),
            "Condition": {
                "StringEquals": source,
                "ArnLike": { "aws:SourceArn": format!("arn:{p}:s3:::{}", b.name) },
            },
        }));
    }
    let plain_http = inputs
        .endpoint_url
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    if !plain_http {
        statements.push(serde_json::json!({
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": { "AWS": "*" },
            "Action": "s3:*",
            "Resource": [arn.clone(), format!("{arn}/*")],
            "Condition": { "Bool": { "aws:SecureTransport": "false" } },
        }));
    }
    serde_json::json!({ "Version": "2012-10-17", "Statement": statements }).to_string()
}

/// Where a bucket's server access logs go in the log bucket.
pub fn access_log_prefix(bucket: &str) -> String {
    format!("s3/{bucket}/")
}
const TAG_FORCE_DESTROY: &str = "stack:force-destroy";
const TAG_VERSIONING: &str = "stack:versioning";

pub async fn discover(
    c: &Clients,
    stack: &str,
    names: &[String],
) -> Result<(Vec<Live>, Vec<Foreign>), Error> {
    let mut live = Vec::new();
    let mut foreign = Vec::new();
    let mut existing = Vec::new();
    let mut pages = c.s3.list_buckets().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.ctx("listing", &"S3 buckets")?;
        existing.extend(
            page.buckets()
                .iter()
                .filter_map(|b| b.name())
                .map(str::to_string),
        );
    }
    // The stack's log bucket carries the account in its name, which `outputs` and
    // `status` do not ask for: found by its prefix and this region (bucket names are
    // global; the same stack in another region has its own), then trusted by its tags.
    let logs_prefix = crate::desired::logs_bucket_prefix(stack);
    let region_suffix = format!("-{}", c.region);
    let wanted: Vec<&String> = existing
        .iter()
        .filter(|n| {
            names.contains(n) || (n.starts_with(&logs_prefix) && n.ends_with(&region_suffix))
        })
        .collect();
    for name in wanted {
        let tags = match c
            .s3
            .get_bucket_tagging()
            .bucket(name)
            .send()
            .await
            .ctx("reading tags of", name)
        {
            Ok(t) => t.tag_set().to_vec(),
            Err(e) if e.is_code(&["NoSuchTagSet"]) => Vec::new(),
            Err(e) => return Err(e),
        };
        let Some(address) = owned_address(stack, tags.iter().map(|t| (t.key(), t.value()))) else {
            foreign.push(Foreign {
                kind: Kind::Bucket,
                name: name.clone(),
            });
            continue;
        };
        let force = tags
            .iter()
            .any(|t| t.key() == TAG_FORCE_DESTROY && t.value() == "true");
        let (versioning, pab, enc, policy, rules, logging) = tokio::try_join!(
            async {
                match c
                    .s3
                    .get_bucket_versioning()
                    .bucket(name)
                    .send()
                    .await
                    .ctx("reading versioning of", name)
                {
                    Ok(v) => Ok(v.status() == Some(&BucketVersioningStatus::Enabled)),
                    // moto 5.2 answers with a root element the SDK cannot read; fall back
                    // to what `up` last set, recorded in a tag.
                    Err(e) if e.is_code(&["UnknownError", "ResponseError"]) => Ok(tags
                        .iter()
                        .any(|t| t.key() == TAG_VERSIONING && t.value() == "true")),
                    Err(e) => Err(e),
                }
            },
            async {
                match c
                    .s3
                    .get_public_access_block()
                    .bucket(name)
                    .send()
                    .await
                    .ctx("reading public access of", name)
                {
                    Ok(r) => Ok(r.public_access_block_configuration().is_some_and(|p| {
                        p.block_public_acls() == Some(true)
                            && p.ignore_public_acls() == Some(true)
                            && p.block_public_policy() == Some(true)
                            && p.restrict_public_buckets() == Some(true)
                    })),
                    Err(e) if e.is_code(&["NoSuchPublicAccessBlockConfiguration"]) => Ok(false),
                    Err(e) => Err(e),
                }
            },
            async {
                match c
                    .s3
                    .get_bucket_encryption()
                    .bucket(name)
                    .send()
                    .await
                    .ctx("reading encryption of", name)
                {
                    Ok(r) => Ok(r
                        .server_side_encryption_configuration()
                        .and_then(|c| c.rules().first())
                        .and_then(|r| r.apply_server_side_encryption_by_default())
                        .map(|d| d.sse_algorithm().as_str().to_string())
                        .unwrap_or_default()),
                    Err(e) if e.is_code(&["ServerSideEncryptionConfigurationNotFoundError"]) => {
                        Ok(String::new())
                    }
                    Err(e) => Err(e),
                }
            },
            async {
                match c
                    .s3
                    .get_bucket_policy()
                    .bucket(name)
                    .send()
                    .await
                    .ctx("reading the policy of", name)
                {
                    Ok(r) => Ok(super::iam_role::canonical_policy(
                        r.policy().unwrap_or_default(),
                    )),
                    Err(e) if e.is_code(&["NoSuchBucketPolicy"]) => Ok(String::new()),
                    Err(e) => Err(e),
                }
            },
            async {
                match c
                    .s3
                    .get_bucket_lifecycle_configuration()
                    .bucket(name)
                    .send()
                    .await
                    .ctx("reading the lifecycle of", name)
                {
                    Ok(r) => Ok(summary_of(r.rules())),
                    Err(e) if e.is_code(&["NoSuchLifecycleConfiguration"]) => Ok(String::new()),
                    Err(e) => Err(e),
                }
            },
            async {
                let r =
                    c.s3.get_bucket_logging()
                        .bucket(name)
                        .send()
                        .await
                        .ctx("reading access logging of", name)?;
                Ok(r.logging_enabled()
                    .map(|l| l.target_bucket().to_string())
                    .unwrap_or_default())
            },
        )?;
        let attrs = to_attrs(&BucketAttrs {
            name: name.clone(),
            versioning,
            block_public_access: pab,
            encryption: enc,
            force_destroy: force,
            policy,
            lifecycle: rules,
            access_log_bucket: Ref::id(logging),
        });
        live.push(Live {
            address,
            id: name.clone(),
            attrs,
            extra: Default::default(),
        });
    }
    Ok((live, foreign))
}

fn tagging(ctx: &Ctx, a: &Address, b: &BucketAttrs) -> Tagging {
    let mut pairs = ctx.tags(a);
    pairs.push((TAG_FORCE_DESTROY.into(), b.force_destroy.to_string()));
    pairs.push((TAG_VERSIONING.into(), b.versioning.to_string()));
    let tags = pairs
        .into_iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .expect("key and value are set")
        })
        .collect();
    Tagging::builder()
        .set_tag_set(Some(tags))
        .build()
        .expect("tag set is set")
}

pub async fn create(ctx: &Ctx, a: &Address, attrs: &Attrs) -> Result<Created, Error> {
    let want: BucketAttrs = from_attrs(attrs)?;
    let name = want.name.clone();
    let mut call = ctx.c.s3.create_bucket().bucket(&name);
    if ctx.c.region != "us-east-1" {
        call = call.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(ctx.c.region.as_str()))
                .build(),
        );
    }
    call.send().await.ctx("creating", a)?;
    // Tags first: they make the bucket ours if anything after this fails.
    retry_codes(&["NoSuchBucket"], Patience::FRESH_ID, || async {
        ctx.c
            .s3
            .put_bucket_tagging()
            .bucket(&name)
            .tagging(tagging(ctx, a, &want))
            .send()
            .await
            .ctx("tagging", a)
    })
    .await?;
    let all: Vec<String> = [
        "block_public_access",
        "encryption",
        "versioning",
        "policy",
        "lifecycle",
        "access_log_bucket",
    ]
    .map(String::from)
    .to_vec();
    configure(ctx, a, &name, &want, &all, true).await?;
    Ok((name, Default::default()))
}

/// Days after which replaced object versions expire (versioned buckets).
const NONCURRENT_DAYS: i32 = 30;
/// Days after which an unfinished multipart upload's parts are removed.
const ABORT_DAYS: i32 = 7;

/// The lifecycle the stack sets (Security Hub S3.13), and how a plan shows it: parts
/// of uploads that never finished are removed, in a versioned bucket replaced
/// versions expire, and in the log bucket objects expire after `expire_days`.
pub fn lifecycle_summary(versioning: bool, expire_days: Option<i32>) -> String {
    let mut parts = vec![format!("incomplete uploads abort after {ABORT_DAYS} days")];
    if versioning {
        parts.push(format!(
            "noncurrent versions expire after {NONCURRENT_DAYS} days"
        ));
    }
    if let Some(d) = expire_days {
        parts.push(format!("objects expire after {d} days"));
    }
    parts.join("; ")
}

/// The object expiry a summary names, if any.
fn expiry_of(summary: &str) -> Option<i32> {
    summary
        .split("; ")
        .find_map(|p| p.strip_prefix("objects expire after "))
        .and_then(|d| d.trim_end_matches(" days").parse().ok())
}

fn lifecycle(versioning: bool, expire_days: Option<i32>) -> BucketLifecycleConfiguration {
    let mut rule = LifecycleRule::builder()
        .id("stack")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(ABORT_DAYS)
                .build(),
        );
    if versioning {
        rule = rule.noncurrent_version_expiration(
            NoncurrentVersionExpiration::builder()
                .noncurrent_days(NONCURRENT_DAYS)
                .build(),
        );
    }
    if let Some(days) = expire_days {
        rule = rule.expiration(LifecycleExpiration::builder().days(days).build());
    }
    BucketLifecycleConfiguration::builder()
        .rules(rule.build().expect("status is set"))
        .build()
        .expect("rules are set")
}

/// The summary of a lifecycle as S3 holds it, in [`lifecycle_summary`]'s words.
fn summary_of(rules: &[aws_sdk_s3::types::LifecycleRule]) -> String {
    let mut parts = Vec::new();
    for r in rules
        .iter()
        .filter(|r| r.status() == &ExpirationStatus::Enabled)
    {
        if let Some(d) = r
            .abort_incomplete_multipart_upload()
            .and_then(|x| x.days_after_initiation())
        {
            parts.push(format!("incomplete uploads abort after {d} days"));
        }
        if let Some(d) = r
            .noncurrent_version_expiration()
            .and_then(|x| x.noncurrent_days())
        {
            parts.push(format!("noncurrent versions expire after {d} days"));
        }
        if let Some(d) = r.expiration().and_then(|x| x.days()) {
            parts.push(format!("objects expire after {d} days"));
        }
    }
    parts.join("; ")
}

async fn configure(
    ctx: &Ctx,
    a: &Address,
    name: &str,
    want: &BucketAttrs,
    changes: &[String],
    fresh: bool,
) -> Result<(), Error> {
    let s3 = &ctx.c.s3;
    if changed(changes, attr!(BucketAttrs.block_public_access)) {
        let on = want.block_public_access;
        s3.put_public_access_block()
            .bucket(name)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(on)
                    .ignore_public_acls(on)
                    .block_public_policy(on)
                    .restrict_public_buckets(on)
                    .build(),
            )
            .send()
            .await
            .ctx("blocking public access to", a)?;
    }
    if changed(changes, attr!(BucketAttrs.encryption)) {
        let by_default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::from(want.encryption.as_str()))
            .build()
            .expect("algorithm is set");
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(by_default)
            .build();
        s3.put_bucket_encryption()
            .bucket(name)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(rule)
                    .build()
                    .expect("rules are set"),
            )
            .send()
            .await
            .ctx("setting default encryption of", a)?;
    }
    if changed(changes, attr!(BucketAttrs.policy)) {
        let policy = want.policy.as_str();
        if policy.is_empty() {
            absent_ok(
                s3.delete_bucket_policy()
                    .bucket(name)
                    .send()
                    .await
                    .ctx("removing the policy of", a),
                &["NoSuchBucketPolicy"],
            )?;
        } else {
            s3.put_bucket_policy()
                .bucket(name)
                .policy(policy)
                .send()
                .await
                .ctx("setting the policy of", a)?;
        }
    }
    if changed(changes, attr!(BucketAttrs.lifecycle)) {
        s3.put_bucket_lifecycle_configuration()
            .bucket(name)
            .lifecycle_configuration(lifecycle(want.versioning, expiry_of(&want.lifecycle)))
            .send()
            .await
            .ctx("setting the lifecycle of", a)?;
    }
    let target = want.access_log_bucket.as_id();
    // A new bucket logs nowhere already: only turning logging on needs a call then.
    if changed(changes, attr!(BucketAttrs.access_log_bucket)) && !(fresh && target.is_empty()) {
        // Server access logs (Security Hub S3.9), after the log bucket's policy lets
        // the logging service write.
        let status = BucketLoggingStatus::builder()
            .set_logging_enabled((!target.is_empty()).then(|| {
                LoggingEnabled::builder()
                    .target_bucket(target)
                    .target_prefix(access_log_prefix(name))
                    .build()
                    .expect("bucket and prefix are set")
            }))
            .build();
        retry_codes(
            &["InvalidTargetBucketForLogging"],
            Patience::FRESH_ID,
            || async {
                s3.put_bucket_logging()
                    .bucket(name)
                    .bucket_logging_status(status.clone())
                    .send()
                    .await
                    .ctx("setting access logging of", a)
            },
        )
        .await?;
    }
    if changed(changes, attr!(BucketAttrs.versioning)) {
        let status = if want.versioning {
            BucketVersioningStatus::Enabled
        } else {
            BucketVersioningStatus::Suspended
        };
        // A bucket that never had versioning needs no call to keep it off.
        if status == BucketVersioningStatus::Enabled || !fresh {
            s3.put_bucket_versioning()
                .bucket(name)
                .versioning_configuration(VersioningConfiguration::builder().status(status).build())
                .send()
                .await
                .ctx("setting versioning of", a)?;
        }
    }
    Ok(())
}

pub async fn update(
    ctx: &Ctx,
    live: &Live,
    attrs: &Attrs,
    changes: &[String],
) -> Result<(), Error> {
    let want: BucketAttrs = from_attrs(attrs)?;
    if changed(changes, attr!(BucketAttrs.force_destroy))
        || changed(changes, attr!(BucketAttrs.versioning))
    {
        ctx.c
            .s3
            .put_bucket_tagging()
            .bucket(&live.id)
            .tagging(tagging(ctx, &live.address, &want))
            .send()
            .await
            .ctx("tagging", &live.address)?;
    }
    configure(ctx, &live.address, &live.id, &want, changes, false).await
}

/// Every object version and delete marker (under `prefix`), 1000 per page.
pub(crate) async fn versions(
    ctx: &Ctx,
    a: &Address,
    name: &str,
    prefix: Option<&str>,
) -> Result<Vec<ObjectIdentifier>, Error> {
    let mut out = Vec::new();
    let (mut key, mut version) = (None, None);
    loop {
        let r = ctx
            .c
            .s3
            .list_object_versions()
            .bucket(name)
            .set_prefix(prefix.map(str::to_string))
            .set_key_marker(key.clone())
            .set_version_id_marker(version.clone())
            .send()
            .await
            .ctx("listing objects of", a)?;
        let ids = r
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(r.delete_markers().iter().map(|m| (m.key(), m.version_id())));
        for (k, v) in ids {
            if let Some(k) = k
                && let Ok(id) = ObjectIdentifier::builder()
                    .key(k)
                    .set_version_id(v.map(str::to_string))
                    .build()
            {
                out.push(id);
            }
        }
        if r.is_truncated() != Some(true) {
            return Ok(out);
        }
        key = r.next_key_marker().map(str::to_string);
        version = r.next_version_id_marker().map(str::to_string);
    }
}

/// Deletes object versions, 1000 per call.
pub(crate) async fn delete_versions(
    ctx: &Ctx,
    a: &Address,
    bucket: &str,
    objects: Vec<ObjectIdentifier>,
) -> Result<(), Error> {
    for chunk in objects.chunks(1000) {
        ctx.c
            .s3
            .delete_objects()
            .bucket(bucket)
            .delete(
                Delete::builder()
                    .set_objects(Some(chunk.to_vec()))
                    .quiet(true)
                    .build()
                    .expect("objects are set"),
            )
            .send()
            .await
            .ctx("deleting objects of", a)?;
    }
    Ok(())
}

/// How many object versions a bucket holds besides the stack's own builds (which
/// `s3_object.app` deletes) and credential verifier, up to one page.
pub async fn count_objects(c: &Clients, live: &Live) -> Result<Option<Loss>, Error> {
    let have: BucketAttrs = from_attrs(&live.attrs)?;
    let r = match c
        .s3
        .list_object_versions()
        .bucket(&live.id)
        .max_keys(1000)
        .send()
        .await
        .ctx("counting the objects of", &live.address)
    {
        Err(e) if e.is_code(&["NoSuchBucket"]) => return Ok(None),
        other => other?,
    };
    let count = r
        .versions()
        .iter()
        .filter(|v| {
            let key = v.key().unwrap_or_default();
            !key.starts_with(ARTIFACT_PREFIX) && !key.starts_with(STACK_PREFIX)
        })
        .count() as u64;
    Ok((count > 0).then(|| Loss {
        count,
        more: r.is_truncated() == Some(true),
        of: "objects".into(),
        allowed_by_file: have.force_destroy,
    }))
}

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    let a = &live.address;
    let have: BucketAttrs = from_attrs(&live.attrs)?;
    let objects = versions(ctx, a, &live.id, None).await?;
    if !objects.is_empty() {
        if !(ctx.force || have.force_destroy) {
            return Err(Error::Refused {
                resource: format!("{a} ({})", live.id),
                reason: format!(
                    "bucket is not empty ({} object versions); set `force_destroy: true` on the bucket or run `stack down --force` to delete them",
                    objects.len()
                ),
            });
        }
        ctx.report(a, format!("deleting {} object versions", objects.len()));
        delete_versions(ctx, a, &live.id, objects).await?;
    }
    // Log deliveries can land after the emptying (ELB and S3 deliver minutes late):
    // empty again and retry, within what the bucket's force_destroy allows.
    let mut tries = 0;
    loop {
        match ctx
            .c
            .s3
            .delete_bucket()
            .bucket(&live.id)
            .send()
            .await
            .ctx("deleting", a)
        {
            Err(e) if e.is_code(&["BucketNotEmpty"]) && tries < 5 && have.force_destroy => {
                tries += 1;
                let late = versions(ctx, a, &live.id, None).await?;
                delete_versions(ctx, a, &live.id, late).await?;
            }
            other => return absent_ok(other, &["NoSuchBucket"]),
        }
    }
}

impl super::KindOps for BucketAttrs {
    const FORCE_NEW: &'static [&'static str] = &[attr!(BucketAttrs.name)];
    const REFERENCES: &'static [&'static str] = &[attr!(BucketAttrs.access_log_bucket)];
    const ID_ATTRIBUTE: Option<&'static str> = Some(attr!(BucketAttrs.name));
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::S3;
    const LISTING: super::Listing = super::Listing::Buckets;

    super::writes!(map);
    super::writes!(delete);

    /// Buckets cannot be listed by tag: the listing looks at this one by name.
    async fn read(
        ctx: &Ctx,
        address: &Address,
        id: &str,
        _attrs: &Attrs,
    ) -> Result<Option<Live>, Error> {
        let hints = super::Hints {
            bucket_names: vec![id.to_string()],
        };
        super::listed(ctx, address, id, &hints).await
    }

    fn file_allows_loss(wanted: &Attrs) -> bool {
        from_attrs::<BucketAttrs>(wanted).is_ok_and(|b| b.force_destroy)
    }

    async fn data_at_risk(
        c: &crate::aws::Clients,
        live: &crate::model::Live,
    ) -> Result<Option<crate::plan::Loss>, crate::aws::Error> {
        count_objects(c, live).await
    }
}
