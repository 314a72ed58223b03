//! Command-line interface: `eventdeck [COMMAND]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "eventdeck", version, about = "An event service and the terminal console its operators live in")]
pub struct Cli {
    /// Configuration file (default: ./eventdeck.toml when present).
    #[arg(long, short, global = true, env = "EVENTDECK_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the console with the engine embedded and the HTTP API listening (the default).
    Console(ServeArgs),
    /// Open the console on a remote eventdeck server, over its HTTP API and live stream.
    Attach(AttachArgs),
    /// Open the console on a throwaway database with synthetic traffic, subscriptions and processors.
    Demo(DemoArgs),
    /// Run headless: the HTTP API only, JSON log lines on stdout.
    Serve(ServeArgs),
    /// Send events to a server: one from flags, or JSON lines from stdin in batches.
    Publish(PublishArgs),
    /// Follow a server's live stream, printing each event as a JSON line.
    Tail(TailArgs),
    /// Measure ingest, query or statistics throughput and latency.
    Bench(BenchArgs),
    /// Send stored events again to subscriptions or processors (after a dry run and a confirmation).
    Replay(ReplayArgs),
    /// List, retry or discard dead letters.
    Dlq(DlqArgs),
    /// Archive old events to time-partitioned JSON Lines files (through a server), or list the archive.
    Archive(ArchiveArgs),
    /// Print the OpenAPI 3.1 document of the HTTP API (as served at /api/v1/openapi.json).
    Openapi,
}

#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on ([server] addr).
    #[arg(long, value_name = "IP:PORT")]
    pub addr: Option<SocketAddr>,
    /// Storage URL ([storage] url), e.g. sqlite://data/eventdeck.db.
    #[arg(long, value_name = "URL")]
    pub storage_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Base URL of the eventdeck server, e.g. http://10.0.0.5:8686.
    #[arg(value_name = "URL")]
    pub url: String,
    /// API key, when the server requires one.
    #[arg(long, env = "EVENTDECK_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address the demo's HTTP API listens on ([server] addr).
    #[arg(long, value_name = "IP:PORT")]
    pub addr: Option<SocketAddr>,
}

/// Where a client command finds the server.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Base URL of the eventdeck server.
    #[arg(long, env = "EVENTDECK_URL", default_value = "http://127.0.0.1:8686")]
    pub url: String,
    /// API key, when the server requires one.
    #[arg(long, env = "EVENTDECK_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Event type of a single event; without it, JSON lines (one EventCreate each) are read from stdin.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,
    #[arg(long, value_name = "CATEGORY")]
    pub category: Option<String>,
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Event data as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub data: Option<String>,
    /// Stream id, `entity_type:entity_id`.
    #[arg(long, value_name = "STREAM")]
    pub stream: Option<String>,
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Events per request when reading stdin.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Send a batch that is not full once its first line has waited this many milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub flush_ms: u64,
    /// Retries of a batch the server did not take (no answer, a timeout, 5xx, 429) before the
    /// publisher gives up; a line the server refuses (4xx) is reported, never retried.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub retries: u32,
    /// Wait before the first retry, in milliseconds; doubled for each retry after it, up to 30 s.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub backoff_ms: u64,
    /// File keeping every line read until the server has acknowledged it: a publisher that stops
    /// (crash, kill, server down) sends what it holds first when started again with the same file.
    #[arg(long, value_name = "FILE")]
    pub spool: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Archive the processed and failed events with a timestamp before this RFC 3339 time
    /// (e.g. 2026-01-01T00:00:00Z); not in the future.
    #[arg(long, value_name = "TIME", required_unless_present = "list", conflicts_with = "list")]
    pub before: Option<String>,
    /// Then delete the archived events from the store (statistics keep counting them).
    #[arg(long, requires = "before")]
    pub delete: bool,
    /// List the archive's hour partitions (files, events, time range) from its folder; no server needed.
    #[arg(long)]
    pub list: bool,
    /// The archive folder `--list` reads (default: `[archive] dir` of the configuration).
    #[arg(long, value_name = "DIR", requires = "list")]
    pub dir: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The server's base URL given without `--url` (the older form; `--url` is preferred).
    #[arg(value_name = "URL", conflicts_with = "url")]
    pub positional_url: Option<String>,
    /// Type pattern, e.g. `user.*` or `order.>`.
    #[arg(long = "type", value_name = "PATTERN")]
    pub event_type: Option<String>,
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,
    /// Resume after this seq (every stored match after it is printed first).
    #[arg(long, value_name = "SEQ")]
    pub since_seq: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// POST events to a running server (batch size 1 uses /create, larger sizes /batch).
    Ingest,
    /// Single-event POSTs to one in-process engine served with and without the request-id, request
    /// span and HTTP metrics layers, in alternating rounds; reports both rates and the overhead.
    IngestOverhead,
    /// Batch ingest into two in-process SQLite engines, one publishing to NATS JetStream
    /// (`EVENTDECK_NATS__URL`, default nats://127.0.0.1:4222) and one without NATS, in alternating
    /// rounds; reports both rates and their ratio.
    Publications,
    /// The same rows through the engine's writer and the store in this process, no HTTP.
    Store,
    /// History queries by type pattern and a one-day window on a running server.
    Query,
    /// Statistics requests on a running server.
    Stats,
    /// Webhook deliveries from a running server to a sink in this process, one subscription per
    /// `--subscriptions`; reports deliveries/s and commit-to-sink latency.
    Delivery,
    /// A healthy webhook endpoint's delivery rate alone and beside endpoints that hang, answer late,
    /// trickle their answer forever or refuse connections (a running server, a sink in this process).
    Isolation,
    /// A backlog of `--fill` events drained through one `log` processor in this process while
    /// `--events` more are ingested; reports processed/s and the ingest rate against processing off.
    Processing,
    /// `--events` stored events replayed to a subscription on a local sink, in this process.
    Replay,
    /// One entity with `--events` events in this process, then `--requests` projection reads each of
    /// the latest state, at_version and at_time near the middle; reports read latency.
    Projection,
    /// Real `eventdeck serve` processes under mixed load for `--duration` seconds, one SIGKILLed and
    /// restarted every `--kill-every` seconds, then a table of checks (nothing acknowledged lost or
    /// doubled, streams gapless, every delivery made, nothing stuck); exits non-zero when one fails.
    Soak,
    /// `--events` stored events archived to JSON Lines in this process, alone and then while ingest
    /// runs; reports events archived per second and the ingest rate against ingest alone.
    Archive,
    /// Single-event POSTs to /api/v1/events/frontend on an in-process server with
    /// `frontend_via_nats` (NATS at `--nats-url`), then the same against one storing directly;
    /// reports POST latency and rate, and the rate at which the consumer stores the events.
    Frontend,
    /// Two `eventdeck serve` processes on a scratch schema of `--storage-url` (PostgreSQL): single
    /// events POSTed to one at `--rate` (default 1,000/s) for `--duration` seconds; reports commit →
    /// live frame on the other, p50/p95/p99, with the store poll alone and (with `--nats-url`) over NATS.
    LiveLatency,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[arg(long, value_enum, default_value_t = Scenario::Ingest)]
    pub scenario: Scenario,
    /// Events to send (ingest, store).
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Events per request.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub concurrency: u64,
    /// Events to store first (query, stats), in batches of 1000, timestamps spread over 30 days.
    #[arg(long, default_value_t = 0)]
    pub fill: u64,
    /// Requests to measure (query, stats).
    #[arg(long, default_value_t = 2_000)]
    pub requests: u64,
    /// Subscriptions to create (delivery).
    #[arg(long, default_value_t = 10)]
    pub subscriptions: u64,
    /// Events per second to send at most (ingest, delivery); 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Database for the store scenario (default: a temporary file).
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// The store of the store and soak scenarios: a `postgres://` database, where each makes a scratch
    /// schema of its own and drops it after (the store scenario also measures a baseline of plain
    /// multi-row INSERTs of the same rows there). Default: SQLite in a temporary folder.
    #[arg(long, value_name = "URL")]
    pub storage_url: Option<String>,
    /// How long the bench's webhook sink waits before it answers (delivery), in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub sink_delay_ms: u64,
    /// How long the soak drives load, in seconds.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(5..=604_800))]
    pub duration: u64,
    /// Seconds between two kills in the soak (each one a random moment around it).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub kill_every: u64,
    /// Servers the soak runs at once (default: 1 on SQLite, 3 on PostgreSQL).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=8))]
    pub servers: Option<u64>,
    /// A NATS server, e.g. nats://127.0.0.1:4222: the frontend scenario's (required), and the
    /// live-latency scenario's second run (without it, only the run with the store poll alone).
    #[arg(long, value_name = "URL")]
    pub nats_url: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("selection").required(true).multiple(true).args(["ids", "stream", "from", "to"])))]
