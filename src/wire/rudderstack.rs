//! RudderStack messages (its Webhook destination's payload) as eventdeck events, mapped as API.md says
//! under "Ingest": type → category and event type, `userId`/`anonymousId` → user, properties or traits
//! → data, `messageId` → idempotency key, the message's `context` kept, RudderStack's own fields under
//! `metadata.rudderstack`. Unknown keys are accepted (RudderStack adds fields over time).

use serde_json::{Map, Value};

use super::{name, timestamp};
use crate::domain::event::validate_event_type;
use crate::domain::{EventCategory, EventSource, FieldError, NewEvent};

/// The message types eventdeck maps, with the category and (except track) the event type each gets.
const TYPES: &[(&str, EventCategory, &str)] = &[
    ("track", EventCategory::UserAction, ""),
    ("page", EventCategory::PageView, "page_view"),
    ("screen", EventCategory::PageView, "screen_view"),
    ("identify", EventCategory::UserLifecycle, "identify"),
    ("group", EventCategory::UserLifecycle, "group"),
    ("alias", EventCategory::UserLifecycle, "alias"),
];

/// RudderStack's own fields, kept under `metadata.rudderstack` as sent.
const KEPT: &[&str] = &[
    "messageId",
    "event",
    "anonymousId",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
    "channel",
    "groupId",
    "previousId",
    "name",
];

/// Maps one message (any JSON value from the request) to the event to store.
pub fn to_new_event(message: Value) -> Result<NewEvent, FieldError> {
    let Value::Object(mut message) = message else {
        return Err(FieldError::new("body", "a RudderStack message must be a JSON object"));
    };
    let kind = text(&message, "type")?
        .ok_or_else(|| FieldError::new("type", "is required: track, page, screen, identify, group or alias"))?;
    let names: Vec<&str> = TYPES.iter().map(|(name, ..)| *name).collect();
    let &(_, category, fixed_type) =
        TYPES.iter().find(|(name, ..)| *name == kind).ok_or_else(|| FieldError::one_of("type", kind, &names))?;
    let event_type = if kind == "track" {
        let name =
            text(&message, "event")?.ok_or_else(|| FieldError::new("event", "a track message needs its event name"))?;
        let event_type = event_type_of(name);
        validate_event_type("event", &event_type)?;
        event_type
    } else {
        fixed_type.to_owned()
    };

    let mut event = NewEvent::new(event_type);
    event.event_source = EventSource::Frontend;
    event.event_category = category;
    let user = match id_text(&message, "userId")? {
        Some(user) => Some(user),
        None => id_text(&message, "anonymousId")?,
    };
    event.user_id =
        Some(name("userId", user)?.ok_or_else(|| FieldError::new("userId", "a message needs userId or anonymousId"))?);
    let message_id = match id_text(&message, "messageId")? {
        Some(id) => Some(id),
        None => id_text(&message, "message_id")?,
    };
    event.idempotency_key = name("messageId", message_id.clone())?;
    let when = match text(&message, "timestamp")? {
        Some(when) => Some(("timestamp", when)),
        None => text(&message, "originalTimestamp")?.map(|when| ("originalTimestamp", when)),
    };
    if let Some((field, when)) = when {
        event.timestamp = timestamp(field, when)?;
    }

    let mut kept = Map::new();
    for key in KEPT {
        if let Some(value) = message.get(*key).filter(|v| !v.is_null()) {
            kept.insert((*key).to_owned(), value.clone());
        }
    }
    if let Some(id) = message_id {
        kept.insert("messageId".to_owned(), Value::String(id));
    }
    event.metadata.insert("rudderstack".to_owned(), Value::Object(kept));

    let context = match message.remove("context") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(context)) => context,
        Some(_) => return Err(FieldError::new("context", "must be a JSON object")),
    };
    event.data = match ["properties", "traits"].into_iter().find_map(|key| object(&mut message, key)) {
        Some(data) => data,
        None => match context.get("traits") {
            Some(Value::Object(traits)) => traits.clone(),
            _ => Map::new(),
        },
    };
    event.context = context;
    // A track event named like `users.update` is a change event, checked as one.
    crate::domain::cdc::prepare(&mut event, "properties")?;
    Ok(event)
}

/// A track event's name as an event type: lower-cased, each run of characters outside `a-z0-9._-`
/// replaced by one `_` ("Product Purchased" → `product_purchased`).
pub fn event_type_of(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-') {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    out
}

