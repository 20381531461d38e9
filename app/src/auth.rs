//! The write credential: every request that can change data (the `/admin` pages,
//! POST/PUT/PATCH/DELETE under `/api/`) must present it, as the password of HTTP
//! Basic (a browser prompts for it) or as `Authorization: Bearer <token>`.
//!
//! On EC2 the value lives in an SSM SecureString that `stack up` generated; the app
//! knows only the parameter's name and reads the value with the instance role. It
//! re-reads at most every [`REFRESH`], and sooner when a request presents a
//! credential that does not match (a rotation just happened), at most every
//! [`RECHECK`]: `stack token --rotate` takes effect within seconds, and a client
//! guessing cannot make the app hammer SSM. A failed re-read keeps the value it has.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::config::WriteToken;

/// How long a value read from SSM is trusted before it is read again.
pub const REFRESH: Duration = Duration::from_secs(30);
/// The soonest a mismatching credential triggers another read.
pub const RECHECK: Duration = Duration::from_secs(5);

/// What a request presented, and what the app makes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No credential, or not the right one.
    Denied,
    /// The app could not read its own credential (SSM unreachable since start).
    Unavailable,
}

#[derive(Debug)]
enum Source {
    Fixed(Arc<str>),
    Parameter {
        ssm: aws_sdk_ssm::Client,
        name: String,
    },
}

#[derive(Debug)]
pub struct WriteAuth {
    source: Source,
    current: RwLock<Option<(Instant, Arc<str>)>>,
    /// One SSM read at a time; the others wait for its result.
    reading: tokio::sync::Mutex<()>,
}

impl WriteAuth {
    pub fn new(token: &WriteToken, ssm: aws_sdk_ssm::Client) -> WriteAuth {
        let source = match token {
            WriteToken::Fixed(v) => Source::Fixed(v.as_str().into()),
            WriteToken::Parameter(name) => Source::Parameter {
                ssm,
                name: name.clone(),
            },
        };
        WriteAuth {
            source,
            current: RwLock::new(None),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// Where the credential comes from, for `/info` and the start-up log.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Fixed(_) => "APP_WRITE_TOKEN".to_owned(),
            Source::Parameter { name, .. } => format!("ssm:{name}"),
        }
    }

    /// Checks the `Authorization` header's value.
    pub async fn check(&self, authorization: Option<&str>) -> Verdict {
        let Some(presented) = authorization.and_then(presented_secret) else {
            return Verdict::Denied;
        };
        let ssm = match &self.source {
            Source::Fixed(v) => return verdict(matches(&presented, v)),
            Source::Parameter { ssm, name } => (ssm, name.as_str()),
        };
        let Some((at, token)) = self.value(ssm, REFRESH).await else {
            return Verdict::Unavailable;
        };
        if matches(&presented, &token) {
            return Verdict::Allowed;
        }
        // Maybe rotated since the last read: look once more, if not just looked.
        if at.elapsed() < RECHECK {
            return Verdict::Denied;
        }
        match self.value(ssm, RECHECK).await {
            Some((_, fresh)) => verdict(matches(&presented, &fresh)),
            None => Verdict::Denied,
        }
    }

    fn cached(&self) -> Option<(Instant, Arc<str>)> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The value, read again when older than `max_age`; a failed read keeps the old one.
    async fn value(
        &self,
        (ssm, name): (&aws_sdk_ssm::Client, &str),
        max_age: Duration,
    ) -> Option<(Instant, Arc<str>)> {
        let fresh = |c: &Option<(Instant, Arc<str>)>| {
            c.as_ref().filter(|(at, _)| at.elapsed() < max_age).cloned()
        };
        if let Some(v) = fresh(&self.cached()) {
            return Some(v);
        }
        let _one_reader = self.reading.lock().await;
        // Another request may have read it while this one waited.
        if let Some(v) = fresh(&self.cached()) {
            return Some(v);
        }
        match read_parameter(ssm, name).await {
            Ok(token) => {
                let v = (Instant::now(), token);
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(v.clone());
                Some(v)
            }
            Err((code, message)) => {
                tracing::error!(
                    parameter = name,
                    code = %code,
                    error = %message,
                    "cannot read the write credential"
                );
                self.cached()
            }
        }
    }
}

fn verdict(ok: bool) -> Verdict {
    if ok {
        Verdict::Allowed
    } else {
        Verdict::Denied
    }
}

async fn read_parameter(
    ssm: &aws_sdk_ssm::Client,
    name: &str,
) -> Result<Arc<str>, (String, String)> {
    use aws_sdk_ssm::error::ProvideErrorMetadata;
    let out = ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| {
            let code = e.code().unwrap_or("Unknown").to_owned();
            let message = e.message().map_or_else(|| e.to_string(), str::to_owned);
            (code, message)
        })?;
    match out.parameter().and_then(|p| p.value()) {
        Some(v) if !v.is_empty() => Ok(v.into()),
        _ => Err(("EmptyValue".into(), "the parameter has no value".into())),
    }
}

/// The secret in `Bearer <token>` or `Basic base64(user:password)`; the user name of
/// Basic is ignored (a browser needs one; any will do).
fn presented_secret(header: &str) -> Option<String> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_owned()).filter(|s| !s.is_empty());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return Some(password.to_owned()).filter(|s| !s.is_empty());
    }
    None
}

/// Compares in time independent of where the strings differ.
fn matches(presented: &str, token: &str) -> bool {
    let (a, b) = (presented.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn both_schemes_carry_the_secret() {
        assert_eq!(presented_secret("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(presented_secret("bearer  abc ").as_deref(), Some("abc"));
        assert_eq!(
            presented_secret(&basic("admin", "s:e:cret")).as_deref(),
            Some("s:e:cret")
        );
        assert_eq!(presented_secret(&basic("admin", "")), None);
        assert_eq!(presented_secret("Basic !!!"), None);
        assert_eq!(presented_secret("Digest abc"), None);
        assert_eq!(presented_secret("Bearer"), None);
    }

    #[test]
    fn comparison_needs_every_byte() {
        assert!(matches("abcdef", "abcdef"));
        assert!(!matches("abcdeg", "abcdef"));
        assert!(!matches("abcde", "abcdef"));
        assert!(!matches("", "abcdef"));
    }

    #[tokio::test]
    async fn a_fixed_token_allows_only_itself() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let auth = WriteAuth::new(
            &WriteToken::Fixed("0123456789abcdef".into()),
            aws_sdk_ssm::Client::new(&sdk),
        );
        assert_eq!(auth.check(None).await, Verdict::Denied);
        assert_eq!(auth.check(Some("Bearer nope")).await, Verdict::Denied);
        assert_eq!(
            auth.check(Some("Bearer 0123456789abcdef")).await,
            Verdict::Allowed
        );
        assert_eq!(
            auth.check(Some(&basic("x", "0123456789abcdef"))).await,
            Verdict::Allowed
        );
    }
}
