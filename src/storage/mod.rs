//! Durable storage behind one trait, [`Store`], so the engine never knows which database it has.
//! SQLite is the embedded default, PostgreSQL the one several instances share; [`connect`] picks the
//! implementation from the URL. What is
//! particular to a backend (SQLite's single writer and how it lets ingest go first, its pragmas,
//! `INDEXED BY`) stays in that backend's module. Every backend passes the same conformance suite
//! (`storage/conformance/`), which is this module's documentation made exact.

mod archive_line;
#[cfg(test)]
mod conformance;
mod group;
mod postgres;
mod rows;
mod settle;
mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::delivery::{DlqGroupQuery, DlqGroups, DlqQuery, DlqSelector};
use crate::domain::{
    Counters, DeadLetter, DeliveryAttempt, DeliveryId, DlqId, Event, EventFilter, EventId, EventPage, EventQuery,
    EventStatus, NewEvent, ProcessingResult, Processor, ProcessorId, ReplayId, ReplayProgress, Subscription,
    SubscriptionId, Timestamp,
};

pub use postgres::{PostgresStore, ScratchSchema};
pub use sqlite::SqliteStore;

/// Durability of a commit (SQLite): `Full` syncs the log on every commit (group commit makes it
/// nearly free), `Normal` may lose the last commits on power loss but never corrupts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    #[default]
    Full,
    Normal,
}

/// How to open a store (`[storage]` in the configuration); each backend takes what applies to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// SQLite: how durable a commit is.
    pub sync: SyncMode,
    /// Most connections a pooled backend (PostgreSQL) opens. SQLite always has one writer and a
    /// few readers.
    pub max_connections: u32,
    /// The instance this process is (`[cluster] instance_id`): the claims it takes carry it, and only
    /// its own claims are released when it starts or stops.
    pub instance_id: String,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { sync: SyncMode::Full, max_connections: 16, instance_id: "local".to_owned() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the database at {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error(
        "the database {path} is in use by another eventdeck ({holder}, which holds {lock}): stop that one, \
         or give this one another [storage] url"
    )]
    InUse { path: PathBuf, lock: PathBuf, holder: String },
    #[error(
        "unsupported storage URL `{0}`: use sqlite://PATH (e.g. sqlite://data/eventdeck.db) or postgres://USER@HOST:PORT/DATABASE"
    )]
    UnsupportedUrl(String),
    #[error("the database writer is stuck in a failed transaction; restart eventdeck")]
    WriterStuck,
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
}

impl Error {
    /// The database could not grow: SQLite's SQLITE_FULL (disk full, quota) or a failed write
    /// (SQLITE_IOERR_WRITE: EFBIG past a file-size limit, EDQUOT), PostgreSQL's disk_full (53100); a
    /// retry succeeds once there is room.
    pub fn is_full(&self) -> bool {
        const SQLITE_FULL: &str = "13";
        const SQLITE_IOERR_WRITE: &str = "778";
        const POSTGRES_DISK_FULL: &str = "53100";
        match self {
            Error::Database(sqlx::Error::Database(error)) => {
                matches!(error.code().as_deref(), Some(SQLITE_FULL | SQLITE_IOERR_WRITE | POSTGRES_DISK_FULL))
            }
            _ => false,
        }
    }
}

/// What became of one event handed to [`Store::append`].
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    /// Stored now.
    Created(Event),
    /// Its given id or its idempotency key was seen before: the event stored then.
    Duplicate(Event),
    /// `expected_version` did not match the stream's version; nothing was stored.
    VersionConflict { stream_id: String, expected: i64, actual: i64 },
}

impl Appended {
    /// The stored event, if there is one.
    pub fn event(&self) -> Option<&Event> {
        match self {
            Appended::Created(event) | Appended::Duplicate(event) => Some(event),
            Appended::VersionConflict { .. } => None,
        }
    }
}

