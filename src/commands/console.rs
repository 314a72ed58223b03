//! `eventdeck` / `eventdeck console`, `eventdeck demo` and `eventdeck attach URL`: the console over
//! the embedded engine (with the HTTP API listening beside it, so services can post while you watch)
//! or over a remote server. Logs go to a file: nothing may print over the screen.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::raw::c_int;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, anyhow};
use eventdeck::metrics::Metrics;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use eventdeck::api::{self, AppState, Limits};
use eventdeck::config::Config;
use eventdeck::engine::Engine;
use eventdeck::remote::RemoteClient;
use eventdeck::service::EventService;
use eventdeck::storage;
use eventdeck::tui::{self, Origin, OriginMode, Settings, StatusLine};

use super::demo;

/// The console on the configured store, with the HTTP API on `[server] addr`.
pub async fn embedded(config: Config) -> anyhow::Result<()> {
    let log_file = init_file_logs(&config)?;
    let engine = start_engine(&config).await?;
    let result = run_embedded(engine.clone(), &config, OriginMode::Embedded, log_file, None, None).await;
    engine.shutdown().await;
    result
}

/// The console on a throwaway database in a temporary folder, with the demo's webhook sink,
/// subscriptions, processors and traffic.
pub async fn demo(mut config: Config) -> anyhow::Result<()> {
    let log_file = init_file_logs(&config)?;
    let dir =
        tempfile::Builder::new().prefix("eventdeck-demo-").tempdir().context("cannot create a temporary folder")?;
    config.storage.url = format!("sqlite://{}", dir.path().join("demo.db").display());
    // The demo's sink listens on 127.0.0.1.
    config.delivery.allow_private_networks = true;
    let engine = start_engine(&config).await?;
    let service: Arc<dyn EventService> = Arc::new(engine.clone());
    let stop_demo = CancellationToken::new();
    let result = match demo::start(service, stop_demo.clone()).await {
        Ok(mut info) => {
            let tasks = std::mem::take(&mut info.tasks);
            let mut notice = format!(
                "demo: {} subscriptions and {} processors posting to the sink at http://{}",
                info.subscriptions.len(),
                info.processors.len(),
                info.sink
            );
            if !info.skipped.is_empty() {
                notice.push_str(&format!("; skipped: {}", info.skipped.join("; ")));
            }
            tracing::info!(%notice, db = %config.storage.url, "demo started");
            let info = Arc::new(info);
            let line = {
                let info = info.clone();
                StatusLine(Arc::new(move || info.status_line()))
            };
            let result =
                run_embedded(engine.clone(), &config, OriginMode::Demo, log_file, Some(notice), Some(line)).await;
            stop_demo.cancel();
            for task in tasks {
                if let Err(error) = task.await {
                    tracing::error!(%error, "a demo task ended abnormally");
                }
            }
            result
        }
        Err(error) => Err(error.context("the demo could not start")),
    };
    engine.shutdown().await;
    result
}

/// The console on a remote server.
pub async fn attach(config: Config, url: &str, api_key: Option<String>) -> anyhow::Result<()> {
    let log_file = init_file_logs(&config)?;
    let auth_required = api_key.is_some();
    let client = RemoteClient::connect(url, api_key)?;
    let mut origin =
        Origin::new(OriginMode::Attached, Some(client.base_url().as_str().trim_end_matches('/').to_owned()));
    origin.auth_required = auth_required;
    origin.log_file = log_file;
    origin.connection = Some(client.connection());
    tracing::info!(%url, "console attaching");
    run_console(Arc::new(client), origin, &config).await
}

/// Runs the console with stderr sent to the log file meanwhile, so no stray write (a dependency's,
/// a panic message from a worker thread) lands on the screen.
async fn run_console(service: Arc<dyn EventService>, origin: Origin, config: &Config) -> anyhow::Result<()> {
    let redirect = StderrRedirect::to(origin.log_file.as_deref());
    if redirect.is_none() {
        tracing::warn!("stderr could not be redirected; a stray write to it may show on the console");
    }
    let result = tui::run(service, origin, settings(config)).await;
    drop(redirect);
    result
}

/// While it lives, file descriptor 2 writes to the log file (or /dev/null without one); dropping it
/// puts the original stderr back.
struct StderrRedirect {
    saved: c_int,
}

// The C library is linked into every Unix Rust program; std offers no dup2 of its own.
unsafe extern "C" {
    fn dup(fd: c_int) -> c_int;
    fn dup2(from: c_int, to: c_int) -> c_int;
    fn close(fd: c_int) -> c_int;
}

