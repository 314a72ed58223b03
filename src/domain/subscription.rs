//! Webhook subscriptions: who wants which events, where, and how failed sends are retried.

use std::time::Duration;

use super::error::FieldError;
use super::event::{Event, EventCategory, EventSource};
use super::filter::TypePattern;
use super::id::uuid_id;
use super::time::Timestamp;
use serde::{Deserialize, Serialize};

uuid_id! {
    /// A webhook subscription's id.
    SubscriptionId
}

/// How a failed delivery is retried: attempt n+1 waits `min(initial × multiplier^(n-1), max)` ± 20 %.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first attempt; then the delivery goes to the dead-letter queue.
    pub max_retries: u32,
    pub initial_delay_ms: u64,
    pub backoff_multiplier: f64,
    pub max_delay_ms: u64,
    /// Per-attempt request timeout.
    pub timeout_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_delay_ms: 1000,
            backoff_multiplier: 2.0,
            max_delay_ms: 60_000,
            timeout_ms: 10_000,
        }
    }
}

impl RetryPolicy {
    pub fn validate(&self) -> Result<(), FieldError> {
        let field = |name: &str| format!("retry_policy.{name}");
        if self.max_retries > 100 {
            return Err(FieldError::new(field("max_retries"), "must be between 0 and 100"));
        }
        if !(1.0..=10.0).contains(&self.backoff_multiplier) {
            return Err(FieldError::new(field("backoff_multiplier"), "must be between 1.0 and 10.0"));
        }
        if self.initial_delay_ms > self.max_delay_ms {
            return Err(FieldError::new(field("initial_delay_ms"), "must not exceed max_delay_ms"));
        }
        if self.max_delay_ms > 86_400_000 {
            return Err(FieldError::new(field("max_delay_ms"), "must be at most 86400000 (one day)"));
        }
        if !(100..=300_000).contains(&self.timeout_ms) {
            return Err(FieldError::new(field("timeout_ms"), "must be between 100 and 300000"));
        }
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The wait before the retry that follows failed attempt `attempt` (1-based), without jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let millis = self.initial_delay_ms as f64 * self.backoff_multiplier.powi(exponent);
        Duration::from_millis(millis.min(self.max_delay_ms as f64) as u64)
    }

    /// `base_delay` moved by `jitter` ∈ [-1, 1] times 20 %.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        self.base_delay(attempt).mul_f64(1.0 + 0.2 * jitter.clamp(-1.0, 1.0))
    }
}

/// A webhook subscription. The secret is kept apart and never serialized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Subscription {
    pub subscription_id: SubscriptionId,
    pub subscriber_name: String,
    pub subscriber_type: String,
    pub event_types: Vec<TypePattern>,
    pub event_sources: Vec<EventSource>,
    pub event_categories: Vec<EventCategory>,
    pub callback_url: String,
    pub has_secret: bool,
    pub retry_policy: RetryPolicy,
    pub enabled: bool,
    /// Why eventdeck disabled it (e.g. the endpoint answered 410 Gone).
    pub disabled_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(skip)]
    pub secret: Option<String>,
    /// The last event seq when it was created: it receives only events after this one.
    #[serde(skip)]
    pub start_seq: i64,
}

/// Changes to a subscription; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscriptionPatch {
    pub enabled: Option<bool>,
    pub event_types: Option<Vec<TypePattern>>,
    pub event_sources: Option<Vec<EventSource>>,
    pub event_categories: Option<Vec<EventCategory>>,
    pub callback_url: Option<String>,
    pub retry_policy: Option<RetryPolicy>,
}

impl SubscriptionPatch {
    /// Applies the patch; turning a subscription on again clears why it was turned off.
    pub fn apply(self, subscription: &mut Subscription, now: Timestamp) {
        if let Some(enabled) = self.enabled {
            if enabled {
                subscription.disabled_reason = None;
            }
            subscription.enabled = enabled;
        }
        if let Some(types) = self.event_types {
            subscription.event_types = types;
        }
        if let Some(sources) = self.event_sources {
            subscription.event_sources = sources;
        }
        if let Some(categories) = self.event_categories {
            subscription.event_categories = categories;
        }
        if let Some(url) = self.callback_url {
            subscription.callback_url = url;
        }
        if let Some(policy) = self.retry_policy {
            subscription.retry_policy = policy;
        }
        subscription.updated_at = now;
    }
}

impl Subscription {
    /// True when the subscription wants `event` (empty lists mean "all"). Says nothing of `enabled`.
    pub fn matches(&self, event: &Event) -> bool {
        let type_ok = self.event_types.is_empty() || self.event_types.iter().any(|p| p.matches(&event.event_type));
        type_ok
            && (self.event_sources.is_empty() || self.event_sources.contains(&event.event_source))
            && (self.event_categories.is_empty() || self.event_categories.contains(&event.event_category))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            initial_delay_ms: 100,
            backoff_multiplier: 3.0,
            max_delay_ms: 1000,
            ..RetryPolicy::default()
        };
        let delays: Vec<u128> = (1..=4).map(|n| policy.base_delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 300, 900, 1000]);
        assert_eq!(policy.delay(1, 1.0).as_millis(), 120);
        assert_eq!(policy.delay(1, -1.0).as_millis(), 80);
        assert_eq!(policy.delay(1, 7.0).as_millis(), 120, "jitter is clamped to ±20 %");
    }

    #[test]
    fn policy_validation_names_the_field() {
        let bad = RetryPolicy { timeout_ms: 5, ..RetryPolicy::default() };
        assert_eq!(bad.validate().unwrap_err().field, "retry_policy.timeout_ms");
        assert!(RetryPolicy::default().validate().is_ok());
    }
}
