//! `eventdeck serve`: the HTTP API on the configured store until SIGINT/SIGTERM, then a clean drain.

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use eventdeck::api::{self, AppState, Limits};
use eventdeck::config::Config;
use eventdeck::engine::Engine;
use eventdeck::storage;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = storage::connect(&config.storage.url, &config.store_options()).await?;
    let engine = Engine::start(store, config.engine_options()).await?;
    let listener = TcpListener::bind(config.server.addr)
        .await
        .with_context(|| format!("cannot listen on {} ([server] addr, --addr)", config.server.addr))?;
    let addr = listener.local_addr()?;
    if config.auth.api_keys.is_empty() {
        tracing::warn!(%addr, "no [auth] api_keys set: the management API is open to anyone who can reach it");
    }
    tracing::info!(%addr, storage = %config.storage.url, version = env!("CARGO_PKG_VERSION"), "eventdeck serving");

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let state = AppState {
        service: std::sync::Arc::new(engine.clone()),
        limits: std::sync::Arc::new(Limits::from_config(&config)),
        shutdown,
        metrics: engine.metrics().clone(),
    };
    let served = api::serve(listener, state).await;
    // Requests in progress have had their answers; now commit anything still queued and close the store.
    engine.shutdown().await;
    served.context("the HTTP server failed")?;
    tracing::info!("eventdeck stopped");
    Ok(())
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(%error, "cannot watch SIGTERM; stop with SIGINT (Ctrl-C)");
            if tokio::signal::ctrl_c().await.is_ok() {
                shutdown.cancel();
            }
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; draining"),
        _ = terminate.recv() => tracing::info!("SIGTERM received; draining"),
    }
    shutdown.cancel();
}
