//! Replay: stored events sent again to subscriptions (as new deliveries, through the normal outbox) or
//! run again through processors (recorded as new results). A dry run counts and samples; a real one
//! runs as a background job whose progress is stored and announced on the bus. Originals never change.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Engine;
use super::bus::EngineEvent;
use super::processing::Work;
use crate::domain::replay::{DRY_RUN_SAMPLE, ReplaySelection};
use crate::domain::{
    DeliveryId, Event, EventFilter, EventQuery, FieldError, Order, Processor, ReplayId, ReplayProgress, ReplayRequest,
    ReplayStarted, ReplayStatus, ReplayTarget, Subscription, SubscriptionId, Timestamp,
};
use crate::service::Error;
use crate::storage::{NewDelivery, StoredReplay};

/// Events read per step of a replay.
const PAGE: u32 = 500;
/// How often a running replay counts its finished deliveries.
const PROGRESS_POLL: Duration = Duration::from_millis(200);

/// Where the next page of a selection starts.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Position {
    /// Ids: how many were taken; stream: the last version; time range: the last seq.
    position: i64,
    exhausted: bool,
}

/// How far a replay got, kept with it in the store so that another instance (or this one after a
/// restart) carries it on from there. A page being worked on when the replay stopped is done again:
/// replays are at least once.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct ReplayState {
    next: Position,
    /// Deliveries queued so far, and processor runs made (and failed) so far.
    deliveries: u64,
    processed: u64,
    processing_failed: u64,
}

/// Why a replay job stopped working before it was done.
enum Stopped {
    Failed(Error),
    /// Another instance holds it now (this one's lease ran out).
    TakenOver,
}

impl From<Error> for Stopped {
    fn from(error: Error) -> Self {
        Stopped::Failed(error)
    }
}

impl From<crate::storage::Error> for Stopped {
    fn from(error: crate::storage::Error) -> Self {
        Stopped::Failed(error.into())
    }
}

impl Engine {
    pub(super) async fn start_replay(&self, request: ReplayRequest) -> Result<ReplayStarted, Error> {
        self.check_target(request.target)?;
        let (events_count, sample) = self.count_selection(&request).await?;
        if request.dry_run {
            return Ok(ReplayStarted { replay_id: None, status: ReplayStatus::DryRun, events_count, events: sample });
        }
        let limit = self.inner.replay_confirm_above;
        if events_count > limit && !request.confirm {
            return Err(Error::Invalid(FieldError::new(
                "confirm",
                format!(
                    "{events_count} events match, more than [replay] confirm_above ({limit}): \
                     send \"confirm\": true to replay them all, or narrow the selection"
                ),
            )));
        }
        let progress = ReplayProgress {
            replay_id: ReplayId::new_v7(),
            status: ReplayStatus::Running,
            events_count,
            total: 0,
            done: 0,
            failed: 0,
            started_at: Timestamp::now(),
            finished_at: None,
            error: None,
        };
        let job = ReplayJob { engine: self.clone(), request, progress, state: ReplayState::default() };
        let stored = StoredReplay { progress: job.progress.clone(), plan: job.plan()?, state: job.state_json() };
        self.inner.store.insert_replay(&stored, self.lease_until()).await?;
        let replay_id = job.progress.replay_id;
        self.run_replay(job).await;
        Ok(ReplayStarted {
            replay_id: Some(replay_id),
            status: ReplayStatus::Running,
            events_count,
            events: Vec::new(),
        })
    }

    /// Runs a replay job in the background until it is done, taken over, or the engine stops.
    async fn run_replay(&self, job: ReplayJob) {
        let handle = tokio::spawn(job.run(self.inner.shutdown.child_token()));
        let mut workers = self.inner.workers.lock().await;
        // Finished replays need no joining at shutdown; keep the list to what still runs.
        workers.retain(|worker| !worker.is_finished());
        workers.push(handle);
    }

