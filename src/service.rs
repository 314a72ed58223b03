//! The surface every front end uses: [`EventService`], its [`Error`], and [`Feed`], the live stream.
//! The HTTP API and (later) the console see only this, so they run the same against the embedded
//! engine and against a remote server.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::Serialize;

pub use crate::domain::archive::{ArchiveReport, ArchiveStats};
use crate::domain::delivery::{DlqGroupQuery, DlqGroups, DlqQuery, DlqSelector};
use crate::domain::subscription::SubscriptionPatch;
use crate::domain::{
    DeadLetter, DeliveryAttempt, DlqId, Event, EventFilter, EventId, EventPage, EventQuery, EventStatus, FieldError,
    NewEvent, ProcessingResult, Processor, ProcessorId, Projection, ProjectionAt, ReplayId, ReplayProgress,
    ReplayRequest, ReplayStarted, Statistics, Subscription, SubscriptionId, Timestamp,
};

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(FieldError),
    #[error("{what} `{id}` was not found")]
    NotFound { what: &'static str, id: String },
    #[error(
        "stream `{stream_id}` is at version {actual}, not the expected {expected}: read the stream and retry with expected_version {actual}"
    )]
    VersionConflict { stream_id: String, expected: i64, actual: i64 },
    /// A name already taken, or a replay that needs `confirm`.
    #[error("{0}")]
    Conflict(FieldError),
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// The database could not grow (disk full, quota or file-size limit): the whole message.
    #[error("{0}")]
    StorageFull(String),
    #[error("the server is shutting down; retry against another instance or after restart")]
    ShuttingDown,
    /// What was asked for was archived and deleted from the store: the message says where it is.
    #[error("{0}")]
    Archived(String),
}

impl From<crate::storage::Error> for Error {
    fn from(error: crate::storage::Error) -> Self {
        if error.is_full() {
            return Self::StorageFull(format!(
                "the database cannot grow: the disk is full or a size limit was reached ({error}): free disk space \
                 or lift the limit; writes resume by themselves and nothing acknowledged was lost"
            ));
        }
        Self::Unavailable(error.to_string())
    }
}

/// One stored event as ingest answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingested {
    pub event: Arc<Event>,
    /// False when the idempotency key was seen before and `event` is the one stored then.
    pub created: bool,
}

/// What the live feed carries.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    Stored(Arc<Event>),
    /// An event's processing status changed (claims are not announced, only outcomes).
    Status(StatusChange),
    DeadLetter {
        action: DlqAction,
        entry: Arc<DeadLetter>,
    },
    Replay(Arc<ReplayProgress>),
}

/// The `event: status` payload.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct StatusChange {
    pub event_id: EventId,
    pub seq: i64,
    pub event_type: String,
    pub status: EventStatus,
    pub error_message: Option<String>,
}

/// A change to the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DlqAction {
    Added,
    Removed,
}

/// One page of dead letters.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DlqPage {
    pub entries: Vec<DeadLetter>,
    pub total: u64,
}

/// A live subscription: everything after the resume point, then new items as they happen, with no gap
/// and no duplicate. An `Err` ends it; the consumer resumes from the last seq it saw.
pub type Feed = BoxStream<'static, Result<FeedItem, Error>>;

/// Most streams one listing answers.
pub const MAX_STREAMS: u32 = 1000;

/// Streams by id prefix, as `GET /api/v1/events/streams` answers.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct StreamList {
    pub streams: Vec<crate::storage::StreamSummary>,
}

/// One page of a stream's events, with the stream's current version.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct StreamEvents {
    pub stream_id: String,
    pub version: i64,
    pub events: Vec<Arc<Event>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when storage does not answer.
    pub status: &'static str,
    pub version: &'static str,
    pub uptime_s: u64,
    /// This instance's id (`[cluster] instance_id`).
    pub instance_id: String,
    pub storage: StorageHealth,
    /// `disabled` until NATS is configured.
    pub nats: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StorageHealth {
    pub backend: &'static str,
    pub ok: bool,
}

/// The instances sharing the store, as `GET /api/v1/cluster` answers.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Cluster {
    /// Those seen in the last 15 s, in order of their start.
    pub instances: Vec<Instance>,
}

/// One instance of eventdeck.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Instance {
    pub instance_id: String,
    /// Where its HTTP API listens.
    pub addr: String,
    pub version: String,
    pub started_at: Timestamp,
    /// Its last heartbeat.
    pub last_seen: Timestamp,
    pub claims: InstanceClaims,
}

/// The work an instance holds claims on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct InstanceClaims {
    /// Deliveries in flight.
    pub deliveries: u64,
    /// Events in processing.
    pub processing: u64,
    /// Running replays.
    pub replays: u64,
}

