//! The live feed of a [`RemoteClient`]: `GET /api/v1/events/live` over SSE, reconnecting with backoff
//! and resuming with `Last-Event-ID` (the seq of the last event passed on), so stored events arrive
//! with no gap and no duplicate across reconnects.

use std::sync::Arc;
use std::time::Duration;

use eventsource_client as sse;
use futures::StreamExt;
use reqwest::StatusCode;

use super::answer::{self, Origin};
use super::{CONNECT_TIMEOUT, ConnectionState, RemoteClient};
use crate::domain::EventFilter;
use crate::service::{self, Feed, FeedItem};
use crate::wire::{DlqChange, filter_pairs};

/// The first wait before reconnecting; doubled after each failed try up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(5);
/// A connection silent for this long (no event, no keep-alive comment) is taken as lost. The server
/// sends keep-alives every `[live] keep_alive_secs` (default 15).
const READ_TIMEOUT: Duration = Duration::from_secs(90);

/// Opens the feed. Nothing connects until it is polled; dropping it closes the connection.
///
/// Status, dead-letter and replay items have no seq and are not resent: those that happen while the
/// connection is down are missed (their endpoints have the state). Without `since_seq`, events stored
/// before the first connection is made are not sent, as with the engine's feed.
pub(super) fn open(client: RemoteClient, filter: EventFilter, since_seq: Option<i64>) -> Feed {
    let mut url = client.url(&["api", "v1", "events", "live"]);
    let pairs = filter_pairs(&filter);
    if !pairs.is_empty() {
        url.query_pairs_mut().extend_pairs(pairs);
    }
    let url = url.to_string();
    Box::pin(async_stream::stream! {
        let mut last_seq = since_seq;
        let mut delay = FIRST_DELAY;
        loop {
            let sse = match connect(&client, &url, last_seq) {
                Ok(sse) => sse,
                Err(error) => {
                    yield Err(service::Error::Unavailable(format!("cannot open the live stream at {url}: {error}")));
                    return;
                }
            };
            let mut stream = sse.stream();
            let reason = loop {
                match stream.next().await {
                    Some(Ok(sse::SSE::Connected(_))) => {
                        client.set_state(ConnectionState::Connected);
                        delay = FIRST_DELAY;
                    }
                    Some(Ok(sse::SSE::Comment(_))) => {}
                    Some(Ok(sse::SSE::Event(event))) => match item(&event) {
                        Ok(Some(FeedItem::Stored(event))) if last_seq.is_some_and(|seen| event.seq <= seen) => {}
                        Ok(Some(item)) => {
                            if let FeedItem::Stored(event) = &item {
                                last_seq = Some(event.seq);
                            }
                            yield Ok(item);
                        }
                        // A kind of item this client does not know yet.
                        Ok(None) => {}
                        Err(error) => {
                            yield Err(service::Error::Unavailable(format!(
                                "the live stream at {url} sent an `{}` item this client does not understand ({error}): is the server the same eventdeck version?",
                                event.event_type
                            )));
                            return;
                        }
                    },
                    Some(Err(sse::Error::UnexpectedResponse(response, body))) => {
                        let status = StatusCode::from_u16(response.status()).unwrap_or(StatusCode::BAD_GATEWAY);
                        if retryable(status) {
                            break format!("the server answered the live stream with status {status}");
                        }
                        // Only our own small validation answers are read; other bodies are not needed.
                        let body = if matches!(status.as_u16(), 400 | 422) {
                            body.body_bytes().await.unwrap_or_default()
                        } else {
                            Vec::new()
                        };
                        let origin = Origin { base: client.base_url(), has_key: client.inner.api_key.is_some() };
                        yield Err(answer::from_response(&origin, status, &body, None));
                        return;
                    }
                    Some(Err(error)) => break format!("lost the live stream from {}: {}", client.base_url(), describe(&error)),
                    None => break format!("the server at {} closed the live stream", client.base_url()),
                }
            };
            drop(stream);
            client.set_state(ConnectionState::Reconnecting { reason });
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_DELAY);
        }
    })
}

/// One connection attempt's client; reconnecting is done by [`open`], which knows the last seq. Fails
/// only for what no retry mends: a URL or header the SSE client will not take.
fn connect(client: &RemoteClient, url: &str, last_seq: Option<i64>) -> Result<Box<dyn sse::Client>, String> {
    // As text: the SSE client's error type is large.
    let text = |error: sse::Error| error.to_string();
    let mut builder = sse::ClientBuilder::for_url(url)
        .map_err(text)?
        .reconnect(sse::ReconnectOptions::reconnect(false).retry_initial(false).build())
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT);
    if let Some(key) = &client.inner.api_key {
        builder = builder.header("Authorization", &format!("Bearer {key}")).map_err(text)?;
    }
    if let Some(seq) = last_seq {
        builder = builder.last_event_id(seq.to_string());
    }
    // The TLS connector loads the system's root certificates; plain HTTP does not need them.
    Ok(if client.base_url().scheme() == "https" { Box::new(builder.build()) } else { Box::new(builder.build_http()) })
}

/// Statuses worth retrying: the server is busy, restarting, or behind a proxy that is.
fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || matches!(status.as_u16(), 408 | 429)
}

/// The error with the causes below it (`http error: …` alone hides "connection refused").
fn describe(error: &sse::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source().and_then(|inner| inner.source());
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// The feed item an SSE item carries, by its `event:` name; `None` for names this client does not know.
fn item(event: &sse::Event) -> Result<Option<FeedItem>, serde_json::Error> {
    let data = event.data.as_str();
    Ok(Some(match event.event_type.as_str() {
        "event" => FeedItem::Stored(Arc::new(serde_json::from_str(data)?)),
        "status" => FeedItem::Status(serde_json::from_str(data)?),
        "dlq" => {
            let DlqChange { action, entry } = serde_json::from_str(data)?;
            FeedItem::DeadLetter { action, entry }
        }
        "replay" => FeedItem::Replay(Arc::new(serde_json::from_str(data)?)),
        _ => return Ok(None),
    }))
}
