//! The VPC's flow log (Security Hub EC2.6): every accepted and rejected flow, to the
//! stack's log bucket. CreateFlowLogs reports failures in `Unsuccessful`, not as an
//! error, so the engine turns them into one. Nothing can be changed in place: a new
//! destination or traffic type is a new flow log.

use super::bucket::BucketAttrs;
use super::vpc::VpcAttrs;
use super::{Created, Ctx, EC2_NOT_YET, ec2_owner_filter, ec2_tag_spec};
use crate::aws::{Clients, Context, Error, Patience, retry_codes};
use crate::desired::Build;
use crate::model::attr;
use crate::model::{Address, Desired, Kind, KindAttrs, Live, Ref, to_attrs};
use aws_sdk_ec2::types::{FlowLogsResourceType, LogDestinationType, ResourceType, TrafficType};
use serde::{Deserialize, Serialize};

/// A flow log's attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FlowLogAttrs {
    /// The VPC whose traffic is logged.
    pub vpc_id: Ref<VpcAttrs>,
    /// Where the records go.
    pub log_bucket: Ref<BucketAttrs>,
    /// `ALL`, `ACCEPT` or `REJECT`.
    pub traffic_type: String,
}

impl KindAttrs for FlowLogAttrs {
    const KIND: Kind = Kind::FlowLog;
}

/// Security Hub EC2.6: the VPC's flows, accepted and rejected, to the log bucket.
pub fn desired(b: &Build) -> Vec<Desired> {
    vec![Desired::new(
        Address::new(Kind::FlowLog, "main"),
        to_attrs(&FlowLogAttrs {
            vpc_id: b.vpc.clone(),
            log_bucket: Ref::at(crate::desired::logs_bucket()),
            traffic_type: "ALL".into(),
        }),
    )]
}

/// The bucket's ARN: no prefix (logs land under `AWSLogs/<account>/vpcflowlogs/`).
fn destination(bucket: &str) -> String {
    format!("arn:aws:s3:::{bucket}")
}

pub async fn discover(c: &Clients, stack: &str) -> Result<Vec<Live>, Error> {
    let mut out = Vec::new();
    let listed = super::ec2_listing!(
        filtered c.ec2.describe_flow_logs().filter(ec2_owner_filter(stack)),
        stack,
        "flow logs",
        flow_logs
    );
    for (address, ref f) in listed {
        let bucket = f
            .log_destination()
            .and_then(|d| d.split(":::").nth(1))
            .map(|b| b.split('/').next().unwrap_or(b))
            .unwrap_or_default();
        let attrs = to_attrs(&FlowLogAttrs {
            vpc_id: Ref::id(f.resource_id().unwrap_or_default()),
            log_bucket: Ref::id(bucket),
            traffic_type: f
                .traffic_type()
                .map(|t| t.as_str())
                .unwrap_or_default()
                .to_string(),
        });
        out.push(Live {
            address,
            id: f.flow_log_id().unwrap_or_default().to_string(),
            attrs,
            extra: Default::default(),
        });
    }
    Ok(out)
}

pub async fn create(ctx: &Ctx, a: &Address, want: FlowLogAttrs) -> Result<Created, Error> {
    let r = retry_codes(EC2_NOT_YET, Patience::FRESH_ID, || async {
        let r = ctx
            .c
            .ec2
            .create_flow_logs()
            .resource_type(FlowLogsResourceType::Vpc)
            .resource_ids(want.vpc_id.as_id())
            .traffic_type(TrafficType::from(want.traffic_type.as_str()))
            .log_destination_type(LogDestinationType::S3)
            .log_destination(destination(want.log_bucket.as_id()))
            .tag_specifications(ec2_tag_spec(ctx, a, ResourceType::VpcFlowLog))
            .send()
            .await
            .ctx("creating", a)?;
        // "Access Denied for LogDestination" arrives here, not as an error.
        if let Some(u) = r.unsuccessful().first() {
            let e = u.error();
            return Err(Error::Aws {
                detail: None,
                action: "creating".into(),
                resource: a.to_string(),
                code: e
                    .and_then(|e| e.code())
                    .unwrap_or("Unsuccessful")
                    .to_string(),
                message: e.and_then(|e| e.message()).unwrap_or_default().to_string(),
            });
        }
        Ok(r)
    })
    .await?;
    let id = r.flow_log_ids().first().cloned().unwrap_or_default();
    Ok((id, Default::default()))
}

/// Every attribute forces a new flow log.
pub async fn update(_ctx: &Ctx, _live: &Live) -> Result<(), Error> {
    Ok(())
}

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    let r = ctx
        .c
        .ec2
        .delete_flow_logs()
        .flow_log_ids(&live.id)
        .send()
        .await
        .ctx("deleting", &live.address);
    let r = match r {
        Err(e) if e.is_code(&["InvalidFlowLogId.NotFound"]) => return Ok(()),
        other => other?,
    };
    match r.unsuccessful().first().and_then(|u| u.error()) {
        Some(e) if e.code() != Some("InvalidFlowLogId.NotFound") => Err(Error::Aws {
            detail: None,
            action: "deleting".into(),
            resource: live.address.to_string(),
            code: e.code().unwrap_or("Unsuccessful").to_string(),
            message: e.message().unwrap_or_default().to_string(),
        }),
        _ => Ok(()),
    }
}

impl super::KindOps for FlowLogAttrs {
    const FORCE_NEW: &'static [&'static str] = &[
        attr!(FlowLogAttrs.vpc_id),
        attr!(FlowLogAttrs.log_bucket),
        attr!(FlowLogAttrs.traffic_type),
    ];
    const REFERENCES: &'static [&'static str] =
        &[attr!(FlowLogAttrs.vpc_id), attr!(FlowLogAttrs.log_bucket)];
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::Ec2;
    const LISTING: super::Listing = super::Listing::FlowLogs;

    super::writes!(create(ctx, d, attrs) => crate::model::from_attrs(attrs)?);

    async fn update(
        ctx: &super::Ctx,
        _d: &crate::model::Desired,
        live: &crate::model::Live,
        _attrs: &crate::model::Attrs,
        _changed: &[String],
    ) -> Result<String, crate::aws::Error> {
        update(ctx, live).await?;
        Ok(live.id.clone())
    }

    super::writes!(delete);
}
