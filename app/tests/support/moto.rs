//! A private moto server (AWS emulator) per test, plus SDK helpers to set up
//! a table and a bucket in it. Also included by `examples/loadbench.rs`.
//!
//! moto_server comes from `MOTO_SERVER`, else from `localstack/moto.sh path`
//! (which installs it on first use).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Generous: moto imports a lot of Python on start-up and the machine may be busy.
const READY_DEADLINE: Duration = Duration::from_secs(90);
const POLL_EVERY: Duration = Duration::from_millis(50);

/// A running moto_server child; killed when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

/// A port nothing listens on right now (bind to 0, read it, release it).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

pub fn moto_server_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("MOTO_SERVER") {
            return PathBuf::from(p);
        }
        // Run-time value first: a shared target dir may hold a binary built in another clone.
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let script = manifest_dir.join("../localstack/moto.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("path")
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(out.status.success(), "{} path failed", script.display());
        let text = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(
            text.lines()
                .last()
                .expect("moto.sh path printed nothing")
                .trim(),
        )
    })
    .clone()
}

impl Moto {
    pub async fn start() -> Moto {
        let bin = moto_server_path();
        let port = free_port();
        let log = std::env::temp_dir().join(format!("stack-app-moto-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("create moto log");
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if answers(port).await {
                return moto;
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited with {status}; see {}", log.display());
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer within {READY_DEADLINE:?}; see {}",
                log.display()
            );
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Creates a table (partition key `id`, S, on-demand) and a bucket.
    pub async fn create_table_and_bucket(&self, table: &str, bucket: &str) {
        let sdk = sdk_config().await;
        let ddb = ddb_client(&sdk, &self.endpoint);
        ddb.create_table()
            .table_name(table)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .expect("create table");
        s3_client(&sdk, &self.endpoint)
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("create bucket");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `GET /moto-api/` answers 200 on `port`.
async fn answers(port: u16) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let req =
        format!("GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    match tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head)).await {
        Ok(Ok(_)) => head.starts_with(b"HTTP/1.") && &head[9..12] == b"200",
        _ => false,
    }
}

/// Dummy credentials and region; the emulator accepts anything.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await
}

pub fn ddb_client(sdk: &SdkConfig, endpoint: &str) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk)
            .endpoint_url(endpoint)
            .build(),
    )
}

/// Stores the verifier (SHA-256) of `token` at `key`, overwriting: what `stack up`
/// and `stack token --rotate` do.
pub async fn put_verifier(endpoint: &str, bucket: &str, key: &str, token: &str) {
    s3_client(&sdk_config().await, endpoint)
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(stack_app::auth::digest(token).into_bytes().into())
        .send()
        .await
        .expect("put verifier");
}

pub fn s3_client(sdk: &SdkConfig, endpoint: &str) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .endpoint_url(endpoint)
            .force_path_style(true)
            .build(),
    )
}
