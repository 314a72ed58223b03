//! `eventdeck bench --scenario frontend`: single-event POSTs to `/api/v1/events/frontend` on an
//! in-process server with `[ingest] frontend_via_nats` (the NATS server of `--nats-url`, on a stream of
//! its own deleted afterwards), then the same POSTs to a server that stores them directly. Reports the
//! POST rate and latency of both, and for JetStream how long the consumer took until every event was
//! in history (the rate at which it stores them while the POSTs go on, and its lag after the last one).
//! SQLite in a temporary folder, or a scratch schema of the `--storage-url` PostgreSQL.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::super::client::Api;
use super::{Report, Rng, TYPES, USERS, drive};
use crate::cli::BenchArgs;
use eventdeck::cluster::nats::NatsOptions;
use eventdeck::engine::{Engine, EngineOptions};
use eventdeck::service::EventService;
use eventdeck::storage::{self, ScratchSchema, StoreOptions};

/// POSTs before each measured run, so connections and caches are warm.
const WARM_UP: u64 = 2_000;
/// The longest the consumer may take to store everything after the last POST.
const CATCH_UP: Duration = Duration::from_secs(120);

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let Some(url) = args.nats_url.clone() else {
        bail!("--scenario frontend needs --nats-url, e.g. --nats-url nats://127.0.0.1:4222");
    };
    let nats = super::scratch_nats(url.clone(), false);
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let shutdown = CancellationToken::new();
    let result = measure(args, &nats, dir.path(), &shutdown).await;
    shutdown.cancel();
    if let Ok(client) = async_nats::connect(&url).await {
        // Cleaning up is best effort; the numbers are in.
        let _ = async_nats::jetstream::new(client).delete_stream(&nats.stream).await;
    }
    result
}

async fn measure(
    args: &BenchArgs,
    nats: &NatsOptions,
    dir: &std::path::Path,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let total = args.events.max(1);
    let label = format!("single POSTs, concurrency {}", args.concurrency);

    let (engine, api, _schema) = start(args, dir, "via-nats", Some(nats.clone()), shutdown).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !engine.frontend_via_nats() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "frontend events do not go through NATS at {} (is it running, with JetStream?)",
            nats.url
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    post(&api, WARM_UP, args).await?;
    let warm = stored_after(&engine, WARM_UP, Instant::now()).await?;
    let started = Instant::now();
    let report = post(&api, total, args).await?;
    let answered = Instant::now();
    stored_after(&engine, warm + total, started).await?;
    let stored_in = started.elapsed();
    let lag = answered.elapsed();
    let (rate, p50, p99) = (report.rate(), report.percentile(0.50), report.percentile(0.99));
    report.print(&format!("frontend via JetStream ({label})"), "events");
    println!(
        "consumer stored all {total} in {:.2} s = {:.0} events/s sustained; the last one {:.0} ms after the last POST was answered",
        stored_in.as_secs_f64(),
        total as f64 / stored_in.as_secs_f64(),
        lag.as_secs_f64() * 1000.0
    );
    engine.shutdown().await;

    let (engine, api, _schema) = start(args, dir, "direct", None, shutdown).await?;
    post(&api, WARM_UP, args).await?;
    let direct = post(&api, total, args).await?;
    let (direct_rate, direct_p99) = (direct.rate(), direct.percentile(0.99));
    direct.print(&format!("frontend stored directly ({label})"), "events");
    engine.shutdown().await;
    println!(
        "frontend POSTs via JetStream: {rate:.0}/s, p50 {p50:.2} ms, p99 {p99:.2} ms; stored directly: {direct_rate:.0}/s, \
         p99 {direct_p99:.2} ms; the consumer stored {:.0} events/s",
        total as f64 / stored_in.as_secs_f64()
    );
    Ok(())
}

/// An engine and HTTP server on a fresh store: SQLite under `dir`, or a scratch schema of the
/// `--storage-url` PostgreSQL (kept as long as the schema guard lives).
async fn start(
    args: &BenchArgs,
    dir: &std::path::Path,
    name: &str,
    nats: Option<NatsOptions>,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Engine, Api, Option<ScratchSchema>)> {
    let (url, schema) = match args.storage_url.as_deref() {
        None => (format!("sqlite://{}", dir.join(format!("{name}.db")).display()), None),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let schema = ScratchSchema::create_in(url)
                .await
                .with_context(|| format!("cannot make a scratch schema in {url}"))?;
            (schema.url(), Some(schema))
        }
        Some(other) => bail!("--storage-url: `{other}` is not a postgres:// URL (without it the bench uses SQLite)"),
    };
    let options = StoreOptions { max_connections: args.concurrency.clamp(4, 64) as u32, ..StoreOptions::default() };
    let store = storage::connect(&url, &options).await?;
    let frontend_via_nats = nats.is_some();
    let engine = Engine::start(store, EngineOptions { nats, frontend_via_nats, ..EngineOptions::default() }).await?;
    let api = super::serve_in_process(&engine, shutdown).await?;
    Ok((engine, api, schema))
}

/// `total` single-event POSTs, `--concurrency` at once, paced by `--rate` when set.
async fn post(api: &Api, total: u64, args: &BenchArgs) -> anyhow::Result<Report> {
    let api = api.clone();
    drive(total, 1, args.concurrency, args.rate, move |seed, _| {
        let api = api.clone();
        async move {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let response = api.post("/api/v1/events/frontend").json(&frontend_event(&mut rng)).send().await?;
            if response.status() != reqwest::StatusCode::ACCEPTED {
                bail!("the server answered {}: {}", response.status(), response.text().await.unwrap_or_default());
            }
            Ok(())
        }
    })
    .await
}

/// A synthetic browser event.
fn frontend_event(rng: &mut Rng) -> Value {
    let (event_type, category) = TYPES[rng.below(TYPES.len() as u64) as usize];
    json!({
        "event_type": event_type,
        "category": category.as_str(),
        "user_id": format!("user_{}", rng.below(USERS)),
        "session_id": format!("s-{}", rng.below(10_000)),
        "page_url": format!("/p/{}", rng.below(500)),
        "properties": {"amount": rng.below(10_000), "note": "synthetic bench event"},
    })
}

/// Waits until the store holds `count` events (a fresh store numbers them 1..=count); answers the
/// count. Fails after [`CATCH_UP`] past `since`.
async fn stored_after(engine: &Engine, count: u64, since: Instant) -> anyhow::Result<u64> {
    loop {
        let stored = engine.store().last_seq().await? as u64;
        if stored >= count {
            return Ok(stored);
        }
        anyhow::ensure!(
            since.elapsed() < CATCH_UP,
            "the consumer stored {stored} of {count} events in {} s",
            CATCH_UP.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
