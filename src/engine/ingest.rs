//! The ingest writer: one task that takes submissions from a bounded queue and commits them in groups,
//! one transaction per group, answering each caller only after its events are durable.
//!
//! Grouping needs no timer: while one commit runs, later submissions queue up, and the next group takes
//! everything waiting (up to `max_group` events). A lone request is committed at once; under load, one
//! fsync serves hundreds of requests.

use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use futures::stream::{FuturesOrdered, StreamExt};
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
    ///
    /// Where the store can write two groups at once ([`crate::storage::EventStore::appends_at_once`]),
    /// the next group starts while the last commits; their answers, and their events to the follower,
    /// still go out in the order the groups started, which is their seqs' order.
    pub async fn run(self, mut queue: mpsc::Receiver<Submission>, shutdown: CancellationToken) {
        let at_once = self.store.appends_at_once().max(1);
        let mut committing = FuturesOrdered::new();
        loop {
            let room = committing.len() < at_once;
            tokio::select! {
                biased;
                Some(created) = committing.next(), if !committing.is_empty() => self.follow(created).await,
                next = queue.recv(), if room => {
                    let Some(first) = next else { break };
                    let mut size = first.events.len();
                    let mut group = vec![first];
                    // With nothing else in flight, half of what waits, so that the rest starts beside it
                    // at once: groups that start together keep coming back together.
                    let mut more = match committing.is_empty() && at_once > 1 {
                        true => queue.len() / 2,
                        false => usize::MAX,
                    };
                    while size < self.max_group && more > 0 {
                        more -= 1;
                        match queue.try_recv() {
                            Ok(next) => {
                                size += next.events.len();
                                group.push(next);
                            }
                            Err(_) => break,
                        }
                    }
                    committing.push_back(self.commit(group));
                    // Polled once straight away, so it reaches the store before any group formed after it.
                    if let Some(Some(created)) = committing.next().now_or_never() {
                        self.follow(created).await;
                    }
                }
                () = shutdown.cancelled(), if !queue.is_closed() => queue.close(),
            }
        }
        while let Some(created) = committing.next().await {
            self.follow(created).await;
        }
    }

    /// Hands a group's new events to the follower, group after group in the order they were started.
    async fn follow(&self, created: Vec<Arc<Event>>) {
        if !created.is_empty() {
            // The follower stops after the writer, so it is there to receive; the events are stored
            // either way, and a follower that missed them would read them from the store.
            let _ = self.committed.send(created).await;
        }
    }

    /// Commits one group and answers its callers; gives back the events it created, for the follower.
    async fn commit(&self, mut group: Vec<Submission>) -> Vec<Arc<Event>> {
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
                for submission in group {
                    // A caller that went away no longer needs its answer.
                    let _ = submission.reply.send(Err(error.clone()));
                }
                return Vec::new();
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
        for (submission, size) in group.into_iter().zip(sizes) {
            let answer: Vec<_> = results.by_ref().take(size).collect();
            // A caller that went away no longer needs its answer; its events are stored.
            let _ = submission.reply.send(Ok(answer));
        }
        drop(results);
        self.rate.record(created.len() as u64);
        let sources: Vec<_> = created.iter().map(|e| e.event_source).collect();
        self.metrics.commit(elapsed, size, &sources, duplicates);
        created
    }
}
