//! Frontend events through JetStream (`[ingest] frontend_via_nats`, API.md "Several instances"): the
//! [`Frontend`] side the routes use to publish, and the consumer that stores what they published.
//!
//! The routes give each event its id, publish it to `<prefix>.frontend.<category>.<event_type>` with
//! `Nats-Msg-Id` = that id, and answer 202 after the JetStream ack, without waiting for the database.
//! One durable pull consumer ([`DURABLE`]) is shared by every instance, so each message goes to one of
//! them; this worker fetches what is ready, stores it through the engine's ingest (redaction, the
//! processing decision and the group-commit writer, exactly as a direct POST), and acks each message
//! only after its commit. A crash between commit and ack redelivers the message: the store knows the
//! id and answers the stored event, so it is stored once.
//!
//! A message that cannot be decoded, or that the engine refuses (a version conflict), is recorded as a
//! dead letter of kind `ingest` and terminated, never redelivered. When the store is down, the batch
//! stays in hand and is tried again, the messages kept from redelivery by progress acks, so an outage
//! of the database does not spend their delivery budget ([`MAX_DELIVER`], which only crashes do).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::message::AckKind;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::cluster::nats::{Nats, PublishError, subject_token};
use crate::domain::event::MAX_NAME_LEN;
use crate::domain::{DeadLetter, DeadLetterKind, EventId, NewEvent};
use crate::engine::Engine;
use crate::engine::bus::{DlqAction, EngineEvent};
use crate::metrics::ConsumedOutcome;
use crate::service::{Error, EventService, Ingested};
use crate::wire::frontend_message::FrontendMessage;

/// The durable consumer every instance shares.
pub const DURABLE: &str = "eventdeck-frontend";
/// How long a delivered message may stay unacknowledged before JetStream delivers it again (to this
/// instance or another): far above a commit, and renewed by progress acks while the store is down.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// Deliveries of one message at most: only crashes and lost acks spend them (a refused message is
/// terminated at once), so a message that kills the process does not kill every instance forever.
pub const MAX_DELIVER: i64 = 10;
/// Most messages stored in one ingest call; the writer groups concurrent calls further.
const BATCH: usize = 500;
/// How long one pull request waits for messages: also how long a stopping instance may take to hand
/// back what its last request brings.
const PULL_EXPIRES: Duration = Duration::from_millis(500);
/// Publications awaiting their JetStream ack at once, for one request.
const IN_FLIGHT: usize = 256;
/// Wait before setting up the stream and the consumer again after a failure.
const SETUP_RETRY: Duration = Duration::from_secs(1);
/// Wait before trying again after NATS refused the stream (a conflicting one: reported, to be fixed).
const SETUP_RETRY_REFUSED: Duration = Duration::from_secs(30);
/// Longest wait between two tries to store a batch while the store is down.
const STORE_RETRY_MAX: Duration = Duration::from_secs(5);
/// Longest text of an undecodable payload kept in its dead letter.
const PAYLOAD_EXCERPT: usize = 200;

/// What the frontend routes publish through; shared by the engine and the consumer.
pub struct Frontend {
    nats: Nats,
    stream: String,
    prefix: String,
    /// Set while the stream and the consumer exist, so the routes publish only where something will
    /// store what they publish.
    ready: AtomicBool,
}

impl Frontend {
    pub fn new(nats: Nats, stream: &str, prefix: &str) -> Self {
        Self { nats, stream: stream.to_owned(), prefix: prefix.to_owned(), ready: AtomicBool::new(false) }
    }

    /// Whether the routes publish now: NATS connected, the stream and the consumer set up.
    pub fn active(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.nats.connected()
    }

    /// The subject of one event: `<prefix>.frontend.<category>.<event_type>`.
    fn subject(&self, event: &NewEvent) -> String {
        format!("{}.frontend.{}.{}", self.prefix, event.event_category.as_str(), subject_token(&event.event_type))
    }

    /// Publishes every event (each given its id) and returns once JetStream acknowledged them all; an
    /// error when one was not, after which the caller stores them directly (those published too are
    /// then duplicates by id when the consumer takes them).
    pub async fn publish(&self, events: &[NewEvent]) -> Result<(), PublishError> {
        let messages: Vec<(String, EventId, Bytes)> = events
            .iter()
            .map(|event| {
                let id = event.event_id.unwrap_or_else(EventId::new_v7);
                // Domain values always serialise.
                let payload = serde_json::to_vec(&FrontendMessage::new(id, event)).unwrap_or_default();
                (self.subject(event), id, Bytes::from(payload))
            })
            .collect();
        let nats = &self.nats;
        let mut acks = futures::stream::iter(messages)
            .map(|(subject, id, payload)| async move { nats.publish_acked(subject, &id.to_string(), payload).await })
            .buffer_unordered(IN_FLIGHT);
        while let Some(result) = acks.next().await {
            result?;
        }
        Ok(())
    }

