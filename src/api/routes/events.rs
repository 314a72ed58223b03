//! Events: ingest (single, batch, seed-compatible), history (get, query, seed-compatible list), and what
//! happened to one event (deliveries, processing results).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::api::error::ApiError;
use crate::api::extract::{AnyJsonBody, QueryPairs, from_value};
use crate::api::state::AppState;
use crate::domain::{Event, EventId, EventQuery, NewEvent};
use crate::service::{self, EventService, Ingested};
use crate::wire::{BatchAnswer, BatchItem, EventCreate, QueryAnswer, QueryParams, ResultList};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events/create", post(create))
        .route("/api/v1/events/batch", post(batch))
        .route("/api/v1/events/query", post(query_json))
        .route("/api/v1/events", get(query_string))
        .route("/api/v1/events/{event_id}", get(get_event))
        .route("/api/v1/events/{event_id}/deliveries", get(deliveries))
        .route("/api/v1/events/{event_id}/results", get(results))
        .route("/events", post(create).get(seed_list))
}

/// 201 with the stored event; 200 with the earlier one when the idempotency key was seen before.
async fn create(
    State(state): State<AppState>,
    AnyJsonBody(body): AnyJsonBody<EventCreate>,
) -> Result<(StatusCode, Json<Arc<Event>>), ApiError> {
    let event = body.into_new_event()?;
    let Ingested { event, created } = ingest_one(state.service.as_ref(), event).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(event)))
}

/// Stores one event and answers its single result.
pub(super) async fn ingest_one(service: &dyn EventService, event: NewEvent) -> Result<Ingested, ApiError> {
    let result = service.ingest(vec![event]).await?.into_iter().next();
    Ok(result.unwrap_or_else(|| Err(service::Error::Unavailable("the store answered nothing".into())))?)
}

async fn batch(
    State(state): State<AppState>,
    AnyJsonBody(items): AnyJsonBody<Vec<Value>>,
) -> Result<Json<BatchAnswer>, ApiError> {
    check_batch_size(items.len(), state.limits.max_batch)?;
    let mut failures = Vec::new();
    let mut valid = Vec::with_capacity(items.len());
    let mut positions = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        match from_value::<EventCreate>(item).and_then(EventCreate::into_new_event) {
            Ok(event) => {
                valid.push(event);
                positions.push(index);
            }
            Err(error) => failures.push(BatchItem::Failed { index, error: ApiError::invalid(error).body() }),
        }
    }
    let stored = state.service.ingest(valid).await?;

    let (mut created, mut duplicates) = (0, 0);
    let mut results = failures;
    for (index, outcome) in positions.into_iter().zip(stored) {
        results.push(match outcome {
            Ok(Ingested { event, created: true }) => {
                created += 1;
                BatchItem::Stored { index, event, duplicate: false }
            }
            Ok(Ingested { event, created: false }) => {
                duplicates += 1;
                BatchItem::Stored { index, event, duplicate: true }
            }
            Err(error) => BatchItem::Failed { index, error: ApiError::from(error).body() },
        });
    }
    results.sort_by_key(|item| match item {
        BatchItem::Stored { index, .. } | BatchItem::Failed { index, .. } => *index,
    });
    let failed = results.len() - created - duplicates;
    Ok(Json(BatchAnswer { created, duplicates, failed, results }))
}

pub(super) fn check_batch_size(len: usize, max: usize) -> Result<(), ApiError> {
    if len > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "the batch has {len} events but at most {max} are accepted per request ([ingest] max_batch): split it"
            ),
        ));
    }
    Ok(())
}

fn event_id(text: &str) -> Result<EventId, ApiError> {
    text.parse().map_err(|_| ApiError::not_found(format!("`{text}` is not an event id: event ids are UUIDs")))
}

async fn get_event(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Arc<Event>>, ApiError> {
    Ok(Json(state.service.event(event_id(&id)?).await?))
}

async fn deliveries(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let attempts = state.service.delivery_attempts(event_id(&id)?).await?;
    Ok(Json(serde_json::json!({"attempts": attempts})))
}

/// The processing results of an event, oldest first.
async fn results(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<ResultList>, ApiError> {
    Ok(Json(ResultList { results: state.service.processing_results(event_id(&id)?).await? }))
}

async fn query_json(
    State(state): State<AppState>,
    AnyJsonBody(body): AnyJsonBody<Map<String, Value>>,
) -> Result<Json<QueryAnswer>, ApiError> {
    run_query(&state, QueryParams::from_json(body)?.query).await.map(Json)
}

async fn query_string(State(state): State<AppState>, pairs: QueryPairs) -> Result<Json<QueryAnswer>, ApiError> {
    run_query(&state, QueryParams::from_pairs(pairs.iter())?.query).await.map(Json)
}

async fn run_query(state: &AppState, query: EventQuery) -> Result<QueryAnswer, ApiError> {
    let (limit, offset) = (query.limit, query.offset);
    let page = state.service.query(query).await?;
    let has_more = offset.saturating_add(page.events.len() as u64) < page.total;
    Ok(QueryAnswer { events: page.events, total: page.total, limit, offset, has_more })
}

#[derive(Serialize)]
struct SeedList {
    events: Vec<Event>,
}

/// `GET /events?type=&source=&since=&limit=`: the seed service's list.
async fn seed_list(State(state): State<AppState>, pairs: QueryPairs) -> Result<Json<SeedList>, ApiError> {
    let query = QueryParams::from_pairs(pairs.iter())?.query;
    Ok(Json(SeedList { events: state.service.query(query).await?.events }))
}
