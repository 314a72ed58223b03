//! `eventdeck demo`'s traffic side: a local webhook sink, two subscriptions and two processors wired
//! to it, and synthetic events drawn from assets/demo_catalogue.toml, so every pane of the console has
//! something real in it within seconds, the dead-letter queue included.

mod catalogue;
mod sink;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use catalogue::{Catalogue, Rng, Traffic};
use eventdeck::domain::{Processor, ProcessorType, RetryPolicy, Subscription, Timestamp, TypePattern};
use eventdeck::service::{self, EventService};
use eventdeck::wire::SubscriptionCreate;

/// How often a batch is sent.
const TICK: Duration = Duration::from_millis(200);
/// Events per batch in normal traffic (20–50 events/s at one batch per [`TICK`]).
const BATCH: (u64, u64) = (4, 10);
/// Events per batch during a burst (150–300 events/s).
const BURST_BATCH: (u64, u64) = (30, 60);
/// Batches a burst lasts.
const BURST_TICKS: u32 = 5;
/// Chance that a normal batch starts a burst: one every ~10 s.
const BURST_CHANCE: f64 = 0.02;
/// Least time between two warnings about refused events, so a persistent problem does not flood the log.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Short retries, so failed deliveries reach the dead-letter queue within seconds.
const RETRY_POLICY: RetryPolicy = RetryPolicy {
    max_retries: 2,
    initial_delay_ms: 200,
    backoff_multiplier: 2.0,
    max_delay_ms: 2_000,
    timeout_ms: 2_000,
};

/// Counters the console can show while the demo runs.
#[derive(Debug, Default)]
pub struct DemoStats {
    /// Events the engine stored.
    pub events_sent: AtomicU64,
    /// Events the engine refused (it should refuse none).
    pub events_refused: AtomicU64,
    /// Requests the sink answered, and how many of those with an error status.
    pub sink_received: AtomicU64,
    pub sink_failed: AtomicU64,
}

/// What the demo set up, for the console's status line.
#[derive(Debug)]
pub struct DemoInfo {
    /// The local webhook sink the subscriptions and the webhook processor post to.
    pub sink: SocketAddr,
    pub subscriptions: Vec<Arc<Subscription>>,
    pub processors: Vec<Arc<Processor>>,
    /// Setup steps that were skipped, each with why (e.g. a processor the engine refused).
    pub skipped: Vec<String>,
    pub stats: Arc<DemoStats>,
    /// The sink and the traffic generator; both end soon after `cancel`. Await them before shutting
    /// the engine down to let the last batch finish.
    pub tasks: Vec<JoinHandle<()>>,
}

impl DemoInfo {
    /// One line for the console: where the sink is, what was created, and the counters so far.
    pub fn status_line(&self) -> String {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let stats = &self.stats;
        let mut line = format!(
            "demo: {} events sent · sink http://{} answered {} requests ({} failed) · {} subscriptions, {} processors",
            load(&stats.events_sent),
            self.sink,
            load(&stats.sink_received),
            load(&stats.sink_failed),
            self.subscriptions.len(),
            self.processors.len(),
        );
        let refused = load(&stats.events_refused);
        if refused > 0 {
            line.push_str(&format!(" · {refused} events refused (see the log)"));
        }
        if !self.skipped.is_empty() {
            line.push_str(&format!(" · {} skipped", self.skipped.len()));
        }
        line
    }
}

/// Starts the sink, creates the subscriptions and processors, and sends traffic until `cancel`.
/// A processor the service refuses is skipped with a warning; anything else that fails stops the demo.
pub async fn start(service: Arc<dyn EventService>, cancel: CancellationToken) -> anyhow::Result<DemoInfo> {
    let catalogue = Catalogue::builtin()?;
    // A child token stops what was already started if setup fails half-way, and follows `cancel`.
    let stop = cancel.child_token();
    let stats = Arc::new(DemoStats::default());
    let (sink, sink_task) = sink::start(stats.clone(), stop.clone())
        .await
        .context("cannot start the demo webhook sink on 127.0.0.1 (is the loopback interface up?)")?;
    let base = format!("http://{sink}");

    let subscriptions = match create_subscriptions(service.as_ref(), &base).await {
        Ok(subscriptions) => subscriptions,
        Err(error) => {
            stop.cancel();
            return Err(error);
        }
    };
    let (processors, skipped) = create_processors(service.as_ref(), &base).await;

    let traffic = Traffic::new(catalogue, Rng::from_clock());
    let traffic_task = tokio::spawn(send_traffic(service, traffic, stats.clone(), stop));
    Ok(DemoInfo { sink, subscriptions, processors, skipped, stats, tasks: vec![sink_task, traffic_task] })
}

