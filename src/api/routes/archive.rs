//! Archive: write old events to the time-partitioned JSON Lines archive, then mark or delete them.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};

use crate::api::error::ApiError;
use crate::api::extract::JsonBody;
use crate::api::state::AppState;
use crate::domain::archive::ArchiveReport;
use crate::wire::ArchiveCreate;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/events/archive", post(archive))
}

/// 200 once the files are synced and their events marked (or deleted).
#[utoipa::path(post, path = "/api/v1/events/archive", tag = "archive", request_body = ArchiveCreate, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ArchiveReport), (status = 400, body = crate::wire::ErrorEnvelope, description = "Malformed JSON"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 409, body = crate::wire::ErrorEnvelope, description = "Another archive run is in progress"), (status = 415, body = crate::wire::ErrorEnvelope, description = "Not application/json"), (status = 422, body = crate::wire::ErrorEnvelope, description = "`before` in the future or not a time, or the archive folder cannot be written; nothing was marked"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable or an archive file could not be written (disk full); nothing was marked")))]
pub(crate) async fn archive(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ArchiveCreate>,
) -> Result<Json<ArchiveReport>, ApiError> {
    let before = body.before()?;
    Ok(Json(state.service.archive(before, body.delete).await?))
}
