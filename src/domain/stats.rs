//! Statistics: the answer of `GET /api/v1/events/statistics`, computed from incremental counters.

use std::collections::BTreeMap;

use chrono::{Datelike, Days, NaiveDate};
use serde::{Deserialize, Serialize};

use super::event::EventStatus;

/// Counts kept by the store as events are written, so statistics never scan the events table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub by_type: BTreeMap<String, i64>,
    pub by_source: BTreeMap<String, i64>,
    pub by_category: BTreeMap<String, i64>,
    pub by_status: BTreeMap<String, i64>,
    /// Keyed by UTC day, `YYYY-MM-DD`, of the event's timestamp.
    pub by_day: BTreeMap<String, i64>,
    /// The ten users with the most events, most first.
    pub top_users: Vec<NameCount>,
    /// Delivery counts: `attempts`, `retries`, `delivered`, `dead`.
    pub by_delivery: BTreeMap<String, i64>,
    pub dlq_size: i64,
    pub subscriptions_active: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NameCount {
    pub name: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Statistics {
    pub total_events: i64,
    pub pending_events: i64,
    pub processing_events: i64,
    pub processed_events: i64,
    pub failed_events: i64,
    pub events_by_source: BTreeMap<String, i64>,
    pub events_by_category: BTreeMap<String, i64>,
    pub events_by_type: BTreeMap<String, i64>,
    pub events_by_status: BTreeMap<String, i64>,
    pub events_today: i64,
    pub events_this_week: i64,
    pub events_this_month: i64,
    /// Percentage of finished events (processed + failed) that were processed.
    pub processing_rate: f64,
    /// Percentage of finished events (processed + failed) that failed.
    pub error_rate: f64,
    /// Mean duration of one processor run, in milliseconds, over all runs.
    pub average_processing_time: f64,
    /// Commit → processed latency of the last events processed by this instance.
    pub processing_latency_ms: Percentiles,
    pub processors_enabled: i64,
    pub top_users: Vec<NameCount>,
    pub top_event_types: Vec<NameCount>,
    /// Events stored per second over the last 60 seconds.
    pub ingest_rate_per_s: f64,
    pub dlq_size: i64,
    /// Percentage of finished deliveries (delivered + dead-lettered) that were delivered.
    pub delivery_success_rate: f64,
    /// Percentage of delivery attempts that were retries.
    pub retry_rate: f64,
    pub subscriptions_active: i64,
    /// The archive's files and size, and the oldest event the store keeps; `null` from a server
    /// without an archive.
    #[serde(default)]
    pub archive: Option<super::archive::ArchiveStats>,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// How many top entries the statistics list.
pub const TOP_N: usize = 10;

impl Statistics {
    /// Builds the statistics from counters as of `today` (UTC); weeks start on Monday.
    pub fn from_counters(counters: Counters, today: NaiveDate, ingest_rate_per_s: f64) -> Self {
        let status = |s: EventStatus| counters.by_status.get(s.as_str()).copied().unwrap_or(0);
        let (processed, failed) = (status(EventStatus::Processed), status(EventStatus::Failed));
        let percent = |n: i64, of: i64| if of == 0 { 0.0 } else { n as f64 * 100.0 / of as f64 };
        let delivery = |key: &str| counters.by_delivery.get(key).copied().unwrap_or(0);
        let (delivered, dead) = (delivery("delivered"), delivery("dead"));

        let since = |first: NaiveDate| {
            let key = first.format("%Y-%m-%d").to_string();
            counters.by_day.range(key..).map(|(_, n)| n).sum::<i64>()
        };
        let week_start = today - Days::new(u64::from(today.weekday().num_days_from_monday()));
        let month_start = today.with_day(1).unwrap_or(today);

        let mut top_event_types: Vec<NameCount> =
            counters.by_type.iter().map(|(name, &count)| NameCount { name: name.clone(), count }).collect();
        top_event_types.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
        top_event_types.truncate(TOP_N);

        Self {
            total_events: counters.by_status.values().sum(),
            pending_events: status(EventStatus::Pending),
            processing_events: status(EventStatus::Processing),
            processed_events: processed,
            failed_events: failed,
            events_today: since(today),
            events_this_week: since(week_start),
            events_this_month: since(month_start),
            processing_rate: percent(processed, processed + failed),
            error_rate: percent(failed, processed + failed),
            // Filled by the engine, which knows its processors and its recent latencies.
            average_processing_time: 0.0,
            processing_latency_ms: Percentiles::default(),
            processors_enabled: 0,
            dlq_size: counters.dlq_size,
            delivery_success_rate: percent(delivered, delivered + dead),
            retry_rate: percent(delivery("retries"), delivery("attempts")),
            subscriptions_active: counters.subscriptions_active,
            archive: None,
            top_users: counters.top_users,
            top_event_types,
            ingest_rate_per_s,
            events_by_source: counters.by_source,
            events_by_category: counters.by_category,
            events_by_type: counters.by_type,
            events_by_status: counters.by_status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_utc_days_with_weeks_from_monday() {
        let mut counters = Counters::default();
        // Wednesday 2026-11-18 is "today"; Monday is the 16th; the month began on the 1st.
        for (day, n) in [("2026-10-31", 1), ("2026-11-01", 2), ("2026-11-15", 4), ("2026-11-16", 8), ("2026-11-18", 16)]
        {
            counters.by_day.insert(day.into(), n);
        }
        counters.by_status.insert("pending".into(), 31);
        let today = NaiveDate::from_ymd_opt(2026, 11, 18).unwrap();
        let stats = Statistics::from_counters(counters, today, 0.0);
        assert_eq!(stats.events_today, 16);
        assert_eq!(stats.events_this_week, 24);
        assert_eq!(stats.events_this_month, 30);
        assert_eq!(stats.total_events, 31);
    }

    #[test]
    fn rates_are_percentages_of_finished_events() {
        let mut counters = Counters::default();
        counters.by_status.insert("processed".into(), 3);
        counters.by_status.insert("failed".into(), 1);
        counters.by_status.insert("pending".into(), 100);
        let stats = Statistics::from_counters(counters, NaiveDate::default(), 0.0);
        assert_eq!(stats.processing_rate, 75.0);
        assert_eq!(stats.error_rate, 25.0);
    }

    #[test]
    fn top_event_types_are_sorted_and_capped() {
        let mut counters = Counters::default();
        for i in 0..15 {
            counters.by_type.insert(format!("t{i:02}"), i);
        }
        let stats = Statistics::from_counters(counters, NaiveDate::default(), 0.0);
        assert_eq!(stats.top_event_types.len(), TOP_N);
        assert_eq!(stats.top_event_types[0], NameCount { name: "t14".into(), count: 14 });
    }
}
