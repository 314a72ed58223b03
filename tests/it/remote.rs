//! The remote client: one scenario run against the embedded engine and against `RemoteClient` on a
//! server's HTTP API gives the same answers; API keys and live-stream reconnects.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use eventdeck::api::{self, AppState, Limits};
use eventdeck::config::Config;
use eventdeck::domain::delivery::{DlqGroupKey, DlqGroupQuery, DlqQuery, DlqSelector};
use eventdeck::domain::replay::ReplaySelection;
use eventdeck::domain::subscription::SubscriptionPatch;
use eventdeck::domain::{
    DeadLetterKind, DlqId, EventFilter, EventId, EventQuery, EventSource, NewEvent, Order, Processor, ProcessorId,
    ProcessorType, ProjectionAt, ReplayId, ReplayRequest, SubscriptionId, Timestamp, TypePattern,
};
use eventdeck::engine::Engine;
use eventdeck::remote::{ConnectionState, RemoteClient};
use eventdeck::service::{self, EventService, Feed, FeedItem};
use eventdeck::storage;
use eventdeck::wire::SubscriptionCreate;

use crate::support::TestServer;

const WAIT: Duration = Duration::from_secs(10);

/// A server whose answers do not change while the scenario runs: no processing loop.
async fn quiet_server() -> TestServer {
    TestServer::with_config(|c| c.processing.enabled = false).await
}

/// The two sides: the embedded engine of one server, and the HTTP API of another (fresh databases, so
/// seqs and counts line up).
async fn both_sides() -> (TestServer, Arc<dyn EventService>, TestServer, Arc<dyn EventService>) {
    let embedded_server = quiet_server().await;
    let embedded: Arc<dyn EventService> = Arc::new(embedded_server.engine.clone());
    let remote_server = quiet_server().await;
    let remote: Arc<dyn EventService> = Arc::new(RemoteClient::connect(&remote_server.base, None).expect("client"));
    (embedded_server, embedded, remote_server, remote)
}

/// Answers recorded under a label, in order.
#[derive(Default)]
struct Record(Vec<(String, Value)>);

impl Record {
    fn put<T: Serialize>(&mut self, label: &str, result: Result<T, service::Error>) {
        let value = match result {
            Ok(value) => json!({"ok": serde_json::to_value(value).expect("serializable answer")}),
            Err(error) => error_json(&error),
        };
        self.0.push((label.to_owned(), value));
    }

    /// Ids become `id#n` by first appearance (so "the same id as before" still shows) and server-made
    /// times become `<time>`: both differ between two servers by construction.
    fn normalized(self) -> Vec<(String, Value)> {
        let mut ids = HashMap::new();
        self.0
            .into_iter()
            .map(|(label, mut value)| {
                normalize(&mut value, &mut ids);
                (label, value)
            })
            .collect()
    }
}

fn error_json(error: &service::Error) -> Value {
    json!({"error": format!("{error:?}"), "message": error.to_string()})
}

const ID_KEYS: &[&str] =
    &["event_id", "subscription_id", "dlq_id", "processor_id", "replay_id", "delivery_id", "last_event_id"];
const TIME_KEYS: &[&str] = &["created_at", "updated_at", "processed_at", "started_at", "finished_at", "uptime_s"];

fn normalize(value: &mut Value, ids: &mut HashMap<String, usize>) {
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                if ID_KEYS.contains(&key.as_str()) && field.is_string() {
                    let next = ids.len() + 1;
                    let n = *ids.entry(field.as_str().unwrap_or_default().to_owned()).or_insert(next);
                    *field = json!(format!("id#{n}"));
                } else if TIME_KEYS.contains(&key.as_str()) && !field.is_null() {
                    *field = json!("<time>");
                } else {
                    normalize(field, ids);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| normalize(item, ids)),
        _ => {}
    }
}

#[track_caller]
fn assert_same(embedded: Record, remote: Record) {
    let (embedded, remote) = (embedded.normalized(), remote.normalized());
    assert_eq!(
        embedded.iter().map(|(label, _)| label).collect::<Vec<_>>(),
        remote.iter().map(|(label, _)| label).collect::<Vec<_>>()
    );
    for ((label, engine), (_, client)) in embedded.iter().zip(&remote) {
        assert_eq!(client, engine, "`{label}` differs: remote (left) vs embedded (right)");
    }
}

