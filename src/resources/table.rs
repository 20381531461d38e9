//! The DynamoDB table: keys, billing mode, point-in-time recovery. Its name carries
//! the stack prefix, so discovery lists tables, keeps those with the prefix, and then
//! trusts only their tags.

use super::{Created, Ctx, Foreign, changed};
use crate::aws::{Clients, Context, Error, Patience, retry_codes, wait_for};
use crate::desired::Build;
use crate::model::attr;
use crate::model::{Address, Attrs, Kind, Live, owned_address};
use crate::model::{Desired, KindAttrs, from_attrs, to_attrs};
use crate::plan::Loss;
use crate::spec::Billing;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, PointInTimeRecoverySpecification,
    ProvisionedThroughput, ScalarAttributeType, TableDescription, TableStatus, Tag,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The table's attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableAttrs {
    pub name: String,
    /// `<attribute>:<type>` (`id:S`).
    pub partition_key: String,
    /// `<attribute>:<type>`, empty for a table without one.
    pub sort_key: String,
    /// `PAY_PER_REQUEST` or `PROVISIONED`.
    pub billing_mode: String,
    /// Set only when provisioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_capacity: Option<i64>,
    /// Set only when provisioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_capacity: Option<i64>,
    pub point_in_time_recovery: bool,
    pub deletion_protection: bool,
}

impl KindAttrs for TableAttrs {
    const KIND: Kind = Kind::Table;
}

/// The file's table, if it has one.
pub fn desired(b: &Build) -> Vec<Desired> {
    let Some(t) = &b.spec.table else {
        return Vec::new();
    };
    let (billing_mode, read_capacity, write_capacity) = match t.billing {
        Billing::PayPerRequest => ("PAY_PER_REQUEST", None, None),
        Billing::Provisioned { read, write } => {
            ("PROVISIONED", Some(read.into()), Some(write.into()))
        }
    };
    let a = TableAttrs {
        name: t.name.clone(),
        partition_key: format!("{}:{}", t.partition_key.name, t.partition_key.key_type),
        sort_key: t
            .sort_key
            .as_ref()
            .map(|k| format!("{}:{}", k.name, k.key_type))
            .unwrap_or_default(),
        billing_mode: billing_mode.into(),
        read_capacity,
        write_capacity,
        point_in_time_recovery: t.pitr,
        deletion_protection: true,
    };
    vec![Desired::new(crate::desired::table(), to_attrs(&a))]
}

pub async fn discover(c: &Clients, stack: &str) -> Result<(Vec<Live>, Vec<Foreign>), Error> {
    let prefix = format!("{stack}-");
    let mut names = Vec::new();
    let mut pages = c.ddb.list_tables().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.ctx("listing", &"DynamoDB tables")?;
        names.extend(
            page.table_names()
                .iter()
                .filter(|n| n.starts_with(&prefix))
                .cloned(),
        );
    }
    let mut live = Vec::new();
    let mut foreign = Vec::new();
    for name in names {
        let d = c
            .ddb
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .ctx("reading", &name)?;
        let Some(t) = d.table() else { continue };
        let arn = t.table_arn().unwrap_or_default();
        let (tags, pitr) = tokio::try_join!(
            async {
                c.ddb
                    .list_tags_of_resource()
                    .resource_arn(arn)
                    .send()
                    .await
                    .ctx("reading tags of", &name)
            },
            async {
                c.ddb
                    .describe_continuous_backups()
                    .table_name(&name)
                    .send()
                    .await
                    .ctx("reading backups of", &name)
            },
        )?;
        let owner = owned_address(stack, tags.tags().iter().map(|t| (t.key(), t.value())));
        let Some(address) = owner else {
            foreign.push(Foreign {
                kind: Kind::Table,
                name,
            });
            continue;
        };
        let pitr_on = pitr
            .continuous_backups_description()
            .and_then(|b| b.point_in_time_recovery_description())
            .and_then(|p| p.point_in_time_recovery_status())
            .map(|s| s.as_str() == "ENABLED")
            .unwrap_or(false);
        live.push(to_live(address, t, pitr_on));
    }
    Ok((live, foreign))
}

