//! `eventdeck bench`: a load generator that prints throughput and latency percentiles.
//!
//! `ingest` posts events to a running server; `ingest-overhead` serves one engine with and without
//! the request-id, tracing and metrics layers and compares single-event POSTs; `store` sends the same rows through the engine's writer
//! in this process (no HTTP), the ceiling HTTP ingest is compared with; `query` and `stats` measure
//! reads on a running server, after `--fill` events if asked.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use serde_json::{Value, json};
use tokio::task::JoinSet;

mod archive;
mod frontend;
mod isolation;
mod live_latency;
mod overhead;
mod processing;
mod projection;
mod publications;
mod replay;
mod soak;

use super::client::{Api, send};
use crate::cli::{BenchArgs, Scenario};
use eventdeck::domain::{EventCategory, EventSource, NewEvent, Timestamp};
use eventdeck::engine::{Engine, EngineOptions};
use eventdeck::service::EventService;
use eventdeck::storage::{self, PostgresStore, ScratchSchema, StoreOptions};

const TYPES: &[(&str, EventCategory)] = &[
    ("user.registered", EventCategory::UserLifecycle),
    ("user.login", EventCategory::UserAction),
    ("user.profile.updated", EventCategory::UserLifecycle),
    ("page.viewed", EventCategory::PageView),
    ("button.clicked", EventCategory::Click),
    ("form.submitted", EventCategory::FormSubmit),
    ("order.created", EventCategory::Order),
    ("order.paid", EventCategory::Order),
    ("order.shipped", EventCategory::Order),
    ("payment.failed", EventCategory::Payment),
    ("device.heartbeat", EventCategory::Telemetry),
    ("alert.raised", EventCategory::Alert),
];
const PATTERNS: &[&str] = &["user.*", "order.>", "payment.failed", "device.*"];
const USERS: u64 = 1000;
const SPREAD: Duration = Duration::from_secs(30 * 24 * 3600);

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.scenario {
        Scenario::Ingest => ingest_http(&args).await,
        Scenario::IngestOverhead => overhead::run(&args).await,
        Scenario::Publications => publications::run(&args).await,
        Scenario::Store => ingest_store(&args).await,
        Scenario::Query | Scenario::Stats => reads(&args).await,
        Scenario::Delivery => deliveries(&args).await,
        Scenario::Isolation => isolation::run(&args).await,
        Scenario::Processing => processing::run(&args).await,
        Scenario::Replay => replay::run(&args).await,
        Scenario::Projection => projection::run(&args).await,
        Scenario::Soak => soak::run(&args).await,
        Scenario::Archive => archive::run(&args).await,
        Scenario::Frontend => frontend::run(&args).await,
        Scenario::LiveLatency => live_latency::run(&args).await,
    }
}

