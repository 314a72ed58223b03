//! The delivery dispatcher: reads the event log after its cursor and queues one delivery per matching
//! subscription (with the cursor, in one transaction), claims due deliveries ahead, sends them with
//! bounded concurrency, and hands outcomes to a recorder task that writes them in batches: delivered,
//! retried later with backoff, dead-lettered, or the subscription disabled on 410 Gone. Sending never
//! waits for a commit, and a commit serves many deliveries.
//!
//! The loop itself never waits on the store: the fan-out and the claims run as tasks beside it, one at
//! a time, and the loop takes their results as they finish while it keeps starting requests and
//! reaping finished ones. (Awaited in the loop, each store step, which may defer to ingest for 20 ms,
//! held up every send: at 1,000 events/s to 10 subscriptions the queue grew to a 35 s p99.)
//!
//! Endpoints are isolated from each other: each subscription has its own lane (see [`lanes`]), claimed from
//! the store on its own and holding a bounded share of the sending slots, so an endpoint that hangs,
//! answers slowly or trickles its answer only ever slows its own deliveries.
//!
//! Every state lives in the store, so a crash loses nothing: claims left in flight are released at
//! start and sent again (at least once).

mod attempt;
mod lanes;
mod prepared;
mod recorder;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::delivery::WebhookClient;
use crate::domain::{EventFilter, Subscription, SubscriptionId, Timestamp};
use crate::engine::bus::{Bus, EngineEvent};
use crate::engine::subscriptions::Subscriptions;
use crate::metrics::Metrics;
use crate::storage::{
    ClaimedDelivery, Cursor, CursorMove, DELIVERY_CURSOR, DeliveryResult, NewDelivery, NextStep, Store,
};
use lanes::{Job, Lane, Lanes};
use prepared::{EventCache, PreparedEvent};
use recorder::{RecordedRetries, Recorder};

/// Events read from the log per fan-out step.
const FAN_OUT_PAGE: u32 = 500;
/// Longest sleep between looks at the store for due retries (scheduled by an earlier run, say).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Outcomes waiting for the recorder. A request hands its outcome over before its slot is free, so this
/// must hold what arrives while one batch is written (at 10,000 deliveries/s and 20 ms a write, 200):
/// shorter, and the recorder's pace caps deliveries.
const RECORDER_QUEUE: usize = 4096;
/// Pause after a storage error before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

pub struct DeliveryWorker {
    pub store: Arc<dyn Store>,
    pub client: WebhookClient,
    pub bus: Bus,
    pub subscriptions: Arc<Subscriptions>,
    /// Signalled when subscriptions change or dead letters are retried.
    pub wake: Arc<Notify>,
    /// Requests in flight at once, over all subscriptions.
    pub concurrency: usize,
    /// Requests in flight at once to one subscription.
    pub per_subscription: usize,
    /// How long a claim outlives its request's own timeout before another instance may take it.
    pub lease: Duration,
    pub metrics: Arc<Metrics>,
}

