//! Processors: registered steps the processing loop runs on every pending event they match, in
//! priority order, and the result each run leaves behind.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::FieldError;
use super::event::{Event, EventCategory, EventId, EventSource, NewEvent};
use super::filter::TypePattern;
use super::id::uuid_id;
use super::time::Timestamp;

uuid_id! {
    /// A registered processor's id.
    ProcessorId
}

/// What a processor does with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProcessorType {
    /// POSTs the event JSON to `config.url`; a 2xx answer is success.
    Webhook,
    /// Publishes the event JSON to `config.subject` on NATS.
    Nats,
    /// Folds the event into its entity's projection.
    Projection,
    /// Replaces `config.fields` in the event data with `"[redacted]"`, at ingest, before the commit.
    Redact,
    /// Writes a log line.
    Log,
}

impl ProcessorType {
    pub const NAMES: &'static [&'static str] = &["webhook", "nats", "projection", "redact", "log"];

    pub const fn as_str(self) -> &'static str {
        match self {
            ProcessorType::Webhook => "webhook",
            ProcessorType::Nats => "nats",
            ProcessorType::Projection => "projection",
            ProcessorType::Redact => "redact",
            ProcessorType::Log => "log",
        }
    }

    pub fn parse(field: &str, text: &str) -> Result<Self, FieldError> {
        Self::NAMES
            .iter()
            .position(|name| *name == text)
            .map(|i| [Self::Webhook, Self::Nats, Self::Projection, Self::Redact, Self::Log][i])
            .ok_or_else(|| FieldError::one_of(field, text, Self::NAMES))
    }
}

/// Which events a processor takes; absent fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorFilters {
    pub event_type: Option<TypePattern>,
    pub event_source: Option<EventSource>,
    pub event_category: Option<EventCategory>,
}

impl ProcessorFilters {
    fn matches(&self, event_type: &str, source: EventSource, category: EventCategory) -> bool {
        self.event_type.as_ref().is_none_or(|p| p.matches(event_type))
            && self.event_source.is_none_or(|s| s == source)
            && self.event_category.is_none_or(|c| c == category)
    }
}

/// A registered processor with its running totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Processor {
    pub processor_id: ProcessorId,
    pub processor_name: String,
    pub processor_type: ProcessorType,
    pub enabled: bool,
    /// Higher runs first.
    pub priority: i32,
    pub filters: ProcessorFilters,
    pub config: Map<String, Value>,
    /// Retries after the first failed run; then the event is failed and dead-lettered.
    pub max_retries: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub processed_count: i64,
    pub failed_count: i64,
    pub avg_duration_ms: f64,
}

/// The name of the projection processor every new database starts with.
pub const DEFAULT_PROJECTION_PROCESSOR: &str = "projections";

/// What `redact` writes in place of a field's value.
pub const REDACTED: &str = "[redacted]";

impl Processor {
    /// A processor with no runs yet, stamped `now`.
    pub fn new(name: impl Into<String>, processor_type: ProcessorType, now: Timestamp) -> Self {
        Self {
            processor_id: ProcessorId::new_v7(),
            processor_name: name.into(),
            processor_type,
            enabled: true,
            priority: 0,
            filters: ProcessorFilters::default(),
            config: Map::new(),
            max_retries: 3,
            created_at: now,
            updated_at: now,
            processed_count: 0,
            failed_count: 0,
            avg_duration_ms: 0.0,
        }
    }

    /// True when the processor takes `event`: its filters match, and for a projection the event belongs
    /// to a stream. Says nothing of `enabled`.
    pub fn matches(&self, event: &Event) -> bool {
        (self.processor_type != ProcessorType::Projection || event.stream_id.is_some())
            && self.filters.matches(&event.event_type, event.event_source, event.event_category)
    }

    /// [`Processor::matches`] for an event not stored yet (redaction runs before the commit).
    pub fn matches_new(&self, event: &NewEvent) -> bool {
        (self.processor_type != ProcessorType::Projection || event.stream_id.is_some())
            && self.filters.matches(&event.event_type, event.event_source, event.event_category)
    }

