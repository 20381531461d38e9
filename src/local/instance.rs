//! One local instance: an emulator's instance of an Auto Scaling group, run as a
//! process tree on this machine from its launch template's rendered user data, in its
//! own sandbox root (`STACK_ROOT`), with its own port on the loopback interface and
//! its own instance metadata endpoint, so the app runs unmodified.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The stand-in `systemctl` every sandbox runs its unit with.
pub const SYSTEMCTL: &str = include_str!("../../localstack/instance/systemctl");
/// The unit the app's user data installs.
const UNIT: &str = "stack-app.service";

pub struct Instance {
    pub id: String,
    pub service: String,
    pub zone: String,
    /// The port the app listens on (127.0.0.1).
    pub port: u16,
    pub root: PathBuf,
    /// The stand-in `systemctl` the instance's unit runs under.
    systemctl: PathBuf,
    boot: Option<Child>,
    imds: tokio::task::JoinHandle<()>,
    /// CPU ticks of the app at the last sample.
    last_ticks: Option<u64>,
}

/// A free port on the loopback interface.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The instance metadata an app asks for (IMDSv2: a token first), per instance.
async fn serve_metadata(listener: tokio::net::TcpListener, id: String, zone: String) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let (id, zone) = (id.clone(), zone.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let Ok(n) = s.read(&mut buf).await else {
                return;
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let mut words = req.split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let body = match (method, path) {
                ("PUT", "/latest/api/token") => Some(format!("local-token-{id}")),
                ("GET", "/latest/meta-data/instance-id") => Some(id),
                ("GET", "/latest/meta-data/placement/availability-zone") => Some(zone),
                _ => None,
            };
            let resp = match body {
                Some(b) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nx-aws-ec2-metadata-token-ttl-seconds: 21600\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                    b.len()
                ),
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string(),
            };
            let _ = s.write_all(resp.as_bytes()).await;
        });
    }
}

impl Instance {
    /// Boots an instance: its sandbox, metadata endpoint and user data (in the
    /// background; the app starts when the script has installed it).
    pub async fn boot(
        dir: &Path,
        id: &str,
        service: &str,
        zone: &str,
        user_data: &str,
    ) -> Result<Instance, String> {
        let home = dir.join("instances").join(id);
        let root = home.join("root");
        std::fs::create_dir_all(root.join("etc")).map_err(|e| e.to_string())?;
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
        let systemctl = bin.join("systemctl");
        if std::fs::read_to_string(&systemctl).ok().as_deref() != Some(SYSTEMCTL) {
            std::fs::write(&systemctl, SYSTEMCTL).map_err(|e| e.to_string())?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())?;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let imds_port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let imds = tokio::spawn(serve_metadata(listener, id.into(), zone.into()));
        let port = free_port().map_err(|e| e.to_string())?;
        std::fs::write(
            root.join("etc/stack-local.env"),
            format!("APP_BIND=127.0.0.1\nAPP_IMDS_ENDPOINT=http://127.0.0.1:{imds_port}\n"),
        )
        .map_err(|e| e.to_string())?;
        let script = home.join("user-data.sh");
        std::fs::write(&script, user_data).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(home.join("boot.log")).map_err(|e| e.to_string())?;
        let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )))
        .map_err(|e| e.to_string())?;
        // An emulator takes any credentials; the script's AWS CLI and the app need some.
        let var = |k: &str, default: &str| std::env::var(k).unwrap_or_else(|_| default.into());
        let boot = Command::new("bash")
            .arg(&script)
            .env("AWS_ACCESS_KEY_ID", var("AWS_ACCESS_KEY_ID", "test"))
            .env(
                "AWS_SECRET_ACCESS_KEY",
                var("AWS_SECRET_ACCESS_KEY", "test"),
            )
            .env("STACK_ROOT", &root)
            .env("STACK_LOCAL_PORT", port.to_string())
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("running the user data of {id}: {e}"))?;
        Ok(Instance {
            id: id.into(),
            service: service.into(),
            zone: zone.into(),
            port,
            root,
            systemctl,
            boot: Some(boot),
            imds,
            last_ticks: None,
        })
    }

    /// The app's process id, once the user data has started it.
    pub fn app_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.root.join(format!("run/{UNIT}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether the user data is still running.
    pub fn booting(&mut self) -> bool {
        self.boot
            .as_mut()
            .is_some_and(|b| matches!(b.try_wait(), Ok(None)))
    }

    /// Whether the app process is gone after having been started (a crash).
    pub fn crashed(&mut self) -> bool {
        !self.booting()
            && self
                .app_pid()
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    }

    /// CPU use of the app since the last sample, in percent of this machine's cores
    /// (one core of two busy is 50 %), over `window` seconds.
    pub fn cpu_percent(&mut self, window: f64) -> f64 {
        let Some(ticks) = self.app_pid().and_then(process_ticks) else {
            self.last_ticks = None;
            return 0.0;
        };
        let before = self.last_ticks.replace(ticks);
        let Some(before) = before else {
            return 0.0;
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        // Linux counts CPU time in clock ticks of 1/100 s.
        let secs = ticks.saturating_sub(before) as f64 / 100.0;
        (100.0 * secs / (window.max(0.001) * cores)).min(100.0)
    }

    /// Stops the app as systemd would (SIGTERM, time to drain) and the rest.
    pub fn stop(&mut self) {
        if let Some(mut b) = self.boot.take() {
            let _ = b.kill();
            let _ = b.wait();
        }
        let _ = Command::new(&self.systemctl)
            .args(["stop", UNIT])
            .env("STACK_ROOT", &self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.imds.abort();
    }
}

/// utime + stime of a process, in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing paren.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}
