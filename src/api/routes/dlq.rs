//! The dead-letter queue: list, grouped by cause, read with attempts, retry or discard one or many.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, QueryPairs};
use crate::api::state::AppState;
use crate::domain::delivery::{DlqGroups, DlqSelector};
use crate::domain::{DeadLetter, DeadLetterKind, DlqId, Timestamp};
use crate::service::DlqPage;
use crate::wire::{Discarded, DlqRetry, Retried, dlq_group_query, dlq_query};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events/dlq", get(list))
        .route("/api/v1/events/dlq/retry", post(retry_many))
        .route("/api/v1/events/dlq/discard", post(discard_many))
        .route("/api/v1/events/dlq/groups", get(groups))
        .route("/api/v1/events/dlq/{dlq_id}", get(read).delete(discard))
        .route("/api/v1/events/dlq/{dlq_id}/retry", post(retry_one))
}

fn dlq_id(text: &str) -> Result<DlqId, ApiError> {
    text.parse().map_err(|_| ApiError::not_found(format!("`{text}` is not a dead-letter id: ids are UUIDs")))
}

#[utoipa::path(get, path = "/api/v1/events/dlq", tag = "dlq", security(("bearer" = []), ("api_key" = [])),
    params(("kind" = Option<DeadLetterKind>, Query), ("subscription_id" = Option<String>, Query), ("processor_id" = Option<String>, Query), ("limit" = Option<u32>, Query), ("offset" = Option<u64>, Query)),
    responses((status = 200, body = DlqPage), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn list(State(state): State<AppState>, pairs: QueryPairs) -> Result<Json<DlqPage>, ApiError> {
    Ok(Json(state.service.dead_letters(dlq_query(pairs.iter())?).await?))
}

#[utoipa::path(get, path = "/api/v1/events/dlq/{dlq_id}", tag = "dlq", params(("dlq_id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = DeadLetter, description = "With attempt_history"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 404, body = crate::wire::ErrorEnvelope, description = "Unknown id"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn read(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<DeadLetter>, ApiError> {
    Ok(Json(state.service.dead_letter(dlq_id(&id)?).await?))
}

#[utoipa::path(post, path = "/api/v1/events/dlq/{dlq_id}/retry", tag = "dlq", params(("dlq_id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 202, body = Retried), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 404, body = crate::wire::ErrorEnvelope, description = "Unknown id"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn retry_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Retried>), ApiError> {
    let id = dlq_id(&id)?;
    if state.service.retry_dead_letters(DlqSelector::Ids(vec![id])).await? == 0 {
        return Err(ApiError::not_found(format!("dead letter `{id}` was not found")));
    }
    Ok((StatusCode::ACCEPTED, Json(Retried { retried: 1 })))
}

#[utoipa::path(post, path = "/api/v1/events/dlq/retry", tag = "dlq", request_body = DlqRetry, security(("bearer" = []), ("api_key" = [])),
    responses((status = 202, body = Retried), (status = 400, body = crate::wire::ErrorEnvelope, description = "Malformed JSON"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 415, body = crate::wire::ErrorEnvelope, description = "Not application/json"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn retry_many(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<DlqRetry>,
) -> Result<(StatusCode, Json<Retried>), ApiError> {
    let retried = state.service.retry_dead_letters(body.into_selector()?).await?;
    Ok((StatusCode::ACCEPTED, Json(Retried { retried })))
}

#[utoipa::path(post, path = "/api/v1/events/dlq/discard", tag = "dlq", request_body = DlqRetry, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Discarded), (status = 400, body = crate::wire::ErrorEnvelope, description = "Malformed JSON"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 415, body = crate::wire::ErrorEnvelope, description = "Not application/json"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn discard_many(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<DlqRetry>,
) -> Result<Json<Discarded>, ApiError> {
    let discarded = state.service.discard_dead_letters(body.into_selector()?).await?;
    Ok(Json(Discarded { discarded }))
}

#[utoipa::path(get, path = "/api/v1/events/dlq/groups", tag = "dlq", security(("bearer" = []), ("api_key" = [])),
    params(("kind" = Option<DeadLetterKind>, Query), ("buckets" = Option<u32>, Query, description = "Histogram buckets, 1 to 200 (30)"), ("until" = Option<String>, Query, description = "Where the histograms end, RFC 3339 (now)")),
    responses((status = 200, body = DlqGroups, description = "Groups by cause, largest first"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn groups(State(state): State<AppState>, pairs: QueryPairs) -> Result<Json<DlqGroups>, ApiError> {
    let query = dlq_group_query(pairs.iter(), Timestamp::now())?;
    Ok(Json(state.service.dead_letter_groups(query).await?))
}

#[utoipa::path(delete, path = "/api/v1/events/dlq/{dlq_id}", tag = "dlq", params(("dlq_id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Discarded (the event stays)"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 404, body = crate::wire::ErrorEnvelope, description = "Unknown id"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn discard(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.service.discard_dead_letter(dlq_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
