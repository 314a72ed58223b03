//! The HTTP routes of processors, replay, projections and processing results: validation (422s naming
//! the field, 404 for ids that cannot exist, 401 without a key) and the behaviour of API.md.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestServer, assert_error};

/// Asserts a 422 naming `field`.
#[track_caller]
fn assert_invalid(answer: &(StatusCode, Value), field: &str) {
    assert_error(answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", field);
    assert_eq!(answer.1["error"]["field"], field, "{}", answer.1);
}

async fn send(server: &TestServer, method: Method, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
    let mut request = server.client.request(method, server.url(path));
    if let Some(key) = &server.api_key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
}

/// A well-formed id that no server made.
const SOME_ID: &str = "6f0c1d2e-5b7a-4c3d-9e8f-0a1b2c3d4e5f";

#[tokio::test]
async fn processor_bodies_are_checked_field_by_field() {
    let server = TestServer::start().await;
    let cases = [
        (json!({"processor_type": "log"}), "processor_name"),
        (json!({"processor_name": "a"}), "processor_type"),
        (json!({"processor_name": "a", "processor_type": "teleport"}), "processor_type"),
        (json!({"processor_name": "", "processor_type": "log"}), "processor_name"),
        (json!({"processor_name": "a", "processor_type": "log", "config": "x"}), "config"),
        (json!({"processor_name": "a", "processor_type": "webhook"}), "config.url"),
        (json!({"processor_name": "a", "processor_type": "webhook", "config": {"url": "ftp://x"}}), "config.url"),
        (json!({"processor_name": "a", "processor_type": "nats"}), "config.subject"),
        (json!({"processor_name": "a", "processor_type": "redact", "config": {"fields": []}}), "config.fields"),
        (json!({"processor_name": "a", "processor_type": "log", "max_retries": 101}), "max_retries"),
        (json!({"processor_name": "a", "processor_type": "log", "max_retries": -1}), "max_retries"),
        (json!({"processor_name": "a", "processor_type": "log", "priority": "high"}), "priority"),
        (json!({"processor_name": "a", "processor_type": "log", "enabled": "yes"}), "enabled"),
        (
            json!({"processor_name": "a", "processor_type": "log", "filters": {"event_type": "a..b"}}),
            "filters.event_type",
        ),
        (
            json!({"processor_name": "a", "processor_type": "log", "filters": {"event_source": "moon"}}),
            "filters.event_source",
        ),
        (
            json!({"processor_name": "a", "processor_type": "log", "filters": {"event_category": "x"}}),
            "filters.event_category",
        ),
    ];
    for (body, field) in cases {
        let answer = server.post("/api/v1/events/processors", &body).await;
        assert_invalid(&answer, field);
    }
    let unknown_field = server.post("/api/v1/events/processors", &json!({"processor_name": "a", "kind": "log"})).await;
    assert_eq!(unknown_field.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", unknown_field.1);
    assert!(unknown_field.1["error"]["message"].as_str().unwrap().contains("kind"), "{}", unknown_field.1);
    let malformed = server.post_raw("/api/v1/events/processors", "{\"processor_name\": ").await;
    assert_error(&malformed, StatusCode::BAD_REQUEST, "malformed_json", "not valid JSON");
    server.stop().await;
}

#[tokio::test]
async fn toggle_and_delete_check_the_id_then_the_parameter() {
    let server = TestServer::start().await;
    let toggle = |id: &str, query: &str| format!("/api/v1/events/processors/{id}/toggle{query}");
    let answer = send(&server, Method::PUT, &toggle("nope", "?enabled=true"), None).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "processor id");
    let answer = send(&server, Method::DELETE, "/api/v1/events/processors/nope", None).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "processor id");
    for query in ["", "?enabled=yes", "?enabled=", "?on=true"] {
        let answer = send(&server, Method::PUT, &toggle(SOME_ID, query), None).await;
        let field = if query.starts_with("?on") { "on" } else { "enabled" };
        assert_invalid(&answer, field);
    }
    let answer = send(&server, Method::POST, &toggle(SOME_ID, "?enabled=true"), None).await;
    assert_eq!(answer.0, StatusCode::METHOD_NOT_ALLOWED, "{}", answer.1);
    server.stop().await;
}

