//! Loopback load generator: requests/s and p50/p99 latency for a bare hyper
//! "hello world" (the ceiling), `/health`, `/info`, the HTML list and the JSON
//! list from a warm cache, the same two from a cold start with a 2 s TTL (so the
//! p99 covers the first fill and several expiries), and an uncached
//! `GET /api/employees/{id}` (cache TTL 0, so every request reads moto), all in
//! this one process against a private moto server with 20 employees.
//!
//! ```text
//! cargo run --release -p stack-app --example loadbench -- [--connections 20] [--seconds 10] > /dev/null
//! ```
//!
//! Results go to stderr; stdout carries the app's JSON request logs (part of
//! the real per-request cost, so they are kept and sent to /dev/null).
//! It prints numbers and asserts nothing. Client, servers and moto share the
//! machine's cores, so treat the numbers as relative, not absolute.

#[path = "../tests/support/moto.rs"]
#[allow(dead_code)]
mod moto;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use stack_app::{AppState, Config};
use tokio::net::{TcpListener, TcpStream};

/// The cache TTL of the rows that measure a cold start and expiries inside the run.
const EXPIRY_TTL_SECS: u64 = 2;

/// The write credential of the benchmark's app instances (seeding writes).
const BENCH_TOKEN: &str = "loadbench-write-token";

struct Args {
    connections: usize,
    seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        connections: 20,
        seconds: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let val = it.next().and_then(|v| v.parse::<u64>().ok());
        match (flag.as_str(), val) {
            ("--connections", Some(v)) if (1..=1024).contains(&v) => a.connections = v as usize,
            ("--seconds", Some(v)) if (1..=120).contains(&v) => a.seconds = v,
            _ => {
                eprintln!("usage: loadbench [--connections 1..1024] [--seconds 1..120]");
                std::process::exit(2);
            }
        }
    }
    a
}

#[tokio::main]
async fn main() {
    let args = args();
    // The JSON request log lines are part of the real per-request cost.
    stack_app::logging::init();
    eprintln!("starting moto...");
    let moto = moto::Moto::start().await;
    let (table, bucket) = ("bench-employees", "bench-photos");
    moto.create_table_and_bucket(table, bucket).await;

    let cached = start_app(&moto.endpoint, table, bucket, 30).await;
    let uncached = start_app(&moto.endpoint, table, bucket, 0).await;
    let hello = start_hello().await;

    // Seed a realistic directory page.
    let mut some_id = String::new();
    for i in 0..20 {
        let body = serde_json::json!({
            "full_name": format!("Employee {i:02}"),
            "job_title": "Engineer",
            "location": "Seattle",
            "badges": ["Mentor", "Team Player"],
        })
        .to_string();
        let (status, resp) = request(cached, "POST", "/api/employees", Some(body)).await;
        assert_eq!(status, 201, "seeding failed: {resp}");
        let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
        some_id = v["id"].as_str().unwrap().to_owned();
    }

    // Apps for the expiry rows start now and see no request before their run: their
    // first requests meet an empty cache, and a short TTL expires several times.
    let expiring_json = start_app(&moto.endpoint, table, bucket, EXPIRY_TTL_SECS).await;
    let expiring_html = start_app(&moto.endpoint, table, bucket, EXPIRY_TTL_SECS).await;
    // Warm the long-TTL app's cache, as a running instance's would be.
    for path in ["/", "/api/employees"] {
        let (status, _) = request(cached, "GET", path, None).await;
        assert_eq!(status, 200);
    }
    let expiry = format!("cold start + {EXPIRY_TTL_SECS} s TTL");
    let targets = [
        (
            "bare hyper hello world (ceiling)".to_owned(),
            hello,
            "/".to_owned(),
        ),
        ("GET /health".to_owned(), cached, "/health".to_owned()),
        ("GET /info (HTML)".to_owned(), cached, "/info".to_owned()),
        (
            "GET / (HTML list, cached)".to_owned(),
            cached,
            "/".to_owned(),
        ),
        (
            "GET /api/employees (cached JSON)".to_owned(),
            cached,
            "/api/employees".to_owned(),
        ),
        (format!("GET / ({expiry})"), expiring_html, "/".to_owned()),
        (
            format!("GET /api/employees ({expiry})"),
            expiring_json,
            "/api/employees".to_owned(),
        ),
        (
            "GET /api/employees/{id} (TTL 0, reads coalesced)".to_owned(),
            uncached,
            format!("/api/employees/{some_id}"),
        ),
    ];
    eprintln!(
        "\n{} connections, {} s per target, loopback, {} cores\n",
        args.connections,
        args.seconds,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    eprintln!(
        "{:<48} {:>10} {:>10} {:>10} {:>8}",
        "target", "req/s", "p50 ms", "p99 ms", "errors"
    );
    for (name, addr, path) in targets {
        let (lat, errors) = load(
            addr,
            &path,
            args.connections,
            Duration::from_secs(args.seconds),
        )
        .await;
        let rps = lat.len() as f64 / args.seconds as f64;
        eprintln!(
            "{name:<48} {rps:>10.0} {:>10.2} {:>10.2} {errors:>8}",
            pct(&lat, 0.50),
            pct(&lat, 0.99)
        );
    }
    drop(moto);
}

/// Percentile of sorted latencies (µs) in ms.
fn pct(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted_us[i]) / 1000.0
}

