//! `eventdeck bench --scenario soak`: the promises under faults. Real `eventdeck serve` processes (this
//! executable) share one store; workers ingest singles, batches and versioned stream events with
//! idempotency keys; a sink in this process takes deliveries for an always-200 subscription and a flaky
//! one (500s, hangs past the timeout, an occasional 410 that disables it, re-enabled by the soak), and a
//! `webhook` processor that fails a quarter of its calls; a replay runs, the DLQ is retried now and then;
//! and every `--kill-every` seconds one server is SIGKILLed and restarted. When the time is up the soak
//! waits for the work to settle and checks, printing one row each:
//!
//! - every acknowledged event is stored exactly once, with the seq its answer gave;
//! - every stream's versions run 1..n without a gap, each acknowledged version in place;
//! - every stored event reached the always-200 sink at least once, and each duplicate is explained by a
//!   kill between its two copies (the server died before the outcome of the first was committed);
//! - nothing is pending or processing, no live instance holds a claim, the replay completed;
//! - each DLQ entry agrees with its attempts, and each failed event has exactly one processing entry;
//! - the statistics' counters equal counting the rows.
//!
//! An answer that never came (the server died) is retried with the same idempotency key on any server
//! until one acknowledges it, the way a careful client would.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::Rng;
use crate::cli::BenchArgs;
use eventdeck::domain::Timestamp;

/// The store's lease (seconds; the smallest the configuration takes), so claims of a killed server
/// are taken over soon.
const LEASE_SECS: u64 = 5;
/// Requests in flight to one subscription at once.
const PER_SUBSCRIPTION: u64 = 8;
/// Retries of the flaky subscription and of the processor before the DLQ.
const MAX_RETRIES: u64 = 2;
/// Versioned streams each worker writes to.
const STREAMS_PER_WORKER: usize = 4;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    // The scratch schema lives as long as this function, and is dropped (with its tables) at the end.
    let (url, _schema, backend) = match args.storage_url.as_deref() {
        None => (format!("sqlite://{}", dir.path().join("soak.db").display()), None, "sqlite"),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let schema = eventdeck::storage::ScratchSchema::create_in(url)
                .await
                .with_context(|| format!("cannot make a scratch schema in {url}"))?;
            (schema.url(), Some(schema), "postgres")
        }
        Some(other) => bail!("--storage-url: `{other}` is not a postgres:// URL (without it the soak uses SQLite)"),
    };
    let servers = args.servers.unwrap_or(if backend == "sqlite" { 1 } else { 3 }) as usize;
    if backend == "sqlite" && servers > 1 {
        bail!("--servers: SQLite takes one server (its file is locked by the first); use --storage-url postgres://…");
    }
    let sink = Sink::start().await?;
    let cluster = Arc::new(Cluster::start(dir.path(), &url, servers).await?);
    println!(
        "soak: {backend}, {servers} server(s), {} s, a kill every ~{} s, logs in {}",
        args.duration,
        args.kill_every,
        dir.path().display()
    );
    let setup = Setup::create(&cluster, &sink).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let workers = args.concurrency.clamp(1, 64) as usize;
    let pause = match args.rate {
        0 => Duration::from_millis(5),
        rate => Duration::from_secs_f64(workers as f64 * 8.0 / rate as f64),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let (cluster, ledger, stop) = (cluster.clone(), ledger.clone(), stop.clone());
        tasks.spawn(async move { ingest_worker(worker, cluster, ledger, stop, pause).await });
    }
    let chores = {
        let (cluster, stop, setup) = (cluster.clone(), stop.clone(), setup.clone());
        let replay_at = started + Duration::from_secs(args.duration / 2);
        tokio::spawn(async move { chores(cluster, setup, stop, replay_at).await })
    };
    let killer = {
        let (cluster, stop) = (cluster.clone(), stop.clone());
        let every = Duration::from_secs(args.kill_every);
        tokio::spawn(async move { killer(cluster, stop, every).await })
    };

    tokio::time::sleep_until(deadline.into()).await;
    stop.store(true, Ordering::SeqCst);
    let kills = killer.await.context("the killer panicked")??;
    let chores = chores.await.context("the chores panicked")?;
    while let Some(done) = tasks.join_next().await {
        done.context("an ingest worker panicked")?;
    }
    let load_secs = started.elapsed().as_secs_f64();
    let (kill_times, kills) = (kills.clone(), kills.len() as u64);
    let ledger = std::mem::take(&mut *lock(&ledger));
    println!(
        "load done: {} events acknowledged in {load_secs:.0} s ({:.0}/s), {} requests retried after a lost answer, {kills} kills",
        ledger.acked.len(),
        ledger.acked.len() as f64 / load_secs,
        ledger.retried,
    );

    let settled = settle(&cluster, &sink, chores.replay_id.as_deref()).await;
    let checks = check(&cluster, &sink, &setup, &ledger, &kill_times, &chores, settled).await?;
    cluster.stop().await;
    print_table(&checks);
    let failed: Vec<_> = checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
    if !failed.is_empty() {
        bail!("soak failed: {}", failed.join(", "));
    }
    println!("soak passed");
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// The servers

