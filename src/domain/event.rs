//! Events: the stored record, its id, the closed vocabularies for source, category and status, and the
//! validated input that ingest accepts.

use std::fmt;

use super::error::FieldError;
use super::id::uuid_id;
use super::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

uuid_id! {
    /// An event's id: a UUID v7, so ids sort by the time they were stored.
    EventId
}

/// Declares a closed set of snake_case words: the enum, its wire text, and a parser whose error lists
/// the accepted values.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the wire text; the error names `field` and lists the accepted values.
            pub fn parse(field: &str, text: &str) -> Result<Self, FieldError> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(FieldError::one_of(field, text, Self::NAMES)),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// Where an event came from.
    EventSource {
        Frontend => "frontend",
        Backend => "backend",
        System => "system",
        IotDevice => "iot_device",
        ExternalApi => "external_api",
        Scheduled => "scheduled",
    }
}

vocabulary! {
    /// What kind of thing an event records.
    EventCategory {
        UserAction => "user_action",
        PageView => "page_view",
        FormSubmit => "form_submit",
        Click => "click",
        UserLifecycle => "user_lifecycle",
        Payment => "payment",
        Order => "order",
        Task => "task",
        System => "system",
        Security => "security",
        Performance => "performance",
        Error => "error",
        Device => "device",
        DeviceStatus => "device_status",
        Telemetry => "telemetry",
        Command => "command",
        Alert => "alert",
    }
}

vocabulary! {
    /// Where an event is in processing: pending → processing → processed | failed (→ pending on retry);
    /// archived after export.
    EventStatus {
        Pending => "pending",
        Processing => "processing",
        Processed => "processed",
        Failed => "failed",
        Archived => "archived",
    }
}

/// A stored event. Immutable except for the processing fields (status, retry_count, error_message,
/// processed_at).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub event_id: EventId,
    /// Store-assigned, strictly increasing; the SSE id and the resume point.
    pub seq: i64,
    pub event_type: String,
    pub event_source: EventSource,
    pub event_category: EventCategory,
    pub user_id: Option<String>,
    pub tenant_id: Option<String>,
    pub stream_id: Option<String>,
    pub stream_version: Option<i64>,
    pub data: Map<String, Value>,
    pub metadata: Map<String, Value>,
    pub context: Map<String, Value>,
    pub correlation_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub status: EventStatus,
    pub retry_count: i64,
    pub error_message: Option<String>,
    pub timestamp: Timestamp,
    pub created_at: Timestamp,
    pub processed_at: Option<Timestamp>,
}

/// A validated event on its way into the store; the store assigns id, seq, stream version and
/// `created_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The id to store it under, when it was given one before the commit (a frontend event that went
    /// through JetStream answers with its id at once); `None`: the store mints one. An event whose id
    /// is stored already is a duplicate of the stored one, so a redelivered message is stored once.
    pub event_id: Option<EventId>,
    pub event_type: String,
    pub event_source: EventSource,
    pub event_category: EventCategory,
    pub user_id: Option<String>,
    pub tenant_id: Option<String>,
    pub stream_id: Option<String>,
    /// The stream's version before this event; `Some(0)` means the stream must not exist yet.
    pub expected_version: Option<i64>,
    pub data: Map<String, Value>,
    pub metadata: Map<String, Value>,
    pub context: Map<String, Value>,
    pub correlation_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub timestamp: Timestamp,
    /// Stored as `processed` at once: the engine found no processor that wants it, so it never
    /// needs a trip through the processing loop.
    pub skip_processing: bool,
}

impl NewEvent {
    /// A minimal event of `event_type` from the backend, stamped now; the rest empty.
    pub fn new(event_type: impl Into<String>) -> Self {
        Self {
            event_id: None,
            event_type: event_type.into(),
            event_source: EventSource::Backend,
            event_category: EventCategory::System,
            user_id: None,
            tenant_id: None,
            stream_id: None,
            expected_version: None,
            data: Map::new(),
            metadata: Map::new(),
            context: Map::new(),
            correlation_id: None,
            idempotency_key: None,
            timestamp: Timestamp::now(),
            skip_processing: false,
        }
    }
}

/// Longest accepted event type, stream id, user id and the like.
pub const MAX_NAME_LEN: usize = 256;

/// Checks an event type: dot-separated segments of letters, digits, `_`, `-` or `:`, none empty.
pub fn validate_event_type(field: &str, text: &str) -> Result<(), FieldError> {
    if text.is_empty() {
        return Err(FieldError::new(field, "is required and must not be empty, e.g. \"user.registered\""));
    }
    if text.len() > MAX_NAME_LEN {
        return Err(FieldError::new(field, format!("must be at most {MAX_NAME_LEN} characters")));
    }
    let valid_segment = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-:".contains(&b));
    if !text.split('.').all(valid_segment) {
        return Err(FieldError::new(
            field,
            format!(
                "`{text}` is not a valid event type: use dot-separated segments of letters, digits, `_`, `-` or `:`, e.g. \"user.registered\""
            ),
        ));
    }
    Ok(())
}

/// Checks a stream id of the form `entity_type:entity_id`.
pub fn validate_stream_id(field: &str, text: &str) -> Result<(), FieldError> {
    match text.split_once(':') {
        Some((kind, id)) if !kind.is_empty() && !id.is_empty() && text.len() <= MAX_NAME_LEN => Ok(()),
        _ => Err(FieldError::new(
            field,
            format!("`{text}` is not a stream id: use `entity_type:entity_id`, e.g. \"user:123\""),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_parses_and_lists_accepted_values() {
        assert_eq!(EventSource::parse("event_source", "iot_device").unwrap(), EventSource::IotDevice);
        let err = EventSource::parse("event_source", "mainframe").unwrap_err();
        assert_eq!(err.field, "event_source");
        assert!(err.message.contains("frontend, backend, system, iot_device, external_api, scheduled"));
        assert_eq!(EventCategory::ALL.len(), 17);
        assert_eq!(serde_json::to_string(&EventStatus::Processed).unwrap(), "\"processed\"");
    }

    #[test]
    fn event_types_are_dotted_segments() {
        assert!(validate_event_type("t", "user.registered").is_ok());
        assert!(validate_event_type("t", "order:v2.paid-late").is_ok());
        for bad in ["", "user..x", ".user", "user.", "user created", "user.*", "a>b"] {
            assert!(validate_event_type("t", bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn stream_ids_name_entity_type_and_id() {
        assert!(validate_stream_id("s", "user:123").is_ok());
        for bad in ["user", ":1", "user:", ""] {
            assert!(validate_stream_id("s", bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
