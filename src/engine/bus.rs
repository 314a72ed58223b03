//! The engine's bus: a bounded broadcast of [`EngineEvent`]s, and the live feed built on it. A feed that
//! falls behind the broadcast is caught up from the store by seq, so no consumer misses an event.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::broadcast::{self, error::RecvError};

use crate::domain::{DeadLetter, Event, EventFilter, ReplayProgress};
pub use crate::service::DlqAction;
use crate::service::{Error, Feed, FeedItem, StatusChange};
use crate::storage::Store;

/// Stored events read from the store per catch-up query.
const CATCH_UP_PAGE: u32 = 500;

/// What happens in the engine, as the bus carries it.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    Stored(Arc<Event>),
    Status(Arc<StatusChange>),
    DeadLetter { action: DlqAction, entry: Arc<DeadLetter> },
    Replay(Arc<ReplayProgress>),
}

/// A feed of events matching `filter`: stored ones after `since_seq` first (when given), then live ones,
/// with status and dead-letter changes (of matching types) and replay progress as they happen.
///
/// Subscribing happens before anything is read, and every item carries its seq: an event committed
/// while the store is read arrives on the broadcast too and is skipped as already seen, and an event
/// the broadcast dropped because this consumer lagged is read from the store. No gap, no duplicate.
pub(super) fn feed(
    store: Arc<dyn Store>,
    bus: &broadcast::Sender<EngineEvent>,
    last_seq: &AtomicI64,
    filter: EventFilter,
    since_seq: Option<i64>,
) -> Feed {
    let mut live = bus.subscribe();
    let mut seen = since_seq.unwrap_or_else(|| last_seq.load(Ordering::Acquire));
    let mut behind = since_seq.is_some();
    Box::pin(async_stream::stream! {
        loop {
            while behind {
                match store.events_after(seen, &filter, CATCH_UP_PAGE).await {
                    Ok(page) => {
                        behind = page.len() == CATCH_UP_PAGE as usize;
                        for event in page {
                            seen = event.seq;
                            yield Ok(FeedItem::Stored(Arc::new(event)));
                        }
                    }
                    Err(error) => {
                        yield Err(Error::from(error));
                        return;
                    }
                }
            }
            match live.recv().await {
                Ok(EngineEvent::Stored(event)) => {
                    if event.seq <= seen {
                        continue;
                    }
                    seen = event.seq;
                    if filter.matches(&event) {
                        yield Ok(FeedItem::Stored(event));
                    }
                }
                Ok(EngineEvent::DeadLetter { action, entry }) => {
                    if filter.event_type.as_ref().is_none_or(|p| p.matches(&entry.event_type)) {
                        yield Ok(FeedItem::DeadLetter { action, entry });
                    }
                }
                Ok(EngineEvent::Status(change)) => {
                    if change.seq <= seen && filter.event_type.as_ref().is_none_or(|p| p.matches(&change.event_type)) {
                        yield Ok(FeedItem::Status(change.as_ref().clone()));
                    }
                }
                Ok(EngineEvent::Replay(progress)) => yield Ok(FeedItem::Replay(progress)),
                // Status, dead-letter and replay changes are not replayed from the store: their
                // endpoints have the state.
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, after_seq = seen, "live consumer lagged; catching up from the store");
                    behind = true;
                }
                Err(RecvError::Closed) => return,
            }
        }
    })
}
