//! `eventdeck bench --scenario ingest-overhead`: what request ids, the request span and HTTP metrics
//! cost single-event POSTs. One engine (a temporary SQLite file) is served twice in this process, with
//! the layers and without them, and the two are driven in alternating rounds of the same size, so both
//! see the same machine, store and warm-up. Logging is set up as `serve` sets it (JSON at `info`,
//! written nowhere), so the request span costs what it costs in production; spans are not exported.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::super::client::Api;
use super::post_events;
use crate::cli::{BenchArgs, ServerArgs};
use eventdeck::api::{self, AppState, Limits};
use eventdeck::config::Config;
use eventdeck::engine::{Engine, EngineOptions};
use eventdeck::storage::{self, StoreOptions};

/// Measured rounds per variant, after one warm-up round each; the order alternates (ABBA) so drift of
/// a shared machine falls on both alike.
const ROUNDS: u64 = 6;

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let path = args.db.clone().unwrap_or_else(|| dir.path().join("bench.db"));
    let store = storage::connect(&format!("sqlite://{}", path.display()), &StoreOptions::default()).await?;
    let engine = Engine::start(store, EngineOptions::default()).await?;
    let shutdown = CancellationToken::new();
    let state = AppState {
        service: Arc::new(engine.clone()),
        limits: Arc::new(Limits::from_config(&Config::default())),
        shutdown: shutdown.clone(),
        metrics: engine.metrics().clone(),
    };
    let with = serve(api::router(state.clone()), &shutdown).await?;
    let without = serve(api::router_without_observability(state), &shutdown).await?;

    let per_round = (args.events / (2 * ROUNDS)).max(1_000);
    for api in [&without, &with] {
        post_events(api, per_round, 1, args.concurrency, 0, false).await?;
    }
    let (mut rate_with, mut rate_without) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let mut order = [("without", &without, &mut rate_without), ("with", &with, &mut rate_with)];
        if round % 2 == 0 {
            order.reverse();
        }
        for (label, api, rates) in order {
            let report = post_events(api, per_round, 1, args.concurrency, 0, false).await?;
            let rate = report.items as f64 / report.elapsed.as_secs_f64();
            report.print(&format!("round {round}, {label} request ids, request span and HTTP metrics"), "events");
            rates.push(rate);
        }
    }
    shutdown.cancel();
    engine.shutdown().await;
    let mean = |rates: &[f64]| rates.iter().sum::<f64>() / rates.len() as f64;
    let (with, without) = (mean(&rate_with), mean(&rate_without));
    println!(
        "single-event POST, concurrency {}: {without:.0} events/s without the layers, {with:.0} with them: overhead {:.1} %",
        args.concurrency,
        (1.0 - with / without) * 100.0
    );
    Ok(())
}

/// Serves `router` on a port of its own until `shutdown`; returns a client for it.
async fn serve(router: axum::Router, shutdown: &CancellationToken) -> anyhow::Result<Api> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("cannot bind a bench server")?;
    let url = format!("http://{}", listener.local_addr()?);
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let stop = shutdown.clone();
    tokio::spawn(async move { axum::serve(listener, service).with_graceful_shutdown(stop.cancelled_owned()).await });
    Api::new(&ServerArgs { url, api_key: None })
}
