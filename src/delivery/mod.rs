//! Outbound webhooks: signing, the HTTP client, and the guard against private-network targets.

pub mod client;
pub mod guard;
pub mod signing;
mod trace;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use client::{AttemptOutcome, ClientError, WebhookClient, WebhookRequest};
pub use trace::{adopt_trace, trace_headers};

/// A random number in [-1, 1] for retry jitter.
///
/// Not cryptographic: std's randomly keyed `RandomState` hashes a process-wide counter and the clock, which
/// is enough to keep retries of many deliveries from lining up.
pub fn jitter() -> f64 {
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(DRAWS.fetch_add(1, Ordering::Relaxed));
    // A clock before 1970 only loses this bit of entropy; the keyed hash still varies.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    hasher.write_u128(nanos);
    // The top 53 bits fill an f64 mantissa exactly: a uniform value in [0, 1], then stretched to [-1, 1].
    let unit = (hasher.finish() >> 11) as f64 / ((1u64 << 53) - 1) as f64;
    unit * 2.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let draws: Vec<f64> = (0..10_000).map(|_| jitter()).collect();
        assert!(draws.iter().all(|j| (-1.0..=1.0).contains(j)), "a draw left [-1, 1]");
        let min = draws.iter().copied().fold(f64::INFINITY, f64::min);
        let max = draws.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert!(min < -0.9 && max > 0.9, "draws should cover the range, got [{min}, {max}]");
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!(mean.abs() < 0.05, "draws should centre on 0, mean was {mean}");
    }
}
