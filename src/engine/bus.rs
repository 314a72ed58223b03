//! The engine's bus: a bounded broadcast of [`EngineEvent`]s, and the live feed built on it. A feed that
//! falls behind the broadcast is caught up from the store by seq, so no consumer misses an event.
//!
//! Stored events reach the bus in seq order, from the log follower (`workers::follower`), whichever
//! instance stored them. With a store that other instances share, what this instance changes and they
//! should show too (processing status, dead letters, replay progress) also goes to the change log, and
//! their changes come back here from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;

use super::workers::publisher::Notice;
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
    /// To the NATS publisher, when publications are on.
    publisher: Option<mpsc::Sender<Notice>>,
}

impl Bus {
    /// A bus keeping `capacity` events for slow consumers; with `shared`, also the receiving end of the
    /// changes to write to the change log.
    pub fn new(
        capacity: usize,
        shared: bool,
        publisher: Option<mpsc::Sender<Notice>>,
    ) -> (Self, Option<mpsc::Receiver<String>>) {
        let (local, _) = broadcast::channel(capacity.max(1));
        let (outbox, changes) = if shared {
            let (tx, rx) = mpsc::channel(OUTBOX);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        (Self { local, outbox, publisher }, changes)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.local.subscribe()
    }

    /// Announces something this instance did: to local consumers, and (status, dead-letter and replay
    /// changes) to the other instances sharing the store.
    pub fn publish(&self, event: EngineEvent) {
        if !matches!(event, EngineEvent::Stored(_)) {
            self.notify_publisher(Notice::Change(event.clone()));
        }
        if let Some(outbox) = &self.outbox
            && let Some(change) = event.to_change()
            && outbox.try_send(change).is_err()
        {
            tracing::warn!("the change log is behind; other instances miss a live status, DLQ or replay frame");
        }
        // Nobody listening is fine: what happened is stored.
        let _ = self.local.send(event);
    }

    /// Hands the NATS publisher something this instance did (nothing when publications are off).
    pub fn notify_publisher(&self, notice: Notice) {
        if let Some(publisher) = &self.publisher
            && publisher.try_send(notice).is_err()
        {
            tracing::warn!("NATS publications are behind; a change notice is not published (the store has it)");
        }
    }

    /// Hands local consumers what the log follower read: stored events in seq order, and what other
    /// instances did.
    pub(super) fn relay(&self, event: EngineEvent) {
        // Nobody listening is fine: what happened is stored.
        let _ = self.local.send(event);
    }
}

/// Items a feed holds for its consumer, at most. The broadcast is read at once by each feed's own task,
/// so a consumer that stops reading (an SSE client whose socket is full) never pins the broadcast's
/// events; past this many waiting, the feed drops what arrives and catches up from the store when the
/// consumer reads again, as after a broadcast lag.
const FEED_BUFFER: usize = 64;

/// A feed of events matching `filter`: stored ones after `since_seq` first (when given), then live ones,
/// with status and dead-letter changes (of matching types) and replay progress as they happen.
///
/// Subscribing happens before anything is read, and every item carries its seq: an event committed
/// while the store is read arrives on the broadcast too and is skipped as already seen, and an event
/// dropped because this consumer lagged (behind the broadcast, or with its own buffer full) is read from
/// the store. No gap, no duplicate. Status, dead-letter and replay changes dropped that way are not
/// replayed: their endpoints have the state.
pub(super) fn feed(
    store: Arc<dyn Store>,
    bus: &Bus,
    last_seq: &AtomicI64,
    filter: EventFilter,
    since_seq: Option<i64>,
) -> Feed {
    let live = bus.subscribe();
    let mut seen = since_seq.unwrap_or_else(|| last_seq.load(Ordering::Acquire));
    let mut behind = since_seq.is_some();
    let (mut buffered, dropped) = forward(live);
    Box::pin(async_stream::stream! {
        loop {
            // Checked before every wait: while something was dropped the buffer is full, so the
            // flag is seen before the buffer runs dry.
            if dropped.swap(false, Ordering::AcqRel) {
                tracing::debug!(after_seq = seen, "live consumer fell behind; catching up from the store");
                behind = true;
            }
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
            match buffered.recv().await {
                // The broadcast dropped events this feed had not read: the store has them.
                Some(None) => behind = true,
                Some(Some(EngineEvent::Stored(event))) => {
                    if event.seq <= seen {
                        continue;
                    }
                    seen = event.seq;
                    if filter.matches(&event) {
                        yield Ok(FeedItem::Stored(event));
                    }
                }
                Some(Some(EngineEvent::DeadLetter { action, entry })) => {
                    if filter.event_type.as_ref().is_none_or(|p| p.matches(&entry.event_type)) {
                        yield Ok(FeedItem::DeadLetter { action, entry });
                    }
                }
                Some(Some(EngineEvent::Status(change))) => {
                    if change.seq <= seen && filter.event_type.as_ref().is_none_or(|p| p.matches(&change.event_type)) {
                        yield Ok(FeedItem::Status(change.as_ref().clone()));
                    }
                }
                Some(Some(EngineEvent::Replay(progress))) => yield Ok(FeedItem::Replay(progress)),
                None => return,
            }
        }
    })
}

/// Reads the broadcast for one feed as fast as it is sent, into a buffer of [`FEED_BUFFER`] items. A
/// broadcast lag goes into the buffer in its place (`None`), so the events after it are not taken
/// before the catch-up; what does not fit raises the flag, which the feed checks before it takes the
/// next item of the (then full) buffer. Ends with the bus or when the feed is dropped.
fn forward(mut live: broadcast::Receiver<EngineEvent>) -> (mpsc::Receiver<Option<EngineEvent>>, Arc<AtomicBool>) {
    let (tx, rx) = mpsc::channel(FEED_BUFFER);
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    tokio::spawn(async move {
        loop {
            let received = tokio::select! {
                () = tx.closed() => return,
                received = live.recv() => received,
            };
            let item = match received {
                Ok(event) => Some(event),
                Err(RecvError::Lagged(_)) => None,
                Err(RecvError::Closed) => return,
            };
            match tx.try_send(item) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => flag.store(true, Ordering::Release),
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    });
    (rx, dropped)
}
