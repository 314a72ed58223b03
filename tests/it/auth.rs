//! API keys: management endpoints need one (Bearer or X-API-Key), open endpoints do not, live streams
//! also take `?access_token=`; unknown routes and wrong methods answer the JSON error shape.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestServer, assert_error};

async fn keyed() -> TestServer {
    TestServer::with_config(|c| c.auth.api_keys = vec!["k1".into()]).await
}

/// Status and JSON body of a request made on the bare client (no key added unless the caller sets one).
async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, body)
}

/// Management requests: method, path, JSON body (for POSTs), and the status a keyed request gets.
fn management(event_id: &str) -> Vec<(Method, String, Option<Value>, StatusCode)> {
    vec![
        (Method::GET, "/api/v1/events".into(), None, StatusCode::OK),
        (Method::GET, "/api/v1/events?event_type=user.*".into(), None, StatusCode::OK),
        (Method::POST, "/api/v1/events/query".into(), Some(json!({"limit": 5})), StatusCode::OK),
        (Method::GET, format!("/api/v1/events/{event_id}"), None, StatusCode::OK),
        (Method::GET, "/api/v1/events/statistics".into(), None, StatusCode::OK),
        (Method::GET, "/api/v1/events/stream/user:1".into(), None, StatusCode::OK),
        (Method::GET, "/events".into(), None, StatusCode::OK),
        (Method::GET, "/api/v1/events/subscriptions".into(), None, StatusCode::OK),
        (Method::GET, "/webhooks".into(), None, StatusCode::OK),
        (Method::GET, "/api/v1/events/dlq".into(), None, StatusCode::OK),
        (Method::POST, "/api/v1/events/create".into(), Some(json!({"event_type": "auth.create"})), StatusCode::CREATED),
        (Method::POST, "/api/v1/events/batch".into(), Some(json!([{"event_type": "auth.batch"}])), StatusCode::OK),
        (Method::POST, "/events".into(), Some(json!({"type": "auth.seed"})), StatusCode::CREATED),
    ]
}

#[tokio::test]
async fn management_endpoints_need_a_valid_key_in_either_header() {
    let server = keyed().await;
    let seeded = server.create(json!({"event_type": "user.created", "stream_id": "user:1"})).await;
    let id = seeded["event_id"].as_str().unwrap().to_owned();

    for (method, path, body, keyed_status) in management(&id) {
        let request = || {
            let request = server.client.request(method.clone(), server.url(&path));
            match &body {
                Some(body) => request.json(body),
                None => request,
            }
        };
        let without = send(request()).await;
        assert_error(&without, StatusCode::UNAUTHORIZED, "unauthorized", "API key");
        for wrong in [
            request().bearer_auth("k2"),
            request().bearer_auth("k1x"),
            request().bearer_auth(""),
            request().header("X-API-Key", "K1"),
            request().header("Authorization", "Basic k1"),
            request().header("Authorization", "k1"),
            request().query(&[("access_token", "k1")]),
        ] {
            let answer = send(wrong).await;
            assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "");
        }
        let (status, answer) = send(request().bearer_auth("k1")).await;
        assert_eq!(status, keyed_status, "{method} {path} with Bearer k1: {answer}");
        let (status, answer) = send(request().header("X-API-Key", "k1")).await;
        assert_eq!(status, keyed_status, "{method} {path} with X-API-Key k1: {answer}");
    }

    // Only the keyed writes were stored: one create, one batch item and one seed create, twice each.
    let (status, page) = server.get("/api/v1/events").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 7, "{page}");
    let (status, page) = server.get("/api/v1/events?event_type=auth.>").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 6, "{page}");
    server.stop().await;
}

#[tokio::test]
async fn open_endpoints_need_no_key() {
    let server = keyed().await;
    let (status, health) = send(server.client.get(server.url("/health"))).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["storage"]["backend"], "sqlite");
    assert_eq!(health["storage"]["ok"], true);
    assert_eq!(health["nats"], "disabled");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["uptime_s"].is_u64(), "{health}");

    let (status, health) = send(server.client.get(server.url("/api/v1/events/frontend/health"))).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health, json!({"status": "ok", "nats": "disabled", "via_nats": false}));

    let (status, answer) =
        send(server.client.post(server.url("/api/v1/events/frontend")).json(&json!({"event_type": "page.view"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], true);
    let id = answer["event_id"].as_str().expect("event_id").to_owned();

    let batch = json!({"events": [{"event_type": "button.click"}, {"event_type": "form.submit"}]});
    let (status, answer) = send(server.client.post(server.url("/api/v1/events/frontend/batch")).json(&batch)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 2);

    // They were stored; reading them back is a management call and needs the key.
    let (status, event) = server.get(&format!("/api/v1/events/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(event["event_source"], "frontend");
    assert_error(
        &send(server.client.get(server.url(&format!("/api/v1/events/{id}")))).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "",
    );
    let (_, page) = server.get("/api/v1/events").await;
    assert_eq!(page["total"], 3, "{page}");
    server.stop().await;
}

#[tokio::test]
async fn live_stream_takes_the_key_as_access_token_too() {
    let server = keyed().await;
    for (path, key) in [
        ("/api/v1/events/live?access_token=k1", None),
        ("/api/v1/events/live?event_type=user.*&access_token=k1", None),
        ("/events/stream?access_token=k1", None),
        ("/api/v1/events/live", Some("k1")),
    ] {
        let mut request = server.client.get(server.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("open live");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(content_type.starts_with("text/event-stream"), "{path}: content-type {content_type:?}");
        drop(response);
    }

    for path in [
        "/api/v1/events/live",
        "/api/v1/events/live?access_token=k2",
        "/api/v1/events/live?access_token=",
        "/events/stream",
    ] {
        let answer = send(server.client.get(server.url(path))).await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "");
    }
    // The query token is for live streams only.
    for path in [
        "/api/v1/events?access_token=k1",
        "/api/v1/events/statistics?access_token=k1",
        "/events?access_token=k1",
        "/api/v1/events/stream/user:1?access_token=k1",
    ] {
        let answer = send(server.client.get(server.url(path))).await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "");
    }
    let answer = send(
        server.client.post(server.url("/api/v1/events/create?access_token=k1")).json(&json!({"event_type": "a.b"})),
    )
    .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "");
    let (_, page) = server.get("/api/v1/events").await;
    assert_eq!(page["total"], 0, "nothing stored by the rejected create: {page}");
    server.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_json_errors() {
    let server = keyed().await;
    for path in ["/api/v1/nope", "/api/v2/events", "/nothing/here"] {
        let answer = send(server.client.get(server.url(path)).bearer_auth("k1")).await;
        assert_error(&answer, StatusCode::NOT_FOUND, "not_found", path);
    }
    for (method, path) in [
        (Method::DELETE, "/api/v1/events/statistics"),
        (Method::PUT, "/api/v1/events/create"),
        (Method::POST, "/api/v1/events/statistics"),
        (Method::DELETE, "/health"),
        (Method::GET, "/api/v1/events/frontend"),
    ] {
        let answer = send(server.client.request(method.clone(), server.url(path)).bearer_auth("k1")).await;
        assert_error(&answer, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", path);
    }
    server.stop().await;
}
