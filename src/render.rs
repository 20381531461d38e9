//! Everything the user reads: the plan and the status as text (colour on a terminal
//! only, `NO_COLOR` respected) and as versioned JSON, and apply progress as indicatif
//! bars on a terminal or one plain line per event elsewhere.

use crate::apply::{Event, Observer, Op};
use crate::model::{Address, Value};
use crate::plan::{Action, Change, Plan};
use crate::status::Status;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

/// The version of the JSON documents `--json` prints.
pub const JSON_SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    /// Colour only on a terminal, and never with `NO_COLOR` set.
    pub fn detect() -> Style {
        Style {
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn action(&self, a: Action) -> String {
        let code = match a {
            Action::Create => "32",
            Action::Update => "33",
            Action::Replace => "35",
            Action::Delete => "31",
        };
        self.paint(code, a.symbol())
    }
}

/// Attributes never shown in clear.
fn is_sensitive(name: &str) -> bool {
    name.contains("password") || name.contains("secret")
}

fn show(name: &str, v: &Value) -> String {
    if is_sensitive(name) {
        "(sensitive)".to_string()
    } else {
        v.to_string()
    }
}

/// The lines that differ between two texts, with `context` unchanged lines around
/// each change (`- old`, `+ new`, `  same`, `…` between hunks). A longest-common-
/// subsequence diff: fine for the scripts and policies plans show.
pub fn line_diff(old: &str, new: &str, context: usize) -> Vec<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let near_change = |k: usize| {
        let lo = k.saturating_sub(context);
        let hi = (k + context).min(ops.len().saturating_sub(1));
        (lo..=hi).any(|m| ops[m].0 != ' ')
    };
    let mut out = Vec::new();
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if *op == ' ' && !near_change(k) {
            skipped = true;
            continue;
        }
        if skipped && !out.is_empty() {
            out.push("…".to_string());
        }
        skipped = false;
        out.push(format!("{op} {line}"));
    }
    out
}

/// A JSON document (a policy) spread over lines, for a line diff.
fn json_lines(v: &Value) -> Option<String> {
    let text = v.as_str()?;
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let parsed: serde_json::Value = serde_json::from_str(text).ok()?;
    serde_json::to_string_pretty(&parsed).ok()
}

/// An attribute with nothing in it (an unset sort key, no inline policy).
fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None => true,
        Some(Value::Str(s)) => s.is_empty(),
        Some(Value::List(l)) => l.is_empty(),
        Some(_) => false,
    }
}

/// The plan as a person reads it.
pub fn plan_text(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Plan for {}.\n", plan.target());
    for m in &plan.missing_services {
        let _ = writeln!(
            out,
            "{} the endpoint does not implement {} ({}: {}); its resources are left out of this plan and `up` will refuse.",
            style.paint("31;1", "Error:"),
            m.service.name(),
            m.code,
            m.message.lines().next().unwrap_or_default()
        );
    }
    for f in &plan.conflicts {
        let _ = writeln!(
            out,
            "{} {} `{}` already exists and is not owned by this stack; `up` will refuse. Pick another name or remove it.",
            style.paint("31;1", "Error:"),
            f.kind.as_str(),
            f.name
        );
    }
    for w in &plan.warnings {
        let _ = writeln!(
            out,
            "{} {w}. `up` waits for them (--ready-timeout); `stack status` shows each target.",
            style.paint("33;1", "Warning:"),
        );
    }
    if !plan.missing_services.is_empty() || !plan.conflicts.is_empty() || !plan.warnings.is_empty()
    {
        out.push('\n');
    }
    if plan.changes.is_empty() {
        let _ = writeln!(
            out,
            "No changes. {} resources match the stack file.",
            plan.unchanged
        );
        return out;
    }
    out.push_str("Stack resources will be changed as follows:\n");
    for c in &plan.changes {
        out.push('\n');
        change_text(&mut out, c, style);
    }
    let _ = writeln!(
        out,
        "\nPlan: {} to add, {} to change, {} to replace, {} to destroy.",
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Replace),
        plan.count(Action::Delete)
    );
    out
}

