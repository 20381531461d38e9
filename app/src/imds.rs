//! Where am I: hostname, and instance id and availability zone from EC2
//! instance metadata (IMDSv2).
//!
//! The lookup runs once, in the background at start-up, and its result is
//! cached. Each request has a short timeout and the whole lookup a hard cap,
//! so off EC2 (nothing answers, or the address is unroutable) it falls back to
//! "unknown" in well under a second and never holds up start-up.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::timeout;

const STEP_TIMEOUT: Duration = Duration::from_millis(300);
const TOTAL_TIMEOUT: Duration = Duration::from_millis(900);
const TOKEN_TTL_SECS: &str = "60";
pub const UNKNOWN: &str = "unknown";

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct HostInfo {
    pub hostname: String,
    pub instance_id: String,
    pub availability_zone: String,
    /// `"imds"` when read from instance metadata, `"fallback"` otherwise.
    pub source: &'static str,
}

/// The kernel's host name; what round-robin behind the load balancer shows.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// Looks up instance metadata at `authority` (`host:port`); never fails, never takes more than ~1 s.
pub async fn lookup(authority: &str, hostname: String) -> HostInfo {
    match timeout(TOTAL_TIMEOUT, fetch(authority)).await {
        Ok(Ok((instance_id, availability_zone))) => {
            crate::logging::info(
                "instance metadata read",
                &[
                    ("instance_id", instance_id.clone().into()),
                    ("availability_zone", availability_zone.clone().into()),
                ],
            );
            HostInfo {
                hostname,
                instance_id,
                availability_zone,
                source: "imds",
            }
        }
        outcome => {
            let why = match outcome {
                Ok(Err(e)) => e,
                _ => "timed out".to_owned(),
            };
            crate::logging::warn(
                "instance metadata unavailable; not on EC2?",
                &[("endpoint", authority.into()), ("error", why.into())],
            );
            HostInfo {
                hostname,
                instance_id: UNKNOWN.to_owned(),
                availability_zone: UNKNOWN.to_owned(),
                source: "fallback",
            }
        }
    }
}

async fn fetch(authority: &str) -> Result<(String, String), String> {
    let token = call(
        authority,
        Method::PUT,
        "/latest/api/token",
        ("x-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL_SECS),
    )
    .await?;
    let hdr = ("x-aws-ec2-metadata-token", token.as_str());
    let id = call(authority, Method::GET, "/latest/meta-data/instance-id", hdr).await?;
    let az = call(
        authority,
        Method::GET,
        "/latest/meta-data/placement/availability-zone",
        hdr,
    )
    .await?;
    Ok((id, az))
}

/// One request on its own connection, bounded by [`STEP_TIMEOUT`].
async fn call(
    authority: &str,
    method: Method,
    path: &str,
    header: (&str, &str),
) -> Result<String, String> {
    let work = async {
        let stream = TcpStream::connect(authority)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let conn = tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, authority)
            .header(header.0, header.1)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        conn.abort();
        if status != StatusCode::OK {
            return Err(format!("{path}: HTTP {status}"));
        }
        let text = String::from_utf8_lossy(&body).trim().to_owned();
        // Guard against a captive portal or proxy answering with a page.
        if text.is_empty() || text.len() > 256 || text.contains(char::is_whitespace) {
            return Err(format!("{path}: unexpected answer"));
        }
        Ok(text)
    };
    timeout(STEP_TIMEOUT, work)
        .await
        .map_err(|_| format!("{path}: timed out"))?
}
