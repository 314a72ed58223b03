//! What every handler shares.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::service::EventService;

#[derive(Clone)]
pub struct AppState {
    pub service: Arc<dyn EventService>,
    pub limits: Arc<Limits>,
    /// Cancelled when the server begins to shut down; ends live streams so draining can finish.
    pub shutdown: CancellationToken,
    /// The engine's registry: the HTTP layer records into it and `/metrics` exposes it.
    pub metrics: Arc<Metrics>,
}

#[derive(Clone)]
pub struct Limits {
    pub api_keys: Vec<String>,
    pub max_batch: usize,
    pub max_body_bytes: usize,
    pub keep_alive: Duration,
    /// Retries of a processor registered without `max_retries`.
    pub processor_max_retries: u32,
    pub cors_frontend_origins: Vec<String>,
    pub cors_origins: Vec<String>,
    /// `[rudderstack] secret`; `None`: RudderStack requests are not checked.
    pub rudderstack_secret: Option<String>,
    /// `[server] max_concurrent_requests`, and a permit per request being handled.
    pub max_concurrent_requests: usize,
    pub requests: Arc<Semaphore>,
    /// `[live] max_clients`, and a permit per open live stream.
    pub max_live_clients: usize,
    pub live_clients: Arc<Semaphore>,
}

impl Limits {
    pub fn from_config(config: &Config) -> Self {
        Self {
            api_keys: config.auth.api_keys.clone(),
            max_batch: config.ingest.max_batch,
            max_body_bytes: config.ingest.max_body_bytes,
            keep_alive: Duration::from_secs(config.live.keep_alive_secs),
            processor_max_retries: config.processing.max_retries,
            cors_frontend_origins: config.server.cors_frontend_origins.clone(),
            cors_origins: config.server.cors_origins.clone(),
            rudderstack_secret: Some(config.rudderstack.secret.clone()).filter(|s| !s.is_empty()),
            max_concurrent_requests: config.server.max_concurrent_requests,
            requests: Arc::new(Semaphore::new(config.server.max_concurrent_requests.min(Semaphore::MAX_PERMITS))),
            max_live_clients: config.live.max_clients,
            live_clients: Arc::new(Semaphore::new(config.live.max_clients.min(Semaphore::MAX_PERMITS))),
        }
    }
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("api_keys", &format_args!("[{} redacted]", self.api_keys.len()))
            .field("max_batch", &self.max_batch)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("max_live_clients", &self.max_live_clients)
            .field("rudderstack_secret", &self.rudderstack_secret.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}
