//! Rows into domain values, written once for every backend: each backend's row type gives its
//! columns through [`Columns`], and the decoders here read them. A backend's SQL differs; what a row
//! means does not.

use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use super::{
    ClaimedDelivery, Error, Fold, InstanceClaims, InstanceRecord, ProjectionSnapshot, StreamChange, StreamSummary,
};
use crate::domain::delivery::{DlqGroup, DlqGroupKey, DlqGroupQuery, DlqGroups};
use crate::domain::{
    DeadLetter, DeadLetterKind, DeliveryAttempt, DeliveryId, DlqId, Event, EventCategory, EventId, EventSource,
    EventStatus, FieldError, ProcessingResult, Processor, ProcessorId, ProcessorType, ReplayId, ReplayProgress,
    ReplayStatus, RetryPolicy, Subscription, SubscriptionId, Timestamp,
};

/// The columns of an event row, in the order the inserts use.
pub(super) const EVENT_COLUMNS: &str = "seq, event_id, event_type, event_source, event_category, user_id, tenant_id, \
    stream_id, stream_version, data, metadata, context, correlation_id, idempotency_key, status, retry_count, \
    error_message, timestamp, created_at, processed_at";

/// The columns of a dead-letter row.
pub(super) const DLQ_COLUMNS: &str = "dlq_id, kind, event_id, event_type, subscription_id, processor_id, \
    delivery_id, attempts, last_status_code, last_error, first_failed_at, last_failed_at, created_at";

/// A processing result joined with its event (`r` and `e`).
pub(super) const RESULT_COLUMNS: &str = "r.processor_id, r.processor_name, r.success, r.duration_us, r.error, \
    r.replay_id, r.processed_at, e.event_id";

pub(super) const SUBSCRIPTION_COLUMNS: &str = "subscription_id, subscriber_name, subscriber_type, event_types, \
    event_sources, event_categories, callback_url, secret, retry_policy, enabled, disabled_reason, start_seq, \
    created_at, updated_at";

pub(super) const ATTEMPT_COLUMNS: &str = "delivery_id, attempt, event_id, subscription_id, success, status_code, \
    response_body, error, duration_ms, attempted_at";

pub(super) const CLAIM_COLUMNS: &str =
    "delivery_id, event_seq, event_id, subscription_id, attempts, round_attempts, first_failed_at";

pub(super) const PROCESSOR_COLUMNS: &str = "processor_id, processor_name, processor_type, enabled, priority, \
    filters, config, max_retries, processed_count, failed_count, total_duration_us, created_at, updated_at";

pub(super) const REPLAY_COLUMNS: &str =
    "replay_id, status, events_count, total, done, failed, error, started_at, finished_at";

pub(super) const SNAPSHOT_COLUMNS: &str =
    "stream_id, version, from_version, state, last_event_id, updated_at, max_timestamp, min_timestamp";

/// A row's columns by name, as the decoders need them. Integers are 64-bit in every schema, flags are
/// booleans (SQLite's 0 and 1 read as such), ids are UUIDs, JSON is text.
pub(super) trait Columns {
    fn text(&self, column: &str) -> Result<String, Error>;
    fn text_opt(&self, column: &str) -> Result<Option<String>, Error>;
    fn int(&self, column: &str) -> Result<i64, Error>;
    fn int_opt(&self, column: &str) -> Result<Option<i64>, Error>;
    fn uuid(&self, column: &str) -> Result<Uuid, Error>;
    fn uuid_opt(&self, column: &str) -> Result<Option<Uuid>, Error>;
    fn flag(&self, column: &str) -> Result<bool, Error>;
}

macro_rules! columns_of {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, column: &str) -> Result<String, Error> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn text_opt(&self, column: &str) -> Result<Option<String>, Error> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn int(&self, column: &str) -> Result<i64, Error> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn int_opt(&self, column: &str) -> Result<Option<i64>, Error> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn uuid(&self, column: &str) -> Result<Uuid, Error> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn uuid_opt(&self, column: &str) -> Result<Option<Uuid>, Error> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn flag(&self, column: &str) -> Result<bool, Error> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
        }
    };
}

