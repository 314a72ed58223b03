//! The live link: the fast path of the live feed between instances that share a store, over core NATS
//! (API.md, "Several instances"). It sends what this instance committed (events with their seqs) and
//! recorded in the change log (status, dead-letter and replay changes with their change-log ids) to the
//! other instances, and hands what they sent to the log follower, which relays it in seq (and id)
//! order and reads any gap from the store first.
//!
//! This is a speed-up, never a guarantee: plain publishes (no JetStream, no ack, nothing kept while
//! NATS is down), bounded queues that drop rather than wait, so ingest is never slowed. Whatever is
//! lost here the follower's poll of the store delivers a moment later; the store stays the source of
//! truth for gaplessness.
//!
//! Subjects are `_EVENTDECK_LIVE.<prefix>.events` and `.changes`, outside `<prefix>.>` so the JetStream
//! stream of publications never captures them. A message names the instance that sent it: an instance
//! ignores its own, and those of instances its store does not know (another deployment on the same
//! NATS server and prefix), whose seqs would mean nothing here.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cluster::nats::Nats;
use crate::domain::{Event, Timestamp};
use crate::metrics::{LiveFeed, Metrics};
use crate::storage::Store;

/// Messages waiting to be sent, and received ones waiting for the follower, at most each; beyond, they
/// are dropped (the follower's poll reads what they carried from the store).
pub const QUEUE: usize = 1024;
/// Events per message at most, so a large group commit stays well under the server's max_payload.
const EVENTS_PER_MESSAGE: usize = 100;
/// Changes per message at most, likewise.
const CHANGES_PER_MESSAGE: usize = 200;
/// First token of the live feed's subjects.
const ROOT: &str = "_EVENTDECK_LIVE";
/// Shortest time between two reads of the instances table when messages come from an unknown origin.
const LOOKUP_EVERY: Duration = Duration::from_millis(250);
/// An origin counts as an instance of this store when it heartbeated this recently (as `/api/v1/cluster`).
const SEEN_WITHIN_MICROS: i64 = 15_000_000;

/// Something this instance did, for the other instances.
#[derive(Debug)]
pub enum Outgoing {
    /// One commit's events, in seq order.
    Events(Vec<Arc<Event>>),
    /// Changes just written to the change log, in id order.
    Changes(Vec<LiveChange>),
}

/// Something another instance did, for the log follower.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// Events another instance committed, in seq order.
    Events(Vec<Arc<Event>>),
    /// Changes another instance wrote to the change log, in id order.
    Changes(Vec<LiveChange>),
}

/// A change-log row as the live feed carries it: its id, and the body `EngineEvent::from_change` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveChange {
    pub id: i64,
    pub body: String,
}

#[derive(Serialize, Deserialize)]
struct EventsMessage {
    origin: String,
    events: Vec<Arc<Event>>,
}

#[derive(Serialize, Deserialize)]
struct ChangesMessage {
    origin: String,
    changes: Vec<LiveChange>,
}

/// Where the follower and the announcer hand the link what to send. Cheap to clone.
#[derive(Clone)]
pub struct LiveOutbox {
    queue: mpsc::Sender<Outgoing>,
    metrics: Arc<Metrics>,
}

impl LiveOutbox {
    /// Queues `outgoing` without waiting; when the link is behind it is dropped.
    pub fn offer(&self, outgoing: Outgoing) {
        if self.queue.try_send(outgoing).is_err() {
            self.metrics.live_feed(LiveFeed::Dropped);
            tracing::debug!("the live link is behind; other instances read this commit or change from the store");
        }
    }
}

pub struct LiveLink {
    pub nats: Nats,
    /// For this instance's id and the ids of the instances sharing the store.
    pub store: Arc<dyn Store>,
    /// `[nats] subject_prefix`.
    pub prefix: String,
    pub metrics: Arc<Metrics>,
    /// To the log follower.
    pub incoming: mpsc::Sender<Incoming>,
}

impl LiveLink {
    /// The link and the outbox that feeds it.
    pub fn outbox(metrics: Arc<Metrics>) -> (LiveOutbox, mpsc::Receiver<Outgoing>) {
        let (queue, outgoing) = mpsc::channel(QUEUE);
        (LiveOutbox { queue, metrics }, outgoing)
    }

