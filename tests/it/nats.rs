//! Lifecycle publications to NATS JetStream, against the server EVENTDECK_TEST_NATS_URL names (CI sets
//! it; SKIPPED without). Each test publishes to its own stream and subject prefix, so they run in
//! parallel, and deletes its stream at the end.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::TestServer;

pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) fn nats_url(test: &str) -> Option<String> {
    match std::env::var("EVENTDECK_TEST_NATS_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            println!("SKIPPED {test}: EVENTDECK_TEST_NATS_URL is not set");
            None
        }
    }
}

/// A test's own stream and subject prefix, and a client to read them.
pub(crate) struct Stream {
    pub url: String,
    pub name: String,
    pub prefix: String,
    pub context: jetstream::Context,
}

/// One message as the stream holds it.
#[derive(Debug)]
pub(crate) struct Stored {
    pub subject: String,
    pub msg_id: String,
    pub payload: Value,
}

impl Stream {
    pub async fn new(url: &str) -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let client = async_nats::connect(url).await.expect("connect to the test NATS server");
        Self {
            url: url.to_owned(),
            name: format!("EDTEST_{tag}"),
            prefix: format!("edtest{tag}"),
            context: jetstream::new(client),
        }
    }

    pub fn configure(&self, config: &mut eventdeck::config::Config) {
        config.nats.url = self.url.clone();
        config.nats.stream = self.name.clone();
        config.nats.subject_prefix = self.prefix.clone();
    }

    pub async fn count(&self) -> u64 {
        match self.context.get_stream(&self.name).await {
            Ok(mut stream) => stream.info().await.map(|info| info.state.messages).unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// Waits until the stream holds at least `n` messages, then returns them all, oldest first.
    pub async fn messages(&self, n: u64) -> Vec<Stored> {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.count().await < n {
            assert!(tokio::time::Instant::now() < deadline, "the stream never held {n} messages");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stream = self.context.get_stream(&self.name).await.expect("the stream");
        let mut all = Vec::new();
        let mut sequence = 1;
        while all.len() < self.count().await as usize {
            let message = stream.get_raw_message(sequence).await.expect("a message");
            all.push(Stored {
                subject: message.subject.to_string(),
                msg_id: message.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()).unwrap_or_default(),
                payload: serde_json::from_slice(&message.payload).expect("JSON payload"),
            });
            sequence += 1;
        }
        all
    }

    pub async fn delete(self) {
        let _ = self.context.delete_stream(&self.name).await;
    }
}

pub(crate) async fn connected(server: &TestServer) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.get("/health").await.1["nats"] != "connected" {
        assert!(tokio::time::Instant::now() < deadline, "never connected to NATS");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn stored_events_outcomes_and_subscriptions_are_published_with_their_subjects_ids_and_payloads() {
    let Some(url) = nats_url("stored_events_outcomes_and_subscriptions_are_published") else { return };
    let stream = Stream::new(&url).await;
    let server = TestServer::with_config(|config| {
        stream.configure(config);
        config.processing.enabled = true;
    })
    .await;
    connected(&server).await;
    let (_, health) = server.get("/api/v1/events/frontend/health").await;
    assert_eq!(health["nats"], "connected", "{health}");

    let (status, _) = server
        .post(
            "/api/v1/events/processors",
            &json!({"processor_name": "audit", "processor_type": "log", "filters": {"event_type": "order.*"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // The processing loop reads processors from its cache; give it the new one.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let first = server.create(json!({"event_type": "order.created", "data": {"n": 1}})).await;
    let second = server.create(json!({"event_type": "user.signed-up:v2", "data": {"n": 2}})).await;
    let cart = server.create(json!({"event_type": "cart.changed", "stream_id": "cart:42", "data": {"n": 3}})).await;
    let (status, subscription) = server
        .post(
            "/api/v1/events/subscriptions",
            &json!({"callback_url": "http://127.0.0.1:9/hook", "event_types": ["nothing.matches"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{subscription}");

    // Three stored events; two outcomes (`order.*` goes through `audit`, the cart's stream through the
    // built-in projection processor); one projection created; one subscription.
    let messages = stream.messages(7).await;
    let find_by = |subject: &str, keep: &dyn Fn(&Stored) -> bool| {
        messages
            .iter()
            .find(|m| m.subject == subject && keep(m))
            .unwrap_or_else(|| panic!("no {subject} in {messages:?}"))
    };
    let find = |subject: &str| find_by(subject, &|_| true);
    let prefix = &stream.prefix;
    let stored = find(&format!("{prefix}.event.stored.order.created"));
    assert_eq!(stored.msg_id, first["event_id"].as_str().unwrap());
    assert_eq!(stored.payload["event_id"], first["event_id"]);
    assert_eq!(stored.payload["data"], json!({"n": 1}));
    assert_eq!(stored.payload["seq"], first["seq"]);
    let other = find(&format!("{prefix}.event.stored.user.signed-up:v2"));
    assert_eq!(other.msg_id, second["event_id"].as_str().unwrap());
    assert_eq!(other.payload["event_type"], "user.signed-up:v2");

    let processed =
        find_by(&format!("{prefix}.event.processed.success"), &|m| m.payload["event_id"] == first["event_id"]);
    assert_eq!(processed.msg_id, format!("{}.processed.0", first["event_id"].as_str().unwrap()));
    assert_eq!(processed.payload["event_id"], first["event_id"]);
    assert_eq!(processed.payload["status"], "processed");
    assert_eq!(processed.payload["results"][0]["success"], true, "{}", processed.payload);

    let folded = find_by(&format!("{prefix}.event.processed.success"), &|m| m.payload["event_id"] == cart["event_id"]);
    assert_eq!(folded.payload["results"][0]["processor_name"], "projections", "{}", folded.payload);
    let projection = find(&format!("{prefix}.event.projection.created"));
    assert_eq!(projection.msg_id, "cart:42");
    assert_eq!(projection.payload, json!({"entity_type": "cart", "entity_id": "42", "version": 1}));

    let created = find(&format!("{prefix}.event.subscription.created"));
    assert_eq!(created.msg_id, subscription["subscription_id"].as_str().unwrap());
    assert_eq!(created.payload["callback_url"], "http://127.0.0.1:9/hook");
    assert!(created.payload.get("secret").is_none());

    server.stop().await;
    stream.delete().await;
}

#[tokio::test]
async fn events_published_again_after_a_restart_are_kept_once_and_those_stored_while_nats_was_away_follow() {
    let Some(url) = nats_url("events_published_again_after_a_restart_are_kept_once") else { return };
    let stream = Stream::new(&url).await;
    // NATS unreachable at start: a warning and `disconnected`, and ingest goes on.
    let server = TestServer::with_config(|config| {
        stream.configure(config);
        config.nats.url = "nats://127.0.0.1:9".into();
    })
    .await;
    assert_eq!(server.get("/health").await.1["nats"], "disconnected");
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(server.create(json!({"event_type": "order.created", "data": {"n": n}})).await["event_id"].clone());
    }

    // Back with NATS: what was stored while it was away is published.
    let server = server.restart_with(|config| config.nats.url = url.clone()).await;
    connected(&server).await;
    let published = stream.messages(3).await;
    assert_eq!(published.iter().map(|m| m.payload["event_id"].clone()).collect::<Vec<_>>(), ids);

    // A crash after the acks but before the cursor moved: the cursor is behind what was published.
    let server = server
        .restart_around(|storage_url| async move {
            let mut conn =
                <sqlx::SqliteConnection as sqlx::Connection>::connect(&storage_url).await.expect("open the store");
            sqlx::query("UPDATE publications SET seq = 0, owner = NULL").execute(&mut conn).await.expect("rewind");
        })
        .await;
    connected(&server).await;
    let fourth = server.create(json!({"event_type": "order.created", "data": {"n": 3}})).await;
    let published = stream.messages(4).await;
    // Published again, then dropped by the duplicate window: each event once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stream.count().await, 4, "{published:?}");
    let unique: HashSet<_> = published.iter().map(|m| m.msg_id.clone()).collect();
    assert_eq!(unique.len(), 4);
    assert_eq!(published[3].payload["event_id"], fourth["event_id"]);

    server.stop().await;
    stream.delete().await;
}

#[tokio::test]
async fn a_message_over_the_servers_max_payload_is_a_dead_letter_and_the_next_ones_are_published() {
    let Some(url) = nats_url("a_message_over_the_servers_max_payload_is_a_dead_letter") else { return };
    let stream = Stream::new(&url).await;
    let server = TestServer::with_config(|config| {
        stream.configure(config);
        config.ingest.max_body_bytes = 16 * 1024 * 1024;
    })
    .await;
    connected(&server).await;
    let max = async_nats::connect(&url).await.unwrap().server_info().max_payload;
    let big = server.create(json!({"event_type": "blob.saved", "data": {"blob": "x".repeat(max + 1)}})).await;
    let small = server.create(json!({"event_type": "blob.saved", "data": {"blob": "y"}})).await;

    let published = stream.messages(1).await;
    assert_eq!(published[0].payload["event_id"], small["event_id"]);
    let deadline = tokio::time::Instant::now() + WAIT;
    let entries = loop {
        let (_, page) = server.get("/api/v1/events/dlq?kind=publication").await;
        if page["total"] == 1 {
            break page["entries"].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter: {page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(entries[0]["event_id"], big["event_id"]);
    assert!(entries[0]["last_error"].as_str().unwrap().contains("max_payload"), "{entries}");
    // Skipped once, not retried in a loop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.get("/api/v1/events/dlq?kind=publication").await.1["total"], 1);
    assert_eq!(stream.count().await, 1);

    server.stop().await;
    stream.delete().await;
}

#[tokio::test]
async fn a_stream_of_that_name_with_other_subjects_is_reported_and_left_alone() {
    let Some(url) = nats_url("a_stream_of_that_name_with_other_subjects_is_reported") else { return };
    let stream = Stream::new(&url).await;
    stream
        .context
        .create_stream(jetstream::stream::Config {
            name: stream.name.clone(),
            subjects: vec![format!("{}other.>", stream.prefix)],
            duplicate_window: Duration::from_secs(10),
            ..Default::default()
        })
        .await
        .expect("make a conflicting stream");
    let nats = eventdeck::cluster::nats::Nats::connect(&eventdeck::cluster::nats::NatsOptions {
        url: url.clone(),
        credentials_file: None,
        token: None,
        stream: stream.name.clone(),
        subject_prefix: stream.prefix.clone(),
        publish: true,
    })
    .await
    .expect("connect");
    let error = nats.ensure_stream(&stream.name, &stream.prefix).await.expect_err("a conflicting stream").to_string();
    assert!(error.contains(&stream.name), "{error}");
    assert!(error.contains("subjects") && error.contains("duplicate window"), "{error}");
    // Untouched.
    let mut existing = stream.context.get_stream(&stream.name).await.unwrap();
    assert_eq!(existing.info().await.unwrap().config.subjects, vec![format!("{}other.>", stream.prefix)]);
    stream.delete().await;
}

/// Two instances on one PostgreSQL schema publish each stored event once between them: a plain NATS
/// subscriber (which, unlike the stream, sees repeats) counts every message.
#[tokio::test]
async fn two_instances_publish_each_event_once_between_them() {
    let Some(url) = nats_url("two_instances_publish_each_event_once_between_them") else { return };
    if std::env::var(eventdeck::storage::ScratchSchema::VARIABLE).is_err() {
        println!(
            "SKIPPED two_instances_publish_each_event_once_between_them: {} is not set",
            eventdeck::storage::ScratchSchema::VARIABLE
        );
        return;
    }
    crate::support::BACKEND
        .scope(crate::support::Backend::Postgres, async {
            let stream = Stream::new(&url).await;
            let client = async_nats::connect(&url).await.unwrap();
            let mut seen = client.subscribe(format!("{}.event.stored.>", stream.prefix)).await.unwrap();
            client.flush().await.unwrap();
            let a = TestServer::with_config(|config| stream.configure(config)).await;
            let b = a.beside(|config| stream.configure(config)).await;
            connected(&a).await;
            connected(&b).await;
            let mut ids = HashSet::new();
            for n in 0..20 {
                let server = if n % 2 == 0 { &a } else { &b };
                ids.insert(
                    server.create(json!({"event_type": "order.created", "data": {"n": n}})).await["event_id"].clone(),
                );
            }
            let mut received = Vec::new();
            while received.len() < 20 {
                let message = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut seen))
                    .await
                    .expect("every event published")
                    .unwrap();
                received.push(serde_json::from_slice::<Value>(&message.payload).unwrap()["event_id"].clone());
            }
            // Nothing more comes: no instance published what the other did.
            let extra = tokio::time::timeout(Duration::from_millis(700), futures::StreamExt::next(&mut seen)).await;
            assert!(extra.is_err(), "an event was published twice: {extra:?}");
            assert_eq!(received.into_iter().collect::<HashSet<_>>(), ids);
            assert_eq!(stream.count().await, 20);
            b.stop().await;
            a.stop().await;
            stream.delete().await;
        })
        .await;
}
