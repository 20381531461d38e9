//! One Auto Scaling group per service, across all subnets, registered with its target
//! group, health-checked by the load balancer. Creation waits until the instances are
//! in service and their targets healthy.
//!
//! Two attributes live in tags, because AWS's own value moves on its own:
//! `desired_capacity` is what the stack file last asked for (target tracking changes the
//! group's live number, and `up` must not fight it), and `launch_template_digest` says
//! which template content the fleet was rolled to.

use super::roll::{self, TemplateRef};
use super::{
    Created, Ctx, attr_i64, attr_list, attr_str, changed, launch_template, scaling_policy,
};
use crate::aws::{Clients, Context, Error, Patience, retry_when, wait_for};
use crate::desired::Build;
use crate::model::{Address, Attrs, Live, TAG_STACK, Value, owned_address};
use crate::model::{Desired, Kind, attrs};
use crate::spec::DeploySpec;
use crate::spec::ServiceSpec;
use aws_sdk_autoscaling::types::{AutoScalingGroup, Filter, LaunchTemplateSpecification, Tag};
use aws_sdk_elasticloadbalancingv2::types::TargetHealthDescription;
use std::collections::BTreeMap;
use std::time::Duration;

pub const FORCE_NEW: &[&str] = &["name"];

/// A service's group, on its template, in its target group.
pub fn desired(b: &Build, svc: &ServiceSpec) -> Desired {
    let (stack, name) = (&b.spec.stack, &svc.name);
    let digest = launch_template::boot(b, svc).digest;
    let sc = &svc.scaling;
    let mut group = attrs([
        ("name", Value::s(format!("{stack}-{name}"))),
        (
            "launch_template_id",
            Value::r(&crate::desired::service(Kind::LaunchTemplate, name)),
        ),
        ("launch_template_digest", Value::s(&digest[..16])),
        ("min_size", Value::Int(sc.min.into())),
        ("max_size", Value::Int(sc.max.into())),
        ("desired_capacity", Value::Int(sc.desired.into())),
        ("subnet_ids", Value::List(b.instance_subnets.clone())),
        (
            "target_group_arns",
            Value::List(vec![Value::r(&crate::desired::service(
                Kind::TargetGroup,
                name,
            ))]),
        ),
        ("health_check_type", Value::s("ELB")),
        (
            "health_check_grace_period",
            Value::Int(svc.health.grace_period.into()),
        ),
        // How a new template rolls the group (a tag; sent with each refresh).
        ("deploy", Value::s(svc.deploy.render())),
    ]);
    // The app build the fleet was rolled to (a tag; `stack rollback` goes back to
    // the one before). Stacks that ship no app have none.
    if let Some(key) = crate::desired::build_key(b.inputs, name) {
        group.insert("build".into(), Value::s(key));
    }
    Desired::new(crate::desired::service(Kind::AutoScalingGroup, name), group)
}

const TAG_DESIRED: &str = "stack:desired-capacity";
const TAG_DIGEST: &str = "stack:launch-template-digest";
/// The roll preferences the group was last given (`deploy:` in the file).
const TAG_DEPLOY: &str = "stack:deploy";
/// The app build (artifact key) the fleet was rolled to, and the one before it.
const TAG_BUILD: &str = "stack:build";
const TAG_PREVIOUS_BUILD: &str = "stack:previous-build";

/// Groups and their scaling policies: one tag-filtered list, one policy list.
pub async fn discover_with_policies(c: &Clients, stack: &str) -> Result<Vec<Live>, Error> {
    let mut groups = Vec::new();
    let mut pages = c
        .asg
        .describe_auto_scaling_groups()
        .filters(
            Filter::builder()
                .name(format!("tag:{TAG_STACK}"))
                .values(stack)
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for g in page
            .ctx("listing", &"Auto Scaling groups")?
            .auto_scaling_groups()
        {
            let tags = g
                .tags()
                .iter()
                .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()));
            if let Some(address) = owned_address(stack, tags) {
                groups.push(live(address, g));
            }
        }
    }
    if groups.is_empty() {
        return Ok(groups);
    }
    let names: BTreeMap<String, String> = groups
        .iter()
        .map(|g| (g.id.clone(), g.address.name.clone()))
        .collect();
    let policies = scaling_policy::discover(c, &names).await?;
    groups.extend(policies);
    Ok(groups)
}

