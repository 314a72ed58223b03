//! Webhook deliveries, their attempts, and dead letters.

use super::event::EventId;
use super::id::uuid_id;
use super::processor::{ProcessingResult, ProcessorId};
use super::subscription::SubscriptionId;
use super::time::Timestamp;
use serde::{Deserialize, Serialize};

uuid_id! {
    /// One event on its way to one subscription; stable across retries (the `webhook-id` header).
    DeliveryId
}

uuid_id! {
    /// An entry of the dead-letter queue.
    DlqId
}

/// One HTTP request made for a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryAttempt {
    pub delivery_id: DeliveryId,
    pub event_id: EventId,
    pub subscription_id: SubscriptionId,
    /// 1-based, counted across manual retries from the DLQ.
    pub attempt: u32,
    pub success: bool,
    pub status_code: Option<u16>,
    /// The first 4 KiB of the response body.
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub attempted_at: Timestamp,
}

/// What a dead letter failed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterKind {
    Delivery,
    Processing,
    /// A lifecycle publication NATS refused for good (larger than the server's max_payload): skipped,
    /// recorded here; retrying or discarding it only removes the entry.
    Publication,
    /// A frontend event taken from JetStream that could not be stored.
    Ingest,
}

impl DeadLetterKind {
    pub const ALL: [DeadLetterKind; 4] =
        [DeadLetterKind::Delivery, DeadLetterKind::Processing, DeadLetterKind::Publication, DeadLetterKind::Ingest];

    /// The kind `text` names (as [`Self::as_str`] writes it); the error names `field` and the accepted values.
    pub fn parse(field: &str, text: &str) -> Result<Self, super::FieldError> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| super::FieldError::one_of(field, text, &Self::ALL.map(DeadLetterKind::as_str)))
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Delivery => "delivery",
            DeadLetterKind::Processing => "processing",
            DeadLetterKind::Publication => "publication",
            DeadLetterKind::Ingest => "ingest",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetter {
    pub dlq_id: DlqId,
    pub kind: DeadLetterKind,
    pub event_id: EventId,
    pub event_type: String,
    pub subscription_id: Option<SubscriptionId>,
    pub processor_id: Option<ProcessorId>,
    pub delivery_id: Option<DeliveryId>,
    /// Attempts made before it was dead-lettered.
    pub attempts: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub first_failed_at: Timestamp,
    pub last_failed_at: Timestamp,
    pub created_at: Timestamp,
    /// Filled only when one entry is read by id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_history: Option<AttemptHistory>,
}

impl DeadLetter {
    /// A new entry for an event that failed outside any subscription or processor (an ingest or a
    /// publication), first and last failing now.
    pub fn of_event(
        kind: DeadLetterKind,
        event_id: EventId,
        event_type: String,
        attempts: u32,
        last_error: String,
    ) -> Self {
        let now = Timestamp::now();
        Self {
            dlq_id: DlqId::new_v7(),
            kind,
            event_id,
            event_type,
            subscription_id: None,
            processor_id: None,
            delivery_id: None,
            attempts,
            last_status_code: None,
            last_error: Some(last_error),
            first_failed_at: now,
            last_failed_at: now,
            created_at: now,
            attempt_history: None,
        }
    }
}

/// What was tried before an entry was dead-lettered: the HTTP attempts of a delivery, or the runs of
/// the processors on an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum AttemptHistory {
    Delivery(Vec<DeliveryAttempt>),
    Processing(Vec<ProcessingResult>),
}

/// Which dead letters to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DlqQuery {
    pub kind: Option<DeadLetterKind>,
    pub subscription_id: Option<SubscriptionId>,
    pub processor_id: Option<ProcessorId>,
    pub limit: u32,
    pub offset: u64,
}

/// Which dead letters a bulk retry (or a bulk discard) takes.
#[derive(Debug, Clone, PartialEq)]
pub enum DlqSelector {
    Ids(Vec<DlqId>),
    Subscription(SubscriptionId),
    /// Every entry of one cause (as `GET /api/v1/events/dlq/groups` lists them).
    Group(DlqGroupKey),
    All,
}