fn at(minute: i64) -> Timestamp {
    Timestamp::from_micros(Timestamp::parse("2026-01-05T10:00:00Z").unwrap().as_micros() + minute * 60_000_000)
}

fn event(event_type: &str, minute: i64, configure: impl FnOnce(&mut NewEvent)) -> NewEvent {
    let mut event = NewEvent::new(event_type);
    event.timestamp = at(minute);
    configure(&mut event);
    event
}

/// An id no server has.
const UNKNOWN: uuid::Uuid = uuid::Uuid::from_u128(0x6f0c_1d2e_5b7a_4c3d_9e8f_0a1b_2c3d_4e5f);

/// The ingest answers as JSON (`Ingested` is not a wire type).
fn ingested(
    result: Result<Vec<Result<service::Ingested, service::Error>>, service::Error>,
) -> Result<Value, service::Error> {
    Ok(result?
        .into_iter()
        .map(|item| match item {
            Ok(ingested) => json!({"created": ingested.created, "event": ingested.event}),
            Err(error) => error_json(&error),
        })
        .collect())
}

/// The next `n` stored events of a feed, skipping other items.
async fn stored(feed: &mut Feed, n: usize) -> Result<Vec<Value>, service::Error> {
    let mut events = Vec::new();
    while events.len() < n {
        match tokio::time::timeout(WAIT, feed.next()).await {
            Ok(Some(Ok(FeedItem::Stored(event)))) => events.push(serde_json::to_value(event.as_ref()).unwrap()),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(error))) => return Err(error),
            Ok(None) => panic!("the feed ended after {} of {n} events", events.len()),
            Err(_) => panic!("only {} of {n} events arrived in {WAIT:?}", events.len()),
        }
    }
    Ok(events)
}