fn live(address: Address, g: &AutoScalingGroup) -> Live {
    let tag = |k: &str| {
        g.tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    let desired = tag(TAG_DESIRED)
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(g.desired_capacity().unwrap_or_default().into());
    let subnets: Vec<String> = g
        .vpc_zone_identifier()
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let lt = g
        .launch_template()
        .and_then(|l| l.launch_template_id())
        .unwrap_or_default();
    let attrs = Attrs::from([
        (
            "name".into(),
            Value::s(g.auto_scaling_group_name().unwrap_or_default()),
        ),
        ("launch_template_id".into(), Value::s(lt)),
        (
            "launch_template_digest".into(),
            Value::s(tag(TAG_DIGEST).unwrap_or_default()),
        ),
        (
            "deploy".into(),
            Value::s(tag(TAG_DEPLOY).unwrap_or_default()),
        ),
        ("build".into(), Value::s(tag(TAG_BUILD).unwrap_or_default())),
        (
            "min_size".into(),
            Value::Int(g.min_size().unwrap_or_default().into()),
        ),
        (
            "max_size".into(),
            Value::Int(g.max_size().unwrap_or_default().into()),
        ),
        ("desired_capacity".into(), Value::Int(desired)),
        ("subnet_ids".into(), Value::strs(subnets)),
        (
            "target_group_arns".into(),
            Value::strs(g.target_group_arns().iter().cloned()),
        ),
        (
            "health_check_type".into(),
            Value::s(g.health_check_type().unwrap_or_default()),
        ),
        (
            "health_check_grace_period".into(),
            Value::Int(g.health_check_grace_period().unwrap_or_default().into()),
        ),
    ]);
    let in_service = g
        .instances()
        .iter()
        .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
        .count();
    let extra = BTreeMap::from([
        ("instances_in_service".to_string(), in_service.to_string()),
        (
            "actual_desired_capacity".to_string(),
            g.desired_capacity().unwrap_or_default().to_string(),
        ),
        (
            "launch_template_version".to_string(),
            g.launch_template()
                .and_then(|l| l.version())
                .unwrap_or_default()
                .to_string(),
        ),
        (
            "previous_build".to_string(),
            tag(TAG_PREVIOUS_BUILD).unwrap_or_default(),
        ),
        (
            "launch_template_name".to_string(),
            g.launch_template()
                .and_then(|l| l.launch_template_name())
                .unwrap_or_default()
                .to_string(),
        ),
    ]);
    Live {
        id: g.auto_scaling_group_name().unwrap_or_default().to_string(),
        address,
        attrs,
        extra,
    }
}

fn tags(ctx: &Ctx, a: &Address, attrs: &Attrs, previous_build: Option<&str>) -> Vec<Tag> {
    let name = attr_str(attrs, "name");
    let mut pairs = ctx.tags(a);
    pairs.push((TAG_BUILD.into(), attr_str(attrs, "build").to_string()));
    if let Some(p) = previous_build {
        pairs.push((TAG_PREVIOUS_BUILD.into(), p.to_string()));
    }
    pairs.push((
        TAG_DESIRED.into(),
        attr_i64(attrs, "desired_capacity").to_string(),
    ));
    pairs.push((
        TAG_DIGEST.into(),
        attr_str(attrs, "launch_template_digest").to_string(),
    ));
    pairs.push((TAG_DEPLOY.into(), attr_str(attrs, "deploy").to_string()));
    pairs
        .into_iter()
        .map(|(k, v)| {
            // Ownership tags go onto the instances too; the bookkeeping tags stay on the group.
            let propagate =
                !k.starts_with("stack:") || k == TAG_STACK || k == crate::model::TAG_ADDRESS;
            Tag::builder()
                .resource_id(name)
                .resource_type("auto-scaling-group")
                .key(k)
                .value(v)
                .propagate_at_launch(propagate)
                .build()
        })
        .collect()
}

/// A launch template or instance profile made seconds ago can be "invalid" to Auto
/// Scaling until EC2 and IAM catch up. AWS gives this no code of its own (it is a
/// `ValidationError`), so the message tells it from a real mistake in the request.
fn fresh_dependency_not_visible(e: &Error) -> bool {
    match e {
        Error::Aws { code, message, .. } if code == "ValidationError" => {
            let m = message.to_ascii_lowercase();
            m.contains("launch template")
                || m.contains("instance profile")
                || m.contains("iaminstanceprofile")
        }
        _ => false,
    }
}

pub async fn create(ctx: &Ctx, a: &Address, attrs: &Attrs) -> Result<Created, Error> {
    let name = attr_str(attrs, "name").to_string();
    retry_when(fresh_dependency_not_visible, Patience::FRESH_ID, || async {
        ctx.c
            .asg
            .create_auto_scaling_group()
            .auto_scaling_group_name(&name)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(attr_str(attrs, "launch_template_id"))
                    .version(launch_template::VERSION)
                    .build(),
            )
            .min_size(attr_i64(attrs, "min_size") as i32)
            .max_size(attr_i64(attrs, "max_size") as i32)
            .desired_capacity(attr_i64(attrs, "desired_capacity") as i32)
            .vpc_zone_identifier(attr_list(attrs, "subnet_ids").join(","))
            .set_target_group_arns(Some(attr_list(attrs, "target_group_arns")))
            .health_check_type(attr_str(attrs, "health_check_type"))
            .health_check_grace_period(attr_i64(attrs, "health_check_grace_period") as i32)
            .set_tags(Some(tags(ctx, a, attrs, None)))
            .send()
            .await
            .ctx("creating", a)
    })
    .await?;
    wait_ready(ctx, a, &name, attrs).await?;
    Ok((name, Default::default()))
}

