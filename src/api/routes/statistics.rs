//! Statistics, from the store's incremental counters.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::api::error::ApiError;
use crate::api::state::AppState;
use crate::domain::Statistics;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/events/statistics", get(statistics))
}

#[utoipa::path(get, path = "/api/v1/events/statistics", tag = "events", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Statistics), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn statistics(State(state): State<AppState>) -> Result<Json<Statistics>, ApiError> {
    Ok(Json(state.service.statistics().await?))
}
