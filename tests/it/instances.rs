//! Several instances on one PostgreSQL database (a scratch schema), in one process: they share the
//! work without doing any of it twice, every instance's live stream carries every instance's events
//! in seq order, and a change made on one is in force on the others. SKIPPED without
//! EVENTDECK_TEST_DATABASE_URL.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::sink::Sink;
use crate::support::{BACKEND, Backend, TestServer};

/// Three instances on one fresh schema, processing on, or `None` (SKIPPED) without a test database.
async fn three() -> Option<[TestServer; 3]> {
    if std::env::var(eventdeck::storage::ScratchSchema::VARIABLE).is_err() {
        println!("SKIPPED: {} is not set", eventdeck::storage::ScratchSchema::VARIABLE);
        return None;
    }
    let on = |config: &mut eventdeck::config::Config| config.processing.enabled = true;
    let first = BACKEND.scope(Backend::Postgres, TestServer::with_config(on)).await;
    let second = first.beside(on).await;
    let third = first.beside(on).await;
    Some([first, second, third])
}

async fn stop(servers: [TestServer; 3]) {
    for server in servers {
        server.stop().await;
    }
}

/// Polls `check` every 100 ms until it answers `Some`, for at most `within`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    within: Duration,
    mut check: impl FnMut() -> F,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(done) = check().await {
            return Some(done);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn three_instances_share_ingest_delivery_and_processing_and_one_live_stream_shows_it_all() {
    let Some(servers) = three().await else { return };
    let sink = Sink::start().await;
    let (status, _) = servers[0]
        .post("/api/v1/events/subscriptions", &json!({"subscriber_name": "all", "callback_url": sink.url("all")}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = servers[1]
        .post("/api/v1/events/processors", &json!({"processor_name": "audit", "processor_type": "log"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut live = servers[2].sse("/api/v1/events/live", &[]).await;
    // Subscriptions and processors are read from the store by every instance; give them a moment.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // 300 events, in batches of 20 spread over the three instances at once.
    let posts = (0..15).map(|batch| {
        let server = &servers[batch % 3];
        async move {
            let events: Vec<Value> = (0..20)
                .map(|i| json!({"event_type": "order.placed", "data": {"n": batch * 20 + i}, "stream_id": format!("order:{}", (batch * 20 + i) % 7)}))
                .collect();
            let (status, answer) = server.post("/api/v1/events/batch", &Value::Array(events)).await;
            assert_eq!((status, answer["created"].as_u64()), (StatusCode::OK, Some(20)), "{answer}");
        }
    });
    futures::future::join_all(posts).await;

    // One live stream carries all of them, each once, in seq order.
    let seqs = live.seqs(300, Duration::from_secs(10)).await;
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in seq order: {seqs:?}");
    let (_, page) = servers[0].get("/api/v1/events?limit=500").await;
    let mut stored: Vec<i64> = page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    stored.sort_unstable();
    assert_eq!(stored.len(), 300);
    assert_eq!(seqs, stored, "the live stream shows what is stored");
    // Streams are gapless whichever instance took each event.
    for stream in 0..7 {
        let (_, events) = servers[1].get(&format!("/api/v1/events/stream/order:{stream}")).await;
        let versions: Vec<i64> =
            events["events"].as_array().unwrap().iter().map(|e| e["stream_version"].as_i64().unwrap()).collect();
        assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>(), "order:{stream}");
    }

    // Each event is delivered once, by whichever instance claimed it.
    sink.wait_for("all", 300, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = sink.received("all");
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for delivery in &received {
        *per_event.entry(delivery.json()["event"]["event_id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(per_event.len(), 300, "every event delivered");
    assert!(per_event.values().all(|&n| n == 1), "none twice: {} deliveries", received.len());

    // Each event is processed once.
    let processed = eventually(Duration::from_secs(20), || async {
        let (_, list) = servers[2].get("/api/v1/events/processors").await;
        let audit = list["processors"].as_array()?.iter().find(|p| p["processor_name"] == "audit")?.clone();
        (audit["processed_count"].as_i64()? >= 300).then_some(audit)
    })
    .await
    .expect("all 300 processed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, list) = servers[0].get("/api/v1/events/processors").await;
    let audit = list["processors"].as_array().unwrap().iter().find(|p| p["processor_name"] == "audit").unwrap();
    assert_eq!(audit["processed_count"], 300, "none twice: {processed}");
    let (_, stats) = servers[1].get("/api/v1/events/statistics").await;
    assert_eq!(stats["total_events"], 300, "{stats}");

    // The cluster view lists the three on any of them, and who did what.
    let (_, cluster) = servers[1].get("/api/v1/cluster").await;
    let ids: BTreeSet<&str> =
        cluster["instances"].as_array().unwrap().iter().map(|i| i["instance_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "{cluster}");
    stop(servers).await;
}

#[tokio::test]
async fn a_change_on_one_instance_is_in_force_on_the_others_within_a_second() {
    let Some(servers) = three().await else { return };
    let sink = Sink::start().await;
    // A redact processor registered on one instance applies to ingest on another.
    let (status, _) = servers[0]
        .post(
            "/api/v1/events/processors",
            &json!({"processor_name": "no-cards", "processor_type": "redact", "config": {"fields": ["card"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, subscription) =
        servers[0].post("/api/v1/events/subscriptions", &json!({"callback_url": sink.url("s")})).await;
    assert_eq!(status, StatusCode::CREATED);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let event = servers[2].create(json!({"event_type": "payment.made", "data": {"card": "4242", "amount": 5}})).await;
    assert_eq!(event["data"]["card"], "[redacted]", "redacted on another instance: {event}");
    let delivered = sink.wait_for("s", 1, Duration::from_secs(10)).await;
    assert_eq!(delivered[0].json()["event"]["data"]["card"], "[redacted]");

    // Disabling the subscription on one instance stops deliveries from all.
    let path = format!("/api/v1/events/subscriptions/{}", subscription["subscription_id"].as_str().unwrap());
    let response =
        servers[1].client.patch(servers[1].url(&path)).json(&json!({"enabled": false})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for server in &servers {
        server.create(json!({"event_type": "payment.made", "data": {"amount": 1}})).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.received("s").len(), 1, "nothing delivered once disabled");
    stop(servers).await;
}
