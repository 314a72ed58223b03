//! Replay: send stored events again to subscriptions or processors (or preview with a dry run), and
//! follow a replay job's progress.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::api::error::ApiError;
use crate::api::extract::JsonBody;
use crate::api::state::AppState;
use crate::domain::{ReplayId, ReplayProgress, ReplayStarted};
use crate::wire::ReplayCreate;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/events/replay", post(start)).route("/api/v1/events/replay/{replay_id}", get(progress))
}

/// 202: a dry run's preview, or a job started in the background.
async fn start(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ReplayCreate>,
) -> Result<(StatusCode, Json<ReplayStarted>), ApiError> {
    let started = state.service.replay(body.into_request()?).await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

async fn progress(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<ReplayProgress>, ApiError> {
    let id: ReplayId =
        id.parse().map_err(|_| ApiError::not_found(format!("`{id}` is not a replay id: ids are UUIDs")))?;
    Ok(Json(state.service.replay_progress(id).await?))
}