#[tokio::test]
async fn replay_bodies_need_exactly_one_selection() {
    let server = TestServer::start().await;
    let cases = [
        (json!({}), "body"),
        (json!({"dry_run": true}), "body"),
        (json!({"event_ids": [SOME_ID], "stream_id": "user:1"}), "stream_id"),
        (json!({"stream_id": "user:1", "start_time": "2026-01-01T00:00:00Z"}), "start_time"),
        (json!({"event_ids": []}), "event_ids"),
        (json!({"event_ids": [SOME_ID, "x"]}), "event_ids[1]"),
        (json!({"event_ids": "x"}), "event_ids"),
        (json!({"stream_id": "user"}), "stream_id"),
        (json!({"start_time": "yesterday"}), "start_time"),
        (json!({"end_time": "2026-01-01"}), "end_time"),
        (json!({"start_time": "2026-01-02T00:00:00Z", "end_time": "2026-01-01T00:00:00Z"}), "end_time"),
        (json!({"stream_id": "user:1", "event_type": "a..b"}), "event_type"),
        (json!({"stream_id": "user:1", "event_source": "moon"}), "event_source"),
        (json!({"stream_id": "user:1", "target": {}}), "target"),
        (json!({"stream_id": "user:1", "target": {"subscription_id": SOME_ID, "processor_id": SOME_ID}}), "target"),
        (json!({"stream_id": "user:1", "target": {"processor_id": "p"}}), "target.processor_id"),
        (json!({"stream_id": "user:1", "dry_run": "yes"}), "dry_run"),
    ];
    for (body, field) in cases {
        let answer = server.post("/api/v1/events/replay", &body).await;
        assert_invalid(&answer, field);
    }
    let answer = server.get("/api/v1/events/replay/nope").await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "replay id");
    server.stop().await;
}

#[tokio::test]
async fn projection_parameters_and_result_ids_are_checked() {
    let server = TestServer::start().await;
    let base = "/api/v1/events/projections/user/1";
    let cases = [
        ("?at_version=0", "at_version"),
        ("?at_version=-2", "at_version"),
        ("?at_version=x", "at_version"),
        ("?at_time=noon", "at_time"),
        ("?at_version=1&at_time=2026-01-01T00:00:00Z", "at_time"),
        ("?version=1", "version"),
    ];
    for (query, field) in cases {
        let answer = server.get(&format!("{base}{query}")).await;
        assert_invalid(&answer, field);
    }
    assert_invalid(&server.get("/api/v1/events/projections/us:er/1").await, "entity_type");
    let answer = server.get("/api/v1/events/nope/results").await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "event id");
    server.stop().await;
}

#[tokio::test]
async fn the_new_routes_need_a_key_when_keys_are_set() {
    let server = TestServer::with_config(|c| c.auth.api_keys = vec!["k1".into()]).await;
    let routes = [
        (Method::GET, "/api/v1/events/processors".to_owned(), None),
        (
            Method::POST,
            "/api/v1/events/processors".to_owned(),
            Some(json!({"processor_name": "a", "processor_type": "log"})),
        ),
        (Method::PUT, format!("/api/v1/events/processors/{SOME_ID}/toggle?enabled=false"), None),
        (Method::DELETE, format!("/api/v1/events/processors/{SOME_ID}"), None),
        (Method::POST, "/api/v1/events/replay".to_owned(), Some(json!({"stream_id": "user:1", "dry_run": true}))),
        (Method::GET, format!("/api/v1/events/replay/{SOME_ID}"), None),
        (Method::GET, "/api/v1/events/projections/user/1".to_owned(), None),
        (Method::GET, format!("/api/v1/events/{SOME_ID}/results"), None),
    ];
    for (method, path, body) in routes {
        let mut request = server.client.request(method.clone(), server.url(&path));
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or_default();
        assert_error(&(status, answer), StatusCode::UNAUTHORIZED, "unauthorized", "API key");
        // With the key, the request gets past the gate (whatever the engine then answers).
        let keyed = send(&server, method.clone(), &path, body.as_ref()).await;
        assert_ne!(keyed.0, StatusCode::UNAUTHORIZED, "{method} {path}: {}", keyed.1);
    }
    server.stop().await;
}

