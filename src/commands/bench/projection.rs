//! `eventdeck bench --scenario projection`: read latency of one entity's projection after `--events`
//! events on its stream, through the engine in this process (no HTTP).
//!
//! The events are merge patches over a few dozen fields, one second apart, every 50th stamped an hour
//! late. Once processing has settled, `--requests` reads of each kind are timed: the latest state,
//! `at_version` near the middle of the stream, and `at_time` near the middle.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use super::{Rng, drive};
use crate::cli::BenchArgs;
use eventdeck::domain::{NewEvent, ProjectionAt, Timestamp};
use eventdeck::engine::{Engine, EngineOptions};
use eventdeck::service::EventService;
use eventdeck::storage::{self, StoreOptions};

const ENTITY_TYPE: &str = "account";
const ENTITY_ID: &str = "bench";
/// 2026-01-01T00:00:00Z: event `i` is stamped `i` seconds later.
const EPOCH_MICROS: i64 = 1_767_225_600_000_000;

/// Chooses the point of one read, given the middle of the stream.
type PickPoint = fn(&mut Rng, i64) -> ProjectionAt;

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let path = args.db.clone().unwrap_or_else(|| dir.path().join("bench.db"));
    let store = storage::connect(&format!("sqlite://{}", path.display()), &StoreOptions::default()).await?;
    let engine = Engine::start(store, EngineOptions::default()).await?;
    let result = measure(&engine, args).await;
    engine.shutdown().await;
    result
}

async fn measure(engine: &Engine, args: &BenchArgs) -> anyhow::Result<()> {
    let total = args.events.max(1);
    let started = Instant::now();
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut first = 0;
    while first < total {
        let n = args.batch.min(total - first);
        let events = (first..first + n).map(|i| patch(&mut rng, i)).collect();
        for result in engine.ingest(events).await? {
            result?;
        }
        first += n;
    }
    println!(
        "stored {total} events on stream {ENTITY_TYPE}:{ENTITY_ID} in {:.2} s (batch {})",
        started.elapsed().as_secs_f64(),
        args.batch
    );

    // The projection processor folds the events as they are processed; wait while it makes progress.
    let settling = Instant::now();
    let mut last = i64::MAX;
    loop {
        let stats = engine.statistics().await?;
        let waiting = stats.pending_events + stats.processing_events;
        if waiting == 0 || waiting == last {
            println!("processing settled in {:.2} s, {waiting} events still waiting", settling.elapsed().as_secs_f64());
            break;
        }
        last = waiting;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let first_read = Instant::now();
    let latest = engine.projection(ENTITY_TYPE, ENTITY_ID, ProjectionAt::Latest).await?;
    println!(
        "first read: {:.2} ms (brings the cached fold up to date when it lags); {} fields at version {}",
        first_read.elapsed().as_secs_f64() * 1000.0,
        latest.state.as_object().map_or(0, Map::len),
        latest.version
    );
    if latest.version != total as i64 {
        bail!("the latest projection is at version {}, not {total}", latest.version);
    }

    let middle = total as i64 / 2;
    let kinds: [(&str, PickPoint); 3] = [
        ("latest", |_, _| ProjectionAt::Latest),
        ("at_version near the middle", |rng, middle| {
            ProjectionAt::Version((middle + rng.below(1001) as i64 - 500).max(1))
        }),
        ("at_time near the middle", |rng, middle| {
            let second = (middle + rng.below(1001) as i64 - 500).max(0);
            ProjectionAt::Time(Timestamp::from_micros(EPOCH_MICROS + second * 1_000_000))
        }),
    ];
    for (what, point) in kinds {
        let engine = engine.clone();
        let report = drive(args.requests, 1, args.concurrency, 0, move |seed, _| {
            let engine = engine.clone();
            async move {
                let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
                let at = point(&mut rng, middle);
                let projection = engine.projection(ENTITY_TYPE, ENTITY_ID, at).await?;
                if let ProjectionAt::Version(version) = at
                    && projection.version != version
                {
                    bail!("asked for version {version}, got {}", projection.version);
                }
                Ok(())
            }
        })
        .await?;
        report.print(&format!("projection read, {what} ({total} events, concurrency {})", args.concurrency), "reads");
    }
    Ok(())
}

/// Event `i`: a merge patch setting a counter and one of 40 fields, sometimes a nested one, sometimes
/// removing a field. Every 50th is stamped an hour before its place in the stream.
fn patch(rng: &mut Rng, i: u64) -> NewEvent {
    let mut data = Map::new();
    data.insert("counter".into(), json!(i));
    let field = format!("field_{}", rng.below(40));
    let value = match rng.below(10) {
        0 => Value::Null,
        1 => json!({"nested": {"at": i, "flag": rng.below(2) == 1}}),
        _ => json!(format!("value {}", rng.below(1_000_000))),
    };
    data.insert(field, value);
    let mut event = NewEvent::new("account.updated");
    event.stream_id = Some(format!("{ENTITY_TYPE}:{ENTITY_ID}"));
    event.data = data;
    let second = if i % 50 == 49 { i as i64 - 3600 } else { i as i64 };
    event.timestamp = Timestamp::from_micros(EPOCH_MICROS + second * 1_000_000);
    event
}
