//! Configuration, read only from environment variables.
//!
//! Parsing goes through a lookup function so tests can feed a map instead of
//! mutating the process environment.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// Where the instance metadata service lives on every EC2 instance.
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";
/// Upper bound for `APP_CACHE_TTL_SECS`: a day of staleness is already absurd.
const MAX_CACHE_TTL_SECS: u64 = 86_400;
/// A write credential shorter than this is guessable.
const MIN_TOKEN_LEN: usize = 16;

/// Everything the app needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// DynamoDB table holding employees (partition key `id`, type S).
    pub table: String,
    /// S3 bucket holding photo thumbnails.
    pub bucket: String,
    pub region: String,
    pub bind: IpAddr,
    pub port: u16,
    /// Endpoint override for DynamoDB and S3 (a local emulator); S3 then uses path-style URLs.
    pub endpoint_url: Option<String>,
    /// TTL of the read cache; zero disables it.
    pub cache_ttl: Duration,
    pub stress_enabled: bool,
    /// `host:port` of the instance metadata service (plain HTTP).
    pub imds_authority: String,
    /// Where the credential every write must present comes from.
    pub write_token: WriteToken,
}

/// The write credential's source. `stack` always sets the verifier's key, never a
/// value: the value stays in Parameter Store.
#[derive(Clone, PartialEq, Eq)]
pub enum WriteToken {
    /// `APP_WRITE_TOKEN_VERIFIER`: the key, in `APP_BUCKET`, of the credential's
    /// SHA-256 (hex), read with the instance role.
    Verifier(String),
    /// `APP_WRITE_TOKEN`: the value itself, for local runs and tests.
    Fixed(String),
}

impl fmt::Debug for WriteToken {
    // Never the value: configs end up in logs and panic messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteToken::Verifier(key) => write!(f, "Verifier({key:?})"),
            WriteToken::Fixed(_) => f.write_str("Fixed(<redacted>)"),
        }
    }
}

/// A missing or malformed variable, phrased for a one-line error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.problem)
    }
}

impl std::error::Error for ConfigError {}

fn err(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        problem: problem.into(),
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads variables through `get`; empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let table = get("APP_TABLE")
            .ok_or_else(|| err("APP_TABLE", "is required (the DynamoDB table name)"))?;
        let bucket = get("APP_BUCKET")
            .ok_or_else(|| err("APP_BUCKET", "is required (the S3 bucket name)"))?;
        let region = get("APP_REGION")
            .or_else(|| get("AWS_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());

        let port = match get("APP_PORT") {
            None => 8080,
            Some(v) => match v.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => {
                    return Err(err(
                        "APP_PORT",
                        format!("must be a port number 1-65535, got {v:?}"),
                    ));
                }
            },
        };
        let bind = match get("APP_BIND") {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(v) => v
                .parse()
                .map_err(|_| err("APP_BIND", format!("must be an IP address, got {v:?}")))?,
        };
        let endpoint_url = match get("APP_ENDPOINT_URL") {
            None => None,
            Some(v) if v.starts_with("http://") || v.starts_with("https://") => Some(v),
            Some(v) => {
                return Err(err(
                    "APP_ENDPOINT_URL",
                    format!("must start with http:// or https://, got {v:?}"),
                ));
            }
        };
        let cache_ttl = match get("APP_CACHE_TTL_SECS") {
            None => Duration::from_secs(30),
            Some(v) => match v.parse::<u64>() {
                Ok(s) if s <= MAX_CACHE_TTL_SECS => Duration::from_secs(s),
                _ => {
                    return Err(err(
                        "APP_CACHE_TTL_SECS",
                        format!(
                            "must be a whole number of seconds 0-{MAX_CACHE_TTL_SECS}, got {v:?}"
                        ),
                    ));
                }
            },
        };
        let stress_enabled = match get("APP_STRESS_ENABLED").as_deref() {
            None | Some("0" | "false" | "no") => false,
            Some("1" | "true" | "yes") => true,
            Some(v) => {
                return Err(err(
                    "APP_STRESS_ENABLED",
                    format!("must be 1 or 0, got {v:?}"),
                ));
            }
        };
        let imds = get("APP_IMDS_ENDPOINT").unwrap_or_else(|| DEFAULT_IMDS_ENDPOINT.to_owned());
        let imds_authority = parse_http_authority(&imds).ok_or_else(|| {
            err(
                "APP_IMDS_ENDPOINT",
                format!("must look like http://host[:port], got {imds:?}"),
            )
        })?;

        let write_token = match (get("APP_WRITE_TOKEN_VERIFIER"), get("APP_WRITE_TOKEN")) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "APP_WRITE_TOKEN",
                    "set either it or APP_WRITE_TOKEN_VERIFIER, not both",
                ));
            }
            (Some(key), None) if !key.starts_with('/') && !key.starts_with("s3:") => {
                WriteToken::Verifier(key)
            }
            (Some(key), None) => {
                return Err(err(
                    "APP_WRITE_TOKEN_VERIFIER",
                    format!(
                        "must be an object key in APP_BUCKET (no leading / or s3://), got {key:?}"
                    ),
                ));
            }
            (None, Some(v)) if v.len() >= MIN_TOKEN_LEN => WriteToken::Fixed(v),
            (None, Some(_)) => {
                return Err(err(
                    "APP_WRITE_TOKEN",
                    format!("must be at least {MIN_TOKEN_LEN} characters"),
                ));
            }
            (None, None) => {
                return Err(err(
                    "APP_WRITE_TOKEN_VERIFIER",
                    "is required (the key in APP_BUCKET of the write credential's SHA-256; or APP_WRITE_TOKEN for a local run)",
                ));
            }
        };

        Ok(Config {
            table,
            bucket,
            region,
            bind,
            port,
            endpoint_url,
            cache_ttl,
            stress_enabled,
            imds_authority,
            write_token,
        })
    }
}

