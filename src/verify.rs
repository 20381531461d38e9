//! Proof through the load balancer: after a roll, `up` asks the app through the
//! listener until every answer carries the new build.
//!
//! The app sends the SHA-256 of its own binary as `x-app-build` on every response;
//! `stack` deploys that binary under the same digest. Each rolled service is asked at
//! a path its listener rule sends to it (`/health` for the default service), and the
//! check passes when a run of consecutive answers all carry the new build: enough
//! that round robin has visited every target (twice the group's size, at least four).
//! Any status counts (`/admin` answers 401 without the credential): only the header
//! matters.

use crate::aws::{Error, wait_for};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The response header that names the build.
pub const BUILD_HEADER: &str = "x-app-build";

/// A service to check: where its rule sends requests, and the build it must answer with.
#[derive(Debug, Clone)]
pub struct Expect {
    pub service: String,
    pub path: String,
    pub build: String,
    /// Instances in the group: how many answers make a full round of round robin.
    pub instances: usize,
}

/// `http(s)://host[:port]/…` taken apart.
struct Target {
    tls: bool,
    host: String,
    port: u16,
}

/// Whether `url` can be asked (`--app-url`): checked before anything is written.
pub fn check_url(url: &str) -> Result<(), Error> {
    parse(url).map(drop)
}

fn parse(base: &str) -> Result<Target, Error> {
    let bad = || {
        Error::Config(format!(
            "--app-url `{base}` is not an http:// or https:// URL (like https://www.example.com)"
        ))
    };
    let (tls, rest) = if let Some(r) = base.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = base.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
        None => (authority, if tls { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Target {
        tls,
        host: host.to_string(),
        port,
    })
}

/// The `x-app-build` header of one GET, or None when the answer has none.
async fn build_of(t: &Target, path: &str) -> Result<Option<String>, String> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: stack-deploy-check\r\nConnection: close\r\n\r\n",
        t.host
    );
    let tcp = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect((t.host.as_str(), t.port)),
    )
    .await
    .map_err(|_| format!("connecting to {}:{} timed out", t.host, t.port))?
    .map_err(|e| format!("connecting to {}:{}: {e}", t.host, t.port))?;
    let head = if t.tls {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(t.host.clone())
            .map_err(|e| format!("`{}`: {e}", t.host))?;
        let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {}: {e}", t.host))?;
        exchange(&mut tls, &request).await?
    } else {
        let mut tcp = tcp;
        exchange(&mut tcp, &request).await?
    };
    Ok(head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(BUILD_HEADER)
            .then(|| v.trim().to_string())
    }))
}

/// Sends `request` and reads the response head (status line and headers).
async fn exchange<S>(s: &mut S, request: &str) -> Result<String, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let io = async {
        s.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    let head = String::from_utf8_lossy(&buf).into_owned();
    if !head.starts_with("HTTP/") {
        return Err("the answer is not HTTP".into());
    }
    Ok(head
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string())
}

fn short(build: &str) -> String {
    build.chars().take(12).collect::<String>() + "…"
}