/// xorshift64*: plenty for varied synthetic events, and no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A synthetic event as JSON; with `spread`, its timestamp falls somewhere in the last 30 days.
/// Serves `engine`'s API on a free local port until `shutdown`, and answers a client of it.
async fn serve_in_process(engine: &Engine, shutdown: &tokio_util::sync::CancellationToken) -> anyhow::Result<Api> {
    let state = eventdeck::api::AppState {
        service: Arc::new(engine.clone()),
        limits: Arc::new(eventdeck::api::Limits::from_config(&eventdeck::config::Config::default())),
        shutdown: shutdown.clone(),
        metrics: engine.metrics().clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot bind a bench server")?;
    let url = format!("http://{}", listener.local_addr()?);
    let service = eventdeck::api::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let stop = shutdown.clone();
    tokio::spawn(async move { axum::serve(listener, service).with_graceful_shutdown(stop.cancelled_owned()).await });
    Api::new(&crate::cli::ServerArgs { url, api_key: None })
}

/// NATS options with a stream and subject prefix of their own (random), so a benchmark never mixes its
/// messages with another's or with a server's on the same NATS.
fn scratch_nats(url: String, publish: bool) -> eventdeck::cluster::nats::NatsOptions {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    eventdeck::cluster::nats::NatsOptions {
        url,
        credentials_file: None,
        token: None,
        stream: format!("EVENTDECK_BENCH_{tag}"),
        subject_prefix: format!("edbench{tag}"),
        publish,
    }
}

fn synthetic(rng: &mut Rng, spread: bool) -> Value {
    let (event_type, category) = TYPES[rng.below(TYPES.len() as u64) as usize];
    let source = EventSource::ALL[rng.below(EventSource::ALL.len() as u64) as usize];
    let mut event = json!({
        "event_type": event_type,
        "event_source": source.as_str(),
        "event_category": category.as_str(),
        "user_id": format!("user_{}", rng.below(USERS)),
        "data": {"amount": rng.below(10_000), "sku": format!("sku-{}", rng.below(500)), "note": "synthetic bench event"},
    });
    if spread {
        let back = Duration::from_micros(rng.below(SPREAD.as_micros() as u64));
        event["timestamp"] = json!(Timestamp::from(Utc::now() - back).to_string());
    }
    event
}

fn synthetic_new(rng: &mut Rng) -> NewEvent {
    let value = synthetic(rng, false);
    let mut event = NewEvent::new(value["event_type"].as_str().unwrap_or("bench"));
    event.event_source =
        EventSource::parse("", value["event_source"].as_str().unwrap_or("")).unwrap_or(EventSource::Backend);
    event.event_category =
        EventCategory::parse("", value["event_category"].as_str().unwrap_or("")).unwrap_or(EventCategory::System);
    event.user_id = value["user_id"].as_str().map(str::to_owned);
    event.data = value["data"].as_object().cloned().unwrap_or_default();
    event
}

/// Splits `total` events into requests of `batch` handed out to `concurrency` workers; each worker
/// runs `send(seed, n)` for its requests and the latency of every request is recorded. With `rate`
/// (events per second, 0 = unpaced) no request starts before its share of the schedule.
async fn drive<F, Fut>(total: u64, batch: u64, concurrency: u64, rate: u64, send: F) -> anyhow::Result<Report>
where
    F: Fn(u64, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let send = Arc::new(send);
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for worker in 0..concurrency {
        let (next, send) = (next.clone(), send.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= total {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let n = batch.min(total - first);
                if rate > 0 {
                    tokio::time::sleep_until((started + Duration::from_secs_f64(first as f64 / rate as f64)).into())
                        .await;
                }
                let sent = Instant::now();
                send(worker * 1_000_003 + first, n).await?;
                latencies.push(sent.elapsed());
            }
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = workers.join_next().await {
        latencies.extend(done.context("a bench worker panicked")??);
    }
    Ok(Report { items: total, elapsed: started.elapsed(), latencies })
}

struct Report {
    items: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Report {
    fn rate(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p` quantile (0 to 1) of the request latencies, in milliseconds.
    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
        sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }

    fn print(mut self, what: &str, unit: &str) {
        self.latencies.sort_unstable();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len().max(1)) - 1;
            self.latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        let rate = self.rate();
        println!(
            "{what}: {} {unit} in {:.2} s = {rate:.0} {unit}/s; {} requests, latency ms p50 {:.2} p95 {:.2} p99 {:.2} max {:.2}",
            self.items,
            self.elapsed.as_secs_f64(),
            self.latencies.len(),
            pct(0.50),
            pct(0.95),
            pct(0.99),
            pct(1.0),
        );
    }
}

async fn ingest_http(args: &BenchArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.server)?;
    send(api.get("/health")).await.with_context(|| format!("no eventdeck server at {}", api.base()))?;
    let report = post_events(&api, args.events, args.batch, args.concurrency, args.rate, false).await?;
    report.print(&format!("ingest over HTTP (batch {}, concurrency {})", args.batch, args.concurrency), "events");
    Ok(())
}

async fn post_events(
    api: &Api,
    total: u64,
    batch: u64,
    concurrency: u64,
    rate: u64,
    spread: bool,
) -> anyhow::Result<Report> {
    let api = api.clone();
    drive(total, batch, concurrency, rate, move |seed, n| {
        let api = api.clone();
        async move {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let response = if n == 1 {
                api.post("/api/v1/events/create").json(&synthetic(&mut rng, spread)).send().await?
            } else {
                let events: Vec<Value> = (0..n).map(|_| synthetic(&mut rng, spread)).collect();
                api.post("/api/v1/events/batch").json(&events).send().await?
            };
            if !response.status().is_success() {
                bail!("the server answered {}: {}", response.status(), response.text().await.unwrap_or_default());
            }
            Ok(())
        }
    })
    .await
}

/// Ingests `total` synthetic events straight into `engine`, `batch` per call, `concurrency` calls at once.
async fn ingest_in_process(
    engine: &Engine,
    total: u64,
    batch: u64,
    concurrency: u64,
    rate: u64,
) -> anyhow::Result<Report> {
    let engine = engine.clone();
    drive(total, batch, concurrency, rate, move |seed, n| {
        let engine = engine.clone();
        async move {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            engine.ingest((0..n).map(|_| synthetic_new(&mut rng)).collect()).await?;
            Ok(())
        }
    })
    .await
}

async fn ingest_store(args: &BenchArgs) -> anyhow::Result<()> {
    let label = format!("(batch {}, concurrency {})", args.batch, args.concurrency);
    if let Some(url) = args.storage_url.as_deref().filter(|url| url.starts_with("postgres")) {
        return ingest_postgres(args, url, &label).await;
    }
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let path = args.db.clone().unwrap_or_else(|| dir.path().join("bench.db"));
    let url = args.storage_url.clone().unwrap_or_else(|| format!("sqlite://{}", path.display()));
    let store = storage::connect(&url, &StoreOptions::default()).await?;
    let engine = Engine::start(store, EngineOptions::default()).await?;
    let report = ingest_in_process(&engine, args.events, args.batch, args.concurrency, 0).await?;
    engine.shutdown().await;
    report.print(&format!("ingest through the store, no HTTP {label}"), "events");
    Ok(())
}

/// On PostgreSQL, each in a fresh schema of the database `url` names: the engine's appends, then the
/// same rows by plain multi-row INSERTs (no commit-order lock, no checks, no counters), the ceiling
/// appends are compared with.
async fn ingest_postgres(args: &BenchArgs, url: &str, label: &str) -> anyhow::Result<()> {
    let options = StoreOptions { max_connections: args.concurrency.clamp(4, 64) as u32, ..StoreOptions::default() };
    // The engine as configured by default (processing each event after it is stored, which the
    // baseline does not), then appends alone.
    let mut engine_rates = Vec::new();
    for processing in [true, false] {
        let schema = ScratchSchema::create_in(url).await?;
        let store = storage::connect(&schema.url(), &options).await?;
        let mut engine_options = EngineOptions::default();
        engine_options.processing.enabled = processing;
        let engine = Engine::start(store, engine_options).await?;
        let report = ingest_in_process(&engine, args.events, args.batch, args.concurrency, 0).await?;
        engine.shutdown().await;
        engine_rates.push(report.rate());
        let what = if processing { "processing on" } else { "processing off" };
        report.print(&format!("ingest through the store on PostgreSQL, no HTTP, {what} {label}"), "events");
    }
    let schema = ScratchSchema::create_in(url).await?;
    let store = Arc::new(PostgresStore::open(&schema.url(), &options).await?);
    let next_seq = Arc::new(AtomicU64::new(1));
    let report = drive(args.events, args.batch, args.concurrency, 0, move |seed, n| {
        let (store, next_seq) = (store.clone(), next_seq.clone());
        async move {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let first = next_seq.fetch_add(n, Ordering::Relaxed) as i64;
            store.insert_without_checks((0..n).map(|_| synthetic_new(&mut rng)).collect(), first).await?;
            Ok(())
        }
    })
    .await?;
    let baseline_rate = report.rate();
    report.print(&format!("baseline: plain multi-row INSERTs of the same rows {label}"), "events");
    println!(
        "appends reach {:.0} % of the baseline with processing on, {:.0} % with it off",
        100.0 * engine_rates[0] / baseline_rate,
        100.0 * engine_rates[1] / baseline_rate
    );
    Ok(())
}

async fn reads(args: &BenchArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.server)?;
    send(api.get("/health")).await.with_context(|| format!("no eventdeck server at {}", api.base()))?;
    if args.fill > 0 {
        post_events(&api, args.fill, 1000, 4, 0, true).await?.print("fill", "events");
    }
    let stats: Value = send(api.get("/api/v1/events/statistics")).await?.json().await?;
    println!("store holds {} events", stats["total_events"]);
    let scenario = args.scenario;
    let api_for_workers = api.clone();
    let report = drive(args.requests, 1, args.concurrency, 0, move |seed, _| {
        let api = api_for_workers.clone();
        async move {
            let request = match scenario {
                Scenario::Stats => api.get("/api/v1/events/statistics"),
                _ => {
                    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
                    let pattern = PATTERNS[rng.below(PATTERNS.len() as u64) as usize];
                    let end = Utc::now() - Duration::from_secs(rng.below(29 * 24 * 3600));
                    let start = end - Duration::from_secs(24 * 3600);
                    api.get("/api/v1/events").query(&[
                        ("event_type", pattern.to_owned()),
                        ("start_time", Timestamp::from(start).to_string()),
                        ("end_time", Timestamp::from(end).to_string()),
                        ("limit", "100".to_owned()),
                    ])
                }
            };
            let answer: Value = send(request).await?.json().await?;
            if scenario == Scenario::Query && answer["events"].as_array().is_none() {
                bail!("unexpected answer: {answer}");
            }
            Ok(())
        }
    })
    .await?;
    let what = match scenario {
        Scenario::Stats => "statistics".to_owned(),
        _ => "query: type pattern + one-day window, limit 100, with total".to_owned(),
    };
    report.print(&format!("{what} (concurrency {})", args.concurrency), "requests");
    Ok(())
}

/// What the bench's own webhook sink has seen.
#[derive(Default)]
struct SinkLog {
    received: u64,
    /// Milliseconds from the event's commit (`created_at`) to its arrival here.
    latencies_ms: Vec<f64>,
    last: Option<Instant>,
}

/// How long the delivery bench waits for the next delivery before it reports what arrived.
const STALL: Duration = Duration::from_secs(10);

async fn deliveries(args: &BenchArgs) -> anyhow::Result<()> {
    use axum::routing::post;

    let api = Api::new(&args.server)?;
    send(api.get("/health")).await.with_context(|| format!("no eventdeck server at {}", api.base()))?;
    let log = Arc::new(std::sync::Mutex::new(SinkLog::default()));
    let sink_log = log.clone();
    let delay = Duration::from_millis(args.sink_delay_ms);
    let sink = axum::Router::new().route(
        "/hook",
        post(move |body: axum::body::Bytes| {
            let log = sink_log.clone();
            async move {
                let arrived = Utc::now();
                tokio::time::sleep(delay).await;
                let created = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|b| b["event"]["created_at"].as_str().and_then(|t| Timestamp::parse(t).ok()));
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                log.received += 1;
                log.last = Some(Instant::now());
                if let Some(created) = created {
                    let ms = (Timestamp::from(arrived).as_micros() - created.as_micros()) as f64 / 1000.0;
                    log.latencies_ms.push(ms);
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot bind the bench sink")?;
    let sink_url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, sink).await });

    let mut created = Vec::new();
    for i in 0..args.subscriptions {
        let body = json!({"subscriber_name": format!("bench-{i}"), "callback_url": sink_url});
        let subscription: Value = send(api.post("/api/v1/events/subscriptions").json(&body)).await?.json().await?;
        created.push(subscription["subscription_id"].as_str().unwrap_or_default().to_owned());
    }
    let expected = args.events * args.subscriptions;
    let started = Instant::now();
    let ingest = post_events(&api, args.events, args.batch, args.concurrency, args.rate, false).await?;
    ingest.print(&format!("ingest with {} subscriptions (batch {})", args.subscriptions, args.batch), "events");

    // Wait for the deliveries, as long as they keep coming.
    let (mut seen, mut last_progress) = (0, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let received = log.lock().unwrap_or_else(|p| p.into_inner()).received;
        if received >= expected || last_progress.elapsed() > STALL {
            break;
        }
        if received > seen {
            (seen, last_progress) = (received, Instant::now());
        }
    }
    for id in created {
        // Cleaning up is best effort; the numbers are already in.
        let _ = api.http_delete(&format!("/api/v1/events/subscriptions/{id}")).await;
    }
    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
    let elapsed = log.last.map_or(Duration::ZERO, |last| last - started);
    log.latencies_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let n = log.latencies_ms.len();
        if n == 0 { 0.0 } else { log.latencies_ms[((n as f64 * p).ceil() as usize).clamp(1, n) - 1] }
    };
    println!(
        "deliveries: {} of {expected} in {:.2} s = {:.0} deliveries/s; commit to sink ms p50 {:.1} p95 {:.1} p99 {:.1} max {:.1}",
        log.received,
        elapsed.as_secs_f64(),
        log.received as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
        pct(0.50),
        pct(0.95),
        pct(0.99),
        pct(1.0),
    );
    if log.received < expected {
        bail!("only {} of {expected} deliveries arrived", log.received);
    }
    Ok(())
}
