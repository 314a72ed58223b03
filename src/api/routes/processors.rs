//! Processors: register, list with their totals, turn on or off, delete.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, put};
use axum::{Json, Router};

use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, QueryPairs};
use crate::api::state::AppState;
use crate::domain::{Processor, ProcessorId};
use crate::wire::{ProcessorCreate, ProcessorList, toggle_enabled};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events/processors", get(list).post(create))
        .route("/api/v1/events/processors/{processor_id}", delete(remove))
        .route("/api/v1/events/processors/{processor_id}/toggle", put(toggle))
}

/// Parses a processor id from the path; anything else is an unknown processor.
fn processor_id(text: &str) -> Result<ProcessorId, ApiError> {
    text.parse().map_err(|_| ApiError::not_found(format!("`{text}` is not a processor id: ids are UUIDs")))
}

#[utoipa::path(post, path = "/api/v1/events/processors", tag = "processors", request_body = ProcessorCreate, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Processor), (status = 400, body = crate::wire::ErrorEnvelope, description = "Malformed JSON"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 409, body = crate::wire::ErrorEnvelope, description = "Conflict"), (status = 415, body = crate::wire::ErrorEnvelope, description = "Not application/json"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ProcessorCreate>,
) -> Result<(StatusCode, Json<Arc<Processor>>), ApiError> {
    let processor = state.service.create_processor(body.into_processor(state.limits.processor_max_retries)?).await?;
    Ok((StatusCode::CREATED, Json(processor)))
}

#[utoipa::path(get, path = "/api/v1/events/processors", tag = "processors", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ProcessorList), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<ProcessorList>, ApiError> {
    Ok(Json(ProcessorList { processors: state.service.processors().await? }))
}

/// `PUT …/toggle?enabled=true|false`: the processing loop sees the change from its next batch.
#[utoipa::path(put, path = "/api/v1/events/processors/{processor_id}/toggle", tag = "processors", security(("bearer" = []), ("api_key" = [])),
    params(("processor_id" = String, Path), ("enabled" = bool, Query)),
    responses((status = 200, body = Processor), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 404, body = crate::wire::ErrorEnvelope, description = "Unknown id"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn toggle(
    State(state): State<AppState>,
    Path(id): Path<String>,
    pairs: QueryPairs,
) -> Result<Json<Arc<Processor>>, ApiError> {
    let id = processor_id(&id)?;
    let enabled = toggle_enabled(pairs.iter())?;
    Ok(Json(state.service.toggle_processor(id, enabled).await?))
}

#[utoipa::path(delete, path = "/api/v1/events/processors/{processor_id}", tag = "processors", params(("processor_id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Deleted"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 404, body = crate::wire::ErrorEnvelope, description = "Unknown id"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.service.delete_processor(processor_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
