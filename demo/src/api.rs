//! The demo's JSON API for scripts: `GET /api/projects` and
//! `POST /api/projects/{id}/rename`. Same `Viewer`, same viewer-scoped DAL,
//! same limiter as the actions; authenticated by personal access token.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use portcullis::routes::api::{Bearer, error};
use portcullis::{ErrorCode, Rejection};
use serde::{Deserialize, Serialize};

use crate::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/projects", get(list))
        .route("/api/projects/{id}/rename", post(rename))
        .with_state(state)
}

#[derive(Serialize)]
struct Project {
    id: i64,
    name: String,
    archived: bool,
}

async fn list(State(state): State<AppState>, bearer: Bearer) -> Response {
    match state.dal.projects().list(bearer.viewer()).await {
        Ok(rows) => Json(
            rows.into_iter()
                .map(|p| Project {
                    id: p.id,
                    name: p.name,
                    archived: p.archived_at.is_some(),
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => bearer.failed(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameBody {
    name: String,
}

async fn rename(
    State(state): State<AppState>,
    Extension(fragments): Extension<Arc<portcullis::fragment::Engine>>,
    bearer: Bearer,
    Path(id): Path<i64>,
    body: Result<Json<RenameBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(r) = bearer.require_write() {
        return r;
    }
    let Ok(Json(body)) = body else {
        return error(Rejection::with_message(
            ErrorCode::InvalidInput,
            "Send {\"name\": \"…\"} and nothing else.",
        ));
    };
    let name = body.name.trim();
    if !(2..=80).contains(&name.chars().count()) {
        let mut r = Rejection::new(ErrorCode::InvalidInput);
        r.field_errors
            .insert("name".into(), vec!["must be 2 to 80 characters".into()]);
        return error(r);
    }
    match state.dal.projects().rename(bearer.viewer(), id, name).await {
        Ok(p) => {
            fragments.update_tag(&format!("project:{}", p.id));
            Json(Project {
                id: p.id,
                name: p.name,
                archived: p.archived_at.is_some(),
            })
            .into_response()
        }
        Err(e) => bearer.failed(e),
    }
}
