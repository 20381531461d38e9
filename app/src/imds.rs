//! Where am I: hostname, and instance id and availability zone from EC2
//! instance metadata, through the AWS SDK's IMDSv2 client (`aws_config::imds`:
//! session tokens, their refresh, retries).
//!
//! The lookup runs once, in the background at start-up, and its result is
//! cached. Each attempt has a short connect and read timeout and the whole lookup
//! a hard cap, so off EC2 (nothing answers, or the address is unroutable) it falls
//! back to "unknown" in well under a second and never holds up start-up.

use std::time::Duration;

use aws_config::imds::Client;
use serde::Serialize;
use tokio::time::timeout;

const STEP_TIMEOUT: Duration = Duration::from_millis(300);
const TOTAL_TIMEOUT: Duration = Duration::from_millis(900);
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

/// The SHA-256 of the running executable: the digest `stack` deploys the build
/// under, so a deploy can tell through the load balancer which build answers.
pub fn build_digest() -> String {
    use sha2::Digest;
    std::env::current_exe()
        .and_then(std::fs::read)
        .map(|bytes| hex::encode(sha2::Sha256::digest(&bytes)))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Looks up instance metadata at `authority` (`host:port`); never fails, never takes more than ~1 s.
pub async fn lookup(authority: &str, hostname: String) -> HostInfo {
    match timeout(TOTAL_TIMEOUT, fetch(authority)).await {
        Ok(Ok((instance_id, availability_zone))) => {
            tracing::info!(
                instance_id = %instance_id,
                availability_zone = %availability_zone,
                "instance metadata read"
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
            tracing::warn!(
                endpoint = authority,
                error = %why,
                "instance metadata unavailable; not on EC2?"
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
    let client = Client::builder()
        .endpoint(format!("http://{authority}"))
        .map_err(|e| format!("endpoint: {e}"))?
        .connect_timeout(STEP_TIMEOUT)
        .read_timeout(STEP_TIMEOUT)
        // The cap above bounds the whole lookup; one retry fits inside it.
        .max_attempts(2)
        .build();
    let get = |path: &'static str| {
        let client = &client;
        async move {
            let value: String = client
                .get(path)
                .await
                .map_err(|e| format!("{path}: {e}"))?
                .into();
            let value = value.trim().to_owned();
            // Guard against a captive portal or proxy answering with a page.
            if value.is_empty() || value.len() > 256 || value.contains(char::is_whitespace) {
                return Err(format!("{path}: unexpected answer"));
            }
            Ok(value)
        }
    };
    // The client fetches one session token and reuses it for both.
    let id = get("/latest/meta-data/instance-id").await?;
    let az = get("/latest/meta-data/placement/availability-zone").await?;
    Ok((id, az))
}