/// Everything the engine needs from a database: the event log, the delivery tables, processing,
/// replays, projections, and what instances sharing it know of each other.
///
/// Claims (deliveries in flight, events in processing, running replays) carry the instance that took
/// them and a lease. An instance releases only its own claims when it starts or stops; anyone's claim
/// whose lease has run out may be taken by any instance. On a store that one process holds
/// exclusively ([`ClusterStore::exclusive`]), every claim found at start was that process's
/// predecessor's, and releasing "its own" claims releases them all.
pub trait Store:
    EventStore
    + DeliveryStore
    + ProcessingStore
    + ReplayStore
    + ProjectionStore
    + ClusterStore
    + PublicationStore
    + ArchiveStore
{
}

impl<T> Store for T where
    T: EventStore
        + DeliveryStore
        + ProcessingStore
        + ReplayStore
        + ProjectionStore
        + ClusterStore
        + PublicationStore
        + ArchiveStore
{
}

/// The publication cursor of the event log (lifecycle publications to NATS JetStream).
pub const EVENTS_PUBLICATION: &str = "events";

/// Where lifecycle publications to NATS stand: a cursor per publication log, moved only after the
/// messages up to it were acknowledged, so a crash between a commit and its publication publishes again
/// after the restart (at least once; the stream's duplicate window drops the repeats). One instance
/// holds a cursor at a time, with a lease like the other claims, so instances sharing a store publish
/// each event once between them when nothing fails.
#[async_trait]
pub trait PublicationStore: Send + Sync + 'static {
    /// Claims cursor `name` for `owner` until `lease_until` when it is free, already `owner`'s, or its
    /// holder's lease ended before `now` (a claim by its holder renews it). A cursor that does not exist
    /// yet is made at the newest seq: what was stored before publications were turned on is not
    /// published. Returns where the cursor is, or `None` while another instance holds it.
    async fn claim_publication(
        &self,
        name: &str,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<i64>, Error>;

    /// Moves cursor `name` forward to `seq` (never back) while `owner` holds it; false when it does not
    /// (its lease ended and another instance took it over).
    async fn advance_publication(&self, name: &str, owner: &str, seq: i64) -> Result<bool, Error>;

    /// Lets go of `owner`'s claim on cursor `name` (stopping), so another instance takes over at once.
    async fn release_publication(&self, name: &str, owner: &str) -> Result<(), Error>;

    /// Records a dead letter made outside delivery and processing (a message NATS refused for its
    /// size, a frontend message that could not be stored).
    async fn add_dead_letter(&self, entry: &DeadLetter) -> Result<(), Error>;
}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Short name of the backend, e.g. `sqlite`.
    fn backend(&self) -> &'static str;

    /// Stores a group of events in one transaction, answering one [`Appended`] per event in order.
    /// The store assigns id (unless the event was given one), seq, stream version and `created_at`;
    /// given ids, idempotency keys and expected versions are checked inside the transaction, also
    /// between events of the same group.
    ///
    /// Seqs are assigned in commit order, across every instance sharing the store: once any reader has
    /// seen seq N, no event with a smaller seq appears later. Everything that reads "after seq N" (live
    /// feeds and their resume, the delivery fan-out, replays) relies on it.
    ///
    /// Calls made at once commit in the order they first reach the store (the order a caller polls
    /// them in), so a caller that keeps several in flight gets their seqs in that order.
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, Error>;

    /// How many appends a single writer should keep in flight: more than one where the backend can
    /// write two groups at once and still commit them in order.
    fn appends_at_once(&self) -> usize {
        1
    }

    async fn event(&self, id: EventId) -> Result<Option<Event>, Error>;

    /// A page of the events matching the query's filter, ordered by `timestamp` then `seq` (both
    /// descending or both ascending), with the total of every match.
    async fn query(&self, query: &EventQuery) -> Result<EventPage, Error>;

    /// Events after `seq` that match `filter`, in seq order, at most `limit`.
    async fn events_after(&self, seq: i64, filter: &EventFilter, limit: u32) -> Result<Vec<Event>, Error>;

    /// The events with these seqs, in seq order, each once (missing ones are left out).
    async fn events_by_seq(&self, seqs: &[i64]) -> Result<Vec<Event>, Error>;

    /// A stream's events from version `from_version` on (inclusive: 1 reads from the start), in
    /// version order, at most `limit`.
    async fn stream(&self, stream_id: &str, from_version: i64, limit: u32) -> Result<Vec<Event>, Error>;

    /// A stream's current version: 0 when it has no events.
    async fn stream_version(&self, stream_id: &str) -> Result<i64, Error>;

    /// The streams whose id starts with `prefix` (every stream for `""`), in id order after `after`,
    /// at most `limit`, each with its version and last event. Reads the `(stream_id, stream_version)`
    /// index: the cost grows with the streams (and versions) listed, not with the store.
    async fn streams(&self, prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<StreamSummary>, Error>;

    async fn counters(&self) -> Result<Counters, Error>;

    /// The highest seq stored, 0 when empty.
    async fn last_seq(&self) -> Result<i64, Error>;

    /// Cheap round trip proving the database answers.
    async fn ping(&self) -> Result<(), Error>;

    /// Closes connections after the last write; later calls fail. Closing again does nothing.
    async fn close(&self);
}

