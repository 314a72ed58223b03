//! Configuration: embedded defaults (assets/default.toml) → file → `EVENTDECK_*` environment → flags,
//! validated before anything starts. Unknown keys are errors, so a typo never passes silently.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

use crate::engine::EngineOptions;
use crate::storage::{StoreOptions, SyncMode};

const DEFAULTS: &str = include_str!("../assets/default.toml");

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_FILE: &str = "eventdeck.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub ingest: IngestConfig,
    pub live: LiveConfig,
    pub delivery: DeliveryConfig,
    pub processing: ProcessingConfig,
    pub replay: ReplayConfig,
    pub projections: ProjectionsConfig,
    pub archive: ArchiveConfig,
    pub retention: RetentionConfig,
    pub console: ConsoleConfig,
    pub nats: NatsConfig,
    pub rudderstack: RudderstackConfig,
    pub tracing: TracingConfig,
    pub cluster: ClusterConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    /// Origins whose pages may call the frontend ingest routes (`*`: any).
    pub cors_frontend_origins: Vec<String>,
    /// Origins whose pages may call every other route (live stream, management API) with a key.
    pub cors_origins: Vec<String>,
    /// Requests handled at once (live streams, `/health` and `/metrics` apart); more get 503.
    pub max_concurrent_requests: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub url: String,
    pub sync: SyncMode,
    pub max_connections: u32,
}

/// This instance among others sharing one database (`[cluster]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This instance's id; empty: `<hostname>-<6 random hex digits>`, chosen when the configuration is
    /// loaded.
    pub instance_id: String,
    /// How long a claim (a delivery in flight, an event in processing, a running replay) outlives its
    /// work's own timeout before another instance may take it over.
    pub lease_secs: u64,
    /// How often the shared store is read for other instances' events and changes, in milliseconds.
    /// Not in the example file: the default suits every deployment; tests slow it down to show that
    /// the live feed over NATS does not wait for it.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

fn default_poll_ms() -> u64 {
    crate::engine::DEFAULT_FOLLOW_POLL.as_millis() as u64
}

impl ClusterConfig {
    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lease_secs)
    }
}

/// A new instance id: the host's name and 6 random hex digits (the random tail of a UUID v7).
fn new_instance_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host: String = host.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
    let random = uuid::Uuid::now_v7().simple().to_string();
    format!("{}-{}", if host.is_empty() { "eventdeck" } else { &host }, &random[random.len() - 6..])
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub api_keys: Vec<String>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig").field("api_keys", &format_args!("[{} redacted]", self.api_keys.len())).finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    pub max_batch: usize,
    pub max_body_bytes: usize,
    pub queue: usize,
    pub max_group: usize,
    /// The frontend routes publish to JetStream and answer after its ack; a consumer stores the
    /// events (needs `[nats] url`).
    pub frontend_via_nats: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    pub keep_alive_secs: u64,
    pub buffer: usize,
    /// Live streams open at once; more get 503.
    pub max_clients: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    pub concurrency: usize,
    /// Requests in flight at once to one subscription (at most `concurrency`).
    pub per_subscription_concurrency: usize,
    pub allow_private_networks: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessingConfig {
    pub enabled: bool,
    pub batch_size: u32,
    pub poll_interval_ms: u64,
    pub max_retries: u32,
    pub retry_initial_delay_ms: u64,
    pub retry_max_delay_ms: u64,
    pub concurrency: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    pub confirm_above: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectionsConfig {
    pub snapshot_every: u32,
}

/// The archive of old events (`[archive]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// The folder under which `events/YYYY/MM/DD/HH/*.jsonl` are written.
    pub dir: String,
}

/// Archiving and deleting old events on a timer (`[retention]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// 0: never.
    pub archive_after_days: u32,
    /// 0: never.
    pub delete_after_days: u32,
    pub interval_secs: u64,
}

/// The terminal console (`eventdeck`, `console`, `demo`, `attach`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Where the console writes its log (never to the screen); empty: no log.
    pub log_file: String,
    /// Events the Live pane keeps in memory.
    pub live_buffer: usize,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Empty: no NATS.
    pub url: String,
    /// A `.creds` file (JWT and NKey seed) to authenticate with; empty: none.
    pub credentials_file: String,
    /// A token to authenticate with; empty: none.
    pub token: String,
    /// The JetStream stream lifecycle publications go to (created when missing).
    pub stream: String,
    /// First token of every subject eventdeck publishes on; the stream takes `<prefix>.>`.
    pub subject_prefix: String,
    /// Whether stored events and other lifecycle changes are published (when `url` is set).
    pub publish: bool,
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = if self.token.is_empty() { "" } else { "[redacted]" };
        f.debug_struct("NatsConfig")
            .field("url", &self.url)
            .field("credentials_file", &self.credentials_file)
            .field("token", &token)
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .field("publish", &self.publish)
            .finish()
    }
}