async fn create_subscriptions(service: &dyn EventService, base: &str) -> anyhow::Result<Vec<Arc<Subscription>>> {
    let specs = [
        ("orders-to-fulfilment", vec!["order.>", "payment.>"], format!("{base}/flaky/fulfilment")),
        ("alerts-pager", vec!["alert.>"], format!("{base}/down/pager")),
    ];
    let mut created = Vec::with_capacity(specs.len());
    for (name, types, url) in specs {
        let subscription = SubscriptionCreate {
            subscriber_name: Some(name.to_owned()),
            event_types: types.into_iter().map(str::to_owned).collect(),
            callback_url: Some(url),
            retry_policy: Some(RETRY_POLICY),
            ..SubscriptionCreate::default()
        }
        .into_subscription()
        .with_context(|| format!("the demo subscription `{name}` is invalid"))?;
        let saved = service
            .create_subscription(subscription)
            .await
            .with_context(|| format!("cannot create the demo subscription `{name}`"))?;
        created.push(saved);
    }
    Ok(created)
}

/// Creates the processors; those the service refuses are reported, not fatal.
async fn create_processors(service: &dyn EventService, base: &str) -> (Vec<Arc<Processor>>, Vec<String>) {
    let now = Timestamp::now();
    let audit = Processor::new("audit-log", ProcessorType::Log, now);
    let mut fraud = Processor::new("fraud-check", ProcessorType::Webhook, now);
    fraud.priority = 10;
    fraud.max_retries = 1;
    fraud.config.insert("url".into(), json!(format!("{base}/flaky/fraud-check")));
    fraud.config.insert("timeout_ms".into(), json!(2_000));
    match TypePattern::parse("filters.event_type", "payment.>") {
        Ok(pattern) => fraud.filters.event_type = Some(pattern),
        Err(error) => return (Vec::new(), vec![format!("processor `fraud-check`: {error}")]),
    }

    let (mut created, mut skipped) = (Vec::new(), Vec::new());
    for processor in [audit, fraud] {
        let name = processor.processor_name.clone();
        match service.create_processor(processor).await {
            Ok(saved) => created.push(saved),
            Err(error) => {
                tracing::warn!(processor = %name, %error, "the demo runs without this processor");
                skipped.push(format!("processor `{name}` was not created: {error}"));
            }
        }
    }
    (created, skipped)
}