/// A delivery to create: one event for one subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub delivery_id: DeliveryId,
    pub event_seq: i64,
    pub event_id: EventId,
    pub subscription_id: SubscriptionId,
    /// Set for deliveries a replay created.
    pub replay_id: Option<ReplayId>,
    /// Set: queued already claimed by this instance, until then (its dispatcher sends it at once,
    /// without claiming it again). `None`: pending, due now.
    pub claimed_until: Option<Timestamp>,
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

/// How far a worker has read the event log: the last seq it handled, and (for the delivery fan-out)
/// the epoch of the subscriptions it read with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub seq: i64,
    /// Moves on whenever a subscription is created or changed, so a fan-out that read the
    /// subscriptions before cannot move the cursor ([`DeliveryStore::enqueue_deliveries`]).
    pub epoch: i64,
}

/// The cursor the delivery fan-out moves, whose epoch subscription changes move on.
pub const DELIVERY_CURSOR: &str = "delivery";

#[async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    /// Saves a new subscription, starting it at the last seq stored (it receives the events stored
    /// after it), and moves the delivery cursor's epoch on; returns that start seq.
    async fn insert_subscription(&self, subscription: &Subscription) -> Result<i64, Error>;

    /// Every subscription, secrets included, oldest first.
    async fn subscriptions(&self) -> Result<Vec<Subscription>, Error>;

    /// Replaces a subscription and moves the delivery cursor's epoch on; returns its start seq, `None`
    /// when it does not exist. The start seq is kept, but for a disabled subscription being enabled: it
    /// starts again at the last seq stored, like a new one, so the events stored while it was disabled
    /// are never sent to it (whether or not another subscription moved the cursor past them meanwhile).
    /// When it is disabled, its pending deliveries are cancelled in the same transaction.
    async fn update_subscription(&self, subscription: &Subscription) -> Result<Option<i64>, Error>;

    /// Deletes a subscription and cancels its pending deliveries. False when it does not exist.
    async fn delete_subscription(&self, id: SubscriptionId) -> Result<bool, Error>;

    /// How far the worker `name` has read the event log (seq and epoch 0 at first).
    async fn cursor(&self, name: &str) -> Result<Cursor, Error>;

    /// Writes deliveries and moves the cursor `name` from `from` to seq `to`, in one transaction, so a
    /// crash can never lose a delivery between reading the log and queueing it, and two instances never
    /// queue the same stretch of the log: when the cursor is no longer at `from` (seq and epoch),
    /// nothing is written and the answer is false. Without a cursor, the deliveries are written.
    async fn enqueue_deliveries(
        &self,
        deliveries: Vec<NewDelivery>,
        cursor: Option<CursorMove<'_>>,
    ) -> Result<bool, Error>;

    /// Returns this instance's deliveries in flight to pending (see [`Store`] on claims).
    async fn release_claims(&self) -> Result<u64, Error>;

    /// Claims for this instance, for each `(subscription, n)` of `wants`, up to `n` of that
    /// subscription's deliveries due by `now` (the longest due first), leasing them until `lease_until`.
    /// Claims whose lease ran out before `now` are due again first. Claiming per subscription keeps one
    /// endpoint's backlog from standing in front of another's. Instances claiming at once never get
    /// the same delivery.
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        wants: &[(SubscriptionId, u32)],
    ) -> Result<Vec<ClaimedDelivery>, Error>;

    /// Records attempts and next steps in one transaction; returns the dead letters it wrote. Counts
    /// go to the `delivery` counters: `attempts`, `retries` (attempts after the first), `delivered`, `dead`.
    /// A delivery whose claim this instance no longer holds (its lease ran out and another instance took
    /// it) keeps its attempt in the history, but its state is the new holder's to decide.
    async fn complete_deliveries(&self, results: Vec<DeliveryResult>) -> Result<Vec<DeadLetter>, Error>;

    /// Every attempt made for an event, oldest first.
    async fn delivery_attempts(&self, event_id: EventId) -> Result<Vec<DeliveryAttempt>, Error>;

    /// The entries the query selects, newest first, and how many it selects in all.
    async fn dead_letters(&self, query: &DlqQuery) -> Result<(Vec<DeadLetter>, u64), Error>;

    /// One dead letter with its attempt history.
    async fn dead_letter(&self, id: DlqId) -> Result<Option<DeadLetter>, Error>;

    /// Removes the selected entries and makes their deliveries pending again with a fresh retry budget;
    /// returns the removed entries.
    async fn retry_dead_letters(&self, selector: &DlqSelector) -> Result<Vec<DeadLetter>, Error>;

    /// Removes an entry; the event and its delivery record stay.
    async fn discard_dead_letter(&self, id: DlqId) -> Result<Option<DeadLetter>, Error>;

    /// Removes the selected entries in one transaction (events and delivery records stay); returns them.
    async fn discard_dead_letters(&self, selector: &DlqSelector) -> Result<Vec<DeadLetter>, Error>;

    /// The queue grouped by cause ([`DlqGroupKey`](crate::domain::delivery::DlqGroupKey): kind, target,
    /// last status or error class), largest group first, each with its count, first and last failure
    /// and a histogram of last failures over a common axis from the earliest last failure to
    /// `query.until` in `query.buckets` buckets of whole seconds. Computed by the store, never by
    /// reading every entry out.
    async fn dead_letter_groups(&self, query: &DlqGroupQuery) -> Result<DlqGroups, Error>;
}