impl DeliveryWorker {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut log = self.bus.subscribe();
        match self.store.release_claims().await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, "deliveries in flight at the last stop will be sent again"),
            Err(error) => tracing::error!(%error, "could not release earlier delivery claims"),
        }
        let Some(mut cursor) = self.read_cursor(&shutdown).await else { return };

        let retries = Arc::new(RecordedRetries::default());
        let (results, outcomes) = mpsc::channel(RECORDER_QUEUE);
        let recorder = Recorder {
            store: self.store.clone(),
            bus: self.bus.clone(),
            subscriptions: self.subscriptions.clone(),
            retries: retries.clone(),
        };
        let recorder = tokio::spawn(recorder.run(outcomes));

        let mut lanes = Lanes::new(self.concurrency, self.per_subscription, results, self.metrics.clone());
        // Travels with each claim and comes back with its result.
        let mut events = Some(EventCache::default());
        let mut claim_after = Instant::now();
        let mut log_has_more = true;
        let mut polled = Instant::now();
        let mut claiming: Option<Claiming> = None;
        let mut fanning: Option<FanningOut> = None;
        // Whose turn it is at the store when both a claim and a fan-out have work.
        let mut claim_next = false;
        loop {
            // Finished requests free their slots; then waiting deliveries take them.
            lanes.reap().await;
            // Store work that has finished is taken here too, not only when the loop waits below: it
            // runs beside the loop and is picked up whichever way the loop comes round.
            if let Some(done) = claiming.take_if(|claiming| claiming.task.is_finished()) {
                let found = done.task.await.ok();
                if !self.take_claim(&done.wants, found, &mut lanes, &mut events).await {
                    claim_after = Instant::now() + ERROR_PAUSE;
                }
            }
            if let Some(done) = fanning.take_if(|fanning| fanning.task.is_finished()) {
                let fanned = done.task.await.ok();
                log_has_more |= take_fan_out(fanned, &mut cursor, &mut lanes, &mut events);
            }
            lanes.start(&self.client, &self.subscriptions).await;

            // One store step at a time, fan-out and claim taking turns while both have work. They queue
            // for the one writer anyway; one at a time, a claim that finds a lane's pending deliveries
            // all taken knows no fan-out queued more meanwhile, so the lane is drained and the next
            // fan-out hands it new deliveries already claimed (one write a delivery, not two).
            let mut pause = IDLE_POLL.saturating_sub(polled.elapsed());
            if claiming.is_none() && fanning.is_none() {
                if Instant::now() < claim_after {
                    pause = pause.min(claim_after - Instant::now());
                } else if claim_next || !log_has_more {
                    let wants = lanes.wants(&self.subscriptions.enabled());
                    if !wants.is_empty() {
                        claiming = Some(self.claim(wants, events.take()));
                    }
                }
                if claiming.is_none() && log_has_more {
                    log_has_more = false;
                    fanning = Some(self.start_fan_out(cursor, &mut lanes, events.take()));
                }
                claim_next = fanning.is_some();
            }
            if let Some(due) = lanes.next_retry() {
                let wait = due.as_micros() - Timestamp::now().as_micros();
                pause = pause.min(Duration::from_micros(wait.max(0) as u64));
            }
            if let Some(at) = lanes.next_paced_start() {
                pause = pause.min(at.saturating_duration_since(Instant::now()));
            }
            if lanes.can_start() {
                continue;
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                done = async { (&mut claiming.as_mut()?.task).await.ok() }, if claiming.is_some() => {
                    let Some(Claiming { wants, .. }) = claiming.take() else { continue };
                    if !self.take_claim(&wants, done, &mut lanes, &mut events).await {
                        claim_after = Instant::now() + ERROR_PAUSE;
                    }
                }
                done = async { (&mut fanning.as_mut()?.task).await.ok() }, if fanning.is_some() => {
                    fanning = None;
                    log_has_more |= take_fan_out(done, &mut cursor, &mut lanes, &mut events);
                }
                () = lanes.wait_finished(), if lanes.is_sending() => {}
                () = retries.written.notified() => {
                    for (id, at) in retries.take() {
                        lanes.lane(id).note_retry(at);
                    }
                }
                message = log.recv() => {
                    // Only stored events (or missed ones) mean new log to fan out; one wake-up serves a
                    // whole burst of them.
                    let mut stored = matches!(message, Ok(EngineEvent::Stored(_)) | Err(RecvError::Lagged(_)));
                    loop {
                        match log.try_recv() {
                            Ok(EngineEvent::Stored(_)) | Err(TryRecvError::Lagged(_)) => stored = true,
                            Ok(_) => {}
                            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                        }
                    }
                    log_has_more |= stored;
                }
                () = self.wake.notified() => {
                    // Subscriptions changed or dead letters were retried: requests to subscriptions
                    // disabled or deleted stop now, and every lane may have new work.
                    lanes.abort_disabled(&self.subscriptions);
                    lanes.lanes_mut().for_each(Lane::wake);
                    log_has_more = true;
                }
                () = tokio::time::sleep(pause) => {
                    let now = Timestamp::now();
                    let poll = polled.elapsed() >= IDLE_POLL;
                    for lane in lanes.lanes_mut() {
                        lane.wake_if_due(now);
                        if poll {
                            lane.wake();
                        }
                    }
                    if poll {
                        // Also a second look at the log, should a wake-up have been missed.
                        (log_has_more, polled) = (true, Instant::now());
                    }
                }
            }
        }
        // Stop: requests in progress are abandoned and what is recorded stays; the rest of the claims
        // go back to pending for the next start.
        if let Some(claiming) = claiming {
            claiming.task.abort();
        }
        if let Some(fanning) = fanning {
            fanning.task.abort();
        }
        lanes.abort_all().await;
        drop(lanes);
        if let Err(error) = recorder.await {
            tracing::error!(%error, "the delivery recorder ended abnormally");
        }
        if let Err(error) = self.store.release_claims().await {
            tracing::warn!(%error, "could not release delivery claims; they expire on their own");
        }
    }

    async fn read_cursor(&self, shutdown: &CancellationToken) -> Option<Cursor> {
        loop {
            match self.store.cursor(DELIVERY_CURSOR).await {
                Ok(seq) => return Some(seq),
                Err(error) => {
                    tracing::error!(%error, "cannot read the delivery cursor; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(ERROR_PAUSE) => {}
                    }
                }
            }
        }
    }

    /// Starts fanning out the next page of the log after `cursor` beside the loop (see [`fan_out`]), so
    /// requests keep starting while it waits on the store. Lanes with nothing else due take their new
    /// deliveries straight away, as many as they have room for now.
    fn start_fan_out(&self, cursor: Cursor, lanes: &mut Lanes, cache: Option<EventCache>) -> FanningOut {
        let subscriptions = self.subscriptions.enabled();
        let room = subscriptions.iter().map(|s| (s.subscription_id, lanes.room_for_new(s.subscription_id))).collect();
        let (store, all) = (self.store.clone(), self.subscriptions.clone());
        let lease_until = Timestamp::now().plus(self.lease + self.subscriptions.longest_timeout());
        let task = tokio::spawn(async move {
            let mut cache = cache.unwrap_or_default();
            let fanned = fan_out(store.as_ref(), &all, subscriptions, cursor, room, lease_until, &mut cache).await;
            (cache, fanned)
        });
        FanningOut { task }
    }

    /// Starts claiming what `wants` asks for, beside the loop, so requests keep starting while the claim
    /// waits on the store. The event cache travels with the claim and comes back with its result.
    fn claim(&self, wants: Vec<(SubscriptionId, u32)>, events: Option<EventCache>) -> Claiming {
        let store = self.store.clone();
        let lease_until = Timestamp::now().plus(self.lease + self.subscriptions.longest_timeout());
        let asked = wants.clone();
        let task = tokio::spawn(async move {
            let mut cache = events.unwrap_or_default();
            let found = async {
                let claimed = store.claim_deliveries(Timestamp::now(), lease_until, &asked).await?;
                let seqs: Vec<i64> = claimed.iter().map(|c| c.event_seq).collect();
                let prepared = cache.get(store.as_ref(), &seqs).await?;
                Ok((claimed, prepared, lease_until))
            }
            .await;
            (cache, found)
        });
        Claiming { wants, task }
    }

    /// Takes a finished claim's result (None when its task ended abnormally): its deliveries go into the
    /// lanes and the event cache that travelled with it comes back. False when the claim failed, and the
    /// next should wait.
    async fn take_claim(
        &self,
        wants: &[(SubscriptionId, u32)],
        done: Option<(EventCache, Result<Claimed, crate::storage::Error>)>,
        lanes: &mut Lanes,
        events: &mut Option<EventCache>,
    ) -> bool {
        let Some(found) = step_result(done, events, "claiming deliveries") else { return false };
        lanes.claimed(wants, &found.0);
        self.take_claimed(found, lanes).await;
        true
    }

    /// Puts what a claim found into the lanes; deliveries whose subscription is gone or disabled, or whose
    /// event is gone, are cancelled straight away.
    async fn take_claimed(&self, claimed: Claimed, lanes: &mut Lanes) {
        let (claimed, prepared, lease_until) = claimed;
        for claimed in claimed {
            let subscription = self.subscriptions.get(claimed.subscription_id).filter(|s| s.enabled);
            match (subscription, prepared.get(&claimed.event_seq)) {
                (Some(subscription), Some(event)) => {
                    lanes.push(Job { claimed, subscription, event: event.clone(), lease_until });
                }
                _ => lanes.record(DeliveryResult { claimed, attempt: None, next: NextStep::Cancelled }).await,
            }
        }
    }
}

