//! The write side as HTML forms, all under `/admin` so a load balancer rule can
//! route it to a separate service. Successful POSTs redirect (303) to `/admin`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::{html_error, html_store_error, public::rows, see_other};
use crate::input::Submission;
use crate::model::FieldErrors;
use crate::state::AppState;
use crate::views::{self, FormMode, PageCtx};

#[derive(Deserialize)]
pub struct Notice {
    notice: Option<String>,
}

pub async fn index(State(state): State<AppState>, Query(q): Query<Notice>) -> Response {
    let list = match state.list_employees().await {
        Ok(l) => l,
        Err(e) => return html_store_error(&state, &e),
    };
    // Only fixed messages: the query string must not put arbitrary text on the page.
    let notice = match q.notice.as_deref() {
        Some("created") => Some("Employee added."),
        Some("updated") => Some("Employee updated."),
        Some("deleted") => Some("Employee deleted."),
        _ => None,
    };
    let rows = rows(&list);
    Html(views::admin_list(
        &PageCtx::from_state(&state),
        &rows,
        notice,
    ))
    .into_response()
}

pub async fn new_form(State(state): State<AppState>) -> Response {
    let ctx = PageCtx::from_state(&state);
    Html(views::employee_form(
        &ctx,
        &FormMode::New,
        &Submission::default(),
        &FieldErrors::new(),
    ))
    .into_response()
}

pub async fn create(State(state): State<AppState>, sub: Submission) -> Response {
    let valid = match sub.validate().await {
        Ok(v) => v,
        Err(errors) => return reshow(&state, &FormMode::New, &sub, &errors),
    };
    match state.create_employee(valid).await {
        Ok(_) => see_other("/admin?notice=created"),
        Err(e) => html_store_error(&state, &e),
    }
}

pub async fn edit_form(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.get_employee_fresh(&id).await {
        Ok(Some(e)) => {
            let url = state.photo_url(&e).await;
            let mode = FormMode::Edit {
                id: &e.id,
                photo_url: url.as_deref(),
            };
            let ctx = PageCtx::from_state(&state);
            Html(views::employee_form(
                &ctx,
                &mode,
                &Submission::from_employee(&e),
                &FieldErrors::new(),
            ))
            .into_response()
        }
        Ok(None) => missing(&state),
        Err(e) => html_store_error(&state, &e),
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
            // Show the current photo again so "remove photo" stays available.
            let current = match state.get_employee_fresh(&id).await {
                Ok(Some(e)) => state.photo_url(&e).await,
                Ok(None) => return missing(&state),
                Err(e) => return html_store_error(&state, &e),
            };
            let mode = FormMode::Edit {
                id: &id,
                photo_url: current.as_deref(),
            };
            return reshow(&state, &mode, &sub, &errors);
        }
    };
    match state.update_employee(&id, valid).await {
        Ok(Some(_)) => see_other("/admin?notice=updated"),
        Ok(None) => missing(&state),
        Err(e) => html_store_error(&state, &e),
    }
}

pub async fn delete_form(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.get_employee_fresh(&id).await {
        Ok(Some(e)) => {
            Html(views::delete_confirm(&PageCtx::from_state(&state), &e)).into_response()
        }
        Ok(None) => missing(&state),
        Err(e) => html_store_error(&state, &e),
    }
}

pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.delete_employee(&id).await {
        Ok(true) => see_other("/admin?notice=deleted"),
        Ok(false) => missing(&state),
        Err(e) => html_store_error(&state, &e),
    }
}

fn reshow(
    state: &AppState,
    mode: &FormMode<'_>,
    sub: &Submission,
    errors: &FieldErrors,
) -> Response {
    let ctx = PageCtx::from_state(state);
    (
        StatusCode::BAD_REQUEST,
        Html(views::employee_form(&ctx, mode, sub, errors)),
    )
        .into_response()
}

fn missing(state: &AppState) -> Response {
    html_error(
        state,
        StatusCode::NOT_FOUND,
        "Not found",
        "No employee has this id.",
    )
}