/// One stream as [`EventStore::streams`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct StreamSummary {
    pub stream_id: String,
    /// Its current version (the number of its events).
    pub version: i64,
    /// The `timestamp` and type of its last event.
    pub last_event_at: Timestamp,
    pub last_event_type: String,
}

/// A move of a cursor: from where it is expected to be to a new seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorMove<'a> {
    pub name: &'a str,
    pub from: Cursor,
    pub to: i64,
}

/// An event claimed for processing.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedEvent {
    pub event: Event,
    /// Processors that already succeeded on it (before a retry): they are not run again.
    pub succeeded: Vec<ProcessorId>,
}

/// Which pending events to claim: up to `limit` due by `now` (or whose claim expired), in seq order,
/// marked `processing` until `lease_until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub now: Timestamp,
    pub lease_until: Timestamp,
    pub limit: u32,
}

/// What [`ProcessingStore::complete_and_claim`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completed {
    pub dead_letters: Vec<DeadLetter>,
    pub claimed: Vec<ClaimedEvent>,
}

/// What becomes of a claimed event after its processors ran.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessingNext {
    Processed,
    /// Pending again, claimable from `due_at`.
    Retry {
        due_at: Timestamp,
        error: String,
    },
    /// Out of retries: failed, with a dead letter naming the processor that failed.
    Failed {
        error: String,
        processor_id: ProcessorId,
    },
}