fn to_live(address: Address, t: &TableDescription, pitr: bool) -> Live {
    let key_of = |kt: KeyType| {
        t.key_schema()
            .iter()
            .find(|k| k.key_type() == &kt)
            .map(|k| {
                let ty = t
                    .attribute_definitions()
                    .iter()
                    .find(|d| d.attribute_name() == k.attribute_name())
                    .map(|d| d.attribute_type().as_str().to_string())
                    .unwrap_or_default();
                format!("{}:{ty}", k.attribute_name())
            })
            .unwrap_or_default()
    };
    let billing = t
        .billing_mode_summary()
        .and_then(|b| b.billing_mode())
        .map(|b| b.as_str().to_string())
        .unwrap_or_else(|| "PROVISIONED".into());
    let provisioned = (billing == "PROVISIONED").then(|| t.provisioned_throughput());
    let attrs = to_attrs(&TableAttrs {
        name: t.table_name().unwrap_or_default().to_string(),
        partition_key: key_of(KeyType::Hash),
        sort_key: key_of(KeyType::Range),
        read_capacity: provisioned
            .map(|p| p.and_then(|p| p.read_capacity_units()).unwrap_or_default()),
        write_capacity: provisioned
            .map(|p| p.and_then(|p| p.write_capacity_units()).unwrap_or_default()),
        billing_mode: billing,
        point_in_time_recovery: pitr,
        deletion_protection: t.deletion_protection_enabled().unwrap_or(false),
    });
    Live {
        address,
        id: t.table_name().unwrap_or_default().to_string(),
        attrs,
        extra: Default::default(),
    }
}

fn key(spec: &str, kt: KeyType) -> Option<(KeySchemaElement, AttributeDefinition)> {
    let (name, ty) = spec.split_once(':')?;
    let k = KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kt)
        .build()
        .ok()?;
    let d = AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::from(ty))
        .build()
        .ok()?;
    Some((k, d))
}

fn throughput(t: &TableAttrs) -> Option<ProvisionedThroughput> {
    (t.billing_mode == "PROVISIONED").then(|| {
        ProvisionedThroughput::builder()
            .read_capacity_units(t.read_capacity.unwrap_or_default())
            .write_capacity_units(t.write_capacity.unwrap_or_default())
            .build()
            .expect("both capacities are set")
    })
}

pub async fn create(ctx: &Ctx, a: &Address, attrs: &Attrs) -> Result<Created, Error> {
    let want: TableAttrs = from_attrs(attrs)?;
    let name = want.name.clone();
    let keys: Vec<_> = [
        key(&want.partition_key, KeyType::Hash),
        key(&want.sort_key, KeyType::Range),
    ]
    .into_iter()
    .flatten()
    .collect();
    let tags: Vec<Tag> = ctx
        .tags(a)
        .into_iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect();
    ctx.c
        .ddb
        .create_table()
        .table_name(&name)
        .set_key_schema(Some(keys.iter().map(|k| k.0.clone()).collect()))
        .set_attribute_definitions(Some(keys.iter().map(|k| k.1.clone()).collect()))
        .billing_mode(BillingMode::from(want.billing_mode.as_str()))
        .set_provisioned_throughput(throughput(&want))
        .deletion_protection_enabled(want.deletion_protection)
        .set_tags(Some(tags))
        .send()
        .await
        .ctx("creating", a)?;
    wait_active(ctx, a, &name).await?;
    if want.point_in_time_recovery {
        set_pitr(ctx, a, &name, true).await?;
    }
    Ok((name, Default::default()))
}

async fn wait_active(ctx: &Ctx, a: &Address, name: &str) -> Result<(), Error> {
    ctx.report(a, "waiting for the table to become ACTIVE");
    wait_for(
        a,
        "the table to become ACTIVE",
        Duration::from_secs(600),
        || async {
            match ctx
                .c
                .ddb
                .describe_table()
                .table_name(name)
                .send()
                .await
                .ctx("reading", a)
            {
                Ok(r) => Ok((r.table().and_then(|t| t.table_status())
                    == Some(&TableStatus::Active))
                .then_some(())),
                Err(e) if e.is_code(&["ResourceNotFoundException"]) => Ok(None),
                Err(e) => Err(e),
            }
        },
    )
    .await
}