fn change_text(out: &mut String, c: &Change, style: Style) {
    let id =
        c.id.as_deref()
            .map(|i| format!(" ({i})"))
            .unwrap_or_default();
    let what = match c.action {
        Action::Create => "will be created",
        Action::Update => "will be updated in place",
        Action::Replace if c.create_before_destroy => {
            "must be replaced: the new one is created first, what uses it moves over in place, then the old one goes"
        }
        Action::Replace => "must be replaced",
        Action::Delete => "will be destroyed",
    };
    let symbol = if c.create_before_destroy {
        style.paint("35", "+/-")
    } else {
        style.action(c.action)
    };
    let _ = writeln!(
        out,
        "  {} {}{id} {}",
        symbol,
        style.paint("1", &c.address.to_string()),
        style.paint("2", what)
    );
    for note in &c.notes {
        let _ = writeln!(out, "      {}", style.paint("36", &format!("# {note}")));
    }
    if let Some(note) = downtime(c) {
        let _ = writeln!(out, "      {}", style.paint("31;1", &format!("# {note}")));
    }
    if let Some(loss) = &c.destroys {
        let _ = writeln!(
            out,
            "      {}",
            style.paint("31;1", &format!("# {}", loss.describe()))
        );
    }
    let width = c.attributes.iter().map(|a| a.name.len()).max().unwrap_or(0);
    for a in &c.attributes {
        if is_empty(a.before.as_ref()) && is_empty(a.after.as_ref()) {
            continue;
        }
        // A JSON document (a policy) is shown as the lines that change.
        let documents = (
            a.before.as_ref().and_then(json_lines),
            a.after.as_ref().and_then(json_lines),
        );
        if !is_sensitive(&a.name) && (documents.0.is_some() || documents.1.is_some()) {
            let (sign, colour) = match (&a.before, &a.after) {
                (None, _) => ("+", "32"),
                (_, None) => ("-", "31"),
                _ => ("~", "33"),
            };
            let _ = writeln!(out, "      {} {} =", style.paint(colour, sign), a.name);
            let lines = line_diff(
                documents.0.as_deref().unwrap_or_default(),
                documents.1.as_deref().unwrap_or_default(),
                1,
            );
            for l in lines {
                let _ = writeln!(out, "          {l}");
            }
            continue;
        }
        let line = match (&a.before, &a.after) {
            (None, Some(v)) => format!(
                "{} {:width$} = {}",
                style.paint("32", "+"),
                a.name,
                show(&a.name, v)
            ),
            (Some(v), None) => format!(
                "{} {:width$} = {}",
                style.paint("31", "-"),
                a.name,
                show(&a.name, v)
            ),
            (Some(b), Some(v)) => format!(
                "{} {:width$} = {} -> {}",
                style.paint("33", "~"),
                a.name,
                show(&a.name, b),
                show(&a.name, v)
            ),
            (None, None) => continue,
        };
        let note = if a.forces_replacement && c.action == Action::Replace {
            style.paint("31", " # forces replacement")
        } else {
            String::new()
        };
        let _ = writeln!(out, "      {line}{note}");
    }
}

/// What a replacement that cannot keep the old resource meanwhile interrupts.
fn downtime(c: &Change) -> Option<&'static str> {
    if c.action != Action::Replace || c.create_before_destroy {
        return None;
    }
    crate::resources::downtime(c.address.kind)
}

/// The plan as `--json` prints it.
pub fn plan_json(plan: &Plan, extra: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({
        "format_version": JSON_SCHEMA_VERSION,
        "stack": plan.stack,
        "account": plan.account,
        "region": plan.region,
        "endpoint": plan.endpoint,
        "summary": {
            "add": plan.count(Action::Create),
            "change": plan.count(Action::Update),
            "replace": plan.count(Action::Replace),
            "destroy": plan.count(Action::Delete),
            "unchanged": plan.unchanged,
        },
        "changes": plan.changes,
        "missing_services": plan.missing_services,
        "conflicts": plan.conflicts,
        "warnings": plan.warnings,
    });
    if let (Some(map), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
        map.extend(more);
    }
    v
}

