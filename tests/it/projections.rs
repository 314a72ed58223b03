//! Projections over HTTP: the merge-patch fold of an entity's stream, `.deleted`, time travel by version
//! and by time, 404s, and the snapshots kept every `[projections] snapshot_every` versions.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestServer, assert_error};
use eventdeck::domain::Timestamp;

/// Stores an event on `stream_id` with `data`, stamped at second `second` of 2026-03-01 10:00.
async fn put(server: &TestServer, stream_id: &str, event_type: &str, data: Value, second: u32) -> Value {
    let timestamp = format!("2026-03-01T10:00:{second:02}Z");
    server.create(json!({"event_type": event_type, "stream_id": stream_id, "data": data, "timestamp": timestamp})).await
}

fn time(second: u32) -> String {
    format!("2026-03-01T10:00:{second:02}Z")
}

async fn projection(server: &TestServer, path: &str) -> Value {
    let (status, body) = server.get(&format!("/api/v1/events/projections/{path}")).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

crate::on_every_backend! {
    #[tokio::test]
    async fn state_is_the_merge_patch_fold_and_deleted_resets_it() {
        let server = TestServer::start().await;
        put(
            &server,
            "user:42",
            "user.created",
            json!({"name": "Ann", "email": "ann@example.com", "address": {"city": "Oslo", "zip": "0150"}}),
            1,
        )
        .await;
        put(&server, "user:42", "user.updated", json!({"email": "ann@example.org", "address": {"zip": null}}), 2).await;
        let third = put(&server, "user:42", "user.tagged", json!({"tags": ["vip"], "name": null}), 3).await;
        put(&server, "user:43", "user.created", json!({"name": "Bo"}), 4).await;

        let ann = projection(&server, "user/42").await;
        assert_eq!(
            ann,
            json!({
                "entity_type": "user",
                "entity_id": "42",
                "state": {"email": "ann@example.org", "address": {"city": "Oslo"}, "tags": ["vip"]},
                "version": 3,
                "last_event_id": third["event_id"],
                "updated_at": third["timestamp"],
            })
        );
        assert_eq!(projection(&server, "user/43").await["state"], json!({"name": "Bo"}));

        let deleted = put(&server, "user:42", "user.deleted", json!({"reason": "asked"}), 5).await;
        let gone = projection(&server, "user/42").await;
        assert_eq!(gone["state"], Value::Null, "a .deleted event empties the state: {gone}");
        assert_eq!((gone["version"].clone(), gone["last_event_id"].clone()), (json!(4), deleted["event_id"].clone()));

        put(&server, "user:42", "user.created", json!({"name": "Ann again"}), 6).await;
        let again = projection(&server, "user/42").await;
        assert_eq!(again["state"], json!({"name": "Ann again"}), "recreated from nothing, not from before the delete");
        assert_eq!(again["version"], 5);
        // The state before the delete is still there to read back.
        assert_eq!(projection(&server, "user/42?at_version=3").await["state"], ann["state"]);
        server.stop().await;
    }

    #[tokio::test]
    async fn at_version_and_at_time_give_the_state_as_it_was() {
        let server = TestServer::start().await;
        put(&server, "order:7", "order.created", json!({"status": "new", "total": 10}), 10).await;
        let paid = put(&server, "order:7", "order.paid", json!({"status": "paid"}), 20).await;
        put(&server, "order:7", "order.shipped", json!({"status": "shipped", "carrier": "dhl"}), 30).await;
        // Stored last, but it happened at second 15: time travel folds it in wherever its time says.
        let late = put(&server, "order:7", "order.discounted", json!({"total": 8}), 15).await;

        let at_version = projection(&server, "order/7?at_version=2").await;
        assert_eq!(
            (at_version["state"].clone(), at_version["version"].clone()),
            (json!({"status": "paid", "total": 10}), json!(2))
        );
        assert_eq!(
            (at_version["last_event_id"].clone(), at_version["updated_at"].clone()),
            (paid["event_id"].clone(), paid["timestamp"].clone())
        );

        let cases = [
            (10, json!({"status": "new", "total": 10}), 1),
            (14, json!({"status": "new", "total": 10}), 1),
            (15, json!({"status": "new", "total": 8}), 4),
            (25, json!({"status": "paid", "total": 8}), 4),
            (59, json!({"status": "shipped", "total": 8, "carrier": "dhl"}), 4),
        ];
        for (second, state, version) in cases {
            let read = projection(&server, &format!("order/7?at_time={}", time(second))).await;
            assert_eq!((read["state"].clone(), read["version"].clone()), (state, json!(version)), "at second {second}");
        }
        let at_15 = projection(&server, &format!("order/7?at_time={}", time(15))).await;
        assert_eq!(at_15["last_event_id"], late["event_id"]);

        // Past the stream's end is the latest state; the version says how far the stream really goes.
        let beyond = projection(&server, "order/7?at_version=99").await;
        assert_eq!(beyond, projection(&server, "order/7").await);
        assert_eq!(beyond["version"], 4);
        server.stop().await;
    }

    #[tokio::test]
    async fn unknown_entities_and_points_before_the_first_event_are_404() {
        let server = TestServer::start().await;
        put(&server, "user:1", "user.created", json!({"name": "Ann"}), 30).await;

        let unknown = server.get("/api/v1/events/projections/user/2").await;
        assert_error(&unknown, StatusCode::NOT_FOUND, "not_found", "user:2");
        let other_type = server.get("/api/v1/events/projections/order/1").await;
        assert_error(&other_type, StatusCode::NOT_FOUND, "not_found", "order:1");
        let before = server.get(&format!("/api/v1/events/projections/user/1?at_time={}", time(29))).await;
        assert_error(&before, StatusCode::NOT_FOUND, "not_found", "user:1");
        assert_eq!(projection(&server, &format!("user/1?at_time={}", time(30))).await["version"], 1);

        let bad_version = server.get("/api/v1/events/projections/user/1?at_version=0").await;
        assert_error(&bad_version, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "at_version");
        let bad_time = server.get("/api/v1/events/projections/user/1?at_time=yesterday").await;
        assert_error(&bad_time, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "at_time");
        server.stop().await;
    }

    #[tokio::test]
    async fn snapshots_are_kept_every_snapshot_every_versions() {
        let server = TestServer::with_config(|config| config.projections.snapshot_every = 3).await;
        let mut events = Vec::new();
        for i in 0..7u32 {
            events.push(put(&server, "cart:9", "cart.changed", json!({ format!("item{i}"): i, "count": i + 1 }), i).await);
        }
        // Either the projection processor or the first read (7 versions behind ≥ 3) brings the cache up
        // to date; wait for whichever does.
        let store = server.engine.store().clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let latest = projection(&server, "cart/9").await;
            assert_eq!(latest["version"], 7);
            let cached = store.cached_projection("cart:9").await.unwrap();
            if cached.as_ref().is_some_and(|c| c.fold.version == 7) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the cache never caught up: {cached:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cached = store.cached_projection("cart:9").await.unwrap().unwrap();
        assert_eq!(cached.snapshot_version, 6);
        for (version, from) in [(3, 0), (6, 3)] {
            let snapshot = store.snapshot_at_version("cart:9", version).await.unwrap().unwrap();
            assert_eq!((snapshot.fold.version, snapshot.from_version), (version, from));
            let read = projection(&server, &format!("cart/9?at_version={version}")).await;
            assert_eq!(snapshot.fold.state, read["state"], "snapshot {version}");
            assert_eq!(snapshot.fold.last_event_id.to_string(), events[version as usize - 1]["event_id"]);
        }
        assert_eq!(store.snapshot_at_version("cart:9", 2).await.unwrap(), None);
        // Event i is at second i, so the newest snapshot with every event at or before second 4 is version 3.
        for (second, version) in [(4, 3), (5, 6)] {
            let at = Timestamp::parse(&time(second)).unwrap();
            assert_eq!(store.snapshot_at_time("cart:9", at).await.unwrap().unwrap().fold.version, version);
        }

        // Every version reads back exactly the fold of the events up to it.
        let mut state = json!({});
        for (i, event) in events.iter().enumerate() {
            for (key, value) in event["data"].as_object().unwrap() {
                state[key] = value.clone();
            }
            let read = projection(&server, &format!("cart/9?at_version={}", i + 1)).await;
            assert_eq!(read["state"], state, "version {}", i + 1);
        }
        server.stop().await;
    }
}
