//! Rolling an Auto Scaling group onto a new launch template without a drop in
//! capacity, and waiting until it is done.
//!
//! On AWS: an instance refresh with the new template as its `DesiredConfiguration`
//! (a numbered version: the group's own is pinned too, which auto rollback needs),
//! launching before it terminates (MinHealthyPercentage 100, MaxHealthyPercentage
//! 200), warming each instance up for the group's grace period, skipping instances
//! that already match, rolling back by itself when it fails. `up` waits for it:
//! `Successful` ends the step; `Failed`, `Cancelled`, `RollbackSuccessful` and
//! `RollbackFailed` fail it with AWS's reason. A refresh already running (a killed
//! run, another tool) is cancelled and waited out first. The caller records the new
//! template digest only after this returns, so a roll that did not finish stays
//! pending in the next plan.
//!
//! Endpoints without instance refresh (moto answers an error page): the group is
//! rolled here, in batches within the same healthy limits. Launch before terminate
//! raises the desired capacity by a batch, waits until the new instances are in
//! service and healthy, then terminates as many old ones, decrementing. The size the
//! roll returns to is kept in a tag, so an interrupted roll resumes with it.

use super::Ctx;
use crate::aws::{Context, Error, Patience, retry_codes, wait_for};
use crate::model::Address;
use crate::spec::DeploySpec;
use aws_sdk_autoscaling::types::{
    DesiredConfiguration, InstanceRefreshStatus, LaunchTemplateSpecification, RefreshPreferences,
    Tag,
};
use futures_util::FutureExt;
use std::collections::BTreeSet;

/// A launch template at a numbered version: what a group runs or rolls onto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRef {
    pub id: String,
    pub version: String,
}

impl TemplateRef {
    pub fn spec(&self) -> LaunchTemplateSpecification {
        LaunchTemplateSpecification::builder()
            .launch_template_id(&self.id)
            .version(&self.version)
            .build()
    }
}

/// The size an interrupted roll by hand returns to (empty when none is running).
const TAG_ROLL_CAPACITY: &str = "stack:roll-capacity";
/// Auto Scaling's answers while a launch or another change of the group is under way.
const BUSY: &[&str] = &["ScalingActivityInProgress", "ResourceContention"];
/// The tag AWS puts on every instance launched from a template: which one it was.
const TAG_INSTANCE_TEMPLATE: &str = "aws:ec2launchtemplate:id";

/// Instance refresh states that are still going.
fn running(s: &InstanceRefreshStatus) -> bool {
    matches!(
        s,
        InstanceRefreshStatus::Pending
            | InstanceRefreshStatus::InProgress
            | InstanceRefreshStatus::Cancelling
            | InstanceRefreshStatus::RollbackInProgress
            | InstanceRefreshStatus::Baking
    )
}

/// Whether the endpoint lacks instance refresh: an emulator answering an error page
/// (never AWS, which always answers with a code).
fn missing_at_emulator(ctx: &Ctx, e: &Error) -> bool {
    ctx.c.endpoint_url.is_some()
        && e.is_code(&[
            "UnknownError",
            "ResponseError",
            "InternalFailure",
            "NotImplemented",
        ])
}

/// Rolls `name` onto `to` with the file's `deploy:` preferences (launch before
/// terminate unless it says otherwise). When this returns, the group's own template
/// is `to`.
pub async fn roll(
    ctx: &Ctx,
    a: &Address,
    name: &str,
    prefs: DeploySpec,
    to: &TemplateRef,
) -> Result<(), Error> {
    let id = match start(ctx, a, name, prefs, to).await {
        Ok(id) => id,
        Err(e) if e.is_code(&["InstanceRefreshInProgress"]) => {
            ctx.report(
                a,
                "an instance refresh is already running (an earlier run or another tool): cancelling it first",
            );
            cancel(ctx, a, name).await?;
            start(ctx, a, name, prefs, to).await?
        }
        Err(e) if missing_at_emulator(ctx, &e) => {
            ctx.report(
                a,
                format!(
                    "instance refresh unavailable at this endpoint ({}): rolling the group here instead",
                    e.kind_code()
                ),
            );
            return by_hand(ctx, a, name, prefs, to).await;
        }
        Err(e) => return Err(e),
    };
    ctx.report(a, "rolling through an instance refresh (auto rollback on)");
    wait(ctx, a, name, &id).await?;
    // AWS has moved the group onto the desired configuration; saying it again is a
    // no-op there and makes the end state explicit.
    set_template(ctx, a, name, to).await
}

