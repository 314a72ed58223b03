//! `eventdeck bench --scenario archive`: archiving `--events` stored events (processed, spread over
//! two days) to JSON Lines in this process, alone; then ingest alone for a few seconds; then ingest
//! again while `--events` more (the two days after) are archived. Reports events archived per second
//! and the ingest rate while archiving against without.
//!
//! Both sets are stored before the engine starts, as events old enough to archive were stored long
//! before an archive run: stored behind a running engine's back, they would first be read again by its
//! log follower (which puts every stored event on the live bus), and that catching up, not the archive,
//! would be what ingest waits for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use crate::cli::BenchArgs;
use eventdeck::domain::{EventCategory, NewEvent, Timestamp};
use eventdeck::engine::{ArchiveOptions, Engine, EngineOptions};
use eventdeck::service::EventService;
use eventdeck::storage::{self, Store, StoreOptions};

/// 2026-01-01T00:00:00Z: the archived events are stamped over the four days after it.
const EPOCH_MICROS: i64 = 1_767_225_600_000_000;
/// Days each set of events is stamped over.
const DAYS_EACH: i64 = 2;
const DAY_MICROS: i64 = 86_400 * 1_000_000;
/// Rows per append while filling.
const FILL_BATCH: u64 = 5_000;
/// How long ingest alone is measured.
const INGEST_ALONE: Duration = Duration::from_secs(5);

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let path = args.db.clone().unwrap_or_else(|| dir.path().join("bench.db"));
    let store = storage::connect(&format!("sqlite://{}", path.display()), &StoreOptions::default()).await?;
    let total = args.events.max(1);
    let started = Instant::now();
    fill(store.as_ref(), 0, total).await?;
    fill(store.as_ref(), total, total).await?;
    println!("stored 2 × {total} processed events in {:.2} s", started.elapsed().as_secs_f64());

    let archive_dir = dir.path().join("archive");
    let options = EngineOptions {
        archive: ArchiveOptions { dir: archive_dir.clone(), ..ArchiveOptions::default() },
        ..EngineOptions::default()
    };
    let engine = Engine::start(store.clone(), options).await?;
    let result = measure(&engine, args, total).await;
    engine.shutdown().await;
    let bytes = dir_size(&archive_dir);
    println!("archive: {:.1} MiB on disk", bytes as f64 / (1024.0 * 1024.0));
    result
}

async fn measure(engine: &Engine, args: &BenchArgs, total: u64) -> anyhow::Result<()> {
    let before = Timestamp::from_micros(EPOCH_MICROS + DAYS_EACH * DAY_MICROS);
    let started = Instant::now();
    let report = engine.archive(before, false).await?;
    let elapsed = started.elapsed().as_secs_f64();
    if report.archived != total {
        bail!("archived {} events, not {total}", report.archived);
    }
    println!(
        "archive alone: {total} events into {} files in {elapsed:.2} s = {:.0} events/s",
        report.files.len(),
        total as f64 / elapsed
    );

    let alone = ingest_for(engine, args, None).await?;
    println!("ingest alone: {alone:.0} events/s (batch {}, concurrency {})", args.batch, args.concurrency);

    let before = Timestamp::from_micros(EPOCH_MICROS + 2 * DAYS_EACH * DAY_MICROS);
    let engine_for_archive = engine.clone();
    let archiving = Arc::new(AtomicBool::new(true));
    let flag = archiving.clone();
    let archive = tokio::spawn(async move {
        let started = Instant::now();
        let report = engine_for_archive.archive(before, false).await;
        flag.store(false, Ordering::Release);
        report.map(|r| (r, started.elapsed()))
    });
    let during = ingest_for(engine, args, Some(archiving)).await?;
    let (report, took) = archive.await.context("the archive task failed")??;
    if report.archived != total {
        bail!("archived {} events while ingesting, not {total}", report.archived);
    }
    println!(
        "archive while ingesting: {} events in {:.2} s = {:.0} events/s",
        report.archived,
        took.as_secs_f64(),
        report.archived as f64 / took.as_secs_f64()
    );
    println!("ingest while archiving: {during:.0} events/s = {:.0}% of ingest alone", during * 100.0 / alone.max(1.0));
    Ok(())
}

/// Stores `n` processed events from number `first` on, stamped over [`DAYS_EACH`] days from `first`'s
/// set: the epoch for the first set, [`DAYS_EACH`] days later for the second.
async fn fill(store: &dyn Store, first: u64, n: u64) -> anyhow::Result<()> {
    let step = DAYS_EACH * DAY_MICROS / n.max(1) as i64;
    let set_start = EPOCH_MICROS + if first == 0 { 0 } else { DAYS_EACH * DAY_MICROS };
    let mut at = first;
    while at < first + n {
        let count = FILL_BATCH.min(first + n - at);
        let events = (at..at + count)
            .map(|i| {
                let mut event = NewEvent::new(["page.viewed", "order.paid", "user.login"][(i % 3) as usize]);
                event.event_category = EventCategory::UserAction;
                event.user_id = Some(format!("user-{}", i % 1000));
                event.data = json!({"i": i, "path": "/products/42", "amount": 12.5, "tags": ["a", "b"]})
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                event.timestamp = Timestamp::from_micros(set_start + (i - first) as i64 * step);
                event.skip_processing = true;
                event
            })
            .collect();
        store.append(events).await?;
        at += count;
    }
    Ok(())
}

/// Ingests batches from `--concurrency` tasks, for [`INGEST_ALONE`] or while `until` stays true;
/// answers events per second.
async fn ingest_for(engine: &Engine, args: &BenchArgs, until: Option<Arc<AtomicBool>>) -> anyhow::Result<f64> {
    let stored = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + INGEST_ALONE;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let engine = engine.clone();
        let stored = stored.clone();
        let until = until.clone();
        let batch = args.batch;
        tasks.spawn(async move {
            loop {
                let going = match &until {
                    Some(flag) => flag.load(Ordering::Acquire),
                    None => Instant::now() < deadline,
                };
                if !going {
                    return Ok::<_, anyhow::Error>(());
                }
                let events = (0..batch).map(|_| NewEvent::new("bench.ingest")).collect();
                for result in engine.ingest(events).await? {
                    result?;
                }
                stored.fetch_add(batch, Ordering::Relaxed);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("an ingest task failed")??;
    }
    Ok(stored.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_size(&entry.path()),
            _ => entry.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}
