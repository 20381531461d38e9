//! The app binary a stack ships, one per CPU architecture its instance types need: a
//! cargo package built for Amazon Linux 2023, or prebuilt files named in the stack
//! file. AL2023 has glibc 2.34, older than most build machines, so the build links
//! against 2.34 through cargo-zigbuild. Every binary's ELF header must name the
//! architecture it is shipped for: an x86_64 build on a Graviton instance never starts.

use crate::aws::Error;
use crate::desired::{LocalArtifact, sha256_hex};
use crate::spec::{AppSpec, Arch};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The glibc version of Amazon Linux 2023, which zig links against.
const GLIBC: &str = "2.34";

/// The cargo-zigbuild target for an architecture, with the glibc version.
pub fn target(arch: Arch) -> String {
    format!("{}.{GLIBC}", arch.rust_target())
}

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

/// Builds (or reads) the app for one architecture and hashes it. Says when a build
/// starts; cargo's own progress goes to stderr.
pub async fn produce(
    app: &AppSpec,
    arch: Arch,
    say: crate::engine::Say<'_>,
) -> Result<LocalArtifact, Error> {
    let path = match app {
        AppSpec::Prebuilt { paths } => paths.get(&arch).cloned().ok_or_else(|| {
            let key = match arch {
                Arch::X86_64 => "artifact",
                Arch::Arm64 => "artifact_arm64",
            };
            Error::Config(format!(
                "a service runs on {arch} instances but the stack file ships no {arch} binary: add `app: {{ {key}: PATH }}`"
            ))
        })?,
        AppSpec::Build { package_dir, bin } => build(package_dir, bin.as_deref(), arch, say).await?,
    };
    let bytes = tokio::fs::read(&path).await.map_err(Error::io(format!(
        "cannot read the app binary {}",
        path.display()
    )))?;
    match elf_arch(&bytes) {
        Err(why) => {
            return Err(Error::Config(format!(
                "{} {why}; instances cannot run it",
                path.display()
            )));
        }
        Ok(found) if found != arch => {
            return Err(Error::Config(format!(
                "{} is a {found} binary, but it is shipped for {arch} instances, which cannot run it",
                path.display()
            )));
        }
        Ok(_) => {}
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "app".into());
    Ok(LocalArtifact {
        sha256: sha256_hex(&bytes),
        path,
        file_name,
        arch,
    })
}

/// The architecture an ELF executable is for, from its header's `e_machine`.
pub fn elf_arch(bytes: &[u8]) -> Result<Arch, String> {
    if bytes.len() < 20 || !bytes.starts_with(b"\x7fELF") {
        return Err("is not a Linux (ELF) binary".into());
    }
    // EI_DATA (byte 5): 1 little-endian, 2 big-endian; e_machine is at offset 18.
    let machine = match bytes[5] {
        1 => u16::from_le_bytes([bytes[18], bytes[19]]),
        2 => u16::from_be_bytes([bytes[18], bytes[19]]),
        _ => return Err("has an ELF header of unknown byte order".into()),
    };
    Arch::from_elf_machine(machine)
        .ok_or_else(|| format!("is built for ELF machine {machine}, neither x86_64 nor arm64"))
}

/// Whether rustup installed the standard library for `arch` (the build needs it).
fn rust_target_installed(arch: Arch) -> bool {
    let Ok(out) = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
    else {
        return false;
    };
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    sysroot
        .join("lib/rustlib")
        .join(arch.rust_target())
        .join("lib")
        .is_dir()
}

/// Where `app/toolchain.sh` installs cargo-zigbuild and zig.
fn toolchain_dir() -> Option<PathBuf> {
    let cache = std::env::var_os("STACK_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/stack")))?;
    Some(cache.join("toolchain/bin"))
}

/// Where every `stack` command builds the app: one per-user directory whatever the
/// caller's `CARGO_TARGET_DIR` or working directory, so any command reuses the build
/// (a release build of the app takes minutes). `STACK_BUILD_DIR` overrides it.
pub fn build_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("STACK_BUILD_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("stack-target"))
}

fn on_path(name: &str, path: &std::ffi::OsStr) -> bool {
    std::env::split_paths(path).any(|d| d.join(name).is_file())
}

async fn build(
    package_dir: &Path,
    bin: Option<&str>,
    arch: Arch,
    say: crate::engine::Say<'_>,
) -> Result<PathBuf, Error> {
    if !rust_target_installed(arch) {
        let t = arch.rust_target();
        return Err(Error::Config(format!(
            "building the app for {arch} instances needs the Rust target {t}: run `rustup target add {t}`, or ship a prebuilt binary with `app: {{ {}: PATH }}`",
            if arch == Arch::Arm64 {
                "artifact_arm64"
            } else {
                "artifact"
            }
        )));
    }
    let target = target(arch);
    // Our toolchain directory goes first on the child's PATH, so its `zig` is found.
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = toolchain_dir().into_iter().collect();
    dirs.extend(std::env::split_paths(&inherited));
    let path = std::env::join_paths(dirs)
        .map_err(|e| Error::Config(format!("PATH cannot hold the toolchain directory: {e}")))?;
    if !on_path("cargo-zigbuild", &path) || !on_path("zig", &path) {
        return Err(Error::Config(NO_TOOLCHAIN.into()));
    }
    say(format!(
        "Building the app in {} for Amazon Linux 2023 ({target})…",
        package_dir.display()
    ));
    let mut cmd = tokio::process::Command::new("cargo-zigbuild");
    cmd.arg("zigbuild")
        .args(["--release", "--target", &target])
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
    match build_dir() {
        Some(dir) => cmd.env("CARGO_TARGET_DIR", dir),
        None => cmd.env_remove("CARGO_TARGET_DIR"),
    };
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
        .map_err(Error::io("cannot run cargo-zigbuild"))?;
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
    let status = child.wait().await.map_err(Error::io("cargo-zigbuild"))?;
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

    fn header(class_data: u8, machine: [u8; 2]) -> Vec<u8> {
        let mut h = b"\x7fELF\x02".to_vec();
        h.push(class_data);
        h.resize(18, 0);
        h.extend_from_slice(&machine);
        h.resize(64, 0);
        h
    }

    #[test]
    fn reads_the_architecture_from_the_elf_header() {
        assert_eq!(elf_arch(&header(1, [62, 0])), Ok(Arch::X86_64));
        assert_eq!(elf_arch(&header(1, [183, 0])), Ok(Arch::Arm64));
        assert_eq!(elf_arch(&header(2, [0, 183])), Ok(Arch::Arm64));
        assert!(elf_arch(&header(1, [40, 0])).unwrap_err().contains("40"));
        assert!(elf_arch(b"#!/bin/sh\necho hi\n").is_err());
    }

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