/// Queues deliveries for the next page of the log after `cursor` and moves the cursor past it; returns
/// the new cursor, whether more log follows, the subscriptions something was queued for as pending
/// (here or, when another instance moved the cursor first, there), and the deliveries queued already
/// claimed, ready for their lanes.
///
/// A subscription receives only events after its `start_seq`, so the log before the oldest enabled
/// subscription's start is skipped unread (with no subscription, nothing is read). The cursor moves
/// only from where this instance last saw it, with the subscriptions of that epoch: when another
/// instance moved it, or a subscription changed since, the cursor and the subscriptions are read
/// again and the page is done over, so no stretch of the log is fanned out twice, or without a
/// subscription that starts before it.
///
/// Lanes with nothing else due (`room`: how many each takes) get their deliveries queued already
/// claimed, with the events just read: no second write to claim them, no second read of the events.
async fn fan_out(
    store: &dyn Store,
    all: &Subscriptions,
    subscriptions: Vec<Arc<Subscription>>,
    cursor: Cursor,
    mut room: HashMap<SubscriptionId, usize>,
    lease_until: Timestamp,
    cache: &mut EventCache,
) -> Result<FannedOut, crate::storage::Error> {
    let nothing = |cursor| FannedOut { cursor, more: false, queued: HashSet::new(), jobs: Vec::new() };
    let Some(from) = subscriptions.iter().map(|s| s.start_seq).min() else {
        return Ok(nothing(cursor));
    };
    let events = store.events_after(cursor.seq.max(from), &EventFilter::default(), FAN_OUT_PAGE).await?;
    let Some(last) = events.last().map(|e| e.seq) else {
        return Ok(nothing(cursor));
    };
    let more = events.len() == FAN_OUT_PAGE as usize;
    let mut deliveries = Vec::new();
    // Taken at once: (the delivery's index, its event's index, its subscription).
    let mut claimed_now: Vec<(usize, usize, Arc<Subscription>)> = Vec::new();
    let mut queued = HashSet::new();
    for (index, event) in events.iter().enumerate() {
        for subscription in subscriptions.iter().filter(|s| event.seq > s.start_seq && s.matches(event)) {
            let id = subscription.subscription_id;
            let room = room.entry(id).or_default();
            let claimed_until = (*room > 0).then_some(lease_until);
            if claimed_until.is_some() {
                *room -= 1;
                claimed_now.push((deliveries.len(), index, subscription.clone()));
            } else {
                queued.insert(id);
            }
            deliveries.push(NewDelivery {
                delivery_id: crate::domain::DeliveryId::new_v7(),
                event_seq: event.seq,
                event_id: event.event_id,
                subscription_id: id,
                replay_id: None,
                claimed_until,
            });
        }
    }
    let step = CursorMove { name: DELIVERY_CURSOR, from: cursor, to: last };
    if !store.enqueue_deliveries(deliveries.clone(), Some(step)).await? {
        // Moved on under us: read where it is, and the subscriptions as of then, and go again.
        // Another instance queued these events' deliveries, mostly as pending: every lane looks for
        // them now rather than at its next poll.
        let now = store.cursor(DELIVERY_CURSOR).await?;
        all.reload(store).await?;
        let queued = subscriptions.iter().map(|s| s.subscription_id).collect();
        return Ok(FannedOut { cursor: now, more: true, queued, jobs: Vec::new() });
    }
    let mut prepared: HashMap<usize, Arc<PreparedEvent>> = HashMap::new();
    let mut events: Vec<Option<crate::domain::Event>> = events.into_iter().map(Some).collect();
    let mut jobs = Vec::with_capacity(claimed_now.len());
    for (delivery, index, subscription) in claimed_now {
        let delivery = &deliveries[delivery];
        let event = prepared
            .entry(index)
            .or_insert_with(|| cache.prepare(events[index].take().expect("each event is prepared once")))
            .clone();
        let claimed = ClaimedDelivery {
            delivery_id: delivery.delivery_id,
            event_seq: delivery.event_seq,
            event_id: delivery.event_id,
            subscription_id: delivery.subscription_id,
            attempts: 0,
            round_attempts: 0,
            first_failed_at: None,
        };
        jobs.push(Job { claimed, subscription, event, lease_until });
    }
    Ok(FannedOut { cursor: Cursor { seq: last, ..cursor }, more, queued, jobs })
}

