//! The processing loop: claims pending events in batches, runs the enabled processors that match each
//! (in priority order), and records the outcome of the batch in one transaction: processed, pending
//! again after a backoff, or failed with a dead letter once the failing processor's retries are spent.
//!
//! Claims are leases in the store: events left `processing` by a crash are released at start, and a
//! claim that outlives its lease may be taken again, so no event is ever stuck.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::delivery::jitter;
use crate::domain::{EventStatus, ProcessingResult, Processor, RetryPolicy, Timestamp};
use crate::engine::ProcessingOptions;
use crate::engine::bus::{Bus, DlqAction, EngineEvent};
use crate::engine::processing::{Runner, Work};
use crate::engine::processors::Processors;
use crate::engine::stats::Latencies;
use crate::service::StatusChange;
use crate::storage::{Claim, ClaimedEvent, Completed, ProcessingNext, ProcessingOutcome, Store};

/// Pause after a storage error before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

pub struct ProcessingWorker {
    pub store: Arc<dyn Store>,
    pub runner: Arc<Runner>,
    pub processors: Arc<Processors>,
    pub bus: Bus,
    /// Signalled when a dead letter of kind processing is retried.
    pub wake: Arc<Notify>,
    pub options: ProcessingOptions,
    /// Commit → processed latencies, for statistics.
    pub latencies: Arc<Latencies>,
    /// How long a claim outlives the slowest webhook processor's timeout before another instance may
    /// take it.
    pub lease: Duration,
}

impl ProcessingWorker {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut log = self.bus.subscribe();
        match self.store.release_processing().await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, "events in processing at the last stop will be processed again"),
            Err(error) => tracing::error!(%error, "could not release earlier processing claims"),
        }
        // The outcomes of the batch just run, recorded together with the next claim.
        let mut finished: Vec<Finished> = Vec::new();
        while !shutdown.is_cancelled() {
            // The lease is sized from the processors known now; the claim may wait for the writer.
            let now = Timestamp::now();
            let lease = lease_for(&self.processors.runnable(), self.lease);
            let claim = Claim { now, lease_until: now.plus(lease), limit: self.options.batch_size };
            let Some(claimed) = self.record(&mut finished, Some(claim)).await else {
                pause(&shutdown, ERROR_PAUSE).await;
                continue;
            };
            if claimed.is_empty() {
                // New events, a retried dead letter, or the poll interval (for retries coming due).
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = self.wake.notified() => {}
                    () = next_stored(&mut log) => {}
                    () = tokio::time::sleep(self.options.poll_interval) => {}
                }
                continue;
            }
            // Read once per batch, after the claim: every claimed event was stored before this read, so
            // a processor registered before an event was stored runs on it, and one turned off is
            // skipped from the next batch on.
            let processors = self.processors.runnable();
            finished = self.process(&processors, claimed).await;
        }
        // Whatever ran last is recorded before stopping; if that fails, its claims expire and it runs again.
        self.record(&mut finished, None).await;
    }

    /// Records `finished` (emptying it) and claims the next batch in one transaction, then announces
    /// the status changes and dead letters. `None` when the store failed: the unrecorded events' claims
    /// expire and they are processed again (at least once).
    async fn record(&self, finished: &mut Vec<Finished>, claim: Option<Claim>) -> Option<Vec<ClaimedEvent>> {
        let batch = std::mem::take(finished);
        let (outcomes, announce): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|f| (f.outcome, (f.change, f.created_at))).unzip();
        match self.store.complete_and_claim(outcomes, claim).await {
            Ok(Completed { dead_letters, claimed }) => {
                let now = Timestamp::now();
                for (change, created_at) in announce {
                    if change.status == EventStatus::Processed {
                        self.latencies.record(now.micros_since(created_at));
                    }
                    self.bus.publish(EngineEvent::Status(Arc::new(change)));
                }
                for entry in dead_letters {
                    self.bus.publish(EngineEvent::DeadLetter { action: DlqAction::Added, entry: Arc::new(entry) });
                }
                Some(claimed)
            }
            Err(error) => {
                tracing::error!(%error, "recording processing results failed; those events will be processed again");
                None
            }
        }
    }

    async fn process(&self, processors: &[Arc<Processor>], claimed: Vec<ClaimedEvent>) -> Vec<Finished> {
        let work = claimed.into_iter().map(|c| Work { event: Arc::new(c.event), skip: c.succeeded }).collect();
        let ran = self.runner.run_batch(processors, work, None).await;
        ran.into_iter()
            .map(|(event, results)| {
                let outcome = ProcessingOutcome {
                    seq: event.seq,
                    event_id: event.event_id,
                    event_type: event.event_type.clone(),
                    next: self.next_step(processors, event.retry_count, &results),
                    results,
                };
                Finished { change: status_change(&outcome), created_at: event.created_at, outcome }
            })
            .collect()
    }

    /// Processed when every result succeeded; otherwise retried with backoff, or failed once the failing
    /// processor's `max_retries` are spent.
    fn next_step(&self, processors: &[Arc<Processor>], retries: i64, results: &[ProcessingResult]) -> ProcessingNext {
        let Some(failure) = results.iter().find(|r| !r.success) else { return ProcessingNext::Processed };
        let error = format!("{}: {}", failure.processor_name, failure.error.as_deref().unwrap_or("failed"));
        let max_retries = processors
            .iter()
            .find(|p| p.processor_id == failure.processor_id)
            .map_or(self.options.max_retries, |p| p.max_retries);
        if retries >= i64::from(max_retries) {
            return ProcessingNext::Failed { error, processor_id: failure.processor_id };
        }
        let policy = RetryPolicy {
            max_retries,
            initial_delay_ms: self.options.retry_initial_delay_ms,
            backoff_multiplier: 2.0,
            max_delay_ms: self.options.retry_max_delay_ms,
            ..RetryPolicy::default()
        };
        let attempt = u32::try_from(retries + 1).unwrap_or(u32::MAX);
        ProcessingNext::Retry { due_at: Timestamp::now().plus(policy.delay(attempt, jitter())), error }
    }
}

