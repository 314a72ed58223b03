//! The delivery dispatcher: reads the event log after its cursor and queues one delivery per matching
//! subscription (with the cursor, in one transaction), claims due deliveries ahead into a bounded
//! queue, sends them with bounded concurrency, and hands outcomes to a recorder task that writes
//! them in batches: delivered, retried later with backoff, dead-lettered, or the subscription
//! disabled on 410 Gone. Sending never waits for a commit, and a commit serves many deliveries.
//!
//! Every state lives in the store, so a crash loses nothing: claims left in flight are released at
//! start and sent again (at least once).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::delivery::signing::{standard_webhooks_signature, x_signature};
use crate::delivery::{WebhookClient, WebhookRequest, jitter};
use crate::domain::{DeliveryAttempt, Event, EventFilter, Subscription, Timestamp};
use crate::engine::bus::{DlqAction, EngineEvent};
use crate::engine::subscriptions::Subscriptions;
use crate::storage::{ClaimedDelivery, DeliveryResult, NewDelivery, NextStep, Store};

const CURSOR: &str = "delivery";
/// Events read from the log per fan-out step.
const FAN_OUT_PAGE: u32 = 500;
/// Claimed deliveries waiting for a sending slot, as a multiple of the concurrency.
const PREFETCH: usize = 4;
/// How long a claim outlives the request's own timeout before another worker may take it.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// Longest sleep between looks at the store for due retries.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Pause after a storage error before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

pub struct DeliveryWorker {
    pub store: Arc<dyn Store>,
    pub client: WebhookClient,
    pub bus: broadcast::Sender<EngineEvent>,
    pub subscriptions: Arc<Subscriptions>,
    /// Signalled when subscriptions change or dead letters are retried.
    pub wake: Arc<Notify>,
    pub concurrency: usize,
    /// The highest seq committed.
    pub last_seq: Arc<AtomicI64>,
}

/// With no subscriptions, how often the cursor's skip ahead is written down.
const IDLE_CURSOR_SAVE: Duration = Duration::from_secs(5);

/// A claimed delivery, ready to send.
struct Job {
    claimed: ClaimedDelivery,
    subscription: Arc<Subscription>,
    event: Arc<Event>,
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

