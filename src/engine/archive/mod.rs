//! Archiving: events older than a time, processed or failed, written to time-partitioned JSON Lines
//! files under `[archive] dir` (see [`files`]) and then marked `archived` or deleted from the store.
//!
//! The order that makes a run safe to stop at any point:
//! 1. take the store's archive lease (one run at a time across instances) and finish the plan a
//!    stopped run left, writing the very same files again;
//! 2. per batch: record the plan (file paths and the seqs in each) in the store, write each file
//!    under a temporary name, sync it, rename it, sync its folder (the next batch is read meanwhile);
//! 3. mark the batch's events `archived` and clear the plan in one transaction.
//!
//! A crash before 3 leaves the plan, and the next run writes the same files with the same lines
//! (overwriting, never adding); a crash after 3 leaves nothing to redo. A failed write (a full disk)
//! removes its temporary file and clears the plan: the store is as before. Deleting comes after,
//! and only ever removes events already `archived`.

pub mod files;
pub mod list;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

pub use crate::domain::archive::{ArchiveReport, ArchiveStats};
use crate::domain::{EventStatus, FieldError, Timestamp};
use crate::service::Error;
use crate::storage::{ArchiveLine, ArchivePart, Store};

/// Events read, written and marked per batch: the marking is one transaction, which ingest waits
/// for on SQLite's single writer, so it is kept short.
const BATCH: u32 = 5_000;

/// Archived events looked at per deleting transaction.
const DELETE_PAGE: u32 = 5_000;

/// How long the archive lease lasts without being renewed (every batch renews it).
const LEASE: Duration = Duration::from_secs(120);

/// Runs archives for one engine: one at a time in this process, one at a time across instances
/// (the store's lease).
pub(crate) struct Archiver {
    store: Arc<dyn Store>,
    dir: PathBuf,
    running: Mutex<()>,
    /// The folder's files and bytes as last counted, and when: statistics are polled every second,
    /// the folder is walked at most every [`SIZE_FOR`] (and after each run).
    size: std::sync::Mutex<Option<(std::time::Instant, (u64, u64))>>,
}

/// How long a count of the archive folder is reused.
const SIZE_FOR: Duration = Duration::from_secs(10);

impl Archiver {
    pub(crate) fn new(store: Arc<dyn Store>, dir: PathBuf) -> Self {
        Self { store, dir, running: Mutex::new(()), size: std::sync::Mutex::new(None) }
    }

    /// Archives the events with a `timestamp` before `before` that are processed or failed and not yet
    /// archived; with `delete`, then removes the archived ones before `before` from the store.
    pub(crate) async fn run(&self, before: Timestamp, delete: bool) -> Result<ArchiveReport, Error> {
        let now = Timestamp::now();
        if before > now {
            return Err(Error::Invalid(FieldError::new(
                "before",
                format!(
                    "{before} is in the future (now is {now}): archive only what has happened, e.g. a time before now"
                ),
            )));
        }
        let dir = self.dir.clone();
        blocking(move || files::check_writable(&dir)).await?.map_err(|reason| {
            Error::Invalid(FieldError::new(
                "archive.dir",
                format!("the archive folder cannot be written ({reason}): set [archive] dir to a writable folder"),
            ))
        })?;
        let Ok(_alone) = self.running.try_lock() else {
            return Err(Error::Conflict(FieldError::new(
                "before",
                "an archive run is in progress on this instance: retry when it ends",
            )));
        };
        let Some(left) = self.store.claim_archive(now, now.plus(LEASE)).await? else {
            return Err(Error::Conflict(FieldError::new(
                "before",
                "another instance is archiving (one run at a time): retry when it ends",
            )));
        };
        let outcome = self.claimed(left, before, delete).await;
        if let Err(error) = self.store.release_archive().await {
            tracing::warn!(%error, "could not let go of the archive lease; it runs out on its own");
        }
        // The next statistics count the folder again.
        *self.size.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        let report = outcome?;
        tracing::info!(archived = report.archived, files = report.files.len(), deleted = report.deleted, %before, "archive run done");
        Ok(report)
    }