/// `stack status` as `--json` prints it: the plan's envelope (`format_version`) around
/// the [`Status`] fields.
pub fn status_json(s: &Status) -> serde_json::Value {
    let mut v = serde_json::json!({ "format_version": JSON_SCHEMA_VERSION });
    if let (Some(map), Ok(serde_json::Value::Object(more))) =
        (v.as_object_mut(), serde_json::to_value(s))
    {
        map.extend(more);
    }
    v
}

/// `stack status` as a person reads it.
pub fn status_text(s: &Status, style: Style) -> String {
    let mut out = String::new();
    for m in &s.missing_services {
        let _ = writeln!(
            out,
            "{} the endpoint does not implement {}; its resources are not shown.",
            style.paint("33;1", "Warning:"),
            m.service.name(),
        );
    }
    if !s.exists {
        let _ = writeln!(
            out,
            "Stack `{}` has no resources in {}: nothing is deployed.",
            s.stack, s.region
        );
        return out;
    }
    let _ = writeln!(
        out,
        "Stack `{}` in {}: {} resources.",
        s.stack,
        s.region,
        s.resources.len()
    );
    if let Some(lb) = &s.load_balancer {
        let _ = writeln!(out, "\nLoad balancer: {}  {}", lb.state, lb.url);
    }
    if !s.autoscaling_groups.is_empty() {
        let rows: Vec<Vec<String>> = s
            .autoscaling_groups
            .iter()
            .map(|g| {
                vec![
                    format!("  {}", g.address),
                    g.desired.to_string(),
                    g.min.to_string(),
                    g.max.to_string(),
                    format!("{}/{}", g.in_service, g.instances),
                ]
            })
            .collect();
        out.push('\n');
        table(
            &mut out,
            &["Auto Scaling groups", "desired", "min", "max", "in service"],
            &rows,
        );
    }
    if !s.target_groups.is_empty() {
        let rows: Vec<Vec<String>> = s
            .target_groups
            .iter()
            .map(|t| {
                vec![
                    format!("  {}", t.address),
                    t.healthy.to_string(),
                    t.unhealthy.to_string(),
                    t.initial.to_string(),
                    t.other.to_string(),
                ]
            })
            .collect();
        out.push('\n');
        table(
            &mut out,
            &["Target health", "healthy", "unhealthy", "initial", "other"],
            &rows,
        );
    }
    let rows: Vec<Vec<String>> = s
        .resources
        .iter()
        .map(|r| {
            vec![
                format!("  {}", r.address),
                r.state.clone().unwrap_or_else(|| "-".into()),
                r.id.clone(),
            ]
        })
        .collect();
    out.push('\n');
    table(&mut out, &["Resources", "state", "id"], &rows);
    out
}

/// Columns two spaces apart: numbers (and `n/m` counts) right-aligned, text left-aligned.
/// Rows carry their own indentation in their first cell.
fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([head[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..head.len()).map(width).collect();
    let numeric = |i: usize| {
        i > 0
            && rows
                .iter()
                .all(|r| r[i].chars().all(|c| c.is_ascii_digit() || c == '/'))
    };
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths[i];
            if i > 0 {
                l.push_str("  ");
            }
            if numeric(i) {
                let _ = write!(l, "{c:>w$}");
            } else {
                let _ = write!(l, "{c:<w$}");
            }
        }
        l.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(head.to_vec()));
    for r in rows {
        let _ = writeln!(out, "{}", line(r.iter().map(String::as_str).collect()));
    }
}

