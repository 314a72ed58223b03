//! Request extractors that answer bad input with API errors: JSON bodies (400 malformed, 422 naming the
//! field, 413 too large, 415 not sent as JSON where that is required) and query strings.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::error::ApiError;
use crate::domain::FieldError;

/// A management request's JSON body parsed into `T`; it must be sent with `Content-Type: application/json`
/// (or another `application/…+json` type), else 415. Browsers send other types cross-site without asking
/// the server first (a CORS preflight), so requiring JSON keeps any web page the operator opens from
/// driving the management API.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if !content_type.is_some_and(is_json) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "send the body as JSON with `Content-Type: application/json` (got {}): management requests \
                     need it, so that no web page can send them from another site",
                    content_type.map_or_else(|| "none".to_owned(), |t| format!("`{t}`")),
                ),
            ));
        }
        AnyJsonBody::from_request(request, state).await.map(|AnyJsonBody(value)| JsonBody(value))
    }
}

/// `application/json` or `application/<anything>+json`, parameters (`; charset=utf-8`) allowed.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A JSON body parsed into `T`, whatever its Content-Type: for ingest and reads, where `curl -d` (a form
/// type) and `navigator.sendBeacon` (text/plain) must work.
pub struct AnyJsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AnyJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let RawBody(bytes) = RawBody::from_request(request, state).await?;
        parse_json(&bytes).map(AnyJsonBody)
    }
}

/// The body's bytes as sent (for a signature over them), with a body past `[ingest] max_body_bytes`
/// answered 413 in the API's error shape rather than axum's plain-text one.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(request, state).await.map(RawBody).map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::malformed(format!("the request body could not be read: {rejection}"))
            }
        })
    }
}

/// The 413 of a body past `[ingest] max_body_bytes`.
pub fn too_large() -> ApiError {
    ApiError::too_large(
        "the request body is larger than [ingest] max_body_bytes allows: send fewer or smaller events per request",
    )
}

/// Parses JSON, telling a syntax error (400) from a value of the wrong shape (422, naming its path).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::malformed("the request body is empty: send a JSON document"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        // A streaming parser meets a mistyped field before a later syntax error; the body is still
        // malformed JSON first.
        let well_formed = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        match inner.classify() {
            Category::Data if well_formed => ApiError::invalid(FieldError::from_serde(&path, &inner.to_string())),
            _ => ApiError::malformed(format!("the request body is not valid JSON: {inner}")),
        }
    })?;
    deserializer.end().map_err(|e| ApiError::malformed(format!("the request body is not valid JSON: {e}")))?;
    Ok(value)
}

/// Converts an already-parsed JSON value into `T`, naming the failing field.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value)
        .map_err(|error| FieldError::from_serde(&error.path().to_string(), &error.into_inner().to_string()))
}

/// The query string as key-value pairs, in order.
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or_default()).map(Self)
    }
}

/// Decodes a query string as axum's `Query` does; 400 when it is not `key=value&…` or a parameter has
/// no name (`?=x`), which no parser could name in its answer.
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let malformed = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "malformed_query", message);
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|e| malformed(format!("the query string could not be read: {e}")))?;
    if let Some((_, value)) = pairs.iter().find(|(key, _)| key.trim().is_empty()) {
        return Err(malformed(format!(
            "the query string has a parameter without a name (`={value}`): remove it or name it"
        )));
    }
    Ok(pairs)
}

impl QueryPairs {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_media_types() {
        for accepted in ["application/json", "Application/JSON; charset=utf-8", "application/merge-patch+json"] {
            assert!(is_json(accepted), "{accepted}");
        }
        for refused in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "json", ""] {
            assert!(!is_json(refused), "{refused}");
        }
    }
}