async fn core_scenario(service: &dyn EventService) -> Record {
    let mut record = Record::default();
    record.put("health", Ok(service.health().await));

    // Ingest: a stream, a duplicate idempotency key inside the batch, a stale expected version.
    let batch = vec![
        event("user.created", 0, |e| {
            e.stream_id = Some("user:1".into());
            e.expected_version = Some(0);
            e.user_id = Some("u1".into());
            e.data.insert("name".into(), json!("Ann"));
        }),
        event("user.renamed", 1, |e| {
            e.stream_id = Some("user:1".into());
            e.user_id = Some("u1".into());
            e.data.insert("name".into(), json!("Bo"));
        }),
        event("order.paid", 2, |e| {
            e.event_source = EventSource::ExternalApi;
            e.idempotency_key = Some("pay-1".into());
            e.data.insert("amount".into(), json!(12.5));
        }),
        event("order.paid", 3, |e| e.idempotency_key = Some("pay-1".into())),
        event("user.deleted", 4, |e| {
            e.stream_id = Some("user:1".into());
            e.expected_version = Some(0);
        }),
    ];
    let answer = service.ingest(batch).await;
    let first = answer.as_ref().ok().and_then(|items| items.first()?.as_ref().ok().map(|i| i.event.clone()));
    record.put("ingest", ingested(answer));
    let again = service.ingest(vec![event("order.paid", 9, |e| e.idempotency_key = Some("pay-1".into()))]).await;
    record.put("ingest the same key again", ingested(again));
    let first = first.expect("the first event was stored");

    let mut query = EventQuery { limit: 10, order: Order::Asc, ..EventQuery::default() };
    query.filter.event_type = Some(TypePattern::parse("event_type", "user.*").unwrap());
    query.filter.user_id = Some("u1".into());
    let page = service.query(query).await.map(|page| json!({"events": page.events, "total": page.total}));
    record.put("query by type pattern and user", page);
    let mut query = EventQuery { limit: 1, offset: 1, ..EventQuery::default() };
    query.filter.start_time = Some(at(1));
    query.filter.end_time = Some(at(3));
    let page = service.query(query).await.map(|page| json!({"events": page.events, "total": page.total}));
    record.put("query a time window, second page", page);

    record.put("event by id", service.event(first.event_id).await);
    record.put("stream", service.stream("user:1", 1, 100).await);
    record.put("stream from version 2", service.stream("user:1", 2, 100).await);
    record.put("stream from version 1, one event", service.stream("user:1", 1, 1).await);
    record.put("streams by prefix", service.streams("user:", None, 10).await);
    record.put("streams after one", service.streams("", Some("user:1"), 10).await);
    record.put("streams with no limit", service.streams("", None, 0).await);
    record.put("statistics", service.statistics().await);
    record.put("deliveries of an event", service.delivery_attempts(first.event_id).await);

    // Subscriptions, made and gone before any further event is stored (so nothing is delivered).
    let subscription = SubscriptionCreate {
        subscriber_name: Some("billing".into()),
        callback_url: Some("http://127.0.0.1:9/hook".into()),
        event_types: vec!["order.*".into()],
        webhook_secret: Some("s3cret".into()),
        ..SubscriptionCreate::default()
    }
    .into_subscription()
    .unwrap();
    let created = service.create_subscription(subscription).await;
    let id = created.as_ref().map(|s| s.subscription_id).ok();
    record.put("create subscription", created);
    record.put("list subscriptions", service.subscriptions().await);
    let id = id.expect("the subscription was created");
    record.put("read subscription", service.subscription(id).await);
    let patch = SubscriptionPatch {
        enabled: Some(false),
        event_sources: Some(vec![EventSource::Backend]),
        ..SubscriptionPatch::default()
    };
    record.put("update subscription", service.update_subscription(id, patch).await);
    record.put("delete subscription", service.delete_subscription(id).await);
    record.put("list subscriptions after delete", service.subscriptions().await);

    record.put("dlq", service.dead_letters(DlqQuery { limit: 50, ..DlqQuery::default() }).await);
    record.put("dlq retry all", service.retry_dead_letters(DlqSelector::All).await);
    let groups = DlqGroupQuery { kind: None, buckets: 5, until: at(30) };
    record.put("dlq groups", service.dead_letter_groups(groups).await);
    record.put("dlq groups with no buckets", service.dead_letter_groups(DlqGroupQuery { buckets: 0, ..groups }).await);
    let group = DlqGroupKey {
        kind: DeadLetterKind::Delivery,
        subscription_id: Some(SubscriptionId(UNKNOWN)),
        processor_id: None,
        last_status_code: Some(503),
        error_class: None,
    };
    record.put("dlq retry a group", service.retry_dead_letters(DlqSelector::Group(group.clone())).await);
    record.put("dlq discard a group", service.discard_dead_letters(DlqSelector::Group(group)).await);

    // Bad input and unknown ids.
    let mut bad =
        SubscriptionCreate { callback_url: Some("ftp://example.com/hook".into()), ..SubscriptionCreate::default() }
            .into_subscription()
            .unwrap();
    bad.subscriber_name = "bad".into();
    record.put("subscription with a bad callback", service.create_subscription(bad).await);
    record.put("unknown event", service.event(EventId(UNKNOWN)).await);
    record.put("unknown stream", service.stream("user:404", 0, 10).await);
    record.put("unknown subscription", service.subscription(SubscriptionId(UNKNOWN)).await);
    record.put("delete unknown subscription", service.delete_subscription(SubscriptionId(UNKNOWN)).await);
    record.put("unknown dead letter", service.dead_letter(DlqId(UNKNOWN)).await);
    record.put("discard unknown dead letter", service.discard_dead_letter(DlqId(UNKNOWN)).await);
    record.put("deliveries of an unknown event", service.delivery_attempts(EventId(UNKNOWN)).await);

    // The live feed: resumed after the last stored event, then new ones as they are stored.
    let last_seq = service.statistics().await.map(|s| s.total_events).unwrap_or_default();
    let filter =
        EventFilter { event_type: Some(TypePattern::parse("event_type", "tick.>").unwrap()), ..EventFilter::default() };
    let mut feed = service.feed(filter, Some(last_seq));
    let ticks = (0..3).map(|i| {
        event(if i == 1 { "other" } else { "tick.a" }, 20 + i, |e| {
            e.data.insert("i".into(), json!(i));
        })
    });
    record.put("ingest while the feed is open", ingested(service.ingest(ticks.collect()).await));
    record.put("feed", stored(&mut feed, 2).await);
    record
}

