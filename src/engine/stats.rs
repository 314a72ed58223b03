//! Live figures the store does not keep: the ingest rate over the last minute, and the latency from
//! commit to processed over the last events processed.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::domain::stats::Percentiles;
use std::time::{SystemTime, UNIX_EPOCH};

const WINDOW_SECS: usize = 60;

/// Events stored per second over the last 60 seconds, in one-second buckets (a fixed ring: bounded).
#[derive(Debug)]
pub struct IngestRate {
    /// (unix second, events stored in it), indexed by second modulo the window.
    buckets: Mutex<[(u64, u64); WINDOW_SECS]>,
}

impl Default for IngestRate {
    fn default() -> Self {
        Self { buckets: Mutex::new([(0, 0); WINDOW_SECS]) }
    }
}

impl IngestRate {
    pub fn record(&self, events: u64) {
        self.record_at(unix_seconds(), events);
    }

    pub fn per_second(&self) -> f64 {
        self.per_second_at(unix_seconds())
    }

    fn record_at(&self, second: u64, events: u64) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let bucket = &mut buckets[second as usize % WINDOW_SECS];
        if bucket.0 != second {
            *bucket = (second, 0);
        }
        bucket.1 += events;
    }

    fn per_second_at(&self, now: u64) -> f64 {
        let buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let recent: u64 =
            buckets.iter().filter(|(second, _)| now.saturating_sub(*second) < WINDOW_SECS as u64).map(|b| b.1).sum();
        recent as f64 / WINDOW_SECS as f64
    }
}

/// How many recent latencies the percentiles are computed over.
const LATENCY_SAMPLES: usize = 10_000;

/// The commit → processed latencies of the last [`LATENCY_SAMPLES`] events processed (a bounded ring).
#[derive(Debug, Default)]
pub struct Latencies {
    micros: Mutex<VecDeque<i64>>,
}

impl Latencies {
    pub fn record(&self, micros: i64) {
        let mut samples = self.micros.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if samples.len() == LATENCY_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(micros.max(0));
    }

    /// p50, p95 and p99 in milliseconds; zeros before anything was processed.
    pub fn percentiles(&self) -> Percentiles {
        let mut sorted: Vec<i64> =
            self.micros.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().copied().collect();
        if sorted.is_empty() {
            return Percentiles::default();
        }
        sorted.sort_unstable();
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        Percentiles { p50: at(0.50), p95: at(0.95), p99: at(0.99) }
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_the_last_minute_and_forgets_older_seconds() {
        let rate = IngestRate::default();
        rate.record_at(1_000, 60);
        rate.record_at(1_030, 60);
        assert_eq!(rate.per_second_at(1_030), 2.0);
        assert_eq!(rate.per_second_at(1_075), 1.0);
        // Second 1_060 reuses the bucket of 1_000.
        rate.record_at(1_060, 6);
        assert_eq!(rate.per_second_at(1_060), 1.1);
    }

    #[test]
    fn latency_percentiles_cover_the_last_samples_only() {
        let latencies = Latencies::default();
        assert_eq!(latencies.percentiles(), Percentiles::default());
        for ms in 1..=100 {
            latencies.record(ms * 1000);
        }
        let p = latencies.percentiles();
        assert_eq!((p.p50, p.p95, p.p99), (51.0, 95.0, 99.0));
        for _ in 0..LATENCY_SAMPLES {
            latencies.record(7_000);
        }
        assert_eq!(latencies.percentiles().p99, 7.0);
    }
}
