//! The internet-facing Application Load Balancer. Creation waits until it is `active`;
//! deletion waits until it is gone, so its subnets and security group can follow.

use super::{Created, Ctx, attr_bool, attr_list, attr_str, changed, elbv2::elb_tags};
use crate::aws::{Context, Error, Patience, retry_codes, wait_for};
use crate::desired::Build;
use crate::model::Ref;
use crate::model::{Address, Attrs, Live, Value};
use crate::model::{Desired, attrs};
use aws_sdk_elasticloadbalancingv2::types::{
    LoadBalancer, LoadBalancerAttribute, LoadBalancerSchemeEnum, LoadBalancerStateEnum,
    LoadBalancerTypeEnum,
};
use std::collections::BTreeMap;
use std::time::Duration;

pub const FORCE_NEW: &[&str] = &["name", "scheme"];

/// The stack's application load balancer, in the public subnets.
pub fn desired(b: &Build) -> Vec<Desired> {
    vec![Desired::new(
        crate::desired::load_balancer(),
        attrs([
            (
                "name",
                Value::s(crate::desired::load_balancer_name(&b.spec.stack)),
            ),
            ("scheme", Value::s("internet-facing")),
            ("drop_invalid_header_fields", Value::Bool(true)),
            ("deletion_protection", Value::Bool(true)),
            // Security Hub ELB.5: access logs, to the log bucket.
            ("access_logs", Value::r(&crate::desired::logs_bucket())),
            ("subnets", Ref::list(&b.subnets)),
            (
                "security_groups",
                Value::List(vec![Value::r(&crate::desired::alb_sg())]),
            ),
        ]),
    )]
}

const NOT_YET: &[&str] = &[
    "SubnetNotFound",
    "InvalidSubnet",
    "InvalidSecurityGroup",
    "InvalidConfigurationRequest",
];

pub fn live(address: Address, lb: &LoadBalancer) -> Live {
    let subnets: Vec<String> = lb
        .availability_zones()
        .iter()
        .filter_map(|z| z.subnet_id())
        .map(str::to_string)
        .collect();
    let attrs = Attrs::from([
        (
            "name".into(),
            Value::s(lb.load_balancer_name().unwrap_or_default()),
        ),
        (
            "scheme".into(),
            Value::s(lb.scheme().map(|s| s.as_str()).unwrap_or_default()),
        ),
        ("subnets".into(), Value::strs(subnets)),
        (
            "security_groups".into(),
            Value::strs(lb.security_groups().iter().cloned()),
        ),
    ]);
    let extra = BTreeMap::from([
        (
            "dns_name".to_string(),
            lb.dns_name().unwrap_or_default().to_string(),
        ),
        (
            "state".to_string(),
            lb.state()
                .and_then(|s| s.code())
                .map(|c| c.as_str().to_string())
                .unwrap_or_default(),
        ),
    ]);
    Live {
        address,
        id: lb.load_balancer_arn().unwrap_or_default().to_string(),
        attrs,
        extra,
    }
}

pub async fn create(ctx: &Ctx, a: &Address, attrs: &Attrs) -> Result<Created, Error> {
    let r = retry_codes(NOT_YET, Patience::FRESH_ID, || async {
        ctx.c
            .elb
            .create_load_balancer()
            .name(attr_str(attrs, "name"))
            .set_subnets(Some(attr_list(attrs, "subnets")))
            .set_security_groups(Some(attr_list(attrs, "security_groups")))
            .scheme(LoadBalancerSchemeEnum::from(attr_str(attrs, "scheme")))
            .r#type(LoadBalancerTypeEnum::Application)
            .set_tags(Some(elb_tags(ctx, a)))
            .send()
            .await
            .ctx("creating", a)
    })
    .await?;
    let lb = r
        .load_balancers()
        .first()
        .cloned()
        .unwrap_or_else(|| LoadBalancer::builder().build());
    let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
    ctx.report(a, "waiting for the load balancer to become active");
    let active = wait_for(
        a,
        "the load balancer to become active",
        Duration::from_secs(900),
        || async {
            let r = ctx
                .c
                .elb
                .describe_load_balancers()
                .load_balancer_arns(&arn)
                .send()
                .await;
            match r.ctx("reading", a) {
                Ok(r) => {
                    let lb = r.load_balancers().first().cloned();
                    let state = lb
                        .as_ref()
                        .and_then(|l| l.state())
                        .and_then(|s| s.code())
                        .cloned();
                    match state {
                        Some(LoadBalancerStateEnum::Active) => Ok(lb),
                        Some(LoadBalancerStateEnum::Failed) => Err(Error::Refused {
                            resource: a.to_string(),
                            reason: "the load balancer failed to provision".into(),
                        }),
                        _ => Ok(None),
                    }
                }
                Err(e) if e.is_code(&["LoadBalancerNotFound"]) => Ok(None),
                Err(e) => Err(e),
            }
        },
    )
    .await?;
    set_attributes(ctx, a, &arn, attrs).await?;
    Ok((arn, live(a.clone(), &active).extra))
}

/// Load balancer attributes the stack sets, by their AWS keys: invalid header fields
/// are dropped, not passed to the app (Security Hub ELB.4), and the load balancer
/// cannot be deleted by accident (ELB.6).
const ATTRIBUTES: [(&str, &str); 2] = [
    (
        "drop_invalid_header_fields",
        "routing.http.drop_invalid_header_fields.enabled",
    ),
    ("deletion_protection", "deletion_protection.enabled"),
];

/// Where access logs go under the log bucket (Security Hub ELB.5); AWS refuses a
/// prefix containing `AWSLogs`.
pub const ACCESS_LOG_PREFIX: &str = "alb";

