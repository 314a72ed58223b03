//! Replay: sending stored events again to subscriptions or processors, as a background job with progress.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::event::{Event, EventId, EventSource};
use super::filter::TypePattern;
use super::id::uuid_id;
use super::processor::ProcessorId;
use super::subscription::SubscriptionId;
use super::time::Timestamp;

uuid_id! {
    /// A replay job's id.
    ReplayId
}

/// Which events a replay takes. Exactly one of ids, stream or time range selects; the type and
/// source narrow any of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplaySelection {
    Ids(Vec<EventId>),
    Stream(String),
    /// Both bounds on the event `timestamp`; start inclusive, end exclusive.
    TimeRange {
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    },
}

/// Where replayed events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum ReplayTarget {
    Subscription { subscription_id: SubscriptionId },
    Processor { processor_id: ProcessorId },
}

/// A validated replay request. It is kept with a running replay (as JSON) so that any instance can
/// carry the replay on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayRequest {
    pub selection: ReplaySelection,
    pub event_type: Option<TypePattern>,
    pub event_source: Option<EventSource>,
    /// `None`: every enabled subscription and processor that matches each event.
    pub target: Option<ReplayTarget>,
    pub dry_run: bool,
    /// Required when more events match than `[replay] confirm_above`.
    pub confirm: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplayStatus {
    DryRun,
    Running,
    Completed,
    Failed,
}

/// The answer to a replay request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplayStarted {
    /// Absent for a dry run, which starts nothing.
    pub replay_id: Option<ReplayId>,
    pub status: ReplayStatus,
    pub events_count: u64,
    /// The first 100 selected events, for a dry run; empty otherwise.
    pub events: Vec<Arc<Event>>,
}

/// How far a replay job has come. `total` counts work items: one per event and target it goes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplayProgress {
    pub replay_id: ReplayId,
    pub status: ReplayStatus,
    pub events_count: u64,
    pub total: u64,
    pub done: u64,
    pub failed: u64,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// Why the job failed, when it did.
    pub error: Option<String>,
}

/// How many events a dry run lists.
pub const DRY_RUN_SAMPLE: usize = 100;