    /// Sends and receives until every [`LiveOutbox`] is dropped (the follower and the announcer have
    /// stopped), so the last commits still go out.
    pub async fn run(self, mut outgoing: mpsc::Receiver<Outgoing>) {
        let subjects = format!("{ROOT}.{}.*", self.prefix);
        let mut subscription = match self.nats.subscribe(&subjects).await {
            Ok(subscription) => Some(subscription),
            Err(error) => {
                tracing::warn!(%error, "the live feed from other instances comes from the store only");
                None
            }
        };
        let mut origins = Origins::default();
        loop {
            tokio::select! {
                out = outgoing.recv() => match out {
                    Some(out) => self.send(out).await,
                    None => break,
                },
                message = async { subscription.as_mut()?.next().await }, if subscription.is_some() => match message {
                    Some(message) => self.receive(&mut origins, &message.subject, &message.payload).await,
                    None => {
                        tracing::warn!("the live feed subscription ended; other instances' frames come from the store");
                        subscription = None;
                    }
                },
            }
        }
    }

    async fn send(&self, outgoing: Outgoing) {
        let origin = self.store.instance_id().to_owned();
        let messages: Vec<(&str, serde_json::Result<Vec<u8>>)> = match outgoing {
            Outgoing::Events(events) => events
                .chunks(EVENTS_PER_MESSAGE)
                .map(|chunk| {
                    ("events", serde_json::to_vec(&EventsMessage { origin: origin.clone(), events: chunk.to_vec() }))
                })
                .collect(),
            Outgoing::Changes(changes) => changes
                .chunks(CHANGES_PER_MESSAGE)
                .map(|chunk| {
                    ("changes", serde_json::to_vec(&ChangesMessage { origin: origin.clone(), changes: chunk.to_vec() }))
                })
                .collect(),
        };
        for (kind, payload) in messages {
            let sent = match payload {
                Ok(payload) => {
                    self.nats.publish_unacked(&format!("{ROOT}.{}.{kind}", self.prefix), Bytes::from(payload)).await
                }
                Err(error) => Err(format!("cannot encode the message: {error}")),
            };
            match sent {
                Ok(()) => self.metrics.live_feed(LiveFeed::Sent),
                Err(error) => {
                    self.metrics.live_feed(LiveFeed::Dropped);
                    // The other instances read it from the store instead.
                    tracing::debug!(%error, kind, "a live feed message was not sent");
                }
            }
        }
    }

    async fn receive(&self, origins: &mut Origins, subject: &str, payload: &[u8]) {
        let incoming = match subject.rsplit('.').next() {
            Some("events") => {
                serde_json::from_slice::<EventsMessage>(payload).map(|m| (m.origin, Incoming::Events(m.events)))
            }
            Some("changes") => {
                serde_json::from_slice::<ChangesMessage>(payload).map(|m| (m.origin, Incoming::Changes(m.changes)))
            }
            _ => return,
        };
        let (origin, incoming) = match incoming {
            Ok(decoded) => decoded,
            Err(error) => {
                tracing::debug!(%error, subject, "skipping a live feed message this version cannot read");
                return;
            }
        };
        if origin == self.store.instance_id() || !origins.known(self.store.as_ref(), &origin).await {
            return;
        }
        self.metrics.live_feed(LiveFeed::Received);
        if self.incoming.try_send(incoming).is_err() {
            self.metrics.live_feed(LiveFeed::Dropped);
            tracing::debug!("the log follower is behind the live feed; it reads these from the store");
        }
    }
}

/// The instances known to share this store, read again (at most every [`LOOKUP_EVERY`]) when a message
/// comes from one not known yet.
#[derive(Default)]
struct Origins {
    known: HashSet<String>,
    looked_up: Option<Instant>,
}

impl Origins {
    async fn known(&mut self, store: &dyn Store, origin: &str) -> bool {
        if self.known.contains(origin) {
            return true;
        }
        if self.looked_up.is_some_and(|at| at.elapsed() < LOOKUP_EVERY) {
            return false;
        }
        self.looked_up = Some(Instant::now());
        let since = Timestamp::from_micros(Timestamp::now().as_micros() - SEEN_WITHIN_MICROS);
        match store.instances(since).await {
            Ok(instances) => self.known = instances.into_iter().map(|(record, _)| record.instance_id).collect(),
            Err(error) => tracing::debug!(%error, "cannot read the instances; live feed messages wait for the poll"),
        }
        let known = self.known.contains(origin);
        if !known {
            tracing::debug!(origin, "ignoring live feed messages from an instance this store does not know");
        }
        known
    }
}
