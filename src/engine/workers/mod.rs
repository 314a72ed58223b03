//! Long-running engine tasks, one per file, each stopped by a `CancellationToken`.

use std::sync::Arc;
use std::time::Duration;

pub mod delivery;
pub mod processing;

/// How many ingest submissions wait for the writer. Workers that write defer to them.
pub type IngestBacklog = Arc<dyn Fn() -> usize + Send + Sync>;

/// Waits (at most `longest`) until no ingest submission is queued, so workers sharing the one database
/// writer never starve callers waiting on a commit.
pub async fn yield_to_ingest(backlog: &IngestBacklog, longest: Duration) {
    let deadline = tokio::time::Instant::now() + longest;
    while backlog() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
