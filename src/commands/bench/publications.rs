//! `eventdeck bench --scenario publications`: batch ingest over HTTP into two in-process engines on
//! temporary SQLite files, one publishing every stored event to NATS JetStream (the NATS server in
//! `EVENTDECK_NATS__URL`, default nats://127.0.0.1:4222, on a stream of its own deleted afterwards) and
//! one without NATS, in alternating rounds of the same size, so both see the same machine and warm-up.
//! Reports both ingest rates, their ratio, and how far publication lagged behind at the end.

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::super::client::Api;
use super::post_events;
use crate::cli::BenchArgs;
use eventdeck::cluster::nats::NatsOptions;
use eventdeck::engine::{Engine, EngineOptions};
use eventdeck::service::EventService;
use eventdeck::storage::{self, EVENTS_PUBLICATION, StoreOptions};

/// Measured rounds per variant, after one warm-up round each, in ABBA order.
const ROUNDS: u64 = 6;

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let url = std::env::var("EVENTDECK_NATS__URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let nats = super::scratch_nats(url.clone(), true);
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let shutdown = CancellationToken::new();
    let (with_engine, with) = start(dir.path().join("with.db"), Some(nats.clone()), &shutdown).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while with_engine.health().await.nats != "connected" {
        anyhow::ensure!(Instant::now() < deadline, "NATS at {url} does not answer (set EVENTDECK_NATS__URL)");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (without_engine, without) = start(dir.path().join("without.db"), None, &shutdown).await?;

    let per_round = (args.events / (2 * ROUNDS)).max(args.batch);
    for api in [&without, &with] {
        post_events(api, per_round, args.batch, args.concurrency, 0, false).await?;
    }
    let (mut rate_with, mut rate_without) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let mut order = [("NATS off", &without, &mut rate_without), ("publications on", &with, &mut rate_with)];
        if round % 2 == 0 {
            order.reverse();
        }
        for (label, api, rates) in order {
            let report = post_events(api, per_round, args.batch, args.concurrency, 0, false).await?;
            rates.push(report.items as f64 / report.elapsed.as_secs_f64());
            report.print(&format!("round {round}, {label}"), "events");
        }
    }
    // How long until every stored event is published.
    let store = with_engine.store().clone();
    let last = store.last_seq().await?;
    let caught_up = Instant::now();
    let owner = store.instance_id().to_owned();
    loop {
        let now = eventdeck::domain::Timestamp::now();
        // Claiming as the holder itself only renews its lease and reads the cursor.
        let at = store.claim_publication(EVENTS_PUBLICATION, &owner, now, now.plus(Duration::from_secs(30))).await?;
        if at.is_some_and(|seq| seq >= last) {
            break;
        }
        anyhow::ensure!(caught_up.elapsed() < Duration::from_secs(60), "publications did not catch up in 60 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lag = caught_up.elapsed();
    shutdown.cancel();
    with_engine.shutdown().await;
    without_engine.shutdown().await;
    if let Ok(client) = async_nats::connect(&url).await {
        let _ = async_nats::jetstream::new(client).delete_stream(&nats.stream).await;
    }
    let mean = |rates: &[f64]| rates.iter().sum::<f64>() / rates.len() as f64;
    let (with, without) = (mean(&rate_with), mean(&rate_without));
    println!(
        "batch ingest ({} events per request, concurrency {}) on SQLite: {without:.0} events/s with NATS off, \
         {with:.0} with publications on: {:.1} %; publications caught up {:.0} ms after the last commit",
        args.batch,
        args.concurrency,
        with / without * 100.0,
        lag.as_secs_f64() * 1000.0
    );
    Ok(())
}

async fn start(
    path: std::path::PathBuf,
    nats: Option<NatsOptions>,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Engine, Api)> {
    let store = storage::connect(&format!("sqlite://{}", path.display()), &StoreOptions::default()).await?;
    let engine = Engine::start(store, EngineOptions { nats, ..EngineOptions::default() }).await?;
    let api = super::serve_in_process(&engine, shutdown).await?;
    Ok((engine, api))
}
