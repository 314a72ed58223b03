//! Ingest over HTTP: create, the seed-compatible `POST /events`, idempotency, streams with expected
//! versions, batches with per-item errors, the frontend endpoints, and bad input of every kind.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestServer, assert_error};

/// Every field of an Event in API.md, in its order.
const EVENT_FIELDS: [&str; 20] = [
    "event_id",
    "seq",
    "event_type",
    "event_source",
    "event_category",
    "user_id",
    "tenant_id",
    "stream_id",
    "stream_version",
    "data",
    "metadata",
    "context",
    "correlation_id",
    "idempotency_key",
    "status",
    "retry_count",
    "error_message",
    "timestamp",
    "created_at",
    "processed_at",
];

const SOURCES: &str = "frontend, backend, system, iot_device, external_api, scheduled";
const CATEGORIES: &str = "user_action, page_view, form_submit, click, user_lifecycle, payment, order, task, system, \
     security, performance, error, device, device_status, telemetry, command, alert";

/// Asserts `value` is an RFC 3339 UTC time with exactly six fractional digits, e.g. `2026-01-02T03:04:05.123456Z`.
#[track_caller]
fn assert_api_time(value: &Value, what: &str) {
    let text = value.as_str().unwrap_or_else(|| panic!("{what} is not a string: {value}"));
    chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{what} {text:?} is not RFC 3339: {e}"));
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 27
        && bytes[10] == b'T'
        && bytes[19] == b'.'
        && bytes[20..26].iter().all(u8::is_ascii_digit)
        && bytes[26] == b'Z';
    assert!(shape_ok, "{what} {text:?} should look like 2026-01-02T03:04:05.123456Z");
}

#[track_caller]
fn assert_uuid_v7(value: &Value, what: &str) -> uuid::Uuid {
    let text = value.as_str().unwrap_or_else(|| panic!("{what} is not a string: {value}"));
    let id = uuid::Uuid::parse_str(text).unwrap_or_else(|e| panic!("{what} {text:?} is not a UUID: {e}"));
    assert_eq!(id.get_version_num(), 7, "{what} {text:?} should be a UUID v7");
    assert_eq!(text, id.hyphenated().to_string(), "{what} should be the hyphenated lower-case form");
    id
}

fn id_of(event: &Value) -> &str {
    event["event_id"].as_str().unwrap_or_else(|| panic!("no event_id in {event}"))
}

async fn get_event(server: &TestServer, id: &str) -> Value {
    let (status, event) = server.get(&format!("/api/v1/events/{id}")).await;
    assert_eq!(status, StatusCode::OK, "GET {id}: {event}");
    event
}

/// The total of a `GET /api/v1/events` query (e.g. `event_type=a.b`).
async fn total(server: &TestServer, query: &str) -> u64 {
    let (status, page) = server.get(&format!("/api/v1/events?{query}")).await;
    assert_eq!(status, StatusCode::OK, "query {query}: {page}");
    page["total"].as_u64().unwrap_or_else(|| panic!("no total in {page}"))
}