/// How many items a table holds, up to one page of a COUNT scan (DescribeTable's
/// ItemCount is refreshed only every six hours, so a fresh table reads 0).
pub async fn count_items(c: &Clients, live: &Live) -> Result<Option<Loss>, Error> {
    let r = match c
        .ddb
        .scan()
        .table_name(&live.id)
        .select(aws_sdk_dynamodb::types::Select::Count)
        .limit(1000)
        .send()
        .await
        .ctx("counting the items of", &live.address)
    {
        Err(e) if e.is_code(&["ResourceNotFoundException"]) => return Ok(None),
        other => other?,
    };
    let count = r.count().max(0) as u64;
    Ok((count > 0).then(|| Loss {
        count,
        more: r.last_evaluated_key().is_some(),
        of: "items".into(),
        allowed_by_file: false,
    }))
}

/// DynamoDB's code for a table that is `CREATING`, `UPDATING` or `DELETING`: it
/// refuses UpdateTable, DeleteTable and UpdateContinuousBackups until `ACTIVE`.
const TABLE_BUSY: &[&str] = &["ResourceInUseException"];

/// How long a new table may answer `ContinuousBackupsUnavailableException`: backups
/// are being enabled behind it. terraform-provider-aws waits up to 20 minutes.
const PITR_PATIENCE: Patience = Patience {
    total: Duration::from_secs(20 * 60),
    first_delay: Duration::from_secs(1),
    max_delay: Duration::from_secs(30),
};

async fn set_pitr(ctx: &Ctx, a: &Address, name: &str, on: bool) -> Result<(), Error> {
    retry_codes(
        &[
            "ContinuousBackupsUnavailableException",
            "ResourceInUseException",
        ],
        PITR_PATIENCE,
        || async {
            ctx.c
                .ddb
                .update_continuous_backups()
                .table_name(name)
                .point_in_time_recovery_specification(
                    PointInTimeRecoverySpecification::builder()
                        .point_in_time_recovery_enabled(on)
                        .build()
                        .expect("flag is set"),
                )
                .send()
                .await
                .ctx("setting point-in-time recovery of", a)
        },
    )
    .await
    .map(drop)
}

pub async fn update(
    ctx: &Ctx,
    live: &Live,
    attrs: &Attrs,
    changes: &[String],
) -> Result<(), Error> {
    let a = &live.address;
    let want: TableAttrs = from_attrs(attrs)?;
    // A table left CREATING or UPDATING (a killed run) refuses every change until ACTIVE.
    wait_active(ctx, a, &live.id).await?;
    if [
        attr!(TableAttrs.billing_mode),
        attr!(TableAttrs.read_capacity),
        attr!(TableAttrs.write_capacity),
    ]
    .iter()
    .any(|k| changed(changes, k))
    {
        ctx.c
            .ddb
            .update_table()
            .table_name(&live.id)
            .billing_mode(BillingMode::from(want.billing_mode.as_str()))
            .set_provisioned_throughput(throughput(&want))
            .send()
            .await
            .ctx("changing the billing of", a)?;
        wait_active(ctx, a, &live.id).await?;
    }
    if changed(changes, attr!(TableAttrs.point_in_time_recovery)) {
        set_pitr(ctx, a, &live.id, want.point_in_time_recovery).await?;
    }
    if changed(changes, attr!(TableAttrs.deletion_protection)) {
        set_deletion_protection(ctx, a, &live.id, want.deletion_protection).await?;
    }
    Ok(())
}

