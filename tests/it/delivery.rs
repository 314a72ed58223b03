//! Webhook delivery against a real sink: signatures, retries and their timing, the dead-letter queue,
//! disabled and deleted subscriptions, 410 Gone, isolation from a hanging endpoint.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use eventdeck::domain::NewEvent;

use crate::sink::{Answer, Sink};
use crate::support::{TestServer, assert_error};

const WAIT: Duration = Duration::from_secs(10);

fn fast_retries(max_retries: u32) -> Value {
    json!({"max_retries": max_retries, "initial_delay_ms": 100, "backoff_multiplier": 2.0, "max_delay_ms": 1000, "timeout_ms": 1000})
}

async fn subscribe(server: &TestServer, body: Value) -> Value {
    let (status, subscription) = server.post("/api/v1/events/subscriptions", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{subscription}");
    subscription
}

async fn dlq(server: &TestServer, query: &str) -> Value {
    let (status, page) = server.get(&format!("/api/v1/events/dlq{query}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}

async fn wait_for_dlq(server: &TestServer, query: &str, n: u64) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page = dlq(server, query).await;
        if page["total"].as_u64() == Some(n) {
            return page;
        }
        assert!(tokio::time::Instant::now() < deadline, "DLQ{query} never reached {n}: {page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Posts `n` events in batches of 20 and waits until `path` has received `total` requests in all; returns
/// the rate at which this run's arrived, in deliveries per second.
async fn delivery_rate(server: &TestServer, sink: &Sink, path: &str, n: usize, total: usize) -> f64 {
    let started = std::time::Instant::now();
    for first in (0..n).step_by(20) {
        let batch: Vec<Value> = (first..first + 20).map(|i| json!({"event_type": "tick", "data": {"i": i}})).collect();
        let (status, answer) = server.post("/api/v1/events/batch", &json!(batch)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    sink.wait_for(path, total, Duration::from_secs(30)).await;
    n as f64 / started.elapsed().as_secs_f64()
}

/// Waits for `path`'s first delivery and checks that it carries `event`, and that no other follows.
async fn delivered_only(sink: &Sink, path: &str, event: &Value, why: &str) {
    let received = sink.wait_for(path, 1, WAIT).await;
    assert_eq!(received[0].json()["event"]["event_id"], event["event_id"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received(path).len(), 1, "{why}");
}

async fn set_enabled(server: &TestServer, subscriptions: &[Value], enabled: bool) {
    for subscription in subscriptions {
        let path = format!("/api/v1/events/subscriptions/{}", subscription["subscription_id"].as_str().unwrap());
        let response = server.client.patch(server.url(&path)).json(&json!({"enabled": enabled})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

crate::on_every_backend! {
    #[tokio::test]
    async fn dead_letters_grouped_by_cause_and_a_group_retried_or_discarded() {
        let (server, sink) = (TestServer::start().await, Sink::start().await);
        sink.answer("pager", Answer::Status(503));
        sink.answer("orders", Answer::Status(500));
        let pager = subscribe(
            &server,
            json!({"subscriber_name": "alerts-pager", "callback_url": sink.url("pager"), "retry_policy": fast_retries(0)}),
        )
        .await;
        subscribe(
            &server,
            json!({"subscriber_name": "orders", "callback_url": sink.url("orders"), "event_types": ["order.*"], "retry_policy": fast_retries(0)}),
        )
        .await;
        for i in 0..3 {
            server.create(json!({"event_type": "alert.raised", "data": {"i": i}})).await;
        }
        server.create(json!({"event_type": "order.paid", "data": {}})).await;
        wait_for_dlq(&server, "", 5).await;

        // The console's per-subscription counts come from the grouped query.
        let service: std::sync::Arc<dyn eventdeck::service::EventService> = std::sync::Arc::new(server.engine.clone());
        let action = eventdeck::tui::effects::call(service, eventdeck::tui::effects::Effect::Subscriptions).await;
        let eventdeck::tui::action::Action::Response(response) = action else { panic!("a response expected") };
        let eventdeck::tui::action::Response::Subscriptions { list, dlq_counts } = *response else {
            panic!("subscriptions expected")
        };
        let counts: std::collections::BTreeMap<String, u64> = list
            .unwrap()
            .iter()
            .map(|s| (s.subscriber_name.clone(), dlq_counts.get(&s.subscription_id).copied().unwrap_or(99)))
            .collect();
        assert_eq!(counts, std::collections::BTreeMap::from([("alerts-pager".to_owned(), 4), ("orders".to_owned(), 1)]));

        let (status, answer) = server.get("/api/v1/events/dlq/groups?buckets=4").await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["total"], 5);
        let groups = answer["groups"].as_array().unwrap();
        let summary: Vec<(u64, u64)> =
            groups.iter().map(|g| (g["count"].as_u64().unwrap(), g["last_status_code"].as_u64().unwrap())).collect();
        // The pager had 3 alerts and the order; the orders subscription had the order.
        assert_eq!(summary, [(4, 503), (1, 500)], "{answer}");
        let big = &groups[0];
        assert_eq!(big["subscription_id"], pager["subscription_id"]);
        assert_eq!((big["kind"].as_str(), big["error_class"].is_null()), (Some("delivery"), true));
        assert_eq!(big["histogram"].as_array().unwrap().len(), 4);
        assert_eq!(big["histogram"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).sum::<u64>(), 4);
        assert!(big["first_failed_at"].is_string() && big["last_failed_at"].is_string() && answer["since"].is_string());

        assert_error(
            &server.get("/api/v1/events/dlq/groups?buckets=0").await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "buckets",
        );
        let key = |g: &Value| {
            json!({"kind": g["kind"], "subscription_id": g["subscription_id"], "processor_id": g["processor_id"],
                   "last_status_code": g["last_status_code"], "error_class": g["error_class"]})
        };
        let small = key(&groups[1]);
        let big = key(big);
        sink.answer("pager", Answer::Status(200));
        let (status, answer) = server.post("/api/v1/events/dlq/retry", &json!({"group": big})).await;
        assert_eq!((status, answer["retried"].as_u64()), (StatusCode::ACCEPTED, Some(4)), "{answer}");
        sink.wait_for("pager", 8, WAIT).await;
        let (status, answer) = server.post("/api/v1/events/dlq/discard", &json!({"group": small})).await;
        assert_eq!((status, answer["discarded"].as_u64()), (StatusCode::OK, Some(1)), "{answer}");
        wait_for_dlq(&server, "", 0).await;
        let (_, answer) = server.get("/api/v1/events/dlq/groups").await;
        assert_eq!((answer["total"].as_u64(), answer["groups"].as_array().map(Vec::len)), (Some(0), Some(0)));
        assert_error(
            &server.post("/api/v1/events/dlq/discard", &json!({"group": small, "all": true})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "exactly one",
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn delivers_matching_events_signed_both_ways() {
        let (server, sink) = (TestServer::start().await, Sink::start().await);
        let key = b"a key of some bytes";
        let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key));
        let subscription = subscribe(
            &server,
            json!({"subscriber_name": "crm", "event_types": ["user.*"], "event_sources": ["backend"], "callback_url": sink.url("hook"), "webhook_secret": secret}),
        )
        .await;
        assert_eq!(subscription["has_secret"], true);
        assert!(
            subscription.get("webhook_secret").is_none() && !subscription.to_string().contains("whsec_"),
            "{subscription}"
        );

        server.create(json!({"event_type": "order.created"})).await;
        server.create(json!({"event_type": "user.created", "event_source": "frontend"})).await;
        let event = server.create(json!({"event_type": "user.created", "data": {"email": "a@b.c"}})).await;

        let received = sink.wait_for("hook", 1, WAIT).await;
        let request = &received[0];
        let body = request.json();
        assert_eq!(body["event"], event);
        assert_eq!(body["subscription_id"], subscription["subscription_id"]);
        assert_eq!(body["attempt"], 1);
        assert!(body["delivered_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(request.header("content-type"), "application/json");
        assert_eq!(request.header("x-event-id"), event["event_id"].as_str().unwrap());
        assert_eq!(request.header("x-event-type"), "user.created");
        assert_eq!(request.header("x-delivery-attempt"), "1");

        // X-Signature: HMAC-SHA256 over the raw body with the secret's bytes as given.
        let expected = hex(&hmac(secret.as_bytes(), &request.body));
        assert_eq!(request.header("x-signature"), format!("sha256={expected}"));
        // Standard Webhooks: the key is the base64 after whsec_, over "id.timestamp.body".
        let (id, timestamp) = (request.header("webhook-id"), request.header("webhook-timestamp"));
        let mut signed = format!("{id}.{timestamp}.").into_bytes();
        signed.extend_from_slice(&request.body);
        let expected = base64::engine::general_purpose::STANDARD.encode(hmac(key, &signed));
        assert_eq!(request.header("webhook-signature"), format!("v1,{expected}"));

        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(sink.received("hook").len(), 1, "non-matching events are not sent");
        let (_, attempts) = server.get(&format!("/api/v1/events/{}/deliveries", event["event_id"].as_str().unwrap())).await;
        assert_eq!(attempts["attempts"][0]["status_code"], 200);
        assert_eq!(attempts["attempts"][0]["success"], true);
        server.stop().await;
    }

    #[tokio::test]
    async fn retries_with_backoff_then_dead_letters_and_retries_from_the_dlq() {
        let (server, sink) = (TestServer::start().await, Sink::start().await);
        let mut live = server.sse("/api/v1/events/live", &[]).await;
        sink.answer("fail", Answer::Status(500));
        let subscription = subscribe(
            &server,
            json!({"callback_url": sink.url("fail"), "webhook_secret": "s", "retry_policy": fast_retries(2)}),
        )
        .await;
        let event = server.create(json!({"event_type": "order.paid"})).await;

        let page = wait_for_dlq(&server, "", 1).await;
        let received = sink.received("fail");
        assert_eq!(received.len(), 3, "the first attempt and two retries");
        let gaps: Vec<u128> = received.windows(2).map(|w| (w[1].at - w[0].at).as_millis()).collect();
        // Never early; late by up to half a second, as on a loaded CI machine (a retry found only at the
        // dispatcher's one-second poll would be later still).
        assert!((75..=700).contains(&gaps[0]), "first retry after ~100 ms ± 20 %: {gaps:?}");
        assert!((155..=900).contains(&gaps[1]), "second retry after ~200 ms ± 20 %: {gaps:?}");
        let ids: Vec<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "webhook-id is stable across retries: {ids:?}");
        let numbers: Vec<&str> = received.iter().map(|r| r.header("x-delivery-attempt")).collect();
        assert_eq!(numbers, ["1", "2", "3"]);

        let entry = &page["entries"][0];
        assert_eq!(entry["kind"], "delivery");
        assert_eq!(entry["event_id"], event["event_id"]);
        assert_eq!(entry["event_type"], "order.paid");
        assert_eq!(entry["subscription_id"], subscription["subscription_id"]);
        assert_eq!(entry["attempts"], 3);
        assert_eq!(entry["last_status_code"], 500);
        assert!(entry["last_error"].as_str().is_some());
        assert!(entry["first_failed_at"].as_str() <= entry["last_failed_at"].as_str());
        let dlq_id = entry["dlq_id"].as_str().unwrap().to_owned();

        let (status, one) = server.get(&format!("/api/v1/events/dlq/{dlq_id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(one["attempt_history"].as_array().unwrap().len(), 3);
        assert_eq!(one["attempt_history"][2]["status_code"], 500);

        // The live stream announced it.
        let announced = loop {
            let frame = live.next_event(WAIT).await.expect("a dlq frame");
            if frame.event.as_deref() == Some("dlq") {
                break frame.json();
            }
        };
        assert_eq!(announced["action"], "added");
        assert_eq!(announced["entry"]["dlq_id"], dlq_id.as_str());

        let (_, stats) = server.get("/api/v1/events/statistics").await;
        assert_eq!(stats["dlq_size"], 1);
        assert_eq!(stats["subscriptions_active"], 1);
        assert_eq!(stats["delivery_success_rate"], 0.0);
        let retry_rate = stats["retry_rate"].as_f64().unwrap();
        assert!((retry_rate - 200.0 / 3.0).abs() < 0.01, "{stats}");

        // Retried while the endpoint still fails: it comes back as a new entry, never twice.
        let (status, _) = server.post(&format!("/api/v1/events/dlq/{dlq_id}/retry"), &json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        sink.wait_for("fail", 6, WAIT).await;
        let page = wait_for_dlq(&server, "", 1).await;
        let second = page["entries"][0]["dlq_id"].as_str().unwrap().to_owned();
        assert_ne!(second, dlq_id);
        assert_eq!(page["entries"][0]["attempts"], 6);

        // Fixed endpoint: the retry delivers with a fresh budget and the DLQ empties.
        sink.answer("fail", Answer::FailTimes(1));
        let (status, _) = server.post(&format!("/api/v1/events/dlq/{second}/retry"), &json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let received = sink.wait_for("fail", 8, WAIT).await;
        assert_eq!(received[7].header("x-delivery-attempt"), "8");
        assert_eq!(received[7].header("webhook-id"), ids[0]);
        wait_for_dlq(&server, "", 0).await;
        let (status, _) = server.get(&format!("/api/v1/events/dlq/{second}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        server.stop().await;
    }

    #[tokio::test]
    async fn bulk_retry_and_discard() {
        let (server, sink) = (TestServer::start().await, Sink::start().await);
        sink.answer("a", Answer::Status(503));
        sink.answer("b", Answer::Status(503));
        let a = subscribe(&server, json!({"callback_url": sink.url("a"), "retry_policy": fast_retries(0)})).await;
        subscribe(&server, json!({"callback_url": sink.url("b"), "retry_policy": fast_retries(0)})).await;
        for i in 0..3 {
            server.create(json!({"event_type": "job.failed", "data": {"i": i}})).await;
        }
        wait_for_dlq(&server, "", 6).await;
        let a_id = a["subscription_id"].as_str().unwrap();
        assert_eq!(dlq(&server, &format!("?subscription_id={a_id}")).await["total"], 3);
        assert_eq!(dlq(&server, "?kind=delivery&limit=2").await["entries"].as_array().unwrap().len(), 2);
        assert_eq!(dlq(&server, "?kind=processing").await["total"], 0);

        sink.answer("a", Answer::Status(200));
        let (status, answer) = server.post("/api/v1/events/dlq/retry", &json!({"subscription_id": a_id})).await;
        assert_eq!((status, answer["retried"].as_u64()), (StatusCode::ACCEPTED, Some(3)));
        sink.wait_for("a", 6, WAIT).await;
        wait_for_dlq(&server, "", 3).await;

        let page = dlq(&server, "").await;
        let first = page["entries"][0].clone();
        let (status, _) = server
            .client
            .delete(server.url(&format!("/api/v1/events/dlq/{}", first["dlq_id"].as_str().unwrap())))
            .send()
            .await
            .map(|r| (r.status(), ()))
            .unwrap();
        assert_eq!(status, StatusCode::NO_CONTENT);
        wait_for_dlq(&server, "", 2).await;
        let (status, _) = server.get(&format!("/api/v1/events/{}", first["event_id"].as_str().unwrap())).await;
        assert_eq!(status, StatusCode::OK, "discarding keeps the event");

        let ids: Vec<Value> =
            dlq(&server, "").await["entries"].as_array().unwrap().iter().map(|e| e["dlq_id"].clone()).collect();
        let (status, answer) = server.post("/api/v1/events/dlq/retry", &json!({"ids": ids})).await;
        assert_eq!((status, answer["retried"].as_u64()), (StatusCode::ACCEPTED, Some(2)));
        let (status, answer) = server.post("/api/v1/events/dlq/retry", &json!({"all": true})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        assert_error(
            &server.post("/api/v1/events/dlq/retry", &json!({})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "exactly one",
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn disabled_and_deleted_subscriptions_receive_nothing_and_pending_retries_are_cancelled() {
        let (server, sink) = (TestServer::start().await, Sink::start().await);
        sink.answer("slow", Answer::Status(500));
        let retrying = subscribe(
            &server,
            json!({"callback_url": sink.url("slow"), "retry_policy": {"max_retries": 5, "initial_delay_ms": 300, "max_delay_ms": 300, "backoff_multiplier": 1.0}}),
        )
        .await;
        let off = subscribe(&server, json!({"callback_url": sink.url("off"), "enabled": false})).await;
        let deleted = subscribe(&server, json!({"callback_url": sink.url("deleted")})).await;
        let url = server.url(&format!("/api/v1/events/subscriptions/{}", deleted["subscription_id"].as_str().unwrap()));
        assert_eq!(server.client.delete(&url).send().await.unwrap().status(), StatusCode::NO_CONTENT);
        assert_eq!(
            server.get(&format!("/api/v1/events/subscriptions/{}", deleted["subscription_id"].as_str().unwrap())).await.0,
            StatusCode::NOT_FOUND
        );

        server.create(json!({"event_type": "x.y"})).await;
        sink.wait_for("slow", 1, WAIT).await;
        // Disabling cancels the scheduled retry.
        let (status, patched) = server
            .client
            .patch(server.url(&format!("/api/v1/events/subscriptions/{}", retrying["subscription_id"].as_str().unwrap())))
            .json(&json!({"enabled": false}))
            .send()
            .await
            .map(|r| (r.status(), ()))
            .unwrap();
        assert_eq!(status, StatusCode::OK, "{patched:?}");
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(sink.received("slow").len(), 1, "no retry after disabling");
        assert!(sink.received("off").is_empty());
        assert!(sink.received("deleted").is_empty());
        assert_eq!(off["enabled"], false);
        server.stop().await;
    }

    #[tokio::test]
    async fn gone_disables_the_subscription_without_retrying() {
        let (server, sink) = (TestServer::start().await, Sink::start().await);
        sink.answer("gone", Answer::Status(410));
        let subscription =
            subscribe(&server, json!({"callback_url": sink.url("gone"), "retry_policy": fast_retries(3)})).await;
        server.create(json!({"event_type": "a.b"})).await;
        sink.wait_for("gone", 1, WAIT).await;
        let path = format!("/api/v1/events/subscriptions/{}", subscription["subscription_id"].as_str().unwrap());
        let deadline = tokio::time::Instant::now() + WAIT;
        let disabled = loop {
            let (_, current) = server.get(&path).await;
            if current["enabled"] == false {
                break current;
            }
            assert!(tokio::time::Instant::now() < deadline, "never disabled: {current}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(disabled["disabled_reason"].as_str().unwrap().contains("410"), "{disabled}");
        server.create(json!({"event_type": "a.b"})).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(sink.received("gone").len(), 1);
        assert_eq!(dlq(&server, "").await["total"], 0, "a 410 is not dead-lettered");
        server.stop().await;
    }

    #[tokio::test]
    async fn endpoints_that_hang_answer_late_trickle_or_refuse_do_not_slow_a_healthy_one() {
        let (server, sink) = (TestServer::start().await, Sink::start().await);
        subscribe(&server, json!({"subscriber_name": "healthy", "callback_url": sink.url("healthy")})).await;
        sink.answer("hang", Answer::Hang);
        sink.answer("late", Answer::Late(Duration::from_secs(2)));
        sink.answer("trickle", Answer::Trickle);
        let refused = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/refused", listener.local_addr().unwrap())
        };
        // Default retry policies: a 10 s timeout, so one stuck request holds its slot for long.
        let mut bad = Vec::new();
        for url in [sink.url("hang"), sink.url("late"), sink.url("trickle"), refused] {
            bad.push(subscribe(&server, json!({"subscriber_name": url, "callback_url": url, "enabled": false})).await);
        }

        // Alone and beside the bad endpoints in turn, twice each, keeping the best of each: the rates are
        // measured in the same run, and a moment of load elsewhere on the machine does not decide.
        let (n, mut alone, mut beside) = (300, 0.0_f64, 0.0_f64);
        for round in 0..2 {
            alone = alone.max(delivery_rate(&server, &sink, "healthy", n, (2 * round + 1) * n).await);
            set_enabled(&server, &bad, true).await;
            beside = beside.max(delivery_rate(&server, &sink, "healthy", n, (2 * round + 2) * n).await);
            set_enabled(&server, &bad, false).await;
        }
        println!("healthy sink: {alone:.0} deliveries/s alone, {beside:.0}/s beside four bad endpoints");
        assert!(
            beside >= alone * 0.5,
            "the healthy sink slowed from {alone:.0}/s alone to {beside:.0}/s beside bad endpoints"
        );
        // The bad endpoints were tried, each within its own share of the slots.
        assert!(!sink.received("hang").is_empty() && !sink.received("trickle").is_empty());
        assert!(sink.received("hang").len() <= 16, "one subscription holds at most 8 requests in flight at a time");
        server.stop().await;
    }

    #[tokio::test]
    async fn subscriptions_are_validated_and_listed() {
        let server = TestServer::start().await;
        let bad = [
            (json!({}), "callback_url"),
            (json!({"callback_url": "ftp://example.com/x"}), "callback_url"),
            (json!({"callback_url": "http://example.com", "event_types": ["user..x"]}), "event_types[0]"),
            (json!({"callback_url": "http://example.com", "event_sources": ["moon"]}), "event_sources[0]"),
            (json!({"callback_url": "http://example.com", "retry_policy": {"timeout_ms": 1}}), "retry_policy.timeout_ms"),
            (json!({"callback_url": "http://example.com", "surprise": 1}), "surprise"),
        ];
        for (body, field) in bad {
            let (status, answer) = server.post("/api/v1/events/subscriptions", &body).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {answer}");
            assert_eq!(answer["error"]["field"], field, "{body} → {answer}");
        }

        let created = subscribe(&server, json!({"callback_url": "http://127.0.0.1:9/x", "event_types": ["order.>"]})).await;
        assert_eq!(created["subscriber_type"], "webhook");
        assert_eq!(created["has_secret"], false);
        assert_eq!(created["retry_policy"]["max_retries"], 3);
        let (_, list) = server.get("/api/v1/events/subscriptions").await;
        assert_eq!(list["subscriptions"].as_array().unwrap().len(), 1);

        // Seed-compatible /webhooks shows the same subscriptions.
        let (status, hook) =
            server.post("/webhooks", &json!({"url": "http://127.0.0.1:9/y", "events": ["user.*"], "secret": "s"})).await;
        assert_eq!(status, StatusCode::CREATED, "{hook}");
        assert_eq!((hook["active"].as_bool(), hook["events"][0].as_str()), (Some(true), Some("user.*")));
        let (_, hooks) = server.get("/webhooks").await;
        assert_eq!(hooks["webhooks"].as_array().unwrap().len(), 2);
        let id = hook["id"].as_str().unwrap();
        let patched: Value = server
            .client
            .patch(server.url(&format!("/webhooks/{id}")))
            .json(&json!({"active": false}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(patched["active"], false);
        let (_, same) = server.get(&format!("/api/v1/events/subscriptions/{id}")).await;
        assert_eq!((same["enabled"].as_bool(), same["has_secret"].as_bool()), (Some(false), Some(true)));
        assert_eq!(
            server.client.delete(server.url(&format!("/webhooks/{id}"))).send().await.unwrap().status(),
            StatusCode::NO_CONTENT
        );
        assert_eq!(server.get(&format!("/webhooks/{id}")).await.0, StatusCode::NOT_FOUND);
        server.stop().await;
    }

    #[tokio::test]
    async fn private_targets_are_refused_when_not_allowed() {
        let server = TestServer::with_config(|c| c.delivery.allow_private_networks = false).await;
        for url in ["http://127.0.0.1:8080/x", "http://localhost/x", "http://10.1.2.3/x", "http://[::1]/x"] {
            let (status, answer) = server.post("/api/v1/events/subscriptions", &json!({"callback_url": url})).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url} → {answer}");
            assert_eq!(answer["error"]["field"], "callback_url");
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn deliveries_already_claimed_are_not_sent_after_the_subscription_is_disabled() {
        // One request at a time: while the first hangs, the next ones wait claimed in the dispatcher.
        let server = TestServer::with_config(|c| c.delivery.concurrency = 1).await;
        let sink = Sink::start().await;
        sink.answer("hang", Answer::Hang);
        let subscription = subscribe(
            &server,
            json!({"callback_url": sink.url("hang"), "retry_policy": {"timeout_ms": 1500, "max_retries": 0}}),
        )
        .await;
        let batch: Vec<Value> = (0..3).map(|i| json!({"event_type": "tick", "data": {"i": i}})).collect();
        server.post("/api/v1/events/batch", &json!(batch)).await;
        sink.wait_for("hang", 1, WAIT).await;

        let url =
            server.url(&format!("/api/v1/events/subscriptions/{}", subscription["subscription_id"].as_str().unwrap()));
        let patched = server.client.patch(url).json(&json!({"enabled": false})).send().await.unwrap();
        assert_eq!(patched.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(sink.received("hang").len(), 1, "nothing is sent for a disabled subscription");
        server.stop().await;
    }

    #[tokio::test]
    async fn a_subscription_enabled_again_receives_only_events_stored_after() {
        let (server, sink) = (TestServer::start().await, Sink::start().await);
        let subscription = subscribe(&server, json!({"callback_url": sink.url("again")})).await;
        set_enabled(&server, std::slice::from_ref(&subscription), false).await;
        // Stored while it is disabled, with no other subscription to move the delivery cursor past it.
        server.create(json!({"event_type": "while.disabled"})).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        set_enabled(&server, std::slice::from_ref(&subscription), true).await;
        let after = server.create(json!({"event_type": "after"})).await;
        delivered_only(&sink, "again", &after, "nothing stored while it was disabled is sent").await;
        server.stop().await;
    }

    #[tokio::test]
    async fn a_new_subscription_receives_events_stored_after_it_only() {
        let (server, sink) = (TestServer::start().await, Sink::start().await);
        let history: Vec<Value> = (0..5).map(|i| json!({"event_type": "old", "data": {"i": i}})).collect();
        server.post("/api/v1/events/batch", &json!(history)).await;
        // Let the dispatcher move past them with no subscription around.
        tokio::time::sleep(Duration::from_millis(200)).await;
        subscribe(&server, json!({"callback_url": sink.url("new")})).await;
        let fresh = server.create(json!({"event_type": "new"})).await;
        delivered_only(&sink, "new", &fresh, "history is not replayed to a new subscription").await;
        server.stop().await;
    }
}

/// A backlog of many fan-out pages: deliveries start while the fan-out is still working through it,
/// not after (the dispatcher once took no claim until the log was all fanned out, so under steady
/// ingest new subscriptions got nothing).
#[tokio::test]
async fn deliveries_start_while_a_long_backlog_is_still_being_fanned_out() {
    let (server, sink) = (TestServer::start().await, Sink::start().await);
    subscribe(&server, json!({"subscriber_name": "late", "callback_url": sink.url("late")})).await;
    // Twenty fan-out pages (500 events each), all after the subscription's start, stored behind the
    // engine's back: the dispatcher hears of none of them and finds them as a backlog at its next look.
    let store = server.engine.store().clone();
    let total = 10_000;
    for first in (0..total).step_by(1000) {
        let batch = (first..first + 1000).map(|i| {
            let mut event = NewEvent::new("tick");
            event.data.insert("i".into(), json!(i));
            event
        });
        store.append(batch.collect()).await.unwrap();
    }
    let last = store.last_seq().await.unwrap();

    sink.wait_for("late", 1, WAIT).await;
    let cursor = store.cursor(eventdeck::storage::DELIVERY_CURSOR).await.unwrap();
    assert!(
        cursor.seq < last,
        "the first delivery came only after the whole backlog was fanned out ({} of {last})",
        cursor.seq
    );
    sink.wait_for("late", total, Duration::from_secs(60)).await;
    server.stop().await;
}