    /// Carries on the replays whose instance let go of them or died (their lease ran out): the ones this
    /// instance ran before a restart, and other instances' after they stopped.
    pub(super) async fn take_over_replays(&self) -> Result<(), crate::storage::Error> {
        while let Some(stored) = self.inner.store.claim_replay(Timestamp::now(), self.lease_until()).await? {
            let replay_id = stored.progress.replay_id;
            let plan = serde_json::from_str::<ReplayRequest>(&stored.plan);
            let state = serde_json::from_str::<ReplayState>(&stored.state);
            let (request, state) = match (plan, state) {
                (Ok(request), Ok(state)) => (request, state),
                (Err(error), _) | (_, Err(error)) => {
                    let mut progress = stored.progress;
                    progress.status = ReplayStatus::Failed;
                    progress.finished_at = Some(Timestamp::now());
                    progress.error = Some(format!("this replay cannot be carried on ({error}): start it again"));
                    self.inner.store.save_replay(&progress, &stored.state, self.lease_until()).await?;
                    continue;
                }
            };
            tracing::info!(%replay_id, done = stored.progress.done, "carrying on a replay another run left");
            self.run_replay(ReplayJob { engine: self.clone(), request, progress: stored.progress, state }).await;
        }
        Ok(())
    }

    /// When a claim taken now runs out.
    fn lease_until(&self) -> Timestamp {
        Timestamp::now().plus(self.inner.lease)
    }

    fn check_target(&self, target: Option<ReplayTarget>) -> Result<(), Error> {
        match target {
            None => Ok(()),
            Some(ReplayTarget::Subscription { subscription_id }) => self
                .inner
                .subscriptions
                .get(subscription_id)
                .map(|_| ())
                .ok_or_else(|| Error::NotFound { what: "subscription", id: subscription_id.to_string() }),
            Some(ReplayTarget::Processor { processor_id }) => self
                .inner
                .processors
                .get(processor_id)
                .map(|_| ())
                .ok_or_else(|| Error::NotFound { what: "processor", id: processor_id.to_string() }),
        }
    }

    /// How many events the request selects, and the first of them.
    async fn count_selection(&self, request: &ReplayRequest) -> Result<(u64, Vec<Arc<Event>>), Error> {
        if let ReplaySelection::TimeRange { start, end } = request.selection {
            let filter = EventFilter {
                event_type: request.event_type.clone(),
                event_source: request.event_source,
                start_time: start,
                end_time: end,
                ..EventFilter::default()
            };
            let query = EventQuery { filter, limit: DRY_RUN_SAMPLE as u32, offset: 0, order: Order::Asc };
            let page = self.inner.store.query(&query).await?;
            return Ok((page.total, page.events.into_iter().map(Arc::new).collect()));
        }
        let (mut count, mut sample) = (0u64, Vec::new());
        let mut cursor = Position::default();
        loop {
            let page = self.selection_page(request, &mut cursor).await?;
            if page.is_empty() {
                return Ok((count, sample));
            }
            count += page.len() as u64;
            let room = DRY_RUN_SAMPLE.saturating_sub(sample.len());
            sample.extend(page.into_iter().take(room).map(Arc::new));
        }
    }

    /// The next events of the selection, in order, after `cursor` (empty at the end).
    async fn selection_page(&self, request: &ReplayRequest, cursor: &mut Position) -> Result<Vec<Event>, Error> {
        let wanted = |event: &Event| {
            request.event_type.as_ref().is_none_or(|p| p.matches(&event.event_type))
                && request.event_source.is_none_or(|s| s == event.event_source)
        };
        let store = &self.inner.store;
        while !cursor.exhausted {
            let page = match &request.selection {
                ReplaySelection::Ids(ids) => {
                    let from = usize::try_from(cursor.position).unwrap_or(usize::MAX).min(ids.len());
                    let chunk = &ids[from..(from + PAGE as usize).min(ids.len())];
                    cursor.position += chunk.len() as i64;
                    cursor.exhausted = chunk.is_empty();
                    let mut events = Vec::with_capacity(chunk.len());
                    for id in chunk {
                        if let Some(event) = store.event(*id).await? {
                            events.push(event);
                        }
                    }
                    events
                }
                ReplaySelection::Stream(stream_id) => {
                    // The position is the last version read; the next page starts after it.
                    let events = store.stream(stream_id, cursor.position + 1, PAGE).await?;
                    cursor.exhausted = events.len() < PAGE as usize;
                    cursor.position = events.last().and_then(|e| e.stream_version).unwrap_or(cursor.position);
                    events
                }
                ReplaySelection::TimeRange { start, end } => {
                    let filter = EventFilter {
                        event_type: request.event_type.clone(),
                        event_source: request.event_source,
                        start_time: *start,
                        end_time: *end,
                        ..EventFilter::default()
                    };
                    let events = store.events_after(cursor.position, &filter, PAGE).await?;
                    cursor.exhausted = events.len() < PAGE as usize;
                    cursor.position = events.last().map_or(cursor.position, |e| e.seq);
                    events
                }
            };
            let page: Vec<Event> = page.into_iter().filter(wanted).collect();
            if !page.is_empty() {
                return Ok(page);
            }
        }
        Ok(Vec::new())
    }
}

