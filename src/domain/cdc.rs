//! Change data capture: events of type `<collection>.insert`, `.update` or `.delete` whose `data` is
//! `{"doc_id", "doc", "prev"}` record a change to one document. At ingest they are checked and put on the
//! document's stream, `<collection>:<doc_id>`, when they name no stream; the projection of that stream is
//! then the document itself (see [`document_change`]), so `at_version` / `at_time` recover it as it was.

use serde_json::{Map, Value};

use super::error::FieldError;
use super::event::{NewEvent, validate_stream_id};
use super::projection::stream_id;

/// What a change event did to its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Insert,
    Update,
    Delete,
}

/// The collection and operation of a change event's type: the last segment is the operation, the rest
/// (dots allowed) the collection. `None` for any other type.
pub fn operation_of(event_type: &str) -> Option<(&str, Operation)> {
    let (collection, last) = event_type.rsplit_once('.')?;
    let operation = match last {
        "insert" => Operation::Insert,
        "update" => Operation::Update,
        "delete" => Operation::Delete,
        _ => return None,
    };
    (!collection.is_empty()).then_some((collection, operation))
}

/// A document id as it appears in a stream id: a string as it is, a number as JSON writes it.
fn doc_id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Checks a change event's data and gives it its document's stream when it names none. `data_field` is
/// what the caller calls `data` (`properties` for browser events), so errors name the field as sent.
/// Events of other types are left alone.
pub fn prepare(event: &mut NewEvent, data_field: &str) -> Result<(), FieldError> {
    let Some((collection, operation)) = operation_of(&event.event_type) else { return Ok(()) };
    let field = |name: &str| format!("{data_field}.{name}");
    let doc_id = match event.data.get("doc_id") {
        None | Some(Value::Null) => {
            return Err(FieldError::new(
                field("doc_id"),
                format!(
                    "is required on a change event ({}): the id of the changed document, a string or a number, e.g. {{\"doc_id\": \"42\", \"doc\": {{...}}}}",
                    event.event_type
                ),
            ));
        }
        Some(value) => doc_id_text(value).ok_or_else(|| {
            FieldError::new(field("doc_id"), "must be a non-empty string or a number, e.g. \"42\" or 42")
        })?,
    };
    match (operation, event.data.get("doc")) {
        (Operation::Delete, _) | (_, Some(Value::Object(_))) => {}
        (_, None | Some(Value::Null)) => {
            return Err(FieldError::new(
                field("doc"),
                "is required on an insert or update: the whole document after the change, a JSON object",
            ));
        }
        (_, Some(_)) => return Err(FieldError::new(field("doc"), "must be a JSON object: the whole document")),
    }
    if let Some(prev) = event.data.get("prev")
        && !matches!(prev, Value::Null | Value::Object(_))
    {
        return Err(FieldError::new(field("prev"), "must be a JSON object (the document before the change) or null"));
    }
    if event.stream_id.is_none() {
        let stream = stream_id(collection, &doc_id);
        validate_stream_id(&field("doc_id"), &stream).map_err(|_| {
            FieldError::new(field("doc_id"), "is too long: `<collection>:<doc_id>` must be at most 256 characters")
        })?;
        event.stream_id = Some(stream);
    }
    Ok(())
}

