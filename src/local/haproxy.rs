//! The load balancer of a local stack: HAProxy, configured from the live ELBv2
//! state (listeners, path rules in priority order, target groups and their health
//! checks), its backends the local instances. Reloaded in master-worker mode
//! (SIGUSR2) when the configuration changes; read through its runtime API.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A target group as HAProxy needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `<stack>-<service>`: the target group's name.
    pub name: String,
    pub health_path: String,
    /// The target group's check interval (scaled for tests), in milliseconds.
    pub interval_ms: u64,
    pub healthy: u32,
    pub unhealthy: u32,
    /// (instance id, local port) of the instances registered with it.
    pub servers: Vec<(String, u16)>,
}

/// A listener: the local port it is served on, its path rules in priority order
/// (ALB wildcard patterns, each to a backend), and its default backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend {
    pub listener_port: u16,
    pub local_port: u16,
    pub rules: Vec<(Vec<String>, String)>,
    pub default_backend: String,
}

/// An ALB path pattern (`*` any run of characters, `?` one) as a regex for `path_reg`.
pub fn path_regex(pattern: &str) -> String {
    let mut re = String::from("^");
    for c in pattern.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c if c.is_ascii_alphanumeric() || "/-_~%".contains(c) => re.push(c),
            c => {
                re.push('\\');
                re.push(c);
            }
        }
    }
    re.push('$');
    re
}

/// The whole configuration: deterministic, so an unchanged state means no reload.
pub fn config(dir: &Path, frontends: &[Frontend], backends: &[Backend]) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# Written by `stack up --local` from the live ELBv2 state; rewritten on every change.\n\
         global\n    stats socket {} mode 600 level admin\n    pidfile {}\n\n\
         defaults\n    mode http\n    option httplog\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
         \x20   # A request to an instance that just died goes to another one, as an ALB\n\
         \x20   # stops routing to a target that refuses connections.\n\
         \x20   # A reused connection to it fails with an empty or junk answer: try again.\n\
         \x20   option redispatch\n    retries 2\n    retry-on conn-failure empty-response junk-response\n",
        dir.join("haproxy.sock").display(),
        dir.join("haproxy.pid").display()
    );
    for f in frontends {
        let _ = writeln!(
            c,
            "frontend listener_{}\n    bind 127.0.0.1:{}",
            f.listener_port, f.local_port
        );
        for (i, (patterns, backend)) in f.rules.iter().enumerate() {
            let regexes: Vec<String> = patterns.iter().map(|p| path_regex(p)).collect();
            let _ = writeln!(c, "    acl rule_{i} path_reg {}", regexes.join(" "));
            let _ = writeln!(c, "    use_backend {backend} if rule_{i}");
        }
        let _ = writeln!(c, "    default_backend {}\n", f.default_backend);
    }
    for b in backends {
        let _ = writeln!(
            c,
            "backend {}\n    balance roundrobin\n    option httpchk GET {}\n    http-check expect status 200\n    default-server inter {}ms rise {} fall {}",
            b.name,
            b.health_path,
            b.interval_ms.max(100),
            b.healthy.max(1),
            b.unhealthy.max(1)
        );
        for (id, port) in &b.servers {
            let _ = writeln!(c, "    server {id} 127.0.0.1:{port} check");
        }
        c.push('\n');
    }
    c
}

/// The HAProxy of one local stack.
pub struct Haproxy {
    pub dir: PathBuf,
    child: Option<std::process::Child>,
    written: String,
}

impl Haproxy {
    pub fn new(dir: &Path) -> Haproxy {
        Haproxy {
            dir: dir.to_path_buf(),
            child: None,
            written: String::new(),
        }
    }

    /// Writes `cfg` and starts HAProxy, or reloads it when the configuration changed.
    pub fn apply(&mut self, cfg: &str) -> Result<(), String> {
        if cfg == self.written && self.running() {
            return Ok(());
        }
        let path = self.dir.join("haproxy.cfg");
        std::fs::write(&path, cfg).map_err(|e| format!("writing {}: {e}", path.display()))?;
        let check = std::process::Command::new("haproxy")
            .args(["-c", "-q", "-f"])
            .arg(&path)
            .output()
            .map_err(|e| format!("running haproxy: {e}"))?;
        if !check.status.success() {
            return Err(format!(
                "haproxy refused {}: {}",
                path.display(),
                String::from_utf8_lossy(&check.stderr).trim()
            ));
        }
        if self.running() {
            // Master-worker: SIGUSR2 re-reads the file; old workers finish their
            // connections.
            let pid = self.child.as_ref().map(|c| c.id()).unwrap_or_default();
            signal(pid, "USR2");
        } else {
            let log = std::fs::File::create(self.dir.join("haproxy.log"))
                .map_err(|e| format!("haproxy log: {e}"))?;
            let child = std::process::Command::new("haproxy")
                .args(["-W", "-db", "-f"])
                .arg(&path)
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log)
                .spawn()
                .map_err(|e| format!("starting haproxy: {e}"))?;
            self.child = Some(child);
        }
        self.written = cfg.to_string();
        Ok(())
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// One runtime API command (`show servers state`, `set server b/s state drain`).
    pub fn command(dir: &Path, cmd: &str) -> Result<String, String> {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(dir.join("haproxy.sock"))
            .map_err(|e| format!("haproxy runtime API: {e}"))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        s.write_all(format!("{cmd}\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        Ok(out)
    }

    /// Each server's state as HAProxy sees it: backend → server → `UP`/`DOWN`/`DRAIN`…
    pub fn server_states(dir: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let Ok(csv) = Haproxy::command(dir, "show stat") else {
            return out;
        };
        for line in csv.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() > 17 && f[1] != "FRONTEND" && f[1] != "BACKEND" {
                out.entry(f[0].to_string())
                    .or_default()
                    .insert(f[1].to_string(), f[17].to_string());
            }
        }
        out
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "TERM");
            let _ = c.wait();
        }
    }
}

pub fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alb_patterns_become_anchored_regexes() {
        assert_eq!(path_regex("/admin*"), "^/admin.*$");
        assert_eq!(path_regex("/s?/x.html"), "^/s./x\\.html$");
    }

    #[test]
    fn rules_keep_their_order_and_backends_their_checks() {
        let cfg = config(
            Path::new("/tmp/x"),
            &[Frontend {
                listener_port: 80,
                local_port: 8080,
                rules: vec![(vec!["/admin*".into()], "d-admin".into())],
                default_backend: "d-web".into(),
            }],
            &[Backend {
                name: "d-web".into(),
                health_path: "/health".into(),
                interval_ms: 10_000,
                healthy: 3,
                unhealthy: 2,
                servers: vec![("i-1".into(), 41001), ("i-2".into(), 41002)],
            }],
        );
        assert!(cfg.contains("bind 127.0.0.1:8080"), "{cfg}");
        assert!(cfg.contains("acl rule_0 path_reg ^/admin.*$\n    use_backend d-admin if rule_0"));
        assert!(cfg.contains("default_backend d-web"));
        assert!(cfg.contains("option httpchk GET /health"));
        assert!(cfg.contains("default-server inter 10000ms rise 3 fall 2"));
        assert!(cfg.contains("server i-2 127.0.0.1:41002 check"));
    }
}
