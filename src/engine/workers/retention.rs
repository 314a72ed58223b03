//! The retention worker: on a timer (`[retention] interval_secs`), archives the events older than
//! `archive_after_days` and archives and deletes those older than `delete_after_days` (0: never),
//! through the same archiver as `POST /api/v1/events/archive`, so one run at a time across instances.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::domain::Timestamp;
use crate::engine::archive::Archiver;
use crate::service::Error;

const DAY: Duration = Duration::from_secs(86_400);

pub(crate) struct Retention {
    pub archiver: Arc<Archiver>,
    pub archive_after_days: u32,
    pub delete_after_days: u32,
    pub interval: Duration,
}

impl Retention {
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first tick is at once: wait a whole period first, so a start is never slowed by it.
        tick.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            // A run is not cut short by the shutdown: each of its batches is safe to stop after, but
            // one in the middle of writing files is left to finish (it is bounded by a batch).
            self.once().await;
        }
    }

    async fn once(&self) {
        let now = Timestamp::now();
        if self.delete_after_days > 0 {
            let before = now.minus(DAY * self.delete_after_days);
            log(self.archiver.run(before, true).await, "delete");
        }
        if self.archive_after_days > 0 {
            let before = now.minus(DAY * self.archive_after_days);
            log(self.archiver.run(before, false).await, "archive");
        }
    }
}

fn log(outcome: Result<crate::domain::archive::ArchiveReport, Error>, what: &'static str) {
    match outcome {
        Ok(report) if report.archived == 0 && report.deleted == 0 => {}
        Ok(report) => tracing::info!(what, archived = report.archived, deleted = report.deleted, "retention ran"),
        // Another instance archiving now: it does the work, this one looks again next time.
        Err(Error::Conflict(_)) => tracing::debug!(what, "retention skipped: an archive run is in progress"),
        Err(error) => tracing::warn!(what, %error, "retention failed; it runs again at the next interval"),
    }
}