crate::on_every_backend! {
    #[tokio::test]
    async fn create_answers_a_complete_event_that_reads_return_unchanged() {
        let server = TestServer::start().await;
        let before = chrono::Utc::now();
        let (status, event) = server
            .post(
                "/api/v1/events/create",
                &json!({"event_type": "user.registered", "user_id": "user_123", "data": {"email": "a@b.c"}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{event}");

        let object = event.as_object().expect("an Event object");
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = EVENT_FIELDS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected, "exactly the Event fields of API.md: {event}");

        let id = assert_uuid_v7(&event["event_id"], "event_id");
        assert!(event["seq"].as_i64().is_some_and(|seq| seq >= 1), "seq is a positive integer: {event}");
        assert_eq!(event["event_type"], "user.registered");
        assert_eq!(event["event_source"], "backend", "default source");
        assert_eq!(event["event_category"], "system", "default category");
        assert_eq!(event["user_id"], "user_123");
        assert_eq!(event["data"], json!({"email": "a@b.c"}));
        assert_eq!(event["metadata"], json!({}));
        assert_eq!(event["context"], json!({}));
        for absent in [
            "tenant_id",
            "stream_id",
            "stream_version",
            "correlation_id",
            "idempotency_key",
            "error_message",
            "processed_at",
        ] {
            assert_eq!(event[absent], Value::Null, "{absent} of {event}");
        }
        assert_eq!(event["status"], "pending");
        assert_eq!(event["retry_count"], 0);
        assert_api_time(&event["timestamp"], "timestamp");
        assert_api_time(&event["created_at"], "created_at");
        // The default timestamp is "now".
        let stamped: chrono::DateTime<chrono::Utc> = event["timestamp"].as_str().unwrap().parse().unwrap();
        let after = chrono::Utc::now();
        assert!(
            stamped >= before - chrono::Duration::milliseconds(1) && stamped <= after,
            "timestamp {stamped} should be between {before} and {after}"
        );

        // What a create answers equals what later reads return, to the microsecond.
        assert_eq!(get_event(&server, id_of(&event)).await, event);
        let (status, page) = server.get("/api/v1/events?event_type=user.registered").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["events"], json!([event.clone()]));

        // A given timestamp is normalised to UTC microseconds, and the next event sorts after this one.
        let second =
            server.create(json!({"event_type": "user.registered", "timestamp": "2026-01-02T04:04:05.1234567+01:00"})).await;
        assert_eq!(second["timestamp"], "2026-01-02T03:04:05.123456Z");
        assert_api_time(&second["created_at"], "created_at");
        assert!(second["seq"].as_i64().unwrap() > event["seq"].as_i64().unwrap(), "seq increases");
        let second_id = assert_uuid_v7(&second["event_id"], "event_id");
        assert!(second_id > id, "v7 ids sort by time: {second_id} after {id}");
        assert_eq!(get_event(&server, id_of(&second)).await, second);
        server.stop().await;
    }

    #[tokio::test]
    async fn seed_compatible_post_events_maps_the_seed_fields() {
        let server = TestServer::start().await;
        let body = json!({
            "type": "order.paid",
            "source": "external_api",
            "payload": {"order_id": "o-1", "amount": 42.5},
            "metadata": {"origin": "seed"}
        });
        let (status, event) = server.post("/events", &body).await;
        assert_eq!(status, StatusCode::CREATED, "{event}");
        assert_uuid_v7(&event["event_id"], "event_id");
        assert_eq!(event["event_type"], "order.paid");
        assert_eq!(event["event_source"], "external_api");
        assert_eq!(event["event_category"], "system");
        assert_eq!(event["data"], json!({"order_id": "o-1", "amount": 42.5}));
        assert_eq!(event["metadata"], json!({"origin": "seed"}));
        assert_eq!(event["status"], "pending");
        assert_eq!(get_event(&server, id_of(&event)).await, event);

        // The seed form is validated like the canonical one.
        assert_error(
            &server.post("/events", &json!({"payload": {}})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "event_type",
        );
        assert_error(
            &server.post("/events", &json!({"type": "a.b", "source": "moon"})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            SOURCES,
        );
        assert_eq!(total(&server, "").await, 1);
        server.stop().await;
    }

    #[tokio::test]
    async fn idempotency_keys_return_the_stored_event_per_tenant() {
        let server = TestServer::start().await;
        let body = json!({"event_type": "order.paid", "idempotency_key": "pay-1", "data": {"n": 1}});
        let (status, first) = server.post("/api/v1/events/create", &body).await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        assert_eq!(first["idempotency_key"], "pay-1");

        // Same key, different content: 200 and the event stored the first time, unchanged.
        let again = json!({"event_type": "order.paid", "idempotency_key": "pay-1", "data": {"n": 2}});
        let (status, repeated) = server.post("/api/v1/events/create", &again).await;
        assert_eq!(status, StatusCode::OK, "{repeated}");
        assert_eq!(repeated, first, "a repeated key answers the stored event");

        // The same key under a tenant is another event; under that tenant it is idempotent too.
        let tenant = json!({"event_type": "order.paid", "idempotency_key": "pay-1", "tenant_id": "t2", "data": {"n": 3}});
        let (status, other) = server.post("/api/v1/events/create", &tenant).await;
        assert_eq!(status, StatusCode::CREATED, "{other}");
        assert_ne!(other["event_id"], first["event_id"]);
        assert_eq!(other["tenant_id"], "t2");
        assert_eq!(other["data"], json!({"n": 3}));
        let (status, other_again) = server.post("/api/v1/events/create", &tenant).await;
        assert_eq!(status, StatusCode::OK, "{other_again}");
        assert_eq!(other_again, other);
        assert_eq!(total(&server, "event_type=order.paid").await, 2);

        // In a batch: a key repeated inside it, and a key stored before.
        let batch = json!([
            {"event_type": "order.refunded", "idempotency_key": "ref-1", "data": {"i": 0}},
            {"event_type": "order.refunded", "idempotency_key": "ref-1", "data": {"i": 1}},
            {"event_type": "order.refunded", "idempotency_key": "ref-2", "data": {"i": 2}},
            {"event_type": "order.paid", "idempotency_key": "pay-1", "data": {"i": 3}}
        ]);
        let (status, answer) = server.post("/api/v1/events/batch", &batch).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["created"], 2, "{answer}");
        assert_eq!(answer["failed"], 0, "{answer}");
        let results = answer["results"].as_array().expect("results");
        assert_eq!(results.len(), 4);
        for (i, result) in results.iter().enumerate() {
            assert_eq!(result["index"], i, "{answer}");
        }
        assert_eq!(results[1]["event"]["event_id"], results[0]["event"]["event_id"], "duplicate inside the batch");
        assert_eq!(results[1]["event"]["data"], json!({"i": 0}), "the first of the batch is the one stored");
        assert_ne!(results[2]["event"]["event_id"], results[0]["event"]["event_id"]);
        assert_eq!(results[3]["event"], first, "a key stored earlier answers that event");
        assert_eq!(total(&server, "event_type=order.refunded").await, 2);
        assert_eq!(total(&server, "event_type=order.paid").await, 2);
        server.stop().await;
    }

    #[tokio::test]
    async fn streams_check_expected_versions_and_read_in_version_order() {
        let server = TestServer::start().await;
        let first = server
            .create(json!({"event_type": "user.created", "stream_id": "user:42", "expected_version": 0, "data": {"name": "Ann"}}))
            .await;
        assert_eq!(first["stream_id"], "user:42");
        assert_eq!(first["stream_version"], 1);
        let second = server
            .create(json!({"event_type": "user.renamed", "stream_id": "user:42", "expected_version": 1, "data": {"name": "Bo"}}))
            .await;
        assert_eq!(second["stream_version"], 2);

        // Stale or impossible expectations conflict and store nothing.
        for expected in [1, 0, 5] {
            let body = json!({"event_type": "user.renamed", "stream_id": "user:42", "expected_version": expected});
            let answer = server.post("/api/v1/events/create", &body).await;
            assert_error(&answer, StatusCode::CONFLICT, "stream_version_conflict", "user:42");
            let message = answer.1["error"]["message"].as_str().unwrap();
            assert!(message.contains('2'), "the message tells the current version 2: {message}");
        }
        // Another stream is independent: version 0 is right there.
        let other =
            server.create(json!({"event_type": "order.created", "stream_id": "order:1", "expected_version": 0})).await;
        assert_eq!(other["stream_version"], 1);

        // `from_version` is the first version wanted.
        let (status, read) = server.get("/api/v1/events/stream/user:42?from_version=2").await;
        assert_eq!(status, StatusCode::OK, "{read}");
        assert_eq!(read["stream_id"], "user:42");
        assert_eq!(read["version"], 2);
        assert_eq!(read["events"], json!([second.clone()]), "the events from version 2 on");
        let (_, read) = server.get("/api/v1/events/stream/user:42?from_version=1&limit=1").await;
        assert_eq!(read["events"], json!([first.clone()]), "version 1 included, at most `limit`");

        let (status, read) = server.get("/api/v1/events/stream/user:42").await;
        assert_eq!(status, StatusCode::OK, "{read}");
        assert_eq!(read["version"], 2, "the conflicts stored nothing");
        assert_eq!(read["events"], json!([first, second]));

        // Without expected_version there is no check, and the version still advances.
        let third = server.create(json!({"event_type": "user.renamed", "stream_id": "user:42"})).await;
        assert_eq!(third["stream_version"], 3);
        let (_, read) = server.get("/api/v1/events/stream/user:42?from_version=3").await;
        assert_eq!(read["version"], 3);
        assert_eq!(read["events"], json!([third]));
        let (_, read) = server.get("/api/v1/events/stream/user:42?from_version=4").await;
        assert_eq!((read["version"].clone(), read["events"].clone()), (json!(3), json!([])), "nothing after the end");

        assert_error(&server.get("/api/v1/events/stream/user:404").await, StatusCode::NOT_FOUND, "not_found", "user:404");
        assert_error(
            &server.get("/api/v1/events/stream/nocolon").await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "stream_id",
        );
        assert_error(
            &server.post("/api/v1/events/create", &json!({"event_type": "a.b", "stream_id": "nocolon"})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "stream_id",
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn batch_reports_each_item_in_request_order_and_stores_the_valid_ones() {
        let server = TestServer::start().await;
        server.create(json!({"event_type": "acct.opened", "stream_id": "acct:1"})).await;
        let batch = json!([
            {"event_type": "batch.ok", "data": {"i": 0}},
            {"event_type": "batch.bad", "event_source": "moon"},
            {"event_type": "batch.ok", "data": {"i": 2}, "user_id": "u2"},
            {"event_type": "batch.bad", "data": [1, 2]},
            {"event_type": "batch.bad", "user_id": 5},
            {"data": {"i": 5}},
            {"event_type": "batch.bad", "stream_id": "acct:1", "expected_version": 0},
            {"event_type": "batch.ok", "event_category": "order", "data": {"i": 7}}
        ]);
        let (status, answer) = server.post("/api/v1/events/batch", &batch).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["created"], 3, "{answer}");
        assert_eq!(answer["failed"], 5, "{answer}");
        let results = answer["results"].as_array().expect("results");
        assert_eq!(results.len(), 8, "{answer}");
        for (i, result) in results.iter().enumerate() {
            assert_eq!(result["index"], i, "results in request order: {answer}");
        }

        let failures = [
            (1, "validation_failed", "event_source"),
            (3, "validation_failed", "data"),
            (4, "validation_failed", "user_id"),
            (5, "validation_failed", "event_type"),
            (6, "stream_version_conflict", "acct:1"),
        ];
        for (index, code, mentions) in failures {
            let result = &results[index];
            assert!(result.get("event").is_none(), "item {index} failed: {result}");
            assert_eq!(result["error"]["code"], code, "item {index}: {result}");
            let message = result["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(mentions), "item {index}'s message {message:?} should name {mentions:?}");
        }
        let source_message = results[1]["error"]["message"].as_str().unwrap();
        assert!(source_message.contains(SOURCES), "accepted sources listed: {source_message}");

        let mut stored = Vec::new();
        for index in [0, 2, 7] {
            let event = &results[index]["event"];
            assert!(results[index].get("error").is_none(), "item {index} is stored: {}", results[index]);
            assert_eq!(event["event_type"], "batch.ok");
            assert_eq!(event["data"]["i"], index, "item {index} is the event sent at {index}");
            assert_eq!(get_event(&server, id_of(event)).await, *event, "item {index} is stored as answered");
            stored.push(event["seq"].as_i64().unwrap());
        }
        assert!(stored.windows(2).all(|w| w[0] < w[1]), "seqs follow request order: {stored:?}");
        assert_eq!(results[2]["event"]["user_id"], "u2");
        assert_eq!(results[7]["event"]["event_category"], "order");
        assert_eq!(total(&server, "event_type=batch.ok").await, 3);
        assert_eq!(total(&server, "event_type=batch.bad").await, 0, "nothing of the invalid items is stored");
        let (_, stream) = server.get("/api/v1/events/stream/acct:1").await;
        assert_eq!(stream["version"], 1, "the conflicting item did not advance the stream");
        server.stop().await;
    }

    #[tokio::test]
    async fn frontend_event_is_accepted_with_the_client_in_context() {
        let server = TestServer::start().await;
        let body = json!({
            "event_type": "button.click",
            "page_url": "https://shop.example/cart",
            "session_id": "sess-1",
            "user_id": "u-9",
            "properties": {"button": "checkout", "position": 2}
        });
        let response = server
            .client
            .post(server.url("/api/v1/events/frontend"))
            .header("User-Agent", "eventdeck-tests/1.0")
            .header("Referer", "https://shop.example/")
            .json(&body)
            .send()
            .await
            .expect("POST frontend");
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let answer: Value = response.json().await.expect("JSON answer");
        assert_eq!(answer.as_object().map(|o| o.len()), Some(2), "exactly accepted and event_id: {answer}");
        assert_eq!(answer["accepted"], true, "{answer}");
        assert_uuid_v7(&answer["event_id"], "event_id");

        let event = get_event(&server, answer["event_id"].as_str().unwrap()).await;
        assert_eq!(event["event_type"], "button.click");
        assert_eq!(event["event_source"], "frontend");
        assert_eq!(event["event_category"], "user_action", "default frontend category");
        assert_eq!(event["user_id"], "u-9");
        assert_eq!(event["data"], json!({"button": "checkout", "position": 2}), "data is the properties");
        assert_eq!(
            event["context"],
            json!({
                "ip": "127.0.0.1",
                "user_agent": "eventdeck-tests/1.0",
                "referer": "https://shop.example/",
                "page_url": "https://shop.example/cart",
                "session_id": "sess-1"
            })
        );
        assert_eq!(event["status"], "pending");

        // A category and a timestamp are taken as given.
        let (status, answer) = server
            .post(
                "/api/v1/events/frontend",
                &json!({"event_type": "page.view", "category": "page_view", "timestamp": "2026-03-01T12:00:00Z"}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let event = get_event(&server, answer["event_id"].as_str().unwrap()).await;
        assert_eq!(event["event_category"], "page_view");
        assert_eq!(event["event_source"], "frontend");
        assert_eq!(event["timestamp"], "2026-03-01T12:00:00.000000Z");
        assert_eq!(event["data"], json!({}));

        let invalid = server.post("/api/v1/events/frontend", &json!({"event_type": "a.b", "category": "nope"})).await;
        assert_error(&invalid, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "category");
        assert_error(
            &server.post("/api/v1/events/frontend", &json!({"event_type": "a.b", "properties": "x"})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "properties",
        );
        assert_eq!(total(&server, "").await, 2);
        server.stop().await;
    }

    #[tokio::test]
    async fn frontend_batch_answers_ids_in_order_and_is_all_or_nothing() {
        let server = TestServer::start().await;
        let client_info = json!({"app": "shop-web", "version": "3.1.4", "screen": {"w": 1280, "h": 720}});
        let body = json!({
            "events": [
                {"event_type": "page.view", "category": "page_view", "page_url": "/home", "session_id": "s-7"},
                {"event_type": "button.click", "properties": {"id": "buy"}, "user_id": "u-1"},
                {"event_type": "form.submit", "category": "form_submit", "properties": {"form": "signup"}}
            ],
            "client_info": client_info
        });
        let response = server
            .client
            .post(server.url("/api/v1/events/frontend/batch"))
            .header("User-Agent", "batch-agent/2")
            .json(&body)
            .send()
            .await
            .expect("POST frontend batch");
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let answer: Value = response.json().await.expect("JSON answer");
        assert_eq!(answer["accepted"], 3, "{answer}");
        let ids = answer["event_ids"].as_array().expect("event_ids");
        assert_eq!(ids.len(), 3, "{answer}");

        let expected = [("page.view", "page_view"), ("button.click", "user_action"), ("form.submit", "form_submit")];
        let mut seqs = Vec::new();
        for (id, (event_type, category)) in ids.iter().zip(expected) {
            assert_uuid_v7(id, "event_id");
            let event = get_event(&server, id.as_str().unwrap()).await;
            assert_eq!(event["event_type"], event_type, "ids in request order");
            assert_eq!(event["event_category"], category);
            assert_eq!(event["event_source"], "frontend");
            assert_eq!(event["context"]["client_info"], client_info);
            assert_eq!(event["context"]["ip"], "127.0.0.1");
            assert_eq!(event["context"]["user_agent"], "batch-agent/2");
            seqs.push(event["seq"].as_i64().unwrap());
        }
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "stored in request order: {seqs:?}");
        let first = get_event(&server, ids[0].as_str().unwrap()).await;
        assert_eq!(first["context"]["page_url"], "/home");
        assert_eq!(first["context"]["session_id"], "s-7");
        let second = get_event(&server, ids[1].as_str().unwrap()).await;
        assert_eq!(second["data"], json!({"id": "buy"}));
        assert_eq!(second["user_id"], "u-1");

        // One invalid item rejects the whole batch, naming where it is.
        let bad = json!({"events": [
            {"event_type": "page.view"},
            {"properties": {"x": 1}},
            {"event_type": "button.click"}
        ]});
        let answer = server.post("/api/v1/events/frontend/batch", &bad).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "events[1].event_type");
        assert_eq!(answer.1["error"]["field"], "events[1].event_type", "{}", answer.1);

        let bad = json!({"events": [{"event_type": "page.view"}, {"event_type": "x.y"}, {"event_type": "a.b", "category": "moon"}]});
        let answer = server.post("/api/v1/events/frontend/batch", &bad).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "events[2].category");
        assert_eq!(answer.1["error"]["field"], "events[2].category", "{}", answer.1);

        assert_eq!(total(&server, "").await, 3, "the rejected batches stored nothing");
        server.stop().await;
    }

    #[tokio::test]
    async fn bad_input_is_rejected_with_the_error_shape_and_stores_nothing() {
        let server = TestServer::with_config(|c| {
            c.ingest.max_body_bytes = 2048;
            c.ingest.max_batch = 5;
        })
        .await;
        let mut accepted = vec![
            server.create(json!({"event_type": "keep.one", "data": {"n": 1}})).await,
            server.create(json!({"event_type": "keep.two", "data": {"n": 2}})).await,
        ];

        // Syntax: 400.
        for body in ["{\"event_type\": ", "not json", "{\"event_type\": \"a.b\"} trailing", "{\"event_type\": \"a.b\",,}"] {
            assert_error(
                &server.post_raw("/api/v1/events/create", body).await,
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "",
            );
        }
        assert_error(
            &server.post_raw("/api/v1/events/create", "").await,
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "empty",
        );
        assert_error(
            &server.post_raw("/api/v1/events/batch", "").await,
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "empty",
        );
        assert_error(&server.post_raw("/api/v1/events/batch", "[{").await, StatusCode::BAD_REQUEST, "malformed_json", "");
        assert_error(&server.post_raw("/api/v1/events/frontend", "{").await, StatusCode::BAD_REQUEST, "malformed_json", "");
        assert_error(&server.post_raw("/events", "{{").await, StatusCode::BAD_REQUEST, "malformed_json", "");

        // Fields: 422 naming the field (and the accepted values where there is a list).
        let unprocessable = |body: Value, mentions: &'static str| {
            let server = &server;
            async move {
                let answer = server.post("/api/v1/events/create", &body).await;
                assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", mentions);
                answer.1
            }
        };
        let missing = unprocessable(json!({"data": {"a": 1}}), "event_type").await;
        assert_eq!(missing["error"]["field"], "event_type", "{missing}");
        unprocessable(json!({"event_type": ""}), "event_type").await;
        unprocessable(json!({"event_type": "user created"}), "event_type").await;
        unprocessable(json!({"event_type": "user.*"}), "event_type").await;
        let source = unprocessable(json!({"event_type": "a.b", "event_source": "mainframe"}), "event_source").await;
        let message = source["error"]["message"].as_str().unwrap();
        assert!(message.contains(SOURCES), "accepted sources listed: {message}");
        let category = unprocessable(json!({"event_type": "a.b", "event_category": "misc"}), "event_category").await;
        let message = category["error"]["message"].as_str().unwrap();
        assert!(message.contains(CATEGORIES), "accepted categories listed: {message}");
        unprocessable(json!({"event_type": "a.b", "data": [1, 2]}), "data").await;
        unprocessable(json!({"event_type": "a.b", "data": "text"}), "data").await;
        unprocessable(json!({"event_type": "a.b", "metadata": 3}), "metadata").await;
        unprocessable(json!({"event_type": "a.b", "context": true}), "context").await;
        unprocessable(json!({"event_type": "a.b", "timestamp": "yesterday"}), "timestamp").await;
        unprocessable(json!({"event_type": "a.b", "timestamp": "2026-01-02 03:04:05"}), "timestamp").await;
        let typed = unprocessable(json!({"event_type": "a.b", "user_id": 5}), "user_id").await;
        assert_eq!(typed["error"]["field"], "user_id", "{typed}");
        unprocessable(json!({"event_type": 7}), "event_type").await;
        unprocessable(json!({"event_type": "a.b", "user_id": ""}), "user_id").await;
        unprocessable(json!({"event_type": "a.b", "expected_version": 1}), "expected_version").await;
        unprocessable(json!({"event_type": "a.b", "stream_id": "s:1", "expected_version": -1}), "expected_version").await;
        unprocessable(json!(["a"]), "").await;
        assert_error(
            &server.post("/api/v1/events/batch", &json!({"event_type": "a.b"})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "",
        );

        // Size: 413 with the JSON error shape, for the body and for the batch.
        let big = json!({"event_type": "too.big", "data": {"blob": "x".repeat(4000)}});
        let answer = server.post("/api/v1/events/create", &big).await;
        assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "max_body_bytes");
        let answer = server.post("/api/v1/events/batch", &json!([big])).await;
        assert_eq!(answer.0, StatusCode::PAYLOAD_TOO_LARGE, "{}", answer.1);
        assert!(answer.1["error"]["message"].is_string(), "JSON error shape: {}", answer.1);
        let answer =
            server.post("/api/v1/events/frontend", &json!({"event_type": "too.big", "properties": big["data"]})).await;
        assert_eq!(answer.0, StatusCode::PAYLOAD_TOO_LARGE, "{}", answer.1);
        assert!(answer.1["error"]["code"].is_string(), "JSON error shape: {}", answer.1);

        let six: Vec<Value> = (0..6).map(|i| json!({"event_type": "over.limit", "data": {"i": i}})).collect();
        let answer = server.post("/api/v1/events/batch", &json!(six)).await;
        assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large", "6");
        assert!(answer.1["error"]["message"].as_str().unwrap().contains('5'), "names the limit: {}", answer.1);
        let six_frontend: Vec<Value> = (0..6).map(|_| json!({"event_type": "over.limit"})).collect();
        let answer = server.post("/api/v1/events/frontend/batch", &json!({"events": six_frontend})).await;
        assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large", "6");

        // Exactly max_batch is fine.
        let five: Vec<Value> = (0..5).map(|i| json!({"event_type": "at.limit", "data": {"i": i}})).collect();
        let (status, answer) = server.post("/api/v1/events/batch", &json!(five)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["created"], 5, "{answer}");
        accepted.extend(answer["results"].as_array().unwrap().iter().map(|r| r["event"].clone()));

        // Everything accepted is still there, and nothing else.
        assert_eq!(total(&server, "").await, accepted.len() as u64);
        for event in &accepted {
            assert_eq!(get_event(&server, id_of(event)).await, *event);
        }
        assert_eq!(total(&server, "event_type=too.big").await, 0);
        assert_eq!(total(&server, "event_type=over.limit").await, 0);
        server.stop().await;
    }

    /// A body that is not JSON is a 400 even when a field before the syntax error has the wrong type.
    #[tokio::test]
    async fn malformed_json_is_400_even_after_a_mistyped_field() {
        let server = TestServer::start().await;
        for body in ["{\"user_id\": 5, \"event_type\": ", "[1,", "{\"data\": [1], \"event_type\": \"a.b\""] {
            assert_error(
                &server.post_raw("/api/v1/events/create", body).await,
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "",
            );
        }
        assert_error(
            &server.post_raw("/api/v1/events/batch", "[{\"user_id\": 5},").await,
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "",
        );
        assert_eq!(total(&server, "").await, 0);
        server.stop().await;
    }

    /// Concurrent requests with one idempotency key store one event; concurrent `expected_version: 0` on one
    /// stream lets exactly one through.
    #[tokio::test]
    async fn concurrent_duplicates_and_stream_races_store_one_event() {
        let server = TestServer::start().await;
        let post = |body: Value| {
            let (client, url) = (server.client.clone(), server.url("/api/v1/events/create"));
            tokio::spawn(async move {
                let response = client.post(url).json(&body).send().await.expect("POST");
                let status = response.status();
                (status, response.json::<Value>().await.expect("JSON"))
            })
        };
        let keyed: Vec<_> = (0..20)
            .map(|i| post(json!({"event_type": "race.keyed", "idempotency_key": "same", "data": {"i": i}})))
            .collect();
        let streamed: Vec<_> = (0..20)
            .map(|i| {
                post(json!({"event_type": "race.stream", "stream_id": "race:1", "expected_version": 0, "data": {"i": i}}))
            })
            .collect();

        let mut ids = Vec::new();
        let mut created = 0;
        for task in keyed {
            let (status, event) = task.await.unwrap();
            match status {
                StatusCode::CREATED => created += 1,
                StatusCode::OK => {}
                other => panic!("keyed create answered {other}: {event}"),
            }
            ids.push(event["event_id"].clone());
        }
        assert_eq!(created, 1, "exactly one 201");
        assert!(ids.iter().all(|id| *id == ids[0]), "every answer is the one stored event: {ids:?}");
        assert_eq!(total(&server, "event_type=race.keyed").await, 1);

        let (mut won, mut conflicts) = (0, 0);
        for task in streamed {
            let (status, body) = task.await.unwrap();
            match status {
                StatusCode::CREATED => {
                    won += 1;
                    assert_eq!(body["stream_version"], 1, "{body}");
                }
                StatusCode::CONFLICT => {
                    conflicts += 1;
                    assert_eq!(body["error"]["code"], "stream_version_conflict", "{body}");
                }
                other => panic!("stream create answered {other}: {body}"),
            }
        }
        assert_eq!((won, conflicts), (1, 19));
        let (_, stream) = server.get("/api/v1/events/stream/race:1").await;
        assert_eq!(stream["version"], 1, "{stream}");
        assert_eq!(stream["events"].as_array().map(Vec::len), Some(1), "{stream}");
        server.stop().await;
    }
}