const STDERR: c_int = 2;

impl StderrRedirect {
    fn to(log_file: Option<&std::path::Path>) -> Option<Self> {
        let target = match log_file {
            Some(path) => OpenOptions::new().append(true).open(path),
            None => OpenOptions::new().write(true).open("/dev/null"),
        }
        .ok()?;
        // SAFETY: plain descriptor calls on descriptors open for their duration: 2 for the whole
        // process, `target` until the end of this function (dup2 takes its own reference).
        unsafe {
            let saved = dup(STDERR);
            if saved < 0 {
                return None;
            }
            if dup2(target.as_raw_fd(), STDERR) < 0 {
                close(saved);
                return None;
            }
            Some(Self { saved })
        }
    }
}

impl Drop for StderrRedirect {
    fn drop(&mut self) {
        // SAFETY: `saved` is the descriptor `dup` returned, still open, and owned by this guard.
        unsafe {
            dup2(self.saved, STDERR);
            close(self.saved);
        }
    }
}

fn settings(config: &Config) -> Settings {
    Settings { live_capacity: config.console.live_buffer }
}

async fn start_engine(config: &Config) -> anyhow::Result<Engine> {
    let store = storage::connect(&config.storage.url, &config.store_options())
        .await
        .with_context(|| format!("cannot open the store {} ([storage] url, --storage-url)", config.storage.url))?;
    Ok(Engine::start(store, config.engine_options()).await?)
}

/// Serves the API beside the console while it runs, then drains it. A taken address does not stop
/// the console: the status bar says why nothing can post.
async fn run_embedded(
    engine: Engine,
    config: &Config,
    mode: OriginMode,
    log_file: Option<PathBuf>,
    notice: Option<String>,
    status_line: Option<StatusLine>,
) -> anyhow::Result<()> {
    let metrics = engine.metrics().clone();
    let service: Arc<dyn EventService> = Arc::new(engine);
    let api = Api::start(config, service.clone(), metrics).await;
    let mut origin = Origin::new(mode, api.url.clone());
    origin.api_error = api.error.clone();
    origin.auth_required = !config.auth.api_keys.is_empty();
    origin.log_file = log_file;
    origin.notice = notice;
    origin.status_line = status_line;
    let result = run_console(service, origin, config).await;
    api.stop().await;
    result
}

/// The embedded HTTP API.
struct Api {
    url: Option<String>,
    error: Option<String>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Api {
    async fn start(config: &Config, service: Arc<dyn EventService>, metrics: Arc<Metrics>) -> Self {
        let shutdown = CancellationToken::new();
        let addr = config.server.addr;
        let listener = match TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%addr, %error, "the console runs without the HTTP API");
                let error = format!("cannot listen on {addr} ([server] addr, --addr): {error}");
                return Self { url: None, error: Some(error), shutdown, task: None };
            }
        };
        let url = listener.local_addr().map(|a| format!("http://{a}")).unwrap_or_else(|_| format!("http://{addr}"));
        if config.auth.api_keys.is_empty() {
            tracing::warn!(%url, "no [auth] api_keys set: the management API is open to anyone who can reach it");
        }
        tracing::info!(%url, storage = %config.storage.url, "console serving the HTTP API");
        let limits = Arc::new(Limits::from_config(config));
        let state = AppState { service, limits, shutdown: shutdown.clone(), metrics };
        let task = tokio::spawn(api::serve(listener, state));
        Self { url: Some(url), error: None, shutdown, task: Some(task) }
    }

    /// Stops accepting, ends live streams, and lets requests in progress finish.
    async fn stop(self) {
        self.shutdown.cancel();
        if let Some(task) = self.task {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "the HTTP server failed"),
                Err(error) => tracing::error!(%error, "the HTTP server task ended abnormally"),
            }
        }
    }
}

/// Sends this process's logs to `[console] log_file` (created with its folder), never to the
/// terminal. Returns the file's path, or `None` when logging is off (an empty `log_file`).
fn init_file_logs(config: &Config) -> anyhow::Result<Option<PathBuf>> {
    let path = config.console.log_file.trim();
    if path.is_empty() {
        return Ok(None);
    }
    let path =
        std::path::absolute(path).with_context(|| format!("[console] log_file `{path}` is not a usable path"))?;
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder).with_context(|| format!("cannot create {} for the log", folder.display()))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open the log file {} ([console] log_file)", path.display()))?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init()
        .map_err(|error| anyhow!("cannot set up logging: {error}"))?;
    Ok(Some(path))
}
