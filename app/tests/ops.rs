//! Operational endpoints: health, metrics, info (instance metadata), stress,
//! and graceful shutdown.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use support::{Backend, Options, TestApp};
use tokio::net::TcpListener;

fn unreachable() -> Options {
    Options {
        backend: Backend::Unreachable,
        ..Options::default()
    }
}

/// "Reasonable" for anything that must not wait on AWS or metadata.
const QUICK: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_shallow_and_deep() {
    let app = TestApp::start(Options::default()).await;
    let r = app.get("/health").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));

    let r = app.get("/health?deep=1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"]["table"]["result"]["ok"], true);
    assert_eq!(body["checks"]["bucket"]["result"]["ok"], true);

    // Same emulator, but a bucket that does not exist.
    let endpoint = app.endpoint.clone();
    let no_bucket = TestApp::start(Options {
        backend: Backend::Shared {
            endpoint: endpoint.clone(),
            table: app.table.clone(),
            bucket: "no-such-bucket".into(),
        },
        ..Options::default()
    })
    .await;
    assert_eq!(
        no_bucket.get("/health").await.status,
        200,
        "shallow health makes no AWS call"
    );
    let r = no_bucket.get("/health?deep=1").await;
    assert_eq!(r.status, 503);
    let body = r.json();
    assert_eq!(body["failing"], serde_json::json!(["bucket"]));
    assert_eq!(body["checks"]["bucket"]["result"]["ok"], false);
    assert_eq!(body["checks"]["bucket"]["result"]["error"], "NotFound");
    assert_eq!(body["checks"]["table"]["result"]["ok"], true);

    let no_table = TestApp::start(Options {
        backend: Backend::Shared {
            endpoint,
            table: "no-such-table".into(),
            bucket: app.bucket.clone(),
        },
        ..Options::default()
    })
    .await;
    let r = no_table.get("/health?deep=1").await;
    assert_eq!(r.status, 503);
    let body = r.json();
    assert_eq!(body["failing"], serde_json::json!(["table"]));
    assert_eq!(
        body["checks"]["table"]["result"]["error"],
        "ResourceNotFoundException"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_expected_series() {
    let app = TestApp::start(unreachable()).await;
    assert_eq!(app.get("/health").await.status, 200);
    assert_eq!(app.get("/health").await.status, 200);
    // Ids that cannot exist are answered without AWS; the label must be the template.
    assert_eq!(app.get("/api/employees/not%20an%20id").await.status, 404);
    assert_eq!(app.get("/employees/also%20not").await.status, 404);
    assert_eq!(app.get("/random/junk/path").await.status, 404);

    let r = app.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text; version=1.0.0")
    );
    let m = r.text();
    for line in [
        "# TYPE http_requests counter",
        "http_requests_total{route=\"/health\",method=\"GET\",status=\"200\"} 2",
        "http_requests_total{route=\"/api/employees/{id}\",method=\"GET\",status=\"404\"} 1",
        "http_requests_total{route=\"/employees/{id}\",method=\"GET\",status=\"404\"} 1",
        "http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
        "# TYPE http_request_duration_seconds histogram",
        "http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/health\"} 2",
        "http_request_duration_seconds_count{route=\"/health\"} 2",
        "# TYPE cache_hits counter",
        "cache_hits_total 0",
        "# TYPE cache_misses counter",
        "cache_misses_total 0",
        "cache_stale_served_total 0",
        "cache_coalesced_total 0",
        "cache_fills_total 0",
        "# TYPE stress_running gauge",
        "stress_running 0",
        "# EOF",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
    assert!(
        m.lines()
            .any(|l| l.starts_with("http_request_duration_seconds_sum{route=\"/health\"} "))
    );
    assert!(m.lines().any(|l| {
        l.starts_with("http_request_duration_seconds_bucket{le=\"0.005\",route=\"/health\"} ")
    }));
    assert!(
        !m.contains("not an id") && !m.contains("junk"),
        "raw paths must not become labels"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_is_disabled_by_default() {
    let app = TestApp::start(unreachable()).await;
    let r = app.send("POST", "/info/stress?seconds=1", &[], "").await;
    assert_eq!(r.status, 403);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("APP_STRESS_ENABLED=1")
    );
    let info = app.info().await;
    assert_eq!(info["stress"]["enabled"], false);
    assert_eq!(info["stress"]["running"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_runs_one_at_a_time() {
    let app = TestApp::start(Options {
        stress: true,
        ..unreachable()
    })
    .await;
    // A GET (a crawler, a prefetching browser, an <img> tag) never burns CPU.
    assert_eq!(app.get("/info/stress?seconds=1").await.status, 405);
    assert_eq!(app.info().await["stress"]["running"], false);
    for bad in ["", "?seconds=0", "?seconds=601", "?seconds=ten"] {
        assert_eq!(
            app.send("POST", &format!("/info/stress{bad}"), &[], "")
                .await
                .status,
            400,
            "{bad}"
        );
    }
    let started = Instant::now();
    let r = app.send("POST", "/info/stress?seconds=1", &[], "").await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(
        started.elapsed() < QUICK,
        "returns at once, does not wait for the run"
    );
    let body = r.json();
    assert_eq!(body["seconds"], 1);
    assert!(body["threads"].as_u64().unwrap() >= 1);
    let r = app.send("POST", "/info/stress?seconds=1", &[], "").await;
    assert_eq!(
        r.status,
        409,
        "a second run while one is in progress: {}",
        r.text()
    );

    // When the run ends, the slot frees up again.
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.info().await["stress"]["running"] == true {
        assert!(Instant::now() < deadline, "stress run never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.send("POST", "/info/stress?seconds=1", &[], "")
            .await
            .status,
        202
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_falls_back_quickly_off_ec2() {
    // A closed port: refused at once.
    let app = TestApp::start(unreachable()).await;
    let started = Instant::now();
    let info = app.info().await;
    assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
    assert_eq!(info["hostname"], app.state.hostname.as_str());
    assert!(!app.state.hostname.is_empty());
    assert_eq!(info["instance_id"], "unknown");
    assert_eq!(info["availability_zone"], "unknown");
    assert_eq!(info["metadata_source"], "fallback");

    // Content negotiation: Accept header, and HTML by default.
    let r = app
        .send("GET", "/info", &[("accept", "application/json")], "")
        .await;
    assert_eq!(r.json()["instance_id"], "unknown");
    let r = app.get("/info").await;
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(
        r.text()
            .contains(&format!(r#"<dd class="mono">{}</dd>"#, app.state.hostname))
    );

    // A black hole (accepts, never answers), like an unroutable address: the timeouts bound it.
    let hole = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_url = format!("http://{}", hole.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            conns.push(s);
        }
    });
    let started = Instant::now();
    let app = TestApp::start(Options {
        imds: Some(hole_url),
        ..unreachable()
    })
    .await;
    assert_eq!(
        app.get("/health").await.status,
        200,
        "start-up does not wait for metadata"
    );
    let info = app.info().await;
    assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
    assert_eq!(info["instance_id"], "unknown");
    held.abort();
}

/// A fake IMDSv2: PUT /latest/api/token with a TTL header returns a token (and the
/// TTL header, as EC2 does);
/// metadata GETs answer only with that token.
async fn fake_imds() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let token_puts = Arc::new(AtomicUsize::new(0));
    let puts = token_puts.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let puts = puts.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let puts = puts.clone();
                async move {
                    let h = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let (status, body) = match (req.method().as_str(), req.uri().path()) {
                        ("PUT", "/latest/api/token")
                            if h("x-aws-ec2-metadata-token-ttl-seconds").is_some() =>
                        {
                            puts.fetch_add(1, Ordering::SeqCst);
                            (StatusCode::OK, "TOKEN-abc")
                        }
                        ("GET", _)
                            if h("x-aws-ec2-metadata-token").as_deref() != Some("TOKEN-abc") =>
                        {
                            (StatusCode::UNAUTHORIZED, "")
                        }
                        ("GET", "/latest/meta-data/instance-id") => {
                            (StatusCode::OK, "i-0fake1234567890")
                        }
                        ("GET", "/latest/meta-data/placement/availability-zone") => {
                            (StatusCode::OK, "us-east-1b")
                        }
                        _ => (StatusCode::NOT_FOUND, ""),
                    };
                    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                    *resp.status_mut() = status;
                    // Like the real service: the token's answer says how long it lives.
                    if let Some(ttl) = h("x-aws-ec2-metadata-token-ttl-seconds") {
                        resp.headers_mut()
                            .insert("x-aws-ec2-metadata-token-ttl-seconds", ttl.parse().unwrap());
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    (url, token_puts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_reads_imds_v2() {
    let (imds, token_puts) = fake_imds().await;
    let app = TestApp::start(Options {
        imds: Some(imds),
        ..unreachable()
    })
    .await;
    let info = app.info().await;
    assert_eq!(info["instance_id"], "i-0fake1234567890");
    assert_eq!(info["availability_zone"], "us-east-1b");
    assert_eq!(info["metadata_source"], "imds");
    // Looked up once, then cached.
    app.info().await;
    assert_eq!(token_puts.load(Ordering::SeqCst), 1);
    // Pages show it once known.
    let page = app.get("/no/such/page").await.text();
    assert!(
        page.contains("instance <b>i-0fake1234567890</b>")
            && page.contains("zone <b>us-east-1b</b>"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    // "AWS" that accepts connections and never answers: a deep health check
    // stays in flight until its own 3 s timeout.
    let hole = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", hole.local_addr().unwrap());
    let (accepted_tx, mut accepted_rx) = tokio::sync::mpsc::channel(8);
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            conns.push(s);
            let _ = accepted_tx.try_send(());
        }
    });
    let app = TestApp::start(Options {
        backend: Backend::Shared {
            endpoint,
            table: "t".into(),
            bucket: "b".into(),
        },
        ..Options::default()
    })
    .await;
    let url = app.url("/health?deep=1");
    let in_flight = tokio::spawn(async move { support::http::get(&url).await });
    // The app has called "AWS": the request is in flight.
    accepted_rx
        .recv()
        .await
        .expect("app connected to the endpoint");
    let stopped = tokio::spawn(app.stop());
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 503, "the in-flight request still got its answer");
    assert_eq!(r.json()["checks"]["table"]["result"]["error"], "timed out");
    stopped.await.unwrap().expect("serve returned cleanly");
    held.abort();
}
