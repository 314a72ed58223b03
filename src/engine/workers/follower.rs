//! The log follower: puts stored events on the bus in seq order, whichever instance stored them. What
//! this instance commits arrives from the ingest writer; a gap before it (another instance's events) is
//! read from the store first, so a feed never sees a seq behind one it has seen. With a store other
//! instances share it also polls: for their events when this one stores none, for their status,
//! dead-letter and replay changes in the change log, and for their subscription and processor changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, MissedTickBehavior};

use crate::domain::{Event, EventFilter};
use crate::engine::bus::{Bus, EngineEvent};
use crate::engine::processors::Processors;
use crate::engine::subscriptions::Subscriptions;
use crate::storage::Store;

/// How often the store is read for what other instances did.
const POLL: Duration = Duration::from_millis(200);
/// How often subscriptions and processors are read again from the store.
pub const CONFIG_REFRESH: Duration = Duration::from_millis(500);
/// Events or changes read per query.
const PAGE: u32 = 500;

pub struct LogFollower {
    pub store: Arc<dyn Store>,
    pub bus: Bus,
    /// The highest seq put on the bus: feeds start there.
    pub last_seq: Arc<AtomicI64>,
    pub subscriptions: Arc<Subscriptions>,
    pub processors: Arc<Processors>,
    /// Woken when another instance changed the subscriptions.
    pub delivery_wake: Arc<Notify>,
}

impl LogFollower {
    /// Runs until the ingest writer stops (its side of `committed` closes), so every commit is on the
    /// bus before the engine is down.
    pub async fn run(self, mut committed: mpsc::Receiver<Vec<Arc<Event>>>) {
        let shared = !self.store.exclusive();
        let mut changes = match shared {
            true => self.store.last_change().await.unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot read the change log; following it from its start");
                0
            }),
            false => 0,
        };
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut refreshed = Instant::now();
        loop {
            tokio::select! {
                batch = committed.recv() => match batch {
                    Some(batch) => self.publish(batch).await,
                    None => break,
                },
                _ = poll.tick(), if shared => {
                    self.catch_up().await;
                    changes = self.relay_changes(changes).await;
                    if refreshed.elapsed() >= CONFIG_REFRESH {
                        refreshed = Instant::now();
                        self.refresh_config().await;
                    }
                }
            }
        }
    }

    /// Publishes what this instance committed, after whatever others committed before it. When the
    /// gap cannot be read, the batch waits for the next poll, which reads it all from the store.
    async fn publish(&self, batch: Vec<Arc<Event>>) {
        let Some(first) = batch.first().map(|e| e.seq) else { return };
        if first > self.last_seq.load(Ordering::Acquire) + 1 && !self.catch_up().await {
            return;
        }
        for event in batch {
            self.put(event);
        }
    }

    /// Publishes every stored event after the last one published; false when the store failed.
    async fn catch_up(&self) -> bool {
        loop {
            let after = self.last_seq.load(Ordering::Acquire);
            match self.store.events_after(after, &EventFilter::default(), PAGE).await {
                Ok(page) => {
                    let full = page.len() == PAGE as usize;
                    for event in page {
                        self.put(Arc::new(event));
                    }
                    if !full {
                        return true;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, after_seq = after, "cannot read the event log; trying again shortly");
                    return false;
                }
            }
        }
    }

    /// Puts one stored event on the bus, unless it is not past the last one.
    fn put(&self, event: Arc<Event>) {
        if event.seq <= self.last_seq.load(Ordering::Acquire) {
            return;
        }
        self.last_seq.store(event.seq, Ordering::Release);
        self.bus.relay(EngineEvent::Stored(event));
    }

    /// Relays the changes other instances recorded after `after`; returns the last id read.
    async fn relay_changes(&self, mut after: i64) -> i64 {
        let me = self.store.instance_id();
        loop {
            let page = match self.store.changes_after(after, PAGE).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the change log; trying again shortly");
                    return after;
                }
            };
            let full = page.len() == PAGE as usize;
            for change in page {
                after = change.id;
                if change.origin == me {
                    continue;
                }
                match EngineEvent::from_change(&change.body) {
                    Some(event) => self.bus.relay(event),
                    None => tracing::debug!(id = change.id, "skipping a change this version does not know"),
                }
            }
            if !full {
                return after;
            }
        }
    }

    /// Reads subscriptions and processors again, for changes made through other instances.
    async fn refresh_config(&self) {
        match self.subscriptions.reload(self.store.as_ref()).await {
            Ok(true) => self.delivery_wake.notify_one(),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "cannot read the subscriptions; trying again shortly"),
        }
        if let Err(error) = self.processors.reload(self.store.as_ref()).await {
            tracing::warn!(%error, "cannot read the processors; trying again shortly");
        }
    }
}
