//! `stack up --local`: the stack served for real on this machine, against a local
//! emulator. The emulator holds the records (groups, their instances, the load
//! balancer's listeners and rules); a supervisor that outlives the command makes them
//! run:
//! - every instance the emulator lists for a group runs as a process tree started
//!   from its launch template's rendered user data ([`instance`]);
//! - HAProxy serves each listener on a local port, configured from the live ELBv2
//!   state and reloaded when it changes ([`haproxy`]);
//! - CPU target tracking scales the groups from their processes' CPU, writing the new
//!   desired capacity back to the emulator ([`scaling`]), which launches or
//!   terminates the instances the supervisor then boots or drains and stops;
//! - an instance whose app died is terminated in the emulator, which replaces it.
//!
//! Its files live under `~/.cache/stack/local/<stack>/`: `supervisor.pid`,
//! `supervisor.log`, `state.json` (what `status --local` prints), `haproxy.cfg`, and
//! one sandbox root per instance. Nothing here runs against a real AWS endpoint.

pub mod haproxy;
pub mod instance;
pub mod scaling;

use crate::aws::{Clients, Context, Error};
use crate::model::TAG_STACK;
use crate::spec::Spec;
use base64::Engine as _;
use haproxy::{Backend, Frontend, Haproxy};
use instance::Instance;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where a stack's local data plane keeps its files (`STACK_LOCAL_DIR/<stack>` when
/// that is set).
pub fn dir(stack: &str) -> PathBuf {
    if let Some(d) = std::env::var_os("STACK_LOCAL_DIR") {
        return PathBuf::from(d).join(stack);
    }
    let cache = std::env::var_os("STACK_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("stack")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/stack")))
        .unwrap_or_else(|| std::env::temp_dir().join("stack"));
    cache.join("local").join(stack)
}

