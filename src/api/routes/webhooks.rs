//! Seed-compatible `/webhooks`: the same subscriptions, in the seed service's shape.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::subscriptions::subscription_id;
use crate::api::error::ApiError;
use crate::api::extract::JsonBody;
use crate::api::state::AppState;
use crate::domain::subscription::SubscriptionPatch;
use crate::wire::{WebhookCreate, WebhookList, WebhookView};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks", get(list).post(create))
        .route("/webhooks/{id}", get(read).patch(update).delete(remove))
}

#[utoipa::path(post, path = "/webhooks", tag = "subscriptions", request_body = WebhookCreate, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = WebhookView), (status = 400, body = crate::wire::ErrorEnvelope, description = "Malformed JSON"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 415, body = crate::wire::ErrorEnvelope, description = "Not application/json"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<WebhookCreate>,
) -> Result<(StatusCode, Json<WebhookView>), ApiError> {
    let subscription = state.service.create_subscription(body.into_subscription()?).await?;
    Ok((StatusCode::CREATED, Json(WebhookView::from(subscription.as_ref()))))
}

#[utoipa::path(get, path = "/webhooks", tag = "subscriptions", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = crate::wire::WebhookList), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<WebhookList>, ApiError> {
    let all = state.service.subscriptions().await?;
    let webhooks: Vec<WebhookView> = all.iter().map(|s| WebhookView::from(s.as_ref())).collect();
    Ok(Json(WebhookList { webhooks }))
}

#[utoipa::path(get, path = "/webhooks/{id}", tag = "subscriptions", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = WebhookView), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 404, body = crate::wire::ErrorEnvelope, description = "Unknown id")))]
pub(crate) async fn read(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<WebhookView>, ApiError> {
    let subscription = state.service.subscription(subscription_id(&id)?).await?;
    Ok(Json(WebhookView::from(subscription.as_ref())))
}

/// Seed-compatible `PATCH /webhooks/{id}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookUpdate {
    active: Option<bool>,
}

#[utoipa::path(patch, path = "/webhooks/{id}", tag = "subscriptions", params(("id" = String, Path)), request_body = WebhookUpdate, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = WebhookView), (status = 400, body = crate::wire::ErrorEnvelope, description = "Malformed JSON"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 404, body = crate::wire::ErrorEnvelope, description = "Unknown id"), (status = 415, body = crate::wire::ErrorEnvelope, description = "Not application/json"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<WebhookUpdate>,
) -> Result<Json<WebhookView>, ApiError> {
    let patch = SubscriptionPatch { enabled: body.active, ..SubscriptionPatch::default() };
    let subscription = state.service.update_subscription(subscription_id(&id)?, patch).await?;
    Ok(Json(WebhookView::from(subscription.as_ref())))
}

#[utoipa::path(delete, path = "/webhooks/{id}", tag = "subscriptions", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Deleted"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 404, body = crate::wire::ErrorEnvelope, description = "Unknown id"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.service.delete_subscription(subscription_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
