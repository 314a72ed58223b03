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
}

impl DeadLetterKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Delivery => "delivery",
            DeadLetterKind::Processing => "processing",
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

/// Which dead letters a bulk retry takes.
#[derive(Debug, Clone, PartialEq)]
pub enum DlqSelector {
    Ids(Vec<DlqId>),
    Subscription(SubscriptionId),
    All,
}
