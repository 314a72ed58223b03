//! The dispatcher's lanes: one per subscription, holding the deliveries claimed for it, and the policy for
//! who may take a sending slot. One endpoint's trouble stays in its own lane:
//!
//! - a lane has at most `per_subscription` requests in flight;
//! - a lane is *healthy* once its last attempt was delivered within a second; a new lane has yet to
//!   prove it. Beyond its first request, a lane that is not healthy (hanging, slow, trickling its answer,
//!   failing) may only take slots while more than a reserve of a quarter of them are free, so such
//!   endpoints together never take the slots that healthy endpoints keep moving through;
//! - a lane that is not healthy starts at most one request per [`UNHEALTHY_PACE`], so an endpoint that
//!   fails at once (refusing connections, answering 500) cannot flood the store with failed attempts;
//! - healthy lanes claim deeply ahead (one claim serves many sends), others only what they can send.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::{self, AbortHandle, JoinSet};

use super::attempt::send;
use super::prepared::PreparedEvent;
use crate::delivery::WebhookClient;
use crate::domain::{Subscription, SubscriptionId, Timestamp};
use crate::engine::subscriptions::Subscriptions;
use crate::metrics::Metrics;
use crate::storage::{ClaimedDelivery, DeliveryResult, NextStep};

/// A lane is healthy when its last attempt was delivered within this.
const HEALTHY_ATTEMPT: Duration = Duration::from_secs(1);
/// Deliveries a healthy lane holds (claimed, waiting or in flight) per sending slot: deep enough that one
/// claim serves many sends.
const HEALTHY_PREFETCH: usize = 16;
/// The shortest time between two requests of a lane that is not healthy: 100 a second per failing
/// endpoint is plenty to work through retries and to notice it is back, and bounds what it costs.
pub(super) const UNHEALTHY_PACE: Duration = Duration::from_millis(10);

/// A claimed delivery, ready to send.
pub(super) struct Job {
    pub claimed: ClaimedDelivery,
    pub subscription: Arc<Subscription>,
    pub event: Arc<PreparedEvent>,
    /// When the claim runs out and another worker may take the delivery.
    pub lease_until: Timestamp,
}

/// What the dispatcher holds for one subscription.
#[derive(Default)]
pub(super) struct Lane {
    /// Claimed and waiting for a slot, oldest first.
    ready: VecDeque<Job>,
    /// Requests in flight.
    sending: usize,
    /// Its last attempt was delivered within [`HEALTHY_ATTEMPT`].
    healthy: bool,
    /// When a lane that is not healthy may start its next request.
    next_start: Option<Instant>,
    /// The last claim left nothing due behind: not asked again until something may have changed (new
    /// deliveries queued, a retry coming due, a wake-up, or the idle poll).
    drained: bool,
    /// Woken since the claim in progress began: what it found says nothing about now.
    woken: bool,
    /// The earliest recorded retry of this lane that the dispatcher knows of and has not acted on.
    next_retry: Option<Timestamp>,
}

impl Lane {
    fn held(&self) -> usize {
        self.ready.len() + self.sending
    }

    /// Something may be due in this lane (new deliveries, a retry, a wake-up): ask the store again.
    pub fn wake(&mut self) {
        (self.drained, self.woken) = (false, true);
    }

    /// The recorder wrote a retry of this lane, due at `at`.
    pub fn note_retry(&mut self, at: Timestamp) {
        self.next_retry = Some(self.next_retry.map_or(at, |known| known.min(at)));
    }

    /// Wakes the lane when its next known retry is due by `now`; a claim begun after this finds it (and
    /// every other retry due by then).
    pub fn wake_if_due(&mut self, now: Timestamp) {
        if self.next_retry.is_some_and(|at| at <= now) {
            self.next_retry = None;
            self.wake();
        }
    }
}

/// How a finished request went, for its lane: whether it was delivered within [`HEALTHY_ATTEMPT`] (`None`
/// when nothing was sent). Its outcome itself went straight to the recorder.
type Finished = Option<bool>;

/// A request in flight: its lane, its claim (to record it cancelled if it is aborted) and how to abort it.
struct InFlight {
    subscription_id: SubscriptionId,
    claimed: ClaimedDelivery,
    abort: AbortHandle,
}

pub(super) struct Lanes {
    lanes: HashMap<SubscriptionId, Lane>,
    sending: JoinSet<Finished>,
    in_flight: HashMap<task::Id, InFlight>,
    concurrency: usize,
    per_subscription: usize,
    /// Slots only healthy lanes may take (beyond every lane's first request).
    reserve: usize,
    /// The recorder's queue: requests hand their outcomes to it themselves, so recording never waits for
    /// the dispatcher.
    results: mpsc::Sender<DeliveryResult>,
    metrics: Arc<Metrics>,
}

