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
    let rows = rows(&list);
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

/// Pairs each employee with the photo link signed when the list was read.
pub(super) fn rows(list: &crate::state::EmployeeList) -> Vec<Row<'_>> {
    list.employees
        .iter()
        .zip(&list.photo_urls)
        .map(|(employee, url)| Row {
            photo_url: url.clone(),
            employee,
        })
        .collect()
}
