//! Shared test harness: the app served in-process on 127.0.0.1:0, talking to a
//! private moto server over HTTP with the real AWS SDK.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod http;
pub mod moto;

use std::collections::HashMap;
use std::io::Cursor;

use bytes::Bytes;
use serde_json::Value;
use stack_app::{AppState, Config};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::http::{Multipart, Resp};
use self::moto::Moto;

/// Where `stack` puts the write credential's verifier in the app bucket.
pub const VERIFIER_KEY: &str = ".stack/write-token.sha256";

/// Where the app's table and bucket live.
pub enum Backend {
    /// A fresh moto server with the table and bucket created.
    Moto,
    /// An existing endpoint and names, created or not.
    Shared {
        endpoint: String,
        table: String,
        bucket: String,
    },
    /// A closed loopback port: for tests that must not need AWS.
    Unreachable,
}

pub struct Options {
    pub backend: Backend,
    pub cache_ttl_secs: u64,
    pub stress: bool,
    /// `APP_IMDS_ENDPOINT`; defaults to a closed loopback port so tests never
    /// contact the real metadata address.
    pub imds: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backend: Backend::Moto,
            cache_ttl_secs: 30,
            stress: false,
            imds: None,
        }
    }
}

pub struct TestApp {
    pub base: String,
    /// The write credential the app expects; the helpers present it unless told not to.
    pub token: String,
    /// The key of its verifier in the bucket, when the backend is moto.
    pub token_verifier: Option<String>,
    pub state: AppState,
    pub moto: Option<Moto>,
    pub endpoint: String,
    pub table: String,
    pub bucket: String,
    pub ddb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:012x}", fastrand::u64(..) >> 16)
}

pub fn closed_endpoint() -> String {
    format!("http://127.0.0.1:{}", moto::free_port())
}

impl TestApp {
    pub async fn start(opts: Options) -> TestApp {
        let (moto, endpoint, table, bucket) = match opts.backend {
            Backend::Moto => {
                let m = Moto::start().await;
                let (t, b) = (unique("employees"), unique("photos"));
                m.create_table_and_bucket(&t, &b).await;
                let ep = m.endpoint.clone();
                (Some(m), ep, t, b)
            }
            Backend::Shared {
                endpoint,
                table,
                bucket,
            } => (None, endpoint, table, bucket),
            Backend::Unreachable => (
                None,
                closed_endpoint(),
                unique("employees"),
                unique("photos"),
            ),
        };
        let imds = opts.imds.unwrap_or_else(closed_endpoint);
        let token = unique("write-token");
        // Through a verifier in moto's S3, as on EC2, when there is a moto.
        let (token_var, token_verifier) = if moto.is_some() {
            let key = VERIFIER_KEY.to_owned();
            moto::put_verifier(&endpoint, &bucket, &key, &token).await;
            (("APP_WRITE_TOKEN_VERIFIER", key.clone()), Some(key))
        } else {
            (("APP_WRITE_TOKEN", token.clone()), None)
        };
        let vars = HashMap::from([
            token_var,
            ("APP_TABLE", table.clone()),
            ("APP_BUCKET", bucket.clone()),
            ("APP_REGION", "us-east-1".to_owned()),
            ("APP_ENDPOINT_URL", endpoint.clone()),
            ("APP_CACHE_TTL_SECS", opts.cache_ttl_secs.to_string()),
            (
                "APP_STRESS_ENABLED",
                if opts.stress { "1" } else { "0" }.to_owned(),
            ),
            ("APP_IMDS_ENDPOINT", imds),
        ]);
        let config = Config::from_lookup(|k| vars.get(k).cloned()).expect("test config");
        let sdk = moto::sdk_config().await;
        let state = AppState::new(config, &sdk);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(stack_app::serve(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        TestApp {
            base,
            token,
            token_verifier,
            state,
            moto,
            ddb: moto::ddb_client(&sdk, &endpoint),
            s3: moto::s3_client(&sdk, &endpoint),
            endpoint,
            table,
            bucket,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The `Authorization` value a signed-in user sends: Basic (as a browser would)
    /// on the admin pages, Bearer on the API.
    pub fn credential(&self, path: &str) -> String {
        use base64::Engine;
        if path.starts_with("/admin") {
            let pair = format!("admin:{}", self.token);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        } else {
            format!("Bearer {}", self.token)
        }
    }

    /// GET with the credential.
    pub async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, &[], Bytes::new()).await
    }

    /// A request with the credential.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        let auth = self.credential(path);
        let mut all = headers.to_vec();
        all.push(("authorization", &auth));
        http::send(method, &self.url(path), &all, body).await
    }

    /// A request as a stranger: exactly `headers`, no credential.
    pub async fn send_anonymous(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        http::send(method, &self.url(path), headers, body).await
    }

    pub async fn json(&self, method: &str, path: &str, body: &Value) -> Resp {
        self.send(
            method,
            path,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }

    pub async fn multipart(&self, method: &str, path: &str, form: Multipart) -> Resp {
        let (ct, body) = form.finish();
        self.send(method, path, &[("content-type", &ct)], body)
            .await
    }

    /// Items in the table, straight from DynamoDB.
    pub async fn items(&self) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let out = self
            .ddb
            .scan()
            .table_name(&self.table)
            .send()
            .await
            .expect("scan");
        out.items().to_vec()
    }

    /// The app's object keys in the bucket, straight from S3 (not the verifier `stack`
    /// keeps there).
    pub async fn object_keys(&self) -> Vec<String> {
        let out = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .send()
            .await
            .expect("list objects");
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .filter(|k| k != VERIFIER_KEY)
            .collect()
    }

    /// Asserts nothing was written to the table or the bucket.
    pub async fn assert_untouched(&self) {
        assert!(self.items().await.is_empty(), "table was written");
        assert!(self.object_keys().await.is_empty(), "bucket was written");
    }

    /// `/info?format=json`.
    pub async fn info(&self) -> Value {
        let r = self.get("/info?format=json").await;
        assert_eq!(r.status, 200);
        r.json()
    }

    /// Signals shutdown and waits for `serve` to return.
    pub async fn stop(mut self) -> std::io::Result<()> {
        let _ = self.shutdown.take().expect("running").send(());
        self.handle
            .take()
            .expect("running")
            .await
            .expect("serve task")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A valid employee as JSON.
pub fn employee_json(name: &str) -> Value {
    serde_json::json!({
        "full_name": name,
        "job_title": "Solutions Architect",
        "location": "Seattle",
        "badges": ["Mentor", "Innovator"],
    })
}

/// A `w`×`h` PNG with a gradient, made with the image crate.
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

/// The text fields of a valid form.
pub fn valid_form(name: &str) -> Multipart {
    Multipart::default()
        .text("full_name", name)
        .text("job_title", "Support Engineer")
        .text("location", "Dublin")
        .text("badges", "Team Player")
}
