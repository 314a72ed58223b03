//! The engine: ingest through the group-commit writer, reads from the store, the bus and live feeds,
//! statistics. `Engine` is cheap to clone and implements [`EventService`].

pub mod archive;
mod bus;
mod ingest;
mod processing;
mod processors;
mod projection;
mod replay;
mod stats;
mod subscriptions;
mod workers;

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::{Mutex, Notify, broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use bus::EngineEvent;
/// How often, by default, a shared store is read for what other instances did.
pub use workers::follower::POLL as DEFAULT_FOLLOW_POLL;

use crate::cluster::nats::{Nats, NatsOptions};
use crate::delivery::WebhookClient;
use crate::delivery::guard::check_callback_url;
use crate::domain::delivery::{DlqGroupQuery, DlqGroups, DlqQuery, DlqSelector};
use crate::domain::processor::redact;
use crate::domain::subscription::SubscriptionPatch;
use crate::domain::{
    DeadLetter, DeliveryAttempt, DlqId, Event, EventFilter, EventId, EventPage, EventQuery, FieldError, NewEvent,
    ProcessingResult, Processor, ProcessorId, Projection, ProjectionAt, ReplayId, ReplayProgress, ReplayRequest,
    ReplayStarted, Statistics, Subscription, SubscriptionId, Timestamp,
};
use crate::metrics::Metrics;
use crate::service::{
    Cluster, DlqAction, DlqPage, Error, EventService, Feed, Health, Ingested, Instance, InstanceClaims, MAX_STREAMS,
    StorageHealth, StreamEvents, StreamList,
};
use crate::storage::{InstanceRecord, Store};
use bus::Bus;
use ingest::{Submission, Writer};
use processing::Runner;
use processors::Processors;
use stats::IngestRate;
use stats::Latencies;
use subscriptions::Subscriptions;
use workers::delivery::DeliveryWorker;
use workers::follower::LogFollower;
use workers::live_link::LiveLink;
use workers::processing::ProcessingWorker;

/// Commits waiting for the log follower; the writer waits when it is full.
const COMMITTED_QUEUE: usize = 64;

/// The oldest a copy of the processors may be when ingest redacts with it (with a shared store): the
/// follower reads them every half second, so this is only reached when it is held up.
const PROCESSORS_MAX_AGE: Duration = Duration::from_millis(700);

/// Sizes of the engine's bounded queues.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Broadcast buffer of the bus; a consumer further behind is caught up from the store.
    pub bus_capacity: usize,
    /// Submissions waiting for the writer; callers wait (back-pressure) when it is full.
    pub queue_capacity: usize,
    /// Most events committed in one transaction.
    pub max_group: usize,
    /// Webhook requests in flight at once.
    pub delivery_concurrency: usize,
    /// Webhook requests in flight at once to one subscription, so a slow endpoint holds only so many of
    /// the `delivery_concurrency` slots.
    pub delivery_per_subscription: usize,
    /// Whether callback URLs may point at loopback, private or link-local addresses.
    pub allow_private_networks: bool,
    /// Stream versions between projection snapshots: a projection read folds at most this many events
    /// past its cached fold or snapshot.
    pub snapshot_every: u32,
    pub processing: ProcessingOptions,
    /// NATS (`[nats]`): for `nats` processors and lifecycle publications; `None`: no NATS.
    pub nats: Option<NatsOptions>,
    /// `[ingest] frontend_via_nats`: frontend events go through JetStream (with `nats` set).
    pub frontend_via_nats: bool,
    /// A replay selecting more events than this needs `confirm`.
    pub replay_confirm_above: u64,
    /// How long a claim (a delivery in flight, an event in processing, a running replay) outlives its
    /// work's own timeout before another instance may take it over (`[cluster] lease_secs`).
    pub lease: Duration,
    /// Where this instance's HTTP API listens, as other instances and operators see it.
    pub addr: String,
    /// The archive folder and the retention timer (`[archive]`, `[retention]`).
    pub archive: ArchiveOptions,
    /// How often, with a shared store, it is read for what other instances did (`[cluster] poll_ms`).
    pub follow_poll: Duration,
}

