//! Public, read-only pages: the directory and one employee's profile.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::{html_error, html_store_error};
use crate::state::AppState;
use crate::views::{self, PageCtx, Row};

pub async fn index(State(state): State<AppState>) -> Response {
    let list = match state.list_employees().await {
        Ok(l) => l,
        Err(e) => return html_store_error(&state, &e),
    };
    let rows = rows(&state, &list).await;
    Html(views::directory(&PageCtx::from_state(&state), &rows)).into_response()
}

pub async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.get_employee(&id).await {
        Ok(Some(e)) => {
            let row = Row {
                photo_url: state.photo_url(&e).await,
                employee: &e,
            };
            Html(views::profile(&PageCtx::from_state(&state), &row)).into_response()
        }
        Ok(None) => html_error(
            &state,
            StatusCode::NOT_FOUND,
            "Not found",
            "No employee has this id.",
        ),
        Err(e) => html_store_error(&state, &e),
    }
}

/// Pairs each employee with a presigned photo link (local signing, no network).
pub(super) async fn rows<'a>(state: &AppState, list: &'a [crate::model::Employee]) -> Vec<Row<'a>> {
    let mut rows = Vec::with_capacity(list.len());
    for e in list {
        rows.push(Row {
            photo_url: state.photo_url(e).await,
            employee: e,
        });
    }
    rows
}
