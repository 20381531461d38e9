//! The GitHub Actions workflow users copy (examples/github-actions/stack.yml, quoted
//! in the README) works as written. Its `run:` steps execute in order, as the runner
//! would (`bash -eo pipefail`, `$GITHUB_OUTPUT`/`$GITHUB_ENV`/`$GITHUB_PATH`, the
//! `${{ }}` expressions the file uses), in this checkout (CI runs the suite in a fresh
//! clone). The `uses:` steps are stood in for: checkout is the checkout, the cache
//! restores nothing, credentials point at the emulator, upload-artifact checks its
//! files exist, and `gh` is a recorder on PATH. The pull-request job must reach a
//! plan and its comment, the push job an `up` and a status.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use support::*;

const WORKFLOW: &str = "examples/github-actions/stack.yml";

fn workflow() -> (String, Value) {
    let text = std::fs::read_to_string(root().join(WORKFLOW)).unwrap();
    let parsed: Value = serde_saphyr::from_str(&text).expect("the workflow is YAML");
    (text, parsed)
}

#[test]
fn the_readme_quotes_the_workflow_file_whole() {
    let (text, _) = workflow();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```yaml\n{text}```")),
        "README.md must quote {WORKFLOW} verbatim"
    );
}

/// What a job's steps have produced so far.
struct Runner<'a> {
    event: &'a str,
    env: BTreeMap<String, String>,
    path: Vec<String>,
    outputs: BTreeMap<String, BTreeMap<String, String>>,
    scratch: &'a Path,
}

impl Runner<'_> {
    /// The value of one expression the workflow uses.
    fn value(&self, expr: &str) -> String {
        let expr = expr.trim();
        if let Some(v) = expr.strip_prefix("env.") {
            return self.env.get(v).cloned().unwrap_or_default();
        }
        if let Some(rest) = expr.strip_prefix("steps.") {
            let (id, key) = rest.split_once(".outputs.").expect("steps.ID.outputs.KEY");
            return self
                .outputs
                .get(id)
                .and_then(|o| o.get(key))
                .cloned()
                .unwrap_or_default();
        }
        match expr {
            "github.event_name" => self.event.to_string(),
            "github.ref" => "refs/heads/main".to_string(),
            "github.token" => "stand-in-token".to_string(),
            "github.event.pull_request.number" => "7".to_string(),
            "runner.os" => "Linux".to_string(),
            other => panic!("the stand-in runner does not know `{other}`"),
        }
    }

    /// `${{ … }}` replaced by values.
    fn expand(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find("}}").expect("closed expression") + start;
            out.push_str(&self.value(&rest[start + 3..end]));
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }

    /// `a == 'x' && b == 'y'`: the only conditions the workflow uses.
    fn condition(&self, cond: &str) -> bool {
        cond.split("&&").all(|part| {
            let (lhs, rhs) = part.split_once("==").expect("an == comparison");
            self.value(lhs) == rhs.trim().trim_matches('\'')
        })
    }

    fn run_step(&mut self, step: &Value, workdir: &Path) {
        let name = step["name"].as_str().unwrap_or("?").to_string();
        let script = self.expand(step["run"].as_str().unwrap());
        let file = self.scratch.join("step.sh");
        std::fs::write(&file, &script).unwrap();
        let output = self.scratch.join("output");
        let env_file = self.scratch.join("env");
        let path_file = self.scratch.join("path");
        for f in [&output, &env_file, &path_file] {
            std::fs::write(f, "").unwrap();
        }
        let mut env = self.env.clone();
        if let Some(extra) = step["env"].as_object() {
            for (k, v) in extra {
                env.insert(k.clone(), self.expand(v.as_str().unwrap_or_default()));
            }
        }
        let path = [
            self.path.clone(),
            vec![std::env::var("PATH").unwrap_or_default()],
        ]
        .concat()
        .join(":");
        let mut cmd = std::process::Command::new("bash");
        // A runner's environment, not this test's: no ambient AWS settings (only what
        // the credentials step provides), and none of the CARGO_PKG_* variables cargo
        // gives a test, which build scripts watch (a nested cargo would rebuild them).
        cmd.env_clear();
        for k in [
            "HOME",
            "USER",
            "LANG",
            "CARGO_HOME",
            "RUSTUP_HOME",
            "STACK_CACHE",
            "XDG_CACHE_HOME",
        ] {
            if let Ok(v) = std::env::var(k) {
                cmd.env(k, v);
            }
        }
        let result = cmd
            .args(["--noprofile", "--norc", "-eo", "pipefail"])
            .arg(&file)
            .current_dir(workdir)
            .envs(&env)
            .env("PATH", path)
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_ENV", &env_file)
            .env("GITHUB_PATH", &path_file)
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "step `{name}` failed ({:?}):\n{}\n{}",
            result.status,
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
        let pairs = |f: &Path| -> Vec<(String, String)> {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        if let Some(id) = step["id"].as_str() {
            self.outputs
                .insert(id.to_string(), pairs(&output).into_iter().collect());
        }
        self.env.extend(pairs(&env_file));
        let added: Vec<String> = std::fs::read_to_string(&path_file)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        self.path.splice(0..0, added.into_iter().rev());
    }

    /// Stands in for a `uses:` step.
    fn stand_in(&mut self, step: &Value, workdir: &Path, endpoint: &str) {
        let action = step["uses"].as_str().unwrap();
        let with = &step["with"];
        match action.split('@').next().unwrap() {
            // This checkout is the checkout; a cache that restores nothing is a cold run.
            "actions/checkout" | "actions/cache" => {}
            "aws-actions/configure-aws-credentials" => {
                assert!(with["role-to-assume"].as_str().is_some());
                let region = self.expand(with["aws-region"].as_str().unwrap());
                for (k, v) in [
                    ("AWS_ACCESS_KEY_ID", "test"),
                    ("AWS_SECRET_ACCESS_KEY", "test"),
                    ("AWS_ENDPOINT_URL", endpoint),
                    ("AWS_REGION", region.as_str()),
                ] {
                    self.env.insert(k.to_string(), v.to_string());
                }
            }
            "actions/upload-artifact" => {
                for f in with["path"].as_str().unwrap().split_whitespace() {
                    assert!(workdir.join(f).exists(), "{f} to upload does not exist");
                }
            }
            other => panic!("no stand-in for {other}"),
        }
    }
}

