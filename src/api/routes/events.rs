//! Events: ingest (single, batch, seed-compatible), history (get, query, seed-compatible list), and what
//! happened to one event (deliveries, processing results).

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::api::error::ApiError;
use crate::api::extract::{AnyJsonBody, QueryPairs, from_value};
use crate::api::state::AppState;
use crate::domain::event::MAX_NAME_LEN;
use crate::domain::trace::{METADATA_KEY, TraceParent};
use crate::domain::{Event, EventId, EventQuery, FieldError, NewEvent};
use crate::service::{self, EventService, Ingested};
use crate::wire::{AttemptList, BatchAnswer, BatchItem, EventCreate, QueryAnswer, QueryParams, ResultList};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events/create", post(create))
        .route("/api/v1/events/batch", post(batch))
        .route("/api/v1/events/query", post(query_json))
        .route("/api/v1/events", get(query_string))
        .route("/api/v1/events/{event_id}", get(get_event))
        .route("/api/v1/events/{event_id}/deliveries", get(deliveries))
        .route("/api/v1/events/{event_id}/results", get(results))
        .route("/events", post(seed_create).get(seed_list))
}

/// What an ingest request's headers add to its events: `X-Correlation-Id` as the correlation id of
/// events that have none, and the W3C `traceparent` (or, when spans are exported, the request span's
/// own context) in `metadata.traceparent`, so deliveries and processor calls continue the trace.
pub(crate) struct IngestHeaders {
    correlation_id: Option<String>,
    traceparent: Option<TraceParent>,
}

impl<S: Send + Sync> FromRequestParts<S> for IngestHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let correlation_id = match parts.headers.get("x-correlation-id") {
            None => None,
            Some(value) => {
                let text = value.to_str().ok().map(str::trim).ok_or_else(|| {
                    FieldError::new("X-Correlation-Id", "must be visible ASCII text; leave the header out instead")
                })?;
                if text.len() > MAX_NAME_LEN {
                    return Err(FieldError::new(
                        "X-Correlation-Id",
                        format!("must be at most {MAX_NAME_LEN} characters"),
                    )
                    .into());
                }
                Some(text.to_owned()).filter(|t| !t.is_empty())
            }
        };
        let traceparent = crate::api::layers::traceparent(&parts.headers)
            .or_else(|| crate::telemetry::current(&tracing::Span::current()));
        Ok(Self { correlation_id, traceparent })
    }
}

impl IngestHeaders {
    /// Fills in what the event's own body left out.
    pub(crate) fn apply(&self, event: &mut NewEvent) {
        if event.correlation_id.is_none() {
            event.correlation_id.clone_from(&self.correlation_id);
        }
        if let Some(traceparent) = &self.traceparent {
            event.metadata.entry(METADATA_KEY).or_insert_with(|| Value::String(traceparent.to_string()));
        }
    }
}

