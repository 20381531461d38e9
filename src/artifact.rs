//! The app binary a stack ships: a cargo package built for Amazon Linux 2023 on
//! x86_64, or a prebuilt file named in the stack file. AL2023 has glibc 2.34, older
//! than most build machines, so the build links against 2.34 through cargo-zigbuild.

use crate::aws::Error;
use crate::desired::{LocalArtifact, sha256_hex};
use crate::spec::AppSpec;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The Rust target, with the glibc version zig links against.
pub const TARGET: &str = "x86_64-unknown-linux-gnu.2.34";

const NO_TOOLCHAIN: &str = "building the app for Amazon Linux 2023 needs cargo-zigbuild and zig: \
run `app/toolchain.sh install`, or ship a binary built elsewhere with `app: { artifact: PATH }`";

/// Prefixes of the variables cargo sets for the crate (or test) it runs.
const CRATE_SCOPED_VARS: &[&str] = &[
    "CARGO_PKG_",
    "CARGO_CRATE_",
    "CARGO_BIN_",
    "CARGO_MANIFEST_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
    "NEXTEST",
];

/// Builds (or reads) the app and hashes it. Cargo's own progress goes to stderr.
pub async fn produce(app: &AppSpec) -> Result<LocalArtifact, Error> {
    let path = match app {
        AppSpec::Prebuilt { path } => path.clone(),
        AppSpec::Build { package_dir, bin } => build(package_dir, bin.as_deref()).await?,
    };
    let bytes = tokio::fs::read(&path).await.map_err(|e| {
        Error::Config(format!(
            "cannot read the app binary {}: {e}",
            path.display()
        ))
    })?;
    if !bytes.starts_with(b"\x7fELF") {
        return Err(Error::Config(format!(
            "{} is not a Linux (ELF) binary; instances cannot run it",
            path.display()
        )));
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "app".into());
    Ok(LocalArtifact {
        sha256: sha256_hex(&bytes),
        path,
        file_name,
    })
}

/// Where `app/toolchain.sh` installs cargo-zigbuild and zig.
fn toolchain_dir() -> Option<PathBuf> {
    let cache = std::env::var_os("STACK_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/stack")))?;
    Some(cache.join("toolchain/bin"))
}

fn on_path(name: &str, path: &std::ffi::OsStr) -> bool {
    std::env::split_paths(path).any(|d| d.join(name).is_file())
}

async fn build(package_dir: &Path, bin: Option<&str>) -> Result<PathBuf, Error> {
    // Our toolchain directory goes first on the child's PATH, so its `zig` is found.
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = toolchain_dir().into_iter().collect();
    dirs.extend(std::env::split_paths(&inherited));
    let path = std::env::join_paths(dirs)
        .map_err(|e| Error::Config(format!("PATH cannot hold the toolchain directory: {e}")))?;
    if !on_path("cargo-zigbuild", &path) || !on_path("zig", &path) {
        return Err(Error::Config(NO_TOOLCHAIN.into()));
    }
    eprintln!(
        "Building the app in {} for Amazon Linux 2023 ({TARGET})…",
        package_dir.display()
    );
    let mut cmd = tokio::process::Command::new("cargo-zigbuild");
    cmd.arg("zigbuild")
        .args(["--release", "--target", TARGET])
        .arg("--manifest-path")
        .arg(package_dir.join("Cargo.toml"))
        .arg("--message-format=json-render-diagnostics")
        .env("PATH", &path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(b) = bin {
        cmd.args(["--bin", b]);
    }
    // Run from `cargo run` or a test, we inherit the variables cargo sets for one crate;
    // some crates read them at compile time, so they would make every build a rebuild.
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if CRATE_SCOPED_VARS.iter().any(|p| n.starts_with(p)) {
            cmd.env_remove(&name);
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Config(format!("cannot run cargo-zigbuild: {e}")))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let mut executables: Vec<PathBuf> = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(exe) = executable_of(&line)
            && !executables.contains(&exe)
        {
            executables.push(exe);
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| Error::Config(format!("cargo-zigbuild: {e}")))?;
    if !status.success() {
        return Err(Error::Config(format!(
            "building the app in {} failed ({status}); cargo's output above says why",
            package_dir.display()
        )));
    }
    match executables.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::Config(format!(
            "building {} produced no executable; name one with `app: {{ bin: NAME }}`",
            package_dir.display()
        ))),
        many => Err(Error::Config(format!(
            "{} builds {} executables; pick one with `app: {{ bin: NAME }}`",
            package_dir.display(),
            many.len()
        ))),
    }
}

/// The binary a cargo `compiler-artifact` message announces, if any.
fn executable_of(line: &str) -> Option<PathBuf> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    let kinds = v.pointer("/target/kind")?.as_array()?;
    if !kinds.iter().any(|k| k.as_str() == Some("bin")) {
        return None;
    }
    v.get("executable")?.as_str().map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_binaries_in_cargo_messages_and_nothing_else() {
        let bin = r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"stack-app"},"executable":"/t/release/stack-app"}"#;
        let lib = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"x"},"executable":null}"#;
        let done = r#"{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable_of(bin),
            Some(PathBuf::from("/t/release/stack-app"))
        );
        assert_eq!(executable_of(lib), None);
        assert_eq!(executable_of(done), None);
        assert_eq!(executable_of("Compiling foo"), None);
    }
}