/// Runs `job` as triggered by `event`; returns the files its steps left in the
/// checkout (removed again).
fn run_job(
    wf: &Value,
    job: &str,
    event: &str,
    endpoint: &str,
    scratch: &Path,
) -> BTreeMap<String, String> {
    let workdir = root();
    let before = listing(&workdir);
    let env: BTreeMap<String, String> = wf["env"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let mut runner = Runner {
        event,
        env,
        path: vec![scratch.join("bin").to_string_lossy().into_owned()],
        outputs: BTreeMap::new(),
        scratch,
    };
    let job = &wf["jobs"][job];
    assert!(
        runner.condition(job["if"].as_str().unwrap()),
        "the job does not run on {event}"
    );
    for step in job["steps"].as_array().unwrap() {
        if let Some(cond) = step["if"].as_str()
            && !runner.condition(cond)
        {
            continue;
        }
        if step.get("uses").is_some() {
            runner.stand_in(step, &workdir, endpoint);
        } else {
            runner.run_step(step, &workdir);
        }
    }
    let mut produced = BTreeMap::new();
    for f in listing(&workdir).difference(&before) {
        let p = workdir.join(f);
        produced.insert(f.clone(), std::fs::read_to_string(&p).unwrap_or_default());
        std::fs::remove_file(p).unwrap();
    }
    produced
}

fn listing(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ci_workflow_plans_a_pull_request_and_applies_main() {
    let moto = Moto::start();
    let (_, wf) = workflow();
    let scratch = tempfile::tempdir().unwrap();
    // `gh` records what it was asked to post.
    let bin: PathBuf = scratch.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let posted = scratch.path().join("gh.log");
    let gh = bin.join("gh");
    std::fs::write(
        &gh,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{log}'\nwhile [ $# -gt 0 ]; do [ \"$1\" = --body-file ] && cat \"$2\" >> '{log}'; shift; done\n",
            log = posted.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&gh, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let plan = run_job(&wf, "plan", "pull_request", &moto.url(), scratch.path());
    let plan_txt = plan.get("plan.txt").expect("the plan job wrote plan.txt");
    assert!(
        plan_txt.contains("Plan: ") && plan_txt.contains("to add"),
        "{plan_txt}"
    );
    let saved: Value = serde_json::from_str(&plan["plan.json"]).expect("a saved plan");
    assert!(saved.is_object());
    let comment = std::fs::read_to_string(&posted).expect("the plan was commented");
    assert!(
        comment.starts_with("pr comment 7 --body-file comment.md")
            && comment.contains("```diff")
            && comment.contains(plan_txt.trim()),
        "{comment}"
    );

    let apply = run_job(&wf, "apply", "push", &moto.url(), scratch.path());
    let status: Value = serde_json::from_str(&apply["status.json"]).expect("status JSON");
    assert_eq!(status["exists"], true, "{status}");
    assert!(
        !status["autoscaling_groups"]
            .as_array()
            .unwrap_or(&Vec::new())
            .is_empty(),
        "{status}"
    );
    assert_eq!(
        apply.keys().collect::<Vec<_>>(),
        ["status.json"],
        "the apply job leaves only its status"
    );
}
