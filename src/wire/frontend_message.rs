//! The JSON of a frontend event on its way through JetStream (`[ingest] frontend_via_nats`): what the
//! frontend routes publish to `<prefix>.frontend.<category>.<event_type>` and the frontend consumer
//! stores. It is the validated event with the id it was answered with, so the consumer stores exactly
//! what the route accepted, under that id. Anyone who can publish on the subject can put a message
//! there, so decoding checks every field again; a message that fails is a dead letter, never retried.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::name;
use crate::domain::event::{validate_event_type, validate_stream_id};
use crate::domain::{EventCategory, EventId, EventSource, FieldError, NewEvent, Timestamp};

/// One frontend event as the stream holds it. Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendMessage {
    pub event_id: EventId,
    pub event_type: String,
    pub event_source: EventSource,
    pub event_category: EventCategory,
    pub user_id: Option<String>,
    pub tenant_id: Option<String>,
    pub stream_id: Option<String>,
    pub expected_version: Option<i64>,
    #[serde(default)]
    pub data: Map<String, Value>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub context: Map<String, Value>,
    pub correlation_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub timestamp: Timestamp,
}

impl FrontendMessage {
    /// The message for `event`, which must have been given its id.
    pub fn new(event_id: EventId, event: &NewEvent) -> Self {
        Self {
            event_id,
            event_type: event.event_type.clone(),
            event_source: event.event_source,
            event_category: event.event_category,
            user_id: event.user_id.clone(),
            tenant_id: event.tenant_id.clone(),
            stream_id: event.stream_id.clone(),
            expected_version: event.expected_version,
            data: event.data.clone(),
            metadata: event.metadata.clone(),
            context: event.context.clone(),
            correlation_id: event.correlation_id.clone(),
            idempotency_key: event.idempotency_key.clone(),
            timestamp: event.timestamp,
        }
    }

    /// Decodes and checks a message's payload: the event to store, under its id.
    pub fn decode(payload: &[u8]) -> Result<NewEvent, String> {
        let message: Self =
            serde_json::from_slice(payload).map_err(|e| format!("not a frontend event message: {e}"))?;
        message.into_new_event().map_err(|e| format!("not a valid event: {e}"))
    }

    /// The event to store, with every field checked as ingest checks it.
    pub fn into_new_event(self) -> Result<NewEvent, FieldError> {
        validate_event_type("event_type", &self.event_type)?;
        if let Some(stream_id) = &self.stream_id {
            validate_stream_id("stream_id", stream_id)?;
        }
        match (self.expected_version, &self.stream_id) {
            (Some(v), _) if v < 0 => return Err(FieldError::new("expected_version", "must be 0 or more")),
            (Some(_), None) => {
                return Err(FieldError::new("expected_version", "needs a stream_id: it is the version of that stream"));
            }
            _ => {}
        }
        let mut event = NewEvent::new(self.event_type);
        event.event_id = Some(self.event_id);
        event.event_source = self.event_source;
        event.event_category = self.event_category;
        event.user_id = name("user_id", self.user_id)?;
        event.tenant_id = name("tenant_id", self.tenant_id)?;
        event.stream_id = self.stream_id;
        event.expected_version = self.expected_version;
        event.data = self.data;
        event.metadata = self.metadata;
        event.context = self.context;
        event.correlation_id = name("correlation_id", self.correlation_id)?;
        event.idempotency_key = name("idempotency_key", self.idempotency_key)?;
        event.timestamp = self.timestamp;
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_event_goes_through_the_message_unchanged_under_its_id() {
        let mut event = NewEvent::new("button.clicked");
        event.event_source = EventSource::Frontend;
        event.event_category = EventCategory::Click;
        event.user_id = Some("u1".into());
        event.data = json!({"button": "buy"}).as_object().cloned().unwrap();
        event.context = json!({"ip": "127.0.0.1", "page_url": "/shop"}).as_object().cloned().unwrap();
        event.metadata = json!({"traceparent": "00-abc-def-01"}).as_object().cloned().unwrap();
        event.correlation_id = Some("c1".into());
        let id = EventId::new_v7();
        let payload = serde_json::to_vec(&FrontendMessage::new(id, &event)).unwrap();
        let decoded = FrontendMessage::decode(&payload).unwrap();
        assert_eq!(decoded, NewEvent { event_id: Some(id), ..event });
    }

    #[test]
    fn a_message_that_is_not_a_valid_event_is_refused_with_the_reason() {
        let id = EventId::new_v7();
        let valid = json!({"event_id": id, "event_type": "a.b", "event_source": "frontend",
            "event_category": "click", "timestamp": "2026-01-02T03:04:05.123456Z"});
        assert!(FrontendMessage::decode(valid.to_string().as_bytes()).is_ok());
        let with = |key: &str, value: Value| {
            let mut message = valid.clone();
            message[key] = value;
            message
        };
        for (broken, mentions) in [
            (json!("not an object"), "not a frontend event message"),
            (json!({"event_type": "a.b"}), "missing field"),
            (with("event_type", json!("a..b")), "event_type"),
            (with("event_category", json!("nope")), "unknown variant"),
            (with("user_id", json!("")), "user_id"),
            (with("expected_version", json!(1)), "expected_version"),
            (with("extra", json!(1)), "unknown field"),
        ] {
            let error = FrontendMessage::decode(broken.to_string().as_bytes()).unwrap_err();
            assert!(error.contains(mentions), "{broken}: {error}");
        }
        assert!(FrontendMessage::decode(b"{not json").unwrap_err().contains("not a frontend event message"));
    }
}