columns_of!(sqlx::sqlite::SqliteRow);
columns_of!(sqlx::postgres::PgRow);

/// A stored value that cannot be what the code expects.
pub(super) fn corrupt(column: &str, error: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("{column}: {error}"))
}

/// A value as the text of a JSON column. What the store keeps as JSON (maps, lists of names and
/// plain derived structs) always serializes.
pub(super) fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A JSON column, parsed.
pub(super) fn json_column<T: DeserializeOwned>(row: &impl Columns, column: &str) -> Result<T, Error> {
    serde_json::from_str(&row.text(column)?).map_err(|e| corrupt(column, e))
}

fn time(row: &impl Columns, column: &str) -> Result<Timestamp, Error> {
    Ok(Timestamp::from_micros(row.int(column)?))
}

fn time_opt(row: &impl Columns, column: &str) -> Result<Option<Timestamp>, Error> {
    Ok(row.int_opt(column)?.map(Timestamp::from_micros))
}

/// An integer column holding an HTTP status code, if any.
fn status_code(row: &impl Columns, column: &str) -> Result<Option<u16>, Error> {
    row.int_opt(column)?.map(|c| u16::try_from(c).map_err(|e| corrupt(column, e))).transpose()
}

/// An integer column holding a count of attempts.
fn count(row: &impl Columns, column: &str) -> Result<u32, Error> {
    u32::try_from(row.int(column)?).map_err(|e| corrupt(column, e))
}

/// An integer column holding a count that cannot be negative.
fn total(row: &impl Columns, column: &str) -> Result<u64, Error> {
    Ok(row.int(column)?.max(0) as u64)
}

/// A text column holding a value of one of the event vocabularies.
fn vocabulary<T>(row: &impl Columns, column: &str, parse: fn(&str, &str) -> Result<T, FieldError>) -> Result<T, Error> {
    parse(column, &row.text(column)?).map_err(|e| Error::Corrupt(e.to_string()))
}

/// An event from a row selected with [`EVENT_COLUMNS`].
pub(super) fn event(row: &impl Columns) -> Result<Event, Error> {
    Ok(Event {
        event_id: EventId(row.uuid("event_id")?),
        seq: row.int("seq")?,
        event_type: row.text("event_type")?,
        event_source: vocabulary(row, "event_source", EventSource::parse)?,
        event_category: vocabulary(row, "event_category", EventCategory::parse)?,
        user_id: row.text_opt("user_id")?,
        tenant_id: row.text_opt("tenant_id")?,
        stream_id: row.text_opt("stream_id")?,
        stream_version: row.int_opt("stream_version")?,
        data: json_column(row, "data")?,
        metadata: json_column(row, "metadata")?,
        context: json_column(row, "context")?,
        correlation_id: row.text_opt("correlation_id")?,
        idempotency_key: row.text_opt("idempotency_key")?,
        status: vocabulary(row, "status", EventStatus::parse)?,
        retry_count: row.int("retry_count")?,
        error_message: row.text_opt("error_message")?,
        timestamp: time(row, "timestamp")?,
        created_at: time(row, "created_at")?,
        processed_at: time_opt(row, "processed_at")?,
    })
}

/// A processing result from a row selected with [`RESULT_COLUMNS`].
pub(super) fn processing_result(row: &impl Columns) -> Result<ProcessingResult, Error> {
    Ok(ProcessingResult {
        event_id: EventId(row.uuid("event_id")?),
        processor_id: ProcessorId(row.uuid("processor_id")?),
        processor_name: row.text("processor_name")?,
        success: row.flag("success")?,
        duration_ms: row.int("duration_us")? as f64 / 1000.0,
        error: row.text_opt("error")?,
        replay_id: row.uuid_opt("replay_id")?.map(ReplayId),
        processed_at: time(row, "processed_at")?,
    })
}