impl Lanes {
    pub fn new(
        concurrency: usize,
        per_subscription: usize,
        results: mpsc::Sender<DeliveryResult>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            lanes: HashMap::new(),
            sending: JoinSet::new(),
            in_flight: HashMap::new(),
            concurrency,
            per_subscription,
            reserve: concurrency / 4,
            results,
            metrics,
        }
    }

    /// Hands an outcome to the recorder.
    pub async fn record(&self, result: DeliveryResult) {
        // The recorder only stops after the dispatcher does, so it is there to receive.
        let _ = self.results.send(result).await;
    }

    pub fn lane(&mut self, id: SubscriptionId) -> &mut Lane {
        self.lanes.entry(id).or_default()
    }

    pub fn lanes_mut(&mut self) -> impl Iterator<Item = &mut Lane> {
        self.lanes.values_mut()
    }

    /// The earliest known retry of any lane.
    pub fn next_retry(&self) -> Option<Timestamp> {
        self.lanes.values().filter_map(|lane| lane.next_retry).min()
    }

    pub fn is_sending(&self) -> bool {
        !self.sending.is_empty()
    }

    /// Whether `lane` may start another request at `now`.
    fn may_start(&self, lane: &Lane, now: Instant) -> bool {
        let free = self.concurrency - self.sending.len();
        if free == 0 || lane.sending >= self.per_subscription {
            return false;
        }
        lane.healthy || (lane.next_start.is_none_or(|at| at <= now) && (lane.sending == 0 || free > self.reserve))
    }

    /// The next time a lane with deliveries waiting is allowed by its pace to start a request (lanes held
    /// back by slots are woken by a finished request instead).
    pub fn next_paced_start(&self) -> Option<Instant> {
        let now = Instant::now();
        let waiting = self.lanes.values().filter(|lane| !lane.healthy && !lane.ready.is_empty());
        waiting.filter_map(|lane| lane.next_start).filter(|at| *at > now).min()
    }

    /// Whether some lane has a delivery waiting that it may start now.
    pub fn can_start(&self) -> bool {
        let now = Instant::now();
        self.lanes.values().any(|lane| !lane.ready.is_empty() && self.may_start(lane, now))
    }

    /// How many deliveries to claim for each enabled subscription whose lane has room: nothing until some
    /// lane with work due is half empty, then every such lane is topped up in the same claim, so claims
    /// come in large batches rather than one per finished send. Lanes of subscriptions that are gone, and
    /// hold nothing, are dropped.
    pub fn wants(&mut self, enabled: &[Arc<Subscription>]) -> Vec<(SubscriptionId, u32)> {
        let live: HashSet<SubscriptionId> = enabled.iter().map(|s| s.subscription_id).collect();
        self.lanes.retain(|id, lane| live.contains(id) || lane.held() > 0);
        let mut wants = Vec::new();
        let mut half_empty = false;
        for subscription in enabled {
            let id = subscription.subscription_id;
            let capacity = self.capacity(id);
            let lane = self.lane(id);
            if !lane.drained && lane.held() < capacity {
                half_empty |= lane.held() <= capacity / 2;
                wants.push((id, (capacity - lane.held()) as u32));
            }
        }
        if !half_empty {
            wants.clear();
        }
        for (id, _) in &wants {
            self.lane(*id).woken = false;
        }
        wants
    }

    /// How many deliveries a lane holds at most: healthy lanes claim deeply ahead, others what they send.
    fn capacity(&mut self, id: SubscriptionId) -> usize {
        match self.lane(id).healthy {
            true => self.per_subscription * HEALTHY_PREFETCH,
            false => self.per_subscription,
        }
    }

    /// How many new deliveries the lane of `id` takes straight from the fan-out, already claimed: as many
    /// as it has room for when nothing else of it is due in the store (so nothing older is passed by).
    pub fn room_for_new(&mut self, id: SubscriptionId) -> usize {
        let capacity = self.capacity(id);
        let lane = self.lane(id);
        if lane.drained { capacity.saturating_sub(lane.held()) } else { 0 }
    }

    /// Takes what a claim found: a lane that got less than it asked for has nothing more due, unless it was
    /// woken while the claim ran.
    pub fn claimed(&mut self, wants: &[(SubscriptionId, u32)], got: &[ClaimedDelivery]) {
        let mut counts: HashMap<SubscriptionId, u32> = HashMap::new();
        for claim in got {
            *counts.entry(claim.subscription_id).or_default() += 1;
        }
        for &(id, wanted) in wants {
            let lane = self.lane(id);
            if counts.get(&id).copied().unwrap_or(0) < wanted && !lane.woken {
                lane.drained = true;
            }
        }
    }

    pub fn push(&mut self, job: Job) {
        self.lane(job.claimed.subscription_id).ready.push_back(job);
    }

    /// Starts requests while slots are free, one per lane in turn so every endpoint gets its share.
    /// Deliveries whose subscription was disabled or deleted since they were claimed are recorded as
    /// cancelled. A delivery whose claim is about to run out is left to be claimed again rather than risk
    /// sending it beside another worker.
    pub async fn start(&mut self, client: &WebhookClient, subscriptions: &Subscriptions) {
        let mut cancelled = Vec::new();
        let mut started = true;
        let now = Instant::now();
        while started {
            started = false;
            let ids: Vec<SubscriptionId> = self.lanes.keys().copied().collect();
            for id in ids {
                let Some(lane) = self.lanes.get(&id) else { continue };
                if lane.ready.is_empty() || !self.may_start(lane, now) {
                    continue;
                }
                let Some(mut job) = self.lanes.get_mut(&id).and_then(|lane| lane.ready.pop_front()) else { continue };
                started = true;
                let Some(current) = subscriptions.get(id).filter(|s| s.enabled) else {
                    cancelled.push(DeliveryResult { claimed: job.claimed, attempt: None, next: NextStep::Cancelled });
                    continue;
                };
                if Timestamp::now().plus(current.retry_policy.timeout()) >= job.lease_until {
                    // Its claim expires on its own and the delivery is claimed again.
                    continue;
                }
                job.subscription = current;
                let claimed = job.claimed.clone();
                let (client, results, metrics) = (client.clone(), self.results.clone(), self.metrics.clone());
                let abort = self.sending.spawn(async move {
                    let result = send(client, job, metrics).await;
                    let delivered = result
                        .attempt
                        .as_ref()
                        .map(|a| a.success && Duration::from_millis(a.duration_ms) < HEALTHY_ATTEMPT);
                    // Nothing awaits after this send: an abort either finds the outcome sent or not at
                    // all (then the dispatcher records the delivery cancelled). The recorder only stops
                    // after the dispatcher does, so it is there to receive.
                    let _ = results.send(result).await;
                    delivered
                });
                self.in_flight.insert(abort.id(), InFlight { subscription_id: id, claimed, abort });
                let lane = self.lane(id);
                lane.sending += 1;
                if !lane.healthy {
                    lane.next_start = Some(now + UNHEALTHY_PACE);
                }
            }
        }
        for result in cancelled {
            self.record(result).await;
        }
    }

    /// Aborts the requests in flight for subscriptions that are no longer enabled, freeing their slots at
    /// once; they are recorded as cancelled when they are reaped.
    pub fn abort_disabled(&self, subscriptions: &Subscriptions) {
        for request in self.in_flight.values() {
            if subscriptions.get(request.subscription_id).is_none_or(|s| !s.enabled) {
                request.abort.abort();
            }
        }
    }

    /// Waits for a request to finish (at once when nothing is in flight), then reaps every finished one.
    /// Cancel safe, but for the rare case of dropping it while a cancelled delivery is being recorded:
    /// that claim then expires and the delivery is cancelled when it is claimed again.
    pub async fn wait_finished(&mut self) {
        if let Some(done) = self.sending.join_next_with_id().await {
            self.settle(done).await;
        }
        self.reap().await;
    }

    /// Settles every request that has finished, without waiting.
    pub async fn reap(&mut self) {
        while let Some(done) = self.sending.try_join_next_with_id() {
            self.settle(done).await;
        }
    }

    /// Frees the slot of a finished request and learns from how it went; a request aborted before its
    /// outcome was handed on is recorded as cancelled.
    async fn settle(&mut self, done: Result<(task::Id, Finished), task::JoinError>) {
        let id = match &done {
            Ok((id, _)) => *id,
            Err(error) => error.id(),
        };
        let Some(request) = self.in_flight.remove(&id) else { return };
        let lane = self.lane(request.subscription_id);
        lane.sending -= 1;
        match done {
            Ok((_, delivered)) => lane.healthy = delivered.unwrap_or(lane.healthy),
            Err(error) if error.is_cancelled() => {
                self.record(DeliveryResult { claimed: request.claimed, attempt: None, next: NextStep::Cancelled })
                    .await;
            }
            // Its claim expires and the delivery is sent again: at least once.
            Err(error) => tracing::error!(%error, "a delivery attempt ended abnormally"),
        }
    }

    /// Abandons every request in flight (their claims go back to pending with the rest).
    pub async fn abort_all(&mut self) {
        self.sending.abort_all();
        while self.sending.join_next().await.is_some() {}
        self.in_flight.clear();
    }
}