/// Where archives go and when the retention worker archives and deletes on its own.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// `[archive] dir`: the JSON Lines files go under `<dir>/events/`.
    pub dir: std::path::PathBuf,
    /// Events older than this many days are archived by the retention worker; 0: never.
    pub archive_after_days: u32,
    /// Events older than this many days are archived (when not yet) and deleted; 0: never.
    pub delete_after_days: u32,
    /// How often the retention worker looks.
    pub interval: Duration,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        Self {
            dir: "data/archive".into(),
            archive_after_days: 0,
            delete_after_days: 0,
            interval: Duration::from_secs(3600),
        }
    }
}

/// How the processing loop runs (`[processing]`).
#[derive(Debug, Clone)]
pub struct ProcessingOptions {
    /// Off: events stay pending (processors can still be managed, and replays still run them).
    pub enabled: bool,
    pub batch_size: u32,
    /// Longest wait between looks for due events when no new event arrives.
    pub poll_interval: Duration,
    /// Retries of a failed event whose processor is gone.
    pub max_retries: u32,
    pub retry_initial_delay_ms: u64,
    pub retry_max_delay_ms: u64,
    /// Events of a batch processed at once.
    pub concurrency: usize,
}

impl Default for ProcessingOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            batch_size: 500,
            poll_interval: Duration::from_millis(100),
            max_retries: 3,
            retry_initial_delay_ms: 1000,
            retry_max_delay_ms: 60_000,
            concurrency: 32,
        }
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            bus_capacity: 4096,
            queue_capacity: 1024,
            max_group: 2000,
            delivery_concurrency: 64,
            delivery_per_subscription: 8,
            allow_private_networks: true,
            snapshot_every: 100,
            processing: ProcessingOptions::default(),
            nats: None,
            frontend_via_nats: false,
            replay_confirm_above: 10_000,
            lease: Duration::from_secs(30),
            addr: String::new(),
            archive: ArchiveOptions::default(),
            follow_poll: workers::follower::POLL,
        }
    }
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    queue: mpsc::Sender<Submission>,
    bus: Bus,
    last_seq: Arc<AtomicI64>,
    rate: Arc<IngestRate>,
    metrics: Arc<Metrics>,
    subscriptions: Arc<Subscriptions>,
    /// Wakes the delivery worker when subscriptions change or dead letters are retried.
    delivery_wake: Arc<Notify>,
    allow_private_networks: bool,
    projections: projection::Projections,
    processors: Arc<Processors>,
    runner: Arc<Runner>,
    /// Wakes the processing loop when dead letters of kind processing are retried.
    processing_wake: Arc<Notify>,
    latencies: Arc<Latencies>,
    replay_confirm_above: u64,
    /// Whether the processing loop runs; when it does not, every event stays pending.
    processing_enabled: bool,
    lease: Duration,
    /// This instance as it records itself in the store.
    instance: InstanceRecord,
    archiver: Arc<archive::Archiver>,
    /// With `[ingest] frontend_via_nats` and NATS: what the frontend routes publish through.
    frontend: Option<Arc<workers::frontend::Frontend>>,
    started: Instant,
    shutdown: CancellationToken,
    /// Stopped first, before the writer, so nothing is left half-recorded.
    workers: Mutex<Vec<JoinHandle<()>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Stopped after the writer: the log follower (which publishes the last commits) and the announcer
    /// (which writes the last changes), with the token that stops the announcer.
    last: Mutex<Vec<JoinHandle<()>>>,
    announcer_stop: CancellationToken,
}

