//! The dead-letter queue: list, read with attempts, retry one or many, discard.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, QueryPairs};
use crate::api::state::AppState;
use crate::domain::delivery::DlqSelector;
use crate::domain::{DeadLetter, DlqId};
use crate::service::DlqPage;
use crate::wire::{DlqRetry, dlq_query};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events/dlq", get(list))
        .route("/api/v1/events/dlq/retry", post(retry_many))
        .route("/api/v1/events/dlq/{dlq_id}", get(read).delete(discard))
        .route("/api/v1/events/dlq/{dlq_id}/retry", post(retry_one))
}

fn dlq_id(text: &str) -> Result<DlqId, ApiError> {
    text.parse().map_err(|_| ApiError::not_found(format!("`{text}` is not a dead-letter id: ids are UUIDs")))
}

async fn list(State(state): State<AppState>, pairs: QueryPairs) -> Result<Json<DlqPage>, ApiError> {
    Ok(Json(state.service.dead_letters(dlq_query(pairs.iter())?).await?))
}

async fn read(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<DeadLetter>, ApiError> {
    Ok(Json(state.service.dead_letter(dlq_id(&id)?).await?))
}

async fn retry_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = dlq_id(&id)?;
    if state.service.retry_dead_letters(DlqSelector::Ids(vec![id])).await? == 0 {
        return Err(ApiError::not_found(format!("dead letter `{id}` was not found")));
    }
    Ok((StatusCode::ACCEPTED, Json(json!({"retried": 1}))))
}

async fn retry_many(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<DlqRetry>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let retried = state.service.retry_dead_letters(body.into_selector()?).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"retried": retried}))))
}

async fn discard(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.service.discard_dead_letter(dlq_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
