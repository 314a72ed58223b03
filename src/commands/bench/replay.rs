//! `eventdeck bench --scenario replay`: `--events` stored events replayed to a subscription on a local
//! sink answering 200, in this process; reports replayed events/s from start to `completed`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::ingest_in_process;
use crate::cli::BenchArgs;
use eventdeck::domain::replay::ReplaySelection;
use eventdeck::domain::{
    ReplayRequest, ReplayStatus, ReplayTarget, RetryPolicy, Subscription, SubscriptionId, Timestamp,
};
use eventdeck::engine::{Engine, EngineOptions, ProcessingOptions};
use eventdeck::service::EventService;
use eventdeck::storage::{self, StoreOptions};

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let sink = axum::Router::new().route(
        "/replayed",
        axum::routing::post(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            async { axum::http::StatusCode::OK }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot bind the bench sink")?;
    let sink_url = format!("http://{}/replayed", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, sink).await });

    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let path = args.db.clone().unwrap_or_else(|| dir.path().join("bench.db"));
    // Processing off: the replay alone is measured.
    let options = EngineOptions {
        processing: ProcessingOptions { enabled: false, ..ProcessingOptions::default() },
        ..EngineOptions::default()
    };
    let engine = Engine::start(
        storage::connect(&format!("sqlite://{}", path.display()), &StoreOptions::default()).await?,
        options,
    )
    .await?;
    ingest_in_process(&engine, args.events, args.batch.max(100), args.concurrency, 0).await?.print("stored", "events");

    let now = Timestamp::now();
    let subscription = Subscription {
        subscription_id: SubscriptionId::new_v7(),
        subscriber_name: "bench-replay".into(),
        subscriber_type: "webhook".into(),
        event_types: Vec::new(),
        event_sources: Vec::new(),
        event_categories: Vec::new(),
        callback_url: sink_url,
        has_secret: false,
        retry_policy: RetryPolicy::default(),
        enabled: true,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
        secret: None,
        start_seq: 0,
    };
    let subscription = engine.create_subscription(subscription).await?;
    let request = ReplayRequest {
        selection: ReplaySelection::TimeRange { start: None, end: None },
        event_type: None,
        event_source: None,
        target: Some(ReplayTarget::Subscription { subscription_id: subscription.subscription_id }),
        dry_run: false,
        confirm: true,
    };
    let started = Instant::now();
    let replay_id = engine.replay(request).await?.replay_id.context("a replay that is not a dry run has an id")?;
    let progress = loop {
        let progress = engine.replay_progress(replay_id).await?;
        if progress.status != ReplayStatus::Running {
            break progress;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let elapsed = started.elapsed();
    engine.shutdown().await;
    if progress.status != ReplayStatus::Completed {
        bail!("the replay ended {:?}: {}", progress.status, progress.error.unwrap_or_default());
    }
    println!(
        "replayed {} events to a local sink in {:.2} s = {:.0} events/s (done {}, failed {}, sink received {})",
        progress.events_count,
        elapsed.as_secs_f64(),
        progress.events_count as f64 / elapsed.as_secs_f64(),
        progress.done,
        progress.failed,
        received.load(Ordering::Relaxed),
    );
    Ok(())
}