/// The targets of a target group with their health.
pub(super) async fn target_health(
    c: &Clients,
    tg: &str,
    a: &Address,
) -> Result<Vec<TargetHealthDescription>, Error> {
    let h = c
        .elb
        .describe_target_health()
        .target_group_arn(tg)
        .send()
        .await
        .ctx("reading target health for", a)?;
    Ok(h.target_health_descriptions().to_vec())
}

pub(super) fn is_healthy(d: &TargetHealthDescription) -> bool {
    d.target_health()
        .and_then(|t| t.state())
        .map(|s| s.as_str())
        == Some("healthy")
}

/// In service and healthy behind the load balancer: what "the app answers" means per group.
async fn wait_ready(ctx: &Ctx, a: &Address, name: &str, attrs: &Attrs) -> Result<(), Error> {
    let want = attr_i64(attrs, "desired_capacity").max(attr_i64(attrs, "min_size")) as usize;
    if want == 0 {
        return Ok(());
    }
    let tgs = attr_list(attrs, "target_group_arns");
    wait_for(
        a,
        "instances to pass health checks",
        ctx.ready_timeout,
        || async {
            let r = ctx
                .c
                .asg
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(name)
                .send()
                .await
                .ctx("reading", a)?;
            let Some(g) = r.auto_scaling_groups().first() else {
                return Ok(None);
            };
            let ids: Vec<String> = g
                .instances()
                .iter()
                .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
                .filter_map(|i| i.instance_id().map(str::to_string))
                .collect();
            if ids.len() < want {
                ctx.report(a, format!("{}/{want} instances in service", ids.len()));
                return Ok(None);
            }
            for tg in &tgs {
                let healthy = target_health(&ctx.c, tg, a)
                    .await?
                    .iter()
                    .filter(|d| {
                        d.target()
                            .and_then(|t| t.id())
                            .is_some_and(|id| ids.iter().any(|i| i == id))
                    })
                    .filter(|d| is_healthy(d))
                    .count();
                if healthy < want {
                    ctx.report(a, format!("{healthy}/{want} targets healthy"));
                    return Ok(None);
                }
            }
            ctx.report(a, format!("{want}/{want} instances healthy"));
            Ok(Some(()))
        },
    )
    .await
}

