//! The live stream over Server-Sent Events, resumable with `Last-Event-ID` or `?since_seq=`.

use std::convert::Infallible;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
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
    Router::new().route("/api/v1/events/live", get(live)).route("/events/stream", get(live))
}

async fn live(
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
    let feed = state.service.feed(params.query.filter, since);
    let events = feed
        .take_until(state.shutdown.clone().cancelled_owned())
        .take_while(|item| {
            if let Err(error) = item {
                tracing::warn!(%error, "live stream ended; the client will resume from its last event id");
            }
            future::ready(item.is_ok())
        })
        .filter_map(|item| future::ready(item.ok().map(|item| Ok(to_sse(&item)))));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(state.limits.keep_alive).text("keep-alive")))
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