#[tokio::test]
async fn the_remote_client_answers_like_the_embedded_engine() {
    let (embedded_server, embedded, remote_server, remote) = both_sides().await;
    let engine_answers = core_scenario(embedded.as_ref()).await;
    let remote_answers = core_scenario(remote.as_ref()).await;
    // The scenario did what it says on both sides (not merely the same thing).
    let labels: HashMap<String, Value> = engine_answers.0.iter().cloned().collect();
    assert_eq!(
        labels["ingest the same key again"]["ok"][0]["created"], false,
        "{}",
        labels["ingest the same key again"]
    );
    assert!(
        labels["ingest"]["ok"][4]["error"].as_str().unwrap().starts_with("VersionConflict"),
        "{}",
        labels["ingest"]
    );
    assert!(labels["subscription with a bad callback"]["error"].as_str().unwrap().contains("callback_url"));
    assert!(labels["unknown event"]["error"].as_str().unwrap().starts_with("NotFound"));
    assert_eq!(labels["feed"]["ok"].as_array().map(Vec::len), Some(2), "{}", labels["feed"]);
    assert_same(engine_answers, remote_answers);
    embedded_server.stop().await;
    remote_server.stop().await;
}

async fn processing_scenario(service: &dyn EventService) -> Record {
    let mut record = Record::default();
    let stored = service
        .ingest(vec![
            event("cart.created", 0, |e| {
                e.stream_id = Some("cart:7".into());
                e.data.insert("items".into(), json!(1));
            }),
            event("cart.updated", 1, |e| {
                e.stream_id = Some("cart:7".into());
                e.data.insert("items".into(), json!(2));
            }),
        ])
        .await
        .expect("ingest");
    let first = stored[0].as_ref().expect("stored").event.clone();

    record.put("processors", service.processors().await);
    let mut processor = Processor::new("audit", ProcessorType::Log, Timestamp::now());
    processor.priority = 5;
    processor.filters.event_type = Some(TypePattern::parse("event_type", "cart.*").unwrap());
    let created = service.create_processor(processor.clone()).await;
    let id = created.as_ref().map(|p| p.processor_id).unwrap_or(ProcessorId(UNKNOWN));
    record.put("create processor", created);
    record.put("create processor again", service.create_processor(processor).await);
    record.put("toggle processor", service.toggle_processor(id, false).await);
    record.put("toggle unknown processor", service.toggle_processor(ProcessorId(UNKNOWN), true).await);
    record.put("processing results", service.processing_results(first.event_id).await);
    record.put("processing results of an unknown event", service.processing_results(EventId(UNKNOWN)).await);

    let dry_run = ReplayRequest {
        selection: ReplaySelection::Stream("cart:7".into()),
        event_type: None,
        event_source: None,
        target: None,
        dry_run: true,
        confirm: false,
    };
    record.put("replay dry run", service.replay(dry_run).await);
    record.put("unknown replay", service.replay_progress(ReplayId(UNKNOWN)).await);

    record.put("projection", service.projection("cart", "7", ProjectionAt::Latest).await);
    record.put("projection at version 1", service.projection("cart", "7", ProjectionAt::Version(1)).await);
    record.put("unknown projection", service.projection("cart", "404", ProjectionAt::Latest).await);
    record.put("delete processor", service.delete_processor(id).await);
    record.put("delete unknown processor", service.delete_processor(ProcessorId(UNKNOWN)).await);
    record
}

#[tokio::test]
async fn processors_replay_and_projections_answer_alike() {
    let (embedded_server, embedded, remote_server, remote) = both_sides().await;
    assert_same(processing_scenario(embedded.as_ref()).await, processing_scenario(remote.as_ref()).await);
    embedded_server.stop().await;
    remote_server.stop().await;
}

#[tokio::test]
async fn a_missing_or_wrong_api_key_says_to_pass_one() {
    let server = TestServer::with_config(|c| c.auth.api_keys = vec!["k1".into()]).await;
    for key in [None, Some("wrong".to_owned())] {
        let client = RemoteClient::connect(&server.base, key.clone()).unwrap();
        let error = client.statistics().await.unwrap_err();
        assert!(matches!(&error, service::Error::Unavailable(m) if m.contains("--api-key")), "{key:?}: {error:?}");
        let mut feed = client.feed(EventFilter::default(), None);
        let item = tokio::time::timeout(WAIT, feed.next()).await.expect("an answer");
        assert!(matches!(&item, Some(Err(service::Error::Unavailable(m))) if m.contains("--api-key")), "{item:?}");
        assert!(tokio::time::timeout(WAIT, feed.next()).await.expect("the end").is_none(), "the feed ends");
    }
    let client = RemoteClient::connect(&server.base, Some("k1".into())).unwrap();
    assert_eq!(client.statistics().await.unwrap().total_events, 0);
    assert!(client.health().await.storage.ok);
    server.stop().await;
}

