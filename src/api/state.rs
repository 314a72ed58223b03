//! What every handler shares.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::service::EventService;

#[derive(Clone)]
pub struct AppState {
    pub service: Arc<dyn EventService>,
    pub limits: Arc<Limits>,
    /// Cancelled when the server begins to shut down; ends live streams so draining can finish.
    pub shutdown: CancellationToken,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub api_keys: Vec<String>,
    pub max_batch: usize,
    pub max_body_bytes: usize,
    pub keep_alive: Duration,
    /// Retries of a processor registered without `max_retries`.
    pub processor_max_retries: u32,
}

impl Limits {
    pub fn from_config(config: &Config) -> Self {
        Self {
            api_keys: config.auth.api_keys.clone(),
            max_batch: config.ingest.max_batch,
            max_body_bytes: config.ingest.max_body_bytes,
            keep_alive: Duration::from_secs(config.live.keep_alive_secs),
            processor_max_retries: config.processing.max_retries,
        }
    }
}
