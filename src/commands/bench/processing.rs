//! `eventdeck bench --scenario processing`: how fast the processing loop drains a backlog through one
//! `log` processor matching everything, and what that costs ingest running at the same time.
//!
//! 1. `--fill` events are stored with processing off (the backlog), while measuring ingest alone.
//! 2. The engine restarts with processing on and the `log` processor; `--events` more are ingested
//!    while the backlog drains. Reported: processed events/s until nothing is pending, and the ingest
//!    rate during the drain as a share of the rate with processing off.

use std::time::{Duration, Instant};

use anyhow::Context;

use super::ingest_in_process;
use crate::cli::BenchArgs;
use eventdeck::domain::{Processor, ProcessorType, Timestamp};
use eventdeck::engine::{Engine, EngineOptions, ProcessingOptions};
use eventdeck::service::EventService;
use eventdeck::storage::{self, StoreOptions};

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let path = args.db.clone().unwrap_or_else(|| dir.path().join("bench.db"));
    let url = format!("sqlite://{}", path.display());

    let off = EngineOptions {
        processing: ProcessingOptions { enabled: false, ..ProcessingOptions::default() },
        ..EngineOptions::default()
    };
    let engine = Engine::start(storage::connect(&url, &StoreOptions::default()).await?, off).await?;
    let backlog = ingest_in_process(&engine, args.fill.max(1), args.batch, args.concurrency, args.rate).await?;
    let rate_off = backlog.items as f64 / backlog.elapsed.as_secs_f64();
    backlog.print("backlog stored with processing off", "events");
    engine.shutdown().await;

    let engine =
        Engine::start(storage::connect(&url, &StoreOptions::default()).await?, EngineOptions::default()).await?;
    engine.create_processor(Processor::new("bench-log", ProcessorType::Log, Timestamp::now())).await?;
    let started = Instant::now();
    let during = ingest_in_process(&engine, args.events, args.batch, args.concurrency, args.rate).await?;
    let rate_on = during.items as f64 / during.elapsed.as_secs_f64();
    during.print("ingest while the backlog drains", "events");

    let total = args.fill.max(1) + args.events;
    loop {
        let stats = engine.statistics().await?;
        if stats.pending_events == 0 && stats.processing_events == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = started.elapsed();
    let stats = engine.statistics().await?;
    engine.shutdown().await;
    println!(
        "processed {} events in {:.2} s = {:.0} events/s (processed {}, failed {}); commit→processed ms p50 {:.1} p99 {:.1}",
        total,
        drained.as_secs_f64(),
        total as f64 / drained.as_secs_f64(),
        stats.processed_events,
        stats.failed_events,
        stats.processing_latency_ms.p50,
        stats.processing_latency_ms.p99,
    );
    println!(
        "ingest during the drain: {rate_on:.0} events/s = {:.0} % of {rate_off:.0} events/s with processing off",
        rate_on * 100.0 / rate_off
    );
    Ok(())
}
