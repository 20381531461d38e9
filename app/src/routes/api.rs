//! JSON API under `/api/employees`. Writes accept JSON, or multipart/form-data
//! when a photo is included; invalid input gets `400 {"errors": {field: message}}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{json_error, json_store_error};
use crate::input::Submission;
use crate::model::Employee;
use crate::state::AppState;

/// The API view of an employee: stored fields plus a presigned photo link.
async fn view(state: &AppState, e: &Employee) -> Value {
    crate::state::api_view(e, state.photo_url(e).await.as_deref())
}

/// The cached bytes, serialized once per table read.
pub async fn list(State(state): State<AppState>) -> Response {
    match state.list_employees().await {
        Ok(list) => (
            [(header::CONTENT_TYPE, "application/json")],
            list.json.clone(),
        )
            .into_response(),
        Err(e) => json_store_error(&e),
    }
}

pub async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.get_employee(&id).await {
        Ok(Some(e)) => Json(view(&state, &e).await).into_response(),
        Ok(None) => json_error(StatusCode::NOT_FOUND, "employee not found"),
        Err(e) => json_store_error(&e),
    }
}

pub async fn create(State(state): State<AppState>, sub: Submission) -> Response {
    let valid = match sub.validate().await {
        Ok(v) => v,
        Err(errors) => {
            return (StatusCode::BAD_REQUEST, Json(json!({ "errors": errors }))).into_response();
        }
    };
    match state.create_employee(valid).await {
        Ok(e) => (
            StatusCode::CREATED,
            [(header::LOCATION, format!("/api/employees/{}", e.id))],
            Json(view(&state, &e).await),
        )
            .into_response(),
        Err(e) => json_store_error(&e),
    }
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    sub: Submission,
) -> Response {
    let valid = match sub.validate().await {
        Ok(v) => v,
        Err(errors) => {
            return (StatusCode::BAD_REQUEST, Json(json!({ "errors": errors }))).into_response();
        }
    };
    match state.update_employee(&id, valid).await {
        Ok(Some(e)) => Json(view(&state, &e).await).into_response(),
        Ok(None) => json_error(StatusCode::NOT_FOUND, "employee not found"),
        Err(e) => json_store_error(&e),
    }
}

pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.delete_employee(&id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => json_error(StatusCode::NOT_FOUND, "employee not found"),
        Err(e) => json_store_error(&e),
    }
}