struct ReplayJob {
    engine: Engine,
    request: ReplayRequest,
    progress: ReplayProgress,
    state: ReplayState,
}

impl ReplayJob {
    /// Works until done or failed, and records how it ended; a job the engine stops, or another
    /// instance took over, is left running in the store for whoever carries it on.
    async fn run(mut self, stop: CancellationToken) {
        let outcome = tokio::select! {
            outcome = self.work() => outcome,
            () = stop.cancelled() => return,
        };
        self.progress.finished_at = Some(Timestamp::now());
        match outcome {
            Ok(()) => self.progress.status = ReplayStatus::Completed,
            Err(Stopped::TakenOver) => {
                tracing::warn!(replay_id = %self.progress.replay_id, "another instance carries this replay on");
                return;
            }
            Err(Stopped::Failed(error)) => {
                tracing::warn!(replay_id = %self.progress.replay_id, %error, "replay failed");
                self.progress.status = ReplayStatus::Failed;
                self.progress.error = Some(error.to_string());
            }
        }
        // Ended either way: whether its last word could be saved changes nothing more.
        let _ = self.publish().await;
    }

    /// Sends every selected event to its targets, then waits for the deliveries it queued to finish.
    async fn work(&mut self) -> Result<(), Stopped> {
        let engine = self.engine.clone();
        let inner = &engine.inner;
        let replay_id = self.progress.replay_id;
        loop {
            let mut next = self.state.next;
            let page = engine.selection_page(&self.request, &mut next).await?;
            if page.is_empty() {
                break;
            }
            let (subscriptions, processors) = self.targets();

            let queued: Vec<NewDelivery> = page
                .iter()
                .flat_map(|event| {
                    subscriptions.iter().filter(|s| self.wants(s, event)).map(|s| NewDelivery {
                        delivery_id: replay_delivery_id(replay_id, event.seq, s.subscription_id),
                        event_seq: event.seq,
                        event_id: event.event_id,
                        subscription_id: s.subscription_id,
                        replay_id: Some(replay_id),
                        claimed_until: None,
                    })
                })
                .collect();
            if !queued.is_empty() {
                self.state.deliveries += queued.len() as u64;
                self.progress.total += queued.len() as u64;
                inner.store.enqueue_deliveries(queued, None).await?;
                inner.delivery_wake.notify_one();
            }

            if !processors.is_empty() {
                let work = page.into_iter().map(|event| Work { event: Arc::new(event), skip: Vec::new() }).collect();
                let ran = inner.runner.run_batch(&processors, work, Some(replay_id)).await;
                let results: Vec<_> = ran
                    .into_iter()
                    .flat_map(|(event, results)| results.into_iter().map(move |r| (event.seq, r)))
                    .collect();
                self.state.processed += results.len() as u64;
                self.state.processing_failed += results.iter().filter(|(_, r)| !r.success).count() as u64;
                self.progress.total += results.len() as u64;
                inner.store.record_results(&results).await?;
            }
            self.state.next = next;
            self.progress.done = self.state.processed;
            self.progress.failed = self.state.processing_failed;
            self.publish().await?;
        }

        // Deliveries finish on the dispatchers' schedule (retries included); count them as they do, and
        // keep the lease while waiting.
        let mut saved = Instant::now();
        loop {
            let (finished, dead) = inner.store.replay_deliveries_finished(replay_id).await?;
            let (done, failed) = (self.state.processed + finished, self.state.processing_failed + dead);
            if (done, failed) != (self.progress.done, self.progress.failed) || saved.elapsed() >= inner.lease / 3 {
                (self.progress.done, self.progress.failed) = (done, failed);
                self.publish().await?;
                saved = Instant::now();
            }
            if finished >= self.state.deliveries {
                return Ok(());
            }
            tokio::time::sleep(PROGRESS_POLL).await;
        }
    }

