//! Seed-compatible `/webhooks`: the same subscriptions, in the seed service's shape.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::subscriptions::subscription_id;
use crate::api::error::ApiError;
use crate::api::extract::JsonBody;
use crate::api::state::AppState;
use crate::domain::subscription::SubscriptionPatch;
use crate::wire::{WebhookCreate, WebhookView};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks", get(list).post(create))
        .route("/webhooks/{id}", get(read).patch(update).delete(remove))
}

async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<WebhookCreate>,
) -> Result<(StatusCode, Json<WebhookView>), ApiError> {
    let subscription = state.service.create_subscription(body.into_subscription()?).await?;
    Ok((StatusCode::CREATED, Json(WebhookView::from(subscription.as_ref()))))
}

async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let all = state.service.subscriptions().await?;
    let webhooks: Vec<WebhookView> = all.iter().map(|s| WebhookView::from(s.as_ref())).collect();
    Ok(Json(json!({"webhooks": webhooks})))
}

async fn read(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<WebhookView>, ApiError> {
    let subscription = state.service.subscription(subscription_id(&id)?).await?;
    Ok(Json(WebhookView::from(subscription.as_ref())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookUpdate {
    active: Option<bool>,
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<WebhookUpdate>,
) -> Result<Json<WebhookView>, ApiError> {
    let patch = SubscriptionPatch { enabled: body.active, ..SubscriptionPatch::default() };
    let subscription = state.service.update_subscription(subscription_id(&id)?, patch).await?;
    Ok(Json(WebhookView::from(subscription.as_ref())))
}

async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.service.delete_subscription(subscription_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
