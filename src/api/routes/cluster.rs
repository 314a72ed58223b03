//! `GET /api/v1/cluster`: the instances sharing this one's store, seen in the last 15 s, with the work
//! each holds claims on.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::api::error::ApiError;
use crate::api::state::AppState;
use crate::service::Cluster;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/cluster", get(cluster))
}

#[utoipa::path(get, path = "/api/v1/cluster", tag = "operations", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Cluster), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn cluster(State(state): State<AppState>) -> Result<Json<Cluster>, ApiError> {
    Ok(Json(state.service.cluster().await?))
}