    /// The subscriptions and processors this replay goes to, as they are now.
    fn targets(&self) -> (Vec<Arc<Subscription>>, Vec<Arc<Processor>>) {
        let inner = &self.engine.inner;
        match self.request.target {
            Some(ReplayTarget::Subscription { subscription_id }) => {
                (inner.subscriptions.get(subscription_id).into_iter().collect(), Vec::new())
            }
            Some(ReplayTarget::Processor { processor_id }) => {
                (Vec::new(), inner.processors.get(processor_id).into_iter().collect())
            }
            None => (inner.subscriptions.enabled(), inner.processors.runnable()),
        }
    }

    /// A named target takes every selected event; with no target, each goes where it matches.
    fn wants(&self, subscription: &Subscription, event: &Event) -> bool {
        self.request.target.is_some() || subscription.matches(event)
    }

    fn plan(&self) -> Result<String, Error> {
        serde_json::to_string(&self.request)
            .map_err(|e| Error::Unavailable(format!("the replay request could not be kept: {e}")))
    }

    fn state_json(&self) -> String {
        // Plain numbers and flags: it always serialises.
        serde_json::to_string(&self.state).unwrap_or_default()
    }

    /// Stores the progress and state (renewing the lease) and announces the progress. A failure to
    /// store is logged and the job goes on (its lease may run out); `TakenOver` when another instance
    /// holds the replay now.
    async fn publish(&self) -> Result<(), Stopped> {
        let inner = &self.engine.inner;
        match inner.store.save_replay(&self.progress, &self.state_json(), self.engine.lease_until()).await {
            Ok(true) => {}
            Ok(false) => return Err(Stopped::TakenOver),
            Err(error) => {
                tracing::warn!(replay_id = %self.progress.replay_id, %error, "could not save replay progress")
            }
        }
        inner.bus.publish(EngineEvent::Replay(Arc::new(self.progress.clone())));
        Ok(())
    }
}

/// The id of a replay's delivery of event `seq` to `subscription`: the same whenever it is made, so a
/// replay carried on after its instance died re-queues the page it was on without queueing any delivery
/// twice (the store ignores an id it holds). Found by the soak: the page queued just before a SIGKILL,
/// and not yet in the saved state, was queued again with new ids, so the replay delivered it twice and
/// counted more done than its total.
fn replay_delivery_id(replay_id: ReplayId, seq: i64, subscription: SubscriptionId) -> DeliveryId {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(replay_id.0.as_bytes())
        .chain_update(seq.to_be_bytes())
        .chain_update(subscription.0.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    DeliveryId(uuid::Builder::from_random_bytes(bytes).into_uuid())
}

#[cfg(test)]
mod delivery_id_tests {
    use super::*;

    #[test]
    fn a_replays_delivery_ids_are_the_same_at_every_try_and_differ_between_deliveries() {
        let (replay, subscription) = (ReplayId::new_v7(), SubscriptionId::new_v7());
        let id = replay_delivery_id(replay, 42, subscription);
        assert_eq!(id, replay_delivery_id(replay, 42, subscription), "carried on: the same id");
        assert_ne!(id, replay_delivery_id(replay, 43, subscription));
        assert_ne!(id, replay_delivery_id(replay, 42, SubscriptionId::new_v7()));
        assert_ne!(id, replay_delivery_id(ReplayId::new_v7(), 42, subscription), "another replay");
    }
}
