//! Durable storage behind one trait, [`Store`], so the engine never knows which database it has.
//! SQLite is the embedded default; `connect` picks the implementation from the URL.

mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{Counters, Event, EventFilter, EventId, EventPage, EventQuery, NewEvent};

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

#[async_trait]
pub trait Store: Send + Sync + 'static {
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

/// Opens the store a URL names, creating it (and its folder) when missing, and brings its schema up to date.
pub async fn connect(url: &str, sync: SyncMode) -> Result<Arc<dyn Store>, Error> {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        return Ok(Arc::new(SqliteStore::open(path.as_ref(), sync).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(Error::NotYet(
            "PostgreSQL storage is not available in this version yet: use sqlite://PATH".into(),
        ));
    }
    Err(Error::UnsupportedUrl(url.to_owned()))
}
