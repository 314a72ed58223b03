//! What wraps every route: request ids (`X-Request-Id`, set when missing or unusable and echoed on
//! every answer), one `request` span per request that its log lines carry, HTTP metrics by route
//! template, and CORS for browsers (frontend routes and the rest configured apart).

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestId, RequestId};
use tracing::Span;

use super::error::ApiError;
use super::state::AppState;
use crate::domain::trace::TraceParent;
use crate::telemetry;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id kept as sent; longer (or non-visible-ASCII) ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// A request's own id when it sent a usable one, else a new UUID v7 (tower-http's layer asks this only
/// when the header is missing; [`drop_unusable_request_id`] removes unusable ones first).
#[derive(Debug, Clone, Copy, Default)]
pub struct UuidV7RequestId;

impl MakeRequestId for UuidV7RequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut text);
        HeaderValue::from_str(text).ok().map(RequestId::new)
    }
}

/// Removes an `X-Request-Id` that is empty, longer than 128 bytes or not visible ASCII, so a new id is
/// made for the request instead of logging and echoing whatever a client sent.
pub fn drop_unusable_request_id(mut request: Request) -> Request {
    let usable = |value: &HeaderValue| {
        let bytes = value.as_bytes();
        !bytes.is_empty() && bytes.len() <= MAX_REQUEST_ID && bytes.iter().all(|b| (0x21..=0x7e).contains(b))
    };
    let headers = request.headers_mut();
    if headers.get_all(X_REQUEST_ID).iter().count() > 1 || headers.get(X_REQUEST_ID).is_some_and(|v| !usable(v)) {
        headers.remove(X_REQUEST_ID);
    }
    request
}

/// The span every log line of a request is written in: method, route template and request id. When
/// spans are exported, it continues the caller's `traceparent`.
pub fn request_span(request: &Request) -> Span {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
    let request_id = request.headers().get(X_REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        method = request.method().as_str(),
        route,
        request_id,
        otel.name = tracing::field::Empty,
        otel.kind = "server",
    );
    if telemetry::exporting() {
        span.record("otel.name", format!("{} {route}", request.method()));
        if let Some(parent) = traceparent(request.headers()) {
            telemetry::set_remote_parent(&span, &parent);
        }
    }
    span
}

/// The W3C `traceparent` a request carries, when well formed.
pub fn traceparent(headers: &axum::http::HeaderMap) -> Option<TraceParent> {
    headers.get("traceparent").and_then(|v| v.to_str().ok()).and_then(TraceParent::parse)
}

/// Counts the request and times it (to the response head) under its route template.
pub async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    let elapsed: Duration = started.elapsed();
    state.metrics.http_request(
        route.as_ref().map(MatchedPath::as_str),
        method.as_str(),
        response.status().as_u16(),
        elapsed,
    );
    response
}

/// Answers 503 `server_busy` at once when `[server] max_concurrent_requests` requests are already being
/// handled, rather than queueing them without end; the permit is held until the answer's head is ready.
pub async fn limit_concurrency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Ok(_permit) = state.limits.requests.clone().try_acquire_owned() else {
        let mut answer = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_busy",
            format!(
                "the server is handling its most concurrent requests ([server] max_concurrent_requests = {}): retry in a moment",
                state.limits.max_concurrent_requests
            ),
        )
        .into_response();
        answer.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return answer;
    };
    next.run(request).await
}

/// Answers 413 at once to a request whose `Content-Length` is past `[ingest] max_body_bytes`, before its
/// body comes: a client that announces a large body and sends it slowly (or never) holds nothing.
pub async fn refuse_oversized_bodies(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > state.limits.max_body_bytes as u64) {
        // The body is not read: hyper closes the connection after this answer.
        return super::extract::too_large().into_response();
    }
    next.run(request).await
}

/// The request headers a browser may send, named one by one: `*` does not cover `authorization`.
const ALLOWED_HEADERS: [HeaderName; 7] = [
    header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    header::CONTENT_TYPE,
    HeaderName::from_static("last-event-id"),
    X_REQUEST_ID,
    HeaderName::from_static("x-correlation-id"),
    HeaderName::from_static("traceparent"),
];

/// CORS for `origins` (`*` = any; empty = none, so no CORS headers at all): preflight answered with
/// the methods and the headers above; `X-Request-Id` readable by the page.
pub fn cors(origins: &[String], methods: &[Method]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods(methods.to_vec())
            .allow_headers(ALLOWED_HEADERS)
            .expose_headers([X_REQUEST_ID])
            .max_age(Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_id(id: &[u8]) -> Request {
        let mut request = Request::new(axum::body::Body::empty());
        request.headers_mut().insert(X_REQUEST_ID, HeaderValue::from_bytes(id).unwrap());
        request
    }

    #[test]
    fn usable_request_ids_stay_and_others_go() {
        let kept = drop_unusable_request_id(with_id(b"abc-123_x.y"));
        assert_eq!(kept.headers()[X_REQUEST_ID], "abc-123_x.y");
        let max = vec![b'a'; MAX_REQUEST_ID];
        assert!(drop_unusable_request_id(with_id(&max)).headers().contains_key(X_REQUEST_ID));
        for bad in [&b"has space"[..], &[b'a'; MAX_REQUEST_ID + 1], b"tab\there", b"\xc3\xa9t\xc3\xa9"] {
            assert!(!drop_unusable_request_id(with_id(bad)).headers().contains_key(X_REQUEST_ID), "{bad:?}");
        }
    }

    #[test]
    fn new_request_ids_are_uuid_v7() {
        let request = axum::http::Request::new(());
        let id = UuidV7RequestId.make_request_id(&request).unwrap();
        let parsed = uuid::Uuid::parse_str(id.header_value().to_str().unwrap()).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
    }
}
