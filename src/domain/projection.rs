//! Projections: the state of an entity, folded from its stream's `data` as JSON Merge Patch (RFC 7396).
//! An event whose type ends in `.deleted` sets the state to null. A change event (see [`super::cdc`])
//! sets the state to its document instead: replaced whole, not merged, and null after a delete.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::event::{Event, EventId};
use super::time::Timestamp;

/// An entity's state at some version of its stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Projection {
    pub entity_type: String,
    pub entity_id: String,
    /// Null once deleted.
    pub state: Value,
    pub version: i64,
    pub last_event_id: EventId,
    pub updated_at: Timestamp,
}

/// Which state of an entity to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProjectionAt {
    #[default]
    Latest,
    /// As it was after this stream version.
    Version(i64),
    /// As it was after every event with `timestamp` ≤ this, in version order.
    Time(Timestamp),
}

/// The stream an entity lives in: `{entity_type}:{entity_id}`.
pub fn stream_id(entity_type: &str, entity_id: &str) -> String {
    format!("{entity_type}:{entity_id}")
}

/// The entity a stream holds: the text before the first `:` is its type, the rest its id.
/// `None` for a stream id without `:`.
pub fn entity_of(stream_id: &str) -> Option<(&str, &str)> {
    stream_id.split_once(':').filter(|(kind, id)| !kind.is_empty() && !id.is_empty())
}

/// Applies `patch` to `target` as RFC 7396 says: objects merge key by key, `null` removes a key,
/// anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(patch) => merge_object(target, patch),
        other => *target = other.clone(),
    }
}

fn merge_object(target: &mut Value, patch: &Map<String, Value>) {
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(fields) = target else { unreachable!("made an object above") };
    for (key, value) in patch {
        if value.is_null() {
            fields.remove(key);
        } else {
            merge_patch(fields.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Folds one event into `state`: its `data` is the merge patch (a change event's document replaces the
/// state). A deleted entity that gets a new event starts again from an empty object.
pub fn apply(state: &mut Value, event: &Event) {
    apply_change(state, &event.event_type, &event.data);
}

/// [`apply`] for an event read as just its type and data.
pub fn apply_change(state: &mut Value, event_type: &str, data: &Map<String, Value>) {
    if let Some(document) = super::cdc::document_change(event_type, data) {
        state.clone_from(document);
    } else if event_type.ends_with(".deleted") {
        *state = Value::Null;
    } else {
        merge_object(state, data);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7396_examples() {
        // The examples of RFC 7396, appendix A.
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": "b", "b": "c"}), json!({"a": null}), json!({"b": "c"})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (json!({"a": {"b": "c"}}), json!({"a": {"b": "d", "c": null}}), json!({"a": {"b": "d"}})),
            (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
            (json!([1, 2]), json!({"a": "b", "c": null}), json!({"a": "b"})),
            (json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
        ];
        for (mut target, patch, expected) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, expected, "patch {patch}");
        }
    }

    #[test]
    fn entity_is_split_at_the_first_colon() {
        assert_eq!(entity_of("user:123"), Some(("user", "123")));
        assert_eq!(entity_of("order:eu:7"), Some(("order", "eu:7")));
        assert_eq!(entity_of("plain"), None);
        assert_eq!(entity_of(":x"), None);
        assert_eq!(stream_id("order", "eu:7"), "order:eu:7");
    }
}
