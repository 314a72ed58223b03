//! `eventdeck bench`: a load generator that prints throughput and latency percentiles.
//!
//! `ingest` posts events to a running server; `store` sends the same rows through the engine's writer
//! in this process (no HTTP), the ceiling HTTP ingest is compared with; `query` and `stats` measure
//! reads on a running server, after `--fill` events if asked.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::client::{Api, send};
use crate::cli::{BenchArgs, Scenario};
use eventdeck::domain::{EventCategory, EventSource, NewEvent, Timestamp};
use eventdeck::engine::{Engine, EngineOptions};
use eventdeck::service::EventService;
use eventdeck::storage::{self, SyncMode};

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
        Scenario::Store => ingest_store(&args).await,
        Scenario::Query | Scenario::Stats => reads(&args).await,
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
/// runs `send(n)` for its requests and the latency of every request is recorded.
async fn drive<F, Fut>(total: u64, batch: u64, concurrency: u64, send: F) -> anyhow::Result<Report>
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
    fn print(mut self, what: &str, unit: &str) {
        self.latencies.sort_unstable();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len().max(1)) - 1;
            self.latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        let rate = self.items as f64 / self.elapsed.as_secs_f64();
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
    let report = post_events(&api, args.events, args.batch, args.concurrency, false).await?;
    report.print(&format!("ingest over HTTP (batch {}, concurrency {})", args.batch, args.concurrency), "events");
    Ok(())
}

async fn post_events(api: &Api, total: u64, batch: u64, concurrency: u64, spread: bool) -> anyhow::Result<Report> {
    let api = api.clone();
    drive(total, batch, concurrency, move |seed, n| {
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

async fn ingest_store(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let path = args.db.clone().unwrap_or_else(|| dir.path().join("bench.db"));
    let store = storage::connect(&format!("sqlite://{}", path.display()), SyncMode::Full).await?;
    let engine = Engine::start(store, EngineOptions::default()).await?;
    let service = engine.clone();
    let report = drive(args.events, args.batch, args.concurrency, move |seed, n| {
        let service = service.clone();
        async move {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let events = (0..n).map(|_| synthetic_new(&mut rng)).collect();
            service.ingest(events).await?;
            Ok(())
        }
    })
    .await?;
    engine.shutdown().await;
    report.print(
        &format!("ingest through the store, no HTTP (batch {}, concurrency {})", args.batch, args.concurrency),
        "events",
    );
    Ok(())
}

async fn reads(args: &BenchArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.server)?;
    send(api.get("/health")).await.with_context(|| format!("no eventdeck server at {}", api.base()))?;
    if args.fill > 0 {
        post_events(&api, args.fill, 1000, 4, true).await?.print("fill", "events");
    }
    let stats: Value = send(api.get("/api/v1/events/statistics")).await?.json().await?;
    println!("store holds {} events", stats["total_events"]);
    let scenario = args.scenario;
    let api_for_workers = api.clone();
    let report = drive(args.requests, 1, args.concurrency, move |seed, _| {
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
