//! Graceful limits: past `[server] max_concurrent_requests`, `[live] max_clients` and `[ingest]
//! max_body_bytes` the answer is an immediate 503 or 413 in the JSON error shape naming the key, never a
//! hang, and the server serves again once the load is gone.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TestServer, assert_error};

/// How long any refusal may take: it must come at once, not after a queue drains.
const PROMPT: Duration = Duration::from_secs(5);

fn addr(server: &TestServer) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// A `POST /api/v1/events/create` whose body never comes: the request is being handled (its handler waits
/// for the body) for as long as the connection stays open.
async fn hold_request(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /api/v1/events/create HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Reads an answer's head and body from a raw connection (for requests reqwest would not send).
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(PROMPT, async {
        loop {
            let n = stream.read(&mut buffer).await.unwrap_or(0);
            answer.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&answer);
            if n == 0 || text.contains("}}") {
                return;
            }
        }
    })
    .await
    .expect("answered at once");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn past_max_concurrent_requests_the_answer_is_an_immediate_503_naming_the_key() {
    let server = TestServer::with_config(|c| c.server.max_concurrent_requests = 2).await;
    let addr = addr(&server);
    let held = [hold_request(&addr).await, hold_request(&addr).await];
    // Both are being handled once a third is refused; give the server a moment to reach their handlers.
    let started = Instant::now();
    let refused = loop {
        let response =
            server.client.post(server.url("/api/v1/events/create")).json(&json!({"event_type": "x.y"})).send();
        let response = tokio::time::timeout(PROMPT, response).await.expect("no hang").unwrap();
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            break response;
        }
        assert!(started.elapsed() < PROMPT, "the third request was never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused.headers()["retry-after"], "1");
    let body = (refused.status(), refused.json().await.unwrap());
    assert_error(&body, StatusCode::SERVICE_UNAVAILABLE, "server_busy", "[server] max_concurrent_requests = 2");
    // Reads and management routes are bounded too; health, metrics and the live stream are not.
    assert_error(&server.get("/api/v1/events").await, StatusCode::SERVICE_UNAVAILABLE, "server_busy", "2");
    assert_eq!(server.get("/health").await.0, StatusCode::OK);
    let metrics = server.client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let _live = server.sse("/api/v1/events/live", &[]).await;

    drop(held);
    let started = Instant::now();
    loop {
        let (status, _) = server.post("/api/v1/events/create", &json!({"event_type": "x.y"})).await;
        if status == StatusCode::CREATED {
            break;
        }
        assert!(started.elapsed() < PROMPT, "the slots were not given back: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn past_live_max_clients_a_new_stream_gets_503_and_a_closed_one_frees_its_slot() {
    let server = TestServer::with_config(|c| {
        c.live.max_clients = 2;
        c.live.keep_alive_secs = 1;
    })
    .await;
    let first = server.sse("/api/v1/events/live", &[]).await;
    let _second = server.sse("/events/stream", &[]).await;
    let refused = tokio::time::timeout(PROMPT, server.get("/api/v1/events/live")).await.expect("no hang");
    assert_error(&refused, StatusCode::SERVICE_UNAVAILABLE, "too_many_live_clients", "[live] max_clients = 2");
    // Other requests are not affected.
    server.create(json!({"event_type": "x.y"})).await;

    // A client that goes away gives its slot back (noticed at the next keep-alive at the latest).
    drop(first);
    let started = Instant::now();
    loop {
        let response = server.client.get(server.url("/api/v1/events/live")).send().await.unwrap();
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the closed stream's slot was not freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn past_max_body_bytes_the_answer_is_413_naming_the_key_even_before_the_body_comes() {
    let server = TestServer::with_config(|c| c.ingest.max_body_bytes = 2048).await;
    let big = json!({"event_type": "x.y", "data": {"filler": "f".repeat(4096)}});
    for path in ["/api/v1/events/create", "/api/v1/events/batch", "/api/v1/events/frontend", "/webhooks/rudderstack"] {
        let answer = server.post(path, &big).await;
        assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "[ingest] max_body_bytes");
    }
    let subscription =
        json!({"subscriber_name": "s", "callback_url": "http://127.0.0.1:9/", "filler": "f".repeat(4096)});
    let answer = server.post("/api/v1/events/subscriptions", &subscription).await;
    assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "[ingest] max_body_bytes");

    // A client that announces 10 MB and sends nothing is refused from its Content-Length, at once.
    let addr = addr(&server);
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/events/create HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large") && answer.contains("max_body_bytes"), "{answer}");
}
