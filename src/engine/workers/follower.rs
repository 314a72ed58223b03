//! The log follower: puts stored events on the bus in seq order, whichever instance stored them. What
//! this instance commits arrives from the ingest writer; a gap before it (another instance's events) is
//! read from the store first, so a feed never sees a seq behind one it has seen. With a store other
//! instances share it also polls: for their events when this one stores none, for their status,
//! dead-letter and replay changes in the change log, and for their subscription and processor changes.
//!
//! With NATS, the live link (`workers::live_link`) sends this instance's commits to the others and
//! brings theirs (and their changes) here at once; they take the same path as a local commit, so a
//! message that would skip a seq (or a change id) waits until the gap is read from the store. The poll
//! stays as the backstop for messages lost or NATS down.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, MissedTickBehavior};

use super::live_link::{Incoming, LiveChange, LiveOutbox, Outgoing};
use crate::domain::{Event, EventFilter};
use crate::engine::bus::{Bus, EngineEvent};
use crate::engine::processors::Processors;
use crate::engine::subscriptions::Subscriptions;
use crate::storage::Store;

/// How often the store is read for what other instances did, by default.
pub const POLL: Duration = Duration::from_millis(200);
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
    /// How often the store is read for what other instances did ([`POLL`]).
    pub poll: Duration,
    /// To the other instances over NATS, when the live link runs.
    pub live: Option<LiveOutbox>,
}