#[async_trait]
pub trait EventService: Send + Sync + 'static {
    /// Stores events durably, in one transaction, before answering: one result per event, in order.
    /// The outer error means nothing was stored.
    async fn ingest(&self, events: Vec<NewEvent>) -> Result<Vec<Result<Ingested, Error>>, Error>;

    /// Frontend events (`POST /api/v1/events/frontend*`), answering their ids in order. Stored like
    /// [`Self::ingest`]; an engine with `[ingest] frontend_via_nats` instead hands them to JetStream and
    /// answers after its ack, and a consumer stores them shortly after.
    async fn ingest_frontend(&self, events: Vec<NewEvent>) -> Result<Vec<EventId>, Error> {
        self.ingest(events).await?.into_iter().map(|result| result.map(|ingested| ingested.event.event_id)).collect()
    }

    /// Whether frontend events go through JetStream now (configured, NATS connected, the stream and
    /// its consumer in place); false: they are stored directly.
    fn frontend_via_nats(&self) -> bool {
        false
    }

    async fn event(&self, id: EventId) -> Result<Arc<Event>, Error>;

    async fn query(&self, query: EventQuery) -> Result<EventPage, Error>;

    /// A stream's events from version `from_version` on (inclusive; 1 is the first event), in version
    /// order, at most `limit`; `NotFound` for a stream with no events.
    async fn stream(&self, stream_id: &str, from_version: i64, limit: u32) -> Result<StreamEvents, Error>;

    /// Streams whose id starts with `prefix` (all for `""`), in id order after `after`, at most `limit`
    /// (1 to [`MAX_STREAMS`]), each with its version and last event.
    async fn streams(&self, prefix: &str, after: Option<&str>, limit: u32) -> Result<StreamList, Error>;

    async fn statistics(&self) -> Result<Statistics, Error>;

    async fn health(&self) -> Health;

    /// The instances sharing this one's store (this one alone on SQLite), with their claims.
    async fn cluster(&self) -> Result<Cluster, Error>;

    /// Live events matching `filter`; with `since_seq`, every stored match after it comes first.
    fn feed(&self, filter: EventFilter, since_seq: Option<i64>) -> Feed;

    /// Saves a new subscription (its callback URL checked first); it receives events stored from now on.
    async fn create_subscription(&self, subscription: Subscription) -> Result<Arc<Subscription>, Error>;

    async fn subscriptions(&self) -> Result<Vec<Arc<Subscription>>, Error>;

    async fn subscription(&self, id: SubscriptionId) -> Result<Arc<Subscription>, Error>;

    /// Changes a subscription; disabling it cancels its pending deliveries at once.
    async fn update_subscription(
        &self,
        id: SubscriptionId,
        patch: SubscriptionPatch,
    ) -> Result<Arc<Subscription>, Error>;

    /// Deletes a subscription and cancels its pending deliveries.
    async fn delete_subscription(&self, id: SubscriptionId) -> Result<(), Error>;

    /// Every delivery attempt made for an event; `NotFound` for an unknown event.
    async fn delivery_attempts(&self, event_id: EventId) -> Result<Vec<DeliveryAttempt>, Error>;

    async fn dead_letters(&self, query: DlqQuery) -> Result<DlqPage, Error>;

    /// One dead letter with its attempt history.
    async fn dead_letter(&self, id: DlqId) -> Result<DeadLetter, Error>;

    /// Takes entries out of the DLQ and sends them again with a fresh retry budget; returns how many.
    async fn retry_dead_letters(&self, selector: DlqSelector) -> Result<usize, Error>;

    /// Discards an entry; the event itself stays.
    async fn discard_dead_letter(&self, id: DlqId) -> Result<(), Error>;

    /// The queue grouped by cause (kind, target, last status or error class), largest group first,
    /// with counts, first and last failures and a histogram of failures over time.
    async fn dead_letter_groups(&self, query: DlqGroupQuery) -> Result<DlqGroups, Error>;

    /// Discards the selected entries (a group, a subscription's, some ids, or all); returns how many.
    /// The events themselves stay.
    async fn discard_dead_letters(&self, selector: DlqSelector) -> Result<usize, Error>;

    /// Registers a processor; `Conflict` when its name is taken.
    async fn create_processor(&self, processor: Processor) -> Result<Arc<Processor>, Error>;

    /// Every processor with its totals, highest priority first.
    async fn processors(&self) -> Result<Vec<Arc<Processor>>, Error>;

    /// Turns a processor on or off; the processing loop sees it from its next batch.
    async fn toggle_processor(&self, id: ProcessorId, enabled: bool) -> Result<Arc<Processor>, Error>;

    async fn delete_processor(&self, id: ProcessorId) -> Result<(), Error>;

    /// Every processor run recorded for an event, oldest first; `NotFound` for an unknown event.
    async fn processing_results(&self, event_id: EventId) -> Result<Vec<ProcessingResult>, Error>;

    /// Answers a dry run at once, or starts a replay job in the background. `Conflict` when more events
    /// match than the confirmation threshold and `confirm` is not set.
    async fn replay(&self, request: ReplayRequest) -> Result<ReplayStarted, Error>;

    async fn replay_progress(&self, id: ReplayId) -> Result<ReplayProgress, Error>;

    /// Writes the processed and failed events with a `timestamp` before `before` to the archive
    /// folder, then marks them `archived` (or, with `delete`, removes the archived ones from the store).
    /// `Invalid` for a `before` in the future or an archive folder that cannot be written (nothing is
    /// marked), `Conflict` while another archive run holds the lease.
    async fn archive(&self, before: Timestamp, delete: bool) -> Result<ArchiveReport, Error>;

    /// An entity's state; `NotFound` for an entity with no events (at that point).
    async fn projection(&self, entity_type: &str, entity_id: &str, at: ProjectionAt) -> Result<Projection, Error>;
}
