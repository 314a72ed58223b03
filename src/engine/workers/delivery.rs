//! The delivery dispatcher: reads the event log after its cursor and queues one delivery per matching
//! subscription (with the cursor, in one transaction), claims due deliveries, sends them with bounded
//! concurrency, and records outcomes in batches: delivered, retried later with backoff, dead-lettered,
//! or the subscription disabled on 410 Gone.
//!
//! Every state lives in the store, so a crash loses nothing: claims left in flight are released at
//! start and sent again (at least once).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::Notify;
use tokio::sync::broadcast::{self, error::TryRecvError};
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
}

impl DeliveryWorker {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut log = self.bus.subscribe();
        match self.store.release_claims().await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, "deliveries in flight at the last stop will be sent again"),
            Err(error) => tracing::error!(%error, "could not release earlier delivery claims"),
        }
        let mut cursor = loop {
            match self.store.cursor(CURSOR).await {
                Ok(seq) => break seq,
                Err(error) => {
                    tracing::error!(%error, "cannot read the delivery cursor; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(ERROR_PAUSE) => {}
                    }
                }
            }
        };
        let mut sending: JoinSet<DeliveryResult> = JoinSet::new();
        let mut log_has_more = true;
        loop {
            if log_has_more && sending.len() < self.concurrency {
                match self.fan_out(cursor).await {
                    Ok((next, more)) => (cursor, log_has_more) = (next, more),
                    Err(error) => tracing::error!(%error, "queueing deliveries failed; retrying"),
                }
            }
            let mut pause = IDLE_POLL;
            if sending.len() < self.concurrency {
                match self.claim_and_send(&mut sending).await {
                    Ok(wait) => pause = wait,
                    Err(error) => {
                        tracing::error!(%error, "claiming deliveries failed; retrying");
                        pause = ERROR_PAUSE;
                    }
                }
            }
            if log_has_more && sending.len() < self.concurrency {
                continue;
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(done) = sending.join_next() => {
                    let mut finished: Vec<DeliveryResult> = done.into_iter().collect();
                    while let Some(done) = sending.try_join_next() {
                        finished.extend(done);
                    }
                    self.record(finished).await;
                }
                message = log.recv() => {
                    log_has_more = !matches!(message, Err(broadcast::error::RecvError::Closed));
                    // One wake-up for a whole burst of stored events.
                    while !matches!(log.try_recv(), Err(TryRecvError::Empty | TryRecvError::Closed)) {}
                }
                () = self.wake.notified() => log_has_more = true,
                () = tokio::time::sleep(pause) => {}
            }
        }
        // Stop: requests in progress are abandoned; their claims go back to pending for the next start.
        sending.abort_all();
        let mut finished = Vec::new();
        while let Some(done) = sending.join_next().await {
            finished.extend(done);
        }
        self.record(finished).await;
        if let Err(error) = self.store.release_claims().await {
            tracing::warn!(%error, "could not release delivery claims; they expire on their own");
        }
    }

    /// Queues deliveries for the next page of the log; returns the new cursor and whether more follows.
    async fn fan_out(&self, cursor: i64) -> Result<(i64, bool), crate::storage::Error> {
        let events = self.store.events_after(cursor, &EventFilter::default(), FAN_OUT_PAGE).await?;
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok((cursor, false));
        };
        let subscriptions = self.subscriptions.enabled();
        let deliveries: Vec<NewDelivery> = events
            .iter()
            .flat_map(|event| {
                subscriptions.iter().filter(|s| event.seq > s.start_seq && s.matches(event)).map(|s| NewDelivery {
                    delivery_id: crate::domain::DeliveryId::new_v7(),
                    event_seq: event.seq,
                    event_id: event.event_id,
                    subscription_id: s.subscription_id,
                })
            })
            .collect();
        self.store.enqueue_deliveries(deliveries, CURSOR, last).await?;
        Ok((last, events.len() == FAN_OUT_PAGE as usize))
    }

    /// Claims due deliveries into the free slots and starts sending them; returns how long the loop may
    /// sleep before the next one is due.
    async fn claim_and_send(&self, sending: &mut JoinSet<DeliveryResult>) -> Result<Duration, crate::storage::Error> {
        let free = (self.concurrency - sending.len()) as u32;
        let now = Timestamp::now();
        let lease = Timestamp::from_micros(
            now.as_micros() + (LEASE_MARGIN + self.subscriptions.longest_timeout()).as_micros() as i64,
        );
        let claimed = self.store.claim_deliveries(now, lease, free).await?;
        if !claimed.is_empty() {
            let seqs: Vec<i64> = claimed.iter().map(|c| c.event_seq).collect();
            let events: HashMap<i64, Arc<Event>> =
                self.store.events_by_seq(&seqs).await?.into_iter().map(|e| (e.seq, Arc::new(e))).collect();
            for claim in claimed {
                let subscription = self.subscriptions.get(claim.subscription_id).filter(|s| s.enabled);
                match (subscription, events.get(&claim.event_seq)) {
                    (Some(subscription), Some(event)) => {
                        sending.spawn(send(self.client.clone(), subscription, event.clone(), claim));
                    }
                    _ => {
                        sending.spawn(async move {
                            DeliveryResult { claimed: claim, attempt: None, next: NextStep::Cancelled }
                        });
                    }
                }
            }
            return Ok(Duration::ZERO);
        }
        let due = self.store.next_delivery_due().await?;
        Ok(due.map_or(IDLE_POLL, |at| {
            Duration::from_micros((at.as_micros() - Timestamp::now().as_micros()).max(0) as u64).min(IDLE_POLL)
        }))
    }

    /// Records finished deliveries, announces new dead letters, and refreshes subscriptions a 410 disabled.
    async fn record(&self, finished: Vec<DeliveryResult>) {
        if finished.is_empty() {
            return;
        }
        let gone = finished.iter().any(|r| matches!(r.next, NextStep::Gone { .. }));
        match self.store.complete_deliveries(finished).await {
            Ok(dead_letters) => {
                for entry in dead_letters {
                    // Nobody listening is fine: the entry is stored.
                    let _ = self.bus.send(EngineEvent::DeadLetter { action: DlqAction::Added, entry: Arc::new(entry) });
                }
            }
            // The claims expire and the deliveries are sent again: at least once.
            Err(error) => tracing::error!(%error, "recording delivery outcomes failed; they will be retried"),
        }
        if gone && let Err(error) = self.subscriptions.reload(self.store.as_ref()).await {
            tracing::error!(%error, "reloading subscriptions failed");
        }
    }
}

/// Sends one delivery and decides what comes next.
async fn send(
    client: WebhookClient,
    subscription: Arc<Subscription>,
    event: Arc<Event>,
    claimed: ClaimedDelivery,
) -> DeliveryResult {
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
        NextStep::RetryAt(Timestamp::from_micros(Timestamp::now().as_micros() + wait.as_micros() as i64))
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
