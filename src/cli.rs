//! The commands: `validate`, `plan`, `up`, `down`, `outputs`, `status`, `schema`,
//! `completions`. Each returns an exit code; errors are printed once, here, with their
//! cause.

use crate::apply::{self, Op, Status};
use crate::aws::{self, ConnectOptions, Context, Error};
use crate::engine::{self, Goal, Prepared};
use crate::failure::{self, Failure};
use crate::lock;
use crate::model::{Kind, Live};
use crate::plan::{Action, Plan};
use crate::render::{self, Progress, Style};
use crate::resources::Ctx;
use crate::spec::Spec;
use clap::{Args, CommandFactory, Parser, Subcommand};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "stack",
    version,
    about = "One YAML file to a running AWS web stack, and back"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where to reach AWS: only the commands that call it take these.
#[derive(Args, Debug, Clone)]
struct AwsArgs {
    /// AWS profile (else AWS_PROFILE / the default chain, SSO included).
    #[arg(long, env = "AWS_PROFILE")]
    profile: Option<String>,
    /// AWS region; must agree with the stack file's `region:` when that is set.
    #[arg(long)]
    region: Option<String>,
    /// Send every AWS call to this endpoint (an emulator). Also read from AWS_ENDPOINT_URL.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// Use the local emulator at http://localhost:4566 with test credentials unless set.
    /// `up`, `down` and `status` also run, stop and show the stack on this machine
    /// (instances as processes behind HAProxy; see `stack up --help`).
    #[arg(long)]
    local: bool,
    /// Print the AWS API calls made, per service and operation, on stderr at the end.
    #[arg(long)]
    stats: bool,
    /// Show errors with their whole cause chain.
    #[arg(long, short = 'v')]
    verbose: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a stack file without calling AWS.
    Validate {
        /// The stack file (YAML).
        file: PathBuf,
        /// Print one JSON document (the result, or every located error).
        #[arg(long)]
        json: bool,
    },
    /// Show what `up` would change.
    Plan {
        /// The stack file (YAML).
        file: PathBuf,
        /// Print the plan as one JSON document.
        #[arg(long)]
        json: bool,
        /// Exit 0 when there are no changes, 2 when there are, 1 on error.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Save the plan; `up --plan FILE` applies exactly it.
        #[arg(long, value_name = "PLAN")]
        out: Option<PathBuf>,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Create or update the stack to match the file.
    Up {
        /// The stack file (YAML).
        file: PathBuf,
        /// Apply without asking.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print the plan and what was done as one JSON document.
        #[arg(long)]
        json: bool,
        /// Apply a plan saved by `plan --out`; refused if anything moved since.
        #[arg(long, value_name = "PLAN")]
        plan: Option<PathBuf>,
        /// Allow a replacement or removal that destroys a table's items or a bucket's
        /// objects.
        #[arg(long)]
        force: bool,
        /// Operations run at once.
        #[arg(long, default_value_t = 10)]
        parallelism: usize,
        /// Seconds to wait for instances to pass health checks.
        #[arg(long, default_value_t = 900)]
        ready_timeout: u64,
        /// Where the app answers, when not at the load balancer's DNS name (your
        /// domain on an HTTPS listener, a CDN): after a roll `up` asks it until every
        /// answer comes from the new build.
        #[arg(long, value_name = "URL")]
        app_url: Option<String>,
        #[command(flatten)]
        lock: LockArgs,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Put back the build each service ran before its last roll (the bucket keeps
    /// it), through the same rolling path as `up`.
    Rollback {
        /// The stack file (YAML).
        file: PathBuf,
        /// Only this service (repeatable; default: every service with a previous build).
        #[arg(long = "service", value_name = "NAME")]
        services: Vec<String>,
        /// Apply without asking.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print the plan and what was done as one JSON document.
        #[arg(long)]
        json: bool,
        /// Operations run at once.
        #[arg(long, default_value_t = 10)]
        parallelism: usize,
        /// Seconds to wait for instances to pass health checks.
        #[arg(long, default_value_t = 900)]
        ready_timeout: u64,
        /// Where the app answers, when not at the load balancer's DNS name.
        #[arg(long, value_name = "URL")]
        app_url: Option<String>,
        #[command(flatten)]
        lock: LockArgs,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Delete everything the stack owns (and nothing else).
    Down {
        /// The stack file (YAML).
        file: PathBuf,
        /// Destroy without asking.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print the plan and what was done as one JSON document.
        #[arg(long)]
        json: bool,
        /// Delete a table holding items and a bucket holding objects (every version).
        #[arg(long)]
        force: bool,
        /// Operations run at once.
        #[arg(long, default_value_t = 10)]
        parallelism: usize,
        #[command(flatten)]
        lock: LockArgs,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Print the stack's outputs (the load balancer URL first).
    Outputs {
        /// The stack file (YAML).
        file: PathBuf,
        /// Print the outputs as one JSON document.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Print the app's write credential (HTTP Basic password on /admin, bearer token on
    /// API writes), or replace it with `--rotate`.
    Token {
        /// The stack file (YAML).
        file: PathBuf,
        /// Generate a new credential; the instances take it within 30 seconds and the
        /// old one stops working then. Prints nothing.
        #[arg(long)]
        rotate: bool,
        /// Print one JSON document (the parameter's name, and the value unless rotating).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Build (or read) the app binary the stack ships; print its path, digest and key.
    Build {
        /// The stack file (YAML).
        file: PathBuf,
        /// Print the builds as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Show what is running: each resource, instance counts, target health.
    Status {
        /// The stack file (YAML).
        file: PathBuf,
        /// Print the status as one JSON document.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Print the stack file's JSON Schema (for editors; kept in schema/stack.schema.json).
    Schema,
    /// Runs a stack's local data plane until SIGTERM (started by `up --local`).
    #[command(hide = true)]
    LocalSupervise {
        file: PathBuf,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Print shell completions.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// The stack's lock (see `lock.rs`), taken by `up` and `down` when they have work to do.
#[derive(Args, Debug, Clone)]
struct LockArgs {
    /// Seconds to wait for another run's lock on the stack; 0 fails at once, naming the holder.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    lock_timeout: u64,
    /// Remove the stack's lock first: for a lock left by a run that crashed or was killed.
    #[arg(long)]
    break_lock: bool,
}

impl LockArgs {
    fn options(&self) -> lock::Options {
        lock::Options {
            timeout: Duration::from_secs(self.lock_timeout),
            break_lock: self.break_lock,
        }
    }
}

/// Exit codes: 0 success, 1 error (usage errors too), 2 changes pending
/// (`plan --detailed-exitcode`), 130 interrupted.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stack: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let stats = cli.command.aws().is_some_and(|a| a.stats);
    let verbose = cli.command.aws().is_some_and(|a| a.verbose);
    let json = cli.command.json();
    let calls = aws::calls::Calls::default();
    let result = runtime.block_on(run(cli, calls.clone()));
    // A prompt still waiting for its line (Ctrl-C ended the run) is not waited for.
    runtime.shutdown_background();
    let code = match result {
        Ok(Done::Success) => 0,
        Ok(Done::ChangesPending) => 2,
        Err(f) => {
            let r = failure::report(&f, json, verbose);
            if let Some(doc) = &r.json {
                print_json(doc);
            }
            if let Some(line) = &r.stderr {
                eprintln!("{line}");
            }
            r.code
        }
    };
    if stats {
        print_stats(&calls);
    }
    ExitCode::from(code)
}

/// How a command that succeeded ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    Success,
    /// `plan --detailed-exitcode` with changes to make: exit 2.
    ChangesPending,
}

/// A mistyped flag is an error (exit 1), never the 2 that means "changes pending";
/// `--help` and `--version` succeed. With `--json` on the line, the error is also one
/// JSON document on stdout.
fn usage_error(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    if !e.use_stderr() {
        return ExitCode::SUCCESS;
    }
    if std::env::args().any(|a| a == "--json") {
        let message = e.to_string();
        print_json(&failure::error_doc(
            "UsageError",
            message
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: "),
            None,
        ));
    }
    ExitCode::from(1)
}

impl Command {
    /// Whether the command was asked for one JSON document on stdout.
    fn json(&self) -> bool {
        match self {
            Command::Validate { json, .. }
            | Command::Build { json, .. }
            | Command::Plan { json, .. }
            | Command::Up { json, .. }
            | Command::Rollback { json, .. }
            | Command::Down { json, .. }
            | Command::Outputs { json, .. }
            | Command::Token { json, .. }
            | Command::Status { json, .. } => *json,
            Command::LocalSupervise { .. } | Command::Schema | Command::Completions { .. } => false,
        }
    }

    fn aws(&self) -> Option<&AwsArgs> {
        match self {
            Command::Plan { aws, .. }
            | Command::Up { aws, .. }
            | Command::Rollback { aws, .. }
            | Command::Down { aws, .. }
            | Command::Outputs { aws, .. }
            | Command::Token { aws, .. }
            | Command::Status { aws, .. }
            | Command::LocalSupervise { aws, .. } => Some(aws),
            Command::Validate { .. }
            | Command::Build { .. }
            | Command::Schema
            | Command::Completions { .. } => None,
        }
    }
}

fn print_stats(calls: &aws::calls::Calls) {
    let snapshot = calls.snapshot();
    let total: u64 = snapshot.values().flat_map(|m| m.values()).sum();
    eprintln!("AWS API calls: {total} ({} writes)", calls.writes());
    for (service, ops) in snapshot {
        let n: u64 = ops.values().sum();
        let detail: Vec<String> = ops.iter().map(|(o, c)| format!("{o}×{c}")).collect();
        eprintln!("  {service}: {n}  {}", detail.join(" "));
    }
}

fn connect_options(a: &AwsArgs, calls: &aws::calls::Calls) -> ConnectOptions {
    ConnectOptions {
        calls: calls.clone(),
        profile: a.profile.clone(),
        region: a.region.clone(),
        endpoint_url: a.endpoint_url.clone().filter(|s| !s.is_empty()),
        local: a.local,
        verbose: a.verbose,
    }
}

/// The stack file, or why it is not one.
fn load(file: &Path) -> Result<Spec, Failure> {
    Spec::load(file).map_err(|errors| Failure::InvalidFile {
        file: file.to_path_buf(),
        errors,
    })
}

async fn run(cli: Cli, calls: aws::calls::Calls) -> Result<Done, Failure> {
    // What the engine says while it prepares (an app build starting).
    let say = |m: String| eprintln!("{m}");
    match cli.command {
        Command::Validate { file, json } => {
            let spec = load(&file)?;
            if json {
                print_json(&json!({
                    "format_version": render::JSON_SCHEMA_VERSION,
                    "valid": true,
                    "stack": spec.stack,
                    "services": spec.services.len(),
                    "subnets": spec.subnets.len(),
                }));
            } else {
                println!(
                    "{}: valid — stack `{}`, {} service(s), {} subnet(s)",
                    file.display(),
                    spec.stack,
                    spec.services.len(),
                    spec.subnets.len()
                );
            }
            Ok(Done::Success)
        }
        Command::Build { file, json } => {
            let spec = load(&file)?;
            let Some(app) = &spec.app else {
                return Err(Error::Config(format!(
                    "{} has no `app:` section; nothing to build",
                    file.display()
                ))
                .into());
            };
            // No AWS call here: the architectures come from the instance types' names
            // (`plan` and `up` ask AWS).
            let archs: std::collections::BTreeSet<crate::spec::Arch> = spec
                .services
                .iter()
                .map(|s| crate::spec::Arch::guess(&s.instance_type))
                .collect();
            let mut built = Vec::new();
            for arch in archs {
                built.push(crate::artifact::produce(app, arch, &say).await?);
            }
            if json {
                let docs: Vec<serde_json::Value> = built
                    .iter()
                    .map(|a| {
                        json!({
                            "path": a.path,
                            "sha256": a.sha256,
                            "key": a.key(),
                            "arch": a.arch,
                            "target": crate::artifact::target(a.arch),
                        })
                    })
                    .collect();
                // One build keeps the original single-object shape.
                match docs.as_slice() {
                    [one] => print_json(one),
                    _ => print_json(&json!({ "builds": docs })),
                }
            } else {
                for a in &built {
                    println!(
                        "{}\narch   {}\nsha256 {}\nkey    {}",
                        a.path.display(),
                        a.arch,
                        a.sha256,
                        a.key()
                    );
                }
            }
            Ok(Done::Success)
        }
        Command::Plan {
            file,
            json,
            detailed_exitcode,
            out: save,
            aws,
        } => {
            let spec = load(&file)?;
            let p = engine::prepare_with(
                &spec,
                &connect_options(&aws, &calls),
                Goal::Converge,
                &BTreeMap::new(),
                &say,
            )
            .await?;
            // Saved before anything is printed: a file that cannot be written fails the
            // command with one error document, not a plan and then an error.
            if let Some(save) = &save {
                saved::write(save, &file, &p)?;
            }
            let refusal = refusal(&p.plan, Goal::Converge);
            if json {
                let mut extra = json!({ "outputs": outputs(&spec, &p.live) });
                if let Some((code, message)) = &refusal {
                    extra["error"] = json!({ "code": code, "message": message });
                }
                print_json(&render::plan_json(&p.plan, extra));
            } else {
                print!("{}", render::plan_text(&p.plan, Style::detect()));
            }
            if let Some(save) = save
                && !json
            {
                println!(
                    "\nSaved the plan to {}. Apply exactly it with: stack up {} --plan {}",
                    save.display(),
                    file.display(),
                    save.display()
                );
            }
            if refusal.is_some() {
                Err(Failure::PlanRefused)
            } else if detailed_exitcode && !p.plan.is_empty() {
                Ok(Done::ChangesPending)
            } else {
                Ok(Done::Success)
            }
        }
        Command::Up {
            file,
            yes,
            json,
            plan,
            force,
            parallelism,
            ready_timeout,
            app_url,
            lock,
            aws,
        } => {
            let spec = load(&file)?;
            let settings = Settings {
                yes,
                json,
                parallelism,
                force,
                ready_timeout: Duration::from_secs(ready_timeout),
                app_url,
                calls: calls.clone(),
                verbose: aws.verbose,
            };
            let check = |p: &mut Prepared| match &plan {
                Some(saved_plan) => saved::check(saved_plan, &file, p),
                None => Ok(()),
            };
            let opts = connect_options(&aws, &calls);
            // What `--app-url` and `--local` need is refused before anything is written.
            if let Some(url) = &settings.app_url {
                crate::verify::check_url(url)?;
            }
            let local = aws
                .local
                .then(|| crate::local::preflight(opts.endpoint_url.as_deref()))
                .transpose()?;
            apply_locked(
                &spec,
                &opts,
                Goal::Converge,
                &settings,
                &lock,
                &BTreeMap::new(),
                &check,
            )
            .await?;
            if let Some(endpoint) = local {
                serve_locally(&spec, &endpoint, &settings).await?;
            }
            Ok(Done::Success)
        }
        Command::Down {
            file,
            yes,
            json,
            force,
            parallelism,
            lock,
            aws,
        } => {
            let spec = load(&file)?;
            let settings = Settings {
                yes,
                json,
                parallelism,
                force,
                ready_timeout: Duration::from_secs(900),
                app_url: None,
                calls: calls.clone(),
                verbose: aws.verbose,
            };
            let opts = connect_options(&aws, &calls);
            if aws.local {
                crate::local::stop(&spec.stack, &|m| eprintln!("stack: {m}")).await?;
            }
            apply_locked(
                &spec,
                &opts,
                Goal::Destroy,
                &settings,
                &lock,
                &BTreeMap::new(),
                &|_| Ok(()),
            )
            .await
        }
        Command::Rollback {
            file,
            services,
            yes,
            json,
            parallelism,
            ready_timeout,
            app_url,
            lock,
            aws,
        } => {
            let spec = load(&file)?;
            let opts = connect_options(&aws, &calls);
            if let Some(url) = &app_url {
                crate::verify::check_url(url)?;
            }
            let builds = previous_builds(&spec, &opts, &services).await?;
            if !json {
                for (service, key) in &builds {
                    eprintln!(
                        "stack: rolling {service} back to build {}… (s3://{}/{key})",
                        &crate::desired::sha_of_key(key)
                            .chars()
                            .take(12)
                            .collect::<String>(),
                        spec.bucket.as_ref().map(|b| b.name.as_str()).unwrap_or("?")
                    );
                }
            }
            let settings = Settings {
                yes,
                json,
                parallelism,
                force: false,
                ready_timeout: Duration::from_secs(ready_timeout),
                app_url,
                calls: calls.clone(),
                verbose: aws.verbose,
            };
            let rolled: Vec<String> = builds.keys().cloned().collect();
            let only = move |p: &mut Prepared| rollback_only(p, &rolled);
            apply_locked(
                &spec,
                &opts,
                Goal::Converge,
                &settings,
                &lock,
                &builds,
                &only,
            )
            .await
        }
        Command::Outputs { file, json, aws } => {
            let spec = load(&file)?;
            let p = engine::prepare(&spec, &connect_options(&aws, &calls), Goal::Observe).await?;
            let outs = outputs(&spec, &p.live);
            if json {
                print_json(
                    &json!({ "format_version": render::JSON_SCHEMA_VERSION, "outputs": outs }),
                );
            } else {
                print_outputs(&outs);
            }
            Ok(Done::Success)
        }
        Command::Token {
            file,
            rotate,
            json,
            aws,
        } => {
            let spec = load(&file)?;
            token(&spec, &connect_options(&aws, &calls), rotate, json).await?;
            Ok(Done::Success)
        }
        Command::Status { file, json, aws } => {
            let spec = load(&file)?;
            let p = engine::prepare(&spec, &connect_options(&aws, &calls), Goal::Observe).await?;
            let status = crate::status::read(&spec, &p).await?;
            let local = aws.local.then(|| crate::local::read_state(&spec.stack));
            if json {
                let mut doc = render::status_json(&status);
                if let Some(l) = &local {
                    doc["local"] = serde_json::to_value(l).unwrap_or_default();
                }
                print_json(&doc);
            } else {
                print!("{}", render::status_text(&status, Style::detect()));
                if let Some(l) = &local {
                    print!("{}", local_status_text(&spec.stack, l.as_ref()));
                }
            }
            Ok(Done::Success)
        }
        Command::LocalSupervise { file, aws } => {
            let spec = load(&file)?;
            let clients = aws::Clients::connect(&connect_options(&aws, &calls)).await?;
            crate::local::supervise(&spec, &clients).await?;
            Ok(Done::Success)
        }
        Command::Schema => {
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = std::io::stdout()
                .lock()
                .write_all(crate::schema::text().as_bytes());
            Ok(Done::Success)
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "stack", &mut script);
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = std::io::stdout().lock().write_all(&script);
            Ok(Done::Success)
        }
    }
}

struct Settings {
    yes: bool,
    json: bool,
    parallelism: usize,
    force: bool,
    ready_timeout: Duration,
    /// `up --app-url`: where the build check asks instead of the load balancer.
    app_url: Option<String>,
    /// The run's AWS calls, for the JSON documents.
    calls: aws::calls::Calls,
    /// `-v`: a failed step shows the causes of an error.
    verbose: bool,
}

fn print_json(v: &serde_json::Value) {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth reporting.
    let _ = writeln!(out, "{text}");
}

/// Asks on a terminal; without one, only `--yes` proceeds.
fn confirm(question: &str) -> Result<bool, String> {
    if !std::io::stdin().is_terminal() {
        return Err("refusing to change anything without --yes: stdin is not a terminal".into());
    }
    eprint!("{question} Only 'yes' will be accepted: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(line.trim() == "yes")
}

/// Why `up`/`down` (or `plan`'s exit code) refuses this plan, if it does: the code
/// and message of the JSON error document. Every such refusal is known before the
/// first write.
fn refusal(plan: &Plan, goal: Goal) -> Option<(&'static str, String)> {
    let verb = if goal == Goal::Destroy {
        "destroy"
    } else {
        "apply"
    };
    if !plan.missing_services.is_empty() {
        let names: Vec<&str> = plan
            .missing_services
            .iter()
            .map(|m| m.service.name())
            .collect();
        return Some((
            "MissingServices",
            format!(
                "refusing to {verb}: the endpoint does not implement {}; nothing was changed",
                names.join(" and ")
            ),
        ));
    }
    if goal == Goal::Converge && !plan.conflicts.is_empty() {
        let names: Vec<String> = plan
            .conflicts
            .iter()
            .map(|f| format!("{} `{}`", f.kind.as_str(), f.name))
            .collect();
        return Some((
            "NameConflict",
            format!(
                "refusing to apply: {} already exist(s) and belong(s) to no stack of this name; nothing was changed",
                names.join(", ")
            ),
        ));
    }
    None
}

/// Data a plan would destroy that neither `--force` nor the file allows, and (on
/// `up`) a protected load balancer it would replace.
fn data_refusal(plan: &Plan, goal: Goal, force: bool) -> Option<(&'static str, String)> {
    if force {
        return None;
    }
    if goal == Goal::Converge
        && let Some(c) = plan.changes.iter().find(|c| {
            c.action == Action::Replace && c.address.kind == Kind::LoadBalancer && c.protected
        })
    {
        return Some((
            "Protected",
            format!(
                "refusing to apply: replacing {} deletes a resource with deletion protection (a new load balancer gets a new DNS name); nothing was changed. Run again with --force to allow it",
                c.address
            ),
        ));
    }
    let lost: Vec<String> = plan
        .changes
        .iter()
        .filter_map(|c| {
            let loss = c.destroys.as_ref().filter(|l| !l.allowed_by_file)?;
            let how = if c.action == Action::Replace {
                "replacing"
            } else {
                "removing"
            };
            Some(format!("{how} {} {}", c.address, loss.describe()))
        })
        .collect();
    if lost.is_empty() {
        return None;
    }
    Some((
        "DataLoss",
        format!(
            "refusing to {}: {}; nothing was changed. Run again with --force to allow it{}",
            if goal == Goal::Destroy {
                "destroy"
            } else {
                "apply"
            },
            lost.join(", "),
            if goal == Goal::Destroy {
                " (or set `force_destroy: true` on the bucket)"
            } else {
                ""
            }
        ),
    ))
}

/// `up` and `down`: a run with nothing to do (or refused) takes no lock and writes
/// nothing; otherwise the stack's lock is taken, AWS is read again under it (another
/// run may have changed it meanwhile), the plan applied and the lock released, also on
/// failure and Ctrl-C.
async fn apply_locked(
    spec: &Spec,
    opts: &ConnectOptions,
    goal: Goal,
    s: &Settings,
    lock_args: &LockArgs,
    builds: &BTreeMap<String, String>,
    check: &dyn Fn(&mut Prepared) -> Result<(), Error>,
) -> Result<Done, Failure> {
    let say = |m: String| eprintln!("{m}");
    let notice = |m: String| eprintln!("stack: {m}");
    let interrupted = Arc::new(|m: String| eprintln!("\nstack: {m}"));
    let mut p = engine::prepare_with(spec, opts, goal, builds, &say).await?;
    check(&mut p)?;
    let lock = if matches!(decide(&p.plan, goal, s.force), Decision::Apply) || lock_args.break_lock
    {
        let command = if goal == Goal::Destroy { "down" } else { "up" };
        Some(
            lock::acquire(
                &p.clients,
                &spec.stack,
                command,
                &lock_args.options(),
                &notice,
            )
            .await?,
        )
    } else {
        None
    };
    let locked = lock.is_some();
    let session = lock::Session::start(lock, interrupted);
    let result = session
        .guard(async {
            let p = if locked {
                let mut p = engine::prepare_with(spec, opts, goal, builds, &say).await?;
                check(&mut p)?;
                p
            } else {
                p
            };
            apply_plan(spec, p, s, goal, &session).await
        })
        .await
        .unwrap_or_else(|why| Err(Failure::Interrupted(why)));
    session.finish(&notice).await;
    result
}

/// What to do with a plan, decided before anything is asked or written.
#[derive(Debug, PartialEq)]
enum Decision {
    /// Refused before any write: the code and message of the error.
    Refuse(&'static str, String),
    /// Nothing to change (the services must still answer).
    Converged,
    Apply,
}

fn decide(plan: &Plan, goal: Goal, force: bool) -> Decision {
    if let Some((code, message)) = refusal(plan, goal).or_else(|| data_refusal(plan, goal, force)) {
        Decision::Refuse(code, message)
    } else if plan.is_empty() {
        Decision::Converged
    } else {
        Decision::Apply
    }
}

/// The plan shown, decided on, confirmed, executed and summarized.
async fn apply_plan(
    spec: &Spec,
    p: Prepared,
    s: &Settings,
    goal: Goal,
    session: &lock::Session,
) -> Result<Done, Failure> {
    let Prepared {
        clients,
        desired,
        live,
        plan,
    } = p;
    if !s.json {
        if goal == Goal::Destroy && plan.is_empty() && plan.missing_services.is_empty() {
            println!("Nothing to destroy: {} has no resources.", plan.target());
            return Ok(Done::Success);
        }
        if goal == Goal::Destroy && !plan.is_empty() {
            println!(
                "Destroying stack `{}`: only resources tagged stack:name={} are touched.\n",
                spec.stack, spec.stack
            );
        }
        print!("{}", render::plan_text(&plan, Style::detect()));
    }
    match decide(&plan, goal, s.force) {
        Decision::Refuse(code, message) => {
            return Err(Failure::Refused {
                code,
                doc: Some(not_applied(&plan, &message, &s.calls)),
                message,
            });
        }
        Decision::Converged => return converged(spec, &plan, &clients, &live, s, goal).await,
        Decision::Apply => {}
    }
    confirm_apply(&plan, goal, s).await?;
    // From here Ctrl-C stops new steps instead of quitting (see `lock::Session`).
    session.applying();
    let interrupt = session.interrupt();
    let rolls = roll_checks(spec, &plan, &desired, &live);
    let outcome = execute(spec, clients.clone(), &plan, desired, live, s, &interrupt).await;
    // Every `up` ends with the services answering behind the load balancer, and a
    // roll with the new build answering there.
    let unhealthy = if goal == Goal::Converge && outcome.ok() && !interrupt.is_set() {
        after_apply(spec, &clients, &outcome, s, rolls).await.err()
    } else {
        None
    };
    summarize(
        spec,
        &plan,
        &outcome,
        goal,
        s,
        interrupt.is_set(),
        unhealthy,
    )
}

/// The JSON document of a plan that was not applied, to carry its error.
fn not_applied(plan: &Plan, message: &str, calls: &aws::calls::Calls) -> serde_json::Value {
    render::plan_json(
        plan,
        json!({
            "applied": false,
            "errors": [message],
            "api_calls": calls.snapshot(),
        }),
    )
}

/// Nothing to change: the services must still answer; then the outputs.
async fn converged(
    spec: &Spec,
    plan: &Plan,
    clients: &aws::Clients,
    live: &BTreeMap<crate::model::Address, Live>,
    s: &Settings,
    goal: Goal,
) -> Result<Done, Failure> {
    if goal == Goal::Converge
        && let Err(e) = services_healthy(clients, live, s).await
    {
        let message = e.to_string();
        return Err(Failure::Refused {
            code: "Unhealthy",
            doc: Some(not_applied(plan, &message, &s.calls)),
            message,
        });
    }
    let outs = outputs(spec, live);
    if s.json {
        print_json(&render::plan_json(
            plan,
            json!({ "applied": true, "steps": [], "outputs": outs, "api_calls": s.calls.snapshot() }),
        ));
    } else if goal == Goal::Converge {
        print_outputs(&outs);
    }
    Ok(Done::Success)
}

/// `--yes`, or "yes" at a terminal; nothing else proceeds. The prompt waits on its
/// own thread, so that Ctrl-C meanwhile ends the run (see `lock::Session::guard`).
async fn confirm_apply(plan: &Plan, goal: Goal, s: &Settings) -> Result<(), Failure> {
    if s.yes {
        return Ok(());
    }
    let q = if goal == Goal::Destroy {
        format!("\nDestroy these resources of {}?", plan.target())
    } else {
        format!("\nApply these changes to {}?", plan.target())
    };
    let answer = tokio::task::spawn_blocking(move || confirm(&q))
        .await
        .map_err(|e| Error::Config(format!("the prompt failed: {e}")))?;
    match answer {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::Declined),
        Err(e) => Err(Error::Config(e).into()),
    }
}

/// Runs the plan's steps against AWS, progress reported as they go.
async fn execute(
    spec: &Spec,
    clients: aws::Clients,
    plan: &Plan,
    desired: Vec<crate::model::Desired>,
    live: BTreeMap<crate::model::Address, Live>,
    s: &Settings,
    interrupt: &apply::Interrupt,
) -> apply::Outcome {
    let progress = Arc::new(Progress::detect(s.json, s.verbose));
    let observer: Arc<dyn apply::Observer> = progress.clone();
    let reporter = observer.clone();
    let ctx = Ctx {
        c: clients,
        stack: spec.stack.clone(),
        force: s.force,
        progress: Arc::new(move |a, m| {
            reporter.event(apply::Event::Progress {
                address: a.clone(),
                message: m,
            })
        }),
        ready_timeout: s.ready_timeout,
        shared: Default::default(),
    };
    apply::execute(
        ctx,
        plan,
        desired,
        live,
        s.parallelism,
        observer,
        interrupt.clone(),
    )
    .await
}

/// After an apply that went through: the services healthy, and rolled services
/// answering with their new build.
async fn after_apply(
    spec: &Spec,
    clients: &aws::Clients,
    outcome: &apply::Outcome,
    s: &Settings,
    rolls: Vec<crate::verify::Expect>,
) -> Result<(), Error> {
    services_healthy(clients, &outcome.live, s).await?;
    let rolled: Vec<crate::verify::Expect> = rolls
        .into_iter()
        .filter(|e| {
            outcome.steps.iter().any(|r| {
                r.op == Op::Update
                    && r.status == Status::Done
                    && r.address == crate::model::Address::new(Kind::AutoScalingGroup, &e.service)
            })
        })
        .collect();
    check_builds(spec, clients, &outcome.live, s, &rolled).await
}

/// What the run did, as a summary (text) or one document (JSON), and how it ends.
fn summarize(
    spec: &Spec,
    plan: &Plan,
    outcome: &apply::Outcome,
    goal: Goal,
    s: &Settings,
    interrupted: bool,
    unhealthy: Option<Error>,
) -> Result<Done, Failure> {
    let outs = outputs(spec, &outcome.live);
    let done = |op: Op, a: &crate::model::Address| {
        outcome
            .steps
            .iter()
            .any(|r| r.op == op && &r.address == a && r.status == Status::Done)
    };
    // A replacement is one deletion and one creation of the same address.
    let replaced = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Replace)
        .filter(|c| {
            (done(Op::Delete, &c.address) || done(Op::Delete, &crate::plan::deposed(&c.address)))
                && done(Op::Create, &c.address)
        })
        .count();
    let count = |op: Op| {
        outcome
            .steps
            .iter()
            .filter(|r| r.op == op && r.status == Status::Done)
            .count()
            - if op == Op::Update { 0 } else { replaced }
    };
    let doc = json!({ "applied": outcome.ok(), "steps": outcome.steps, "resources": written(outcome), "outputs": outs, "api_calls": s.calls.snapshot() });
    let doc = render::plan_json(plan, doc);
    if s.json {
        // An unhealthy stack's document carries the error (see below).
        if unhealthy.is_none() {
            print_json(&doc);
        }
    } else {
        println!();
        if !outcome.ok() {
            // What is in place and what is not, so a stopped run can be judged.
            print!("{}", outcome.report());
        }
        let summary = if goal == Goal::Destroy {
            format!("{} destroyed", count(Op::Delete))
        } else {
            format!(
                "{} created, {} updated, {replaced} replaced, {} destroyed",
                count(Op::Create),
                count(Op::Update),
                count(Op::Delete)
            )
        };
        if outcome.ok() {
            println!(
                "{} complete: {summary}.",
                if goal == Goal::Destroy {
                    "Destroy"
                } else {
                    "Apply"
                }
            );
            if goal == Goal::Converge {
                println!();
                print_outputs(&outs);
            }
        } else {
            println!(
                "{}Stopped with work left: {summary}. Run the same command again to converge from here.",
                if interrupted { "Interrupted. " } else { "" }
            );
        }
    }
    if let Some(e) = unhealthy {
        Err(Failure::Refused {
            code: "Unhealthy",
            message: e.to_string(),
            doc: Some(doc),
        })
    } else if interrupted || !outcome.ok() {
        Err(Failure::Incomplete { interrupted })
    } else {
        Ok(Done::Success)
    }
}

/// What each create and update left in AWS, as read back after the write: the ids AWS
/// gave and the attributes it holds (the next `plan` compares against the same).
fn written(outcome: &apply::Outcome) -> serde_json::Value {
    let docs: serde_json::Map<String, serde_json::Value> = outcome
        .steps
        .iter()
        .filter(|r| r.status == Status::Done && r.op != Op::Delete)
        .filter_map(|r| outcome.live.get(&r.address))
        .map(|l| {
            (
                l.address.to_string(),
                json!({ "id": l.id, "attributes": l.attrs }),
            )
        })
        .collect();
    serde_json::Value::Object(docs)
}

/// `up --local`, after the apply: the local data plane serves the stack, and the user
/// is told where. Only ever against an emulator on this machine.
async fn serve_locally(spec: &Spec, endpoint: &str, s: &Settings) -> Result<(), Error> {
    let say = |m: String| {
        if !s.json {
            eprintln!("stack: {m}");
        }
    };
    let urls = crate::local::start(spec, endpoint, s.ready_timeout, &say).await?;
    if !s.json {
        println!();
        for u in urls {
            println!(
                "Serving locally at {u} (HAProxy; `stack status --local` shows the instances, `stack down --local` stops them)"
            );
        }
    }
    Ok(())
}

/// `status --local`: the local processes, HAProxy's view of each, the groups' sizes.
fn local_status_text(stack: &str, state: Option<&crate::local::State>) -> String {
    let Some(st) = state else {
        return format!(
            "\nLocal data plane: not running (`stack up --local` starts it; files under {})\n",
            crate::local::dir(stack).display()
        );
    };
    let mut out = format!(
        "\nLocal data plane (supervisor pid {}): {}\n",
        st.supervisor_pid,
        st.urls.join(" ")
    );
    for g in &st.groups {
        out.push_str(&format!(
            "  {}: desired {} (min {}, max {}), average CPU {:.0}% against a target of {:.0}%\n",
            g.name, g.desired, g.min, g.max, g.average_cpu, g.cpu_target
        ));
    }
    for i in &st.instances {
        let haproxy = st
            .backends
            .values()
            .find_map(|b| b.get(&i.id))
            .map(String::as_str)
            .unwrap_or("-");
        out.push_str(&format!(
            "  {} {:<6} {} 127.0.0.1:{} pid {} {:<8} HAProxy {haproxy}, CPU {:.0}%\n",
            i.id,
            i.service,
            i.zone,
            i.port,
            i.pid.map_or("-".to_string(), |p| p.to_string()),
            i.state,
            i.cpu
        ));
    }
    if let Some(p) = &st.problem {
        out.push_str(&format!("  last problem: {p}\n"));
    }
    out
}

/// `stack rollback`: per service to roll back, the build it ran before its last roll
/// (a tag the roll wrote), checked to be still in the bucket. Refused before any write
/// when a service has none or its build is gone.
async fn previous_builds(
    spec: &Spec,
    opts: &ConnectOptions,
    only: &[String],
) -> Result<BTreeMap<String, String>, Error> {
    if let Some(unknown) = only
        .iter()
        .find(|n| !spec.services.iter().any(|s| &&s.name == n))
    {
        return Err(Error::Config(format!(
            "--service {unknown}: {} has no such service (it has {})",
            spec.file.display(),
            spec.services
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let p = engine::prepare(spec, opts, Goal::Observe).await?;
    let mut out = BTreeMap::new();
    for svc in &spec.services {
        if !only.is_empty() && !only.contains(&svc.name) {
            continue;
        }
        let group = crate::model::Address::new(Kind::AutoScalingGroup, &svc.name);
        let previous = p
            .live
            .get(&group)
            .and_then(|l| l.extra.get(crate::resources::asg::extra::PREVIOUS_BUILD))
            .filter(|k| !k.is_empty());
        match previous {
            Some(key) => {
                out.insert(svc.name.clone(), key.clone());
            }
            None if only.contains(&svc.name) => {
                return Err(Error::Refused {
                    resource: group.to_string(),
                    reason: "no previous build recorded: the group has not rolled from one build to another yet".into(),
                });
            }
            None => {}
        }
    }
    if out.is_empty() {
        return Err(Error::Refused {
            resource: format!("stack `{}`", spec.stack),
            reason: "no service has a previous build to roll back to (a build is recorded when a roll to the next one succeeds)".into(),
        });
    }
    let Some(bucket) = &spec.bucket else {
        return Err(Error::Config(
            "the stack has no bucket to keep builds in".into(),
        ));
    };
    for (service, key) in &out {
        let found = p
            .clients
            .s3
            .head_object()
            .bucket(&bucket.name)
            .key(key)
            .send()
            .await
            .ctx(
                "reading the previous build of",
                &format!("service {service}"),
            );
        match found {
            Ok(_) => {}
            Err(e) if e.is_code(&["NotFound", "NoSuchKey"]) => {
                return Err(Error::Refused {
                    resource: format!("service {service}"),
                    reason: format!(
                        "its previous build s3://{}/{key} is no longer in the bucket",
                        bucket.name
                    ),
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Keeps only the rollback: the rolled services' templates and groups, moving build
/// and nothing else. Anything more the file changes there is refused before any write.
fn rollback_only(p: &mut Prepared, services: &[String]) -> Result<(), Error> {
    use crate::model::attr;
    use crate::resources::asg::AutoScalingGroupAttrs;
    use crate::resources::launch_template::LaunchTemplateAttrs;
    const TEMPLATE: &[&str] = &[
        attr!(LaunchTemplateAttrs.name),
        attr!(LaunchTemplateAttrs.user_data_sha256),
    ];
    const GROUP: &[&str] = &[
        attr!(AutoScalingGroupAttrs.launch_template_id),
        attr!(AutoScalingGroupAttrs.launch_template_digest),
        attr!(AutoScalingGroupAttrs.build),
    ];
    let allowed = |c: &crate::plan::Change| match c.address.kind {
        Kind::LaunchTemplate => TEMPLATE,
        _ => GROUP,
    };
    p.plan.changes.retain(|c| {
        matches!(
            c.address.kind,
            Kind::LaunchTemplate | Kind::AutoScalingGroup
        ) && services.contains(&c.address.name)
    });
    for c in &p.plan.changes {
        if let Some(a) = c
            .attributes
            .iter()
            .find(|a| !allowed(c).contains(&a.name.as_str()))
        {
            return Err(Error::Refused {
                resource: c.address.to_string(),
                reason: format!(
                    "the stack file also changes `{}` here; apply it with `stack up` (or undo it) before rolling back",
                    a.name
                ),
            });
        }
    }
    Ok(())
}

/// The services a plan rolls onto a new build: where their listener rule sends
/// requests, and the build (its SHA-256) their new template installs.
fn roll_checks(
    spec: &Spec,
    plan: &Plan,
    desired: &[crate::model::Desired],
    live: &BTreeMap<crate::model::Address, Live>,
) -> Vec<crate::verify::Expect> {
    plan.changes
        .iter()
        .filter(|c| c.address.kind == Kind::AutoScalingGroup && c.action == Action::Update)
        .filter(|c| {
            c.attributes
                .iter()
                .any(|a| a.name == "launch_template_digest")
        })
        .filter_map(|c| {
            let service = c.address.name.clone();
            let lt = crate::model::Address::new(Kind::LaunchTemplate, &service);
            let build = desired
                .iter()
                .find(|d| d.address == lt)
                .and_then(|d| d.payload.as_deref())
                .and_then(crate::desired::build_of_user_data)?;
            let path = spec
                .load_balancer
                .rules
                .iter()
                .find(|r| r.service == service && service != spec.load_balancer.default_service)
                .map(|r| r.path.trim_end_matches(['*', '?']).to_string())
                .unwrap_or_else(|| {
                    spec.services
                        .iter()
                        .find(|s| s.name == service)
                        .map(|s| s.health.path.clone())
                        .unwrap_or_else(|| "/".into())
                });
            let instances = live
                .get(&c.address)
                .and_then(|l| {
                    l.extra
                        .get(crate::resources::asg::extra::ACTUAL_DESIRED_CAPACITY)
                })
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            Some(crate::verify::Expect {
                service,
                path: if path.is_empty() { "/".into() } else { path },
                build,
                instances,
            })
        })
        .collect()
}

/// After a roll: the new build answers through the load balancer (or `--app-url`).
/// Skipped, saying why, where no instance really runs or the URL cannot be checked.
async fn check_builds(
    spec: &Spec,
    c: &aws::Clients,
    live: &BTreeMap<crate::model::Address, Live>,
    s: &Settings,
    rolled: &[crate::verify::Expect],
) -> Result<(), Error> {
    if rolled.is_empty() {
        return Ok(());
    }
    let say = |m: String| {
        if !s.json {
            eprintln!("build check: {m}");
        }
    };
    let base = match (&s.app_url, &c.endpoint_url) {
        (Some(url), _) => url.trim_end_matches('/').to_string(),
        (None, Some(endpoint)) => {
            say(format!(
                "skipped: at {endpoint} the instances are records, no app answers behind the load balancer (pass --app-url where one does)"
            ));
            return Ok(());
        }
        (None, None) if spec.load_balancer.https.is_some() => {
            say("skipped: the HTTPS certificate names your domain, not the load balancer's DNS name (pass --app-url https://your.domain)".into());
            return Ok(());
        }
        (None, None) => {
            let Some(dns) = live
                .values()
                .find(|l| l.address.kind == Kind::LoadBalancer)
                .and_then(|l| {
                    l.extra
                        .get(crate::resources::load_balancer::extra::DNS_NAME)
                })
            else {
                return Ok(());
            };
            spec.load_balancer
                .url(dns)
                .trim_end_matches('/')
                .to_string()
        }
    };
    let progress = |m: String| say(m);
    for line in crate::verify::builds_served(&base, rolled, s.ready_timeout, &progress).await? {
        say(line);
    }
    Ok(())
}

/// Waits, within `--ready-timeout`, for every group's targets to be healthy; reports
/// what it waits for once per change.
async fn services_healthy(
    c: &aws::Clients,
    live: &BTreeMap<crate::model::Address, Live>,
    s: &Settings,
) -> Result<(), Error> {
    let said = std::sync::Mutex::new(String::new());
    let quiet = s.json;
    let progress = move |m: String| {
        let mut last = said.lock().unwrap_or_else(|e| e.into_inner());
        if !quiet && *last != m {
            eprintln!("waiting for health checks: {m}");
            *last = m;
        }
    };
    crate::resources::wait_all_healthy(c, live, s.ready_timeout, &progress).await
}

/// `stack token`: the write credential from SSM, or a new one. The value goes to stdout
/// only when asked for, and nowhere else.
async fn token(spec: &Spec, opts: &ConnectOptions, rotate: bool, json: bool) -> Result<(), Error> {
    let p = engine::prepare(spec, opts, Goal::Observe).await?;
    let Some(live) = p.live.values().find(|l| l.address.kind == Kind::Secret) else {
        return Err(Error::Config(if spec.app.is_none() {
            format!(
                "stack {} ships no app (`app:` in {}), so it has no write credential",
                spec.stack,
                spec.file.display()
            )
        } else {
            format!(
                "stack {} has no write credential yet: run `stack up {}` first",
                spec.stack,
                spec.file.display()
            )
        }));
    };
    let name = live.id.as_str();
    if rotate {
        let bucket = p
            .live
            .get(&crate::desired::bucket())
            .map(|b| b.id.clone())
            .unwrap_or_default();
        let version = crate::resources::secret::rotate(&p.clients, name, &bucket).await?;
        if json {
            print_json(&json!({
                "format_version": render::JSON_SCHEMA_VERSION,
                "parameter": name,
                "version": version,
            }));
        } else {
            eprintln!(
                "Rotated {name} (version {version}). Instances take the new credential within 30 s; the old one stops working then. `stack token {}` prints it.",
                spec.file.display()
            );
        }
        return Ok(());
    }
    let value = crate::resources::secret::reveal(&p.clients, name).await?;
    if json {
        print_json(&json!({
            "format_version": render::JSON_SCHEMA_VERSION,
            "parameter": name,
            "value": value,
        }));
    } else {
        println!("{value}");
    }
    Ok(())
}

/// The stack's outputs, URL first.
fn outputs(
    spec: &Spec,
    live: &BTreeMap<crate::model::Address, Live>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    let find = |k: Kind| live.values().find(|l| l.address.kind == k);
    if let Some(lb) = find(Kind::LoadBalancer) {
        let dns = lb
            .extra
            .get(crate::resources::load_balancer::extra::DNS_NAME)
            .cloned()
            .unwrap_or_default();
        out.insert("url".into(), json!(spec.load_balancer.url(&dns)));
        out.insert("load_balancer_dns".into(), json!(dns));
    }
    if let Some(v) = find(Kind::Vpc) {
        out.insert("vpc_id".into(), json!(v.id));
    }
    if let Some(t) = find(Kind::Table) {
        out.insert("table".into(), json!(t.id));
    }
    // By address: the log bucket is a bucket too.
    if let Some(b) = live.get(&crate::desired::bucket()) {
        out.insert("bucket".into(), json!(b.id));
    }
    if let Some(b) = live.get(&crate::desired::logs_bucket()) {
        out.insert("log_bucket".into(), json!(b.id));
    }
    if let Some(t) = find(Kind::Secret) {
        out.insert("write_token_parameter".into(), json!(t.id));
        out.insert(
            "write_token".into(),
            json!(format!(
                "`stack token {}` (with this command's AWS flags) prints it: the password for /admin (any user name), `Authorization: Bearer` for API writes",
                spec.file.display()
            )),
        );
    }
    let groups: Vec<&str> = live
        .values()
        .filter(|l| l.address.kind == Kind::AutoScalingGroup)
        .map(|l| l.id.as_str())
        .collect();
    if !groups.is_empty() {
        out.insert("autoscaling_groups".into(), json!(groups));
    }
    out
}

fn print_outputs(outs: &serde_json::Map<String, serde_json::Value>) {
    if outs.is_empty() {
        println!("No outputs: the stack has no resources yet.");
        return;
    }
    println!("Outputs:");
    let width = outs.keys().map(String::len).max().unwrap_or(0);
    // The URL first: it is what a person looks for.
    let url_first = outs
        .iter()
        .filter(|(k, _)| *k == "url")
        .chain(outs.iter().filter(|(k, _)| *k != "url"));
    for (k, v) in url_first {
        let v = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!("  {k:width$} = {v}");
    }
}

/// Saved plans: the plan with fingerprints of the stack file and of the live resources
/// it was computed from, so `up --plan` applies it only if neither moved.
mod saved {
    use super::*;
    use crate::desired::sha256_hex;

    fn live_digest(p: &Prepared) -> String {
        let text = serde_json::to_string(
            &p.live
                .values()
                .map(|l| (&l.address, &l.id, &l.attrs))
                .collect::<Vec<_>>(),
        )
        .unwrap_or_default();
        sha256_hex(text.as_bytes())
    }

    fn file_digest(file: &Path) -> Result<String, Error> {
        std::fs::read(file)
            .map(|b| sha256_hex(&b))
            .map_err(Error::io(format!("cannot read {}", file.display())))
    }

    pub fn write(out: &Path, file: &Path, p: &Prepared) -> Result<(), Error> {
        let doc = json!({
            "format_version": render::JSON_SCHEMA_VERSION,
            "stack_file_sha256": file_digest(file)?,
            "live_sha256": live_digest(p),
            "plan": render::plan_json(&p.plan, json!({})),
        });
        std::fs::write(out, serde_json::to_string_pretty(&doc).unwrap_or_default())
            .map_err(Error::io(format!("cannot write {}", out.display())))
    }

    pub fn check(saved: &Path, file: &Path, p: &Prepared) -> Result<(), Error> {
        let text = std::fs::read_to_string(saved)
            .map_err(Error::io(format!("cannot read plan {}", saved.display())))?;
        let doc: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{} is not a saved plan: {e}", saved.display())))?;
        if doc["stack_file_sha256"].as_str() != Some(file_digest(file)?.as_str()) {
            return Err(Error::Config(format!(
                "refusing the saved plan: {} changed since the plan was made; run `stack plan` again",
                file.display()
            )));
        }
        if doc["live_sha256"].as_str() != Some(live_digest(p).as_str()) {
            return Err(Error::Config("refusing the saved plan: the live resources changed since the plan was made; run `stack plan` again".into()));
        }
        Ok(())
    }
}