    /// Checks the name, the retry budget and the config keys the type needs.
    pub fn validate(&self) -> Result<(), FieldError> {
        let name = self.processor_name.trim();
        if name.is_empty() || name.len() > 128 {
            return Err(FieldError::new("processor_name", "must be 1 to 128 characters"));
        }
        if self.max_retries > 100 {
            return Err(FieldError::new("max_retries", "must be between 0 and 100"));
        }
        let text = |key: &str| self.config.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
        match self.processor_type {
            ProcessorType::Webhook => {
                let url = text("url").ok_or_else(|| {
                    FieldError::new("config.url", "a webhook processor needs config.url, an http(s) URL")
                })?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(FieldError::new("config.url", "must be an http:// or https:// URL"));
                }
                if let Some(timeout) = self.config.get("timeout_ms")
                    && !timeout.as_u64().is_some_and(|ms| (100..=300_000).contains(&ms))
                {
                    return Err(FieldError::new("config.timeout_ms", "must be between 100 and 300000"));
                }
            }
            ProcessorType::Nats => {
                text("subject").ok_or_else(|| {
                    FieldError::new("config.subject", "a nats processor needs config.subject, e.g. \"events.orders\"")
                })?;
            }
            ProcessorType::Redact => {
                self.redact_fields()?;
            }
            ProcessorType::Projection | ProcessorType::Log => {}
        }
        Ok(())
    }

    /// A webhook processor's timeout (`config.timeout_ms`, default 10 s).
    pub fn timeout_ms(&self) -> u64 {
        self.config.get("timeout_ms").and_then(Value::as_u64).unwrap_or(10_000)
    }

    /// A redact processor's dotted field paths (`config.fields`).
    pub fn redact_fields(&self) -> Result<Vec<&str>, FieldError> {
        let invalid = || {
            FieldError::new("config.fields", "a redact processor needs config.fields, a list of dotted paths into data")
        };
        let fields = self.config.get("fields").and_then(Value::as_array).ok_or_else(invalid)?;
        let paths: Vec<&str> = fields.iter().filter_map(Value::as_str).filter(|p| !p.is_empty()).collect();
        if paths.is_empty() || paths.len() != fields.len() {
            return Err(invalid());
        }
        Ok(paths)
    }
}

/// Replaces the value at each dotted path of `data` with [`REDACTED`]; paths that are absent are
/// skipped. Returns how many values were replaced.
pub fn redact(data: &mut Map<String, Value>, paths: &[&str]) -> usize {
    paths.iter().filter(|path| redact_path(data, path)).count()
}

fn redact_path(data: &mut Map<String, Value>, path: &str) -> bool {
    match path.split_once('.') {
        None => match data.get_mut(path) {
            Some(value) => {
                *value = Value::String(REDACTED.to_owned());
                true
            }
            None => false,
        },
        Some((head, rest)) => match data.get_mut(head) {
            Some(Value::Object(inner)) => redact_path(inner, rest),
            _ => false,
        },
    }
}

/// The outcome of one processor run on one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProcessingResult {
    pub event_id: EventId,
    pub processor_id: ProcessorId,
    pub processor_name: String,
    pub success: bool,
    pub duration_ms: f64,
    pub error: Option<String>,
    /// Set when a replay did this run.
    pub replay_id: Option<super::replay::ReplayId>,
    pub processed_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn redact_replaces_dotted_paths_and_skips_absent_ones() {
        let mut data = json!({"email": "a@b.c", "card": {"number": "4111", "brand": "visa"}, "n": 1})
            .as_object()
            .cloned()
            .unwrap();
        let replaced = redact(&mut data, &["email", "card.number", "missing", "n.deeper"]);
        assert_eq!(replaced, 2);
        assert_eq!(
            Value::Object(data),
            json!({"email": "[redacted]", "card": {"number": "[redacted]", "brand": "visa"}, "n": 1})
        );
    }

    #[test]
    fn validation_names_the_missing_config() {
        let now = Timestamp::now();
        let webhook = Processor::new("hook", ProcessorType::Webhook, now);
        assert_eq!(webhook.validate().unwrap_err().field, "config.url");
        let mut redact = Processor::new("pii", ProcessorType::Redact, now);
        redact.config.insert("fields".into(), json!(["email", 3]));
        assert_eq!(redact.validate().unwrap_err().field, "config.fields");
        redact.config.insert("fields".into(), json!(["email"]));
        assert!(redact.validate().is_ok());
        assert_eq!(ProcessorType::parse("processor_type", "nope").unwrap_err().field, "processor_type");
    }

    #[test]
    fn filters_combine_with_and() {
        let mut processor = Processor::new("p", ProcessorType::Log, Timestamp::now());
        processor.filters.event_type = Some(TypePattern::parse("f", "order.*").unwrap());
        processor.filters.event_source = Some(EventSource::Backend);
        let mut event = NewEvent::new("order.created");
        assert!(processor.matches_new(&event));
        event.event_source = EventSource::Frontend;
        assert!(!processor.matches_new(&event));
    }
}
