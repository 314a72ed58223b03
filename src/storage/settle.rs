//! What a finished piece of work writes, decided once for every backend: how a claimed delivery's row
//! changes after its attempt, and the dead letters a delivery or a failed event becomes. The backends
//! only bind these values into their own SQL.

use std::collections::BTreeSet;

use super::{DeliveryResult, NextStep, ProcessingOutcome};
use crate::domain::{DeadLetter, DeadLetterKind, DlqId, ProcessorId, SubscriptionId, Timestamp};

/// A claimed delivery's row after its attempt.
pub(super) struct Settled<'a> {
    pub state: &'static str,
    /// 1 when a request was sent (attempts count it), else 0.
    pub sent: i64,
    pub next_attempt_at: Timestamp,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub first_failed_at: Option<Timestamp>,
    result: &'a DeliveryResult,
}

impl DeliveryResult {
    /// How this delivery's row changes, settled at `now`.
    pub(super) fn settle(&self, now: Timestamp) -> Settled<'_> {
        let failed = self.attempt.as_ref().is_some_and(|a| !a.success);
        let first_failed_at = match (self.claimed.first_failed_at, &self.attempt) {
            (Some(first), _) => Some(first),
            (None, Some(a)) if failed => Some(a.attempted_at),
            _ => None,
        };
        let (state, next_attempt_at) = match &self.next {
            NextStep::Delivered => ("delivered", now),
            NextStep::RetryAt(at) => ("pending", *at),
            NextStep::Dead { .. } => ("dead", now),
            NextStep::Gone { .. } | NextStep::Cancelled => ("cancelled", now),
        };
        let last_error = match (&self.next, &self.attempt) {
            (NextStep::Gone { reason }, _) => Some(reason.clone()),
            (NextStep::Cancelled, None) => Some("cancelled: the subscription is disabled or deleted".to_owned()),
            (_, Some(a)) => a.error.clone(),
            (_, None) => None,
        };
        Settled {
            state,
            sent: i64::from(self.attempt.is_some()),
            next_attempt_at,
            last_status: self.attempt.as_ref().and_then(|a| a.status_code).map(i64::from),
            last_error,
            first_failed_at,
            result: self,
        }
    }
}

impl Settled<'_> {
    /// The dead letter of a delivery out of retries, for an event of `event_type`.
    pub fn dead_letter(&self, event_type: &str, now: Timestamp) -> DeadLetter {
        let (claimed, attempt) = (&self.result.claimed, self.result.attempt.as_ref());
        let attempted_at = attempt.map_or(now, |a| a.attempted_at);
        DeadLetter {
            dlq_id: DlqId::new_v7(),
            kind: DeadLetterKind::Delivery,
            event_id: claimed.event_id,
            event_type: event_type.to_owned(),
            subscription_id: Some(claimed.subscription_id),
            processor_id: None,
            delivery_id: Some(claimed.delivery_id),
            attempts: claimed.attempts + u32::from(attempt.is_some()),
            last_status_code: attempt.and_then(|a| a.status_code),
            last_error: self.last_error.clone(),
            first_failed_at: self.first_failed_at.unwrap_or(attempted_at),
            last_failed_at: attempted_at,
            created_at: now,
            attempt_history: None,
        }
    }
}

/// The subscriptions a batch of results leaves retries pending for (`.0`) and those it disables after a
/// 410 Gone (`.1`), each in id order. A subscription disabled or deleted while such a request was on its
/// way had its pending deliveries cancelled then; its retries must be cancelled too, or they would wait
/// for it for ever (and so would a replay to it).
pub(super) fn retrying_and_gone(results: &[DeliveryResult]) -> (Vec<SubscriptionId>, Vec<SubscriptionId>) {
    let of = |keep: fn(&NextStep) -> bool| {
        let ids: BTreeSet<SubscriptionId> =
            results.iter().filter(|r| keep(&r.next)).map(|r| r.claimed.subscription_id).collect();
        ids.into_iter().collect()
    };
    (of(|next| matches!(next, NextStep::RetryAt(_))), of(|next| matches!(next, NextStep::Gone { .. })))
}

/// The dead letter of an event that failed `processor_id` for good after `attempts` runs, the first
/// of them failing at `first_failed` (if recorded).
pub(super) fn failed_event(
    outcome: &ProcessingOutcome,
    error: &str,
    processor_id: ProcessorId,
    attempts: i64,
    first_failed: Option<i64>,
    now: Timestamp,
) -> DeadLetter {
    DeadLetter {
        dlq_id: DlqId::new_v7(),
        kind: DeadLetterKind::Processing,
        event_id: outcome.event_id,
        event_type: outcome.event_type.clone(),
        subscription_id: None,
        processor_id: Some(processor_id),
        delivery_id: None,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        last_status_code: None,
        last_error: Some(error.to_owned()),
        first_failed_at: first_failed.map_or(now, Timestamp::from_micros),
        last_failed_at: now,
        created_at: now,
        attempt_history: None,
    }
}
