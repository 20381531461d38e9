//! The internet-facing Application Load Balancer. Creation waits until it is `active`;
//! deletion waits until it is gone, so its subnets and security group can follow.

use super::LiveMap;
use super::bucket::BucketAttrs;
use super::security_group::SecurityGroupAttrs;
use super::subnet::SubnetAttrs;
use super::{Created, Ctx, changed, elbv2::elb_tags};
use crate::aws::{Clients, Context, Error, Patience, retry_codes, wait_for};
use crate::desired::Build;
use crate::model::attr;
use crate::model::{Address, Desired, Kind, KindAttrs, Live, Ref, from_attrs, ids, to_attrs};
use aws_sdk_elasticloadbalancingv2::types::{
    LoadBalancer, LoadBalancerAttribute, LoadBalancerSchemeEnum, LoadBalancerStateEnum,
    LoadBalancerTypeEnum,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The load balancer's attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadBalancerAttrs {
    pub name: String,
    pub scheme: String,
    /// Invalid header fields are dropped, not passed to the app (Security Hub ELB.4).
    pub drop_invalid_header_fields: bool,
    /// The load balancer cannot be deleted by accident (ELB.6).
    pub deletion_protection: bool,
    /// The log bucket (Security Hub ELB.5): the stack's bucket, or the bucket name AWS
    /// reports (empty when logging is off). Absent from the listing's flatten until
    /// [`read_attributes`] adds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_logs: Option<Ref<BucketAttrs>>,
    /// The public subnets.
    pub subnets: Vec<Ref<SubnetAttrs>>,
    /// The load balancer's group.
    pub security_groups: Vec<Ref<SecurityGroupAttrs>>,
}

impl KindAttrs for LoadBalancerAttrs {
    const KIND: Kind = Kind::LoadBalancer;
}

/// What discovery records beside the attributes (`Live::extra`), by key.
pub mod extra {
    /// The DNS name AWS gave it.
    pub const DNS_NAME: &str = "dns_name";
    /// `provisioning`, `active`, `failed`...
    pub const STATE: &str = "state";
}

impl LoadBalancerAttrs {
    /// The log bucket's name once resolved (empty when logging is off).
    fn log_bucket(&self) -> &str {
        self.access_logs.as_ref().map_or("", Ref::as_id)
    }
}

/// The stack's application load balancer, in the public subnets.
pub fn desired(b: &Build) -> Vec<Desired> {
    vec![Desired::new(
        crate::desired::load_balancer(),
        to_attrs(&LoadBalancerAttrs {
            name: crate::desired::load_balancer_name(&b.spec.stack),
            scheme: "internet-facing".into(),
            drop_invalid_header_fields: true,
            deletion_protection: true,
            // Security Hub ELB.5: access logs, to the log bucket.
            access_logs: Some(Ref::at(crate::desired::logs_bucket())),
            subnets: b.subnets.clone(),
            security_groups: vec![Ref::at(crate::desired::alb_sg())],
        }),
    )]
}

const NOT_YET: &[&str] = &[
    "SubnetNotFound",
    "InvalidSubnet",
    "InvalidSecurityGroup",
    "InvalidConfigurationRequest",
];

