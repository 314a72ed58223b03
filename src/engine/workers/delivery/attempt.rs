//! One delivery attempt: the request (body, headers, signatures, trace context), the send, what comes
//! next, and its metrics.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tracing::Instrument;

use super::lanes::Job;
use crate::delivery::signing::{standard_webhooks_signature, x_signature};
use crate::delivery::{WebhookClient, WebhookRequest, adopt_trace, jitter, trace_headers};
use crate::domain::{DeliveryAttempt, Timestamp};
use crate::metrics::{DeliveryOutcome, Metrics};
use crate::storage::{DeliveryResult, NextStep};

/// Sends one delivery in a `delivery` span that continues the event's trace, and counts it in the
/// metrics.
pub(super) async fn send(client: WebhookClient, job: Job, metrics: Arc<Metrics>) -> DeliveryResult {
    let span = tracing::debug_span!(
        "delivery",
        event_id = %job.event.event.event_id,
        subscription_id = %job.subscription.subscription_id,
        attempt = job.claimed.attempts + 1,
        otel.kind = "client",
    );
    adopt_trace(&job.event.event, &span);
    let created_at = job.event.event.created_at;
    let result = attempt(client, job, &span).instrument(span.clone()).await;
    record_metrics(&metrics, &result, created_at);
    result
}

/// Counts the attempt in `eventdeck_deliveries_total` and times it; a delivered one also gives the
/// commit → 2xx lag.
fn record_metrics(metrics: &Metrics, result: &DeliveryResult, created_at: Timestamp) {
    let Some(attempt) = &result.attempt else { return };
    let outcome = match result.next {
        NextStep::Delivered => DeliveryOutcome::Delivered,
        NextStep::RetryAt(_) => DeliveryOutcome::Retry,
        NextStep::Dead { .. } => DeliveryOutcome::DeadLettered,
        NextStep::Gone { .. } => DeliveryOutcome::Disabled,
        NextStep::Cancelled => return,
    };
    let lag = (outcome == DeliveryOutcome::Delivered)
        .then(|| Duration::from_micros(Timestamp::now().micros_since(created_at).max(0) as u64));
    metrics.delivery(attempt.subscription_id, outcome, Duration::from_millis(attempt.duration_ms), lag);
}

/// Makes one attempt at a delivery and decides what comes next.
async fn attempt(client: WebhookClient, job: Job, span: &tracing::Span) -> DeliveryResult {
    let Job { claimed, subscription, event: prepared, .. } = job;
    let event = &prepared.event;
    let attempt = claimed.attempts + 1;
    let attempted_at = Timestamp::now();
    // The event's JSON was made once for all its deliveries; the rest is ids, a number and a time.
    let body = Bytes::from(format!(
        r#"{{"event":{},"subscription_id":"{}","attempt":{attempt},"delivered_at":"{attempted_at}"}}"#,
        prepared.json, subscription.subscription_id,
    ));
    let mut headers = vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("X-Event-Id".to_owned(), event.event_id.to_string()),
        ("X-Event-Type".to_owned(), event.event_type.clone()),
        ("X-Delivery-Attempt".to_owned(), attempt.to_string()),
    ];
    trace_headers(event, span, &mut headers);
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