impl Engine {
    /// Starts the engine's tasks on `store`.
    pub async fn start(store: Arc<dyn Store>, options: EngineOptions) -> Result<Self, Error> {
        let last_seq = Arc::new(AtomicI64::new(store.last_seq().await?));
        let nats = match &options.nats {
            Some(nats) => Nats::connect(nats).await.map_err(Error::Unavailable)?,
            None => Nats::disabled(),
        };
        let publishing = options.nats.as_ref().filter(|nats| nats.publish);
        let (notices, to_publish) = match publishing {
            Some(_) => {
                let (tx, rx) = mpsc::channel(workers::publisher::NOTICES);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let (bus, changes) = Bus::new(options.bus_capacity, !store.exclusive(), notices);
        let (queue, submissions) = mpsc::channel(options.queue_capacity.max(1));
        let (committed, to_follow) = mpsc::channel(COMMITTED_QUEUE);
        let rate = Arc::new(IngestRate::default());
        let metrics = Arc::new(Metrics::new());
        // The live link between instances: only when others share the store and NATS is configured.
        let (live, remote, link) = match (&options.nats, store.exclusive()) {
            (Some(nats_options), false) => {
                let (outbox, outgoing) = LiveLink::outbox(metrics.clone());
                let (incoming, remote) = mpsc::channel(workers::live_link::QUEUE);
                let link = LiveLink {
                    nats: nats.clone(),
                    store: store.clone(),
                    prefix: nats_options.subject_prefix.clone(),
                    metrics: metrics.clone(),
                    incoming,
                };
                (Some(outbox), Some(remote), Some((link, outgoing)))
            }
            _ => (None, None, None),
        };
        let shutdown = CancellationToken::new();
        let writer = Writer {
            store: store.clone(),
            committed,
            rate: rate.clone(),
            metrics: metrics.clone(),
            max_group: options.max_group.max(1),
        };
        let writer = tokio::spawn(writer.run(submissions, shutdown.clone()));

        let subscriptions = Arc::new(Subscriptions::load(store.as_ref()).await?);
        let processors = Arc::new(Processors::load(store.as_ref()).await?);
        let delivery_wake = Arc::new(Notify::new());
        let follower = LogFollower {
            store: store.clone(),
            bus: bus.clone(),
            last_seq: last_seq.clone(),
            subscriptions: subscriptions.clone(),
            processors: processors.clone(),
            delivery_wake: delivery_wake.clone(),
            poll: options.follow_poll,
            live: live.clone(),
        };
        let mut last = vec![tokio::spawn(follower.run(to_follow, remote))];
        let announcer_stop = CancellationToken::new();
        if let Some(changes) = changes {
            last.push(tokio::spawn(workers::announcer::run(store.clone(), changes, live, announcer_stop.clone())));
        }
        // Awaited last: the link ends once the follower and the announcer have dropped their outboxes,
        // so their last commits and changes still go out.
        if let Some((link, outgoing)) = link {
            last.push(tokio::spawn(link.run(outgoing)));
        }
        let client = WebhookClient::new(options.allow_private_networks)
            .map_err(|e| Error::Unavailable(format!("cannot build the webhook HTTP client: {e}")))?;
        let delivery = DeliveryWorker {
            store: store.clone(),
            client: client.clone(),
            bus: bus.clone(),
            subscriptions: subscriptions.clone(),
            wake: delivery_wake.clone(),
            concurrency: options.delivery_concurrency.max(1),
            per_subscription: options.delivery_per_subscription.clamp(1, options.delivery_concurrency.max(1)),
            lease: options.lease,
            metrics: metrics.clone(),
        };
        let mut workers = vec![tokio::spawn(delivery.run(shutdown.child_token()))];

        if let (Some(options_nats), Some(to_publish)) = (publishing, to_publish) {
            // The cursor is made now (at the newest seq, the first time), not when NATS first answers:
            // what is stored while NATS is down is published once it is back.
            let now = Timestamp::now();
            if let Err(error) = store
                .claim_publication(
                    crate::storage::EVENTS_PUBLICATION,
                    store.instance_id(),
                    now,
                    now.plus(options.lease),
                )
                .await
            {
                tracing::warn!(%error, "cannot claim the publication cursor yet; the publisher keeps trying");
            }
            let publisher = workers::publisher::Publisher {
                store: store.clone(),
                nats: nats.clone(),
                stream: options_nats.stream.clone(),
                prefix: options_nats.subject_prefix.clone(),
                bus: bus.subscribe(),
                notices: to_publish,
                lease: options.lease,
                stalled: Default::default(),
            };
            workers.push(tokio::spawn(publisher.run(shutdown.child_token())));
        }
        let frontend = match &options.nats {
            Some(nats_options) if options.frontend_via_nats => Some(Arc::new(workers::frontend::Frontend::new(
                nats.clone(),
                &nats_options.stream,
                &nats_options.subject_prefix,
            ))),
            _ => None,
        };
        let runner = Arc::new(Runner {
            store: store.clone(),
            client,
            nats,
            concurrency: options.processing.concurrency.max(1),
            snapshot_every: i64::from(options.snapshot_every.max(1)),
            metrics: metrics.clone(),
            bus: bus.clone(),
        });
        let processing_wake = Arc::new(Notify::new());
        let latencies = Arc::new(Latencies::default());
        if options.processing.enabled {
            let processing = ProcessingWorker {
                store: store.clone(),
                runner: runner.clone(),
                processors: processors.clone(),
                bus: bus.clone(),
                wake: processing_wake.clone(),
                options: options.processing.clone(),
                latencies: latencies.clone(),
                lease: options.lease,
            };
            workers.push(tokio::spawn(processing.run(shutdown.child_token())));
        }
        // Replays this instance (or, on a store it holds alone, its predecessor) was running are carried
        // on by the heartbeat, here or on another instance.
        let released = store.release_replays().await?;
        if released > 0 {
            tracing::info!(released, "replays running at the last stop will be carried on");
        }
        let now = Timestamp::now();
        let instance = InstanceRecord {
            instance_id: store.instance_id().to_owned(),
            addr: options.addr.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: now,
            last_seen: now,
        };
        let archiver = Arc::new(archive::Archiver::new(store.clone(), options.archive.dir.clone()));
        if options.archive.archive_after_days > 0 || options.archive.delete_after_days > 0 {
            let retention = workers::retention::Retention {
                archiver: archiver.clone(),
                archive_after_days: options.archive.archive_after_days,
                delete_after_days: options.archive.delete_after_days,
                interval: options.archive.interval,
            };
            workers.push(tokio::spawn(retention.run(shutdown.child_token())));
        }
        let projections =
            projection::Projections::with_archive(options.snapshot_every, options.archive.dir.clone(), bus.clone());
        let engine = Self {
            inner: Arc::new(Inner {
                store,
                queue,
                bus,
                last_seq,
                rate,
                metrics,
                subscriptions,
                delivery_wake,
                allow_private_networks: options.allow_private_networks,
                projections,
                processors,
                runner,
                processing_wake,
                latencies,
                replay_confirm_above: options.replay_confirm_above,
                processing_enabled: options.processing.enabled,
                lease: options.lease,
                instance,
                archiver,
                frontend: frontend.clone(),
                started: Instant::now(),
                shutdown,
                workers: Mutex::new(workers),
                writer: Mutex::new(Some(writer)),
                last: Mutex::new(last),
                announcer_stop,
            }),
        };
        let heartbeat = tokio::spawn(workers::heartbeat::run(engine.clone(), engine.inner.shutdown.child_token()));
        engine.inner.workers.lock().await.push(heartbeat);
        if let Some(frontend) = frontend {
            let consumer =
                tokio::spawn(workers::frontend::run(engine.clone(), frontend, engine.inner.shutdown.child_token()));
            engine.inner.workers.lock().await.push(consumer);
        }
        Ok(engine)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// This engine's metrics registry, which the HTTP server in front of it records into and exposes.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// A receiver of everything the engine does, for in-process consumers.
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.bus.subscribe()
    }

    /// Stops the workers, stops taking events, commits every one already submitted, and closes the
    /// store. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        // Workers (and replays) first: they release their claims as they stop.
        loop {
            // Replays may still be starting while the others stop: take whatever the list holds.
            let stopping: Vec<JoinHandle<()>> = self.inner.workers.lock().await.drain(..).collect();
            if stopping.is_empty() {
                break;
            }
            for worker in stopping {
                if let Err(error) = worker.await {
                    tracing::error!(%error, "an engine worker ended abnormally");
                }
            }
        }
        let Some(writer) = self.inner.writer.lock().await.take() else { return };
        if let Err(error) = writer.await {
            tracing::error!(%error, "the ingest writer ended abnormally");
        }
        match self.inner.store.release_replays().await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, "running replays are left for another instance or the next start"),
            Err(error) => tracing::warn!(%error, "could not let go of running replays; their lease ends on its own"),
        }
        self.inner.announcer_stop.cancel();
        for task in self.inner.last.lock().await.drain(..) {
            if let Err(error) = task.await {
                tracing::error!(%error, "an engine task ended abnormally");
            }
        }
        self.inner.store.close().await;
    }
}