fn dead_letter_kind(row: &impl Columns) -> Result<DeadLetterKind, Error> {
    DeadLetterKind::parse("kind", &row.text("kind")?).map_err(|e| corrupt("kind", e))
}

/// The key of a group of dead letters, from a row with the dead-letter columns it names and
/// `error_class`.
pub(super) fn dlq_group_key(row: &impl Columns) -> Result<DlqGroupKey, Error> {
    Ok(DlqGroupKey {
        kind: dead_letter_kind(row)?,
        subscription_id: row.uuid_opt("subscription_id")?.map(SubscriptionId),
        processor_id: row.uuid_opt("processor_id")?.map(ProcessorId),
        last_status_code: status_code(row, "last_status_code")?,
        error_class: row.text_opt("error_class")?,
    })
}

/// A dead letter (without its history) from a row selected with [`DLQ_COLUMNS`].
pub(super) fn dead_letter(row: &impl Columns) -> Result<DeadLetter, Error> {
    Ok(DeadLetter {
        dlq_id: DlqId(row.uuid("dlq_id")?),
        kind: dead_letter_kind(row)?,
        event_id: EventId(row.uuid("event_id")?),
        event_type: row.text("event_type")?,
        subscription_id: row.uuid_opt("subscription_id")?.map(SubscriptionId),
        processor_id: row.uuid_opt("processor_id")?.map(ProcessorId),
        delivery_id: row.uuid_opt("delivery_id")?.map(DeliveryId),
        attempts: count(row, "attempts")?,
        last_status_code: status_code(row, "last_status_code")?,
        last_error: row.text_opt("last_error")?,
        first_failed_at: time(row, "first_failed_at")?,
        last_failed_at: time(row, "last_failed_at")?,
        created_at: time(row, "created_at")?,
        attempt_history: None,
    })
}