/// What the dead letters of one group have in common: what failed, where, and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DlqGroupKey {
    pub kind: DeadLetterKind,
    /// The subscription (delivery entries).
    #[serde(default)]
    pub subscription_id: Option<SubscriptionId>,
    /// The processor (processing entries).
    #[serde(default)]
    pub processor_id: Option<ProcessorId>,
    /// The HTTP status of the last attempt, when the endpoint answered.
    #[serde(default)]
    pub last_status_code: Option<u16>,
    /// When no status came back: the class of the last error, [`error_class`] of its text
    /// (`connection refused`, `timed out after 10000 ms`, `HTTP 500` of a processor, ...); `null`
    /// when there is a status.
    #[serde(default)]
    pub error_class: Option<String>,
}

/// Longest error class, in characters.
pub const ERROR_CLASS_CHARS: usize = 60;

/// The class of an error text: the part before the first `:` (the details after it differ from entry
/// to entry), at most [`ERROR_CLASS_CHARS`] characters; a processing error's leading `processor: ` is
/// left out first (the processor is the group's target already). The store computes the same in its
/// grouped query.
pub fn error_class(kind: DeadLetterKind, error: &str) -> String {
    let cause = match (kind, error.split_once(": ")) {
        (DeadLetterKind::Processing, Some((_, rest))) => rest,
        _ => error,
    };
    let head = cause.split(':').next().unwrap_or_default();
    head.chars().take(ERROR_CLASS_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_classes_drop_the_details_and_a_processors_name() {
        assert_eq!(error_class(DeadLetterKind::Delivery, "connection failed: tcp connect error"), "connection failed");
        assert_eq!(error_class(DeadLetterKind::Delivery, "timed out after 10000 ms"), "timed out after 10000 ms");
        assert_eq!(error_class(DeadLetterKind::Processing, "fraud-check: HTTP 500"), "HTTP 500");
        assert_eq!(error_class(DeadLetterKind::Processing, "enrich: request failed: reset"), "request failed");
        assert_eq!(error_class(DeadLetterKind::Processing, "panicked"), "panicked");
        assert_eq!(error_class(DeadLetterKind::Delivery, &"x".repeat(80)).len(), ERROR_CLASS_CHARS);
    }
}

/// Dead letters of one cause, as the grouped query answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DlqGroup {
    #[serde(flatten)]
    pub key: DlqGroupKey,
    pub count: u64,
    /// The earliest first failure of its entries.
    pub first_failed_at: Timestamp,
    /// The latest last failure of its entries.
    pub last_failed_at: Timestamp,
    /// The group's entries by the time of their last failure, in the [`DlqGroups`] buckets, oldest first.
    pub histogram: Vec<u64>,
}

/// Which groups to list and how to cut the time axis of their histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DlqGroupQuery {
    pub kind: Option<DeadLetterKind>,
    /// Histogram buckets (1 to [`DlqGroupQuery::MAX_BUCKETS`]).
    pub buckets: u32,
    /// Where the histograms' axis ends (usually now); it starts at the queue's earliest last failure.
    pub until: Timestamp,
}

impl DlqGroupQuery {
    pub const DEFAULT_BUCKETS: u32 = 30;
    pub const MAX_BUCKETS: u32 = 200;

    pub fn new(until: Timestamp) -> Self {
        Self { kind: None, buckets: Self::DEFAULT_BUCKETS, until }
    }
}

/// Every group of the dead-letter queue, largest first, with the histograms' common time axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DlqGroups {
    pub groups: Vec<DlqGroup>,
    /// Entries in all groups.
    pub total: u64,
    /// Where the first histogram bucket starts (the earliest last failure), and the last one ends.
    pub since: Option<Timestamp>,
    pub until: Timestamp,
    /// The width of one bucket, in seconds (at least 1).
    pub bucket_s: u64,
}