/// 201 with the stored event; 200 with the earlier one when the idempotency key was seen before.
#[utoipa::path(post, path = "/api/v1/events/create", tag = "ingest", request_body = crate::wire::EventCreate, security(("bearer" = []), ("api_key" = [])),
    params(("X-Correlation-Id" = Option<String>, Header, description = "correlation_id of events that have none"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context, kept in metadata.traceparent")),
    responses((status = 201, body = Event, description = "Stored"), (status = 200, body = Event, description = "The event stored earlier with this idempotency key"), (status = 400, body = crate::wire::ErrorEnvelope, description = "Malformed JSON"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 409, body = crate::wire::ErrorEnvelope, description = "Conflict"), (status = 413, body = crate::wire::ErrorEnvelope, description = "Body or batch too large"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: IngestHeaders,
    AnyJsonBody(body): AnyJsonBody<EventCreate>,
) -> Result<(StatusCode, Json<Arc<Event>>), ApiError> {
    let mut event = body.into_new_event()?;
    headers.apply(&mut event);
    let Ingested { event, created } = ingest_one(state.service.as_ref(), event).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(event)))
}

/// The seed service's `POST /events`: the same as create (EventCreate takes the seed's field names).
#[utoipa::path(post, path = "/events", tag = "ingest", request_body(content = crate::wire::EventCreate, description = "Seed-compatible: `type`, `source`, `payload`, `metadata` (aliases of the EventCreate fields)"), security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Event), (status = 200, body = Event, description = "Seen before (idempotency key)"), (status = 400, body = crate::wire::ErrorEnvelope), (status = 401, body = crate::wire::ErrorEnvelope), (status = 409, body = crate::wire::ErrorEnvelope), (status = 422, body = crate::wire::ErrorEnvelope), (status = 503, body = crate::wire::ErrorEnvelope)))]
pub(crate) async fn seed_create(
    state: State<AppState>,
    headers: IngestHeaders,
    body: AnyJsonBody<EventCreate>,
) -> Result<(StatusCode, Json<Arc<Event>>), ApiError> {
    create(state, headers, body).await
}

/// Stores one event and answers its single result.
pub(super) async fn ingest_one(service: &dyn EventService, event: NewEvent) -> Result<Ingested, ApiError> {
    let result = service.ingest(vec![event]).await?.into_iter().next();
    Ok(result.unwrap_or_else(|| Err(service::Error::Unavailable("the store answered nothing".into())))?)
}

#[utoipa::path(post, path = "/api/v1/events/batch", tag = "ingest", request_body = Vec<crate::wire::EventCreate>, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = BatchAnswer, description = "One result per item, in request order; the valid ones stored in one transaction"), (status = 400, body = crate::wire::ErrorEnvelope, description = "Malformed JSON"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 413, body = crate::wire::ErrorEnvelope, description = "Body or batch too large"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn batch(
    State(state): State<AppState>,
    headers: IngestHeaders,
    AnyJsonBody(items): AnyJsonBody<Vec<Value>>,
) -> Result<Json<BatchAnswer>, ApiError> {
    check_batch_size(items.len(), state.limits.max_batch)?;
    let mut failures = Vec::new();
    let mut valid = Vec::with_capacity(items.len());
    let mut positions = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        match from_value::<EventCreate>(item).and_then(EventCreate::into_new_event) {
            Ok(mut event) => {
                headers.apply(&mut event);
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

#[utoipa::path(get, path = "/api/v1/events/{event_id}", tag = "events", params(("event_id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Event), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 404, body = crate::wire::ErrorEnvelope, description = "Unknown id"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn get_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Arc<Event>>, ApiError> {
    Ok(Json(state.service.event(event_id(&id)?).await?))
}

#[utoipa::path(get, path = "/api/v1/events/{event_id}/deliveries", tag = "events", params(("event_id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = crate::wire::AttemptList), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 404, body = crate::wire::ErrorEnvelope, description = "Unknown id"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AttemptList>, ApiError> {
    Ok(Json(AttemptList { attempts: state.service.delivery_attempts(event_id(&id)?).await? }))
}

/// The processing results of an event, oldest first.
#[utoipa::path(get, path = "/api/v1/events/{event_id}/results", tag = "events", params(("event_id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ResultList), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 404, body = crate::wire::ErrorEnvelope, description = "Unknown id"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn results(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ResultList>, ApiError> {
    Ok(Json(ResultList { results: state.service.processing_results(event_id(&id)?).await? }))
}

#[utoipa::path(post, path = "/api/v1/events/query", tag = "events", request_body = crate::wire::EventQueryBody, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = QueryAnswer), (status = 400, body = crate::wire::ErrorEnvelope, description = "Malformed JSON"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn query_json(
    State(state): State<AppState>,
    AnyJsonBody(body): AnyJsonBody<Map<String, Value>>,
) -> Result<Json<QueryAnswer>, ApiError> {
    run_query(&state, QueryParams::from_json(body)?.query).await.map(Json)
}

#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(crate::wire::EventQueryBody), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = QueryAnswer), (status = 400, body = crate::wire::ErrorEnvelope, description = "Malformed JSON"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn query_string(
    State(state): State<AppState>,
    pairs: QueryPairs,
) -> Result<Json<QueryAnswer>, ApiError> {
    run_query(&state, QueryParams::from_pairs(pairs.iter())?.query).await.map(Json)
}

async fn run_query(state: &AppState, query: EventQuery) -> Result<QueryAnswer, ApiError> {
    let (limit, offset) = (query.limit, query.offset);
    let page = state.service.query(query).await?;
    let has_more = offset.saturating_add(page.events.len() as u64) < page.total;
    Ok(QueryAnswer { events: page.events, total: page.total, limit, offset, has_more })
}

/// `{"events": [...]}`: the seed service's list.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SeedList {
    events: Vec<Event>,
}

/// `GET /events?type=&source=&since=&limit=`: the seed service's list.
#[utoipa::path(get, path = "/events", tag = "events", security(("bearer" = []), ("api_key" = [])),
    params(("type" = Option<String>, Query, description = "Type pattern"), ("source" = Option<String>, Query), ("since" = Option<String>, Query, description = "RFC 3339 time"), ("limit" = Option<u32>, Query)),
    responses((status = 200, body = SeedList), (status = 400, body = crate::wire::ErrorEnvelope, description = "Malformed JSON"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn seed_list(State(state): State<AppState>, pairs: QueryPairs) -> Result<Json<SeedList>, ApiError> {
    let query = QueryParams::from_pairs(pairs.iter())?.query;
    Ok(Json(SeedList { events: state.service.query(query).await?.events }))
}
