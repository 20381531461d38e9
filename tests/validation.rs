//! Every file in tests/invalid/ is a stack file with one mistake. Its first line says
//! `# expect: LINE:COLUMN: message`; `validate` and `plan` must report exactly that
//! location and message, exit 1, and never reach AWS.

mod support;

use support::*;

#[test]
fn example_stacks_are_valid() {
    for f in ["stacks/web.yaml", "stacks/minimal.yaml"] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_stack"))
            .args(["validate", &root().join(f).to_string_lossy()])
            .output()
            .unwrap();
        assert_ok(&o);
        assert!(text(&o).contains("valid"), "{}", text(&o));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_stack_files_are_located_and_touch_nothing() {
    // A recording endpoint that would answer anything: it must see no request at all.
    let proxy = Proxy::start(None, &[]).await;
    let dir = root().join("tests/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the corpus holds {} files", files.len());
    for path in files {
        let body = std::fs::read_to_string(&path).unwrap();
        let expect = body
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", path.display()));
        let file = path.to_string_lossy().into_owned();
        for command in ["validate", "plan", "up"] {
            let mut args = vec![command, file.as_str()];
            if command == "up" {
                args.push("--yes");
            }
            let o = stack(&proxy.url(), &args);
            let out = text(&o);
            assert_eq!(o.status.code(), Some(1), "{command} {file}: {out}");
            let first = out.lines().next().unwrap_or_default();
            assert_eq!(first, format!("{file}:{expect}"), "{command} {file}");
            assert!(out.contains("nothing was sent to AWS"), "{out}");
            assert!(!out.contains("panicked"), "{out}");
        }
    }
    assert_eq!(
        proxy.calls.total(),
        0,
        "an invalid stack file reached the endpoint"
    );
}