/// The outcome of one claimed event, recorded in one transaction with others.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessingOutcome {
    pub seq: i64,
    pub event_id: EventId,
    pub event_type: String,
    pub results: Vec<ProcessingResult>,
    pub next: ProcessingNext,
}

#[async_trait]
pub trait ProcessingStore: Send + Sync + 'static {
    /// Saves a new processor; false when its name is taken.
    async fn insert_processor(&self, processor: &Processor) -> Result<bool, Error>;

    /// Every processor with its totals, highest priority first, then the oldest. A new database has
    /// one: the `projections` processor.
    async fn processors(&self) -> Result<Vec<Processor>, Error>;

    /// Turns a processor on or off; `None` when it does not exist.
    async fn set_processor_enabled(
        &self,
        id: ProcessorId,
        enabled: bool,
        now: Timestamp,
    ) -> Result<Option<Processor>, Error>;

    /// False when it does not exist.
    async fn delete_processor(&self, id: ProcessorId) -> Result<bool, Error>;

    /// Returns this instance's events in `processing` to `pending` (see [`Store`] on claims).
    async fn release_processing(&self) -> Result<u64, Error>;

    /// When the next event becomes claimable, if any is waiting: a pending event's due time, or the
    /// end of a claim's lease.
    async fn next_processing_due(&self) -> Result<Option<Timestamp>, Error>;

    /// In one transaction: records the outcomes of the last batch (results, each event's next status,
    /// counters, processor totals, dead letters) and claims the next batch for this instance, so a busy
    /// loop pays one commit per batch. An event whose claim this instance no longer holds (its lease
    /// ran out and another instance took it) keeps its results, but its status is the new holder's.
    async fn complete_and_claim(
        &self,
        outcomes: Vec<ProcessingOutcome>,
        claim: Option<Claim>,
    ) -> Result<Completed, Error>;

    /// Records runs that change no event status (a replay's), with the seq of each event.
    async fn record_results(&self, results: &[(i64, ProcessingResult)]) -> Result<(), Error>;

    /// Every processor run recorded for an event, oldest first.
    async fn processing_results(&self, event_id: EventId) -> Result<Vec<ProcessingResult>, Error>;
}

#[async_trait]
pub trait ReplayStore: Send + Sync + 'static {
    /// Saves a new running replay, claimed by this instance until `lease_until`.
    async fn insert_replay(&self, job: &StoredReplay, lease_until: Timestamp) -> Result<(), Error>;

    /// Saves a replay's progress and state and extends its lease to `lease_until`, if this instance
    /// still holds it; false when it does not (its lease ran out and another instance took it over).
    async fn save_replay(&self, progress: &ReplayProgress, state: &str, lease_until: Timestamp) -> Result<bool, Error>;

    async fn replay(&self, id: ReplayId) -> Result<Option<ReplayProgress>, Error>;

    /// How many of a replay's deliveries have finished, and how many of those were dead-lettered.
    async fn replay_deliveries_finished(&self, id: ReplayId) -> Result<(u64, u64), Error>;

    /// Takes over one running replay whose lease ran out before `now` (its instance died or let go of
    /// it), leasing it to this instance until `lease_until`. Two instances never take the same one.
    async fn claim_replay(&self, now: Timestamp, lease_until: Timestamp) -> Result<Option<StoredReplay>, Error>;

    /// Lets go of this instance's running replays (see [`Store`] on claims): their lease ends now, so
    /// another instance, or this one once it starts again, carries them on.
    async fn release_replays(&self) -> Result<u64, Error>;
}

/// A replay as the store keeps it, so that any instance can carry it on.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReplay {
    pub progress: ReplayProgress,
    /// What to replay, as the engine wrote it (JSON).
    pub plan: String,
    /// How far the replay got, as the engine wrote it (JSON).
    pub state: String,
}