#[async_trait]
impl EventService for Engine {
    async fn ingest(&self, mut events: Vec<NewEvent>) -> Result<Vec<Result<Ingested, Error>>, Error> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.fresh_processors().await?;
        self.redact(&mut events);
        if self.inner.processing_enabled {
            // An event no processor wants is stored processed: no trip through the processing loop.
            let runnable = self.inner.processors.runnable();
            for event in &mut events {
                event.skip_processing = !runnable.iter().any(|p| p.matches_new(event));
            }
        }
        let span = tracing::debug_span!("ingest", events = events.len());
        let (reply, answer) = oneshot::channel();
        async {
            self.inner.queue.send(Submission { events, reply }).await.map_err(|_| Error::ShuttingDown)?;
            answer.await.map_err(|_| Error::ShuttingDown)?
        }
        .instrument(span)
        .await
    }

    async fn ingest_frontend(&self, mut events: Vec<NewEvent>) -> Result<Vec<EventId>, Error> {
        let Some(frontend) = self.inner.frontend.as_ref() else {
            self.inner.metrics.frontend_events(false, events.len());
            return self.ingest(events).await?.into_iter().map(|r| r.map(|i| i.event.event_id)).collect();
        };
        // Ids first: the answer carries them before anything is stored, and a consumer that gets the
        // same event twice (or after it was stored directly below) stores it once.
        for event in &mut events {
            event.event_id.get_or_insert_with(EventId::new_v7);
        }
        if frontend.active() {
            // Redacted before it leaves the process, so JetStream never holds what the store must not;
            // the consumer's ingest applies the redactors of its time again.
            self.fresh_processors().await?;
            self.redact(&mut events);
            match frontend.publish(&events).await {
                Ok(()) => {
                    self.inner.metrics.frontend_events(true, events.len());
                    return Ok(events.iter().filter_map(|event| event.event_id).collect());
                }
                Err(error) => {
                    tracing::warn!(%error, "frontend events could not go through NATS; storing them directly")
                }
            }
        }
        self.inner.metrics.frontend_events(false, events.len());
        self.ingest(events).await?.into_iter().map(|r| r.map(|i| i.event.event_id)).collect()
    }

    fn frontend_via_nats(&self) -> bool {
        self.inner.frontend.as_ref().is_some_and(|frontend| frontend.active())
    }

    async fn event(&self, id: EventId) -> Result<Arc<Event>, Error> {
        match self.inner.store.event(id).await? {
            Some(event) => Ok(Arc::new(event)),
            None => Err(Error::NotFound { what: "event", id: id.to_string() }),
        }
    }

    async fn query(&self, query: EventQuery) -> Result<EventPage, Error> {
        Ok(self.inner.store.query(&query).await?)
    }

    async fn stream(&self, stream_id: &str, from_version: i64, limit: u32) -> Result<StreamEvents, Error> {
        let version = self.inner.store.stream_version(stream_id).await?;
        if version == 0 {
            return Err(Error::NotFound { what: "stream", id: stream_id.to_owned() });
        }
        let events = self.inner.store.stream(stream_id, from_version, limit).await?;
        Ok(StreamEvents {
            stream_id: stream_id.to_owned(),
            version,
            events: events.into_iter().map(Arc::new).collect(),
        })
    }

    async fn streams(&self, prefix: &str, after: Option<&str>, limit: u32) -> Result<StreamList, Error> {
        if !(1..=MAX_STREAMS).contains(&limit) {
            return Err(Error::Invalid(FieldError::new(
                "limit",
                format!("`{limit}` is not a number from 1 to {MAX_STREAMS}"),
            )));
        }
        Ok(StreamList { streams: self.inner.store.streams(prefix, after, limit).await? })
    }

    async fn statistics(&self) -> Result<Statistics, Error> {
        let counters = self.inner.store.counters().await?;
        let mut statistics = Statistics::from_counters(counters, Utc::now().date_naive(), self.inner.rate.per_second());
        let processors = self.inner.store.processors().await?;
        let runs: i64 = processors.iter().map(|p| p.processed_count + p.failed_count).sum();
        let total_ms: f64 =
            processors.iter().map(|p| p.avg_duration_ms * (p.processed_count + p.failed_count) as f64).sum();
        statistics.average_processing_time = if runs == 0 { 0.0 } else { total_ms / runs as f64 };
        statistics.processing_latency_ms = self.inner.latencies.percentiles();
        statistics.processors_enabled = processors.iter().filter(|p| p.enabled).count() as i64;
        statistics.archive = Some(self.inner.archiver.stats().await?);
        Ok(statistics)
    }

    async fn health(&self) -> Health {
        let ok = self.inner.store.ping().await.is_ok();
        Health {
            status: if ok { "ok" } else { "degraded" },
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: self.inner.started.elapsed().as_secs(),
            instance_id: self.inner.instance.instance_id.clone(),
            storage: StorageHealth { backend: self.inner.store.backend(), ok },
            nats: self.inner.runner.nats.state(),
        }
    }

    async fn cluster(&self) -> Result<Cluster, Error> {
        let seen_since = Timestamp::now().minus(workers::heartbeat::ALIVE);
        let instances = self.inner.store.instances(seen_since).await?;
        Ok(Cluster {
            instances: instances
                .into_iter()
                .map(|(record, claims)| Instance {
                    instance_id: record.instance_id,
                    addr: record.addr,
                    version: record.version,
                    started_at: record.started_at,
                    last_seen: record.last_seen,
                    claims: InstanceClaims {
                        deliveries: claims.deliveries,
                        processing: claims.processing,
                        replays: claims.replays,
                    },
                })
                .collect(),
        })
    }

    fn feed(&self, filter: EventFilter, since_seq: Option<i64>) -> Feed {
        bus::feed(self.inner.store.clone(), &self.inner.bus, &self.inner.last_seq, filter, since_seq)
    }

    async fn create_subscription(&self, mut subscription: Subscription) -> Result<Arc<Subscription>, Error> {
        self.check_url(&subscription.callback_url).await?;
        subscription.start_seq = self.inner.store.insert_subscription(&subscription).await?;
        let saved = self.inner.subscriptions.put(subscription);
        self.inner.delivery_wake.notify_one();
        self.inner.bus.notify_publisher(workers::publisher::Notice::SubscriptionCreated(saved.clone()));
        Ok(saved)
    }

    async fn subscriptions(&self) -> Result<Vec<Arc<Subscription>>, Error> {
        Ok(self.inner.subscriptions.all())
    }

    async fn subscription(&self, id: SubscriptionId) -> Result<Arc<Subscription>, Error> {
        self.inner.subscriptions.get(id).ok_or_else(|| subscription_not_found(id))
    }

    async fn update_subscription(
        &self,
        id: SubscriptionId,
        patch: SubscriptionPatch,
    ) -> Result<Arc<Subscription>, Error> {
        let mut subscription = (*self.subscription(id).await?).clone();
        if let Some(url) = &patch.callback_url {
            self.check_url(url).await?;
        }
        patch.apply(&mut subscription, Timestamp::now());
        subscription.start_seq =
            self.inner.store.update_subscription(&subscription).await?.ok_or_else(|| subscription_not_found(id))?;
        let saved = self.inner.subscriptions.put(subscription);
        self.inner.delivery_wake.notify_one();
        Ok(saved)
    }

    async fn delete_subscription(&self, id: SubscriptionId) -> Result<(), Error> {
        if !self.inner.store.delete_subscription(id).await? {
            return Err(subscription_not_found(id));
        }
        self.inner.subscriptions.remove(id);
        self.inner.metrics.forget_subscription(id);
        Ok(())
    }

    async fn delivery_attempts(&self, event_id: EventId) -> Result<Vec<DeliveryAttempt>, Error> {
        self.event(event_id).await?;
        Ok(self.inner.store.delivery_attempts(event_id).await?)
    }

    async fn dead_letters(&self, query: DlqQuery) -> Result<DlqPage, Error> {
        let (entries, total) = self.inner.store.dead_letters(&query).await?;
        Ok(DlqPage { entries, total })
    }

    async fn dead_letter(&self, id: DlqId) -> Result<DeadLetter, Error> {
        self.inner.store.dead_letter(id).await?.ok_or_else(|| dead_letter_not_found(id))
    }

    async fn retry_dead_letters(&self, selector: DlqSelector) -> Result<usize, Error> {
        let removed = self.inner.store.retry_dead_letters(&selector).await?;
        let count = removed.len();
        self.announce_removed(removed);
        self.inner.delivery_wake.notify_one();
        self.inner.processing_wake.notify_one();
        Ok(count)
    }

    async fn discard_dead_letter(&self, id: DlqId) -> Result<(), Error> {
        let removed = self.inner.store.discard_dead_letter(id).await?.ok_or_else(|| dead_letter_not_found(id))?;
        self.announce_removed(vec![removed]);
        Ok(())
    }

    async fn dead_letter_groups(&self, query: DlqGroupQuery) -> Result<DlqGroups, Error> {
        if !(1..=DlqGroupQuery::MAX_BUCKETS).contains(&query.buckets) {
            return Err(Error::Invalid(FieldError::new(
                "buckets",
                format!("`{}` is not a number from 1 to {}", query.buckets, DlqGroupQuery::MAX_BUCKETS),
            )));
        }
        Ok(self.inner.store.dead_letter_groups(&query).await?)
    }

    async fn discard_dead_letters(&self, selector: DlqSelector) -> Result<usize, Error> {
        let removed = self.inner.store.discard_dead_letters(&selector).await?;
        let count = removed.len();
        self.announce_removed(removed);
        Ok(count)
    }

    async fn create_processor(&self, processor: Processor) -> Result<Arc<Processor>, Error> {
        processor.validate().map_err(Error::Invalid)?;
        if !self.inner.store.insert_processor(&processor).await? {
            return Err(Error::Conflict(FieldError::new(
                "processor_name",
                format!("a processor named `{}` exists already: choose another name", processor.processor_name),
            )));
        }
        self.inner.processors.reload(self.inner.store.as_ref()).await?;
        Ok(Arc::new(processor))
    }

    async fn processors(&self) -> Result<Vec<Arc<Processor>>, Error> {
        // Read from the store, so the totals are current.
        Ok(self.inner.store.processors().await?.into_iter().map(Arc::new).collect())
    }

    async fn toggle_processor(&self, id: ProcessorId, enabled: bool) -> Result<Arc<Processor>, Error> {
        let processor = self
            .inner
            .store
            .set_processor_enabled(id, enabled, Timestamp::now())
            .await?
            .ok_or_else(|| processor_not_found(id))?;
        self.inner.processors.reload(self.inner.store.as_ref()).await?;
        Ok(Arc::new(processor))
    }

    async fn delete_processor(&self, id: ProcessorId) -> Result<(), Error> {
        if !self.inner.store.delete_processor(id).await? {
            return Err(processor_not_found(id));
        }
        self.inner.processors.reload(self.inner.store.as_ref()).await?;
        Ok(())
    }

    async fn processing_results(&self, event_id: EventId) -> Result<Vec<ProcessingResult>, Error> {
        if self.inner.store.event(event_id).await?.is_none() {
            return Err(Error::NotFound { what: "event", id: event_id.to_string() });
        }
        Ok(self.inner.store.processing_results(event_id).await?)
    }

    async fn replay(&self, request: ReplayRequest) -> Result<ReplayStarted, Error> {
        self.start_replay(request).await
    }

    async fn replay_progress(&self, id: ReplayId) -> Result<ReplayProgress, Error> {
        self.inner.store.replay(id).await?.ok_or_else(|| Error::NotFound { what: "replay", id: id.to_string() })
    }

    async fn archive(&self, before: Timestamp, delete: bool) -> Result<archive::ArchiveReport, Error> {
        self.inner.archiver.run(before, delete).await
    }

    async fn projection(&self, entity_type: &str, entity_id: &str, at: ProjectionAt) -> Result<Projection, Error> {
        self.inner.projections.read(self.inner.store.as_ref(), entity_type, entity_id, at).await
    }
}