/// Deletion protection (Security Hub DynamoDB.6): on while the stack keeps the table;
/// switched off only by a delete the plan allowed (its items counted, `--force` given
/// for any).
async fn set_deletion_protection(
    ctx: &Ctx,
    a: &Address,
    name: &str,
    on: bool,
) -> Result<(), Error> {
    retry_codes(TABLE_BUSY, Patience::DEPENDENCY, || async {
        ctx.c
            .ddb
            .update_table()
            .table_name(name)
            .deletion_protection_enabled(on)
            .send()
            .await
            .ctx("setting deletion protection of", a)
    })
    .await?;
    wait_active(ctx, a, name).await
}

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    let a = &live.address;
    let have: TableAttrs = from_attrs(&live.attrs)?;
    if have.deletion_protection {
        match set_deletion_protection(ctx, a, &live.id, false).await {
            Err(e) if e.is_code(&["ResourceNotFoundException"]) => return Ok(()),
            other => other?,
        }
    }
    // A table still CREATING or UPDATING (a killed run) answers ResourceInUseException
    // until it is ACTIVE; DEPENDENCY's 15 minutes cover a table's creation.
    let r = retry_codes(TABLE_BUSY, Patience::DEPENDENCY, || async {
        ctx.c
            .ddb
            .delete_table()
            .table_name(&live.id)
            .send()
            .await
            .ctx("deleting", a)
    })
    .await;
    match r {
        Err(e) if e.is_code(&["ResourceNotFoundException"]) => return Ok(()),
        other => other.map(drop)?,
    }
    wait_for(
        a,
        "the table to be deleted",
        Duration::from_secs(600),
        || async {
            match ctx
                .c
                .ddb
                .describe_table()
                .table_name(&live.id)
                .send()
                .await
                .ctx("reading", a)
            {
                Err(e) if e.is_code(&["ResourceNotFoundException"]) => Ok(Some(())),
                Err(e) => Err(e),
                Ok(_) => Ok(None),
            }
        },
    )
    .await
}

impl super::KindOps for TableAttrs {
    const FORCE_NEW: &'static [&'static str] = &[
        attr!(TableAttrs.name),
        attr!(TableAttrs.partition_key),
        attr!(TableAttrs.sort_key),
    ];
    const ID_ATTRIBUTE: Option<&'static str> = Some(attr!(TableAttrs.name));
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::DynamoDb;
    const LISTING: super::Listing = super::Listing::Tables;

    super::writes!(map);
    super::writes!(delete);

    fn protected(live: &Attrs) -> bool {
        from_attrs::<TableAttrs>(live).is_ok_and(|a| a.deletion_protection)
    }

    async fn data_at_risk(
        c: &crate::aws::Clients,
        live: &crate::model::Live,
    ) -> Result<Option<crate::plan::Loss>, crate::aws::Error> {
        count_items(c, live).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Value, attrs};

    fn table(capacity: Option<(i64, i64)>) -> TableAttrs {
        TableAttrs {
            name: "employees".into(),
            partition_key: "id:S".into(),
            sort_key: String::new(),
            billing_mode: if capacity.is_some() {
                "PROVISIONED"
            } else {
                "PAY_PER_REQUEST"
            }
            .into(),
            read_capacity: capacity.map(|c| c.0),
            write_capacity: capacity.map(|c| c.1),
            point_in_time_recovery: true,
            deletion_protection: true,
        }
    }

    #[test]
    fn capacities_are_attributes_only_when_provisioned() {
        let common = |mode: &str| {
            attrs([
                ("name", Value::s("employees")),
                ("partition_key", Value::s("id:S")),
                ("sort_key", Value::s("")),
                ("billing_mode", Value::s(mode)),
                ("point_in_time_recovery", Value::Bool(true)),
                ("deletion_protection", Value::Bool(true)),
            ])
        };
        let on_demand = table(None);
        assert_eq!(to_attrs(&on_demand), common("PAY_PER_REQUEST"));
        let provisioned = table(Some((5, 2)));
        let mut want = common("PROVISIONED");
        want.insert("read_capacity".into(), Value::Int(5));
        want.insert("write_capacity".into(), Value::Int(2));
        assert_eq!(to_attrs(&provisioned), want);
        assert_eq!(from_attrs::<TableAttrs>(&want).unwrap(), provisioned);
        assert_eq!(
            from_attrs::<TableAttrs>(&common("PAY_PER_REQUEST")).unwrap(),
            on_demand
        );
    }
}
