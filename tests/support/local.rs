//! `stack up --local` from a test: the real app, the AWS CLI on PATH for the user
//! data, the local data plane's files and its HAProxy port private to the test.

use super::*;
use std::io::{Read, Write};

pub struct LocalRun<'a> {
    pub moto: &'a Moto,
    pub file: String,
    pub http_port: u16,
    env: Vec<(&'static str, String)>,
}

impl<'a> LocalRun<'a> {
    pub fn new(moto: &'a Moto, w: &Workdir) -> LocalRun<'a> {
        w.use_real_app();
        let http_port = free_port();
        let aws_cli = Command::new(root().join("localstack/moto.sh"))
            .arg("aws")
            .output()
            .expect("localstack/moto.sh aws");
        let aws_dir = PathBuf::from(String::from_utf8_lossy(&aws_cli.stdout).trim())
            .parent()
            .expect("aws CLI dir")
            .to_path_buf();
        let path = std::env::join_paths(
            std::iter::once(aws_dir)
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
        )
        .unwrap();
        LocalRun {
            moto,
            file: w.file("stacks/web.yaml"),
            http_port,
            env: vec![
                ("STACK_LOCAL_DIR", w.file("local")),
                ("STACK_LOCAL_PORT_OFFSET", (http_port - 80).to_string()),
                ("PATH", path.to_string_lossy().into_owned()),
            ],
        }
    }

    /// `stack ARGS` with the run's environment (the stack file is not added).
    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = stack_command(&self.moto.url(), args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.output().expect("run stack")
    }

    /// The `local` part of `status --local --json`.
    pub fn state(&self) -> serde_json::Value {
        json(&self.run(&["status", &self.file, "--local", "--json"]))["local"].clone()
    }

    /// HAProxy's URL for the stack's first listener.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Waits up to `secs` for `cond` on the local state; panics with the last one.
    pub fn wait_for(
        &self,
        what: &str,
        secs: u64,
        cond: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.state();
            if cond(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {secs}s: {s:#}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A test that fails half-way leaves no supervisor behind: it stops its instances
/// and HAProxy on SIGTERM.
impl Drop for LocalRun<'_> {
    fn drop(&mut self) {
        let dir = self
            .env
            .iter()
            .find(|(k, _)| *k == "STACK_LOCAL_DIR")
            .map(|(_, v)| PathBuf::from(v).join("directory"));
        let Some(pid) = dir
            .and_then(|d| std::fs::read_to_string(d.join("supervisor.pid")).ok())
            .and_then(|p| p.trim().parse::<u32>().ok())
        else {
            return;
        };
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The ids of a service's running local instances.
pub fn running(s: &serde_json::Value, service: &str) -> Vec<String> {
    s["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["service"] == service && i["state"] == "running")
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

/// One HTTP/1.1 exchange on loopback: (status, head, body).
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut s = std::net::TcpStream::connect(authority).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}
