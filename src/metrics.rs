//! The Prometheus metrics of one engine and the HTTP server in front of it: one [`Metrics`] (one
//! registry) per engine, so several servers in one process (tests) never mix their figures.
//!
//! Counters and histograms are recorded where things happen (the ingest writer, the delivery
//! dispatcher, the processing runner, the HTTP layer); the gauges that describe the shared store are
//! set from the store when `/metrics` is scraped ([`Metrics::set_store_gauges`]). Recording is a few
//! atomic operations: label sets known up front are resolved once, and the others borrow or share their
//! strings instead of allocating per request.

use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::domain::{DeadLetterKind, EventSource, SubscriptionId};

/// The Content-Type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Bucket bounds for durations, in seconds: 100 µs to 10 s, fine enough to tell a 0.5 ms commit from a
/// 2 ms one and a fast webhook from a slow one.
const SECONDS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Bucket bounds for the delivery lag (commit → 2xx), which includes retries: 1 ms to one hour.
const LAG_SECONDS: &[f64] =
    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

/// Bucket bounds for the number of events in one group commit.
const GROUP_SIZES: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0];

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS.iter().copied())
}

/// What became of one delivery attempt, for `eventdeck_deliveries_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryOutcome {
    Delivered,
    Retry,
    DeadLettered,
    /// The endpoint answered 410 Gone and the subscription was disabled.
    Disabled,
}

impl DeliveryOutcome {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry => "retry",
            Self::DeadLettered => "dead_lettered",
            Self::Disabled => "disabled",
        }
    }
}

impl EncodeLabelValue for DeliveryOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// What became of one frontend event taken from JetStream, for
/// `eventdeck_frontend_consumed_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumedOutcome {
    Stored,
    /// Its id was stored already (a redelivered message): stored once, acknowledged again.
    Duplicate,
    DeadLettered,
}

impl ConsumedOutcome {
    const ALL: [Self; 3] = [Self::Stored, Self::Duplicate, Self::DeadLettered];

    const fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Duplicate => "duplicate",
            Self::DeadLettered => "dead_lettered",
        }
    }
}

/// What became of a live-feed message between instances, for `eventdeck_live_feed_messages_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LiveFeed {
    /// Published to NATS for the other instances.
    Sent,
    /// Taken from NATS, from another instance of this store.
    Received,
    /// Not sent or not relayed (a queue full, NATS down): the store's poll delivers it instead.
    Dropped,
}

