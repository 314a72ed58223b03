//! The engine's bus: a bounded broadcast of [`EngineEvent`]s, and the live feed built on it. A feed that
//! falls behind the broadcast is caught up from the store by seq, so no consumer misses an event.
//!
//! Stored events reach the bus in seq order, from the log follower (`workers::follower`), whichever
//! instance stored them. With a store that other instances share, what this instance changes and they
//! should show too (processing status, dead letters, replay progress) also goes to the change log, and
//! their changes come back here from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;

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

/// An [`EngineEvent`] other than a stored event (those come from the log), as the change log keeps it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SharedChange {
    Status(StatusChange),
    Dlq { action: DlqAction, entry: DeadLetter },
    Replay(ReplayProgress),
}

impl EngineEvent {
    /// The change-log body of this event; `None` for a stored event.
    pub fn to_change(&self) -> Option<String> {
        let change = match self {
            EngineEvent::Stored(_) => return None,
            EngineEvent::Status(change) => SharedChange::Status(change.as_ref().clone()),
            EngineEvent::DeadLetter { action, entry } => {
                SharedChange::Dlq { action: *action, entry: entry.as_ref().clone() }
            }
            EngineEvent::Replay(progress) => SharedChange::Replay(progress.as_ref().clone()),
        };
        // These types always serialise.
        serde_json::to_string(&change).ok()
    }

    /// The event a change-log body stands for; `None` for a body this version does not know.
    pub fn from_change(body: &str) -> Option<Self> {
        Some(match serde_json::from_str(body).ok()? {
            SharedChange::Status(change) => EngineEvent::Status(Arc::new(change)),
            SharedChange::Dlq { action, entry } => EngineEvent::DeadLetter { action, entry: Arc::new(entry) },
            SharedChange::Replay(progress) => EngineEvent::Replay(Arc::new(progress)),
        })
    }
}

/// Changes waiting to be written to the change log, at most; beyond, they are dropped with a warning
/// (other instances miss a live frame, nothing stored is lost).
const OUTBOX: usize = 4096;

/// Where the engine announces what happens. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    local: broadcast::Sender<EngineEvent>,
    /// To the change-log writer, when other instances share the store.
    outbox: Option<mpsc::Sender<String>>,
}

impl Bus {
    /// A bus keeping `capacity` events for slow consumers; with `shared`, also the receiving end of the
    /// changes to write to the change log.
    pub fn new(capacity: usize, shared: bool) -> (Self, Option<mpsc::Receiver<String>>) {
        let (local, _) = broadcast::channel(capacity.max(1));
        let (outbox, changes) = if shared {
            let (tx, rx) = mpsc::channel(OUTBOX);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        (Self { local, outbox }, changes)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.local.subscribe()
    }

    /// Announces something this instance did: to local consumers, and (status, dead-letter and replay
    /// changes) to the other instances sharing the store.
    pub fn publish(&self, event: EngineEvent) {
        if let Some(outbox) = &self.outbox
            && let Some(change) = event.to_change()
            && outbox.try_send(change).is_err()
        {
            tracing::warn!("the change log is behind; other instances miss a live status, DLQ or replay frame");
        }
        // Nobody listening is fine: what happened is stored.
        let _ = self.local.send(event);
    }

    /// Hands local consumers what the log follower read: stored events in seq order, and what other
    /// instances did.
    pub(super) fn relay(&self, event: EngineEvent) {
        // Nobody listening is fine: what happened is stored.
        let _ = self.local.send(event);
    }
}

/// A feed of events matching `filter`: stored ones after `since_seq` first (when given), then live ones,
/// with status and dead-letter changes (of matching types) and replay progress as they happen.
///
/// Subscribing happens before anything is read, and every item carries its seq: an event committed
/// while the store is read arrives on the broadcast too and is skipped as already seen, and an event
/// the broadcast dropped because this consumer lagged is read from the store. No gap, no duplicate.
pub(super) fn feed(
    store: Arc<dyn Store>,
    bus: &Bus,
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