// Behaviour: these need the engine's processors, replay and projections.

#[tokio::test]
async fn processors_are_created_listed_toggled_and_deleted() {
    let server = TestServer::start().await;
    let body = json!({
        "processor_name": "audit-log",
        "processor_type": "log",
        "priority": 7,
        "filters": {"event_type": "order.*", "event_source": "backend"},
        "config": {"level": "info"},
    });
    let (status, created) = server.post("/api/v1/events/processors", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["processor_name"], "audit-log");
    assert_eq!(created["processor_type"], "log");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["priority"], 7);
    assert_eq!(created["max_retries"], 3);
    assert_eq!(created["filters"], json!({"event_type": "order.*", "event_source": "backend", "event_category": null}));
    assert_eq!(created["config"], json!({"level": "info"}));
    let id = created["processor_id"].as_str().expect("an id").to_owned();

    let (status, list) = server.get("/api/v1/events/processors").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let listed = list["processors"].as_array().expect("processors").iter().find(|p| p["processor_id"] == id.as_str());
    let listed = listed.unwrap_or_else(|| panic!("{id} is not listed in {list}"));
    for totals in ["processed_count", "failed_count", "avg_duration_ms"] {
        assert!(listed[totals].is_number(), "{totals} in {listed}");
    }

    let duplicate = server
        .post("/api/v1/events/processors", &json!({"processor_name": "audit-log", "processor_type": "log"}))
        .await;
    assert_error(&duplicate, StatusCode::CONFLICT, "conflict", "audit-log");

    let (status, toggled) =
        send(&server, Method::PUT, &format!("/api/v1/events/processors/{id}/toggle?enabled=false"), None).await;
    assert_eq!(status, StatusCode::OK, "{toggled}");
    assert_eq!(toggled["enabled"], false);
    let (_, list) = server.get("/api/v1/events/processors").await;
    let listed = list["processors"].as_array().unwrap().iter().find(|p| p["processor_id"] == id.as_str()).cloned();
    assert_eq!(listed.expect("still listed")["enabled"], false);

    let (status, _) = send(&server, Method::DELETE, &format!("/api/v1/events/processors/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, list) = server.get("/api/v1/events/processors").await;
    assert!(list["processors"].as_array().unwrap().iter().all(|p| p["processor_id"] != id.as_str()), "{list}");
    let again = send(&server, Method::DELETE, &format!("/api/v1/events/processors/{id}"), None).await;
    assert_error(&again, StatusCode::NOT_FOUND, "not_found", &id);
    let toggle =
        send(&server, Method::PUT, &format!("/api/v1/events/processors/{SOME_ID}/toggle?enabled=true"), None).await;
    assert_error(&toggle, StatusCode::NOT_FOUND, "not_found", SOME_ID);
    server.stop().await;
}

#[tokio::test]
async fn a_dry_run_lists_the_selection_and_a_replay_completes() {
    let server = TestServer::start().await;
    for i in 0..3 {
        server.create(json!({"event_type": "cart.updated", "stream_id": "cart:1", "data": {"i": i}})).await;
    }
    server.create(json!({"event_type": "cart.updated", "stream_id": "cart:2"})).await;

    let (status, preview) =
        server.post("/api/v1/events/replay", &json!({"stream_id": "cart:1", "dry_run": true})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{preview}");
    assert_eq!(preview["replay_id"], Value::Null);
    assert_eq!(preview["status"], "dry_run");
    assert_eq!(preview["events_count"], 3);
    let data: Vec<&Value> = preview["events"].as_array().expect("events").iter().map(|e| &e["data"]["i"]).collect();
    assert_eq!(data, [&json!(0), &json!(1), &json!(2)]);

    let (status, started) = server.post("/api/v1/events/replay", &json!({"stream_id": "cart:1"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_eq!(started["status"], "running");
    assert_eq!(started["events_count"], 3);
    let id = started["replay_id"].as_str().expect("a replay id").to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, progress) = server.get(&format!("/api/v1/events/replay/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{progress}");
        assert_eq!(progress["replay_id"], id.as_str());
        if progress["status"] == "completed" {
            assert_eq!(progress["done"], progress["total"], "{progress}");
            assert!(progress["finished_at"].is_string(), "{progress}");
            break;
        }
        assert_eq!(progress["status"], "running", "{progress}");
        assert!(tokio::time::Instant::now() < deadline, "the replay did not complete: {progress}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unknown = server.get(&format!("/api/v1/events/replay/{SOME_ID}")).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found", SOME_ID);
    server.stop().await;
}

#[tokio::test]
async fn a_stream_longer_than_a_replay_page_is_selected_once_each() {
    let server = TestServer::start().await;
    // More than a replay reads per page (500), so the selection goes on from the last version read.
    let events: Vec<Value> =
        (0..501).map(|i| json!({"event_type": "cart.updated", "stream_id": "cart:long", "data": {"i": i}})).collect();
    let (status, stored) = server.post("/api/v1/events/batch", &json!(events)).await;
    assert_eq!((status, &stored["created"]), (StatusCode::OK, &json!(501)), "{stored}");
    let (status, preview) =
        server.post("/api/v1/events/replay", &json!({"stream_id": "cart:long", "dry_run": true})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{preview}");
    assert_eq!(preview["events_count"], 501, "no event missed or read twice at the page boundary");
    server.stop().await;
}

#[tokio::test]
async fn projections_fold_the_stream_now_and_as_it_was() {
    let server = TestServer::start().await;
    let first = server
        .create(json!({"event_type": "user.created", "stream_id": "user:9", "data": {"name": "Ann", "plan": "free"}}))
        .await;
    let second = server
        .create(json!({"event_type": "user.upgraded", "stream_id": "user:9", "data": {"plan": "pro", "name": null}}))
        .await;

    let (status, now) = server.get("/api/v1/events/projections/user/9").await;
    assert_eq!(status, StatusCode::OK, "{now}");
    assert_eq!(now["entity_type"], "user");
    assert_eq!(now["entity_id"], "9");
    assert_eq!(now["state"], json!({"plan": "pro"}));
    assert_eq!(now["version"], 2);
    assert_eq!(now["last_event_id"], second["event_id"]);

    let (status, then) = server.get("/api/v1/events/projections/user/9?at_version=1").await;
    assert_eq!(status, StatusCode::OK, "{then}");
    assert_eq!(then["state"], json!({"name": "Ann", "plan": "free"}));
    assert_eq!(then["last_event_id"], first["event_id"]);
    let at_time = first["timestamp"].as_str().unwrap().replace('+', "%2B");
    let (status, then) = server.get(&format!("/api/v1/events/projections/user/9?at_time={at_time}")).await;
    assert_eq!((status, &then["version"]), (StatusCode::OK, &json!(1)), "{then}");

    let unknown = server.get("/api/v1/events/projections/user/404").await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found", "404");
    server.stop().await;
}

#[tokio::test]
async fn results_list_an_events_processor_runs() {
    let server = TestServer::start().await;
    let event = server.create(json!({"event_type": "user.created", "stream_id": "user:5"})).await;
    let id = event["event_id"].as_str().unwrap();
    let (status, answer) = server.get(&format!("/api/v1/events/{id}/results")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["results"].is_array(), "{answer}");
    let unknown = server.get(&format!("/api/v1/events/{SOME_ID}/results")).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found", SOME_ID);
    server.stop().await;
}
