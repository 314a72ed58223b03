//! Webhook subscriptions: create, list, read, change, delete.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use crate::api::error::ApiError;
use crate::api::extract::JsonBody;
use crate::api::state::AppState;
use crate::domain::{Subscription, SubscriptionId};
use crate::wire::{SubscriptionCreate, SubscriptionList, SubscriptionUpdate};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events/subscriptions", get(list).post(create))
        .route("/api/v1/events/subscriptions/{subscription_id}", get(read).patch(update).delete(remove))
}

/// Parses a subscription id from the path; anything else is an unknown subscription.
pub(super) fn subscription_id(text: &str) -> Result<SubscriptionId, ApiError> {
    text.parse().map_err(|_| ApiError::not_found(format!("`{text}` is not a subscription id: ids are UUIDs")))
}

#[utoipa::path(post, path = "/api/v1/events/subscriptions", tag = "subscriptions", request_body = SubscriptionCreate, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Subscription), (status = 400, body = crate::wire::ErrorEnvelope, description = "Malformed JSON"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 415, body = crate::wire::ErrorEnvelope, description = "Not application/json"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SubscriptionCreate>,
) -> Result<(StatusCode, Json<Arc<Subscription>>), ApiError> {
    let subscription = state.service.create_subscription(body.into_subscription()?).await?;
    Ok((StatusCode::CREATED, Json(subscription)))
}

#[utoipa::path(get, path = "/api/v1/events/subscriptions", tag = "subscriptions", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = crate::wire::SubscriptionList), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<SubscriptionList>, ApiError> {
    Ok(Json(SubscriptionList { subscriptions: state.service.subscriptions().await? }))
}

#[utoipa::path(get, path = "/api/v1/events/subscriptions/{subscription_id}", tag = "subscriptions", params(("subscription_id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Subscription), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 404, body = crate::wire::ErrorEnvelope, description = "Unknown id")))]
pub(crate) async fn read(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Arc<Subscription>>, ApiError> {
    Ok(Json(state.service.subscription(subscription_id(&id)?).await?))
}

#[utoipa::path(patch, path = "/api/v1/events/subscriptions/{subscription_id}", tag = "subscriptions", params(("subscription_id" = String, Path)), request_body = SubscriptionUpdate, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Subscription), (status = 400, body = crate::wire::ErrorEnvelope, description = "Malformed JSON"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 404, body = crate::wire::ErrorEnvelope, description = "Unknown id"), (status = 415, body = crate::wire::ErrorEnvelope, description = "Not application/json"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SubscriptionUpdate>,
) -> Result<Json<Arc<Subscription>>, ApiError> {
    let id = subscription_id(&id)?;
    Ok(Json(state.service.update_subscription(id, body.into_patch()?).await?))
}

#[utoipa::path(delete, path = "/api/v1/events/subscriptions/{subscription_id}", tag = "subscriptions", params(("subscription_id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Deleted; its pending deliveries are cancelled"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 404, body = crate::wire::ErrorEnvelope, description = "Unknown id"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.service.delete_subscription(subscription_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
