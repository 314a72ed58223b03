//! The delivery dispatcher: reads the event log after its cursor and queues one delivery per matching
//! subscription (with the cursor, in one transaction), claims due deliveries ahead, sends them with
//! bounded concurrency, and hands outcomes to a recorder task that writes them in batches: delivered,
//! retried later with backoff, dead-lettered, or the subscription disabled on 410 Gone. Sending never
//! waits for a commit, and a commit serves many deliveries.
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
        let (results, outcomes) = mpsc::channel(self.concurrency * 4);
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
        loop {
            // Finished requests free their slots; then waiting deliveries take them.
            lanes.reap().await;
            // A claim that has finished is taken here too: while the log keeps the fan-out busy, the
            // loop does not get to wait on it below, and its deliveries would sit unsent.
            if let Some(done) = claiming.take_if(|claiming| claiming.task.is_finished()) {
                let found = done.task.await.ok();
                if !self.take_claim(&done.wants, found, &mut lanes, &mut events).await {
                    claim_after = Instant::now() + ERROR_PAUSE;
                }
            }
            lanes.start(&self.client, &self.subscriptions).await;

            let mut pause = IDLE_POLL.saturating_sub(polled.elapsed());
            if log_has_more {
                match self.fan_out(cursor, &mut lanes, events.as_mut()).await {
                    Ok((next, more, queued)) => {
                        (cursor, log_has_more) = (next, more);
                        for id in queued {
                            lanes.lane(id).wake();
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "queueing deliveries failed; retrying");
                        (log_has_more, pause) = (false, ERROR_PAUSE);
                    }
                }
            }
            if claiming.is_none() {
                if Instant::now() < claim_after {
                    pause = pause.min(claim_after - Instant::now());
                } else {
                    let wants = lanes.wants(&self.subscriptions.enabled());
                    if !wants.is_empty() {
                        claiming = Some(self.claim(wants, events.take()));
                    }
                }
            }
            if let Some(due) = lanes.next_retry() {
                let wait = due.as_micros() - Timestamp::now().as_micros();
                pause = pause.min(Duration::from_micros(wait.max(0) as u64));
            }
            if let Some(at) = lanes.next_paced_start() {
                pause = pause.min(at.saturating_duration_since(Instant::now()));
            }
            if lanes.can_start() || log_has_more {
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

    /// Queues deliveries for the next page of the log and moves the cursor past it; returns the cursor,
    /// whether more log follows, and the subscriptions something was queued for (as pending), here or,
    /// when another instance moved the cursor first, there.
    ///
    /// A subscription receives only events after its `start_seq`, so the log before the oldest enabled
    /// subscription's start is skipped unread (with no subscription, nothing is read). The cursor moves
    /// only from where this instance last saw it, with the subscriptions of that epoch: when another
    /// instance moved it, or a subscription changed since, the cursor and the subscriptions are read
    /// again and the page is done over, so no stretch of the log is fanned out twice, or without a
    /// subscription that starts before it.
    ///
    /// Deliveries for lanes with nothing else due are queued already claimed and go straight into their
    /// lanes with the events just read: no second write to claim them, no second read of the events.
    async fn fan_out(
        &self,
        cursor: Cursor,
        lanes: &mut Lanes,
        cache: Option<&mut EventCache>,
    ) -> Result<(Cursor, bool, HashSet<SubscriptionId>), crate::storage::Error> {
        let subscriptions = self.subscriptions.enabled();
        let Some(from) = subscriptions.iter().map(|s| s.start_seq).min() else {
            return Ok((cursor, false, HashSet::new()));
        };
        let events = self.store.events_after(cursor.seq.max(from), &EventFilter::default(), FAN_OUT_PAGE).await?;
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok((cursor, false, HashSet::new()));
        };
        let full = events.len() == FAN_OUT_PAGE as usize;
        let lease_until = Timestamp::now().plus(self.lease + self.subscriptions.longest_timeout());
        let mut room: HashMap<SubscriptionId, usize> =
            subscriptions.iter().map(|s| (s.subscription_id, lanes.room_for_new(s.subscription_id))).collect();
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
        if !self.store.enqueue_deliveries(deliveries.clone(), Some(step)).await? {
            // Moved on under us: read where it is, and the subscriptions as of then, and go again.
            // Another instance queued these events' deliveries, mostly as pending: every lane looks for
            // them now rather than at its next poll.
            let now = self.store.cursor(DELIVERY_CURSOR).await?;
            self.subscriptions.reload(self.store.as_ref()).await?;
            return Ok((now, true, subscriptions.iter().map(|s| s.subscription_id).collect()));
        }
        if !claimed_now.is_empty() {
            let mut cache = cache;
            let mut prepared: HashMap<usize, Arc<PreparedEvent>> = HashMap::new();
            let mut events: Vec<Option<crate::domain::Event>> = events.into_iter().map(Some).collect();
            for (delivery, index, subscription) in claimed_now {
                let delivery = &deliveries[delivery];
                let event = prepared
                    .entry(index)
                    .or_insert_with(|| {
                        let event = events[index].take().expect("each event is prepared once");
                        match cache.as_deref_mut() {
                            Some(cache) => cache.prepare(event),
                            None => Arc::new(PreparedEvent::new(event)),
                        }
                    })
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
                lanes.push(Job { claimed, subscription, event, lease_until });
            }
        }
        Ok((Cursor { seq: last, ..cursor }, full, queued))
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
        let found = match done {
            Some((cache, found)) => {
                *events = Some(cache);
                found.map_err(|error| error.to_string())
            }
            None => Err("the claim task ended abnormally".to_owned()),
        };
        match found {
            Ok(found) => {
                lanes.claimed(wants, &found.0);
                self.take_claimed(found, lanes).await;
                true
            }
            Err(error) => {
                tracing::error!(%error, "claiming deliveries failed; retrying");
                false
            }
        }
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

/// What a claim found: the deliveries, their events, and when their lease runs out.
type Claimed = (Vec<ClaimedDelivery>, HashMap<i64, Arc<PreparedEvent>>, Timestamp);

/// A claim running beside the dispatcher loop.
struct Claiming {
    wants: Vec<(SubscriptionId, u32)>,
    task: JoinHandle<(EventCache, Result<Claimed, crate::storage::Error>)>,
}
