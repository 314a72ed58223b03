//! Durable storage behind one trait, [`Store`], so the engine never knows which database it has.
//! SQLite is the embedded default; `connect` picks the implementation from the URL.

mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::delivery::{DlqQuery, DlqSelector};
use crate::domain::{
    Counters, DeadLetter, DeliveryAttempt, DeliveryId, DlqId, Event, EventFilter, EventId, EventPage, EventQuery,
    NewEvent, Subscription, SubscriptionId, Timestamp,
};

pub use sqlite::SqliteStore;

/// Durability of a commit: `Full` syncs the log on every commit (group commit makes it nearly free),
/// `Normal` may lose the last commits on power loss but never corrupts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    #[default]
    Full,
    Normal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the database at {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("unsupported storage URL `{0}`: use sqlite://PATH (e.g. sqlite://data/eventdeck.db)")]
    UnsupportedUrl(String),
    #[error("{0}")]
    NotYet(String),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
}

/// What became of one event handed to [`Store::append`].
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    /// Stored now.
    Created(Event),
    /// Its idempotency key was seen before: the event stored then.
    Duplicate(Event),
    /// `expected_version` did not match the stream's version; nothing was stored.
    VersionConflict { stream_id: String, expected: i64, actual: i64 },
}

/// Everything the engine needs from a database: the event log and the delivery tables.
pub trait Store: EventStore + DeliveryStore {}

impl<T: EventStore + DeliveryStore> Store for T {}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Short name of the backend, e.g. `sqlite`.
    fn backend(&self) -> &'static str;

    /// Stores a group of events in one transaction, answering one [`Appended`] per event in order.
    /// The store assigns id, seq, stream version and `created_at`; idempotency keys and expected
    /// versions are checked inside the transaction, also between events of the same group.
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, Error>;

    async fn event(&self, id: EventId) -> Result<Option<Event>, Error>;

    async fn query(&self, query: &EventQuery) -> Result<EventPage, Error>;

    /// Events after `seq` that match `filter`, in seq order, at most `limit`.
    async fn events_after(&self, seq: i64, filter: &EventFilter, limit: u32) -> Result<Vec<Event>, Error>;

    /// The events with these seqs, in seq order (missing ones are left out).
    async fn events_by_seq(&self, seqs: &[i64]) -> Result<Vec<Event>, Error>;

    /// A stream's events with version > `from_version`, in version order, at most `limit`.
    async fn stream(&self, stream_id: &str, from_version: i64, limit: u32) -> Result<Vec<Event>, Error>;

    /// A stream's current version: 0 when it has no events.
    async fn stream_version(&self, stream_id: &str) -> Result<i64, Error>;

    async fn counters(&self) -> Result<Counters, Error>;

    /// The highest seq stored, 0 when empty.
    async fn last_seq(&self) -> Result<i64, Error>;

    /// Cheap round trip proving the database answers.
    async fn ping(&self) -> Result<(), Error>;

    /// Closes connections after the last write; later calls fail.
    async fn close(&self);
}

/// A delivery to create: one event for one subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub delivery_id: DeliveryId,
    pub event_seq: i64,
    pub event_id: EventId,
    pub subscription_id: SubscriptionId,
}

/// A delivery a worker has claimed and must send.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    pub delivery_id: DeliveryId,
    pub event_seq: i64,
    pub event_id: EventId,
    pub subscription_id: SubscriptionId,
    /// Attempts made before this one, ever.
    pub attempts: u32,
    /// Attempts made since the delivery was (re)started, compared with `max_retries`.
    pub round_attempts: u32,
    pub first_failed_at: Option<Timestamp>,
}

/// What happens to a claimed delivery after its attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum NextStep {
    Delivered,
    RetryAt(Timestamp),
    /// Out of retries: a dead letter is written.
    Dead {
        event_type: String,
    },
    /// The endpoint answered 410 Gone: the subscription is disabled with `reason`.
    Gone {
        reason: String,
    },
    /// The subscription is gone or disabled; nothing was sent.
    Cancelled,
}

/// The outcome of one claimed delivery, recorded in one transaction with others.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryResult {
    pub claimed: ClaimedDelivery,
    /// `None` when nothing was sent (cancelled).
    pub attempt: Option<DeliveryAttempt>,
    pub next: NextStep,
}

#[async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    async fn insert_subscription(&self, subscription: &Subscription) -> Result<(), Error>;

    /// Every subscription, secrets included.
    async fn subscriptions(&self) -> Result<Vec<Subscription>, Error>;

    /// Replaces a subscription; when it is disabled, its pending deliveries are cancelled in the same
    /// transaction. False when it does not exist.
    async fn update_subscription(&self, subscription: &Subscription) -> Result<bool, Error>;

    /// Deletes a subscription and cancels its pending deliveries. False when it does not exist.
    async fn delete_subscription(&self, id: SubscriptionId) -> Result<bool, Error>;

    /// How far the worker `name` has read the event log (0 at first).
    async fn cursor(&self, name: &str) -> Result<i64, Error>;

    /// Writes deliveries and moves the cursor `name` to `seq` in one transaction, so a crash can never
    /// lose a delivery between reading the log and queueing it.
    async fn enqueue_deliveries(&self, deliveries: Vec<NewDelivery>, name: &str, seq: i64) -> Result<(), Error>;

    /// Returns every in-flight claim to pending (after a restart nothing is in flight any more).
    async fn release_claims(&self) -> Result<u64, Error>;

    /// Claims up to `limit` deliveries due by `now` (or whose claim expired), leasing them until `lease_until`.
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, Error>;

    /// When the next pending delivery is due, if any.
    async fn next_delivery_due(&self) -> Result<Option<Timestamp>, Error>;

    /// Records attempts and next steps in one transaction; returns the dead letters it wrote.
    async fn complete_deliveries(&self, results: Vec<DeliveryResult>) -> Result<Vec<DeadLetter>, Error>;

    /// Every attempt made for an event, oldest first.
    async fn delivery_attempts(&self, event_id: EventId) -> Result<Vec<DeliveryAttempt>, Error>;

    async fn dead_letters(&self, query: &DlqQuery) -> Result<(Vec<DeadLetter>, u64), Error>;

    /// One dead letter with its attempt history.
    async fn dead_letter(&self, id: DlqId) -> Result<Option<DeadLetter>, Error>;

    /// Removes the selected entries and makes their deliveries pending again with a fresh retry budget;
    /// returns the removed entries.
    async fn retry_dead_letters(&self, selector: &DlqSelector) -> Result<Vec<DeadLetter>, Error>;

    /// Removes an entry; the event and its delivery record stay.
    async fn discard_dead_letter(&self, id: DlqId) -> Result<Option<DeadLetter>, Error>;
}

/// Opens the store a URL names, creating it (and its folder) when missing, and brings its schema up to date.
pub async fn connect(url: &str, sync: SyncMode) -> Result<Arc<dyn Store>, Error> {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        return Ok(Arc::new(SqliteStore::open(path.as_ref(), sync).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(Error::NotYet("PostgreSQL storage is not available in this version yet: use sqlite://PATH".into()));
    }
    Err(Error::UnsupportedUrl(url.to_owned()))
}
