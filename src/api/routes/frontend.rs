//! Browser and frontend ingest: open endpoints that add the client's IP, User-Agent and Referer to
//! each event's context. The service stores the events, or with `[ingest] frontend_via_nats` hands
//! them to JetStream; the answer is the same 202 either way.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value};

use super::events::{IngestHeaders, check_batch_size};
use crate::api::error::ApiError;
use crate::api::extract::{AnyJsonBody, from_value};
use crate::api::state::AppState;
use crate::domain::{FieldError, NewEvent};
use crate::service;
use crate::wire::{FrontendAccepted, FrontendBatch, FrontendBatchAccepted, FrontendEvent, FrontendHealth};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events/frontend", post(single))
        .route("/api/v1/events/frontend/batch", post(batch))
        .route("/api/v1/events/frontend/health", get(health))
}

#[utoipa::path(post, path = "/api/v1/events/frontend", tag = "ingest", request_body = FrontendEvent,
    responses((status = 202, body = crate::wire::FrontendAccepted), (status = 400, body = crate::wire::ErrorEnvelope, description = "Malformed JSON"), (status = 413, body = crate::wire::ErrorEnvelope, description = "Body or batch too large"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn single(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ingest: IngestHeaders,
    AnyJsonBody(body): AnyJsonBody<FrontendEvent>,
) -> Result<(StatusCode, Json<FrontendAccepted>), ApiError> {
    let mut event = body.into_new_event(&client_context(peer, &headers))?;
    ingest.apply(&mut event);
    let event_id = state.service.ingest_frontend(vec![event]).await?.into_iter().next();
    let event_id = event_id.ok_or_else(|| service::Error::Unavailable("the store answered nothing".into()))?;
    Ok((StatusCode::ACCEPTED, Json(FrontendAccepted { accepted: true, event_id })))
}

#[utoipa::path(post, path = "/api/v1/events/frontend/batch", tag = "ingest", request_body = FrontendBatch,
    responses((status = 202, body = crate::wire::FrontendBatchAccepted), (status = 400, body = crate::wire::ErrorEnvelope, description = "Malformed JSON"), (status = 413, body = crate::wire::ErrorEnvelope, description = "Body or batch too large"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn batch(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ingest: IngestHeaders,
    AnyJsonBody(body): AnyJsonBody<FrontendBatch>,
) -> Result<(StatusCode, Json<FrontendBatchAccepted>), ApiError> {
    check_batch_size(body.events.len(), state.limits.max_batch)?;
    let mut events = batch_events(body, client_context(peer, &headers))?;
    for event in &mut events {
        ingest.apply(event);
    }
    let event_ids = state.service.ingest_frontend(events).await?;
    Ok((StatusCode::ACCEPTED, Json(FrontendBatchAccepted { accepted: event_ids.len(), event_ids })))
}

#[utoipa::path(get, path = "/api/v1/events/frontend/health", tag = "operations",
    responses((status = 200, body = crate::wire::FrontendHealth)))]
pub(crate) async fn health(State(state): State<AppState>) -> Json<FrontendHealth> {
    let health = state.service.health().await;
    Json(FrontendHealth {
        status: health.status.to_owned(),
        nats: health.nats.to_owned(),
        via_nats: state.service.frontend_via_nats(),
    })
}

/// The events of a frontend batch, each with the client's context (and `client_info` when sent); the
/// first invalid one fails the whole request, naming it as `events[i]`.
pub(crate) fn batch_events(body: FrontendBatch, mut client: Map<String, Value>) -> Result<Vec<NewEvent>, ApiError> {
    match body.client_info {
        None | Some(Value::Null) => {}
        Some(info @ Value::Object(_)) => {
            client.insert("client_info".into(), info);
        }
        Some(_) => return Err(FieldError::new("client_info", "must be a JSON object").into()),
    }
    body.events
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            from_value::<FrontendEvent>(item)
                .and_then(|event| event.into_new_event(&client))
                .map_err(|e| e.within(&format!("events[{i}]")).into())
        })
        .collect()
}

/// Who sent the request, for the event's context. `X-Forwarded-For` is kept apart from the peer address
/// because any client can set it.
fn client_context(peer: SocketAddr, headers: &HeaderMap) -> Map<String, Value> {
    let mut context = Map::new();
    context.insert("ip".into(), Value::String(peer.ip().to_string()));
    for (header, key) in [("x-forwarded-for", "forwarded_for"), ("user-agent", "user_agent"), ("referer", "referer")] {
        if let Some(value) = headers.get(header).and_then(|v| v.to_str().ok()) {
            context.insert(key.into(), Value::String(value.to_owned()));
        }
    }
    context
}