/// `POST /webhooks/rudderstack`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RudderstackConfig {
    /// Empty: requests are not checked.
    pub secret: String,
}

impl fmt::Debug for RudderstackConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = if self.secret.is_empty() { "" } else { "[redacted]" };
        f.debug_struct("RudderstackConfig").field("secret", &secret).finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// OTLP/HTTP base URL spans are exported to; empty: no export.
    pub otlp_endpoint: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
}

/// Values given as command-line flags, the top layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub addr: Option<SocketAddr>,
    pub storage_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(Box<figment::Error>),
    #[error("invalid configuration: {key}: {message}")]
    Value { key: &'static str, message: String },
}

impl Config {
    /// Reads every layer. `file` is `--config`; without it `./eventdeck.toml` is read when present.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_from(file, overrides, Env::prefixed("EVENTDECK_"))
    }

    fn load_from(file: Option<&Path>, overrides: &Overrides, env: Env) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        match file {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.to_owned())),
            Some(path) => figment = figment.merge(Toml::file(path)),
            None if Path::new(DEFAULT_FILE).exists() => figment = figment.merge(Toml::file(DEFAULT_FILE)),
            None => {}
        }
        // Only `SECTION__KEY` variables are configuration; others (EVENTDECK_API_KEY for the client
        // commands, EVENTDECK_TEST_*) belong to someone else.
        figment = figment.merge(env.filter(|key| key.as_str().contains("__")).split("__"));
        if let Some(addr) = overrides.addr {
            figment = figment.merge(("server.addr", addr));
        }
        if let Some(url) = &overrides.storage_url {
            figment = figment.merge(("storage.url", url));
        }
        Self::extract(figment)
    }

    /// The built-in defaults overlaid with one TOML document, no file and no environment: what a config
    /// file alone makes (the config fuzz target and its corpus test read through this).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::extract(Figment::from(Toml::string(DEFAULTS)).merge(Toml::string(text)))
    }

    fn extract(figment: Figment) -> Result<Self, ConfigError> {
        let mut config: Config = figment.extract().map_err(|e| ConfigError::Invalid(Box::new(e)))?;
        if config.cluster.instance_id.is_empty() {
            config.cluster.instance_id = new_instance_id();
        }
        config.validate()?;
        Ok(config)
    }

    /// What the store is opened with: `[storage]`, and this instance's id (`local` when none was chosen,
    /// as in [`Config::default`]).
    pub fn store_options(&self) -> StoreOptions {
        let instance_id = &self.cluster.instance_id;
        StoreOptions {
            sync: self.storage.sync,
            max_connections: self.storage.max_connections,
            instance_id: if instance_id.is_empty() { "local".to_owned() } else { instance_id.clone() },
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let check = |ok: bool, key: &'static str, message: &str| {
            if ok { Ok(()) } else { Err(ConfigError::Value { key, message: message.to_owned() }) }
        };
        let id = &self.cluster.instance_id;
        check(
            id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic()),
            "cluster.instance_id",
            "must be at most 128 visible ASCII characters (no spaces), or empty for <hostname>-<random>",
        )?;
        check((5..=3600).contains(&self.cluster.lease_secs), "cluster.lease_secs", "must be between 5 and 3600")?;
        check((10..=60_000).contains(&self.cluster.poll_ms), "cluster.poll_ms", "must be between 10 and 60000")?;
        let url = &self.storage.url;
        check(
            url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://"),
            "storage.url",
            &format!("`{url}` is not a storage URL: use sqlite://PATH, e.g. sqlite://data/eventdeck.db"),
        )?;
        check(
            (1..=1000).contains(&self.storage.max_connections),
            "storage.max_connections",
            "must be between 1 and 1000",
        )?;
        check((1..=100_000).contains(&self.ingest.max_batch), "ingest.max_batch", "must be between 1 and 100000")?;
        check(self.ingest.max_body_bytes >= 1024, "ingest.max_body_bytes", "must be at least 1024")?;
        check(self.ingest.queue >= 1, "ingest.queue", "must be at least 1")?;
        check(self.ingest.max_group >= 1, "ingest.max_group", "must be at least 1")?;
        check((1..=3600).contains(&self.live.keep_alive_secs), "live.keep_alive_secs", "must be between 1 and 3600")?;
        check(self.live.buffer >= 1, "live.buffer", "must be at least 1")?;
        check((1..=1_000_000).contains(&self.live.max_clients), "live.max_clients", "must be between 1 and 1000000")?;
        check(
            (1..=1_000_000).contains(&self.server.max_concurrent_requests),
            "server.max_concurrent_requests",
            "must be between 1 and 1000000",
        )?;
        check((1..=4096).contains(&self.delivery.concurrency), "delivery.concurrency", "must be between 1 and 4096")?;
        check(
            (1..=self.delivery.concurrency).contains(&self.delivery.per_subscription_concurrency),
            "delivery.per_subscription_concurrency",
            "must be between 1 and delivery.concurrency",
        )?;
        let nats = self.nats.url.trim();
        check(
            nats.is_empty() || nats.starts_with("nats://") || nats.starts_with("tls://"),
            "nats.url",
            "must be empty (no NATS) or a nats:// URL, e.g. nats://127.0.0.1:4222",
        )?;
        check(
            crate::cluster::nats::valid_stream_name(&self.nats.stream),
            "nats.stream",
            "must be a JetStream stream name: letters, digits, - and _ (no spaces, dots, * or >), e.g. EVENTDECK",
        )?;
        check(
            crate::cluster::nats::valid_subject_prefix(&self.nats.subject_prefix),
            "nats.subject_prefix",
            "must be one or more subject tokens separated by dots, without spaces, * or >, e.g. eventdeck",
        )?;
        check(
            !self.ingest.frontend_via_nats || !nats.is_empty(),
            "ingest.frontend_via_nats",
            "needs [nats] url (e.g. nats://127.0.0.1:4222): set it, or set frontend_via_nats = false",
        )?;
        let processing = &self.processing;
        check((1..=10_000).contains(&processing.batch_size), "processing.batch_size", "must be between 1 and 10000")?;
        check(
            (1..=60_000).contains(&processing.poll_interval_ms),
            "processing.poll_interval_ms",
            "must be between 1 and 60000",
        )?;
        check(processing.max_retries <= 100, "processing.max_retries", "must be between 0 and 100")?;
        check(
            processing.retry_initial_delay_ms <= processing.retry_max_delay_ms,
            "processing.retry_initial_delay_ms",
            "must not exceed processing.retry_max_delay_ms",
        )?;
        check((1..=4096).contains(&processing.concurrency), "processing.concurrency", "must be between 1 and 4096")?;
        check(!self.archive.dir.trim().is_empty(), "archive.dir", "must name a folder, e.g. \"data/archive\"")?;
        check(self.retention.interval_secs >= 1, "retention.interval_secs", "must be at least 1 (seconds)")?;
        check(
            self.retention.delete_after_days == 0
                || self.retention.archive_after_days == 0
                || self.retention.delete_after_days >= self.retention.archive_after_days,
            "retention.delete_after_days",
            "must be 0 (never) or at least archive_after_days: events are archived before they are deleted",
        )?;
        check(
            (1..=1_000_000).contains(&self.projections.snapshot_every),
            "projections.snapshot_every",
            "must be between 1 and 1000000",
        )?;
        check(
            (100..=100_000).contains(&self.console.live_buffer),
            "console.live_buffer",
            "must be between 100 and 100000",
        )?;
        for (key, origins) in [
            ("server.cors_frontend_origins", &self.server.cors_frontend_origins),
            ("server.cors_origins", &self.server.cors_origins),
        ] {
            if let Some(bad) = origins.iter().find(|origin| !valid_origin(origin)) {
                return Err(ConfigError::Value {
                    key,
                    message: format!(
                        "`{bad}` is not an origin: use \"*\" or scheme://host[:port] with no path, e.g. \"https://app.example.com\""
                    ),
                });
            }
        }
        let otlp = self.tracing.otlp_endpoint.trim();
        check(
            otlp.is_empty() || otlp.starts_with("http://") || otlp.starts_with("https://"),
            "tracing.otlp_endpoint",
            "must be empty (no export) or an OTLP/HTTP base URL, e.g. http://127.0.0.1:4318",
        )?;
        check(
            self.auth.api_keys.iter().all(|k| !k.trim().is_empty()),
            "auth.api_keys",
            "keys must not be empty strings",
        )?;
        Ok(())
    }

    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            bus_capacity: self.live.buffer,
            queue_capacity: self.ingest.queue,
            max_group: self.ingest.max_group,
            delivery_concurrency: self.delivery.concurrency,
            delivery_per_subscription: self.delivery.per_subscription_concurrency,
            allow_private_networks: self.delivery.allow_private_networks,
            processing: crate::engine::ProcessingOptions {
                enabled: self.processing.enabled,
                batch_size: self.processing.batch_size,
                poll_interval: std::time::Duration::from_millis(self.processing.poll_interval_ms),
                max_retries: self.processing.max_retries,
                retry_initial_delay_ms: self.processing.retry_initial_delay_ms,
                retry_max_delay_ms: self.processing.retry_max_delay_ms,
                concurrency: self.processing.concurrency,
            },
            replay_confirm_above: self.replay.confirm_above,
            lease: self.cluster.lease(),
            follow_poll: std::time::Duration::from_millis(self.cluster.poll_ms),
            addr: self.server.addr.to_string(),
            nats: Some(self.nats.url.trim()).filter(|url| !url.is_empty()).map(|url| {
                crate::cluster::nats::NatsOptions {
                    url: url.to_owned(),
                    credentials_file: Some(self.nats.credentials_file.trim())
                        .filter(|path| !path.is_empty())
                        .map(PathBuf::from),
                    token: Some(self.nats.token.clone()).filter(|token| !token.is_empty()),
                    stream: self.nats.stream.clone(),
                    subject_prefix: self.nats.subject_prefix.clone(),
                    publish: self.nats.publish,
                }
            }),
            frontend_via_nats: self.ingest.frontend_via_nats,
            snapshot_every: self.projections.snapshot_every,
            archive: crate::engine::ArchiveOptions {
                dir: self.archive.dir.clone().into(),
                archive_after_days: self.retention.archive_after_days,
                delete_after_days: self.retention.delete_after_days,
                interval: std::time::Duration::from_secs(self.retention.interval_secs),
            },
        }
    }
}