        let recorded = Arc::new(Notify::new());
        let (results, outcomes) = mpsc::channel(self.concurrency * (PREFETCH + 1));
        let recorder = Recorder {
            store: self.store.clone(),
            bus: self.bus.clone(),
            subscriptions: self.subscriptions.clone(),
            recorded: recorded.clone(),
        };
        let recorder = tokio::spawn(recorder.run(outcomes));

        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut ready: VecDeque<Job> = VecDeque::new();
        let mut sending: JoinSet<()> = JoinSet::new();
        let mut log_has_more = true;
        let mut due_check = true;
        let mut cursor_saved = Instant::now();
        loop {
            while let Some(permit) = (!ready.is_empty()).then(|| slots.clone().try_acquire_owned().ok()).flatten() {
                if let Some(mut job) = ready.pop_front() {
                    // Claimed a while ago: the subscription may have been disabled or deleted since.
                    match self.subscriptions.get(job.claimed.subscription_id).filter(|s| s.enabled) {
                        Some(current) => {
                            job.subscription = current;
                            sending.spawn(send(self.client.clone(), job, results.clone(), permit));
                        }
                        None => {
                            let cancelled =
                                DeliveryResult { claimed: job.claimed, attempt: None, next: NextStep::Cancelled };
                            // The recorder only stops after this loop does, so it is there to receive.
                            let _ = results.send(cancelled).await;
                        }
                    }
                }
            }
            while sending.try_join_next().is_some() {}

            let mut pause = IDLE_POLL;
            if ready.len() < self.concurrency {
                if log_has_more {
                    match self.fan_out(cursor, &mut cursor_saved).await {
                        Ok((next, more, queued)) => {
                            (cursor, log_has_more) = (next, more);
                            due_check |= queued;
                        }
                        Err(error) => {
                            tracing::error!(%error, "queueing deliveries failed; retrying");
                            (log_has_more, pause) = (false, ERROR_PAUSE);
                        }
                    }
                }
                if due_check {
                    match self.claim(self.concurrency * PREFETCH - ready.len(), &results).await {
                        Ok((jobs, wait)) => {
                            due_check = !jobs.is_empty();
                            ready.extend(jobs);
                            pause = pause.min(wait);
                        }
                        Err(error) => {
                            tracing::error!(%error, "claiming deliveries failed; retrying");
                            pause = ERROR_PAUSE;
                        }
                    }
                }
            }
            let can_send = !ready.is_empty() && slots.available_permits() > 0;
            if can_send || (log_has_more && ready.len() < self.concurrency) {
                continue;
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                // A slot freed up for the deliveries waiting.
                Ok(permit) = slots.clone().acquire_owned(), if !ready.is_empty() => drop(permit),
                () = recorded.notified() => due_check = true,
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
                    if stored {
                        log_has_more = true;
                    }
                }
                () = self.wake.notified() => (log_has_more, due_check) = (true, true),
                // Also a second look at the log, should a wake-up have been missed.
                () = tokio::time::sleep(pause) => (log_has_more, due_check) = (true, true),
            }
        }
        // Stop: requests in progress are abandoned and what is recorded stays; the rest of the claims
        // go back to pending for the next start.
        sending.abort_all();
        while sending.join_next().await.is_some() {}
        drop(results);
        if let Err(error) = recorder.await {
            tracing::error!(%error, "the delivery recorder ended abnormally");
        }
        if let Err(error) = self.store.release_claims().await {
            tracing::warn!(%error, "could not release delivery claims; they expire on their own");
        }
    }

    async fn read_cursor(&self, shutdown: &CancellationToken) -> Option<i64> {
        loop {
            match self.store.cursor(CURSOR).await {
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

    /// Queues deliveries for the next page of the log; returns the new cursor, whether more follows, and
    /// whether anything was queued.
    ///
    /// A subscription receives only events after its `start_seq`, so the log before the oldest
    /// enabled subscription's start is skipped unread, and with no subscription at all the cursor just
    /// moves to the end (written down now and then, which is all a restart needs).
    async fn fan_out(&self, cursor: i64, saved: &mut Instant) -> Result<(i64, bool, bool), crate::storage::Error> {
        let _gate = self.subscriptions.gate.read().await;
        // Read before the subscriptions: any subscription created later starts at or after it.
        let last = self.last_seq.load(Ordering::Acquire);
        let subscriptions = self.subscriptions.enabled();
        let Some(from) = subscriptions.iter().map(|s| s.start_seq).min() else {
            if last > cursor && saved.elapsed() >= IDLE_CURSOR_SAVE {
                self.store.enqueue_deliveries(Vec::new(), Some((CURSOR, last))).await?;
                *saved = Instant::now();
            }
            return Ok((last.max(cursor), false, false));
        };
        let events = self.store.events_after(cursor.max(from), &EventFilter::default(), FAN_OUT_PAGE).await?;
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok((cursor.max(from), false, false));
        };
        let deliveries: Vec<NewDelivery> = events
            .iter()
            .flat_map(|event| {
                subscriptions.iter().filter(|s| event.seq > s.start_seq && s.matches(event)).map(|s| NewDelivery {
                    delivery_id: crate::domain::DeliveryId::new_v7(),
                    event_seq: event.seq,
                    event_id: event.event_id,
                    subscription_id: s.subscription_id,
                    replay_id: None,
                })
            })
            .collect();
        let queued = !deliveries.is_empty();
        self.store.enqueue_deliveries(deliveries, Some((CURSOR, last))).await?;
        *saved = Instant::now();
        Ok((last, events.len() == FAN_OUT_PAGE as usize, queued))
    }

    /// Claims up to `limit` due deliveries. Those whose subscription is gone or disabled are cancelled
    /// straight away. Returns the jobs and how long the loop may sleep before the next one is due.
    async fn claim(
        &self,
        limit: usize,
        results: &mpsc::Sender<DeliveryResult>,
    ) -> Result<(Vec<Job>, Duration), crate::storage::Error> {
        let now = Timestamp::now();
        let lease = LEASE_MARGIN + self.subscriptions.longest_timeout();
        let lease_until = now.plus(lease);
        let claimed = self.store.claim_deliveries(now, lease_until, limit as u32).await?;
        if claimed.is_empty() {
            let due = self.store.next_delivery_due().await?;
            let wait = due.map_or(IDLE_POLL, |at| {
                Duration::from_micros((at.as_micros() - Timestamp::now().as_micros()).max(0) as u64).min(IDLE_POLL)
            });
            return Ok((Vec::new(), wait));
        }
        let seqs: Vec<i64> = claimed.iter().map(|c| c.event_seq).collect();
        let events: HashMap<i64, Arc<Event>> =
            self.store.events_by_seq(&seqs).await?.into_iter().map(|e| (e.seq, Arc::new(e))).collect();
        let mut jobs = Vec::with_capacity(claimed.len());
        for claimed in claimed {
            let subscription = self.subscriptions.get(claimed.subscription_id).filter(|s| s.enabled);
            match (subscription, events.get(&claimed.event_seq)) {
                (Some(subscription), Some(event)) => jobs.push(Job { claimed, subscription, event: event.clone() }),
                _ => {
                    let cancelled = DeliveryResult { claimed, attempt: None, next: NextStep::Cancelled };
                    // The recorder only stops after this loop does, so it is there to receive.
                    let _ = results.send(cancelled).await;
                }
            }
        }
        Ok((jobs, Duration::ZERO))
    }
}

/// Writes delivery outcomes in batches, announces new dead letters, and refreshes subscriptions that a
/// 410 disabled.
struct Recorder {
    store: Arc<dyn Store>,
    bus: broadcast::Sender<EngineEvent>,
    subscriptions: Arc<Subscriptions>,
    /// Tells the dispatcher that retries may have become due.
    recorded: Arc<Notify>,
}

impl Recorder {
    async fn run(self, mut outcomes: mpsc::Receiver<DeliveryResult>) {
        let mut batch = Vec::new();
        while outcomes.recv_many(&mut batch, 1024).await > 0 {
            self.record(std::mem::take(&mut batch)).await;
            self.recorded.notify_one();
        }
    }

    async fn record(&self, finished: Vec<DeliveryResult>) {
        let gone = finished.iter().any(|r| matches!(r.next, NextStep::Gone { .. }));
        match self.store.complete_deliveries(finished).await {
            Ok(dead_letters) => {
                for entry in dead_letters {
                    // Nobody listening is fine: the entry is stored.
                    let _ = self.bus.send(EngineEvent::DeadLetter { action: DlqAction::Added, entry: Arc::new(entry) });
                }
            }
            // The claims expire and the deliveries are sent again: at least once.
            Err(error) => tracing::error!(%error, "recording delivery outcomes failed; they will be sent again"),
        }
        if gone && let Err(error) = self.subscriptions.reload(self.store.as_ref()).await {
            tracing::error!(%error, "reloading subscriptions failed");
        }
    }
}

/// Sends one delivery, decides what comes next, and hands the outcome to the recorder; the sending
/// slot is held until then.
async fn send(client: WebhookClient, job: Job, results: mpsc::Sender<DeliveryResult>, _slot: OwnedSemaphorePermit) {
    // The recorder outlives every send, so it is there to receive.
    let _ = results.send(attempt(client, job).await).await;
}

/// Makes one attempt at a delivery and decides what comes next.
async fn attempt(client: WebhookClient, job: Job) -> DeliveryResult {
    let Job { claimed, subscription, event } = job;
    let attempt = claimed.attempts + 1;
    let attempted_at = Timestamp::now();
    let body = json!({
        "event": &*event,
        "subscription_id": subscription.subscription_id,
        "attempt": attempt,
        "delivered_at": attempted_at,
    });
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let mut headers = vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("X-Event-Id".to_owned(), event.event_id.to_string()),
        ("X-Event-Type".to_owned(), event.event_type.clone()),
        ("X-Delivery-Attempt".to_owned(), attempt.to_string()),
    ];
    if let Some(secret) = &subscription.secret {
        let id = claimed.delivery_id.to_string();
        let unix = attempted_at.as_micros() / 1_000_000;
        headers.push(("X-Signature".to_owned(), x_signature(secret, &body)));
        headers.push(("webhook-signature".to_owned(), standard_webhooks_signature(secret, &id, unix, &body)));
        headers.push(("webhook-id".to_owned(), id));
        headers.push(("webhook-timestamp".to_owned(), unix.to_string()));
    }
    let policy = subscription.retry_policy;
    let outcome = client
        .send(WebhookRequest { url: subscription.callback_url.clone(), headers, body, timeout: policy.timeout() })
        .await;

    let round = claimed.round_attempts + 1;
    let next = if outcome.success() {
        NextStep::Delivered
    } else if outcome.gone() {
        NextStep::Gone { reason: format!("the endpoint answered 410 Gone at {attempted_at}") }
    } else if round > policy.max_retries {
        NextStep::Dead { event_type: event.event_type.clone() }
    } else {
        let wait = policy.delay(round, jitter());
        NextStep::RetryAt(Timestamp::now().plus(wait))
    };
    let attempt = DeliveryAttempt {
        delivery_id: claimed.delivery_id,
        event_id: event.event_id,
        subscription_id: subscription.subscription_id,
        attempt,
        success: outcome.success(),
        status_code: outcome.status_code,
        response_body: outcome.response_body,
        error: outcome.error,
        duration_ms: outcome.duration_ms,
        attempted_at,
    };
    DeliveryResult { claimed, attempt: Some(attempt), next }
}
