//! The live stream over Server-Sent Events, resumable with `Last-Event-ID` or `?since_seq=`.

use std::convert::Infallible;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use futures::{Stream, StreamExt, future};

use crate::api::error::ApiError;
use crate::api::extract::QueryPairs;
use crate::api::state::AppState;
use crate::domain::FieldError;
use crate::service::FeedItem;
use crate::wire::QueryParams;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/events/live", get(live)).route("/events/stream", get(live_alias))
}

#[utoipa::path(get, path = "/api/v1/events/live", tag = "live", params(crate::wire::EventQueryBody,
        ("since_seq" = Option<i64>, Query, description = "Resume after this seq"),
        ("access_token" = Option<String>, Query, description = "The API key, for EventSource (which cannot send headers)"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this seq")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, content_type = "text/event-stream", body = String, description = "`event: event` (id = seq, data = Event), `event: status`, `event: dlq`, `event: replay`, `: keep-alive` comments"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "[live] max_clients streams are open already")))]
pub(crate) async fn live(
    State(state): State<AppState>,
    headers: HeaderMap,
    pairs: QueryPairs,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let params = QueryParams::from_pairs(pairs.iter())?;
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| FieldError::new("Last-Event-ID", "must be the seq of an event this stream sent"))?,
        ),
    };
    let since = last_event_id.or(params.since_seq);
    // Held for as long as the stream is open; none left: 503 at once, before any feed is made.
    let slot = state.limits.live_clients.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_live_clients",
            format!(
                "this instance has its most live streams open ([live] max_clients = {}): retry later or on another instance",
                state.limits.max_live_clients
            ),
        )
    })?;
    let feed = state.service.feed(params.query.filter, since);
    // Counted in eventdeck_live_clients for as long as the stream is open.
    let client = state.metrics.live_client();
    let events = feed
        .take_until(state.shutdown.clone().cancelled_owned())
        .take_while(|item| {
            if let Err(error) = item {
                tracing::warn!(%error, "live stream ended; the client will resume from its last event id");
            }
            future::ready(item.is_ok())
        })
        .filter_map(move |item| {
            let _open = (&client, &slot);
            future::ready(item.ok().map(|item| Ok(to_sse(&item))))
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(state.limits.keep_alive).text("keep-alive")))
}

/// `GET /events/stream`: the same stream under the seed service's path.
#[utoipa::path(get, path = "/events/stream", tag = "live", params(crate::wire::EventQueryBody,
        ("since_seq" = Option<i64>, Query), ("access_token" = Option<String>, Query), ("Last-Event-ID" = Option<String>, Header)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, content_type = "text/event-stream", body = String, description = "The live stream (alias of /api/v1/events/live)"),
        (status = 401, body = crate::wire::ErrorEnvelope), (status = 422, body = crate::wire::ErrorEnvelope)))]
pub(crate) async fn live_alias(
    state: State<AppState>,
    headers: HeaderMap,
    pairs: QueryPairs,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    live(state, headers, pairs).await
}

fn to_sse(item: &FeedItem) -> SseEvent {
    match item {
        FeedItem::Stored(event) => SseEvent::default()
            .id(event.seq.to_string())
            .event("event")
            .data(serde_json::to_string(event.as_ref()).unwrap_or_default()),
        FeedItem::DeadLetter { action, entry } => {
            SseEvent::default().event("dlq").data(serde_json::json!({"action": action, "entry": entry}).to_string())
        }
        FeedItem::Status(change) => {
            SseEvent::default().event("status").data(serde_json::to_string(change).unwrap_or_default())
        }
        FeedItem::Replay(progress) => {
            SseEvent::default().event("replay").data(serde_json::to_string(progress.as_ref()).unwrap_or_default())
        }
    }
}