/// Sends a batch every [`TICK`], with a burst now and then, until `cancel` or the service shuts down.
async fn send_traffic(
    service: Arc<dyn EventService>,
    mut traffic: Traffic,
    stats: Arc<DemoStats>,
    cancel: CancellationToken,
) {
    let mut rng = Rng::from_clock();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Start with a short burst so the panes fill at once.
    let mut burst_left = 2;
    let mut last_warning: Option<Instant> = None;
    let mut warn = |message: String| {
        if last_warning.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            last_warning = Some(Instant::now());
            tracing::warn!("{message}");
        }
    };
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let (low, high) = if burst_left > 0 {
            burst_left -= 1;
            BURST_BATCH
        } else {
            if rng.chance(BURST_CHANCE) {
                burst_left = BURST_TICKS;
            }
            BATCH
        };
        let batch: Vec<_> = (0..rng.between(low, high)).filter_map(|_| traffic.next_event()).collect();
        match service.ingest(batch).await {
            Ok(results) => {
                let stored = results.iter().filter(|r| r.is_ok()).count();
                stats.events_sent.fetch_add(stored as u64, Ordering::Relaxed);
                let refused = results.len() - stored;
                if refused > 0 {
                    stats.events_refused.fetch_add(refused as u64, Ordering::Relaxed);
                    if let Some(Err(error)) = results.iter().find(|r| r.is_err()) {
                        warn(format!("demo traffic: {refused} events were refused, e.g.: {error}"));
                    }
                }
            }
            Err(service::Error::ShuttingDown) => break,
            Err(error) => warn(format!("demo traffic: a batch was not stored ({error}); the next one follows")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use eventdeck::config::Config;
    use eventdeck::domain::delivery::DlqQuery;
    use eventdeck::domain::{DeadLetterKind, EventQuery, NewEvent, TypePattern};
    use eventdeck::engine::Engine;
    use eventdeck::storage;
    use eventdeck::wire::EventCreate;
    use serde_json::Value;

    use super::*;

    /// `event` sent through the JSON the API takes and the validation it applies.
    fn through_wire(event: &NewEvent) -> NewEvent {
        let create = EventCreate {
            event_type: Some(event.event_type.clone()),
            event_source: Some(event.event_source.as_str().to_owned()),
            event_category: Some(event.event_category.as_str().to_owned()),
            user_id: event.user_id.clone(),
            tenant_id: event.tenant_id.clone(),
            data: Some(Value::Object(event.data.clone())),
            metadata: Some(Value::Object(event.metadata.clone())),
            context: Some(Value::Object(event.context.clone())),
            timestamp: Some(event.timestamp.to_string()),
            stream_id: event.stream_id.clone(),
            expected_version: event.expected_version,
            correlation_id: event.correlation_id.clone(),
            idempotency_key: event.idempotency_key.clone(),
        };
        let json = serde_json::to_string(&create).unwrap();
        let parsed: EventCreate = serde_json::from_str(&json).unwrap();
        parsed.into_new_event().unwrap_or_else(|error| panic!("{} is refused: {error}", event.event_type))
    }

    #[test]
    fn every_catalogue_event_passes_the_wire_validation() {
        let mut traffic = Traffic::new(Catalogue::builtin().unwrap(), Rng::new(7));
        let expected: HashSet<String> = traffic.catalogue().event_types().into_iter().collect();
        let users: HashSet<String> = traffic.catalogue().users().iter().cloned().collect();
        let mut seen = HashSet::new();
        for _ in 0..20_000 {
            let event = traffic.next_event().unwrap();
            assert_eq!(through_wire(&event), event, "{} changes on the wire", event.event_type);
            if let Some(user) = &event.user_id {
                assert!(users.contains(user), "{user} is not a catalogue user");
                assert!(event.tenant_id.is_some());
            }
            if let Some(stream) = &event.stream_id {
                assert!(stream.starts_with(&format!("{}:", event.event_type.split('.').next().unwrap())), "{stream}");
                assert!(event.expected_version.is_none());
            }
            seen.insert(event.event_type);
        }
        let missing: Vec<_> = expected.difference(&seen).collect();
        assert!(missing.is_empty(), "never produced: {missing:?}");
        assert!(seen.is_subset(&expected));
    }

    #[test]
    fn builtin_streams_have_the_order_lifecycle() {
        let catalogue = Catalogue::builtin().unwrap();
        let (steps, deleted) = catalogue.lifecycle("order").unwrap();
        assert_eq!(steps[..3], ["order.created", "order.paid", "order.shipped"]);
        assert_eq!(deleted.as_deref(), Some("order.deleted"));
    }

    #[test]
    fn subscriptions_match_what_they_are_for() {
        let orders = [TypePattern::parse("t", "order.>").unwrap(), TypePattern::parse("t", "payment.>").unwrap()];
        let catalogue = Catalogue::builtin().unwrap();
        let types = catalogue.event_types();
        assert!(types.iter().any(|t| orders.iter().any(|p| p.matches(t)) && t.starts_with("payment.")));
        assert!(types.iter().any(|t| TypePattern::parse("t", "alert.>").unwrap().matches(t)));
    }

    /// Polls `check` every 100 ms until it answers `Some`, failing after `within`.
    async fn eventually<T, F: Future<Output = Option<T>>>(within: Duration, what: &str, check: impl Fn() -> F) -> T {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what} did not happen within {within:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn demo_fills_history_deliveries_and_the_dead_letter_queue() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.storage.url = format!("sqlite://{}", dir.path().join("demo.db").display());
        config.delivery.allow_private_networks = true;
        let store = storage::connect(&config.storage.url, &config.store_options()).await.unwrap();
        let engine = Engine::start(store, config.engine_options()).await.unwrap();
        let service: Arc<dyn EventService> = Arc::new(engine.clone());
        let cancel = CancellationToken::new();
        let started = tokio::time::Instant::now();

        let info = start(service.clone(), cancel.clone()).await.unwrap();
        let names: Vec<&str> = info.subscriptions.iter().map(|s| s.subscriber_name.as_str()).collect();
        assert_eq!(names, ["orders-to-fulfilment", "alerts-pager"]);
        let processors: Vec<&str> = info.processors.iter().map(|p| p.processor_name.as_str()).collect();
        assert_eq!(processors, ["audit-log", "fraud-check"], "skipped: {:?}", info.skipped);
        assert!(info.status_line().contains(&info.sink.to_string()));

        tokio::time::sleep(Duration::from_secs(3)).await;
        let stats = service.statistics().await.unwrap();
        assert!(stats.total_events >= 50, "{} events after 3 s", stats.total_events);
        assert!(stats.events_by_type.len() >= 8, "types after 3 s: {:?}", stats.events_by_type.keys());
        assert!(stats.events_by_source.len() >= 4, "sources after 3 s: {:?}", stats.events_by_source.keys());
        assert!(stats.top_users.len() >= 5, "users after 3 s: {:?}", stats.top_users);
        assert_eq!(info.stats.events_refused.load(Ordering::Relaxed), 0);

        let attempt = eventually(Duration::from_secs(5), "a delivery attempt to orders-to-fulfilment", || {
            let service = service.clone();
            let subscription = info.subscriptions[0].subscription_id;
            async move {
                let mut query = EventQuery::default();
                query.filter.event_type = Some(TypePattern::parse("t", "order.>").unwrap());
                query.limit = 50;
                for event in service.query(query).await.ok()?.events {
                    let attempts = service.delivery_attempts(event.event_id).await.ok()?;
                    if let Some(attempt) = attempts.into_iter().find(|a| a.subscription_id == subscription) {
                        return Some(attempt);
                    }
                }
                None
            }
        })
        .await;
        assert!(attempt.status_code.is_some(), "the sink answered: {attempt:?}");

        let fraud_check = info.processors[1].processor_id;
        let run = eventually(Duration::from_secs(5), "a fraud-check run on a payment", || {
            let service = service.clone();
            async move {
                let mut query = EventQuery::default();
                query.filter.event_type = Some(TypePattern::parse("t", "payment.>").unwrap());
                query.limit = 50;
                for event in service.query(query).await.ok()?.events {
                    let results = service.processing_results(event.event_id).await.ok()?;
                    if let Some(result) = results.into_iter().find(|r| r.processor_id == fraud_check) {
                        return Some(result);
                    }
                }
                None
            }
        })
        .await;
        assert!(run.success || run.error.is_some(), "{run:?}");

        let pager = info.subscriptions[1].subscription_id;
        let dead = eventually(Duration::from_secs(10).saturating_sub(started.elapsed()), "a dead letter", || {
            let service = service.clone();
            async move {
                let query = DlqQuery { subscription_id: Some(pager), limit: 10, ..DlqQuery::default() };
                service.dead_letters(query).await.ok()?.entries.into_iter().next()
            }
        })
        .await;
        assert_eq!(dead.kind, DeadLetterKind::Delivery);
        assert!(dead.event_type.starts_with("alert."), "{}", dead.event_type);
        assert_eq!(dead.attempts, RETRY_POLICY.max_retries + 1);
        assert_eq!(dead.last_status_code, Some(503));

        cancel.cancel();
        for task in info.tasks {
            tokio::time::timeout(Duration::from_secs(5), task).await.expect("demo tasks stop on cancel").unwrap();
        }
        let sent = info.stats.events_sent.load(Ordering::Relaxed);
        assert_eq!(service.statistics().await.unwrap().total_events, sent as i64, "every sent event is stored");
        engine.shutdown().await;
    }
}