/// One event run, waiting to be recorded.
struct Finished {
    outcome: ProcessingOutcome,
    change: StatusChange,
    created_at: Timestamp,
}

/// Waits for the next event stored pending on the bus. Other news is no reason to look for work, and
/// neither is an event stored `processed` (no processor wanted it): looking would cost a claim that
/// finds nothing, a transaction per commit beside ingest.
async fn next_stored(log: &mut broadcast::Receiver<EngineEvent>) {
    loop {
        match log.recv().await {
            Ok(EngineEvent::Stored(event)) if event.status == EventStatus::Pending => return,
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Ok(_) => {}
            // The engine is stopping; the shutdown token ends the loop.
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// A claim lasts `margin` past the slowest webhook processor's timeout.
fn lease_for(processors: &[Arc<Processor>], margin: Duration) -> Duration {
    let slowest = processors.iter().map(|p| p.timeout_ms()).max().unwrap_or(0);
    Duration::from_millis(slowest) + margin
}

fn status_change(outcome: &ProcessingOutcome) -> StatusChange {
    let (status, error_message) = match &outcome.next {
        ProcessingNext::Processed => (EventStatus::Processed, None),
        ProcessingNext::Retry { error, .. } => (EventStatus::Pending, Some(error.clone())),
        ProcessingNext::Failed { error, .. } => (EventStatus::Failed, Some(error.clone())),
    };
    StatusChange {
        event_id: outcome.event_id,
        seq: outcome.seq,
        event_type: outcome.event_type.clone(),
        status,
        error_message,
    }
}

async fn pause(shutdown: &CancellationToken, how_long: Duration) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(how_long) => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::NewEvent;
    use crate::storage::{Appended, EventStore, SqliteStore, StoreOptions};

    #[tokio::test]
    async fn only_an_event_stored_pending_wakes_the_loop() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db"), &StoreOptions::default()).await.unwrap();
        let wanted = NewEvent::new("order.placed");
        let unwanted = NewEvent { skip_processing: true, ..NewEvent::new("page.viewed") };
        let stored: Vec<Arc<crate::domain::Event>> = store
            .append(vec![unwanted, wanted])
            .await
            .unwrap()
            .into_iter()
            .map(|appended| match appended {
                Appended::Created(event) => Arc::new(event),
                other => panic!("not stored: {other:?}"),
            })
            .collect();
        assert_eq!(stored[0].status, EventStatus::Processed);
        let (bus, mut log) = broadcast::channel(16);

        bus.send(EngineEvent::Stored(stored[0].clone())).unwrap();
        let woken = tokio::time::timeout(Duration::from_millis(100), next_stored(&mut log)).await;
        assert!(woken.is_err(), "an event stored processed is no work");
        bus.send(EngineEvent::Stored(stored[1].clone())).unwrap();
        tokio::time::timeout(Duration::from_secs(5), next_stored(&mut log)).await.expect("a pending event is");
    }
}
