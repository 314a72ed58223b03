//! Replay: stored events sent again to subscriptions (as new deliveries, through the normal outbox) or
//! run again through processors (recorded as new results). A dry run counts and samples; a real one
//! runs as a background job whose progress is stored and announced on the bus. Originals never change.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Engine;
use super::bus::EngineEvent;
use super::processing::Work;
use crate::domain::replay::{DRY_RUN_SAMPLE, ReplaySelection};
use crate::domain::{
    DeliveryId, Event, EventFilter, EventQuery, FieldError, Order, Processor, ReplayId, ReplayProgress, ReplayRequest,
    ReplayStarted, ReplayStatus, ReplayTarget, Subscription, Timestamp,
};
use crate::service::Error;
use crate::storage::NewDelivery;

/// Events read per step of a replay.
const PAGE: u32 = 500;
/// How often a running replay counts its finished deliveries.
const PROGRESS_POLL: Duration = Duration::from_millis(200);

/// Where the next page of a selection starts.
#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    /// Ids: how many were taken; stream: the last version; time range: the last seq.
    position: i64,
    exhausted: bool,
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
        self.inner.store.save_replay(&progress).await?;
        let replay_id = progress.replay_id;
        let job = ReplayJob { engine: self.clone(), request, progress };
        let stop = self.inner.shutdown.child_token();
        let handle = tokio::spawn(job.run(stop));
        let mut workers = self.inner.workers.lock().await;
        // Finished replays need no joining at shutdown; keep the list to what still runs.
        workers.retain(|worker| !worker.is_finished());
        workers.push(handle);
        Ok(ReplayStarted {
            replay_id: Some(replay_id),
            status: ReplayStatus::Running,
            events_count,
            events: Vec::new(),
        })
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
        let mut cursor = Cursor::default();
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
    async fn selection_page(&self, request: &ReplayRequest, cursor: &mut Cursor) -> Result<Vec<Event>, Error> {
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
}

impl ReplayJob {
    async fn run(mut self, stop: CancellationToken) {
        let outcome = tokio::select! {
            outcome = self.work() => outcome,
            () = stop.cancelled() => Err(Error::ShuttingDown),
        };
        self.progress.finished_at = Some(Timestamp::now());
        match outcome {
            Ok(()) => self.progress.status = ReplayStatus::Completed,
            Err(error) => {
                tracing::warn!(replay_id = %self.progress.replay_id, %error, "replay failed");
                self.progress.status = ReplayStatus::Failed;
                self.progress.error = Some(error.to_string());
            }
        }
        self.publish().await;
    }

    /// Sends every selected event to its targets, then waits for the deliveries it queued to finish.
    async fn work(&mut self) -> Result<(), Error> {
        let engine = self.engine.clone();
        let inner = &engine.inner;
        let replay_id = self.progress.replay_id;
        let (mut deliveries, mut processed, mut processing_failed) = (0u64, 0u64, 0u64);
        let mut cursor = Cursor::default();
        loop {
            let page = engine.selection_page(&self.request, &mut cursor).await?;
            if page.is_empty() {
                break;
            }
            let (subscriptions, processors) = self.targets();

            let queued: Vec<NewDelivery> = page
                .iter()
                .flat_map(|event| {
                    subscriptions.iter().filter(|s| self.wants(s, event)).map(|s| NewDelivery {
                        delivery_id: DeliveryId::new_v7(),
                        event_seq: event.seq,
                        event_id: event.event_id,
                        subscription_id: s.subscription_id,
                        replay_id: Some(replay_id),
                    })
                })
                .collect();
            if !queued.is_empty() {
                deliveries += queued.len() as u64;
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
                processed += results.len() as u64;
                processing_failed += results.iter().filter(|(_, r)| !r.success).count() as u64;
                self.progress.total += results.len() as u64;
                inner.store.record_results(&results).await?;
            }
            self.progress.done = processed;
            self.progress.failed = processing_failed;
            self.publish().await;
        }

        // Deliveries finish on the dispatcher's schedule (retries included); count them as they do.
        loop {
            let (finished, dead) = inner.store.replay_deliveries_finished(replay_id).await?;
            let (done, failed) = (processed + finished, processing_failed + dead);
            if (done, failed) != (self.progress.done, self.progress.failed) {
                (self.progress.done, self.progress.failed) = (done, failed);
                self.publish().await;
            }
            if finished >= deliveries {
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

    /// Stores the progress and announces it; a failure to store is logged, the job goes on.
    async fn publish(&self) {
        if let Err(error) = self.engine.inner.store.save_replay(&self.progress).await {
            tracing::warn!(replay_id = %self.progress.replay_id, %error, "could not save replay progress");
        }
        // Nobody listening is fine: the progress is stored.
        let _ = self.engine.inner.bus.send(EngineEvent::Replay(Arc::new(self.progress.clone())));
    }
}
