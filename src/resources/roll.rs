//! Rolling an Auto Scaling group onto a new launch template without a drop in
//! capacity, and waiting until it is done.
//!
//! On AWS: an instance refresh launching before it terminates (MinHealthyPercentage
//! 100, MaxHealthyPercentage 200), warming each instance up for the group's grace
//! period, skipping instances that already match. `up` waits for it: `Successful` ends
//! the step; `Failed`, `Cancelled`, `RollbackSuccessful` and `RollbackFailed` fail it
//! with AWS's reason. A refresh already running (a killed run, another tool) is
//! cancelled and waited out first. The caller records the new template digest only
//! after this returns, so a roll that did not finish stays pending in the next plan.
//!
//! Emulators without instance refresh (moto answers an error page) are told so once:
//! instances launched from now on use the new template, running ones keep the old.
//! (Rolling by hand there would need moto to launch from a template's second
//! version, which it cannot.)

use super::Ctx;
use crate::aws::{Context, Error, wait_for};
use crate::model::Address;
use crate::spec::DeploySpec;
use aws_sdk_autoscaling::types::{InstanceRefreshStatus, RefreshPreferences};

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

/// Rolls `name` onto its launch template's default version with the file's
/// `deploy:` preferences (launch before terminate unless it says otherwise).
pub async fn roll(ctx: &Ctx, a: &Address, name: &str, prefs: DeploySpec) -> Result<(), Error> {
    let id = match start(ctx, a, name, prefs).await {
        Ok(id) => id,
        Err(e) if e.is_code(&["InstanceRefreshInProgress"]) => {
            ctx.report(
                a,
                "an instance refresh is already running (an earlier run or another tool): cancelling it first",
            );
            cancel(ctx, a, name).await?;
            start(ctx, a, name, prefs).await?
        }
        Err(e) if missing_at_emulator(ctx, &e) => {
            ctx.report(
                a,
                format!(
                    "instance refresh unavailable at this endpoint ({}); new instances use the new template, running ones keep the old",
                    e.kind_code()
                ),
            );
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    wait(ctx, a, name, &id).await
}

async fn start(ctx: &Ctx, a: &Address, name: &str, prefs: DeploySpec) -> Result<String, Error> {
    let call = ctx
        .c
        .asg
        .start_instance_refresh()
        .auto_scaling_group_name(name)
        .preferences(
            RefreshPreferences::builder()
                // By default launch before terminate: a group of one never goes to zero.
                .min_healthy_percentage(prefs.min_healthy as i32)
                .max_healthy_percentage(prefs.max_healthy as i32)
                .instance_warmup(prefs.warmup as i32)
                .bake_time(prefs.bake as i32)
                .skip_matching(true)
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