/// `http://host[:port][/]` to `host:port`; the metadata client speaks plain HTTP only.
fn parse_http_authority(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return None;
    }
    let uri: hyper::Uri = format!("http://{rest}/").parse().ok()?;
    let host = uri.host()?;
    Some(format!("{host}:{}", uri.port_u16().unwrap_or(80)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !map.contains_key("APP_WRITE_TOKEN") {
            map.entry("APP_WRITE_TOKEN_VERIFIER".into())
                .or_insert_with(|| ".stack/write-token.sha256".into());
        }
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_apply() {
        let c = parse(&[("APP_TABLE", "t"), ("APP_BUCKET", "b")]).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.cache_ttl, Duration::from_secs(30));
        assert!(!c.stress_enabled);
        assert_eq!(c.imds_authority, "169.254.169.254:80");
        assert_eq!(
            c.write_token,
            WriteToken::Verifier(".stack/write-token.sha256".into())
        );
    }

    #[test]
    fn the_write_token_is_required_and_never_printed() {
        let none = Config::from_lookup(|k| match k {
            "APP_TABLE" | "APP_BUCKET" => Some("x".into()),
            _ => None,
        });
        assert_eq!(none.unwrap_err().var, "APP_WRITE_TOKEN_VERIFIER");
        let secret = "correct-horse-battery-staple";
        let c = parse(&[
            ("APP_TABLE", "t"),
            ("APP_BUCKET", "b"),
            ("APP_WRITE_TOKEN", secret),
        ])
        .unwrap();
        assert_eq!(c.write_token, WriteToken::Fixed(secret.into()));
        assert!(!format!("{c:?}").contains(secret));
        let short = parse(&[
            ("APP_TABLE", "t"),
            ("APP_BUCKET", "b"),
            ("APP_WRITE_TOKEN", "abc"),
        ]);
        assert_eq!(short.unwrap_err().var, "APP_WRITE_TOKEN");
    }

    #[test]
    fn region_falls_back_to_aws_region() {
        let c = parse(&[
            ("APP_TABLE", "t"),
            ("APP_BUCKET", "b"),
            ("AWS_REGION", "eu-west-1"),
        ])
        .unwrap();
        assert_eq!(c.region, "eu-west-1");
        let c = parse(&[
            ("APP_TABLE", "t"),
            ("APP_BUCKET", "b"),
            ("AWS_REGION", "eu-west-1"),
            ("APP_REGION", "ap-south-1"),
        ])
        .unwrap();
        assert_eq!(c.region, "ap-south-1");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let base = [("APP_TABLE", "t"), ("APP_BUCKET", "b")];
        for (var, val) in [
            ("APP_PORT", "0"),
            ("APP_PORT", "http"),
            ("APP_BIND", "localhost"),
            ("APP_ENDPOINT_URL", "127.0.0.1:4566"),
            ("APP_CACHE_TTL_SECS", "-1"),
            ("APP_STRESS_ENABLED", "maybe"),
            ("APP_IMDS_ENDPOINT", "https://x"),
            ("APP_WRITE_TOKEN_VERIFIER", "s3://b/k"),
        ] {
            let mut vars = base.to_vec();
            vars.push((var, val));
            assert_eq!(parse(&vars).unwrap_err().var, var, "{var}={val}");
        }
        assert_eq!(parse(&[("APP_BUCKET", "b")]).unwrap_err().var, "APP_TABLE");
        assert_eq!(parse(&[("APP_TABLE", "t")]).unwrap_err().var, "APP_BUCKET");
    }

    #[test]
    fn imds_endpoint_override() {
        let c = parse(&[
            ("APP_TABLE", "t"),
            ("APP_BUCKET", "b"),
            ("APP_IMDS_ENDPOINT", "http://127.0.0.1:9/"),
        ])
        .unwrap();
        assert_eq!(c.imds_authority, "127.0.0.1:9");
    }
}
