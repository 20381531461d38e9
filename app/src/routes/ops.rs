//! Operational endpoints: `/health`, `/info`, `/info/stress`, `/metrics`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};

use super::json_error;
use crate::state::AppState;
use crate::store::StoreError;
use crate::stress::{MAX_SECONDS, StressError};
use crate::views::{self, PageCtx};

/// A deep check that takes longer than this counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

fn truthy(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key)
        .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes" | ""))
}

/// Shallow: no AWS call, for the load balancer's health check. `?deep=1`: also
/// reads the table and the bucket, and answers 503 naming what failed.
pub async fn health(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !truthy(&q, "deep") {
        return ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok").into_response();
    }
    async fn timed(f: impl Future<Output = Result<(), StoreError>>) -> Value {
        let start = Instant::now();
        let outcome = tokio::time::timeout(CHECK_TIMEOUT, f).await;
        let ms = (start.elapsed().as_secs_f64() * 1000.0).round();
        match outcome {
            Ok(Ok(())) => json!({ "ok": true, "ms": ms }),
            Ok(Err(e)) => {
                crate::state::log_store_error(&e);
                json!({ "ok": false, "ms": ms, "error": e.code })
            }
            Err(_) => json!({ "ok": false, "ms": ms, "error": "timed out" }),
        }
    }
    let (table, bucket) = tokio::join!(
        timed(state.store.check_table()),
        timed(state.store.check_bucket())
    );
    let failing: Vec<&str> = [("table", &table), ("bucket", &bucket)]
        .iter()
        .filter(|(_, v)| v["ok"] != true)
        .map(|(k, _)| *k)
        .collect();
    let body = json!({
        "status": if failing.is_empty() { "ok" } else { "fail" },
        "failing": failing,
        "checks": {
            "table": { "name": state.config.table, "result": table },
            "bucket": { "name": state.config.bucket, "result": bucket },
        },
    });
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Hostname, instance id and zone, plus cache and stress state. JSON when asked
/// for with `Accept: application/json` or `?format=json`.
pub async fn info(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let host = state.host_info().await.clone();
    let wants_json = q.get("format").is_some_and(|f| f == "json")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json"));
    let cache = &state.cache;
    if wants_json {
        return Json(json!({
            "hostname": host.hostname,
            "instance_id": host.instance_id,
            "availability_zone": host.availability_zone,
            "metadata_source": host.source,
            "version": env!("CARGO_PKG_VERSION"),
            "build": state.build,
            "cache": {
                "ttl_secs": cache.ttl().as_secs(),
                "hits": cache.stats.hits.get(),
                "stale": cache.stats.stale.get(),
                "misses": cache.stats.misses.get(),
                "fills": cache.stats.fills.get(),
            },
            "stress": { "enabled": state.stress.enabled(), "running": state.stress.running() },
        }))
        .into_response();
    }
    let pairs = [
        ("Hostname", host.hostname.clone()),
        ("Instance id", host.instance_id.clone()),
        ("Availability zone", host.availability_zone.clone()),
        ("Metadata source", host.source.to_owned()),
        ("App version", env!("CARGO_PKG_VERSION").to_owned()),
        ("Build (SHA-256)", state.build.clone()),
        ("Cache TTL", format!("{} s", cache.ttl().as_secs())),
        (
            "Cache hits / misses",
            format!("{} / {}", cache.stats.hits.get(), cache.stats.misses.get()),
        ),
        (
            "Stress endpoint",
            match (state.stress.enabled(), state.stress.running()) {
                (false, _) => "disabled".to_owned(),
                (true, false) => "enabled, idle".to_owned(),
                (true, true) => "enabled, running".to_owned(),
            },
        ),
    ];
    Html(views::info(&PageCtx::from_state(&state), &pairs)).into_response()
}

pub async fn stress(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !state.stress.enabled() {
        return json_error(
            StatusCode::FORBIDDEN,
            "the stress endpoint is disabled; start the app with APP_STRESS_ENABLED=1 to enable it",
        );
    }
    let Some(seconds) = q.get("seconds").and_then(|s| s.parse::<u64>().ok()) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            &format!("pass ?seconds=N with N from 1 to {MAX_SECONDS}"),
        );
    };
    match state.stress.start(seconds) {
        Ok(threads) => {
            tracing::info!(seconds, threads, "stress started");
            (
                StatusCode::ACCEPTED,
                Json(json!({ "started": true, "seconds": seconds, "threads": threads, "host": state.hostname })),
            )
                .into_response()
        }
        Err(StressError::Busy) => {
            json_error(StatusCode::CONFLICT, "a stress run is already in progress")
        }
        Err(StressError::BadSeconds) => json_error(
            StatusCode::BAD_REQUEST,
            &format!("seconds must be from 1 to {MAX_SECONDS}"),
        ),
        Err(StressError::Disabled) => {
            json_error(StatusCode::FORBIDDEN, "the stress endpoint is disabled")
        }
        Err(StressError::Spawn(e)) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("could not start: {e}"),
        ),
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    state
        .metrics
        .stress_running
        .set(i64::from(state.stress.running()));
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}