/// `*`, or `scheme://host[:port]` as a browser sends it in `Origin` (no path, no trailing slash).
fn valid_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some((scheme, rest)) = origin.split_once("://") else { return false };
    !scheme.is_empty()
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

impl Default for Config {
    /// The built-in defaults alone.
    fn default() -> Self {
        Figment::from(Toml::string(DEFAULTS))
            .extract()
            .unwrap_or_else(|e| panic!("assets/default.toml is invalid: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // figment::Jail's closure must return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn load_with(toml: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut result = None;
        figment::Jail::expect_with(|jail| {
            if let Some(toml) = toml {
                jail.create_file("custom.toml", toml)?;
            }
            for (key, value) in env {
                jail.set_env(key, value);
            }
            let file = toml.map(|_| Path::new("custom.toml"));
            result = Some(Config::load_from(file, &Overrides::default(), Env::prefixed("EVENTDECK_")));
            Ok(())
        });
        result.unwrap()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = Config::default();
        assert_eq!(config.server.addr.to_string(), "127.0.0.1:8686");
        assert_eq!(config.storage.url, "sqlite://data/eventdeck.db");
        assert_eq!(config.store_options(), StoreOptions::default());
        assert_eq!(config.ingest.max_batch, 1000);
        assert_eq!(config.ingest.max_body_bytes, 1 << 20);
        assert_eq!(config.live.keep_alive_secs, 15);
        assert_eq!(config.projections.snapshot_every, 100);
        assert!(config.auth.api_keys.is_empty());
        assert_eq!(config.server.cors_frontend_origins, ["*"]);
        assert!(config.server.cors_origins.is_empty());
        assert!(config.rudderstack.secret.is_empty() && config.tracing.otlp_endpoint.is_empty());
    }

    #[test]
    fn example_file_lists_exactly_the_known_keys() {
        let example: Config = Figment::from(Toml::string(include_str!("../config.example.toml"))).extract().unwrap();
        assert_eq!(example, Config::default());
    }

    #[test]
    fn layers_apply_in_order_file_then_env_then_flags() {
        let config = load_with(
            Some("[server]\naddr = \"127.0.0.1:9000\"\n[ingest]\nmax_batch = 50\n"),
            &[("EVENTDECK_INGEST__MAX_BATCH", "70"), ("EVENTDECK_AUTH__API_KEYS", "[\"k1\", \"k2\"]")],
        )
        .unwrap();
        assert_eq!(config.server.addr.port(), 9000);
        assert_eq!(config.ingest.max_batch, 70);
        assert_eq!(config.auth.api_keys, ["k1", "k2"]);
        assert!(!format!("{config:?}").contains("k1"), "secrets must not appear in Debug output");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = load_with(Some("[server]\nadress = \"x\"\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("adress"), "{err}");
        let err = load_with(None, &[("EVENTDECK_INGEST__MAX_BACH", "5")]).unwrap_err().to_string();
        assert!(err.contains("max_bach"), "{err}");
        let err = load_with(None, &[("EVENTDECK_SERVER__ADDR", "not-an-address")]).unwrap_err().to_string();
        assert!(err.contains("addr"), "{err}");
        let err = load_with(None, &[("EVENTDECK_LIVE__KEEP_ALIVE_SECS", "0")]).unwrap_err().to_string();
        assert!(err.contains("live.keep_alive_secs"), "{err}");
        let err = load_with(None, &[("EVENTDECK_SERVER__CORS_ORIGINS", "[\"https://a.example/app\"]")]).unwrap_err();
        assert!(err.to_string().contains("server.cors_origins"), "{err}");
        let err = load_with(None, &[("EVENTDECK_TRACING__OTLP_ENDPOINT", "127.0.0.1:4318")]).unwrap_err();
        assert!(err.to_string().contains("tracing.otlp_endpoint"), "{err}");
        let config =
            load_with(None, &[("EVENTDECK_SERVER__CORS_ORIGINS", "[\"https://a.example\", \"http://[::1]:8080\"]")])
                .unwrap();
        assert_eq!(config.server.cors_origins, ["https://a.example", "http://[::1]:8080"]);
        for connections in ["0", "1001"] {
            let err = load_with(None, &[("EVENTDECK_STORAGE__MAX_CONNECTIONS", connections)]).unwrap_err();
            assert!(err.to_string().contains("storage.max_connections"), "{err}");
        }
        let config = load_with(None, &[("EVENTDECK_STORAGE__MAX_CONNECTIONS", "1000")]).unwrap();
        assert_eq!(config.store_options().max_connections, 1000);
        let err = load_with(None, &[("EVENTDECK_INGEST__FRONTEND_VIA_NATS", "true")]).unwrap_err();
        assert!(
            err.to_string().contains("ingest.frontend_via_nats") && err.to_string().contains("[nats] url"),
            "{err}"
        );
        let config = load_with(
            None,
            &[("EVENTDECK_INGEST__FRONTEND_VIA_NATS", "true"), ("EVENTDECK_NATS__URL", "nats://127.0.0.1:4222")],
        )
        .unwrap();
        assert!(config.engine_options().frontend_via_nats);
    }

    #[test]
    fn variables_without_a_section_are_left_alone() {
        let mut config = load_with(None, &[("EVENTDECK_API_KEY", "k"), ("EVENTDECK_TEST_DATABASE_URL", "x")]).unwrap();
        // Loading chooses an instance id when none is set.
        config.cluster.instance_id.clear();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn an_instance_id_is_chosen_when_none_is_set_and_checked_when_one_is() {
        let first = load_with(None, &[]).unwrap().cluster.instance_id;
        let second = load_with(None, &[]).unwrap().cluster.instance_id;
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        assert!(first.ends_with(&first[first.len() - 6..]) && first.len() > 7, "{first}");
        assert!(host.is_empty() || first.starts_with(&host[..host.len().min(8)]), "{first} names the host {host}");
        assert!(first[first.len() - 6..].chars().all(|c| c.is_ascii_hexdigit()), "{first}");
        assert_ne!(first, second, "new at every start");
        let set = load_with(None, &[("EVENTDECK_CLUSTER__INSTANCE_ID", "deck-a")]).unwrap();
        assert_eq!(set.store_options().instance_id, "deck-a");
        let err = load_with(None, &[("EVENTDECK_CLUSTER__INSTANCE_ID", "two words")]).unwrap_err();
        assert!(err.to_string().contains("cluster.instance_id"), "{err}");
        let err = load_with(None, &[("EVENTDECK_CLUSTER__LEASE_SECS", "1")]).unwrap_err();
        assert!(err.to_string().contains("cluster.lease_secs"), "{err}");
    }
}
