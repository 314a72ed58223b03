//! How the server's answers become what the engine would have said: error bodies (by `code`, `field`
//! and message) and statuses become [`service::Error`]s, `/health` becomes [`Health`].

use std::sync::Mutex;

use reqwest::{StatusCode, Url};

use crate::domain::FieldError;
use crate::service::{self, Health, StorageHealth};
use crate::wire::{ErrorBody, ErrorEnvelope, HealthAnswer};

/// The server a client talks to, for messages.
pub(super) struct Origin<'a> {
    pub base: &'a Url,
    pub has_key: bool,
}

/// What a request was about, for a 404 whose body does not say.
pub(super) struct Subject {
    what: &'static str,
    id: String,
}

impl Subject {
    pub fn new(what: &'static str, id: impl ToString) -> Self {
        Self { what, id: id.to_string() }
    }
}

/// What the engine calls the things it does not find (`service::Error::NotFound::what`).
const KINDS: &[&str] =
    &["event", "stream", "subscription", "dead letter", "processor", "replay", "entity", "projection"];

/// A request that got no answer.
pub(super) fn transport(origin: &Origin<'_>, error: &reqwest::Error) -> service::Error {
    let what = if error.is_timeout() { "did not answer in time" } else { "cannot be reached" };
    service::Error::Unavailable(format!("the server at {} {what}: {}", origin.base, chain(error)))
}

/// An error and its causes, `: `-separated (reqwest's own message leaves out the cause that matters).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A non-2xx answer with its raw body.
pub(super) fn from_response(
    origin: &Origin<'_>,
    status: StatusCode,
    body: &[u8],
    subject: Option<&Subject>,
) -> service::Error {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(envelope) => from_body(origin, Some(status), envelope.error, subject),
        Err(_) => {
            let body = ErrorBody { code: String::new(), message: format!("status {status}"), field: None };
            from_body(origin, Some(status), body, subject)
        }
    }
}

/// An error body (of an answer, or of one item of a batch answer, which has no status of its own).
pub(super) fn from_body(
    origin: &Origin<'_>,
    status: Option<StatusCode>,
    body: ErrorBody,
    subject: Option<&Subject>,
) -> service::Error {
    use service::Error as E;
    match (body.code.as_str(), status.map(|s| s.as_u16())) {
        ("validation_failed", _) | (_, Some(422)) => E::Invalid(field_error(body)),
        ("stream_version_conflict", _) => {
            version_conflict(&body.message).unwrap_or_else(|| E::Conflict(field_error(body)))
        }
        ("conflict", _) | (_, Some(409)) => E::Conflict(field_error(body)),
        ("not_found", _) | (_, Some(404)) => not_found(origin, body, subject),
        ("storage_unavailable", _) => {
            let message = body.message.strip_prefix("storage is unavailable: ").unwrap_or(&body.message);
            E::Unavailable(message.to_owned())
        }
        ("storage_full", _) => E::StorageFull(body.message),
        ("shutting_down", _) => E::ShuttingDown,
        ("archived", _) | (_, Some(410)) => E::Archived(body.message),
        ("unauthorized", _) | (_, Some(401 | 403)) => E::Unavailable(if origin.has_key {
            format!(
                "the server at {} refused the API key: pass the right one with --api-key (or EVENTDECK_API_KEY)",
                origin.base
            )
        } else {
            format!("the server at {} needs an API key: pass it with --api-key (or EVENTDECK_API_KEY)", origin.base)
        }),
        // Malformed JSON or a body too large: the request as a whole was refused.
        ("malformed_json" | "payload_too_large" | "batch_too_large", _) | (_, Some(400 | 413)) => {
            E::Invalid(FieldError::new("body", body.message))
        }
        _ => E::Unavailable(format!("the server at {} answered {}: {}", origin.base, describe(status), body.message)),
    }
}

fn describe(status: Option<StatusCode>) -> String {
    status.map_or_else(|| "an error".to_owned(), |s| format!("status {s}"))
}

/// The field error the server put in its body: the message is `field: message` there.
fn field_error(body: ErrorBody) -> FieldError {
    let field = body.field.unwrap_or_else(|| "body".to_owned());
    let prefix = format!("{field}: ");
    let message = body.message.strip_prefix(&prefix).map(str::to_owned).unwrap_or(body.message);
    FieldError { field, message }
}

/// `stream `S` is at version A, not the expected E: …`, as [`service::Error::VersionConflict`] says it.
fn version_conflict(message: &str) -> Option<service::Error> {
    let rest = message.strip_prefix("stream `")?;
    let (stream_id, rest) = rest.rsplit_once("` is at version ")?;
    let (actual, rest) = rest.split_once(", not the expected ")?;
    let expected = rest.split(':').next()?;
    Some(service::Error::VersionConflict {
        stream_id: stream_id.to_owned(),
        expected: expected.parse().ok()?,
        actual: actual.parse().ok()?,
    })
}