/// The load balancer as ELBv2 lists it; the attributes it sets separately (flags and
/// access logs) come from [`read_attributes`].
pub fn live(address: Address, lb: &LoadBalancer) -> Live {
    let subnets = lb
        .availability_zones()
        .iter()
        .filter_map(|z| z.subnet_id())
        .map(Ref::id)
        .collect();
    let attrs = to_attrs(&LoadBalancerAttrs {
        name: lb.load_balancer_name().unwrap_or_default().to_string(),
        scheme: lb
            .scheme()
            .map(|s| s.as_str())
            .unwrap_or_default()
            .to_string(),
        drop_invalid_header_fields: false,
        deletion_protection: false,
        access_logs: None,
        subnets,
        security_groups: lb.security_groups().iter().map(Ref::id).collect(),
    });
    let extra = BTreeMap::from([
        (
            extra::DNS_NAME.to_string(),
            lb.dns_name().unwrap_or_default().to_string(),
        ),
        (
            extra::STATE.to_string(),
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

pub async fn create(ctx: &Ctx, a: &Address, want: LoadBalancerAttrs) -> Result<Created, Error> {
    let r = retry_codes(NOT_YET, Patience::FRESH_ID, || async {
        ctx.c
            .elb
            .create_load_balancer()
            .name(&want.name)
            .set_subnets(Some(ids(&want.subnets)))
            .set_security_groups(Some(ids(&want.security_groups)))
            .scheme(LoadBalancerSchemeEnum::from(want.scheme.as_str()))
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
    set_attributes(ctx, a, &arn, &want).await?;
    Ok((arn, live(a.clone(), &active).extra))
}

/// The AWS keys of the load balancer attributes the stack sets as flags: invalid
/// header fields are dropped, not passed to the app (Security Hub ELB.4), and the load
/// balancer cannot be deleted by accident (ELB.6).
const DROP_INVALID_HEADER_FIELDS: &str = "routing.http.drop_invalid_header_fields.enabled";
const DELETION_PROTECTION: &str = "deletion_protection.enabled";

/// The flags, by their AWS keys.
fn flags(lb: &LoadBalancerAttrs) -> [(&'static str, bool); 2] {
    [
        (DROP_INVALID_HEADER_FIELDS, lb.drop_invalid_header_fields),
        (DELETION_PROTECTION, lb.deletion_protection),
    ]
}

/// Where access logs go under the log bucket (Security Hub ELB.5); AWS refuses a
/// prefix containing `AWSLogs`.
pub const ACCESS_LOG_PREFIX: &str = "alb";

async fn set_attributes(
    ctx: &Ctx,
    a: &Address,
    arn: &str,
    want: &LoadBalancerAttrs,
) -> Result<(), Error> {
    let mut all: Vec<LoadBalancerAttribute> = flags(want)
        .into_iter()
        .map(|(key, on)| {
            LoadBalancerAttribute::builder()
                .key(key)
                .value(on.to_string())
                .build()
        })
        .collect();
    let log_bucket = want.log_bucket();
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
    let mut have: LoadBalancerAttrs = from_attrs(&live.attrs)?;
    have.drop_invalid_header_fields = value(DROP_INVALID_HEADER_FIELDS) == "true";
    have.deletion_protection = value(DELETION_PROTECTION) == "true";
    let logs = if value("access_logs.s3.enabled") == "true" {
        value("access_logs.s3.bucket")
    } else {
        ""
    };
    have.access_logs = Some(Ref::id(logs));
    live.attrs = to_attrs(&have);
    Ok(())
}

pub async fn update(
    ctx: &Ctx,
    live: &Live,
    want: LoadBalancerAttrs,
    changes: &[String],
) -> Result<(), Error> {
    // A subnet or group created moments ago (a subnet replaced create-first) can be
    // unknown to ELBv2 for a while.
    let fresh = &["SubnetNotFound", "InvalidSecurityGroup"];
    if changed(changes, attr!(LoadBalancerAttrs.subnets)) {
        retry_codes(fresh, Patience::FRESH_ID, || async {
            ctx.c
                .elb
                .set_subnets()
                .load_balancer_arn(&live.id)
                .set_subnets(Some(ids(&want.subnets)))
                .send()
                .await
                .ctx("setting subnets of", &live.address)
        })
        .await?;
    }
    if [
        attr!(LoadBalancerAttrs.drop_invalid_header_fields),
        attr!(LoadBalancerAttrs.deletion_protection),
        attr!(LoadBalancerAttrs.access_logs),
    ]
    .iter()
    .any(|k| changed(changes, k))
    {
        set_attributes(ctx, &live.address, &live.id, &want).await?;
    }
    if changed(changes, attr!(LoadBalancerAttrs.security_groups)) {
        retry_codes(fresh, Patience::FRESH_ID, || async {
            ctx.c
                .elb
                .set_security_groups()
                .load_balancer_arn(&live.id)
                .set_security_groups(Some(ids(&want.security_groups)))
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
    let have: LoadBalancerAttrs = from_attrs(&live.attrs)?;
    if have.deletion_protection {
        let unprotected = LoadBalancerAttrs {
            deletion_protection: false,
            ..have
        };
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

impl super::KindOps for LoadBalancerAttrs {
    const FORCE_NEW: &'static [&'static str] = &[
        attr!(LoadBalancerAttrs.name),
        attr!(LoadBalancerAttrs.scheme),
    ];
    const REFERENCES: &'static [&'static str] = &[
        attr!(LoadBalancerAttrs.subnets),
        attr!(LoadBalancerAttrs.security_groups),
        attr!(LoadBalancerAttrs.access_logs),
    ];
    const DOWNTIME: Option<&'static str> =
        Some("downtime: the load balancer is deleted first; the new one has a new DNS name");
    const UNIQUE_NAME: Option<&'static str> = Some(attr!(LoadBalancerAttrs.name));
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::Elbv2;
    const LISTING: super::Listing = super::Listing::LoadBalancing;

    super::writes!(typed);
    super::writes!(delete);

    fn protected(live: &crate::model::Attrs) -> bool {
        from_attrs::<LoadBalancerAttrs>(live).is_ok_and(|a| a.deletion_protection)
    }

    async fn names_taken(c: &Clients, names: &[String], _: &LiveMap) -> Result<Vec<String>, Error> {
        match c
            .elb
            .describe_load_balancers()
            .set_names(Some(names.to_vec()))
            .send()
            .await
            .ctx("looking up", &"load balancer names")
        {
            Ok(r) => Ok(r
                .load_balancers()
                .iter()
                .filter_map(|l| l.load_balancer_name())
                .map(str::to_string)
                .collect()),
            Err(e) if e.is_code(&["LoadBalancerNotFound"]) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}
