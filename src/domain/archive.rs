//! What an archive run reports and what statistics say of the archive.

use serde::{Deserialize, Serialize};

use super::time::Timestamp;

/// What one archive run did, as `POST /api/v1/events/archive` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArchiveReport {
    /// Events written to the archive by this run.
    pub archived: u64,
    /// The files written, relative to the archive folder.
    pub files: Vec<String>,
    /// Archived events removed from the store (with `delete`); some are kept (see the README).
    #[serde(default)]
    pub deleted: u64,
}

/// The archive's size and the oldest event the store keeps, for statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArchiveStats {
    pub files: u64,
    pub bytes: u64,
    /// The `timestamp` of the oldest event still in the store.
    pub oldest_event: Option<Timestamp>,
}