/// One instance, as it records itself in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    pub instance_id: String,
    /// Where its HTTP API listens.
    pub addr: String,
    pub version: String,
    pub started_at: Timestamp,
    pub last_seen: Timestamp,
}

/// How many claims an instance holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceClaims {
    pub deliveries: u64,
    pub processing: u64,
    pub replays: u64,
}

/// A change an instance made that the others show on their live streams or act on, recorded as the
/// engine wrote it (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub id: i64,
    /// The instance that made it.
    pub origin: String,
    pub body: String,
}

#[async_trait]
pub trait ClusterStore: Send + Sync + 'static {
    /// True when this process holds the store exclusively: no other instance can share it, so there
    /// is nothing to tell others and nobody else's claims to respect.
    fn exclusive(&self) -> bool;

    /// The instance whose claims this store takes (`StoreOptions::instance_id`).
    fn instance_id(&self) -> &str;

    /// Records this instance (`record.instance_id` is this store's) as seen at `record.last_seen`,
    /// replacing what was recorded before under its id (a process started again under the same id shows
    /// its new start).
    async fn heartbeat(&self, record: &InstanceRecord) -> Result<(), Error>;

    /// Removes this instance's record: it is stopping.
    async fn leave(&self) -> Result<(), Error>;

    /// The instances last seen at or after `since`, with the claims each holds, in order of their start.
    async fn instances(&self, since: Timestamp) -> Result<Vec<(InstanceRecord, InstanceClaims)>, Error>;

    /// Appends changes this instance made, in order, and returns their ids (one per body, in the same
    /// order). Change ids follow commit order across instances, like seqs: once a reader has seen id N,
    /// no change with a smaller id appears later.
    async fn record_changes(&self, bodies: &[String]) -> Result<Vec<i64>, Error>;

    /// The changes after `id`, every instance's, in id order, at most `limit`.
    async fn changes_after(&self, id: i64, limit: u32) -> Result<Vec<Change>, Error>;

    /// The id of the newest change, 0 when there is none.
    async fn last_change(&self) -> Result<i64, Error>;

    /// Forgets the changes recorded before `before`; returns how many.
    async fn prune_changes(&self, before: Timestamp) -> Result<u64, Error>;
}

/// A stream folded up to `version`: what a cached projection and a snapshot both hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Fold {
    /// Null once deleted.
    pub state: serde_json::Value,
    pub version: i64,
    pub last_event_id: EventId,
    /// The `timestamp` of the last event folded.
    pub updated_at: Timestamp,
    /// The highest `timestamp` of the events folded (they need not arrive in time order).
    pub max_timestamp: Timestamp,
}

/// The cached latest fold of a stream, with what its next snapshot needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedProjection {
    pub stream_id: String,
    pub fold: Fold,
    /// The newest snapshot's version, 0 without one.
    pub snapshot_version: i64,
    /// The lowest `timestamp` of the events folded after `snapshot_version`, if any.
    pub tail_min_timestamp: Option<Timestamp>,
}

/// A fold kept at one version of a stream, so reads of earlier states start near them.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionSnapshot {
    pub stream_id: String,
    pub fold: Fold,
    /// The previous snapshot's version, 0 for the first: this snapshot covers (from_version, version].
    pub from_version: i64,
    /// The lowest `timestamp` of the events it covers.
    pub min_timestamp: Timestamp,
}

/// One event of a stream, only the fields a fold reads.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamChange {
    pub version: i64,
    pub event_id: EventId,
    pub event_type: String,
    pub data: serde_json::Map<String, serde_json::Value>,
    pub timestamp: Timestamp,
}

/// A stretch of a stream, versions (after, until], as far as it goes when `until` is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    pub after: i64,
    pub until: Option<i64>,
}

