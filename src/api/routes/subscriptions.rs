//! Webhook subscriptions: create, list, read, change, delete.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::extract::JsonBody;
use crate::api::state::AppState;
use crate::domain::{Subscription, SubscriptionId};
use crate::wire::{SubscriptionCreate, SubscriptionUpdate};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events/subscriptions", get(list).post(create))
        .route("/api/v1/events/subscriptions/{subscription_id}", get(read).patch(update).delete(remove))
}

/// Parses a subscription id from the path; anything else is an unknown subscription.
pub(super) fn subscription_id(text: &str) -> Result<SubscriptionId, ApiError> {
    text.parse().map_err(|_| ApiError::not_found(format!("`{text}` is not a subscription id: ids are UUIDs")))
}

async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SubscriptionCreate>,
) -> Result<(StatusCode, Json<Arc<Subscription>>), ApiError> {
    let subscription = state.service.create_subscription(body.into_subscription()?).await?;
    Ok((StatusCode::CREATED, Json(subscription)))
}

async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"subscriptions": state.service.subscriptions().await?})))
}

async fn read(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Arc<Subscription>>, ApiError> {
    Ok(Json(state.service.subscription(subscription_id(&id)?).await?))
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SubscriptionUpdate>,
) -> Result<Json<Arc<Subscription>>, ApiError> {
    let id = subscription_id(&id)?;
    Ok(Json(state.service.update_subscription(id, body.into_patch()?).await?))
}

async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.service.delete_subscription(subscription_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