/// One look at the groups' target health: per target group with fewer healthy targets
/// than the group's desired capacity, a line with the count and AWS's reason.
async fn unhealthy(c: &Clients, groups: &[&Live]) -> Result<Vec<String>, Error> {
    let mut found = Vec::new();
    for g in groups {
        let want: usize = g
            .extra
            .get("actual_desired_capacity")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        for tg in attr_list(&g.attrs, "target_group_arns") {
            let targets = target_health(c, &tg, &g.address).await?;
            let healthy = targets.iter().filter(|d| is_healthy(d)).count();
            if healthy < want {
                let why = targets
                    .iter()
                    .filter_map(|d| d.target_health())
                    .find(|t| t.reason().is_some())
                    .map(|t| {
                        format!(
                            ": {}: {}",
                            t.reason().map(|r| r.as_str()).unwrap_or_default(),
                            t.description().unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                found.push(format!(
                    "{} ({}): {healthy}/{want} targets healthy{why}",
                    g.address, g.id
                ));
            }
        }
    }
    Ok(found)
}

/// What `plan` warns about: the live groups whose targets are not all healthy now.
/// Groups the plan replaces or removes are left out.
pub async fn health_warnings(
    c: &Clients,
    live: &BTreeMap<Address, Live>,
    leaving: &[&Address],
) -> Result<Vec<String>, Error> {
    let groups: Vec<&Live> = live
        .values()
        .filter(|l| {
            l.address.kind == crate::model::Kind::AutoScalingGroup && !leaving.contains(&&l.address)
        })
        .collect();
    unhealthy(c, &groups).await
}

/// After every `up`: each group's targets healthy behind the load balancer, within
/// `timeout`. When they are not, the error names, per target group, how many are
/// healthy and AWS's reason and description, and where to look.
pub async fn wait_all_healthy(
    c: &Clients,
    live: &BTreeMap<Address, Live>,
    timeout: Duration,
    progress: &(dyn Fn(String) + Sync),
) -> Result<(), Error> {
    let groups: Vec<&Live> = live
        .values()
        .filter(|l| l.address.kind == crate::model::Kind::AutoScalingGroup)
        .collect();
    if groups.is_empty() {
        return Ok(());
    }
    let last = std::sync::Mutex::new(Vec::<String>::new());
    let waited = wait_for(
        &"the stack's services",
        "every target to pass its health check",
        timeout,
        || async {
            let found = unhealthy(c, &groups).await?;
            let all_healthy = found.is_empty();
            if !all_healthy {
                progress(found.join("; "));
            }
            *last.lock().unwrap_or_else(|e| e.into_inner()) = found;
            Ok(all_healthy.then_some(()))
        },
    )
    .await;
    match waited {
        Err(Error::Timeout { after, .. }) => Err(Error::Refused {
            resource: "the stack's services".into(),
            reason: format!(
                "not every target passed its health check after {}s: {}. Look at the boot log on an instance (/var/log/stack-userdata.log, through Session Manager) and run `stack status`",
                after.as_secs(),
                last.lock().unwrap_or_else(|e| e.into_inner()).join("; ")
            ),
        }),
        other => other,
    }
}

pub async fn update(
    ctx: &Ctx,
    live: &Live,
    attrs: &Attrs,
    changes: &[String],
) -> Result<(), Error> {
    let a = &live.address;
    let name = &live.id;
    let wanted = TemplateRef {
        id: attr_str(attrs, "launch_template_id").to_string(),
        version: launch_template::VERSION.to_string(),
    };
    // A group whose fleet was rolled before (its digest is recorded) rolls onto a new
    // template; until the roll succeeds it keeps its current one, at a numbered
    // version (an older group may name `$Default`): AWS rolls back only to that.
    let rolls = (changed(changes, "launch_template_digest")
        || changed(changes, "launch_template_id"))
        && !attr_str(&live.attrs, "launch_template_digest").is_empty();
    let current = if rolls {
        let id = attr_str(&live.attrs, "launch_template_id").to_string();
        let version = match live.extra.get("launch_template_version") {
            Some(v) if v.parse::<u64>().is_ok() => v.clone(),
            _ => launch_template::default_version(ctx, a, &id).await?,
        };
        TemplateRef { id, version }
    } else {
        wanted.clone()
    };
    let mut call = ctx
        .c
        .asg
        .update_auto_scaling_group()
        .auto_scaling_group_name(name)
        .min_size(attr_i64(attrs, "min_size") as i32)
        .max_size(attr_i64(attrs, "max_size") as i32)
        .vpc_zone_identifier(attr_list(attrs, "subnet_ids").join(","))
        .health_check_type(attr_str(attrs, "health_check_type"))
        .health_check_grace_period(attr_i64(attrs, "health_check_grace_period") as i32)
        .launch_template(current.spec());
    if changed(changes, "desired_capacity") {
        call = call.desired_capacity(attr_i64(attrs, "desired_capacity") as i32);
    }
    call.send().await.ctx("updating", a)?;
    if changed(changes, "target_group_arns") {
        let want = attr_list(attrs, "target_group_arns");
        let have = attr_list(&live.attrs, "target_group_arns");
        let gone: Vec<String> = have.iter().filter(|t| !want.contains(t)).cloned().collect();
        let added: Vec<String> = want.iter().filter(|t| !have.contains(t)).cloned().collect();
        if !added.is_empty() {
            ctx.c
                .asg
                .attach_load_balancer_target_groups()
                .auto_scaling_group_name(name)
                .set_target_group_arns(Some(added))
                .send()
                .await
                .ctx("attaching target groups to", a)?;
        }
        if !gone.is_empty() {
            ctx.c
                .asg
                .detach_load_balancer_target_groups()
                .auto_scaling_group_name(name)
                .set_target_group_arns(Some(gone))
                .send()
                .await
                .ctx("detaching target groups from", a)?;
        }
    }
    // The template digest is what the fleet was rolled to: it changes only once the
    // roll succeeded, so a roll that failed or was interrupted stays in the next plan.
    let mut before_roll = attrs.clone();
    if rolls {
        for pending in ["launch_template_digest", "build"] {
            before_roll.insert(pending.into(), Value::s(attr_str(&live.attrs, pending)));
        }
    }
    set_tags(ctx, a, &before_roll, None).await?;
    if rolls {
        let grace = attr_i64(attrs, "health_check_grace_period") as u32;
        let prefs = DeploySpec::parse(attr_str(attrs, "deploy")).unwrap_or(DeploySpec {
            min_healthy: 100,
            max_healthy: 200,
            warmup: grace,
            bake: 0,
        });
        roll::roll(ctx, a, name, prefs, &wanted).await?;
        // The build rolled away from is what `stack rollback` puts back.
        let old_build = attr_str(&live.attrs, "build");
        let previous =
            (!old_build.is_empty() && old_build != attr_str(attrs, "build")).then_some(old_build);
        set_tags(ctx, a, attrs, previous).await?;
    }
    Ok(())
}

async fn set_tags(
    ctx: &Ctx,
    a: &Address,
    attrs: &Attrs,
    previous_build: Option<&str>,
) -> Result<(), Error> {
    ctx.c
        .asg
        .create_or_update_tags()
        .set_tags(Some(tags(ctx, a, attrs, previous_build)))
        .send()
        .await
        .ctx("tagging", a)
        .map(drop)
}

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    let a = &live.address;
    match ctx
        .c
        .asg
        .delete_auto_scaling_group()
        .auto_scaling_group_name(&live.id)
        .force_delete(true)
        .send()
        .await
        .ctx("deleting", a)
    {
        Err(e) if e.is_code(&["ValidationError"]) => return Ok(()),
        other => other.map(drop)?,
    }
    ctx.report(a, "waiting for instances to terminate");
    wait_for(
        a,
        "the group and its instances to be deleted",
        Duration::from_secs(900),
        || async {
            let r = ctx
                .c
                .asg
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(&live.id)
                .send()
                .await
                .ctx("reading", a)?;
            Ok(r.auto_scaling_groups().is_empty().then_some(()))
        },
    )
    .await
}