async fn set_attributes(ctx: &Ctx, a: &Address, arn: &str, attrs: &Attrs) -> Result<(), Error> {
    let mut all: Vec<LoadBalancerAttribute> = ATTRIBUTES
        .iter()
        .map(|(attr, key)| {
            LoadBalancerAttribute::builder()
                .key(*key)
                .value(attr_bool(attrs, attr).to_string())
                .build()
        })
        .collect();
    let log_bucket = attr_str(attrs, "access_logs");
    for (key, value) in [
        (
            "access_logs.s3.enabled",
            (!log_bucket.is_empty()).to_string(),
        ),
        ("access_logs.s3.bucket", log_bucket.to_string()),
        ("access_logs.s3.prefix", ACCESS_LOG_PREFIX.to_string()),
    ] {
        all.push(
            LoadBalancerAttribute::builder()
                .key(key)
                .value(value)
                .build(),
        );
    }
    // ELB checks it may write to the bucket; a policy put moments ago may not be seen
    // yet ("Access Denied for bucket"), nor a bucket just created.
    let patience = Patience {
        total: Duration::from_secs(120),
        ..Patience::FRESH_ID
    };
    retry_codes(&["InvalidConfigurationRequest"], patience, || async {
        ctx.c
            .elb
            .modify_load_balancer_attributes()
            .load_balancer_arn(arn)
            .set_attributes(Some(all.clone()))
            .send()
            .await
            .ctx("setting the attributes of", a)
            .map(drop)
    })
    .await
}

/// Reads back the attributes the stack sets into `live`.
pub async fn read_attributes(c: &crate::aws::Clients, live: &mut Live) -> Result<(), Error> {
    let r = c
        .elb
        .describe_load_balancer_attributes()
        .load_balancer_arn(&live.id)
        .send()
        .await
        .ctx("reading the attributes of", &live.address)?;
    let value = |key: &str| {
        r.attributes()
            .iter()
            .find(|x| x.key() == Some(key))
            .and_then(|x| x.value())
            .unwrap_or_default()
    };
    for (attr, key) in ATTRIBUTES {
        live.attrs
            .insert(attr.into(), Value::Bool(value(key) == "true"));
    }
    let logs = if value("access_logs.s3.enabled") == "true" {
        value("access_logs.s3.bucket")
    } else {
        ""
    };
    live.attrs.insert("access_logs".into(), Value::s(logs));
    Ok(())
}

pub async fn update(
    ctx: &Ctx,
    live: &Live,
    attrs: &Attrs,
    changes: &[String],
) -> Result<(), Error> {
    // A subnet or group created moments ago (a subnet replaced create-first) can be
    // unknown to ELBv2 for a while.
    let fresh = &["SubnetNotFound", "InvalidSecurityGroup"];
    if changed(changes, "subnets") {
        retry_codes(fresh, Patience::FRESH_ID, || async {
            ctx.c
                .elb
                .set_subnets()
                .load_balancer_arn(&live.id)
                .set_subnets(Some(attr_list(attrs, "subnets")))
                .send()
                .await
                .ctx("setting subnets of", &live.address)
        })
        .await?;
    }
    if [
        "drop_invalid_header_fields",
        "deletion_protection",
        "access_logs",
    ]
    .iter()
    .any(|k| changed(changes, k))
    {
        set_attributes(ctx, &live.address, &live.id, attrs).await?;
    }
    if changed(changes, "security_groups") {
        retry_codes(fresh, Patience::FRESH_ID, || async {
            ctx.c
                .elb
                .set_security_groups()
                .load_balancer_arn(&live.id)
                .set_security_groups(Some(attr_list(attrs, "security_groups")))
                .send()
                .await
                .ctx("setting security groups of", &live.address)
        })
        .await?;
    }
    Ok(())
}

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    let a = &live.address;
    // Deletion protection goes first: a delete reaches here only when the plan allowed
    // it (`down`, or a replacement with --force).
    if attr_bool(&live.attrs, "deletion_protection") {
        let mut unprotected = live.attrs.clone();
        unprotected.insert("deletion_protection".into(), Value::Bool(false));
        match set_attributes(ctx, a, &live.id, &unprotected).await {
            Err(e) if e.is_code(&["LoadBalancerNotFound"]) => return Ok(()),
            other => other?,
        }
    }
    match ctx
        .c
        .elb
        .delete_load_balancer()
        .load_balancer_arn(&live.id)
        .send()
        .await
        .ctx("deleting", a)
    {
        Err(e) if e.is_code(&["LoadBalancerNotFound"]) => return Ok(()),
        other => other.map(drop)?,
    }
    ctx.report(a, "waiting for the load balancer to go");
    wait_for(
        a,
        "the load balancer to be deleted",
        Duration::from_secs(600),
        || async {
            match ctx
                .c
                .elb
                .describe_load_balancers()
                .load_balancer_arns(&live.id)
                .send()
                .await
                .ctx("reading", a)
            {
                Err(e) if e.is_code(&["LoadBalancerNotFound"]) => Ok(Some(())),
                Err(e) => Err(e),
                Ok(r) if r.load_balancers().is_empty() => Ok(Some(())),
                Ok(_) => Ok(None),
            }
        },
    )
    .await
}

/// This kind's life, as the registry (`resources::KindOps`) calls it.
pub(crate) struct Ops;

impl super::KindOps for Ops {
    const FORCE_NEW: &'static [&'static str] = FORCE_NEW;
    const REFERENCES: &'static [&'static str] = &["subnets", "security_groups", "access_logs"];
    const DOWNTIME: Option<&'static str> =
        Some("downtime: the load balancer is deleted first; the new one has a new DNS name");
    const UNIQUE_NAME: Option<&'static str> = Some("name");
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::Elbv2;
    const LISTING: super::Listing = super::Listing::LoadBalancing;

    super::writes!(map);
}
