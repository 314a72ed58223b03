//! Projections: an entity's state folded from its stream, now or as it was at a version or time.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};

use crate::api::error::ApiError;
use crate::api::extract::QueryPairs;
use crate::api::state::AppState;
use crate::domain::event::validate_stream_id;
use crate::domain::projection::stream_id;
use crate::domain::{FieldError, Projection};
use crate::wire::projection_at;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/events/projections/{entity_type}/{entity_id}", get(read))
}

#[utoipa::path(get, path = "/api/v1/events/projections/{entity_type}/{entity_id}", tag = "projections", security(("bearer" = []), ("api_key" = [])),
    params(("entity_type" = String, Path), ("entity_id" = String, Path), ("at_version" = Option<i64>, Query), ("at_time" = Option<String>, Query)),
    responses((status = 200, body = Projection), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 404, body = crate::wire::ErrorEnvelope, description = "Unknown id"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn read(
    State(state): State<AppState>,
    Path((entity_type, entity_id)): Path<(String, String)>,
    pairs: QueryPairs,
) -> Result<Json<Projection>, ApiError> {
    // The stream id splits at its first `:`, so a type with one would name another entity.
    if entity_type.contains(':') {
        return Err(
            FieldError::new("entity_type", "must not contain `:`; the stream id is `entity_type:entity_id`").into()
        );
    }
    validate_stream_id("entity_id", &stream_id(&entity_type, &entity_id))?;
    let at = projection_at(pairs.iter())?;
    Ok(Json(state.service.projection(&entity_type, &entity_id, at).await?))
}