/// Takes a finished fan-out's result (None when its task ended abnormally): the cursor moves, lanes
/// with new pending deliveries are woken, and those queued already claimed go into their lanes. Returns
/// whether more log is waiting; after a failure, false (the idle poll tries again).
fn take_fan_out(
    done: Option<(EventCache, Result<FannedOut, crate::storage::Error>)>,
    cursor: &mut Cursor,
    lanes: &mut Lanes,
    events: &mut Option<EventCache>,
) -> bool {
    let Some(FannedOut { cursor: next, more, queued, jobs }) = step_result(done, events, "queueing deliveries") else {
        return false;
    };
    *cursor = next;
    for id in queued {
        lanes.lane(id).wake();
    }
    for job in jobs {
        lanes.push(job);
    }
    more
}

/// The result of a store step that ran beside the loop (`done` is None when its task ended abnormally):
/// the event cache that travelled with it comes back, and a failure is logged as `what` and gives None.
fn step_result<T>(
    done: Option<(EventCache, Result<T, crate::storage::Error>)>,
    events: &mut Option<EventCache>,
    what: &str,
) -> Option<T> {
    let result = match done {
        Some((cache, result)) => {
            *events = Some(cache);
            result.map_err(|error| error.to_string())
        }
        None => Err("its task ended abnormally".to_owned()),
    };
    result.map_err(|error| tracing::error!(%error, "{what} failed; retrying")).ok()
}

/// What a fan-out step did: where the cursor is now, whether more log follows, the subscriptions with
/// new pending deliveries, and the deliveries queued already claimed.
struct FannedOut {
    cursor: Cursor,
    more: bool,
    queued: HashSet<SubscriptionId>,
    jobs: Vec<Job>,
}

/// A fan-out step running beside the dispatcher loop; the event cache travels with it.
struct FanningOut {
    task: JoinHandle<(EventCache, Result<FannedOut, crate::storage::Error>)>,
}

/// What a claim found: the deliveries, their events, and when their lease runs out.
type Claimed = (Vec<ClaimedDelivery>, HashMap<i64, Arc<PreparedEvent>>, Timestamp);

/// A claim running beside the dispatcher loop.
struct Claiming {
    wants: Vec<(SubscriptionId, u32)>,
    task: JoinHandle<(EventCache, Result<Claimed, crate::storage::Error>)>,
}