/// `{what} `{id}` was not found`, as [`service::Error::NotFound`] says it; else what the request was
/// about. A 404 that is about neither is a route this server does not have.
fn not_found(origin: &Origin<'_>, body: ErrorBody, subject: Option<&Subject>) -> service::Error {
    let parsed = body
        .message
        .strip_suffix("` was not found")
        .and_then(|rest| rest.split_once(" `"))
        .and_then(|(what, id)| KINDS.iter().find(|kind| **kind == what).map(|kind| (*kind, id.to_owned())));
    match (parsed, subject) {
        (Some((what, id)), _) => service::Error::NotFound { what, id },
        (None, Some(subject)) if !body.message.starts_with("there is no ") => {
            service::Error::NotFound { what: subject.what, id: subject.id.clone() }
        }
        _ => service::Error::Unavailable(format!(
            "the server at {} does not have this endpoint ({}): is the URL right, and is it an eventdeck of this version?",
            origin.base, body.message
        )),
    }
}

/// The server's health as the engine reports its own.
pub(super) fn health(answer: HealthAnswer) -> Health {
    Health {
        status: intern(&answer.status),
        version: intern(&answer.version),
        uptime_s: answer.uptime_s,
        instance_id: answer.instance_id,
        storage: StorageHealth { backend: intern(&answer.storage.backend), ok: answer.storage.ok },
        nats: intern(&answer.nats),
    }
}

/// The health of a server that did not answer.
pub(super) fn unreachable_health() -> Health {
    Health {
        status: "degraded",
        version: "unknown",
        uptime_s: 0,
        instance_id: String::new(),
        storage: StorageHealth { backend: "unknown", ok: false },
        nats: "unknown",
    }
}

/// [`Health`] holds `&'static str`s. The words servers send are few (a status, a version, a backend
/// name), so each new one is kept once; past [`MAX_INTERNED`] distinct words, `unknown`.
fn intern(text: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "ok",
        "degraded",
        "sqlite",
        "postgres",
        "disabled",
        "connected",
        "disconnected",
        "unknown",
        env!("CARGO_PKG_VERSION"),
    ];
    const MAX_INTERNED: usize = 32;
    static INTERNED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    if let Some(known) = KNOWN.iter().find(|k| **k == text) {
        return known;
    }
    let mut interned = INTERNED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(word) = interned.iter().find(|w| **w == text) {
        return word;
    }
    if interned.len() >= MAX_INTERNED || text.len() > 64 {
        return "unknown";
    }
    let word: &'static str = Box::leak(text.to_owned().into_boxed_str());
    interned.push(word);
    word
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::ApiError;

    /// Every error the engine gives survives the trip through the API's error answer.
    #[test]
    fn service_errors_round_trip_through_error_answers() {
        let base = Url::parse("http://127.0.0.1:8686/").unwrap();
        let origin = Origin { base: &base, has_key: false };
        let errors = [
            service::Error::Invalid(FieldError::new("callback_url", "must be http or https: got `ftp`")),
            service::Error::Invalid(FieldError::new("events[3].data", "must be a JSON object")),
            service::Error::NotFound { what: "event", id: "0193-x".into() },
            service::Error::NotFound { what: "dead letter", id: "d".into() },
            service::Error::VersionConflict { stream_id: "user:1`odd".into(), expected: 0, actual: 12 },
            service::Error::Conflict(FieldError::new("processor_name", "`audit` is taken")),
            service::Error::Unavailable("disk I/O error".into()),
            service::Error::ShuttingDown,
        ];
        for error in errors {
            let api = ApiError::from(error.clone());
            let body = serde_json::to_vec(&ErrorEnvelope { error: api.body() }).unwrap();
            let back = from_response(&origin, api.status, &body, None);
            assert_eq!(format!("{back:?}"), format!("{error:?}"));
            // A batch item carries the body without a status.
            let item = from_body(&origin, None, api.body(), None);
            assert_eq!(format!("{item:?}"), format!("{error:?}"));
        }
    }

    #[test]
    fn statuses_without_a_known_body_still_map() {
        let base = Url::parse("http://h/").unwrap();
        let origin = Origin { base: &base, has_key: false };
        let subject = Subject::new("processor", "p1");
        let cases = [
            (StatusCode::NOT_FOUND, "NotFound { what: \"processor\", id: \"p1\" }"),
            (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            (StatusCode::CONFLICT, "Conflict"),
            (StatusCode::BAD_GATEWAY, "Unavailable"),
        ];
        for (status, expected) in cases {
            let error = from_response(&origin, status, b"<html>", Some(&subject));
            assert!(format!("{error:?}").starts_with(expected), "{status}: {error:?}");
        }
        let unauthorized = from_response(&origin, StatusCode::UNAUTHORIZED, b"", None);
        assert!(unauthorized.to_string().contains("--api-key"), "{unauthorized}");
        let route = ErrorEnvelope {
            error: ErrorBody { code: "not_found".into(), message: "there is no GET /x".into(), field: None },
        };
        let error = from_response(&origin, StatusCode::NOT_FOUND, &serde_json::to_vec(&route).unwrap(), Some(&subject));
        assert!(matches!(error, service::Error::Unavailable(_)), "{error:?}");
    }

    #[test]
    fn health_words_are_interned_once_and_bounded() {
        assert_eq!(intern("ok"), "ok");
        let first = intern("9.9.9-test");
        assert!(std::ptr::eq(first, intern("9.9.9-test")), "the same word is kept once");
        assert_eq!(intern(&"x".repeat(65)), "unknown");
    }
}