/// Points the group at `to`: instances launched from now on use it.
pub async fn set_template(
    ctx: &Ctx,
    a: &Address,
    name: &str,
    to: &TemplateRef,
) -> Result<(), Error> {
    ctx.c
        .asg
        .update_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_template(to.spec())
        .send()
        .await
        .ctx("setting the launch template of", a)
        .map(drop)
}

async fn start(
    ctx: &Ctx,
    a: &Address,
    name: &str,
    prefs: DeploySpec,
    to: &TemplateRef,
) -> Result<String, Error> {
    let call = ctx
        .c
        .asg
        .start_instance_refresh()
        .auto_scaling_group_name(name)
        // The group changes to this only once the refresh succeeds; a failed one
        // leaves it on its current (numbered) version, which AWS rolls back to.
        .desired_configuration(
            DesiredConfiguration::builder()
                .launch_template(to.spec())
                .build(),
        )
        .preferences(
            RefreshPreferences::builder()
                // By default launch before terminate: a group of one never goes to zero.
                .min_healthy_percentage(prefs.min_healthy as i32)
                .max_healthy_percentage(prefs.max_healthy as i32)
                .instance_warmup(prefs.warmup as i32)
                .bake_time(prefs.bake as i32)
                .skip_matching(true)
                .auto_rollback(true)
                .build(),
        );
    // Emulators answer an operation they lack with an error page (HTTP 500), which
    // the SDK would retry as transient for half a minute: ask them once.
    let r = if ctx.c.endpoint_url.is_some() {
        call.customize()
            .config_override(
                aws_sdk_autoscaling::config::Builder::new()
                    .retry_config(aws_config::retry::RetryConfig::disabled()),
            )
            .send()
            .await
    } else {
        call.send().await
    }
    .ctx("starting an instance refresh of", a)?;
    Ok(r.instance_refresh_id().unwrap_or_default().to_string())
}

/// Cancels the refresh in progress and waits until none is running.
async fn cancel(ctx: &Ctx, a: &Address, name: &str) -> Result<(), Error> {
    match ctx
        .c
        .asg
        .cancel_instance_refresh()
        .auto_scaling_group_name(name)
        .send()
        .await
        .ctx("cancelling the instance refresh of", a)
    {
        // It ended meanwhile.
        Err(e) if e.is_code(&["ActiveInstanceRefreshNotFound"]) => {}
        other => other.map(drop)?,
    }
    wait_for(
        a,
        "the running instance refresh to stop",
        ctx.ready_timeout,
        || async {
            let r = ctx
                .c
                .asg
                .describe_instance_refreshes()
                .auto_scaling_group_name(name)
                .send()
                .await
                .ctx("reading the instance refreshes of", a)?;
            let busy = r
                .instance_refreshes()
                .iter()
                .any(|i| i.status().is_some_and(running));
            Ok((!busy).then_some(()))
        },
    )
    .await
}

/// Waits for refresh `id` to end; fails with AWS's reason unless it succeeded.
async fn wait(ctx: &Ctx, a: &Address, name: &str, id: &str) -> Result<(), Error> {
    let outcome = wait_for(a, "the instance refresh", ctx.ready_timeout, || async {
        let r = ctx
            .c
            .asg
            .describe_instance_refreshes()
            .auto_scaling_group_name(name)
            .instance_refresh_ids(id)
            .send()
            .await
            .ctx("reading the instance refresh of", a)?;
        let Some(refresh) = r.instance_refreshes().first() else {
            return Ok(None);
        };
        let status = refresh
            .status()
            .cloned()
            .unwrap_or(InstanceRefreshStatus::Pending);
        if running(&status) {
            ctx.report(
                a,
                format!(
                    "instance refresh {}: {}% done, {} instance(s) left to replace",
                    status.as_str(),
                    refresh.percentage_complete().unwrap_or(0),
                    refresh.instances_to_update().unwrap_or(0)
                ),
            );
            return Ok(None);
        }
        Ok(Some((
            status,
            refresh.status_reason().unwrap_or_default().to_string(),
        )))
    })
    .await?;
    match outcome {
        (InstanceRefreshStatus::Successful, _) => {
            ctx.report(
                a,
                "instance refresh successful: every instance runs the new template",
            );
            Ok(())
        }
        (status, reason) => Err(Error::Aws {
            detail: None,
            action: "rolling".into(),
            resource: a.to_string(),
            code: format!("InstanceRefresh{}", status.as_str()),
            message: format!(
                "{}{}the group keeps running the previous template; the next `up` tries again",
                reason,
                if reason.is_empty() { "" } else { "; " }
            ),
        }),
    }
}