#[tokio::test]
async fn health_of_an_unreachable_server_is_degraded() {
    let port = free_port().await;
    let client = RemoteClient::connect(&format!("http://127.0.0.1:{port}"), None).unwrap();
    let health = client.health().await;
    assert_eq!((health.status, health.storage.ok), ("degraded", false));
    let error = client.event(EventId::new_v7()).await.unwrap_err();
    assert!(matches!(&error, service::Error::Unavailable(m) if m.contains("cannot be reached")), "{error:?}");
}

async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// A server on a given port over a given database file, stoppable and startable again.
struct Instance {
    engine: Engine,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Instance {
    async fn start(port: u16, db: &std::path::Path) -> Self {
        let mut config = Config::default();
        config.storage.url = format!("sqlite://{}", db.display());
        config.processing.enabled = false;
        config.live.keep_alive_secs = 1;
        let store = storage::connect(&config.storage.url, &config.store_options()).await.expect("open store");
        let engine = Engine::start(store, config.engine_options()).await.expect("engine");
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind the same port again");
        let shutdown = CancellationToken::new();
        let state = AppState {
            service: Arc::new(engine.clone()),
            limits: Arc::new(Limits::from_config(&config)),
            shutdown: shutdown.clone(),
            metrics: engine.metrics().clone(),
        };
        Self { engine, shutdown, task: tokio::spawn(api::serve(listener, state)) }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("server task").expect("server");
        self.engine.shutdown().await;
    }

    async fn tick(&self, i: i64) -> i64 {
        let stored = self
            .engine
            .ingest(vec![event("tick", i, |e| {
                e.data.insert("i".into(), json!(i));
            })])
            .await;
        stored.expect("ingest")[0].as_ref().expect("stored").event.seq
    }
}

async fn state_becomes(
    state: &mut tokio::sync::watch::Receiver<ConnectionState>,
    wanted: impl Fn(&ConnectionState) -> bool,
) -> ConnectionState {
    tokio::time::timeout(WAIT, state.wait_for(|s| wanted(s)))
        .await
        .expect("the connection state changed in time")
        .expect("the client is alive")
        .clone()
}

#[tokio::test]
async fn the_feed_reconnects_and_resumes_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let port = free_port().await;
    let client = RemoteClient::connect(&format!("http://127.0.0.1:{port}"), None).unwrap();
    let mut state = client.connection();
    let mut feed = client.feed(EventFilter::default(), None);
    let mut next = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while let Some(item) = feed.next().await {
            if let FeedItem::Stored(event) = item.expect("the feed never ends with an error here") {
                seqs.push(event.seq);
                if seqs.len() == 5 {
                    break;
                }
            }
        }
        seqs
    });

    // Nobody listens yet: the feed keeps trying, and says why.
    let down = state_becomes(
        &mut state,
        |s| matches!(s, ConnectionState::Reconnecting { reason } if reason.contains("refused")),
    )
    .await;
    assert!(matches!(down, ConnectionState::Reconnecting { .. }));

    let first = Instance::start(port, &db).await;
    state_becomes(&mut state, |s| *s == ConnectionState::Connected).await;
    let mut expected = vec![first.tick(1).await, first.tick(2).await];
    // Let both arrive before the server goes away, so the resume point is the second one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.stop().await;
    state_becomes(&mut state, |s| matches!(s, ConnectionState::Reconnecting { .. })).await;

    // Events stored while the client is away come first on reconnect, then live ones.
    let second = Instance::start(port, &db).await;
    expected.push(second.tick(3).await);
    expected.push(second.tick(4).await);
    state_becomes(&mut state, |s| *s == ConnectionState::Connected).await;
    expected.push(second.tick(5).await);
    let seqs = tokio::time::timeout(WAIT, &mut next).await.expect("five events in time").expect("reader");
    assert_eq!(seqs, expected);
    second.stop().await;
}
