//! Processors against a real sink: priority order, retries into the DLQ and back, toggling, redaction
//! before anything sees the data, status changes on the live stream, statistics, and replay.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::sink::{Answer, Sink};
use crate::support::{TestServer, assert_error};

const WAIT: Duration = Duration::from_secs(10);

/// A server with the processing loop on.
async fn processing_server() -> TestServer {
    TestServer::with_config(|config| config.processing.enabled = true).await
}

/// A server whose failed events are retried after 50 ms instead of a second.
async fn fast_server() -> TestServer {
    TestServer::with_config(|config| {
        config.processing.enabled = true;
        config.processing.retry_initial_delay_ms = 50;
        config.processing.retry_max_delay_ms = 200;
        config.processing.poll_interval_ms = 20;
    })
    .await
}

async fn register(server: &TestServer, body: Value) -> Value {
    let (status, processor) = server.post("/api/v1/events/processors", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{processor}");
    processor
}

fn webhook(name: &str, priority: i32, url: String) -> Value {
    json!({"processor_name": name, "processor_type": "webhook", "priority": priority, "config": {"url": url, "timeout_ms": 1000}})
}

/// Waits until the event has `status`, returning it.
async fn wait_for_status(server: &TestServer, id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, event) = server.get(&format!("/api/v1/events/{id}")).await;
        if event["status"] == status {
            return event;
        }
        assert!(tokio::time::Instant::now() < deadline, "event never became {status}: {event}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn replay_done(server: &TestServer, replay_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, progress) = server.get(&format!("/api/v1/events/replay/{replay_id}")).await;
        assert_eq!(status, StatusCode::OK, "{progress}");
        if progress["status"] != "running" {
            return progress;
        }
        assert!(tokio::time::Instant::now() < deadline, "replay never finished: {progress}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

crate::on_every_backend! {
    #[tokio::test]
    async fn processors_run_in_priority_order_and_events_become_processed() {
        let (server, sink) = (processing_server().await, Sink::start().await);
        register(&server, webhook("second", 5, sink.url("second"))).await;
        register(&server, webhook("first", 10, sink.url("first"))).await;
        register(
            &server,
            json!({"processor_name": "orders-only", "processor_type": "webhook",
            "filters": {"event_type": "order.*"}, "config": {"url": sink.url("orders")}}),
        )
        .await;

        let event = server.create(json!({"event_type": "user.signed_up", "data": {"n": 1}})).await;
        let id = event["event_id"].as_str().unwrap();
        let processed = wait_for_status(&server, id, "processed").await;
        assert!(processed["processed_at"].is_string(), "{processed}");

        let first = sink.wait_for("first", 1, WAIT).await;
        let second = sink.wait_for("second", 1, WAIT).await;
        assert!(first[0].at <= second[0].at, "priority 10 runs before priority 5");
        assert_eq!(first[0].json()["event_id"], id, "the body is the event");
        assert_eq!(first[0].header("x-event-type"), "user.signed_up");
        assert!(sink.received("orders").is_empty(), "filters keep other types away");

        let (_, results) = server.get(&format!("/api/v1/events/{id}/results")).await;
        let names: Vec<&str> =
            results["results"].as_array().unwrap().iter().map(|r| r["processor_name"].as_str().unwrap()).collect();
        assert_eq!(names, ["first", "second"], "{results}");
        assert!(
            results["results"].as_array().unwrap().iter().all(|r| r["success"] == true && r["duration_ms"].is_number())
        );

        let (_, list) = server.get("/api/v1/events/processors").await;
        let first = list["processors"].as_array().unwrap().iter().find(|p| p["processor_name"] == "first").unwrap().clone();
        assert_eq!(first["processed_count"], 1, "{first}");
        assert_eq!(first["failed_count"], 0);
        server.stop().await;
    }

    #[tokio::test]
    async fn duplicate_names_conflict_and_bad_config_names_the_field() {
        let server = processing_server().await;
        register(&server, json!({"processor_name": "audit", "processor_type": "log"})).await;
        let again =
            server.post("/api/v1/events/processors", &json!({"processor_name": "audit", "processor_type": "log"})).await;
        assert_error(&again, StatusCode::CONFLICT, "conflict", "audit");
        let no_url =
            server.post("/api/v1/events/processors", &json!({"processor_name": "h", "processor_type": "webhook"})).await;
        assert_error(&no_url, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "config.url");
        server.stop().await;
    }

    #[tokio::test]
    async fn failing_processor_retries_then_fails_into_the_dlq_and_a_retry_processes_it() {
        let (server, sink) = (fast_server().await, Sink::start().await);
        sink.answer("flaky", Answer::Status(500));
        let processor = register(
            &server,
            json!({"processor_name": "enrich", "processor_type": "webhook",
            "max_retries": 2, "config": {"url": sink.url("flaky"), "timeout_ms": 500}}),
        )
        .await;
        let mut live = server.sse("/api/v1/events/live", &[]).await;

        let event = server.create(json!({"event_type": "order.created"})).await;
        let id = event["event_id"].as_str().unwrap();
        let failed = wait_for_status(&server, id, "failed").await;
        assert_eq!(sink.received("flaky").len(), 3, "the first run and two retries");
        assert_eq!(failed["retry_count"], 3);
        assert!(failed["error_message"].as_str().unwrap().contains("enrich: HTTP 500"), "{failed}");

        let (_, page) = server.get("/api/v1/events/dlq?kind=processing").await;
        assert_eq!(page["total"], 1, "{page}");
        let entry = &page["entries"][0];
        assert_eq!(entry["processor_id"], processor["processor_id"]);
        assert_eq!(entry["event_id"], id);
        assert_eq!(entry["attempts"], 3);
        let (_, detail) = server.get(&format!("/api/v1/events/dlq/{}", entry["dlq_id"].as_str().unwrap())).await;
        assert_eq!(detail["attempt_history"].as_array().unwrap().len(), 3, "{detail}");
        assert_eq!(detail["attempt_history"][0]["success"], false);

        // The lifecycle reached the live stream: pending again twice, then failed.
        let mut statuses = Vec::new();
        while statuses.last().map(String::as_str) != Some("failed") {
            let frame = live.next_frame(WAIT).await.expect("status frames");
            if frame.event.as_deref() == Some("status") {
                let change = frame.json();
                assert_eq!(change["event_id"], id);
                statuses.push(change["status"].as_str().unwrap().to_owned());
            }
        }
        assert_eq!(statuses, ["pending", "pending", "failed"]);

        sink.answer("flaky", Answer::Status(200));
        let (status, _) =
            server.post(&format!("/api/v1/events/dlq/{}/retry", entry["dlq_id"].as_str().unwrap()), &json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let processed = wait_for_status(&server, id, "processed").await;
        assert_eq!(processed["retry_count"], 0, "a fresh retry budget");
        let (_, page) = server.get("/api/v1/events/dlq?kind=processing").await;
        assert_eq!(page["total"], 0, "{page}");

        let (_, stats) = server.get("/api/v1/events/statistics").await;
        assert_eq!(stats["processed_events"], 1, "{stats}");
        assert_eq!(stats["failed_events"], 0, "{stats}");
        assert_eq!(stats["pending_events"], 0, "{stats}");
        assert!(stats["average_processing_time"].as_f64().unwrap() > 0.0, "{stats}");
        assert!(stats["processors_enabled"].as_i64().unwrap() >= 1, "{stats}");
        server.stop().await;
    }

    #[tokio::test]
    async fn a_disabled_processor_is_skipped_until_enabled_again() {
        let (server, sink) = (processing_server().await, Sink::start().await);
        let processor = register(&server, webhook("hook", 0, sink.url("hook"))).await;
        let toggle = format!("/api/v1/events/processors/{}/toggle", processor["processor_id"].as_str().unwrap());

        let (status, off) = server.put(&format!("{toggle}?enabled=false"), &json!({})).await;
        assert_eq!(status, StatusCode::OK, "{off}");
        assert_eq!(off["enabled"], false);
        let event = server.create(json!({"event_type": "a.b"})).await;
        wait_for_status(&server, event["event_id"].as_str().unwrap(), "processed").await;
        assert!(sink.received("hook").is_empty(), "a disabled processor does not run");

        server.put(&format!("{toggle}?enabled=true"), &json!({})).await;
        let event = server.create(json!({"event_type": "a.b"})).await;
        wait_for_status(&server, event["event_id"].as_str().unwrap(), "processed").await;
        let received = sink.wait_for("hook", 1, WAIT).await;
        assert_eq!(received[0].json()["event_id"], event["event_id"]);
        server.stop().await;
    }

    #[tokio::test]
    async fn redaction_happens_before_storage_live_readers_and_deliveries() {
        let (server, sink) = (processing_server().await, Sink::start().await);
        register(
            &server,
            json!({"processor_name": "pii", "processor_type": "redact",
            "filters": {"event_type": "user.>"}, "config": {"fields": ["email", "card.number"]}}),
        )
        .await;
        let (status, _) = server
            .post("/api/v1/events/subscriptions", &json!({"subscriber_name": "crm", "callback_url": sink.url("crm")}))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let mut live = server.sse("/api/v1/events/live", &[]).await;

        let data = json!({"email": "a@b.c", "card": {"number": "4111", "brand": "visa"}});
        let created = server.create(json!({"event_type": "user.registered", "data": data})).await;
        let redacted = json!({"email": "[redacted]", "card": {"number": "[redacted]", "brand": "visa"}});
        assert_eq!(created["data"], redacted, "the create answer");
        let (_, stored) = server.get(&format!("/api/v1/events/{}", created["event_id"].as_str().unwrap())).await;
        assert_eq!(stored["data"], redacted, "the stored event");
        assert_eq!(live.next_event(WAIT).await.unwrap().json()["data"], redacted, "the live stream");
        let delivered = sink.wait_for("crm", 1, WAIT).await;
        assert_eq!(delivered[0].json()["event"]["data"], redacted, "the webhook delivery");

        let other = server.create(json!({"event_type": "order.created", "data": {"email": "kept@b.c"}})).await;
        assert_eq!(other["data"]["email"], "kept@b.c", "filters decide what is redacted");
        server.stop().await;
    }

    #[tokio::test]
    async fn replay_dry_run_touches_nothing_and_a_replay_delivers_exactly_the_selection() {
        let (server, sink) = (processing_server().await, Sink::start().await);
        let mut ids = Vec::new();
        for n in 0..5 {
            let event = server.create(json!({"event_type": "order.created", "data": {"n": n}})).await;
            ids.push(event["event_id"].as_str().unwrap().to_owned());
        }
        // Created after the events: it received none of them.
        let (_, subscription) = server
            .post("/api/v1/events/subscriptions", &json!({"subscriber_name": "late", "callback_url": sink.url("late")}))
            .await;
        let target = json!({"subscription_id": subscription["subscription_id"]});
        let selection = json!({"event_ids": [ids[1], ids[3]], "target": target});

        let mut dry = selection.clone();
        dry["dry_run"] = json!(true);
        let (status, answer) = server.post("/api/v1/events/replay", &dry).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        assert_eq!(answer["status"], "dry_run");
        assert_eq!(answer["events_count"], 2);
        assert_eq!(answer["events"].as_array().unwrap().len(), 2);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(sink.received("late").is_empty(), "a dry run sends nothing");

        let mut live = server.sse("/api/v1/events/live", &[]).await;
        let (status, started) = server.post("/api/v1/events/replay", &selection).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{started}");
        assert_eq!(started["status"], "running");
        let progress = replay_done(&server, started["replay_id"].as_str().unwrap()).await;
        assert_eq!(progress["status"], "completed", "{progress}");
        assert_eq!(
            (progress["done"].clone(), progress["total"].clone(), progress["failed"].clone()),
            (json!(2), json!(2), json!(0))
        );

        let received = sink.wait_for("late", 2, WAIT).await;
        let mut sent: Vec<String> =
            received.iter().map(|r| r.json()["event"]["event_id"].as_str().unwrap().to_owned()).collect();
        sent.sort();
        let mut wanted = vec![ids[1].clone(), ids[3].clone()];
        wanted.sort();
        assert_eq!(sent, wanted, "exactly the selected events");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(sink.received("late").len(), 2, "and nothing else");

        let mut last = Value::Null;
        while last["status"] != "completed" {
            let frame = live.next_frame(WAIT).await.expect("replay progress on the live stream");
            if frame.event.as_deref() == Some("replay") {
                last = frame.json();
            }
        }
        assert_eq!(last["done"], last["total"]);
        let (_, original) = server.get(&format!("/api/v1/events/{}", ids[1])).await;
        assert_eq!(original["data"], json!({"n": 1}), "originals never change");
        server.stop().await;
    }

    #[tokio::test]
    async fn replay_to_a_processor_records_new_results_and_big_replays_need_confirm() {
        let (server, sink) = (
            TestServer::with_config(|config| {
                config.processing.enabled = true;
                config.replay.confirm_above = 3;
            })
            .await,
            Sink::start().await,
        );
        for _ in 0..4 {
            server.create(json!({"event_type": "order.created", "stream_id": "order:1"})).await;
        }
        let processor = register(&server, webhook("late-hook", 0, sink.url("late-hook"))).await;
        let body = json!({"stream_id": "order:1", "target": {"processor_id": processor["processor_id"]}});
        let refused = server.post("/api/v1/events/replay", &body).await;
        assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "4 events match");

        let mut confirmed = body.clone();
        confirmed["confirm"] = json!(true);
        let (status, started) = server.post("/api/v1/events/replay", &confirmed).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{started}");
        let progress = replay_done(&server, started["replay_id"].as_str().unwrap()).await;
        assert_eq!(progress["status"], "completed", "{progress}");
        assert_eq!(progress["done"], 4);
        sink.wait_for("late-hook", 4, WAIT).await;

        let unknown = server
            .post(
                "/api/v1/events/replay",
                &json!({"stream_id": "order:1", "target": {"processor_id": "0193a000-0000-7000-8000-00000000ffff"}}),
            )
            .await;
        assert_eq!(unknown.0, StatusCode::NOT_FOUND, "{}", unknown.1);
        server.stop().await;
    }

    #[tokio::test]
    async fn a_nats_processor_without_nats_fails_saying_how_to_configure_it() {
        let server = fast_server().await;
        let (_, health) = server.get("/health").await;
        assert_eq!(health["nats"], "disabled", "{health}");
        register(
            &server,
            json!({"processor_name": "bus", "processor_type": "nats", "max_retries": 0,
            "config": {"subject": "events.all"}}),
        )
        .await;
        let event = server.create(json!({"event_type": "a.b"})).await;
        let failed = wait_for_status(&server, event["event_id"].as_str().unwrap(), "failed").await;
        assert!(failed["error_message"].as_str().unwrap().contains("[nats] url"), "{failed}");
        server.stop().await;
    }

    /// Runs against the NATS server named by EVENTDECK_TEST_NATS_URL (CI sets it); skipped, saying so, without.
    #[tokio::test]
    async fn a_nats_processor_publishes_each_event_to_its_subject() {
        let Ok(url) = std::env::var("EVENTDECK_TEST_NATS_URL") else {
            eprintln!("SKIPPED a_nats_processor_publishes_each_event_to_its_subject: EVENTDECK_TEST_NATS_URL is not set");
            return;
        };
        let subject = format!("eventdeck.test.{}", uuid::Uuid::now_v7().simple());
        let client = async_nats::connect(&url).await.expect("connect to the test NATS server");
        let mut messages = client.subscribe(subject.clone()).await.expect("subscribe");
        client.flush().await.expect("flush the subscription");

        let server = TestServer::with_config(|config| {
            config.processing.enabled = true;
            config.nats.url = url.clone();
            config.nats.publish = false;
        })
        .await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while server.get("/health").await.1["nats"] != "connected" {
            assert!(tokio::time::Instant::now() < deadline, "never connected to NATS at {url}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        register(&server, json!({"processor_name": "bus", "processor_type": "nats", "config": {"subject": subject}})).await;
        let event = server.create(json!({"event_type": "order.created", "data": {"n": 7}})).await;

        let message =
            tokio::time::timeout(WAIT, futures::StreamExt::next(&mut messages)).await.expect("a message").unwrap();
        let published: Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(published["event_id"], event["event_id"]);
        assert_eq!(published["data"], json!({"n": 7}));
        wait_for_status(&server, event["event_id"].as_str().unwrap(), "processed").await;
        server.stop().await;
    }

    #[tokio::test]
    async fn a_replay_running_when_the_server_stops_is_carried_on_after_it_starts_again() {
        let (server, sink) = (TestServer::start().await, Sink::start().await);
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(server.create(json!({"event_type": "order.created", "data": {"n": n}})).await["event_id"].clone());
        }
        sink.answer("stuck", Answer::Hang);
        let (_, subscription) = server
            .post(
                "/api/v1/events/subscriptions",
                &json!({"callback_url": sink.url("stuck"), "retry_policy": {"timeout_ms": 30000, "max_retries": 0}}),
            )
            .await;
        let body = json!({"event_ids": ids, "target": {"subscription_id": subscription["subscription_id"]}});
        let (status, started) = server.post("/api/v1/events/replay", &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{started}");
        let replay_id = started["replay_id"].as_str().unwrap().to_owned();
        // Its deliveries hang: the replay cannot finish before the stop.
        sink.wait_for("stuck", 3, WAIT).await;

        let server = server.restart().await;
        let (_, progress) = server.get(&format!("/api/v1/events/replay/{replay_id}")).await;
        assert_eq!(progress["status"], "running", "a stop leaves the replay to be carried on: {progress}");
        sink.answer("stuck", Answer::Status(200));
        let progress = replay_done(&server, &replay_id).await;
        assert_eq!(progress["status"], "completed", "{progress}");
        assert_eq!((progress["total"].as_u64(), progress["done"].as_u64()), (Some(3), Some(3)), "{progress}");
        // The deliveries abandoned at the stop were sent again, and nothing was queued twice.
        let received = sink.wait_for("stuck", 6, WAIT).await;
        let mut sent: Vec<String> =
            received[3..].iter().map(|r| r.json()["event"]["event_id"].as_str().unwrap().to_owned()).collect();
        sent.sort();
        let mut expected: Vec<String> = ids.iter().map(|id| id.as_str().unwrap().to_owned()).collect();
        expected.sort();
        assert_eq!(sent, expected);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(sink.received("stuck").len(), 6);
        server.stop().await;
    }
}