/// The `eventdeck serve` processes, each on a fixed port so clients find it again after a restart.
struct Cluster {
    servers: Vec<tokio::sync::Mutex<Server>>,
    /// Each server's address, which never changes.
    addrs: Vec<String>,
    http: reqwest::Client,
    exe: PathBuf,
    dir: PathBuf,
    url: String,
    rng: Mutex<Rng>,
}

struct Server {
    index: usize,
    addr: String,
    child: Option<Child>,
    starts: u32,
}

impl Cluster {
    async fn start(dir: &Path, url: &str, count: usize) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this executable to start servers")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .context("cannot build the HTTP client")?;
        let seed = u64::from(std::process::id()) ^ Timestamp::now().as_micros() as u64;
        let cluster = Self {
            servers: Vec::new(),
            addrs: Vec::new(),
            http,
            exe,
            dir: dir.to_owned(),
            url: url.to_owned(),
            rng: Mutex::new(Rng(seed | 1)),
        };
        let (mut servers, mut addrs) = (Vec::new(), Vec::new());
        for index in 0..count {
            // A free port now; the server binds it again at each restart.
            let probe = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
            let addr = probe.local_addr()?.to_string();
            drop(probe);
            let mut server = Server { index, addr, child: None, starts: 0 };
            cluster.spawn(&mut server).await?;
            addrs.push(server.addr.clone());
            servers.push(tokio::sync::Mutex::new(server));
        }
        Ok(Self { servers, addrs, ..cluster })
    }

    fn random(&self, n: usize) -> usize {
        lock(&self.rng).below(n as u64) as usize
    }

    /// Starts `server` and waits until it answers `/health`.
    async fn spawn(&self, server: &mut Server) -> anyhow::Result<()> {
        server.starts += 1;
        let log = |kind: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(format!("server-{}.{kind}", server.index)))
        };
        let mut command = Command::new(&self.exe);
        command.current_dir(&self.dir).kill_on_drop(true);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("EVENTDECK_") || k == "RUST_LOG") {
            command.env_remove(key);
        }
        let child = command
            .args(["serve", "--addr", &server.addr, "--storage-url", &self.url])
            .env("EVENTDECK_LOG__LEVEL", "warn")
            .env("EVENTDECK_CLUSTER__LEASE_SECS", LEASE_SECS.to_string())
            .env("EVENTDECK_DELIVERY__PER_SUBSCRIPTION_CONCURRENCY", PER_SUBSCRIPTION.to_string())
            .env("EVENTDECK_PROCESSING__RETRY_INITIAL_DELAY_MS", "100")
            .env("EVENTDECK_PROCESSING__RETRY_MAX_DELAY_MS", "500")
            .env("EVENTDECK_REPLAY__CONFIRM_ABOVE", "100000000")
            .stdin(Stdio::null())
            .stdout(log("log")?)
            .stderr(log("err")?)
            .spawn()
            .context("cannot start eventdeck serve")?;
        server.child = Some(child);
        let started = Instant::now();
        loop {
            if let Ok(answer) = self.http.get(format!("http://{}/health", server.addr)).send().await
                && answer.status().is_success()
            {
                return Ok(());
            }
            if let Some(child) = server.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!(
                    "server {} exited at start ({status}); see {}",
                    server.index,
                    self.dir.join(format!("server-{}.err", server.index)).display()
                );
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("server {} did not answer /health within 60 s", server.index);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The base URL of a random server (it may be down: callers retry).
    fn any(&self) -> String {
        format!("http://{}", self.addrs[self.random(self.addrs.len())])
    }

    async fn stop(&self) {
        for server in &self.servers {
            let mut server = server.lock().await;
            if let Some(mut child) = server.child.take() {
                let _killed = child.start_kill();
                let _gone = child.wait().await;
            }
        }
    }

    /// GET `path` on some server, retried on other servers while they are down (up to 60 s).
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let started = Instant::now();
        loop {
            let base = self.any();
            match self.http.get(format!("{base}{path}")).send().await {
                Ok(answer) if answer.status().is_success() => {
                    return answer.json().await.with_context(|| format!("GET {path}: not JSON"));
                }
                Ok(answer) if answer.status().is_client_error() => {
                    bail!("GET {path}: {} {}", answer.status(), answer.text().await.unwrap_or_default())
                }
                _ if started.elapsed() > Duration::from_secs(60) => bail!("GET {path}: no server answered in 60 s"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// A management write (POST/PATCH with a JSON body) on some server, retried while servers are down.
    async fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> anyhow::Result<Value> {
        let started = Instant::now();
        loop {
            let base = self.any();
            match self.http.request(method.clone(), format!("{base}{path}")).json(body).send().await {
                Ok(answer) if answer.status().is_success() => return Ok(answer.json().await.unwrap_or(Value::Null)),
                Ok(answer) if answer.status().is_client_error() => {
                    bail!("{method} {path}: {} {}", answer.status(), answer.text().await.unwrap_or_default())
                }
                _ if started.elapsed() > Duration::from_secs(60) => {
                    bail!("{method} {path}: no server answered in 60 s")
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// SIGKILLs the servers in turn, one every `every` (± half),, restarts it after a short pause; counts the kills.
async fn killer(cluster: Arc<Cluster>, stop: Arc<AtomicBool>, every: Duration) -> anyhow::Result<Vec<Instant>> {
    let mut kills = Vec::new();
    loop {
        let wait = every.as_secs_f64() * (0.5 + cluster.random(1000) as f64 / 1000.0);
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        if stop.load(Ordering::SeqCst) {
            return Ok(kills);
        }
        // In turn, so that on PostgreSQL each server dies as often and the others take over its claims.
        let index = kills.len() % cluster.servers.len();
        let mut server = cluster.servers[index].lock().await;
        if let Some(mut child) = server.child.take() {
            kills.push(Instant::now());
            child.start_kill().context("SIGKILL")?;
            child.wait().await.context("waiting for the killed server")?;
        }
        tokio::time::sleep(Duration::from_millis(200 + cluster.random(800) as u64)).await;
        cluster.spawn(&mut server).await?;
    }
}

// ---------------------------------------------------------------------------------------------------
// The sink: the always-200 endpoint, the flaky one, the processor's

#[derive(Default)]
struct SinkState {
    /// When each delivery to the always-200 endpoint arrived, by event id.
    ok: HashMap<String, Vec<Instant>>,
    flaky_calls: u64,
    gone_answers: u64,
    processor_calls: u64,
}

struct Sink {
    base: String,
    state: Arc<Mutex<SinkState>>,
}

impl Sink {
    async fn start() -> anyhow::Result<Self> {
        use axum::routing::post;
        let state = Arc::new(Mutex::new(SinkState::default()));
        let rng = Arc::new(Mutex::new(Rng(0x005E_ED0F_50A4 | 1)));
        let ok = {
            let state = state.clone();
            move |headers: axum::http::HeaderMap| {
                let state = state.clone();
                async move {
                    let id = headers.get("x-event-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                    lock(&state).ok.entry(id).or_default().push(Instant::now());
                    StatusCode::OK
                }
            }
        };
        let flaky = {
            let (state, rng) = (state.clone(), rng.clone());
            move || {
                let (state, rng) = (state.clone(), rng.clone());
                async move {
                    let roll = lock(&rng).below(100);
                    {
                        let mut state = lock(&state);
                        state.flaky_calls += 1;
                        state.gone_answers += u64::from(roll == 0);
                    }
                    match roll {
                        0 => StatusCode::GONE,
                        1..=7 => {
                            // Past the subscription's 1 s timeout: the server gives up on it.
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            StatusCode::OK
                        }
                        8..=34 => StatusCode::INTERNAL_SERVER_ERROR,
                        _ => StatusCode::OK,
                    }
                }
            }
        };
        let processor = {
            let (state, rng) = (state.clone(), rng.clone());
            move || {
                let (state, rng) = (state.clone(), rng.clone());
                async move {
                    lock(&state).processor_calls += 1;
                    if lock(&rng).below(4) == 0 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }
                }
            }
        };
        let app = axum::Router::new()
            .route("/ok", post(ok))
            .route("/flaky", post(flaky))
            .route("/processor", post(processor));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot bind the soak's sink")?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { base, state })
    }
}

#[derive(Clone)]
struct Setup {
    ok_subscription: String,
    flaky_subscription: String,
    processor: String,
}

impl Setup {
    async fn create(cluster: &Cluster, sink: &Sink) -> anyhow::Result<Self> {
        let subscription = |name: &str, path: &str, types: Value, timeout_ms: u64| {
            json!({
                "subscriber_name": name, "callback_url": format!("{}{path}", sink.base), "event_types": types,
                "retry_policy": {"max_retries": MAX_RETRIES, "initial_delay_ms": 100, "backoff_multiplier": 2.0,
                                 "max_delay_ms": 500, "timeout_ms": timeout_ms},
            })
        };
        let post = reqwest::Method::POST;
        let ok = cluster
            .send(
                post.clone(),
                "/api/v1/events/subscriptions",
                &subscription("soak-ok", "/ok", json!(["soak.>"]), 10_000),
            )
            .await?;
        let flaky = cluster
            .send(
                post.clone(),
                "/api/v1/events/subscriptions",
                &subscription("soak-flaky", "/flaky", json!(["soak.a"]), 1_000),
            )
            .await?;
        let processor = json!({
            "processor_name": "soak-webhook", "processor_type": "webhook", "max_retries": MAX_RETRIES,
            "filters": {"event_type": "soak.>"}, "config": {"url": format!("{}/processor", sink.base)},
        });
        let processor = cluster.send(post, "/api/v1/events/processors", &processor).await?;
        let id = |value: &Value, key: &str| value[key].as_str().map(str::to_owned).context("no id in the answer");
        Ok(Self {
            ok_subscription: id(&ok, "subscription_id")?,
            flaky_subscription: id(&flaky, "subscription_id")?,
            processor: id(&processor, "processor_id")?,
        })
    }
}

// ---------------------------------------------------------------------------------------------------
// The load

/// An acknowledged event as its answer described it.
struct Acked {
    seq: i64,
    stream: Option<(String, i64)>,
}

#[derive(Default)]
struct Ledger {
    acked: HashMap<String, Acked>,
    /// Requests sent again after an answer was lost.
    retried: u64,
}

async fn ingest_worker(
    worker: usize,
    cluster: Arc<Cluster>,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    pause: Duration,
) {
    let mut rng = Rng((worker as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut versions = [0i64; STREAMS_PER_WORKER];
    let mut counter = 0u64;
    let mut key = || {
        counter += 1;
        format!("soak-{worker}-{counter}")
    };
    while !stop.load(Ordering::SeqCst) {
        let event = |rng: &mut Rng, key: String| {
            let event_type = if rng.below(2) == 0 { "soak.a" } else { "soak.b" };
            json!({"event_type": event_type, "idempotency_key": key, "user_id": format!("u{}", rng.below(50)),
                   "data": {"n": rng.below(1_000_000), "worker": worker}})
        };
        match rng.below(10) {
            0..=3 => {
                let body = event(&mut rng, key());
                if let Some(answer) = create(&cluster, &ledger, &stop, "/api/v1/events/create", &body).await {
                    record(&ledger, &answer, None);
                }
            }
            4..=6 => {
                let events: Vec<Value> = (0..1 + rng.below(20)).map(|_| event(&mut rng, key())).collect();
                let body = Value::Array(events);
                if let Some(answer) = create(&cluster, &ledger, &stop, "/api/v1/events/batch", &body).await {
                    for result in answer["results"].as_array().into_iter().flatten() {
                        record(&ledger, &result["event"], None);
                    }
                }
            }
            _ => {
                let which = rng.below(STREAMS_PER_WORKER as u64) as usize;
                let stream = format!("soak:w{worker}-{which}");
                if let Some(version) =
                    stream_event(&cluster, &ledger, &stop, &stream, versions[which], key(), &mut rng).await
                {
                    versions[which] = version;
                }
            }
        }
        tokio::time::sleep(pause).await;
    }
}

fn record(ledger: &Mutex<Ledger>, event: &Value, stream: Option<(String, i64)>) {
    if let (Some(id), Some(seq)) = (event["event_id"].as_str(), event["seq"].as_i64()) {
        lock(ledger).acked.insert(id.to_owned(), Acked { seq, stream });
    }
}

/// What one POST came to.
enum Posted {
    Ok(Value),
    Conflict,
}

/// POSTs `body` to some server until one answers; a lost answer is sent again unchanged (its
/// idempotency keys make that safe). `None` when the soak stopped first or the server refused it.
async fn post(
    cluster: &Cluster,
    ledger: &Mutex<Ledger>,
    stop: &AtomicBool,
    path: &str,
    body: &Value,
) -> Option<Posted> {
    let mut first = true;
    loop {
        if !first {
            lock(ledger).retried += 1;
            // Past the end, give up: the event may or may not be stored, and either is fine.
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        first = false;
        let base = cluster.any();
        let Ok(answer) = cluster.http.post(format!("{base}{path}")).json(body).send().await else { continue };
        let status = answer.status();
        if status == StatusCode::CONFLICT {
            return Some(Posted::Conflict);
        }
        if status.is_server_error() {
            // 503 while the store is busy or the server is shutting down: try again.
            continue;
        }
        let Ok(value) = answer.json::<Value>().await else { continue };
        if !status.is_success() {
            eprintln!("soak: {path} refused: {status} {value}");
            return None;
        }
        return Some(Posted::Ok(value));
    }
}

async fn create(
    cluster: &Cluster,
    ledger: &Mutex<Ledger>,
    stop: &AtomicBool,
    path: &str,
    body: &Value,
) -> Option<Value> {
    match post(cluster, ledger, stop, path, body).await? {
        Posted::Ok(value) => Some(value),
        Posted::Conflict => None,
    }
}

/// Appends one event to `stream` expecting `version`; returns the stream's version after it. A 409 on
/// a resend means the first try may have been stored: the stream is read to find out.
async fn stream_event(
    cluster: &Cluster,
    ledger: &Mutex<Ledger>,
    stop: &AtomicBool,
    stream: &str,
    mut version: i64,
    key: String,
    rng: &mut Rng,
) -> Option<i64> {
    loop {
        let body = json!({"event_type": "soak.s", "stream_id": stream, "expected_version": version,
                          "idempotency_key": key, "data": {"n": rng.below(1000)}});
        match post(cluster, ledger, stop, "/api/v1/events/create", &body).await? {
            Posted::Ok(event) => {
                let stored = event["stream_version"].as_i64()?;
                record(ledger, &event, Some((stream.to_owned(), stored)));
                return Some(stored);
            }
            Posted::Conflict => {
                let read = cluster.get(&format!("/api/v1/events/stream/{stream}?from_version={version}")).await.ok()?;
                let events = read["events"].as_array().cloned().unwrap_or_default();
                if let Some(mine) = events.iter().find(|e| e["idempotency_key"] == key.as_str()) {
                    let stored = mine["stream_version"].as_i64()?;
                    record(ledger, mine, Some((stream.to_owned(), stored)));
                    return Some(stored);
                }
                version = read["version"].as_i64().unwrap_or(version);
            }
        }
    }
}

/// What the chores did.
#[derive(Default)]
struct Chores {
    dlq_retries: u64,
    retried_entries: u64,
    reenabled: u64,
    replay_id: Option<String>,
}

/// Every 2 s: re-enables the flaky subscription after a 410; every 5 s: retries the whole DLQ; once, at
/// `replay_at`, replays the events of the run so far to the flaky subscription.
async fn chores(cluster: Arc<Cluster>, setup: Setup, stop: Arc<AtomicBool>, replay_at: Instant) -> Chores {
    let mut done = Chores::default();
    let replay_from = Timestamp::now();
    let mut tick = 0u64;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        tick += 1;
        let path = format!("/api/v1/events/subscriptions/{}", setup.flaky_subscription);
        if tick.is_multiple_of(2)
            && let Ok(flaky) = cluster.get(&path).await
            && flaky["enabled"] == false
            && cluster.send(reqwest::Method::PATCH, &path, &json!({"enabled": true})).await.is_ok()
        {
            done.reenabled += 1;
        }
        if tick.is_multiple_of(5)
            && let Ok(answer) =
                cluster.send(reqwest::Method::POST, "/api/v1/events/dlq/retry", &json!({"all": true})).await
        {
            done.dlq_retries += 1;
            done.retried_entries += answer["retried"].as_u64().unwrap_or(0);
        }
        if done.replay_id.is_none() && Instant::now() >= replay_at {
            let body = json!({"start_time": replay_from.to_string(), "end_time": Timestamp::now().to_string(),
                              "event_type": "soak.a", "target": {"subscription_id": setup.flaky_subscription}});
            match cluster.send(reqwest::Method::POST, "/api/v1/events/replay", &body).await {
                Ok(answer) => done.replay_id = answer["replay_id"].as_str().map(str::to_owned),
                Err(error) => eprintln!("soak: the replay was refused: {error:#}"),
            }
        }
    }
    done
}

// ---------------------------------------------------------------------------------------------------
// Settling and checking

/// Waits until nothing is pending or processing, no instance holds a claim, the replay is over and the
/// always-200 sink has every stored event; a backlog may take long to drain, so it waits as long as the
/// work moves, and gives up (returning false) after 60 s without progress.
async fn settle(cluster: &Cluster, sink: &Sink, replay: Option<&str>) -> bool {
    let started = Instant::now();
    let (mut last, mut moved) = (None, Instant::now());
    while moved.elapsed() < Duration::from_secs(60) {
        match settled(cluster, sink, replay).await {
            Ok(Progress { done: true, .. }) => {
                println!("settled in {:.1} s", started.elapsed().as_secs_f64());
                return true;
            }
            Ok(Progress { left, .. }) if last != Some(left) => (last, moved) = (Some(left), Instant::now()),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "not settled: no progress for 60 s ({:.0} s after the load): checking anyway",
        started.elapsed().as_secs_f64()
    );
    false
}

/// Whether the work is done, and a measure of what is left (which changes while it moves).
struct Progress {
    done: bool,
    left: (u64, u64, u64, u64),
}

async fn settled(cluster: &Cluster, sink: &Sink, replay: Option<&str>) -> anyhow::Result<Progress> {
    let stats = cluster.get("/api/v1/events/statistics").await?;
    let pending = stats["pending_events"].as_u64().unwrap_or(u64::MAX);
    let processing = stats["processing_events"].as_u64().unwrap_or(u64::MAX);
    let claims = claims_held(&cluster.get("/api/v1/cluster").await?);
    let replay = match replay {
        Some(id) => cluster.get(&format!("/api/v1/events/replay/{id}")).await?,
        None => Value::Null,
    };
    let replay_left = replay["total"].as_u64().unwrap_or(0).saturating_sub(replay["done"].as_u64().unwrap_or(0));
    let delivered = lock(&sink.state).ok.len() as u64;
    let undelivered = stats["total_events"].as_u64().unwrap_or(u64::MAX).saturating_sub(delivered);
    let done = pending == 0 && processing == 0 && claims == 0 && replay["status"] != "running" && undelivered == 0;
    Ok(Progress { done, left: (pending + processing, claims, replay_left, undelivered) })
}

/// The claims held across the instances once none is let go of for [`CLAIMS_LET_GO`]: 0 as soon as
/// one reading finds none. A claim is work in hand, and after settling some still moves (a retry to
/// the flaky sink comes due, is claimed and sent), so one reading may catch it; a stuck claim stays.
async fn lasting_claims(cluster: &Cluster) -> anyhow::Result<u64> {
    let deadline = Instant::now() + CLAIMS_LET_GO;
    loop {
        let claims = claims_held(&cluster.get("/api/v1/cluster").await?);
        if claims == 0 || Instant::now() >= deadline {
            return Ok(claims);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How long claims found after settling may take to be let go of: above a delivery's timeout.
const CLAIMS_LET_GO: Duration = Duration::from_secs(15);

fn claims_held(cluster: &Value) -> u64 {
    cluster["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| ["deliveries", "processing", "replays"].map(|k| i["claims"][k].as_u64().unwrap_or(0)))
        .sum()
}

struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

fn row(name: &'static str, ok: bool, detail: String) -> Check {
    Check { name, ok, detail }
}

/// Every stored event, oldest first, read page by page.
async fn all_events(cluster: &Cluster) -> anyhow::Result<Vec<Value>> {
    let mut events = Vec::new();
    loop {
        let page = cluster.get(&format!("/api/v1/events?order=asc&limit=1000&offset={}", events.len())).await?;
        let batch = page["events"].as_array().cloned().unwrap_or_default();
        let more = page["has_more"] == true && !batch.is_empty();
        events.extend(batch);
        if !more {
            return Ok(events);
        }
    }
}

async fn all_dead_letters(cluster: &Cluster) -> anyhow::Result<Vec<Value>> {
    let mut entries = Vec::new();
    loop {
        let page = cluster.get(&format!("/api/v1/events/dlq?limit=1000&offset={}", entries.len())).await?;
        let batch = page["entries"].as_array().cloned().unwrap_or_default();
        let total = page["total"].as_u64().unwrap_or(0) as usize;
        let empty = batch.is_empty();
        entries.extend(batch);
        if empty || entries.len() >= total {
            return Ok(entries);
        }
    }
}

async fn check(
    cluster: &Cluster,
    sink: &Sink,
    setup: &Setup,
    ledger: &Ledger,
    kill_times: &[Instant],
    chores: &Chores,
    settled: bool,
) -> anyhow::Result<Vec<Check>> {
    let mut checks = Vec::new();
    let events = all_events(cluster).await?;
    let by_id: HashMap<&str, &Value> = events.iter().filter_map(|e| Some((e["event_id"].as_str()?, e))).collect();

    // 1. Acknowledged events: stored once, with their seq.
    let mut missing = 0;
    let mut wrong_seq = 0;
    for (id, acked) in &ledger.acked {
        match by_id.get(id.as_str()) {
            None => missing += 1,
            Some(event) if event["seq"].as_i64() != Some(acked.seq) => wrong_seq += 1,
            Some(_) => {}
        }
    }
    let mut keys = HashSet::new();
    let doubled_keys =
        events.iter().filter(|e| e["idempotency_key"].is_string() && !keys.insert(&e["idempotency_key"])).count();
    let mut seqs = HashSet::new();
    let doubled_seqs = events.iter().filter(|e| !seqs.insert(e["seq"].as_i64())).count();
    let unacked = events.len().saturating_sub(ledger.acked.len());
    checks.push(row(
        "acknowledged events stored once, with their seq",
        missing == 0 && wrong_seq == 0 && doubled_keys == 0 && doubled_seqs == 0 && by_id.len() == events.len(),
        format!(
            "{} acknowledged, {} found ({unacked} more stored whose answer was lost), {missing} missing, {wrong_seq} with another seq, {doubled_keys} idempotency keys stored twice, {doubled_seqs} seqs twice",
            ledger.acked.len(),
            events.len()
        ),
    ));

    // 2. Streams: versions 1..n, each acknowledged one in place.
    let mut streams: BTreeMap<&str, Vec<(i64, &str)>> = BTreeMap::new();
    for event in &events {
        if let (Some(stream), Some(version)) = (event["stream_id"].as_str(), event["stream_version"].as_i64()) {
            streams.entry(stream).or_default().push((version, event["event_id"].as_str().unwrap_or_default()));
        }
    }
    let mut gaps = 0;
    for versions in streams.values_mut() {
        versions.sort_unstable();
        gaps += versions.iter().enumerate().filter(|(i, (v, _))| *v != *i as i64 + 1).count();
    }
    let misplaced = ledger
        .acked
        .iter()
        .filter_map(|(id, acked)| Some((id, acked.stream.as_ref()?)))
        .filter(|(id, (stream, version))| {
            streams.get(stream.as_str()).and_then(|v| v.get((*version - 1).max(0) as usize)).map(|(_, e)| *e)
                != Some(id.as_str())
        })
        .count();
    let versioned: usize = streams.values().map(Vec::len).sum();
    checks.push(row(
        "stream versions gapless",
        gaps == 0 && misplaced == 0,
        format!(
            "{} streams, {versioned} events, {gaps} out of place, {misplaced} acknowledged versions elsewhere",
            streams.len()
        ),
    ));

    // 3. The always-200 subscription: every stored event at least once. A duplicate is explained by a
    // kill between its two copies (the server died after the sink answered and before the outcome was
    // committed: outcomes are recorded in batches, off the sending path); any other is a bug.
    let kills = kill_times.len() as u64;
    let (undelivered, deliveries, duplicates, unexplained, widest) = {
        let state = lock(&sink.state);
        let undelivered = by_id.keys().filter(|id| !state.ok.contains_key(**id)).count();
        let deliveries: u64 = state.ok.values().map(|r| r.len() as u64).sum();
        let (mut unexplained, mut widest) = (0u64, Duration::ZERO);
        for receipts in state.ok.values() {
            for pair in receipts.windows(2) {
                // The sink may read a request a moment after its sender died.
                let from = pair[0].checked_sub(Duration::from_secs(1)).unwrap_or(pair[0]);
                match kill_times.iter().find(|k| **k >= from && **k <= pair[1]) {
                    Some(kill) => widest = widest.max(kill.saturating_duration_since(pair[0])),
                    None => unexplained += 1,
                }
            }
        }
        (undelivered, deliveries, deliveries - state.ok.len() as u64, unexplained, widest)
    };
    let ok_enabled =
        cluster.get(&format!("/api/v1/events/subscriptions/{}", setup.ok_subscription)).await?["enabled"] == true;
    checks.push(row(
        "every event delivered to the always-200 sink",
        undelivered == 0 && unexplained == 0 && ok_enabled,
        format!(
            "{deliveries} deliveries, {undelivered} events never delivered, {duplicates} duplicates over {kills} kills ({unexplained} with no kill between the copies; first copy at most {:.1} s before its kill){}",
            widest.as_secs_f64(),
            if ok_enabled { "" } else { "; the subscription was disabled" }
        ),
    ));

    // 4. Nothing stuck.
    let stats = cluster.get("/api/v1/events/statistics").await?;
    let claims = lasting_claims(cluster).await?;
    let pending = stats["pending_events"].as_u64().unwrap_or(u64::MAX);
    let processing = stats["processing_events"].as_u64().unwrap_or(u64::MAX);
    let stuck_rows = events.iter().filter(|e| e["status"] == "pending" || e["status"] == "processing").count();
    let replay = match &chores.replay_id {
        Some(id) => cluster.get(&format!("/api/v1/events/replay/{id}")).await?,
        None => Value::Null,
    };
    let replay_done = replay["status"] == "completed" && replay["done"] == replay["total"];
    checks.push(row(
        "nothing stuck in processing or claimed",
        settled && pending == 0 && processing == 0 && stuck_rows == 0 && claims == 0 && replay_done,
        format!(
            "settled: {settled}; {pending} pending, {processing} processing, {claims} claims held; replay {} ({}/{} done, {} failed)",
            replay["status"].as_str().unwrap_or("never started"),
            replay["done"],
            replay["total"],
            replay["failed"]
        ),
    ));

    // 5. The DLQ agrees with the attempts.
    let entries = all_dead_letters(cluster).await?;
    let mut bad = Vec::new();
    let mut processing_entries: HashMap<&str, u32> = HashMap::new();
    for entry in &entries {
        let id = entry["dlq_id"].as_str().unwrap_or_default();
        let read = cluster.get(&format!("/api/v1/events/dlq/{id}")).await?;
        let history = read["attempt_history"].as_array().cloned().unwrap_or_default();
        let attempts = entry["attempts"].as_u64().unwrap_or(0);
        if entry["kind"] == "delivery" {
            let successes = history.iter().filter(|a| a["success"] == true).count();
            let last_code = history.last().map(|a| a["status_code"].clone()).unwrap_or(Value::Null);
            if attempts < MAX_RETRIES + 1
                || (history.len() as u64) < attempts
                || successes > 0
                || last_code != entry["last_status_code"]
            {
                bad.push(format!(
                    "delivery {id}: attempts {attempts}, {} recorded, {successes} successful",
                    history.len()
                ));
            }
            if entry["subscription_id"] != setup.flaky_subscription.as_str() {
                bad.push(format!("delivery {id} for {} (only the flaky subscription fails)", entry["subscription_id"]));
            }
        } else {
            let event_id = entry["event_id"].as_str().unwrap_or_default();
            *processing_entries.entry(event_id).or_default() += 1;
            let failures = history
                .iter()
                .filter(|r| r["success"] == false && r["processor_id"] == setup.processor.as_str())
                .count() as u64;
            let status = by_id.get(event_id).map(|e| e["status"].clone()).unwrap_or(Value::Null);
            if attempts < MAX_RETRIES + 1 || failures < attempts || status != "failed" {
                bad.push(format!(
                    "processing {id}: attempts {attempts}, {failures} failed runs recorded, event {status}"
                ));
            }
        }
    }
    let failed_events: Vec<&str> =
        events.iter().filter(|e| e["status"] == "failed").filter_map(|e| e["event_id"].as_str()).collect();
    let unlisted = failed_events.iter().filter(|id| processing_entries.get(**id) != Some(&1)).count();
    if unlisted > 0 {
        bad.push(format!("{unlisted} failed events without exactly one processing DLQ entry"));
    }
    let deliveries_dead = entries.iter().filter(|e| e["kind"] == "delivery").count();
    checks.push(row(
        "DLQ entries consistent with attempts",
        bad.is_empty(),
        match bad.first() {
            None => format!(
                "{} entries ({deliveries_dead} delivery, {} processing); {} DLQ retries re-sent {} entries",
                entries.len(),
                entries.len() - deliveries_dead,
                chores.dlq_retries,
                chores.retried_entries
            ),
            Some(first) => format!("{} inconsistent, first: {first}", bad.len()),
        },
    ));

    // 6. The statistics' counters against the rows.
    let mut mismatches = Vec::new();
    let mut compare = |what: String, counted: u64, said: &Value| {
        if said.as_u64().unwrap_or(0) != counted {
            mismatches.push(format!("{what}: statistics {said}, rows {counted}"));
        }
    };
    compare("total_events".into(), events.len() as u64, &stats["total_events"]);
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    for event in &events {
        *by_status.entry(event["status"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
        *by_type.entry(event["event_type"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
    }
    for status in ["pending", "processing", "processed", "failed"] {
        let counted = by_status.get(status).copied().unwrap_or(0);
        compare(format!("{status}_events"), counted, &stats[format!("{status}_events").as_str()]);
        compare(format!("events_by_status.{status}"), counted, &stats["events_by_status"][status]);
    }
    for (event_type, counted) in &by_type {
        compare(format!("events_by_type.{event_type}"), *counted, &stats["events_by_type"][event_type.as_str()]);
    }
    compare("dlq_size".into(), entries.len() as u64, &stats["dlq_size"]);
    checks.push(row(
        "statistics equal counting the rows",
        mismatches.is_empty(),
        match mismatches.first() {
            None => format!("total, 4 statuses, {} types and dlq_size agree", by_type.len()),
            Some(first) => format!("{} differ, first: {first}", mismatches.len()),
        },
    ));

    let state = lock(&sink.state);
    println!(
        "kills {kills}; acknowledged {}; found {}; duplicates {duplicates}; stuck {}; flaky sink calls {} ({} answered 410, re-enabled {} times); processor calls {}",
        ledger.acked.len(),
        events.len(),
        pending + processing + claims,
        state.flaky_calls,
        state.gone_answers,
        chores.reenabled,
        state.processor_calls
    );
    Ok(checks)
}

fn print_table(checks: &[Check]) {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    println!("{:<width$} | result | detail", "check");
    println!("{}-|--------|-------", "-".repeat(width));
    for check in checks {
        println!("{:<width$} | {:<6} | {}", check.name, if check.ok { "ok" } else { "FAILED" }, check.detail);
    }
}