/// The document a change event leaves behind, when `event_type` and `data` are a change event that
/// [`prepare`] accepts: `Some(doc)` after an insert or update (the whole document, replacing whatever was
/// there), `Some(Null)` after a delete. `None` for anything else, which projections fold as before.
pub fn document_change<'a>(event_type: &str, data: &'a Map<String, Value>) -> Option<&'a Value> {
    const NULL: &Value = &Value::Null;
    let (_, operation) = operation_of(event_type)?;
    doc_id_text(data.get("doc_id")?)?;
    match (operation, data.get("doc")) {
        (Operation::Delete, _) => Some(NULL),
        (_, Some(doc @ Value::Object(_))) => Some(doc),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(event_type: &str, data: Value) -> NewEvent {
        let mut event = NewEvent::new(event_type);
        let Value::Object(data) = data else { panic!("data is an object") };
        event.data = data;
        event
    }

    #[test]
    fn the_last_segment_is_the_operation_and_the_rest_the_collection() {
        assert_eq!(operation_of("users.insert"), Some(("users", Operation::Insert)));
        assert_eq!(operation_of("shop.orders.update"), Some(("shop.orders", Operation::Update)));
        assert_eq!(operation_of("db:main.t.delete"), Some(("db:main.t", Operation::Delete)));
        for other in ["insert", "users.inserted", "user.deleted", "users.upsert", ".delete"] {
            assert_eq!(operation_of(other), None, "{other}");
        }
    }

    #[test]
    fn change_events_get_their_documents_stream() {
        let mut insert = event("shop.orders.insert", json!({"doc_id": "o-1", "doc": {"total": 3}}));
        prepare(&mut insert, "data").unwrap();
        assert_eq!(insert.stream_id.as_deref(), Some("shop.orders:o-1"));

        let mut numbered = event("users.delete", json!({"doc_id": 42, "prev": {"name": "Ann"}}));
        prepare(&mut numbered, "data").unwrap();
        assert_eq!(numbered.stream_id.as_deref(), Some("users:42"));

        let mut named = event("users.update", json!({"doc_id": 42, "doc": {}}));
        named.stream_id = Some("tenant-a:users-42".into());
        prepare(&mut named, "data").unwrap();
        assert_eq!(named.stream_id.as_deref(), Some("tenant-a:users-42"), "a given stream is kept");

        let mut other = event("user.updated", json!({"name": "x"}));
        prepare(&mut other, "data").unwrap();
        assert_eq!(other.stream_id, None, "not a change event: untouched");
    }

    #[test]
    fn a_bad_change_event_names_the_field() {
        let cases = [
            (json!({"doc": {}}), "data.doc_id"),
            (json!({"doc_id": null, "doc": {}}), "data.doc_id"),
            (json!({"doc_id": "", "doc": {}}), "data.doc_id"),
            (json!({"doc_id": true, "doc": {}}), "data.doc_id"),
            (json!({"doc_id": {"a": 1}, "doc": {}}), "data.doc_id"),
            (json!({"doc_id": "x".repeat(300), "doc": {}}), "data.doc_id"),
            (json!({"doc_id": 1}), "data.doc"),
            (json!({"doc_id": 1, "doc": [1]}), "data.doc"),
            (json!({"doc_id": 1, "doc": {}, "prev": "old"}), "data.prev"),
        ];
        for (data, field) in cases {
            let error = prepare(&mut event("users.update", data.clone()), "data").unwrap_err();
            assert_eq!(error.field, field, "{data}: {}", error.message);
        }
        let error = prepare(&mut event("users.insert", json!({})), "properties").unwrap_err();
        assert_eq!(error.field, "properties.doc_id");
        assert!(error.message.contains("users.insert"), "{}", error.message);
        prepare(&mut event("users.delete", json!({"doc_id": 1, "doc": "ignored"})), "data").unwrap();
    }

    #[test]
    fn document_change_is_what_prepare_accepts() {
        let doc = json!({"name": "Ann"});
        let data = |value: Value| value.as_object().cloned().unwrap();
        assert_eq!(document_change("users.insert", &data(json!({"doc_id": 1, "doc": doc}))), Some(&doc));
        assert_eq!(document_change("users.delete", &data(json!({"doc_id": "1"}))), Some(&Value::Null));
        // Events stored before change capture existed fold as merge patches, as they always did.
        assert_eq!(document_change("users.update", &data(json!({"name": "x"}))), None);
        assert_eq!(document_change("users.update", &data(json!({"doc_id": 1, "name": "x"}))), None);
        assert_eq!(document_change("users.updated", &data(json!({"doc_id": 1, "doc": doc}))), None);
    }
}