/// The local port a listener is served on: its own plus `STACK_LOCAL_PORT_OFFSET`
/// (default 8000: port 80 is served on 8080).
pub fn local_port(listener_port: u16) -> u16 {
    let offset: u16 = std::env::var("STACK_LOCAL_PORT_OFFSET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8000);
    listener_port.saturating_add(offset)
}

/// What `status --local` shows, written by the supervisor on every round.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct State {
    pub supervisor_pid: u32,
    pub urls: Vec<String>,
    pub groups: Vec<GroupState>,
    pub instances: Vec<InstanceState>,
    /// HAProxy's view: backend → server → state (`UP`, `DOWN`, `DRAIN`, …).
    pub backends: BTreeMap<String, BTreeMap<String, String>>,
    /// The last problem met (a refused configuration, a failed call), if any.
    pub problem: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct GroupState {
    pub name: String,
    pub service: String,
    pub desired: i32,
    pub min: i32,
    pub max: i32,
    pub cpu_target: f64,
    pub average_cpu: f64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct InstanceState {
    pub id: String,
    pub service: String,
    pub zone: String,
    pub port: u16,
    pub pid: Option<u32>,
    /// `booting`, `running`, `crashed` (replacement asked for) or `draining`.
    pub state: String,
    pub cpu: f64,
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The running supervisor's pid, if any.
pub fn supervisor(stack: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir(stack).join("supervisor.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    pid_alive(pid).then_some(pid)
}

pub fn read_state(stack: &str) -> Option<State> {
    serde_json::from_slice(&std::fs::read(dir(stack).join("state.json")).ok()?).ok()
}

/// What `up --local` needs, checked before anything is written: an emulator on
/// this machine, HAProxy, and the AWS CLI the instances' user data fetches the app
/// with. Returns the endpoint.
pub fn preflight(endpoint: Option<&str>) -> Result<String, Error> {
    let endpoint = endpoint.unwrap_or(crate::aws::LOCAL_ENDPOINT).to_string();
    if !crate::aws::is_loopback(&endpoint) {
        return Err(Error::Config(format!(
            "`--local` serves the stack on this machine from a local emulator; {endpoint} is not one"
        )));
    }
    let runs = |program: &str, arg: &str| {
        std::process::Command::new(program)
            .arg(arg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !runs("haproxy", "-v") {
        return Err(Error::Config(
            "`up --local` serves the load balancer with HAProxy, which is not installed: `localstack/haproxy.sh` installs it (apt-get on Debian/Ubuntu); on macOS `brew install haproxy`".into(),
        ));
    }
    if !runs("aws", "--version") {
        return Err(Error::Config(
            "`up --local` boots instances from their user data, which fetches the app with the AWS CLI, and there is no `aws` on PATH: `localstack/moto.sh aws` installs one (put its directory on PATH)".into(),
        ));
    }
    Ok(endpoint)
}

/// Starts the supervisor for `file` unless one runs (it follows every change by
/// itself), then waits, within `timeout`, until every group's instances answer
/// behind HAProxy. Returns the local URLs.
pub async fn start(
    spec: &Spec,
    endpoint: &str,
    timeout: Duration,
    say: &(dyn Fn(String) + Sync),
) -> Result<Vec<String>, Error> {
    let d = dir(&spec.stack);
    std::fs::create_dir_all(&d).map_err(Error::io(format!("creating {}", d.display())))?;
    if let Some(pid) = supervisor(&spec.stack) {
        say(format!(
            "local data plane already running (pid {pid}); it follows the change"
        ));
    } else {
        let _ = std::fs::remove_file(d.join("state.json"));
        let log = std::fs::File::create(d.join("supervisor.log"))
            .map_err(Error::io("opening the supervisor log"))?;
        let exe = std::env::current_exe().map_err(|e| Error::Config(e.to_string()))?;
        use std::os::unix::process::CommandExt;
        let child = std::process::Command::new(exe)
            .arg("local-supervise")
            .arg(&spec.file)
            .env("AWS_ENDPOINT_URL", endpoint)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(|e| Error::Config(e.to_string()))?)
            .stderr(log)
            // Its own process group: Ctrl-C in this terminal does not reach it.
            .process_group(0)
            .spawn()
            .map_err(Error::io("starting the local supervisor"))?;
        std::fs::write(d.join("supervisor.pid"), child.id().to_string())
            .map_err(|e| Error::Config(e.to_string()))?;
        say(format!(
            "local data plane started (pid {}; log {})",
            child.id(),
            d.join("supervisor.log").display()
        ));
    }
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        if let Some(s) = read_state(&spec.stack) {
            let up = |svc: &str| {
                s.instances
                    .iter()
                    .filter(|i| i.service == svc && i.state == "running")
                    .filter(|i| {
                        s.backends
                            .values()
                            .any(|b| b.get(&i.id).is_some_and(|st| st == "UP"))
                    })
                    .count()
            };
            let waiting: Vec<String> = s
                .groups
                .iter()
                .filter(|g| (up(&g.service) as i32) < g.desired)
                .map(|g| format!("{} {}/{}", g.service, up(&g.service), g.desired))
                .collect();
            if waiting.is_empty() && !s.groups.is_empty() {
                return Ok(s.urls);
            }
            let now = format!(
                "waiting for local instances behind HAProxy: {}",
                waiting.join(", ")
            );
            if now != last {
                say(now.clone());
                last = now;
            }
        }
        if supervisor(&spec.stack).is_none() {
            return Err(Error::Config(format!(
                "the local supervisor stopped; see {}",
                d.join("supervisor.log").display()
            )));
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                resource: "the local data plane".into(),
                waiting_for: "instances to answer behind HAProxy".into(),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops the supervisor (it stops its instances and HAProxy) and anything a crashed
/// one left behind.
pub async fn stop(stack: &str, say: &(dyn Fn(String) + Sync)) -> Result<(), Error> {
    let d = dir(stack);
    if let Some(pid) = supervisor(stack) {
        haproxy::signal(pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        while pid_alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if pid_alive(pid) {
            haproxy::signal(pid, "KILL");
        }
        say(format!("local data plane stopped (pid {pid})"));
    }
    // Leftovers of a supervisor that did not exit cleanly.
    let mut pids = Vec::new();
    if let Ok(p) = std::fs::read_to_string(d.join("haproxy.pid")) {
        pids.extend(p.split_whitespace().filter_map(|v| v.parse::<u32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(d.join("instances")) {
        for e in entries.flatten() {
            if let Ok(p) = std::fs::read_to_string(e.path().join("root/run/stack-app.service.pid"))
                && let Ok(pid) = p.trim().parse::<u32>()
            {
                pids.push(pid);
            }
        }
    }
    for pid in pids.into_iter().filter(|p| pid_alive(*p)) {
        haproxy::signal(pid, "TERM");
    }
    let _ = std::fs::remove_dir_all(&d);
    Ok(())
}

/// A group as one round reads it.
struct Group {
    name: String,
    service: String,
    desired: i32,
    min: i32,
    max: i32,
    template: String,
    target_groups: Vec<String>,
    /// (instance id, zone, template id it came from).
    instances: Vec<(String, String, String)>,
}

async fn read_groups(c: &Clients, stack: &str) -> Result<Vec<Group>, Error> {
    let r = c
        .asg
        .describe_auto_scaling_groups()
        .filters(
            aws_sdk_autoscaling::types::Filter::builder()
                .name(format!("tag:{TAG_STACK}"))
                .values(stack)
                .build(),
        )
        .send()
        .await
        .ctx("listing", &"Auto Scaling groups")?;
    let mut groups = Vec::new();
    for g in r.auto_scaling_groups() {
        let name = g.auto_scaling_group_name().unwrap_or_default().to_string();
        let service = name
            .strip_prefix(&format!("{stack}-"))
            .unwrap_or(&name)
            .to_string();
        let instances = g
            .instances()
            .iter()
            .filter(|i| {
                matches!(
                    i.lifecycle_state().map(|s| s.as_str()),
                    Some("InService" | "Pending")
                )
            })
            .map(|i| {
                (
                    i.instance_id().unwrap_or_default().to_string(),
                    i.availability_zone().unwrap_or_default().to_string(),
                    String::new(),
                )
            })
            .collect();
        groups.push(Group {
            name,
            service,
            desired: g.desired_capacity().unwrap_or_default(),
            min: g.min_size().unwrap_or_default(),
            max: g.max_size().unwrap_or_default(),
            template: g
                .launch_template()
                .and_then(|t| t.launch_template_id())
                .unwrap_or_default()
                .to_string(),
            target_groups: g.target_group_arns().to_vec(),
            instances,
        });
    }
    // Which template each instance came from: during a roll the old instances keep
    // booting the old user data.
    let ids: Vec<String> = groups
        .iter()
        .flat_map(|g| g.instances.iter().map(|i| i.0.clone()))
        .collect();
    let templates = crate::resources::instance_templates(c, &ids, &"the groups' instances").await?;
    for g in &mut groups {
        for i in &mut g.instances {
            i.2 = templates
                .get(&i.0)
                .cloned()
                .unwrap_or_else(|| g.template.clone());
        }
    }
    Ok(groups)
}

async fn user_data(c: &Clients, template: &str) -> Result<String, Error> {
    let r = c
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(template)
        .versions(crate::resources::LAUNCH_TEMPLATE_VERSION)
        .send()
        .await
        .ctx("reading the user data of", &template)?;
    let encoded = r
        .launch_template_versions()
        .first()
        .and_then(|v| v.launch_template_data())
        .and_then(|d| d.user_data())
        .unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap_or_default();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The listeners and target groups of the stack's load balancer, as HAProxy needs
/// them (servers filled in by the caller).
async fn read_load_balancer(
    c: &Clients,
    stack: &str,
    scale: f64,
) -> Result<(Vec<Frontend>, BTreeMap<String, Backend>), Error> {
    let lbs = c
        .elb
        .describe_load_balancers()
        .names(format!("{stack}-alb"))
        .send()
        .await;
    let Ok(lbs) = lbs else {
        return Ok(Default::default());
    };
    let Some(lb) = lbs
        .load_balancers()
        .first()
        .and_then(|l| l.load_balancer_arn())
    else {
        return Ok(Default::default());
    };
    let tgs = c
        .elb
        .describe_target_groups()
        .load_balancer_arn(lb)
        .send()
        .await
        .ctx("reading the target groups of", &"the load balancer")?;
    let mut backends = BTreeMap::new();
    let mut names = BTreeMap::new();
    for t in tgs.target_groups() {
        let arn = t.target_group_arn().unwrap_or_default().to_string();
        let name = t.target_group_name().unwrap_or_default().to_string();
        names.insert(arn.clone(), name.clone());
        backends.insert(
            arn,
            Backend {
                name,
                health_path: t.health_check_path().unwrap_or("/").to_string(),
                interval_ms: (t.health_check_interval_seconds().unwrap_or(30) as f64
                    * 1000.0
                    * scale) as u64,
                healthy: t.healthy_threshold_count().unwrap_or(5) as u32,
                unhealthy: t.unhealthy_threshold_count().unwrap_or(2) as u32,
                servers: Vec::new(),
            },
        );
    }
    let listeners = c
        .elb
        .describe_listeners()
        .load_balancer_arn(lb)
        .send()
        .await
        .ctx("reading the listeners of", &"the load balancer")?;
    let forward = |actions: &[aws_sdk_elasticloadbalancingv2::types::Action]| {
        actions
            .iter()
            .find_map(|a| a.target_group_arn())
            .and_then(|arn| names.get(arn))
            .cloned()
    };
    let mut frontends = Vec::new();
    for l in listeners.listeners() {
        // A redirect-only listener (HTTP to HTTPS) has nothing to serve locally.
        let Some(default_backend) = forward(l.default_actions()) else {
            continue;
        };
        let rules = c
            .elb
            .describe_rules()
            .listener_arn(l.listener_arn().unwrap_or_default())
            .send()
            .await
            .ctx("reading the rules of", &"the listener")?;
        let mut ordered: Vec<(i32, Vec<String>, String)> = rules
            .rules()
            .iter()
            .filter(|r| r.is_default() != Some(true))
            .filter_map(|r| {
                let priority = r.priority()?.parse().ok()?;
                let paths: Vec<String> = r
                    .conditions()
                    .iter()
                    .flat_map(|c| {
                        c.path_pattern_config()
                            .map(|p| p.values().to_vec())
                            .unwrap_or_else(|| c.values().to_vec())
                    })
                    .collect();
                Some((priority, paths, forward(r.actions())?))
            })
            .collect();
        ordered.sort_by_key(|r| r.0);
        let port = l.port().unwrap_or(80) as u16;
        frontends.push(Frontend {
            listener_port: port,
            local_port: local_port(port),
            rules: ordered.into_iter().map(|(_, p, b)| (p, b)).collect(),
            default_backend,
        });
    }
    Ok((frontends, backends))
}

/// The CPU targets of the stack's scaling policies, per group name.
async fn read_targets(c: &Clients, groups: &[Group]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for g in groups {
        if let Ok(r) = c
            .asg
            .describe_policies()
            .auto_scaling_group_name(&g.name)
            .send()
            .await
            && let Some(v) = r
                .scaling_policies()
                .iter()
                .find_map(|p| p.target_tracking_configuration())
                .and_then(|t| t.target_value())
        {
            out.insert(g.name.clone(), v);
        }
    }
    out
}

/// The supervisor's loop, until SIGTERM: one round per tick.
pub async fn supervise(spec: &Spec, c: &Clients) -> Result<(), Error> {
    let d = dir(&spec.stack);
    std::fs::create_dir_all(&d).map_err(|e| Error::Config(e.to_string()))?;
    let scale = crate::aws::scale();
    let tick = Duration::from_secs_f64((1.0 * scale).clamp(0.2, 1.0));
    // The metric period of target tracking (a minute on AWS), and the drain time of
    // an instance leaving (the target group's deregistration delay).
    let window = Duration::from_secs_f64((60.0 * scale).max(1.0));
    let drain = Duration::from_secs_f64((30.0 * scale).max(1.0));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::Config(e.to_string()))?;
    let mut proxy = Haproxy::new(&d);
    let mut running: BTreeMap<String, Instance> = BTreeMap::new();
    let mut draining: Vec<(Instance, Instant)> = Vec::new();
    let mut replaced: BTreeSet<String> = BTreeSet::new();
    let mut scripts: BTreeMap<String, String> = BTreeMap::new();
    let mut trackers: BTreeMap<String, scaling::Tracker> = BTreeMap::new();
    let mut last_window = Instant::now();
    let mut averages: BTreeMap<String, f64> = BTreeMap::new();
    // The policies' targets, read once per metric window (and on the first round).
    let mut targets: BTreeMap<String, f64> = BTreeMap::new();
    let mut cpu: BTreeMap<String, f64> = BTreeMap::new();
    loop {
        let mut problem = None;
        let round = async {
            let groups = read_groups(c, &spec.stack).await?;
            let live: BTreeSet<&str> = groups
                .iter()
                .flat_map(|g| g.instances.iter().map(|i| i.0.as_str()))
                .collect();
            // Instances the emulator no longer lists: drained, then stopped.
            let gone: Vec<String> = running
                .keys()
                .filter(|id| !live.contains(id.as_str()))
                .cloned()
                .collect();
            for id in gone {
                if let Some(i) = running.remove(&id) {
                    let _ = Haproxy::command(
                        &d,
                        &format!("set server {}-{}/{id} state drain", spec.stack, i.service),
                    );
                    draining.push((i, Instant::now() + drain));
                }
            }
            for (i, until) in draining.iter_mut() {
                if Instant::now() >= *until {
                    i.stop();
                }
            }
            draining.retain(|(_, until)| Instant::now() < *until);
            // New instances boot from the user data of the template they came from.
            for g in &groups {
                for (id, zone, template) in &g.instances {
                    if running.contains_key(id) || template.is_empty() {
                        continue;
                    }
                    if !scripts.contains_key(template) {
                        scripts.insert(template.clone(), user_data(c, template).await?);
                    }
                    let i = Instance::boot(&d, id, &g.service, zone, &scripts[template])
                        .await
                        .map_err(Error::Config)?;
                    eprintln!("booted {id} ({}) on port {}", g.service, i.port);
                    running.insert(id.clone(), i);
                }
            }
            // A dead app is an unhealthy instance: the group replaces it.
            for (id, i) in running.iter_mut() {
                if i.crashed() && replaced.insert(id.clone()) {
                    eprintln!("{id}: the app died; asking the group to replace it");
                    c.asg
                        .terminate_instance_in_auto_scaling_group()
                        .instance_id(id)
                        .should_decrement_desired_capacity(false)
                        .send()
                        .await
                        .ctx("replacing", &id)?;
                }
            }
            // HAProxy from the live listeners, rules and target groups.
            let (frontends, mut backends) = read_load_balancer(c, &spec.stack, scale).await?;
            for g in &groups {
                for tg in &g.target_groups {
                    if let Some(b) = backends.get_mut(tg) {
                        for (id, _, _) in &g.instances {
                            if let Some(i) = running.get(id) {
                                b.servers.push((id.clone(), i.port));
                            }
                        }
                    }
                }
            }
            for (i, _) in &draining {
                // Still listed while it drains, so HAProxy keeps its connections.
                if let Some(b) = backends
                    .values_mut()
                    .find(|b| b.name == format!("{}-{}", spec.stack, i.service))
                {
                    b.servers.push((i.id.clone(), i.port));
                }
            }
            let backends: Vec<Backend> = backends.into_values().collect();
            if !frontends.is_empty() {
                proxy
                    .apply(&haproxy::config(&d, &frontends, &backends))
                    .map_err(Error::Config)?;
                for (i, _) in &draining {
                    let _ = Haproxy::command(
                        &d,
                        &format!(
                            "set server {}-{}/{} state drain",
                            spec.stack, i.service, i.id
                        ),
                    );
                }
            }
            // Target tracking, once per metric window.
            let elapsed = last_window.elapsed();
            if elapsed >= window {
                last_window = Instant::now();
                targets = read_targets(c, &groups).await;
                for g in &groups {
                    let members: Vec<&mut Instance> = running
                        .values_mut()
                        .filter(|i| i.service == g.service)
                        .collect();
                    let n = members.len().max(1) as f64;
                    let mut sum = 0.0;
                    for i in members {
                        let p = i.cpu_percent(elapsed.as_secs_f64());
                        cpu.insert(i.id.clone(), p);
                        sum += p;
                    }
                    let average = sum / n;
                    averages.insert(g.name.clone(), average);
                    let Some(target) = targets.get(&g.name) else {
                        continue;
                    };
                    let decision = trackers
                        .entry(g.name.clone())
                        .or_default()
                        .sample(average, *target, g.desired, g.min, g.max);
                    if let scaling::Decision::To(n) = decision {
                        eprintln!(
                            "{}: average CPU {average:.0}% against {target:.0}%: desired {} → {n}",
                            g.name, g.desired
                        );
                        c.asg
                            .set_desired_capacity()
                            .auto_scaling_group_name(&g.name)
                            .desired_capacity(n)
                            .honor_cooldown(false)
                            .send()
                            .await
                            .ctx("scaling", &g.name)?;
                    }
                }
            }
            if targets.is_empty() {
                targets = read_targets(c, &groups).await;
            }
            let urls = frontends
                .iter()
                .map(|f| format!("http://127.0.0.1:{}/", f.local_port))
                .collect();
            let backends_seen = Haproxy::server_states(&d);
            let state = State {
                supervisor_pid: std::process::id(),
                urls,
                groups: groups
                    .iter()
                    .map(|g| GroupState {
                        name: g.name.clone(),
                        service: g.service.clone(),
                        desired: g.desired,
                        min: g.min,
                        max: g.max,
                        cpu_target: targets.get(&g.name).copied().unwrap_or_default(),
                        average_cpu: averages.get(&g.name).copied().unwrap_or_default(),
                    })
                    .collect(),
                instances: running
                    .values_mut()
                    .map(|i| {
                        let pid = i.app_pid();
                        let state = if replaced.contains(&i.id) {
                            "crashed"
                        } else if pid.is_some_and(pid_alive) {
                            "running"
                        } else {
                            "booting"
                        };
                        InstanceState {
                            id: i.id.clone(),
                            service: i.service.clone(),
                            zone: i.zone.clone(),
                            port: i.port,
                            pid,
                            state: state.into(),
                            cpu: cpu.get(&i.id).copied().unwrap_or_default(),
                        }
                    })
                    .chain(draining.iter().map(|(i, _)| InstanceState {
                        id: i.id.clone(),
                        service: i.service.clone(),
                        zone: i.zone.clone(),
                        port: i.port,
                        pid: i.app_pid(),
                        state: "draining".into(),
                        cpu: 0.0,
                    }))
                    .collect(),
                backends: backends_seen,
                problem: None,
            };
            Ok::<State, Error>(state)
        };
        let state = match round.await {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("round failed: {e}");
                problem = Some(e.to_string());
                None
            }
        };
        let mut state = state.unwrap_or_else(|| read_state(&spec.stack).unwrap_or_default());
        state.problem = problem;
        let tmp = d.join("state.json.tmp");
        if std::fs::write(&tmp, serde_json::to_vec_pretty(&state).unwrap_or_default()).is_ok() {
            let _ = std::fs::rename(&tmp, d.join("state.json"));
        }
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::time::sleep(tick) => {}
        }
    }
    eprintln!(
        "stopping: {} instance(s), HAProxy",
        running.len() + draining.len()
    );
    for (_, mut i) in running {
        i.stop();
    }
    for (mut i, _) in draining {
        i.stop();
    }
    proxy.stop();
    let _ = std::fs::remove_file(d.join("supervisor.pid"));
    Ok(())
}
