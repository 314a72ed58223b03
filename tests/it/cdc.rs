//! Change data capture over HTTP: `<collection>.insert|update|delete` events put on their document's
//! stream, the projection that is the document (replaced, not merged; null after a delete), point-in-time
//! recovery by version and time through snapshots, and the 422s of a change event without its `doc_id`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestServer, assert_error};

fn time(second: u32) -> String {
    format!("2026-04-01T08:00:{second:02}Z")
}

/// Stores a change event at second `second` and returns it.
async fn change(server: &TestServer, event_type: &str, data: Value, second: u32) -> Value {
    server.create(json!({"event_type": event_type, "data": data, "timestamp": time(second)})).await
}

async fn projection(server: &TestServer, path: &str) -> Value {
    let (status, body) = server.get(&format!("/api/v1/events/projections/{path}")).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

crate::on_every_backend! {
    #[tokio::test]
    async fn a_documents_changes_are_its_stream_and_its_projection_is_the_document() {
        let server = TestServer::start().await;
        let v1 = json!({"name": "Ann", "email": "ann@example.com", "address": {"city": "Oslo", "zip": "0150"}});
        // The update's doc drops `address` and `email`: a merge would keep them, a replace does not.
        let v2 = json!({"name": "Ann B", "plan": "pro"});
        let inserted = change(&server, "users.insert", json!({"doc_id": "u1", "doc": v1}), 10).await;
        assert_eq!((inserted["stream_id"].clone(), inserted["stream_version"].clone()), (json!("users:u1"), json!(1)));
        let updated = change(&server, "users.update", json!({"doc_id": "u1", "doc": v2, "prev": v1}), 20).await;
        assert_eq!((updated["stream_id"].clone(), updated["stream_version"].clone()), (json!("users:u1"), json!(2)));
        // Another document of the collection has a stream of its own; numbers are ids too.
        let other = change(&server, "users.insert", json!({"doc_id": 7, "doc": {"name": "Bo"}}), 21).await;
        assert_eq!(other["stream_id"], "users:7");

        let latest = projection(&server, "users/u1").await;
        assert_eq!(
            latest,
            json!({
                "entity_type": "users",
                "entity_id": "u1",
                "state": v2,
                "version": 2,
                "last_event_id": updated["event_id"],
                "updated_at": updated["timestamp"],
            })
        );
        assert_eq!(projection(&server, "users/7").await["state"], json!({"name": "Bo"}));

        let deleted = change(&server, "users.delete", json!({"doc_id": "u1", "prev": v2}), 30).await;
        assert_eq!(deleted["stream_version"], 3);
        let gone = projection(&server, "users/u1").await;
        assert_eq!((gone["state"].clone(), gone["version"].clone()), (Value::Null, json!(3)));
        let v3 = json!({"name": "Ann again"});
        change(&server, "users.insert", json!({"doc_id": "u1", "doc": v3}), 40).await;

        // Point-in-time recovery: by version, and by time (a time before the first change is 404).
        for (version, state) in [(1, &v1), (2, &v2), (3, &Value::Null), (4, &v3)] {
            let read = projection(&server, &format!("users/u1?at_version={version}")).await;
            assert_eq!(read["state"], *state, "at_version={version}");
        }
        for (second, state, version) in [(10, &v1, 1), (19, &v1, 1), (20, &v2, 2), (35, &Value::Null, 3), (59, &v3, 4)] {
            let read = projection(&server, &format!("users/u1?at_time={}", time(second))).await;
            assert_eq!((&read["state"], &read["version"]), (state, &json!(version)), "at_time second {second}");
        }
        let before = server.get(&format!("/api/v1/events/projections/users/u1?at_time={}", time(9))).await;
        assert_error(&before, StatusCode::NOT_FOUND, "not_found", "users:u1");

        // The stream endpoint lists the changes in order, `prev` kept as sent.
        let (status, stream) = server.get("/api/v1/events/stream/users:u1").await;
        assert_eq!(status, StatusCode::OK, "{stream}");
        let types: Vec<&str> = stream["events"].as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap()).collect();
        assert_eq!(types, ["users.insert", "users.update", "users.delete", "users.insert"]);
        assert_eq!(stream["events"][1]["data"]["prev"], v1);
        server.stop().await;
    }

    #[tokio::test]
    async fn dotted_collections_given_streams_batches_and_browser_events() {
        let server = TestServer::start().await;
        let order = change(&server, "shop.orders.insert", json!({"doc_id": 42, "doc": {"total": 10}}), 1).await;
        assert_eq!(order["stream_id"], "shop.orders:42", "the collection is everything before the last segment");
        assert_eq!(projection(&server, "shop.orders/42").await["state"], json!({"total": 10}));

        // A stream given is kept (with expected_version), and the projection there is still the document.
        let given = json!({"event_type": "users.insert", "stream_id": "tenant-a:user-1", "expected_version": 0,
            "data": {"doc_id": "1", "doc": {"name": "T"}}});
        let stored = server.create(given).await;
        assert_eq!(stored["stream_id"], "tenant-a:user-1");
        assert_eq!(projection(&server, "tenant-a/user-1").await["state"], json!({"name": "T"}));
        // expected_version with no stream_id refers to the document's stream.
        let (status, body) = server
            .post("/api/v1/events/create", &json!({"event_type": "shop.orders.update", "expected_version": 1,
                "data": {"doc_id": 42, "doc": {"total": 12}}}))
            .await;
        assert_eq!((status, body["stream_version"].clone()), (StatusCode::CREATED, json!(2)), "{body}");
        let (status, body) = server
            .post("/api/v1/events/create", &json!({"event_type": "shop.orders.update", "expected_version": 1,
                "data": {"doc_id": 42, "doc": {"total": 13}}}))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");

        let batch = json!([
            {"event_type": "tasks.insert", "data": {"doc_id": "t1", "doc": {"title": "a"}}},
            {"event_type": "tasks.update", "data": {"doc_id": "t1", "doc": {"title": "b"}}},
            {"event_type": "task.updated", "data": {"title": "not a change event"}},
        ]);
        let (status, answer) = server.post("/api/v1/events/batch", &batch).await;
        assert_eq!((status, answer["created"].clone()), (StatusCode::OK, json!(3)), "{answer}");
        let streams: Vec<&Value> = answer["results"].as_array().unwrap().iter().map(|r| &r["event"]["stream_id"]).collect();
        assert_eq!(streams, [&json!("tasks:t1"), &json!("tasks:t1"), &Value::Null]);
        assert_eq!(projection(&server, "tasks/t1").await["state"], json!({"title": "b"}));

        let (status, body) = server
            .post("/api/v1/events/frontend", &json!({"event_type": "carts.update",
                "properties": {"doc_id": "c9", "doc": {"items": 2}}}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(projection(&server, "carts/c9").await["state"], json!({"items": 2}));
        server.stop().await;
    }

    #[tokio::test]
    async fn a_change_event_without_its_doc_id_is_422_naming_the_field() {
        let server = TestServer::start().await;
        for data in [json!({"doc": {"a": 1}}), json!({"doc_id": null, "doc": {}}), json!({"doc_id": true, "doc": {}}), json!({"doc_id": ""})] {
            let answer = server.post("/api/v1/events/create", &json!({"event_type": "users.update", "data": data})).await;
            assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "");
            assert_eq!(answer.1["error"]["field"], "data.doc_id", "{data}: {}", answer.1);
        }
        let missing_doc = server.post("/api/v1/events/create", &json!({"event_type": "users.insert", "data": {"doc_id": 1}})).await;
        assert_error(&missing_doc, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "whole document");
        assert_eq!(missing_doc.1["error"]["field"], "data.doc");
        let no_data = server.post("/api/v1/events/create", &json!({"event_type": "users.delete"})).await;
        assert_eq!((no_data.0, no_data.1["error"]["field"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("data.doc_id")));

        // In a batch the item fails, the others are stored.
        let batch = json!([
            {"event_type": "users.insert", "data": {"doc_id": "ok", "doc": {}}},
            {"event_type": "users.update", "data": {"doc": {"x": 1}}},
        ]);
        let (status, answer) = server.post("/api/v1/events/batch", &batch).await;
        assert_eq!((status, answer["created"].clone(), answer["failed"].clone()), (StatusCode::OK, json!(1), json!(1)), "{answer}");
        let failed = &answer["results"][1];
        assert_eq!((failed["index"].clone(), failed["error"]["field"].clone()), (json!(1), json!("data.doc_id")), "{answer}");
        assert_eq!(failed["error"]["code"], "validation_failed");

        // Browser events name the field as they send it.
        let single = server.post("/api/v1/events/frontend", &json!({"event_type": "users.update", "properties": {"doc": {}}})).await;
        assert_eq!((single.0, single.1["error"]["field"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("properties.doc_id")), "{}", single.1);
        let frontend_batch = json!({"events": [
            {"event_type": "page.viewed"},
            {"event_type": "users.delete", "properties": {}},
        ]});
        let batch = server.post("/api/v1/events/frontend/batch", &frontend_batch).await;
        assert_eq!((batch.0, batch.1["error"]["field"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("events[1].properties.doc_id")), "{}", batch.1);

        // Types that only look alike are not change events.
        for event_type in ["users.updated", "users.inserted", "update"] {
            let answer = server.post("/api/v1/events/create", &json!({"event_type": event_type, "data": {"x": 1}})).await;
            assert_eq!(answer.0, StatusCode::CREATED, "{event_type}: {}", answer.1);
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn point_in_time_recovery_reads_through_snapshots() {
        let server = TestServer::with_config(|config| {
            config.projections.snapshot_every = 4;
            config.processing.enabled = true;
        })
        .await;
        let mut docs = Vec::new();
        for i in 0..19u32 {
            // Each version's document has one key of its own, so any merge would show.
            let doc = json!({ format!("k{i}"): i, "n": i });
            let event_type = if i == 0 { "items.insert" } else { "items.update" };
            change(&server, event_type, json!({"doc_id": "i1", "doc": doc}), i).await;
            docs.push(doc);
        }
        // Wait until the projection processor has folded the stream (snapshots at 4, 8, 12, 16).
        let store = server.engine.store().clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while store.cached_projection("items:i1").await.unwrap().is_none_or(|c| c.fold.version < 19) {
            assert!(tokio::time::Instant::now() < deadline, "the projection processor never caught up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(store.snapshot_at_version("items:i1", 16).await.unwrap().is_some_and(|s| s.fold.state == docs[15]));
        for (i, doc) in docs.iter().enumerate() {
            let by_version = projection(&server, &format!("items/i1?at_version={}", i + 1)).await;
            assert_eq!(&by_version["state"], doc, "at_version={}", i + 1);
            let by_time = projection(&server, &format!("items/i1?at_time={}", time(i as u32))).await;
            assert_eq!(&by_time["state"], doc, "at_time second {i}");
        }
        server.stop().await;
    }
}
