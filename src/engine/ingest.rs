//! The ingest writer: one task that takes submissions from a bounded queue and commits them in groups,
//! one transaction per group, answering each caller only after its events are durable.
//!
//! Grouping needs no timer: while one commit runs, later submissions queue up, and the next group takes
//! everything waiting (up to `max_group` events). A lone request is committed at once; under load, one
//! fsync serves hundreds of requests.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::stats::IngestRate;
use crate::domain::{Event, NewEvent};
use crate::metrics::Metrics;
use crate::service::{Error, Ingested};
use crate::storage::{Appended, Store};

pub(super) type Reply = Result<Vec<Result<Ingested, Error>>, Error>;

/// One caller's events and the channel its answer goes back on.
pub(super) struct Submission {
    pub events: Vec<NewEvent>,
    pub reply: oneshot::Sender<Reply>,
}

pub(super) struct Writer {
    pub store: Arc<dyn Store>,
    /// To the log follower, which puts what was committed on the bus in seq order.
    pub committed: mpsc::Sender<Vec<Arc<Event>>>,
    pub rate: Arc<IngestRate>,
    pub metrics: Arc<Metrics>,
    pub max_group: usize,
}

impl Writer {
    /// Commits submissions until the queue closes. On `shutdown` it stops taking new submissions but
    /// commits every one already queued, so nothing a caller is waiting on is dropped.
    pub async fn run(self, mut queue: mpsc::Receiver<Submission>, shutdown: CancellationToken) {
        let mut group = Vec::new();
        loop {
            let first = tokio::select! {
                next = queue.recv() => next,
                () = shutdown.cancelled(), if !queue.is_closed() => {
                    queue.close();
                    continue;
                }
            };
            let Some(first) = first else { break };
            let mut size = first.events.len();
            group.push(first);
            while size < self.max_group {
                match queue.try_recv() {
                    Ok(next) => {
                        size += next.events.len();
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            self.commit(&mut group).await;
        }
    }

    async fn commit(&self, group: &mut Vec<Submission>) {
        let sizes: Vec<usize> = group.iter().map(|s| s.events.len()).collect();
        let events: Vec<NewEvent> = group.iter_mut().flat_map(|s| std::mem::take(&mut s.events)).collect();
        let size = events.len();
        let started = Instant::now();
        let span = tracing::debug_span!("commit", events = size);
        let appended = match self.store.append(events).instrument(span).await {
            Ok(appended) => appended,
            Err(error) => {
                tracing::error!(%error, "committing ingested events failed; callers get 503");
                let error = Error::from(error);
                for submission in group.drain(..) {
                    // A caller that went away no longer needs its answer.
                    let _ = submission.reply.send(Err(error.clone()));
                }
                return;
            }
        };

        let elapsed = started.elapsed();
        let mut created = Vec::with_capacity(size);
        let mut duplicates = 0;
        let mut results = appended.into_iter().map(|appended| match appended {
            Appended::Created(event) => {
                let event = Arc::new(event);
                created.push(event.clone());
                Ok(Ingested { event, created: true })
            }
            Appended::Duplicate(event) => {
                duplicates += 1;
                Ok(Ingested { event: Arc::new(event), created: false })
            }
            Appended::VersionConflict { stream_id, expected, actual } => {
                Err(Error::VersionConflict { stream_id, expected, actual })
            }
        });
        for (submission, size) in group.drain(..).zip(sizes) {
            let answer: Vec<_> = results.by_ref().take(size).collect();
            // A caller that went away no longer needs its answer; its events are stored.
            let _ = submission.reply.send(Ok(answer));
        }
        drop(results);
        self.rate.record(created.len() as u64);
        let sources: Vec<_> = created.iter().map(|e| e.event_source).collect();
        self.metrics.commit(elapsed, size, &sources, duplicates);
        if !created.is_empty() {
            // The follower stops after the writer, so it is there to receive; the events are stored
            // either way, and a follower that missed them would read them from the store.
            let _ = self.committed.send(created).await;
        }
    }
}