impl LogFollower {
    /// Runs until the ingest writer stops (its side of `committed` closes), so every commit is on the
    /// bus before the engine is down. `remote` brings what other instances sent over the live link.
    pub async fn run(
        self,
        mut committed: mpsc::Receiver<Vec<Arc<Event>>>,
        mut remote: Option<mpsc::Receiver<Incoming>>,
    ) {
        let shared = !self.store.exclusive();
        let mut changes = match shared {
            true => self.store.last_change().await.unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot read the change log; following it from its start");
                0
            }),
            false => 0,
        };
        let mut poll = tokio::time::interval(self.poll);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut refresh = tokio::time::interval_at(Instant::now() + CONFIG_REFRESH, CONFIG_REFRESH);
        refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = committed.recv() => match batch {
                    Some(batch) => {
                        // Sent first: the others need not wait for this instance's own bus.
                        if let Some(live) = &self.live {
                            live.offer(Outgoing::Events(batch.clone()));
                        }
                        self.publish(batch).await;
                    }
                    None => break,
                },
                incoming = async { remote.as_mut()?.recv().await }, if remote.is_some() => match incoming {
                    Some(Incoming::Events(batch)) => self.publish_remote(batch).await,
                    Some(Incoming::Changes(list)) => changes = self.relay_live_changes(changes, list).await,
                    None => remote = None,
                },
                _ = poll.tick(), if shared => {
                    self.catch_up().await;
                    changes = self.relay_changes(changes).await;
                }
                _ = refresh.tick(), if shared => self.refresh_config().await,
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

    /// Publishes what another instance committed, as it sent it over the live link. Only events that
    /// follow the last one published go on the bus: when the message would skip a seq (one lost, or
    /// sent by another instance and not here yet), the store is read first, which holds everything
    /// committed up to now, this message's events included. A message whose events the store does not
    /// hold is therefore never put on the bus ahead of them.
    async fn publish_remote(&self, batch: Vec<Arc<Event>>) {
        let last = self.last_seq.load(Ordering::Acquire);
        let Some(first) = batch.iter().map(|e| e.seq).find(|seq| *seq > last) else { return };
        if first > last + 1 && !self.catch_up().await {
            return;
        }
        for event in batch {
            if event.seq > self.last_seq.load(Ordering::Acquire) + 1 {
                // Not contiguous even after reading the store: the store's order wins; the poll reads it.
                return;
            }
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
                if change.origin != me {
                    self.relay_change(change.id, &change.body).await;
                }
            }
            if !full {
                return after;
            }
        }
    }

    /// Relays changes another instance sent over the live link, in id order, after the last one
    /// relayed (`after`); returns the last id relayed. Ids already relayed (by the poll) are skipped;
    /// one past a gap makes the change log be read from the store first, which holds these too.
    async fn relay_live_changes(&self, mut after: i64, changes: Vec<LiveChange>) -> i64 {
        for change in changes {
            if change.id <= after {
                continue;
            }
            if change.id > after + 1 {
                let read = self.relay_changes(after).await;
                if read == after {
                    // The store could not be read (or holds nothing new): the poll tries again.
                    return after;
                }
                after = read;
                continue;
            }
            self.relay_change(change.id, &change.body).await;
            after = change.id;
        }
        after
    }

    /// Relays one change of another instance. A status change comes after its event: when that event
    /// is not on the bus yet, the store is read first, so a feed never sees the status of an event it
    /// has not seen (it would drop it).
    async fn relay_change(&self, id: i64, body: &str) {
        let Some(event) = EngineEvent::from_change(body) else {
            tracing::debug!(id, "skipping a change this version does not know");
            return;
        };
        if let EngineEvent::Status(change) = &event
            && change.seq > self.last_seq.load(Ordering::Acquire)
        {
            // A failed read is logged there; the status frame is relayed anyway, as before.
            self.catch_up().await;
        }
        self.bus.relay(event);
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

#[cfg(test)]
mod tests {
    use tokio::sync::broadcast;

    use super::*;
    use crate::domain::{EventStatus, NewEvent};
    use crate::service::StatusChange;
    use crate::storage::{Appended, SqliteStore, StoreOptions, SyncMode};

    /// Opens the SQLite store at `path` as instance `instance`.
    async fn open(path: &std::path::Path, instance: &str) -> Arc<dyn Store> {
        let options =
            StoreOptions { sync: SyncMode::Normal, instance_id: instance.to_owned(), ..StoreOptions::default() };
        Arc::new(SqliteStore::open(path, &options).await.expect("a SQLite store"))
    }

    /// Instance `there` stores `events` events and records a `processed` change for each; then a
    /// follower of instance `here` opens the store with nothing on its bus yet. Returns the follower,
    /// a receiver of its bus, the events and the change-log rows.
    async fn setup(
        dir: &tempfile::TempDir,
        events: usize,
    ) -> (LogFollower, broadcast::Receiver<EngineEvent>, Vec<Arc<Event>>, Vec<LiveChange>) {
        let path = dir.path().join("store.db");
        let there = open(&path, "there").await;
        let appended = there.append((0..events).map(|_| NewEvent::new("order.placed")).collect()).await.unwrap();
        let stored: Vec<Arc<Event>> = appended
            .into_iter()
            .map(|a| match a {
                Appended::Created(event) => Arc::new(event),
                other => panic!("not stored: {other:?}"),
            })
            .collect();
        let bodies: Vec<String> = stored.iter().map(|e| processed(e).to_change().unwrap()).collect();
        let ids = there.record_changes(&bodies).await.unwrap();
        let changes = ids.into_iter().zip(bodies).map(|(id, body)| LiveChange { id, body }).collect();
        there.close().await;

        let store = open(&path, "here").await;
        let (bus, _) = Bus::new(1024, false, None);
        let receiver = bus.subscribe();
        let follower = LogFollower {
            subscriptions: Arc::new(Subscriptions::load(store.as_ref()).await.unwrap()),
            processors: Arc::new(Processors::load(store.as_ref()).await.unwrap()),
            store,
            bus,
            last_seq: Arc::new(AtomicI64::new(0)),
            delivery_wake: Arc::new(Notify::new()),
            poll: POLL,
            live: None,
        };
        (follower, receiver, stored, changes)
    }

    fn processed(event: &Event) -> EngineEvent {
        EngineEvent::Status(Arc::new(StatusChange {
            event_id: event.event_id,
            seq: event.seq,
            event_type: event.event_type.clone(),
            status: EventStatus::Processed,
            error_message: None,
        }))
    }

    /// What reached the bus so far: `e<seq>` for a stored event, `s<seq>` for a status change.
    fn relayed(receiver: &mut broadcast::Receiver<EngineEvent>) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok(event) = receiver.try_recv() {
            seen.push(match event {
                EngineEvent::Stored(event) => format!("e{}", event.seq),
                EngineEvent::Status(change) => format!("s{}", change.seq),
                other => format!("{other:?}"),
            });
        }
        seen
    }

    fn names(prefix: &str, seqs: impl IntoIterator<Item = i64>) -> Vec<String> {
        seqs.into_iter().map(|seq| format!("{prefix}{seq}")).collect()
    }

    #[tokio::test]
    async fn batches_from_two_origins_out_of_order_and_repeated_reach_the_bus_once_in_seq_order() {
        let dir = tempfile::tempdir().unwrap();
        let (follower, mut bus, events, _) = setup(&dir, 6).await;
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        // In order: each message follows the last seq, so it goes on the bus as it came.
        follower.publish_remote(events[..2].to_vec()).await;
        follower.publish_remote(events[2..3].to_vec()).await;
        assert_eq!(relayed(&mut bus), names("e", seqs[..3].iter().copied()));
        // The second origin's message overtook the first's: the gap is read from the store, the late
        // one and a repeat are skipped.
        follower.publish_remote(events[4..].to_vec()).await;
        follower.publish_remote(events[3..4].to_vec()).await;
        follower.publish_remote(events[4..].to_vec()).await;
        assert_eq!(relayed(&mut bus), names("e", seqs[3..].iter().copied()));
        assert_eq!(follower.last_seq.load(Ordering::Acquire), seqs[5]);
    }

    #[tokio::test]
    async fn a_lost_message_is_read_from_the_store_and_one_ahead_of_the_store_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let (follower, mut bus, events, _) = setup(&dir, 5).await;
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        follower.publish_remote(events[..2].to_vec()).await;
        // The message with the third and fourth event was lost.
        follower.publish_remote(events[4..].to_vec()).await;
        assert_eq!(relayed(&mut bus), names("e", seqs.iter().copied()));
        // A message claiming seqs the store does not hold (it cannot be this store's) never goes first.
        let mut foreign = events[4].as_ref().clone();
        foreign.seq = seqs[4] + 2;
        follower.publish_remote(vec![Arc::new(foreign)]).await;
        assert!(relayed(&mut bus).is_empty());
        assert_eq!(follower.last_seq.load(Ordering::Acquire), seqs[4]);
    }

    #[tokio::test]
    async fn changes_are_relayed_by_id_after_their_events_and_a_gap_is_read_from_the_change_log() {
        let dir = tempfile::tempdir().unwrap();
        let (follower, mut bus, events, changes) = setup(&dir, 3).await;
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        // The first change's message was lost: the change log is read from after the last relayed id;
        // each status waits for its event, which the store has.
        let after = follower.relay_live_changes(0, changes[1..].to_vec()).await;
        assert_eq!(after, changes[2].id);
        let expected: Vec<String> =
            names("e", seqs.iter().copied()).into_iter().chain(names("s", seqs.clone())).collect();
        assert_eq!(relayed(&mut bus), expected);
        // Repeats (the poll or another message relayed them) are skipped.
        assert_eq!(follower.relay_live_changes(after, changes.clone()).await, after);
        assert!(relayed(&mut bus).is_empty());
        // The next id is relayed as it came, without the store (which does not hold it).
        let next = LiveChange { id: after + 1, body: processed(&events[0]).to_change().unwrap() };
        assert_eq!(follower.relay_live_changes(after, vec![next]).await, after + 1);
        assert_eq!(relayed(&mut bus), names("s", [seqs[0]]));
    }
}