/// Asks `base` until every service answers with its new build, within `timeout`.
/// Returns one line per service saying what was seen.
pub async fn builds_served(
    base: &str,
    expect: &[Expect],
    timeout: Duration,
    progress: &(dyn Fn(String) + Sync),
) -> Result<Vec<String>, Error> {
    let target = parse(base)?;
    let mut lines = Vec::new();
    for e in expect {
        let round = (2 * e.instances).max(4);
        let last = std::sync::Mutex::new(String::new());
        let checked = wait_for(
            &format!("service {}", e.service),
            "every answer to come from the new build",
            timeout,
            || async {
                let mut seen = Vec::new();
                for _ in 0..round {
                    seen.push(build_of(&target, &e.path).await);
                }
                let new = seen
                    .iter()
                    .filter(|b| matches!(b, Ok(Some(b)) if *b == e.build))
                    .count();
                if new == round {
                    return Ok(Some(()));
                }
                let other: Vec<String> = seen
                    .iter()
                    .filter_map(|b| match b {
                        Ok(Some(b)) if *b != e.build => Some(format!("build {}", short(b))),
                        Ok(Some(_)) => None,
                        Ok(None) => Some(format!("no {BUILD_HEADER} header")),
                        Err(why) => Some(why.clone()),
                    })
                    .collect();
                let msg = format!(
                    "{}: {new}/{round} answers at {} from build {}; others: {}",
                    e.service,
                    e.path,
                    short(&e.build),
                    other.first().cloned().unwrap_or_default()
                );
                progress(msg.clone());
                *last.lock().unwrap_or_else(|p| p.into_inner()) = msg;
                Ok(None)
            },
        )
        .await;
        match checked {
            Ok(()) => lines.push(format!(
                "{}: {round}/{round} answers at {base}{} came from build {}",
                e.service,
                e.path.trim_start_matches('/'),
                short(&e.build)
            )),
            Err(Error::Timeout { after, .. }) => {
                return Err(Error::Refused {
                    resource: format!("service {}", e.service),
                    reason: format!(
                        "the roll finished, but after {}s not every answer through {base} comes from the new build: {}",
                        after.as_secs(),
                        last.lock().unwrap_or_else(|p| p.into_inner())
                    ),
                });
            }
            Err(other) => return Err(other),
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A loopback server answering every request with `x-app-build` = `builds(n)` for
    /// the n-th request, and the paths it was asked for.
    async fn server(
        builds: impl Fn(usize) -> &'static str + Send + Sync + 'static,
    ) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let paths = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = paths.clone();
        let n = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let len = s.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..len]).into_owned();
                let path = req
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                seen.lock().unwrap().push(path);
                let build = builds(n.fetch_add(1, Ordering::SeqCst));
                let resp = format!(
                    "HTTP/1.1 401 Unauthorized\r\nx-app-build: {build}\r\ncontent-length: 0\r\n\r\n"
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        (base, paths)
    }

    fn expect(path: &str, build: &str) -> Vec<Expect> {
        vec![Expect {
            service: "admin".into(),
            path: path.into(),
            build: build.into(),
            instances: 1,
        }]
    }

    #[tokio::test]
    async fn passes_once_a_full_round_comes_from_the_new_build() {
        // The first answers come from an instance still on the old build.
        let (base, paths) = server(|n| if n < 3 { "old" } else { "new" }).await;
        let said = std::sync::Mutex::new(Vec::new());
        let lines = builds_served(
            &base,
            &expect("/admin", "new"),
            Duration::from_secs(30),
            &|m| said.lock().unwrap().push(m),
        )
        .await
        .unwrap();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("4/4 answers"), "{lines:?}");
        let said = said.lock().unwrap();
        assert!(said[0].contains("1/4 answers at /admin"), "{said:?}");
        assert!(said[0].contains("build old"), "{said:?}");
        assert!(paths.lock().unwrap().iter().all(|p| p == "/admin"));
    }

    #[tokio::test]
    async fn an_old_build_still_answering_fails_with_what_answered() {
        let (base, _) = server(|_| "old").await;
        let err = builds_served(
            &base,
            &expect("/health", "new"),
            Duration::from_millis(300),
            &|_| {},
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("service admin"), "{err}");
        assert!(err.contains("0/4 answers at /health"), "{err}");
        assert!(err.contains("build old"), "{err}");
    }

    #[tokio::test]
    async fn nothing_listening_is_reported_not_hung_on() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = builds_served(
            &format!("http://127.0.0.1:{port}"),
            &expect("/health", "new"),
            Duration::from_millis(300),
            &|_| {},
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("connecting to 127.0.0.1"), "{err}");
    }

    #[test]
    fn urls_are_taken_apart() {
        let t = parse("https://example.com/").unwrap();
        assert!(t.tls && t.host == "example.com" && t.port == 443);
        let t = parse("http://127.0.0.1:8080").unwrap();
        assert!(!t.tls && t.host == "127.0.0.1" && t.port == 8080);
        assert!(parse("ftp://x").is_err());
        assert!(parse("http://:80/").is_err());
    }
}