    async fn claimed(&self, left: Vec<ArchivePart>, before: Timestamp, delete: bool) -> Result<ArchiveReport, Error> {
        let mut report = ArchiveReport::default();
        if !left.is_empty() {
            let seqs: Vec<i64> = left.iter().flat_map(|p| p.seqs.iter().copied()).collect();
            let lines = self.store.archive_lines(&seqs).await?;
            tracing::info!(
                files = left.len(),
                events = lines.len(),
                "finishing the archive run that stopped before marking"
            );
            self.write_and_mark(left, lines, &mut report).await?;
        }
        for status in [EventStatus::Processed, EventStatus::Failed] {
            let mut lines = self.store.archivable(status, before, None, BATCH).await?;
            while let Some(last) = lines.last().map(|line| (line.timestamp, line.seq)) {
                let plan = files::plan(&lines, self.store.instance_id());
                if !self.store.plan_archive(&plan, Timestamp::now().plus(LEASE)).await? {
                    return Err(lease_lost());
                }
                // The next batch is read while this one is written and marked: the reading (the store
                // building lines) and the writing (syncing files, then the marking's commit) use
                // different cores and disks. The plan stays one batch: the next is planned once this
                // one is marked.
                let (next, written) = tokio::join!(
                    self.store.archivable(status, before, Some(last), BATCH),
                    self.write_and_mark(plan, lines, &mut report),
                );
                written?;
                lines = next?;
            }
        }
        if delete {
            let mut after = None;
            loop {
                let page = self.store.delete_archived(before, after, DELETE_PAGE).await?;
                report.deleted += page.deleted;
                if page.examined == 0 {
                    break;
                }
                after = page.last;
            }
        }
        Ok(report)
    }

    /// Writes the plan's files from `lines` (in order), then marks their events.
    async fn write_and_mark(
        &self,
        plan: Vec<ArchivePart>,
        lines: Vec<ArchiveLine>,
        report: &mut ArchiveReport,
    ) -> Result<(), Error> {
        let dir = self.dir.clone();
        let written = blocking(move || {
            let by_seq: HashMap<i64, usize> = lines.iter().enumerate().map(|(i, l)| (l.seq, i)).collect();
            for part in &plan {
                let mut indexes: Vec<usize> = part.seqs.iter().filter_map(|seq| by_seq.get(seq).copied()).collect();
                indexes.sort_unstable();
                let text: Vec<&str> = indexes.iter().map(|&i| lines[i].line.as_str()).collect();
                files::write(&dir, part, &text).map_err(|e| (part.path.clone(), e))?;
            }
            Ok::<_, (String, std::io::Error)>(plan)
        })
        .await?;
        let plan = match written {
            Ok(plan) => plan,
            Err((path, error)) => {
                // Nothing is marked: the store stays as it was, and the plan goes with the files.
                if let Err(clear) = self.store.plan_archive(&[], Timestamp::now().plus(LEASE)).await {
                    tracing::warn!(error = %clear, "could not clear the archive plan; the next run writes it again");
                }
                return Err(Error::Unavailable(format!(
                    "writing the archive file {} failed: {error}; nothing was marked archived (free disk space and run again)",
                    self.dir.join(path).display()
                )));
            }
        };
        let Some(marked) = self.store.mark_archived(&plan, Timestamp::now().plus(LEASE)).await? else {
            return Err(lease_lost());
        };
        report.archived += marked;
        report.files.extend(plan.into_iter().map(|part| part.path));
        Ok(())
    }

    /// The archive's size (read from its folder) and the oldest event kept.
    pub(crate) async fn stats(&self) -> Result<ArchiveStats, Error> {
        let cached = *self.size.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (files, bytes) = match cached {
            Some((at, size)) if at.elapsed() < SIZE_FOR => size,
            _ => {
                let dir = self.dir.clone();
                let size = blocking(move || list::size(&dir)).await?;
                *self.size.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                    Some((std::time::Instant::now(), size));
                size
            }
        };
        let oldest_event = self.store.oldest_event().await?;
        Ok(ArchiveStats { files, bytes, oldest_event })
    }
}

fn lease_lost() -> Error {
    Error::Unavailable(
        "this instance lost the archive lease (it ran out and another instance took over); the other one finishes the run"
            .to_owned(),
    )
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Error::Unavailable(format!("an archive task failed: {e}")))
}
