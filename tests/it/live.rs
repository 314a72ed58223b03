//! The live stream: filters, keep-alive, resume without gap or duplicate, and lagging consumers.

use std::time::Duration;

use serde_json::json;

use crate::support::TestServer;

const WAIT: Duration = Duration::from_secs(5);

crate::on_every_backend! {
    #[tokio::test]
    async fn streams_new_events_with_seq_ids_and_filters() {
        let server = TestServer::start().await;
        let mut all = server.sse("/api/v1/events/live", &[]).await;
        let mut users = server.sse("/api/v1/events/live?event_type=user.*&event_source=backend", &[]).await;
        // The seed alias path with its aliases.
        let mut seed = server.sse("/events/stream?type=order.%3E", &[]).await;

        let created = server.create(json!({"event_type": "user.created", "data": {"n": 1}})).await;
        server.create(json!({"event_type": "user.profile.updated"})).await;
        server.create(json!({"event_type": "user.deleted", "event_source": "frontend"})).await;
        server.create(json!({"event_type": "order.paid.late"})).await;

        let first = all.next_event(WAIT).await.expect("an event");
        assert_eq!(first.event.as_deref(), Some("event"));
        assert_eq!(first.id, Some(created["seq"].to_string()));
        assert_eq!(first.json(), created, "the SSE data is the stored Event JSON");
        assert_eq!(all.seqs(3, WAIT).await.len(), 3);

        let user = users.next_event(WAIT).await.expect("user.created");
        assert_eq!(user.json()["event_type"], "user.created");
        assert!(users.next_event(Duration::from_millis(300)).await.is_none(), "other types and sources are filtered out");

        assert_eq!(seed.next_event(WAIT).await.expect("order").json()["event_type"], "order.paid.late");
        server.stop().await;
    }

    #[tokio::test]
    async fn sends_keep_alive_comments() {
        let server = TestServer::with_config(|c| c.live.keep_alive_secs = 1).await;
        let mut live = server.sse("/api/v1/events/live", &[]).await;
        let frame = live.next_frame(Duration::from_secs(3)).await.expect("a keep-alive within 3 s");
        assert_eq!(frame.comment.as_deref(), Some("keep-alive"));
        server.stop().await;
    }

    #[tokio::test]
    async fn resumes_after_last_event_id_with_no_gap_and_no_duplicate() {
        let server = TestServer::start().await;
        let mut seqs = Vec::new();
        for i in 0..10 {
            seqs.push(server.create(json!({"event_type": "tick", "data": {"i": i}})).await["seq"].as_i64().unwrap());
        }
        // Resume after the fourth; the rest of the stored ones come first, then live ones, each once.
        let mut resumed = server.sse("/api/v1/events/live", &[("Last-Event-ID", &seqs[3].to_string())]).await;
        let mut by_param = server.sse(&format!("/api/v1/events/live?since_seq={}", seqs[7]), &[]).await;
        let writer = {
            let (client, url) = (server.client.clone(), server.url("/api/v1/events/create"));
            tokio::spawn(async move {
                let mut live = Vec::new();
                for i in 10..60 {
                    let event: serde_json::Value = client
                        .post(&url)
                        .json(&json!({"event_type": "tick", "data": {"i": i}}))
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    live.push(event["seq"].as_i64().unwrap());
                }
                live
            })
        };
        let live_seqs = writer.await.unwrap();
        let expected: Vec<i64> = seqs[4..].iter().chain(&live_seqs).copied().collect();
        assert_eq!(resumed.seqs(expected.len(), WAIT).await, expected);
        assert!(resumed.next_event(Duration::from_millis(300)).await.is_none(), "no duplicates afterwards");

        let expected: Vec<i64> = seqs[8..].iter().chain(&live_seqs).copied().collect();
        assert_eq!(by_param.seqs(expected.len(), WAIT).await, expected);
        server.stop().await;
    }

    #[tokio::test]
    async fn resume_applies_the_filter_to_stored_events_too() {
        let server = TestServer::start().await;
        let mut wanted = Vec::new();
        for i in 0..6 {
            let event_type = if i % 2 == 0 { "keep.me" } else { "skip.me" };
            let event = server.create(json!({"event_type": event_type})).await;
            if i % 2 == 0 {
                wanted.push(event["seq"].as_i64().unwrap());
            }
        }
        let mut live = server.sse("/api/v1/events/live?since_seq=0&event_type=keep.*", &[]).await;
        assert_eq!(live.seqs(3, WAIT).await, wanted);
        server.stop().await;
    }

    #[tokio::test]
    async fn a_lagging_consumer_is_caught_up_from_the_store() {
        // A broadcast buffer of 2 events: any burst overruns it.
        let server = TestServer::with_config(|c| c.live.buffer = 2).await;
        let mut live = server.sse("/api/v1/events/live", &[]).await;
        let batch: Vec<_> = (0..300).map(|i| json!({"event_type": "burst", "data": {"i": i}})).collect();
        let (status, answer) = server.post("/api/v1/events/batch", &json!(batch)).await;
        assert_eq!(status, 200, "{answer}");
        let stored: Vec<i64> =
            answer["results"].as_array().unwrap().iter().map(|r| r["event"]["seq"].as_i64().unwrap()).collect();
        assert_eq!(live.seqs(300, WAIT).await, stored, "every event once, in order");
        assert!(live.next_event(Duration::from_millis(300)).await.is_none());
        server.stop().await;
    }

    #[tokio::test]
    async fn bad_live_parameters_are_rejected() {
        let server = TestServer::start().await;
        let (status, body) = server.get("/api/v1/events/live?event_source=moon").await;
        assert_eq!(status, 422);
        assert_eq!(body["error"]["field"], "event_source");
        let response =
            server.client.get(server.url("/api/v1/events/live")).header("Last-Event-ID", "abc").send().await.unwrap();
        assert_eq!(response.status(), 422);
        server.stop().await;
    }
}
