//! API keys on management endpoints: `Authorization: Bearer KEY` or `X-API-Key: KEY`; live streams also
//! take `?access_token=KEY`, because browsers' EventSource cannot send headers.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;

pub async fn headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    check(&state, request, next, false).await
}

pub async fn headers_or_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    check(&state, request, next, true).await
}

async fn check(state: &AppState, request: Request, next: Next, query_token: bool) -> Response {
    if authorized(&state.limits.api_keys, &request, query_token) {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

fn authorized(keys: &[String], request: &Request, query_token: bool) -> bool {
    if keys.is_empty() {
        return true;
    }
    let from_query = || request.uri().query().and_then(|query| url_param(query, "access_token"));
    let presented = header_key(request.headers()).or_else(|| if query_token { from_query() } else { None });
    presented.is_some_and(|key| keys.iter().any(|k| constant_time_eq(k.as_bytes(), key.as_bytes())))
}

fn header_key(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    bearer.or(api_key).map(|k| k.trim().to_owned())
}

fn url_param(query: &str, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Compares without stopping at the first difference, so response time does not reveal the key.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_either_header() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer k1".parse().unwrap());
        assert_eq!(header_key(&headers).as_deref(), Some("k1"));
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", "k2".parse().unwrap());
        assert_eq!(header_key(&headers).as_deref(), Some("k2"));
        assert_eq!(header_key(&HeaderMap::new()), None);
    }

    #[test]
    fn access_token_is_read_from_the_query() {
        assert_eq!(url_param("type=a&access_token=s%20t", "access_token").as_deref(), Some("s t"));
        assert_eq!(url_param("type=a", "access_token"), None);
    }

    #[test]
    fn comparison_needs_equal_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