/// A subscription from a row selected with [`SUBSCRIPTION_COLUMNS`].
pub(super) fn subscription(row: &impl Columns) -> Result<Subscription, Error> {
    let secret = row.text_opt("secret")?;
    let retry_policy: RetryPolicy = json_column(row, "retry_policy")?;
    Ok(Subscription {
        subscription_id: SubscriptionId(row.uuid("subscription_id")?),
        subscriber_name: row.text("subscriber_name")?,
        subscriber_type: row.text("subscriber_type")?,
        event_types: json_column(row, "event_types")?,
        event_sources: json_column(row, "event_sources")?,
        event_categories: json_column(row, "event_categories")?,
        callback_url: row.text("callback_url")?,
        has_secret: secret.is_some(),
        secret,
        retry_policy,
        enabled: row.flag("enabled")?,
        disabled_reason: row.text_opt("disabled_reason")?,
        start_seq: row.int("start_seq")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

/// A claimed delivery from a row selected with [`CLAIM_COLUMNS`].
pub(super) fn claim(row: &impl Columns) -> Result<ClaimedDelivery, Error> {
    Ok(ClaimedDelivery {
        delivery_id: DeliveryId(row.uuid("delivery_id")?),
        event_seq: row.int("event_seq")?,
        event_id: EventId(row.uuid("event_id")?),
        subscription_id: SubscriptionId(row.uuid("subscription_id")?),
        attempts: count(row, "attempts")?,
        round_attempts: count(row, "round_attempts")?,
        first_failed_at: time_opt(row, "first_failed_at")?,
    })
}

/// A delivery attempt from a row selected with [`ATTEMPT_COLUMNS`].
pub(super) fn attempt(row: &impl Columns) -> Result<DeliveryAttempt, Error> {
    Ok(DeliveryAttempt {
        delivery_id: DeliveryId(row.uuid("delivery_id")?),
        event_id: EventId(row.uuid("event_id")?),
        subscription_id: SubscriptionId(row.uuid("subscription_id")?),
        attempt: count(row, "attempt")?,
        success: row.flag("success")?,
        status_code: status_code(row, "status_code")?,
        response_body: row.text_opt("response_body")?,
        error: row.text_opt("error")?,
        duration_ms: total(row, "duration_ms")?,
        attempted_at: time(row, "attempted_at")?,
    })
}

/// A processor with its totals from a row selected with [`PROCESSOR_COLUMNS`].
pub(super) fn processor(row: &impl Columns) -> Result<Processor, Error> {
    let kind = row.text("processor_type")?;
    let processed_count = row.int("processed_count")?;
    let failed_count = row.int("failed_count")?;
    let total_us = row.int("total_duration_us")?;
    let runs = processed_count + failed_count;
    Ok(Processor {
        processor_id: ProcessorId(row.uuid("processor_id")?),
        processor_name: row.text("processor_name")?,
        processor_type: ProcessorType::parse("processor_type", &kind).map_err(|e| corrupt("processor_type", e))?,
        enabled: row.flag("enabled")?,
        priority: i32::try_from(row.int("priority")?).map_err(|e| corrupt("priority", e))?,
        filters: json_column(row, "filters")?,
        config: json_column(row, "config")?,
        max_retries: count(row, "max_retries")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
        processed_count,
        failed_count,
        avg_duration_ms: if runs == 0 { 0.0 } else { total_us as f64 / runs as f64 / 1000.0 },
    })
}

/// How a replay's status is stored.
pub(super) fn replay_status_text(status: ReplayStatus) -> &'static str {
    match status {
        ReplayStatus::DryRun => "dry_run",
        ReplayStatus::Running => "running",
        ReplayStatus::Completed => "completed",
        ReplayStatus::Failed => "failed",
    }
}

/// A replay's progress from a row selected with [`REPLAY_COLUMNS`].
pub(super) fn replay(row: &impl Columns) -> Result<ReplayProgress, Error> {
    let status = match row.text("status")?.as_str() {
        "running" => ReplayStatus::Running,
        "completed" => ReplayStatus::Completed,
        "failed" => ReplayStatus::Failed,
        "dry_run" => ReplayStatus::DryRun,
        other => return Err(corrupt("status", format!("unknown replay status `{other}`"))),
    };
    Ok(ReplayProgress {
        replay_id: ReplayId(row.uuid("replay_id")?),
        status,
        events_count: total(row, "events_count")?,
        total: total(row, "total")?,
        done: total(row, "done")?,
        failed: total(row, "failed")?,
        started_at: time(row, "started_at")?,
        finished_at: time_opt(row, "finished_at")?,
        error: row.text_opt("error")?,
    })
}

/// A fold from a row with its columns (a cached projection's or a snapshot's).
pub(super) fn fold(row: &impl Columns) -> Result<Fold, Error> {
    Ok(Fold {
        state: json_column::<Value>(row, "state")?,
        version: row.int("version")?,
        last_event_id: EventId(row.uuid("last_event_id")?),
        updated_at: time(row, "updated_at")?,
        max_timestamp: time(row, "max_timestamp")?,
    })
}

/// A snapshot from a row selected with [`SNAPSHOT_COLUMNS`].
pub(super) fn snapshot(row: &impl Columns) -> Result<ProjectionSnapshot, Error> {
    Ok(ProjectionSnapshot {
        stream_id: row.text("stream_id")?,
        fold: fold(row)?,
        from_version: row.int("from_version")?,
        min_timestamp: time(row, "min_timestamp")?,
    })
}

/// A cached projection from a row of the projections table.
pub(super) fn cached_projection(row: &impl Columns) -> Result<super::CachedProjection, Error> {
    Ok(super::CachedProjection {
        stream_id: row.text("stream_id")?,
        fold: fold(row)?,
        snapshot_version: row.int("snapshot_version")?,
        tail_min_timestamp: time_opt(row, "tail_min_timestamp")?,
    })
}

/// One event of a stream, as folding reads it.
pub(super) fn stream_change(row: &impl Columns) -> Result<StreamChange, Error> {
    Ok(StreamChange {
        version: row.int("stream_version")?,
        event_id: EventId(row.uuid("event_id")?),
        event_type: row.text("event_type")?,
        data: json_column(row, "data")?,
        timestamp: time(row, "timestamp")?,
    })
}

/// A stream's summary from a row with its id, newest version, and that event's time and type.
pub(super) fn stream_summary(row: &impl Columns) -> Result<StreamSummary, Error> {
    Ok(StreamSummary {
        stream_id: row.text("stream_id")?,
        version: row.int("stream_version")?,
        last_event_at: time(row, "timestamp")?,
        last_event_type: row.text("event_type")?,
    })
}

/// The time axis of the dead-letter groups' histograms: from the oldest failure to `until`, in
/// buckets of whole seconds.
pub(super) struct GroupAxis {
    pub since: Option<i64>,
    pub start: i64,
    pub until: i64,
    pub buckets: i64,
    pub bucket_us: i64,
}

impl GroupAxis {
    /// The axis for failures since `since` (the oldest, if any) up to the query's `until`.
    pub fn new(query: &DlqGroupQuery, since: Option<i64>) -> Self {
        let buckets = i64::from(query.buckets.clamp(1, DlqGroupQuery::MAX_BUCKETS));
        let until = query.until.as_micros().max(since.unwrap_or(i64::MIN));
        let start = since.unwrap_or(until);
        // Whole seconds, at least one, so the axis reads plainly.
        let span = (until - start).max(1);
        let per_bucket = (span + buckets - 1) / buckets;
        let bucket_us = ((per_bucket + 999_999) / 1_000_000).max(1) * 1_000_000;
        Self { since, start, until, buckets, bucket_us }
    }

    /// The groups from their rows (key columns, `n`, `first_failed_at`, `last_failed_at`), with the
    /// histograms from theirs (key columns, `bucket`, `n`).
    pub fn groups(&self, groups: &[impl Columns], histogram: &[impl Columns]) -> Result<DlqGroups, Error> {
        let mut index = std::collections::HashMap::new();
        let mut out = Vec::with_capacity(groups.len());
        for row in groups {
            let key = dlq_group_key(row)?;
            index.insert(key.clone(), out.len());
            out.push(DlqGroup {
                key,
                count: total(row, "n")?,
                first_failed_at: time(row, "first_failed_at")?,
                last_failed_at: time(row, "last_failed_at")?,
                histogram: vec![0; self.buckets as usize],
            });
        }
        for row in histogram {
            let bucket = row.int("bucket")?.clamp(0, self.buckets - 1) as usize;
            if let Some(&i) = index.get(&dlq_group_key(row)?) {
                out[i].histogram[bucket] += total(row, "n")?;
            }
        }
        Ok(DlqGroups {
            total: out.iter().map(|g| g.count).sum(),
            groups: out,
            since: self.since.map(Timestamp::from_micros),
            until: Timestamp::from_micros(self.until),
            bucket_s: (self.bucket_us / 1_000_000) as u64,
        })
    }
}

/// An instance with the claims it holds, from a row of its record and the counts `deliveries`,
/// `processing` and `replays`.
pub(super) fn instance(row: &impl Columns) -> Result<(InstanceRecord, InstanceClaims), Error> {
    Ok((
        InstanceRecord {
            instance_id: row.text("instance_id")?,
            addr: row.text("addr")?,
            version: row.text("version")?,
            started_at: time(row, "started_at")?,
            last_seen: time(row, "last_seen")?,
        },
        InstanceClaims {
            deliveries: total(row, "deliveries")?,
            processing: total(row, "processing")?,
            replays: total(row, "replays")?,
        },
    ))
}
