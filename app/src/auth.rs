//! The write credential: every request that can change data (the `/admin` pages,
//! POST/PUT/PATCH/DELETE under `/api/`) must present it, as the password of HTTP
//! Basic (a browser prompts for it) or as `Authorization: Bearer <token>`.
//!
//! On EC2 the value lives in an SSM SecureString that `stack up` generated, and the
//! app never sees it: `stack` writes its SHA-256 (the *verifier*) to an object in the
//! app's bucket, and the app compares the digest of what a request presents. S3 is
//! reachable from a private subnet through the free gateway endpoint, where SSM would
//! need a paid interface endpoint; a digest of 256 random bits reveals nothing, so the
//! instance needs no grant on the secret itself. The app re-reads the verifier at
//! most every [`REFRESH`], and sooner when a request presents a credential that does
//! not match (a rotation just happened), at most every [`RECHECK`]: `stack token
//! --rotate` takes effect within seconds, and a client guessing cannot make the app
//! hammer S3. A failed re-read keeps the value it has.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::config::WriteToken;

/// How long a verifier read from S3 is trusted before it is read again.
pub const REFRESH: Duration = Duration::from_secs(30);
/// The soonest a mismatching credential triggers another read.
pub const RECHECK: Duration = Duration::from_secs(5);

/// What a request presented, and what the app makes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No credential, or not the right one.
    Denied,
    /// The app could not read its own credential (S3 unreachable since start).
    Unavailable,
}

#[derive(Debug)]
enum Source {
    /// The digest of a value given at start.
    Fixed(Arc<str>),
    Verifier {
        s3: aws_sdk_s3::Client,
        bucket: String,
        key: String,
    },
}

#[derive(Debug)]
pub struct WriteAuth {
    source: Source,
    /// The verifier (lowercase hex SHA-256) and when it was read.
    current: RwLock<Option<(Instant, Arc<str>)>>,
    /// One S3 read at a time; the others wait for its result.
    reading: tokio::sync::Mutex<()>,
}

impl WriteAuth {
    pub fn new(token: &WriteToken, s3: aws_sdk_s3::Client, bucket: &str) -> WriteAuth {
        let source = match token {
            WriteToken::Fixed(v) => Source::Fixed(digest(v).into()),
            WriteToken::Verifier(key) => Source::Verifier {
                s3,
                bucket: bucket.to_owned(),
                key: key.clone(),
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
            Source::Verifier { bucket, key, .. } => format!("s3://{bucket}/{key}"),
        }
    }

    /// Checks the `Authorization` header's value.
    pub async fn check(&self, authorization: Option<&str>) -> Verdict {
        let Some(presented) = authorization.and_then(presented_secret) else {
            return Verdict::Denied;
        };
        let presented = digest(&presented);
        if let Source::Fixed(v) = &self.source {
            return verdict(matches(&presented, v));
        }
        let Some((at, verifier)) = self.value(REFRESH).await else {
            return Verdict::Unavailable;
        };
        if matches(&presented, &verifier) {
            return Verdict::Allowed;
        }
        // Maybe rotated since the last read: look once more, if not just looked.
        if at.elapsed() < RECHECK {
            return Verdict::Denied;
        }
        match self.value(RECHECK).await {
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
    async fn value(&self, max_age: Duration) -> Option<(Instant, Arc<str>)> {
        let Source::Verifier { s3, bucket, key } = &self.source else {
            return None;
        };
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
        match read_verifier(s3, bucket, key).await {
            Ok(token) => {
                let v = (Instant::now(), token);
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(v.clone());
                Some(v)
            }
            Err((code, message)) => {
                tracing::error!(
                    verifier = %format!("s3://{bucket}/{key}"),
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

async fn read_verifier(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Arc<str>, (String, String)> {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            let code = e.code().unwrap_or("Unknown").to_owned();
            let message = e.message().map_or_else(|| e.to_string(), str::to_owned);
            (code, message)
        })?;
    let body = out
        .body
        .collect()
        .await
        .map_err(|e| ("ReadError".to_owned(), e.to_string()))?
        .into_bytes();
    let text = std::str::from_utf8(&body).unwrap_or_default().trim();
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase().into())
    } else {
        Err((
            "MalformedVerifier".into(),
            "the object is not a hex SHA-256 digest".into(),
        ))
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

/// The verifier of a credential: its SHA-256, lowercase hex (what `stack` writes).
pub fn digest(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
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

    #[test]
    fn the_verifier_is_the_hex_sha256() {
        // `printf %s abc | sha256sum`: what `stack` writes for the credential "abc".
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn a_fixed_token_allows_only_itself() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let auth = WriteAuth::new(
            &WriteToken::Fixed("0123456789abcdef".into()),
            aws_sdk_s3::Client::new(&sdk),
            "unused",
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