/// A string field; absent or null is `None`, another type an error naming it.
fn text<'a>(message: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, FieldError> {
    match message.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(FieldError::new(key, "must be a string")),
    }
}

/// An id that senders give as a string or a number; empty strings count as absent.
fn id_text(message: &Map<String, Value>, key: &str) -> Result<Option<String>, FieldError> {
    match message.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(_) => Err(FieldError::new(key, "must be a string")),
    }
}

/// Takes `key` when it holds an object (anything else is left for the next candidate).
fn object(message: &mut Map<String, Value>, key: &str) -> Option<Map<String, Value>> {
    match message.remove(key) {
        Some(Value::Object(map)) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn track_names_become_event_types() {
        assert_eq!(event_type_of("Product Purchased"), "product_purchased");
        assert_eq!(event_type_of("Order  Completed!!"), "order_completed_");
        assert_eq!(event_type_of("checkout.step-2"), "checkout.step-2");
        assert_eq!(event_type_of("Ünïcode Näme"), "_n_code_n_me");
    }

    #[test]
    fn each_type_maps_to_its_category_and_event_type() {
        let cases = [
            (
                json!({"type": "track", "event": "Product Purchased", "userId": "u1"}),
                "product_purchased",
                "user_action",
            ),
            (json!({"type": "page", "name": "Home", "anonymousId": "a1"}), "page_view", "page_view"),
            (json!({"type": "screen", "name": "Cart", "userId": "u1"}), "screen_view", "page_view"),
            (json!({"type": "identify", "userId": "u1", "traits": {"plan": "pro"}}), "identify", "user_lifecycle"),
            (json!({"type": "group", "userId": "u1", "groupId": "g1"}), "group", "user_lifecycle"),
            (json!({"type": "alias", "userId": "u2", "previousId": "u1"}), "alias", "user_lifecycle"),
        ];
        for (message, event_type, category) in cases {
            let event = to_new_event(message.clone()).unwrap();
            assert_eq!(event.event_type, event_type, "{message}");
            assert_eq!(event.event_category.as_str(), category, "{message}");
            assert_eq!(event.event_source, EventSource::Frontend);
        }
    }

    #[test]
    fn data_user_time_and_metadata_follow_the_contract() {
        let event = to_new_event(json!({
            "type": "identify", "anonymousId": "anon-1", "message_id": "m-1",
            "context": {"traits": {"email": "a@b.c"}, "ip": "1.2.3.4"},
            "originalTimestamp": "2026-01-02T03:04:05.123Z", "rudderId": "r-1", "request_ip": "5.6.7.8",
        }))
        .unwrap();
        assert_eq!(event.user_id.as_deref(), Some("anon-1"));
        assert_eq!(event.idempotency_key.as_deref(), Some("m-1"));
        assert_eq!(event.data["email"], "a@b.c", "context.traits is the last resort for data");
        assert_eq!(event.context["ip"], "1.2.3.4");
        assert_eq!(event.timestamp.to_string(), "2026-01-02T03:04:05.123000Z");
        assert_eq!(event.metadata["rudderstack"]["messageId"], "m-1");
        assert_eq!(event.metadata["rudderstack"]["anonymousId"], "anon-1");
        assert!(event.metadata["rudderstack"].get("rudderId").is_none());

        let event = to_new_event(json!({"type": "track", "event": "A", "userId": 42, "properties": {"p": 1},
            "traits": {"t": 1}, "timestamp": "2026-01-02T00:00:00Z", "originalTimestamp": "2020-01-01T00:00:00Z"}))
        .unwrap();
        assert_eq!(event.user_id.as_deref(), Some("42"));
        assert_eq!(event.data["p"], 1);
        assert_eq!(event.timestamp.to_string(), "2026-01-02T00:00:00.000000Z");
    }

    #[test]
    fn unusable_messages_name_the_field() {
        let cases = [
            (json!([1]), "body"),
            (json!({"userId": "u"}), "type"),
            (json!({"type": "purchase", "userId": "u"}), "type"),
            (json!({"type": "track", "userId": "u"}), "event"),
            (json!({"type": "track", "event": "..", "userId": "u"}), "event"),
            (json!({"type": "page"}), "userId"),
            (json!({"type": "page", "userId": "u", "timestamp": "noon"}), "timestamp"),
            (json!({"type": "page", "userId": "u", "context": "x"}), "context"),
        ];
        for (message, field) in cases {
            assert_eq!(to_new_event(message.clone()).unwrap_err().field, field, "{message}");
        }
    }
}