async fn start_app(endpoint: &str, table: &str, bucket: &str, ttl: u64) -> SocketAddr {
    let imds = format!("http://127.0.0.1:{}", moto::free_port());
    let vars = HashMap::from([
        ("APP_TABLE", table.to_owned()),
        ("APP_BUCKET", bucket.to_owned()),
        ("APP_ENDPOINT_URL", endpoint.to_owned()),
        ("APP_CACHE_TTL_SECS", ttl.to_string()),
        ("APP_IMDS_ENDPOINT", imds),
        ("APP_WRITE_TOKEN", BENCH_TOKEN.to_owned()),
    ]);
    let config = Config::from_lookup(|k| vars.get(k).cloned()).expect("config");
    let state = AppState::new(config, &moto::sdk_config().await);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(stack_app::serve(listener, state, std::future::pending()));
    addr
}

/// The ceiling: hyper answering a constant, no routing, no logging.
async fn start_hello() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let svc = hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello world"))))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    addr
}

/// One request on a fresh connection; for seeding.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<String>,
) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {BENCH_TOKEN}"))
        .body(Full::new(Bytes::from(json.unwrap_or_default())))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// `conns` keep-alive connections sending GET `path` back to back for `dur`.
/// Returns sorted latencies (µs) of successful requests, and the error count.
async fn load(addr: SocketAddr, path: &str, conns: usize, dur: Duration) -> (Vec<u32>, u64) {
    let deadline = Instant::now() + dur;
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let path = path.to_owned();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                'conn: while Instant::now() < deadline {
                    let Ok(stream) = TcpStream::connect(addr).await else {
                        errors += 1;
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let Ok((mut tx, conn)) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                    else {
                        errors += 1;
                        continue;
                    };
                    tokio::spawn(conn);
                    while Instant::now() < deadline {
                        let req = Request::get(path.as_str())
                            .header("host", addr.to_string())
                            .body(Empty::<Bytes>::new())
                            .unwrap();
                        let start = Instant::now();
                        let Ok(resp) = tx.send_request(req).await else {
                            errors += 1;
                            continue 'conn;
                        };
                        let ok = resp.status().is_success();
                        let body = resp.into_body().collect().await;
                        if ok && body.is_ok() {
                            lat.push(start.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                        } else {
                            errors += 1;
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (lat, e) = w.await.unwrap();
        all.extend(lat);
        errors += e;
    }
    all.sort_unstable();
    (all, errors)
}