/// Progress of `up` and `down`.
pub enum Progress {
    /// A spinner per resource with its elapsed time.
    Bars {
        multi: MultiProgress,
        bars: Mutex<BTreeMap<Address, ProgressBar>>,
        verbose: bool,
    },
    /// One line per event on stderr (CI logs, pipes).
    Lines { verbose: bool },
    /// Nothing (JSON output).
    Quiet,
}

impl Progress {
    /// `verbose` (`-v`): a failed step shows its error's causes.
    pub fn detect(quiet: bool, verbose: bool) -> Progress {
        if quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() {
            Progress::Bars {
                multi: MultiProgress::new(),
                bars: Mutex::new(BTreeMap::new()),
                verbose,
            }
        } else {
            Progress::Lines { verbose }
        }
    }
}

/// A step's error as the progress shows it.
fn step_error(error: &crate::aws::Error, verbose: bool) -> String {
    if verbose {
        error.detailed()
    } else {
        error.to_string()
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl Observer for Progress {
    fn event(&self, e: Event) {
        match self {
            Progress::Quiet => {}
            Progress::Lines { verbose } => match e {
                Event::Started { address, op } => eprintln!("{address}: {}...", op.verb()),
                Event::Progress { address, message } => eprintln!("{address}: {message}"),
                Event::Succeeded {
                    address,
                    op,
                    elapsed,
                } => {
                    eprintln!("{address}: {} after {}", op.done(), secs(elapsed))
                }
                Event::Failed {
                    address,
                    op,
                    error,
                    elapsed,
                } => {
                    eprintln!(
                        "{address}: {} failed after {}: {}",
                        op.verb(),
                        secs(elapsed),
                        step_error(&error, *verbose)
                    )
                }
                Event::Skipped {
                    address,
                    op,
                    because,
                } => {
                    eprintln!("{address}: not {} because {because}", op.done())
                }
            },
            Progress::Bars {
                multi,
                bars,
                verbose,
            } => {
                let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
                match e {
                    Event::Started { address, op } => {
                        let bar = multi.add(ProgressBar::new_spinner());
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{spinner:.cyan} {prefix:.bold} {msg} [{elapsed}]",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        bar.set_prefix(address.to_string());
                        bar.set_message(format!("{}...", op.verb()));
                        bar.enable_steady_tick(Duration::from_millis(120));
                        bars.insert(address, bar);
                    }
                    Event::Progress { address, message } => {
                        if let Some(b) = bars.get(&address) {
                            b.set_message(message);
                        }
                    }
                    Event::Succeeded {
                        address,
                        op,
                        elapsed,
                    } => {
                        if let Some(b) = bars.get(&address) {
                            b.set_style(
                                ProgressStyle::with_template("  {prefix:.bold} {msg}")
                                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                            );
                            b.finish_with_message(format!("{} after {}", op.done(), secs(elapsed)));
                        }
                    }
                    Event::Failed {
                        address,
                        op,
                        error,
                        elapsed,
                    } => {
                        if let Some(b) = bars.get(&address) {
                            b.set_style(
                                ProgressStyle::with_template("✗ {prefix:.bold.red} {msg}")
                                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                            );
                            b.finish_with_message(format!(
                                "{} failed after {}: {}",
                                op.verb(),
                                secs(elapsed),
                                step_error(&error, *verbose)
                            ));
                        }
                    }
                    Event::Skipped {
                        address,
                        op,
                        because,
                    } => {
                        let _ = multi
                            .println(format!("  {address}: not {} because {because}", op.done()));
                    }
                }
            }
        }
    }
}

/// The one-word label of an op for summaries.
pub fn op_label(op: Op) -> &'static str {
    op.done()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_diff_shows_changes_with_context_and_gaps() {
        let old = "a\nb\nc\nd\ne\nf\ng";
        let new = "a\nB\nc\nd\ne\nf\nG";
        assert_eq!(
            line_diff(old, new, 1),
            ["  a", "- b", "+ B", "  c", "…", "  f", "- g", "+ G"]
        );
        assert!(line_diff("same\n", "same\n", 1).is_empty());
    }
}