impl VersionRange {
    /// The stretches after `after` to read: those of `covered` (snapshot spans `(from, to]` in version
    /// order), then everything after `newest` (the newest snapshot's version), adjacent ones joined.
    fn stretches(after: i64, covered: &[(i64, i64)], newest: i64) -> Vec<VersionRange> {
        let mut ranges: Vec<VersionRange> = Vec::with_capacity(covered.len() + 1);
        let mut push = |start: i64, until: Option<i64>| match ranges.last_mut() {
            Some(last) if last.until.is_some_and(|end| end >= start) => last.until = until,
            _ => ranges.push(VersionRange { after: start, until }),
        };
        for &(from, to) in covered.iter().filter(|(_, to)| *to > after) {
            push(from.max(after), Some(to));
        }
        push(newest.max(after), None);
        ranges
    }
}

#[async_trait]
pub trait ProjectionStore: Send + Sync + 'static {
    /// The cached latest fold of a stream, if one was saved.
    async fn cached_projection(&self, stream_id: &str) -> Result<Option<CachedProjection>, Error>;

    /// Of these streams, those whose cached fold (if any) is behind their newest event, each once.
    async fn stale_projections(&self, stream_ids: &[String]) -> Result<Vec<String>, Error>;

    /// The newest snapshot at or before `version`.
    async fn snapshot_at_version(&self, stream_id: &str, version: i64) -> Result<Option<ProjectionSnapshot>, Error>;

    /// The newest snapshot whose events all have a `timestamp` at or before `time`.
    async fn snapshot_at_time(&self, stream_id: &str, time: Timestamp) -> Result<Option<ProjectionSnapshot>, Error>;

    /// Where a stream's events after version `after` with a `timestamp` at or before `time` can be: the
    /// stretches later snapshots cover that hold such an event, then everything after the newest
    /// snapshot. In version order, adjacent stretches joined.
    async fn ranges_at_time(&self, stream_id: &str, after: i64, time: Timestamp) -> Result<Vec<VersionRange>, Error>;

    /// A stream's events in `range` (and at or before `time` when given), in version order, at most `limit`.
    async fn stream_changes(
        &self,
        stream_id: &str,
        range: VersionRange,
        time: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<StreamChange>, Error>;

    /// Saves folds in one transaction. A cached fold only ever moves forward (one older than the saved
    /// one is ignored) and a snapshot already saved is kept, so saving the same fold twice, or two
    /// writers racing, changes nothing.
    async fn save_projections(
        &self,
        cached: Vec<CachedProjection>,
        snapshots: Vec<ProjectionSnapshot>,
    ) -> Result<(), Error>;
}

/// One event as the archive writes it: its Event JSON line, built from the text the store holds (its
/// documents are not parsed and written again).
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveLine {
    pub seq: i64,
    pub timestamp: Timestamp,
    pub status: EventStatus,
    /// The Event JSON, without the newline.
    pub line: String,
}

/// A file an archive run writes: its path under the archive folder and the seqs of its events.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchivePart {
    pub path: String,
    pub seqs: Vec<i64>,
}

/// What [`ArchiveStore::delete_archived`] did with one page of archived events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Events removed, with their deliveries, attempts, results and dead letters.
    pub deleted: u64,
    /// Archived events looked at (deleted or kept).
    pub examined: u64,
    /// Where the page ended (`timestamp`, seq): the next page starts after it.
    pub last: Option<(Timestamp, i64)>,
}