impl Engine {
    /// Applies the enabled redact processors to events before they are stored, so nothing unredacted
    /// ever reaches the database, the bus or a delivery.
    fn redact(&self, events: &mut [NewEvent]) {
        let redactors = self.inner.processors.redactors();
        for redactor in &redactors {
            // Validated when the processor was saved.
            let Ok(fields) = redactor.redact_fields() else { continue };
            for event in events.iter_mut().filter(|e| redactor.matches_new(e)) {
                redact(&mut event.data, &fields);
            }
        }
    }

    /// Reads the processors from the store when other instances share it and this copy is older than
    /// the log follower keeps it, so a `redact` processor created anywhere is applied to every event
    /// stored here from a second after (never only from a cache that could be stale forever).
    async fn fresh_processors(&self) -> Result<(), Error> {
        if !self.inner.store.exclusive() && self.inner.processors.loaded_at().elapsed() > PROCESSORS_MAX_AGE {
            self.inner.processors.reload(self.inner.store.as_ref()).await?;
        }
        Ok(())
    }

    async fn check_url(&self, url: &str) -> Result<(), Error> {
        check_callback_url(url, self.inner.allow_private_networks)
            .await
            .map_err(|message| Error::Invalid(FieldError::new("callback_url", message)))
    }

    fn announce_removed(&self, entries: Vec<DeadLetter>) {
        for entry in entries {
            // Nobody listening is fine: the change is stored.
            self.inner.bus.publish(EngineEvent::DeadLetter { action: DlqAction::Removed, entry: Arc::new(entry) });
        }
    }
}

fn processor_not_found(id: ProcessorId) -> Error {
    Error::NotFound { what: "processor", id: id.to_string() }
}

fn subscription_not_found(id: SubscriptionId) -> Error {
    Error::NotFound { what: "subscription", id: id.to_string() }
}

fn dead_letter_not_found(id: DlqId) -> Error {
    Error::NotFound { what: "dead letter", id: id.to_string() }
}