impl EncodeLabelValue for LiveFeed {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(match self {
            Self::Sent => "sent",
            Self::Received => "received",
            Self::Dropped => "dropped",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LiveFeedLabels {
    outcome: LiveFeed,
}

/// A subscription id as a label value, written out only when scraped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SubscriptionLabel(SubscriptionId);

impl EncodeLabelValue for SubscriptionLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        write!(encoder, "{}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HttpLabels {
    route: Arc<str>,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DeliveryLabels {
    subscription_id: SubscriptionLabel,
    outcome: DeliveryOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProcessingLabels {
    processor: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PathLabels {
    path: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// The label of requests that matched no route (404s): unknown paths never become label values.
const UNMATCHED_ROUTE: &str = "unmatched";

/// One engine's metrics and the registry that exposes them.
pub struct Metrics {
    registry: Registry,
    /// `eventdeck_events_ingested_total{source}`, one counter per source, in `EventSource::ALL` order.
    ingested: Vec<Counter>,
    duplicates: Counter,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Route templates as shared strings, so a request's labels need no allocation.
    routes: RwLock<HashMap<Box<str>, Arc<str>>>,
    commit_duration: Histogram,
    commit_events: Histogram,
    deliveries: Family<DeliveryLabels, Counter>,
    delivery_duration: Histogram,
    delivery_lag: Histogram,
    processing_runs: Family<ProcessingLabels, Counter>,
    events_pending: Gauge,
    dlq_entries: Family<KindLabels, Gauge>,
    live_clients: Gauge,
    nats_connected: Gauge,
    /// `eventdeck_frontend_events_total{path}`: [jetstream, direct].
    frontend_events: [Counter; 2],
    /// `eventdeck_frontend_consumed_total{outcome}`, in `ConsumedOutcome::ALL` order.
    frontend_consumed: Vec<Counter>,
    live_feed: Family<LiveFeedLabels, Counter>,
    /// Instances heartbeating in the shared store (this one alone on SQLite).
    instances: Gauge,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("eventdeck");
        let ingested_family = Family::<SourceLabels, Counter>::default();
        registry.register("events_ingested", "Events stored by ingest, by source", ingested_family.clone());
        let ingested = EventSource::ALL
            .iter()
            .map(|source| ingested_family.get_or_create(&SourceLabels { source: source.as_str() }).clone())
            .collect();
        let duplicates = Counter::default();
        registry.register(
            "ingest_duplicates",
            "Ingested events whose idempotency key was seen before (answered with the stored event)",
            duplicates.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered, by route template", http_requests.clone());
        let http_duration = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            seconds_histogram as fn() -> Histogram,
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request (to the response head), by route template",
            Unit::Seconds,
            http_duration.clone(),
        );
        let commit_duration = seconds_histogram();
        registry.register_with_unit(
            "commit_duration",
            "Time of one group commit of ingested events",
            Unit::Seconds,
            commit_duration.clone(),
        );
        let commit_events = Histogram::new(GROUP_SIZES.iter().copied());
        registry.register("commit_events", "Events in one group commit", commit_events.clone());
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register("deliveries", "Webhook delivery attempts, by subscription and outcome", deliveries.clone());
        let delivery_duration = seconds_histogram();
        registry.register_with_unit(
            "delivery_duration",
            "Time of one webhook delivery attempt",
            Unit::Seconds,
            delivery_duration.clone(),
        );
        let delivery_lag = Histogram::new(LAG_SECONDS.iter().copied());
        registry.register_with_unit(
            "delivery_lag",
            "Time from an event's commit to its delivery's 2xx answer, retries included",
            Unit::Seconds,
            delivery_lag.clone(),
        );
        let processing_runs = Family::<ProcessingLabels, Counter>::default();
        registry.register(
            "processing_runs",
            "Processor runs on events, by processor name and outcome",
            processing_runs.clone(),
        );
        let events_pending = Gauge::default();
        registry.register("events_pending", "Events waiting for processing, in the store", events_pending.clone());
        let dlq_entries = Family::<KindLabels, Gauge>::default();
        registry.register("dlq_entries", "Entries in the dead-letter queue, by kind", dlq_entries.clone());
        let live_clients = Gauge::default();
        registry.register("live_clients", "Live streams open on this instance", live_clients.clone());
        let nats_connected = Gauge::default();
        registry.register("nats_connected", "1 when NATS is configured and connected, else 0", nats_connected.clone());
        let frontend_family = Family::<PathLabels, Counter>::default();
        registry.register(
            "frontend_events",
            "Frontend events accepted, by path: handed to JetStream (frontend_via_nats) or stored directly",
            frontend_family.clone(),
        );
        let frontend_events =
            ["jetstream", "direct"].map(|path| frontend_family.get_or_create(&PathLabels { path }).clone());
        let consumed_family = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "frontend_consumed",
            "Frontend events taken from JetStream by this instance's consumer, by outcome",
            consumed_family.clone(),
        );
        let frontend_consumed = ConsumedOutcome::ALL
            .iter()
            .map(|outcome| consumed_family.get_or_create(&OutcomeLabels { outcome: outcome.as_str() }).clone())
            .collect();
        let live_feed = Family::<LiveFeedLabels, Counter>::default();
        registry.register(
            "live_feed_messages",
            "Live-feed messages between instances over NATS, by outcome (sent, received, dropped)",
            live_feed.clone(),
        );
        let instances = Gauge::default();
        registry.register("instances", "Instances seen in the last 15 s sharing this one's store", instances.clone());
        Self {
            registry,
            ingested,
            duplicates,
            http_requests,
            http_duration,
            routes: RwLock::new(HashMap::new()),
            commit_duration,
            commit_events,
            deliveries,
            delivery_duration,
            delivery_lag,
            processing_runs,
            events_pending,
            dlq_entries,
            live_clients,
            nats_connected,
            frontend_events,
            frontend_consumed,
            live_feed,
            instances,
        }
    }

    /// Frontend events a route accepted: `count` handed to JetStream, or stored directly.
    pub fn frontend_events(&self, via_jetstream: bool, count: usize) {
        self.frontend_events[usize::from(!via_jetstream)].inc_by(count as u64);
    }

    /// One frontend event the consumer took from JetStream.
    pub fn frontend_consumed(&self, outcome: ConsumedOutcome) {
        if let Some(position) = ConsumedOutcome::ALL.iter().position(|o| *o == outcome) {
            self.frontend_consumed[position].inc();
        }
    }

    /// One group commit: how long it took, how many events it held, and what became of them.
    pub fn commit(&self, elapsed: Duration, events: usize, created: &[EventSource], duplicates: u64) {
        self.commit_duration.observe(elapsed.as_secs_f64());
        self.commit_events.observe(events as f64);
        for source in created {
            if let Some(position) = EventSource::ALL.iter().position(|s| s == source) {
                self.ingested[position].inc();
            }
        }
        if duplicates > 0 {
            self.duplicates.inc_by(duplicates);
        }
    }

    /// One answered HTTP request; `route` is the matched template (`None` when no route matched).
    pub fn http_request(&self, route: Option<&str>, method: &str, status: u16, elapsed: Duration) {
        let route = self.route(route.unwrap_or(UNMATCHED_ROUTE));
        let labels = HttpLabels { route: route.clone(), method: method_label(method), status };
        self.http_requests.get_or_create(&labels).inc();
        self.http_duration.get_or_create(&RouteLabels { route }).observe(elapsed.as_secs_f64());
    }

    /// The shared string for a route template (there are a few dozen, so the map stays small).
    fn route(&self, template: &str) -> Arc<str> {
        if let Some(route) = self.routes.read().unwrap_or_else(|p| p.into_inner()).get(template) {
            return route.clone();
        }
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        routes.entry(template.into()).or_insert_with(|| Arc::from(template)).clone()
    }

    /// One delivery attempt. `lag` (commit → 2xx) is given for delivered ones.
    pub fn delivery(
        &self,
        subscription_id: SubscriptionId,
        outcome: DeliveryOutcome,
        elapsed: Duration,
        lag: Option<Duration>,
    ) {
        let labels = DeliveryLabels { subscription_id: SubscriptionLabel(subscription_id), outcome };
        self.deliveries.get_or_create(&labels).inc();
        self.delivery_duration.observe(elapsed.as_secs_f64());
        if let Some(lag) = lag {
            self.delivery_lag.observe(lag.as_secs_f64());
        }
    }

    /// Drops a deleted subscription's delivery series, so deleted subscriptions do not pile up.
    pub fn forget_subscription(&self, subscription_id: SubscriptionId) {
        for outcome in [
            DeliveryOutcome::Delivered,
            DeliveryOutcome::Retry,
            DeliveryOutcome::DeadLettered,
            DeliveryOutcome::Disabled,
        ] {
            self.deliveries.remove(&DeliveryLabels { subscription_id: SubscriptionLabel(subscription_id), outcome });
        }
    }

    /// `count` runs of the processor named `processor` that succeeded or failed.
    pub fn processing_runs(&self, processor: &str, success: bool, count: u64) {
        let labels =
            ProcessingLabels { processor: processor.to_owned(), outcome: if success { "success" } else { "failure" } };
        self.processing_runs.get_or_create(&labels).inc_by(count);
    }

    /// One live-feed message between instances.
    pub fn live_feed(&self, outcome: LiveFeed) {
        self.live_feed.get_or_create(&LiveFeedLabels { outcome }).inc();
    }

    /// Counts an open live stream until the returned guard is dropped.
    pub fn live_client(self: &Arc<Self>) -> LiveClient {
        self.live_clients.inc();
        LiveClient { metrics: self.clone() }
    }

    /// The gauges that describe the shared store and the NATS link, read just before a scrape.
    pub fn set_store_gauges(&self, gauges: &StoreGauges) {
        self.events_pending.set(gauges.events_pending);
        for (kind, count) in
            [(DeadLetterKind::Delivery, gauges.dlq_delivery), (DeadLetterKind::Processing, gauges.dlq_processing)]
        {
            let kind = kind.as_str();
            self.dlq_entries.get_or_create(&KindLabels { kind }).set(count);
        }
        self.nats_connected.set(i64::from(gauges.nats_connected));
        self.instances.set(gauges.instances);
    }

    /// The exposition text (OpenMetrics 1.0, see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// What the store-backed gauges show at a scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreGauges {
    pub events_pending: i64,
    pub dlq_delivery: i64,
    pub dlq_processing: i64,
    pub nats_connected: bool,
    pub instances: i64,
}

/// An open live stream, counted in `eventdeck_live_clients` until dropped.
pub struct LiveClient {
    metrics: Arc<Metrics>,
}

impl Drop for LiveClient {
    fn drop(&mut self) {
        self.metrics.live_clients.dec();
    }
}

/// The standard methods as static labels; anything else is `other`, so odd methods cannot grow the series.
fn method_label(method: &str) -> &'static str {
    const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    METHODS.iter().find(|m| **m == method).copied().unwrap_or("other")
}