/// Archiving: one run at a time across instances, under a lease on the store, with the plan of the
/// files in progress kept in the store so that a run that stopped between writing files and marking
/// their events is finished by the next run with the very same files.
///
/// A run: [`claim_archive`](Self::claim_archive) (finish its plan first, if one is left), then per
/// batch [`archivable`](Self::archivable) → [`plan_archive`](Self::plan_archive) → write and sync the
/// files → [`mark_archived`](Self::mark_archived); with deletion, then
/// [`delete_archived`](Self::delete_archived) page by page; [`release_archive`](Self::release_archive)
/// at the end.
#[async_trait]
pub trait ArchiveStore: Send + Sync + 'static {
    /// Takes the archive lease for this instance until `lease_until` when it is free, this instance's,
    /// or ran out before `now`; answers the plan a stopped run left (empty when none). `None`: another
    /// instance is archiving.
    async fn claim_archive(&self, now: Timestamp, lease_until: Timestamp) -> Result<Option<Vec<ArchivePart>>, Error>;

    /// Up to `limit` events with `status` (processed or failed) and a `timestamp` before `before`, after
    /// `after` in (`timestamp`, seq) order, as their archive lines in that order. A run reads its next
    /// batch from where the last one ended while that one is still being written and marked.
    ///
    /// Archiving is maintenance: a store whose reads compete with ingest (SQLite, on the machine that
    /// also ingests) may first wait a while for ingest to pause.
    async fn archivable(
        &self,
        status: EventStatus,
        before: Timestamp,
        after: Option<(Timestamp, i64)>,
        limit: u32,
    ) -> Result<Vec<ArchiveLine>, Error>;

    /// The archive lines of these events, in (`timestamp`, seq) order (missing ones left out).
    async fn archive_lines(&self, seqs: &[i64]) -> Result<Vec<ArchiveLine>, Error>;

    /// Records the files about to be written (an empty plan clears it) and extends the lease, if this
    /// instance still holds it; false when it does not.
    async fn plan_archive(&self, plan: &[ArchivePart], lease_until: Timestamp) -> Result<bool, Error>;

    /// Once the plan's files are synced: marks their events `archived` (moving the status counters),
    /// clears the plan and extends the lease, in one transaction; answers how many changed status.
    /// `None` when this instance no longer holds the lease (nothing is changed).
    async fn mark_archived(&self, plan: &[ArchivePart], lease_until: Timestamp) -> Result<Option<u64>, Error>;

    /// Removes up to `limit` archived events with a `timestamp` before `before`, after `after` in
    /// (`timestamp`, seq) order, with their deliveries, attempts, processing results and dead letters;
    /// the statistics counters stay. Kept: the newest event (seqs go on from it), the last event of a stream (its version goes on from
    /// there), a stream's events after its newest projection snapshot (projections fold from a
    /// snapshot, never from deleted events), and events with a delivery still pending or in flight.
    async fn delete_archived(
        &self,
        before: Timestamp,
        after: Option<(Timestamp, i64)>,
        limit: u32,
    ) -> Result<Deleted, Error>;

    /// Lets go of the lease (a plan left in it stays for the next run).
    async fn release_archive(&self) -> Result<(), Error>;

    /// The `timestamp` of the oldest event kept, if any.
    async fn oldest_event(&self) -> Result<Option<Timestamp>, Error>;

    /// The lowest version a stream keeps (archived events before it were deleted); 0 when it has none.
    async fn first_kept_version(&self, stream_id: &str) -> Result<i64, Error>;
}

/// Opens the store a URL names, creating it (and its folder) when missing, and brings its schema up to date.
pub async fn connect(url: &str, options: &StoreOptions) -> Result<Arc<dyn Store>, Error> {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        return Ok(Arc::new(SqliteStore::open(path.as_ref(), options).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::open(url, options).await?));
    }
    Err(Error::UnsupportedUrl(url.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(after: i64, until: Option<i64>) -> VersionRange {
        VersionRange { after, until }
    }

    #[test]
    fn stretches_join_adjacent_spans_and_end_with_the_tail() {
        let stretches = VersionRange::stretches;
        // No snapshots after the base: the whole rest of the stream.
        assert_eq!(stretches(0, &[], 0), [range(0, None)]);
        assert_eq!(stretches(200, &[], 100), [range(200, None)]);
        // Spans 100..200 and 200..300 hold early events; 300..400 does not; the tail starts at 400.
        assert_eq!(stretches(100, &[(100, 200), (200, 300)], 400), [range(100, Some(300)), range(400, None)]);
        // The last span touches the tail.
        assert_eq!(stretches(100, &[(300, 400)], 400), [range(300, None)]);
        // A span that starts before the base is read from the base only.
        assert_eq!(stretches(150, &[(100, 200)], 200), [range(150, None)]);
    }
}