pub struct ReplayArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// These events (comma-separated ids).
    #[arg(long, value_name = "ID,...", value_delimiter = ',', conflicts_with_all = ["stream", "from", "to"])]
    pub ids: Vec<String>,
    /// Every event of this stream, `entity_type:entity_id`.
    #[arg(long, value_name = "STREAM", conflicts_with_all = ["from", "to"])]
    pub stream: Option<String>,
    /// Events whose timestamp is at or after this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Events whose timestamp is before this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Only events whose type matches this pattern, e.g. `order.*`.
    #[arg(long = "type", value_name = "PATTERN")]
    pub event_type: Option<String>,
    /// Only events from this source.
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,
    /// Send to this subscription only (default: every matching subscription and processor).
    #[arg(long, value_name = "ID", conflicts_with = "processor")]
    pub subscription: Option<String>,
    /// Run this processor only.
    #[arg(long, value_name = "ID")]
    pub processor: Option<String>,
    /// Show how many events match and the first of them; replay nothing.
    #[arg(long, conflicts_with = "yes")]
    pub dry_run: bool,
    /// Replay without the dry run and the question (needed when stdin is not a terminal).
    #[arg(long, short)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters as a table (or JSON).
    List(DlqListArgs),
    /// Take dead letters out of the queue and send them again with a fresh retry budget.
    Retry(DlqRetryArgs),
    /// Drop dead letters for good (their events stay stored).
    Discard(DlqDiscardArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DlqKindArg {
    Delivery,
    Processing,
}

#[derive(Debug, Args)]
pub struct DlqListArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[arg(long, value_enum)]
    pub kind: Option<DlqKindArg>,
    /// Only entries of this subscription.
    #[arg(long, value_name = "ID")]
    pub subscription: Option<String>,
    /// Only entries of this processor.
    #[arg(long, value_name = "ID")]
    pub processor: Option<String>,
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// Print the answer as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["ids", "subscription", "all"])))]
pub struct DlqRetryArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Dead-letter ids.
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    /// Every entry of this subscription.
    #[arg(long, value_name = "ID")]
    pub subscription: Option<String>,
    /// Every entry in the queue.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct DlqDiscardArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Dead-letter ids.
    #[arg(value_name = "ID", required = true)]
    pub ids: Vec<String>,
}