/// An instance of the group, with the template it was launched from.
struct Member {
    id: String,
    in_service: bool,
    template: String,
}

/// What a roll by hand reads of the group each round.
struct Group {
    desired: i32,
    max: i32,
    target_groups: Vec<String>,
    roll_capacity: Option<i32>,
    members: Vec<Member>,
}

impl Group {
    fn on(&self, t: &TemplateRef) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(move |m| m.template == t.id)
    }
    fn off(&self, t: &TemplateRef) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.template != t.id)
            .map(|m| m.id.clone())
            .collect()
    }
}

/// Which launch template each of `ids` was launched from, by the tag AWS puts on
/// every such instance: a group's own instance list reports its current template for
/// every instance on moto. A filter, not InstanceIds, so an id not yet visible is no
/// error; at most 200 values per filter.
pub async fn instance_templates(
    c: &crate::aws::Clients,
    ids: &[String],
    of: &(dyn std::fmt::Display + Sync),
) -> Result<std::collections::BTreeMap<String, String>, Error> {
    let mut out = std::collections::BTreeMap::new();
    for chunk in ids.chunks(200) {
        let r = c
            .ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("instance-id")
                    .set_values(Some(chunk.to_vec()))
                    .build(),
            )
            .send()
            .await
            .ctx("reading the instances of", of)?;
        for i in r.reservations().iter().flat_map(|r| r.instances()) {
            if let Some(t) = i
                .tags()
                .iter()
                .find(|t| t.key() == Some(TAG_INSTANCE_TEMPLATE))
                .and_then(|t| t.value())
            {
                out.insert(
                    i.instance_id().unwrap_or_default().to_string(),
                    t.to_string(),
                );
            }
        }
    }
    Ok(out)
}

async fn read_group(ctx: &Ctx, a: &Address, name: &str) -> Result<Group, Error> {
    let r = ctx
        .c
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .ctx("reading", a)?;
    let Some(g) = r.auto_scaling_groups().first() else {
        return Err(Error::Refused {
            resource: a.to_string(),
            reason: "the group disappeared during the roll".into(),
        });
    };
    let mut members: Vec<Member> = g
        .instances()
        .iter()
        .filter(|i| {
            !i.lifecycle_state()
                .is_some_and(|s| s.as_str().starts_with("Terminat"))
        })
        .map(|i| Member {
            id: i.instance_id().unwrap_or_default().to_string(),
            in_service: i.lifecycle_state().map(|s| s.as_str()) == Some("InService"),
            template: String::new(),
        })
        .collect();
    let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
    let templates = instance_templates(&ctx.c, &ids, a).await?;
    for m in &mut members {
        m.template = templates.get(&m.id).cloned().unwrap_or_default();
    }
    let roll_capacity = g
        .tags()
        .iter()
        .find(|t| t.key() == Some(TAG_ROLL_CAPACITY))
        .and_then(|t| t.value())
        .and_then(|v| v.parse().ok());
    Ok(Group {
        desired: g.desired_capacity().unwrap_or_default(),
        max: g.max_size().unwrap_or_default(),
        target_groups: g.target_group_arns().to_vec(),
        roll_capacity,
        members,
    })
}

/// Instances on `to`, in service and healthy in every target group of the group.
async fn healthy_on(ctx: &Ctx, a: &Address, g: &Group, to: &TemplateRef) -> Result<usize, Error> {
    let mut healthy: BTreeSet<&str> = g
        .on(to)
        .filter(|m| m.in_service)
        .map(|m| m.id.as_str())
        .collect();
    for tg in &g.target_groups {
        let ok: BTreeSet<String> = super::asg::target_health(&ctx.c, tg, a)
            .await?
            .iter()
            .filter(|d| super::asg::is_healthy(d))
            .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_string))
            .collect();
        healthy.retain(|id| ok.contains(*id));
    }
    Ok(healthy.len())
}

