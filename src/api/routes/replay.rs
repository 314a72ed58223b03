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
#[utoipa::path(post, path = "/api/v1/events/replay", tag = "replay", request_body = ReplayCreate, security(("bearer" = []), ("api_key" = [])),
    responses((status = 202, body = ReplayStarted), (status = 400, body = crate::wire::ErrorEnvelope, description = "Malformed JSON"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 415, body = crate::wire::ErrorEnvelope, description = "Not application/json"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn start(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ReplayCreate>,
) -> Result<(StatusCode, Json<ReplayStarted>), ApiError> {
    let started = state.service.replay(body.into_request()?).await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

#[utoipa::path(get, path = "/api/v1/events/replay/{replay_id}", tag = "replay", params(("replay_id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ReplayProgress), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 404, body = crate::wire::ErrorEnvelope, description = "Unknown id"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn progress(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ReplayProgress>, ApiError> {
    let id: ReplayId =
        id.parse().map_err(|_| ApiError::not_found(format!("`{id}` is not a replay id: ids are UUIDs")))?;
    Ok(Json(state.service.replay_progress(id).await?))
}