    /// Makes the stream (when missing) and the durable consumer (when missing).
    async fn set_up(&self) -> Result<PullConsumer, PublishError> {
        self.nats.ensure_stream(&self.stream, &self.prefix).await?;
        let context =
            self.nats.jetstream().ok_or_else(|| PublishError::Unavailable("NATS is not configured".to_owned()))?;
        let stream = context
            .get_stream(&self.stream)
            .await
            .map_err(|e| PublishError::Unavailable(format!("cannot look up NATS stream `{}`: {e}", self.stream)))?;
        let config = pull::Config {
            durable_name: Some(DURABLE.to_owned()),
            description: Some("eventdeck: frontend events to store".to_owned()),
            filter_subject: format!("{}.frontend.>", self.prefix),
            ack_policy: AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_deliver: MAX_DELIVER,
            ..Default::default()
        };
        stream.get_or_create_consumer(DURABLE, config).await.map_err(|e| {
            PublishError::Unavailable(format!(
                "cannot make the JetStream consumer `{DURABLE}` on stream `{}`: {e}",
                self.stream
            ))
        })
    }
}

/// Consumes frontend events until `shutdown`; a batch being stored is finished first (the writer
/// stops after the workers), and what was fetched but not stored is handed back to JetStream.
pub async fn run(engine: Engine, frontend: Arc<Frontend>, shutdown: CancellationToken) {
    let consumer = Consumer { engine, frontend };
    loop {
        let mut wait = SETUP_RETRY;
        if consumer.frontend.nats.connected() {
            match consumer.frontend.set_up().await {
                Ok(pull) => {
                    consumer.frontend.ready.store(true, Ordering::Relaxed);
                    consumer.consume(&pull, &shutdown).await;
                }
                Err(error) => {
                    if matches!(error, PublishError::Refused(_)) {
                        wait = SETUP_RETRY_REFUSED;
                    }
                    tracing::warn!("frontend events via NATS: {error}; they are stored directly until it works");
                }
            }
            consumer.frontend.ready.store(false, Ordering::Relaxed);
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    consumer.frontend.ready.store(false, Ordering::Relaxed);
}

/// Gives `messages` back to JetStream unstored, for another instance (or this one after a restart)
/// at once, and flushes the naks before the connection may close; a lost nak only delays a message
/// until [`ACK_WAIT`].
async fn hand_back(messages: &[Message]) {
    for message in messages {
        // Delayed past the open pull request, which would otherwise get them straight back.
        let _ = message.ack_with(AckKind::Nak(Some(PULL_EXPIRES))).await;
    }
    if let Some(message) = messages.first() {
        let _ = message.context.client().flush().await;
    }
}

struct Consumer {
    engine: Engine,
    frontend: Arc<Frontend>,
}

impl Consumer {
    /// Stores what each pull request brings until shutdown or an error of the pull (then set up
    /// again). One request at a time, each for up to a batch and at most [`PULL_EXPIRES`]: at a stop
    /// the open request runs out and what it still brings is handed back, so no message waits out
    /// [`ACK_WAIT`] in an instance that has stopped while another could store it.
    async fn consume(&self, pull: &PullConsumer, shutdown: &CancellationToken) {
        while !shutdown.is_cancelled() {
            let messages = match pull.batch().max_messages(BATCH).expires(PULL_EXPIRES).messages().await {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(%error, "cannot pull frontend events from JetStream; trying again");
                    return;
                }
            };
            // Whatever has arrived, up to a batch: one ingest call serves a burst, a lone event goes at once.
            let mut chunks = messages.ready_chunks(BATCH);
            while let Some(chunk) = chunks.next().await {
                let mut taken = Vec::with_capacity(chunk.len());
                let mut broken = false;
                for item in chunk {
                    match item {
                        Ok(message) => taken.push(message),
                        Err(error) => {
                            tracing::warn!(%error, "pulling frontend events from JetStream failed; setting up again");
                            broken = true;
                        }
                    }
                }
                if shutdown.is_cancelled() {
                    hand_back(&taken).await;
                } else {
                    self.store(taken, shutdown).await;
                }
                if broken {
                    return;
                }
            }
        }
    }

    /// Stores one batch and acks each message after its commit; refused ones become dead letters.
    async fn store(&self, messages: Vec<Message>, shutdown: &CancellationToken) {
        let mut taken = Vec::with_capacity(messages.len());
        let mut events = Vec::with_capacity(messages.len());
        for message in messages {
            match FrontendMessage::decode(&message.payload) {
                Ok(event) => {
                    events.push(event);
                    taken.push(message);
                }
                Err(reason) => self.refuse(&message, &reason).await,
            }
        }
        if taken.is_empty() {
            return;
        }
        let Some(results) = self.ingest(&taken, events, shutdown).await else {
            hand_back(&taken).await;
            return;
        };
        let metrics = self.engine.metrics();
        for (message, result) in taken.iter().zip(results) {
            match result {
                Ok(ingested) => {
                    metrics.frontend_consumed(match ingested.created {
                        true => ConsumedOutcome::Stored,
                        false => ConsumedOutcome::Duplicate,
                    });
                    // A lost ack delivers the message again, and the store answers it as a duplicate.
                    let _ = message.ack().await;
                }
                Err(error) => self.refuse(message, &format!("the engine refused it: {error}")).await,
            }
        }
    }

    /// Ingests `events` (decoded from `messages`), trying again while the store is down. `None` at
    /// shutdown, when the messages are to be handed back.
    async fn ingest(
        &self,
        messages: &[Message],
        events: Vec<NewEvent>,
        shutdown: &CancellationToken,
    ) -> Option<Vec<Result<Ingested, Error>>> {
        let mut first = Some(events);
        let mut wait = Duration::from_millis(100);
        loop {
            // A retry decodes the messages again rather than every batch keeping a copy.
            let events = first.take().unwrap_or_else(|| {
                messages.iter().filter_map(|message| FrontendMessage::decode(&message.payload).ok()).collect()
            });
            match self.engine.ingest(events).await {
                Ok(results) => return Some(results),
                Err(Error::ShuttingDown) => return None,
                Err(error) => tracing::warn!(
                    %error,
                    "cannot store frontend events from JetStream; they wait in the stream and are tried again"
                ),
            }
            for message in messages {
                // Keeps the message from redelivery meanwhile; if it is lost, a redelivery is a duplicate.
                let _ = message.ack_with(AckKind::Progress).await;
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(STORE_RETRY_MAX);
        }
    }

    /// Records a message that will never be stored as a dead letter of kind `ingest` and terminates
    /// it. When the record cannot be written, the message is delivered again later (at most
    /// [`MAX_DELIVER`] times in all).
    async fn refuse(&self, message: &Message, reason: &str) {
        let subject = message.subject.as_str();
        let (event_id, event_type) = self.identify(message);
        let attempts = message.info().map_or(1, |info| info.delivered.max(1));
        let mut excerpt: String = String::from_utf8_lossy(&message.payload).chars().take(PAYLOAD_EXCERPT).collect();
        if message.payload.len() > excerpt.len() {
            excerpt.push('…');
        }
        tracing::error!(subject, %event_id, "a frontend event from JetStream is not stored: {reason}");
        let entry = DeadLetter::of_event(
            DeadLetterKind::Ingest,
            event_id,
            event_type,
            u32::try_from(attempts).unwrap_or(u32::MAX),
            format!("not stored from JetStream subject {subject}: {reason}; the message was: {excerpt}"),
        );
        let inner = &self.engine.inner;
        if let Err(error) = inner.store.add_dead_letter(&entry).await {
            tracing::warn!(%error, "cannot record the refused frontend event; it is delivered again later");
            // Redelivered after the delay, or after ack_wait if this is lost.
            let _ = message.ack_with(AckKind::Nak(Some(SETUP_RETRY))).await;
            return;
        }
        inner.metrics.frontend_consumed(ConsumedOutcome::DeadLettered);
        // Nobody listening is fine: the entry is stored.
        inner.bus.publish(EngineEvent::DeadLetter { action: DlqAction::Added, entry: Arc::new(entry) });
        // A lost term delivers it again, to be recorded again (at most MAX_DELIVER times).
        let _ = message.ack_with(AckKind::Term).await;
    }

    /// The id and type to record a refused message under: those it carries when it has them (a
    /// valid id, a type of at most [`MAX_NAME_LEN`] characters), else its `Nats-Msg-Id` when that is an
    /// event id (a new one when not) and the type its subject names.
    fn identify(&self, message: &Message) -> (EventId, String) {
        let json: Option<Value> = serde_json::from_slice(&message.payload).ok();
        let field = |key: &str| json.as_ref().and_then(|json| json.get(key)).and_then(Value::as_str);
        let header = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|id| id.as_str());
        let event_id = [field("event_id"), header]
            .into_iter()
            .flatten()
            .find_map(|id| id.parse().ok())
            .unwrap_or_else(EventId::new_v7);
        // `<prefix>.frontend.<category>.<event_type…>`
        let after = format!("{}.frontend.", self.frontend.prefix);
        let from_subject = || {
            let subject = message.subject.as_str();
            subject
                .strip_prefix(&after)
                .and_then(|rest| rest.split_once('.'))
                .map_or(subject, |(_, event_type)| event_type)
                .to_owned()
        };
        let event_type = field("event_type")
            .filter(|event_type| !event_type.is_empty() && event_type.len() <= MAX_NAME_LEN)
            .map_or_else(from_subject, str::to_owned);
        (event_id, event_type)
    }
}
