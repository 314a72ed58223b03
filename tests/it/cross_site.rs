//! Cross-site requests: management bodies must be sent as JSON (a web page cannot send that cross-site
//! without a CORS preflight), while ingest keeps reading any body as JSON (`curl -d`, sendBeacon).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestServer, assert_error};

/// Sends `body` with `content_type` (none when `None`), as a browser form or beacon would.
async fn send(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    content_type: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    let mut request = server.client.request(method, server.url(path)).body(body.to_string());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn management_bodies_that_are_not_json_get_415_and_change_nothing() {
    let server = TestServer::start().await;
    let forward_everything =
        json!({"subscriber_name": "x", "event_types": [">"], "callback_url": "http://attacker.example/c"});
    let subscription =
        server.post("/api/v1/events/subscriptions", &json!({"callback_url": "http://127.0.0.1:9/a"})).await.1;
    let subscription_path =
        format!("/api/v1/events/subscriptions/{}", subscription["subscription_id"].as_str().unwrap());
    let post = reqwest::Method::POST;
    let cases = [
        (post.clone(), "/api/v1/events/subscriptions", forward_everything.clone()),
        (post.clone(), "/webhooks", json!({"url": "http://attacker.example/c", "events": [">"]})),
        (reqwest::Method::PATCH, subscription_path.as_str(), json!({"callback_url": "http://attacker.example/c"})),
        (post.clone(), "/api/v1/events/processors", json!({"processor_name": "p", "processor_type": "log"})),
        (post.clone(), "/api/v1/events/dlq/retry", json!({"all": true})),
        (post.clone(), "/api/v1/events/replay", json!({"stream_id": "a:1", "dry_run": true})),
    ];
    for (method, path, body) in &cases {
        for content_type in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            None,
        ] {
            let answer = send(&server, method.clone(), path, content_type, body).await;
            assert_error(
                &answer,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Content-Type: application/json",
            );
        }
    }
    let (_, list) = server.get("/api/v1/events/subscriptions").await;
    assert_eq!(list["subscriptions"].as_array().unwrap().len(), 1, "nothing was created: {list}");
    assert_eq!(list["subscriptions"][0]["callback_url"], "http://127.0.0.1:9/a", "nothing was changed");
    let (_, processors) = server.get("/api/v1/events/processors").await;
    assert!(processors["processors"].as_array().unwrap().iter().all(|p| p["processor_name"] != "p"));

    // The same requests as JSON go through (a charset parameter is fine).
    let answer = send(
        &server,
        post,
        "/api/v1/events/subscriptions",
        Some("application/json; charset=utf-8"),
        &forward_everything,
    )
    .await;
    assert_eq!(answer.0, StatusCode::CREATED, "{}", answer.1);
    server.stop().await;
}

#[tokio::test]
async fn ingest_reads_any_body_as_json() {
    let server = TestServer::start().await;
    let event = json!({"event_type": "page.viewed"});
    for content_type in [Some("text/plain;charset=UTF-8"), Some("application/x-www-form-urlencoded"), None] {
        let (status, created) =
            send(&server, reqwest::Method::POST, "/api/v1/events/create", content_type, &event).await;
        assert_eq!(status, StatusCode::CREATED, "{content_type:?}: {created}");
        let (status, batch) =
            send(&server, reqwest::Method::POST, "/api/v1/events/batch", content_type, &json!([event])).await;
        assert_eq!((status, batch["created"].as_u64()), (StatusCode::OK, Some(1)), "{content_type:?}: {batch}");
        // navigator.sendBeacon posts text/plain.
        let (status, accepted) = send(
            &server,
            reqwest::Method::POST,
            "/api/v1/events/frontend",
            content_type,
            &json!({"event_type": "click"}),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{content_type:?}: {accepted}");
    }
    server.stop().await;
}
