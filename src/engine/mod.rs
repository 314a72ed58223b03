//! The engine: ingest through the group-commit writer, reads from the store, the bus and live feeds,
//! statistics. `Engine` is cheap to clone and implements [`EventService`].

mod bus;
mod ingest;
mod stats;

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Instant;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::{Mutex, broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use bus::EngineEvent;

use crate::domain::{Event, EventFilter, EventId, EventPage, EventQuery, NewEvent, Statistics};
use crate::service::{
    Error, EventService, Feed, Health, Ingested, StorageHealth, StreamEvents,
};
use crate::storage::Store;
use ingest::{Submission, Writer};
use stats::IngestRate;

/// Sizes of the engine's bounded queues.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Broadcast buffer of the bus; a consumer further behind is caught up from the store.
    pub bus_capacity: usize,
    /// Submissions waiting for the writer; callers wait (back-pressure) when it is full.
    pub queue_capacity: usize,
    /// Most events committed in one transaction.
    pub max_group: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self { bus_capacity: 4096, queue_capacity: 1024, max_group: 2000 }
    }
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    queue: mpsc::Sender<Submission>,
    bus: broadcast::Sender<EngineEvent>,
    last_seq: Arc<AtomicI64>,
    rate: Arc<IngestRate>,
    started: Instant,
    shutdown: CancellationToken,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Engine {
    /// Starts the engine's tasks on `store`.
    pub async fn start(store: Arc<dyn Store>, options: EngineOptions) -> Result<Self, Error> {
        let last_seq = Arc::new(AtomicI64::new(store.last_seq().await?));
        let (bus, _) = broadcast::channel(options.bus_capacity.max(1));
        let (queue, submissions) = mpsc::channel(options.queue_capacity.max(1));
        let rate = Arc::new(IngestRate::default());
        let shutdown = CancellationToken::new();
        let writer = Writer {
            store: store.clone(),
            bus: bus.clone(),
            last_seq: last_seq.clone(),
            rate: rate.clone(),
            max_group: options.max_group.max(1),
        };
        let writer = tokio::spawn(writer.run(submissions, shutdown.clone()));
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                queue,
                bus,
                last_seq,
                rate,
                started: Instant::now(),
                shutdown,
                writer: Mutex::new(Some(writer)),
            }),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// A receiver of everything the engine does, for in-process consumers.
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.bus.subscribe()
    }

    /// Stops taking events, commits every one already submitted, and closes the store. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        if let Some(writer) = self.inner.writer.lock().await.take() {
            if let Err(error) = writer.await {
                tracing::error!(%error, "the ingest writer ended abnormally");
            }
            self.inner.store.close().await;
        }
    }
}

#[async_trait]
impl EventService for Engine {
    async fn ingest(&self, events: Vec<NewEvent>) -> Result<Vec<Result<Ingested, Error>>, Error> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.inner.queue.send(Submission { events, reply }).await.map_err(|_| Error::ShuttingDown)?;
        answer.await.map_err(|_| Error::ShuttingDown)?
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
        Ok(StreamEvents { stream_id: stream_id.to_owned(), version, events: events.into_iter().map(Arc::new).collect() })
    }

    async fn statistics(&self) -> Result<Statistics, Error> {
        let counters = self.inner.store.counters().await?;
        Ok(Statistics::from_counters(counters, Utc::now().date_naive(), self.inner.rate.per_second()))
    }

    async fn health(&self) -> Health {
        let ok = self.inner.store.ping().await.is_ok();
        Health {
            status: if ok { "ok" } else { "degraded" },
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: self.inner.started.elapsed().as_secs(),
            storage: StorageHealth { backend: self.inner.store.backend(), ok },
            nats: "disabled",
        }
    }

    fn feed(&self, filter: EventFilter, since_seq: Option<i64>) -> Feed {
        bus::feed(self.inner.store.clone(), &self.inner.bus, &self.inner.last_seq, filter, since_seq)
    }
}