async fn tag_roll_capacity(ctx: &Ctx, a: &Address, name: &str, value: &str) -> Result<(), Error> {
    ctx.c
        .asg
        .create_or_update_tags()
        .tags(
            Tag::builder()
                .resource_id(name)
                .resource_type("auto-scaling-group")
                .key(TAG_ROLL_CAPACITY)
                .value(value)
                .propagate_at_launch(false)
                .build(),
        )
        .send()
        .await
        .ctx("tagging", a)
        .map(drop)
}

/// The roll an instance refresh would do, done here: batches within the healthy
/// limits, launch before terminate by default.
async fn by_hand(
    ctx: &Ctx,
    a: &Address,
    name: &str,
    prefs: DeploySpec,
    to: &TemplateRef,
) -> Result<(), Error> {
    set_template(ctx, a, name, to).await?;
    let start = read_group(ctx, a, name).await?;
    let target = start.roll_capacity.unwrap_or(start.desired);
    if start.roll_capacity.is_none() {
        tag_roll_capacity(ctx, a, name, &target.to_string()).await?;
    }
    let before = start.off(to);
    let launch_first = prefs.max_healthy > 100;
    let share = |pct: u32| ((target.max(0) as u32 * pct) / 100).max(1) as usize;
    let batch_of = if launch_first {
        share(prefs.max_healthy - 100)
    } else {
        share(100 - prefs.min_healthy.min(100))
    };
    ctx.report(
        a,
        format!(
            "rolling {} instance(s) here, {} at a time ({})",
            before.len(),
            batch_of,
            if launch_first {
                "launch before terminate"
            } else {
                "terminate, then launch"
            }
        ),
    );
    let mut raised = false;
    loop {
        let g = read_group(ctx, a, name).await?;
        let old = g.off(to);
        if old.is_empty() {
            break;
        }
        let batch: Vec<String> = old.iter().take(batch_of).cloned().collect();
        if launch_first {
            let size = target + batch.len() as i32;
            let mut call = ctx
                .c
                .asg
                .update_auto_scaling_group()
                .auto_scaling_group_name(name)
                .desired_capacity(size);
            if size > g.max {
                // Above the group's maximum for the length of one batch, as an
                // instance refresh with MaxHealthyPercentage over 100 goes.
                call = call.max_size(size);
                raised = true;
            }
            retry_codes(BUSY, Patience::FRESH_ID, || {
                call.clone()
                    .send()
                    .map(|r| r.ctx("raising the capacity of", a))
            })
            .await?;
            let want = (size as usize).saturating_sub(old.len());
            wait_for(
                a,
                "new instances to pass health checks",
                ctx.ready_timeout,
                || async {
                    let g = read_group(ctx, a, name).await?;
                    let n = healthy_on(ctx, a, &g, to).await?;
                    ctx.report(a, format!("{n}/{want} new instances healthy"));
                    Ok((n >= want).then_some(()))
                },
            )
            .await?;
        }
        for id in &batch {
            retry_codes(BUSY, Patience::FRESH_ID, || {
                ctx.c
                    .asg
                    .terminate_instance_in_auto_scaling_group()
                    .instance_id(id)
                    // Launch first: the batch launched already, so the size comes
                    // back down. Terminate first: the group launches a replacement.
                    .should_decrement_desired_capacity(launch_first)
                    .send()
                    .map(|r| r.ctx("replacing an instance of", a))
            })
            .await?;
        }
        let want = (target as usize).saturating_sub(old.len() - batch.len());
        wait_for(a, "old instances to leave", ctx.ready_timeout, || async {
            let g = read_group(ctx, a, name).await?;
            let gone = g.members.iter().all(|m| !batch.contains(&m.id));
            let n = healthy_on(ctx, a, &g, to).await?;
            Ok((gone && n >= want).then_some(()))
        })
        .await?;
        ctx.report(
            a,
            format!(
                "replaced {}/{} instance(s)",
                before.len() - (old.len() - batch.len()),
                before.len()
            ),
        );
    }
    if raised {
        ctx.c
            .asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(name)
            .max_size(start.max.max(target))
            .send()
            .await
            .ctx("restoring the maximum size of", a)?;
    }
    tag_roll_capacity(ctx, a, name, "").await?;
    let after: Vec<String> = read_group(ctx, a, name)
        .await?
        .on(to)
        .map(|m| m.id.clone())
        .collect();
    ctx.report(
        a,
        format!(
            "rolled here: {} → {}",
            if before.is_empty() {
                "no instances".to_string()
            } else {
                before.join(", ")
            },
            after.join(", ")
        ),
    );
    Ok(())
}
