//! `POST /webhooks/rudderstack`: RudderStack's Webhook destination (one message per request) or any
//! sender posting an array of messages. Secret-checked when `[rudderstack] secret` is set; valid
//! messages are stored in one commit and the others listed as failed.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use super::events::{IngestHeaders, check_batch_size};
use crate::api::error::ApiError;
use crate::api::extract::{RawBody, parse_json};
use crate::api::state::AppState;
use crate::domain::NewEvent;
use crate::service::Ingested;
use crate::wire::ErrorBody;
use crate::wire::rudderstack::to_new_event;

pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/rudderstack", post(receive))
}

/// The answer: how many messages are stored (duplicates of earlier ones included), and why the others
/// were not.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RudderstackAnswer {
    pub accepted: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedMessage>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FailedMessage {
    pub index: usize,
    pub error: ErrorBody,
}

/// Stores the messages; 202 after the commit, 422 when none is valid, 401 on a bad secret.
#[utoipa::path(post, path = "/webhooks/rudderstack", tag = "ingest",
    request_body(content = Object, description = "One RudderStack message (track, page, screen, identify, group, alias) or an array of them"),
    params(
        ("X-Signature" = Option<String>, Header, description = "sha256=<hex HMAC-SHA256(secret, raw body)>"),
        ("X-Rudderstack-Secret" = Option<String>, Header, description = "The secret itself"),
    ),
    responses(
        (status = 202, body = RudderstackAnswer),
        (status = 401, body = crate::wire::ErrorEnvelope),
        (status = 422, body = crate::wire::ErrorEnvelope, description = "No message of the request is valid"),
    ))]
pub(crate) async fn receive(
    State(state): State<AppState>,
    ingest: IngestHeaders,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<RudderstackAnswer>), ApiError> {
    if let Some(secret) = &state.limits.rudderstack_secret {
        check_secret(secret, &headers, &body)?;
    }
    let Messages { mut events, positions, mut failed } = parse_messages(&body, state.limits.max_batch)?;
    for event in &mut events {
        ingest.apply(event);
    }
    let stored = state.service.ingest(events).await?;
    let mut accepted = 0;
    for (index, outcome) in positions.into_iter().zip(stored) {
        match outcome {
            Ok(Ingested { .. }) => accepted += 1,
            Err(error) => failed.push(FailedMessage { index, error: ApiError::from(error).body() }),
        }
    }
    failed.sort_by_key(|f| f.index);
    Ok((StatusCode::ACCEPTED, Json(RudderstackAnswer { accepted, failed })))
}

/// Either header proves the sender knows the secret; the comparisons do not stop at the first
/// difference.
/// A request's messages: the valid ones as events (with their positions) and the failed ones.
pub(crate) struct Messages {
    pub events: Vec<NewEvent>,
    pub positions: Vec<usize>,
    pub failed: Vec<FailedMessage>,
}

/// Parses one message or an array of them; 422 when none is valid (naming the first failure).
pub(crate) fn parse_messages(body: &[u8], max_batch: usize) -> Result<Messages, ApiError> {
    let (messages, single) = match parse_json::<Value>(body)? {
        Value::Array(messages) => (messages, false),
        message => (vec![message], true),
    };
    check_batch_size(messages.len(), max_batch)?;
    if messages.is_empty() {
        return Err(ApiError::invalid(crate::domain::FieldError::new("body", "holds no message: send one or more")));
    }
    let mut failed = Vec::new();
    let (mut events, mut positions) = (Vec::with_capacity(messages.len()), Vec::with_capacity(messages.len()));
    for (index, message) in messages.into_iter().enumerate() {
        match to_new_event(message) {
            Ok(event) => {
                events.push(event);
                positions.push(index);
            }
            Err(error) => {
                let error = if single { error } else { error.within(&format!("[{index}]")) };
                failed.push(FailedMessage { index, error: ApiError::invalid(error).body() });
            }
        }
    }
    if events.is_empty() {
        let first = failed.swap_remove(0).error;
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            message: if single { first.message } else { format!("no message is valid; the first: {}", first.message) },
            field: first.field,
        });
    }
    Ok(Messages { events, positions, failed })
}

fn check_secret(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(given) = header("x-rudderstack-secret")
        && constant_time_eq(given.as_bytes(), secret.as_bytes())
    {
        return Ok(());
    }
    if let Some(signature) = header("x-signature").and_then(|v| v.strip_prefix("sha256="))
        && let Some(signature) = from_hex(signature)
        && let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
    {
        mac.update(body);
        if mac.verify_slice(&signature).is_ok() {
            return Ok(());
        }
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "send `X-Signature: sha256=<hex HMAC-SHA256 of the body with [rudderstack] secret>` or the secret in `X-Rudderstack-Secret`",
    ))
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_header_passes_and_nothing_else_does() {
        let body = br#"{"type":"page"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let headers = |name: &'static str, value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(name, value.parse().unwrap());
            headers
        };
        assert!(check_secret("s3cret", &headers("x-signature", &format!("sha256={hex}")), body).is_ok());
        assert!(check_secret("s3cret", &headers("x-rudderstack-secret", "s3cret"), body).is_ok());
        for (name, value) in [
            ("x-signature", format!("sha256={hex}")),
            ("x-rudderstack-secret", "s3cre".to_owned()),
            ("x-signature", "sha256=zz".to_owned()),
        ] {
            let status = check_secret("other", &headers(name, &value), body).unwrap_err().status;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {value}");
        }
        assert!(check_secret("s3cret", &HeaderMap::new(), body).is_err());
    }
}
