//! The router: public pages, admin pages, JSON API and operational endpoints,
//! wrapped in one middleware that records metrics and logs each request.

mod admin;
mod api;
mod ops;
mod public;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use tracing::Instrument;

use crate::logging;
use crate::photo::MAX_PHOTO_BYTES;
use crate::state::{AppState, log_store_error};
use crate::store::StoreError;
use crate::views::{self, PageCtx};

/// Room for a maximal photo plus the text fields and multipart framing; a
/// larger body is refused while streaming, before it is buffered.
pub const BODY_LIMIT: usize = MAX_PHOTO_BYTES + 256 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        // Public, read-only.
        .route("/", get(public::index))
        .route("/employees/{id}", get(public::show))
        // Write side, for the load balancer's `/admin*` rule.
        .route("/admin", get(admin::index))
        .route("/admin/", get(admin::index))
        .route(
            "/admin/employees/new",
            get(admin::new_form).post(admin::create),
        )
        .route(
            "/admin/employees/{id}/edit",
            get(admin::edit_form).post(admin::update),
        )
        .route(
            "/admin/employees/{id}/delete",
            get(admin::delete_form).post(admin::delete),
        )
        // JSON API.
        .route("/api/employees", get(api::list).post(api::create))
        .route(
            "/api/employees/{id}",
            get(api::show).put(api::update).delete(api::delete),
        )
        // Operations.
        .route("/health", get(ops::health))
        .route("/info", get(ops::info))
        .route("/info/stress", post(ops::stress))
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_write_credential,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Which build answered: the SHA-256 of the binary, on every response (what `stack
/// up` reads through the load balancer after a deploy).
pub const BUILD_HEADER: &str = "x-app-build";

/// Records `http_requests_total` and the latency histogram, and writes the access log
/// line; everything logged while the request runs carries its `request_id`, which the
/// response echoes in `x-request-id`.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let request_id = {
        let header_str = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        logging::request_id(
            header_str(logging::ALB_TRACE_HEADER),
            header_str(logging::REQUEST_ID_HEADER),
        )
    };
    let span = tracing::info_span!("request", request_id = %request_id);
    // Unmatched paths share one label so junk URLs cannot grow the series count.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let method = match *req.method() {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::PATCH
        | Method::OPTIONS => req.method().as_str().to_owned(),
        _ => "OTHER".to_owned(),
    };
    let path = req.uri().path().to_owned();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let elapsed = start.elapsed();
    let status = resp.status().as_u16();
    state.metrics.observe(&route, &method, status, elapsed);
    span.in_scope(|| {
        tracing::info!(
            method,
            route,
            path,
            status,
            duration_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3,
            "request"
        )
    });
    if let Ok(v) = header::HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(logging::REQUEST_ID_HEADER, v);
    }
    if let Ok(v) = header::HeaderValue::from_str(&state.build) {
        resp.headers_mut().insert(BUILD_HEADER, v);
    }
    resp
}

/// Whether a request can change data: every `/admin` page (a browser must be asked
/// for the credential before it shows a form), and the API's unsafe methods.
fn needs_credential(method: &Method, path: &str) -> bool {
    let admin = path == "/admin" || path.starts_with("/admin/");
    let api_write = path.starts_with("/api/") && !matches!(*method, Method::GET | Method::HEAD);
    admin || api_write
}

/// Refuses a write without the right credential before its body is read: nothing is
/// parsed, uploaded or stored. Admin pages answer with a Basic challenge, so a
/// browser asks for the password; the API with a Bearer one.
async fn require_write_credential(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if !needs_credential(req.method(), path) {
        return next.run(req).await;
    }
    let api = path.starts_with("/api/");
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let verdict = state.auth.check(presented).await;
    let reason = match verdict {
        crate::auth::Verdict::Allowed => return next.run(req).await,
        crate::auth::Verdict::Denied if presented.is_none() => "missing",
        crate::auth::Verdict::Denied => "wrong",
        crate::auth::Verdict::Unavailable => "unavailable",
    };
    tracing::warn!(
        path,
        method = req.method().as_str(),
        credential = reason,
        "write refused"
    );
    if verdict == crate::auth::Verdict::Unavailable {
        let mut r = if api {
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the write credential cannot be read right now; try again shortly",
            )
        } else {
            html_error(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Writes unavailable",
                "The app cannot read its write credential right now. Please try again shortly.",
            )
        };
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        return r;
    }
    let (mut r, challenge) = if api {
        (
            json_error(
                StatusCode::UNAUTHORIZED,
                "writes need `Authorization: Bearer <token>`; `stack token <stack file>` prints it",
            ),
            r#"Bearer realm="stack-app""#,
        )
    } else {
        (
            html_error(
                &state,
                StatusCode::UNAUTHORIZED,
                "Sign-in required",
                "The admin pages need the stack's write credential as the password (any user name). `stack token <stack file>` prints it.",
            ),
            r#"Basic realm="stack-app admin", charset="UTF-8""#,
        )
    };
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static(challenge),
    );
    r
}

async fn not_found(State(state): State<AppState>, req: Request) -> Response {
    if req.uri().path().starts_with("/api/") {
        return json_error(StatusCode::NOT_FOUND, "no such route");
    }
    html_error(
        &state,
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no page at this address.",
    )
}

pub(crate) fn json_error(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(json!({ "error": msg }))).into_response()
}

pub(crate) fn html_error(state: &AppState, status: StatusCode, title: &str, msg: &str) -> Response {
    let ctx = PageCtx::from_state(state);
    (
        status,
        Html(views::error_page(&ctx, status.as_u16(), title, msg)),
    )
        .into_response()
}

/// An AWS failure as a page: details go to the log, the user gets a 502.
pub(crate) fn html_store_error(state: &AppState, err: &StoreError) -> Response {
    log_store_error(err);
    html_error(
        state,
        StatusCode::BAD_GATEWAY,
        "Storage unavailable",
        "The directory's storage did not answer as expected. Please try again shortly.",
    )
}

pub(crate) fn json_store_error(err: &StoreError) -> Response {
    log_store_error(err);
    json_error(
        StatusCode::BAD_GATEWAY,
        "storage unavailable; see server logs",
    )
}

/// `303 See Other`, so a browser follows a form POST with a GET.
pub(crate) fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_owned())],
    )
        .into_response()
}
