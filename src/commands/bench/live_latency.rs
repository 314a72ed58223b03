//! `bench --scenario live-latency`: how long an event committed on one instance takes to reach another
//! instance's live stream. Two real `eventdeck serve` processes share a fresh scratch schema of the
//! PostgreSQL database `--storage-url` names (dropped at the end); single events are POSTed to A at
//! `--rate` per second (default 1,000) for `--duration` seconds while B's live stream is read, and the
//! time from A's answer (the commit) to the frame on B is reported as p50/p95/p99, with how many
//! arrived. It runs once with the store poll alone and, with `--nats-url`, once more with the live
//! feed over NATS (lifecycle publications off, so only the live feed uses NATS).

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;

use crate::cli::BenchArgs;

/// Events per second when `--rate` is 0.
const DEFAULT_RATE: u64 = 1000;
/// POSTs in flight at most; beyond, the schedule waits (and the rate reached is reported).
const IN_FLIGHT: usize = 256;
/// How long frames still in transit are waited for after the last POST.
const DRAIN: Duration = Duration::from_secs(3);

/// When each seq was acknowledged on A and shown on B.
#[derive(Default)]
struct Timeline {
    acked: HashMap<i64, Instant>,
    shown: HashMap<i64, Instant>,
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let Some(url) =
        args.storage_url.as_deref().filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
    else {
        bail!(
            "--storage-url: live-latency needs a postgres:// database (instances share it; a scratch schema is made)"
        );
    };
    let rate = if args.rate == 0 { DEFAULT_RATE } else { args.rate };
    let mut rows = vec![measure(args, url, rate, None).await?];
    if let Some(nats) = &args.nats_url {
        rows.push(measure(args, url, rate, Some(nats)).await?);
    }
    println!(
        "\n{:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "commit on A → frame on B", "sent", "arrived", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for row in rows {
        println!(
            "{:<24} {:>9} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            row.name, row.sent, row.arrived, row.p50, row.p95, row.p99, row.max
        );
    }
    Ok(())
}

struct Row {
    name: &'static str,
    sent: usize,
    arrived: usize,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

/// One run on a fresh schema: two servers, load on A, B's live stream read.
async fn measure(args: &BenchArgs, url: &str, rate: u64, nats: Option<&str>) -> anyhow::Result<Row> {
    let name = if nats.is_some() { "with NATS" } else { "store poll only" };
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    // Dropped (with its tables) when this function returns, after the servers are stopped.
    let schema = eventdeck::storage::ScratchSchema::create_in(url)
        .await
        .with_context(|| format!("cannot make a scratch schema in {url}"))?;
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let prefix = format!("edbench{}", &tag[tag.len() - 8..]);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().context("an HTTP client")?;
    let mut servers = Vec::new();
    for index in 0..2 {
        servers.push(spawn(dir.path(), index, &schema.url(), nats, &prefix, &http).await?);
    }
    let result = drive(args, rate, &http, &servers[0].1, &servers[1].1).await;
    for (child, _) in &mut servers {
        // The figures are in; the servers are only stopped.
        let _killed = child.start_kill();
        let _gone = child.wait().await;
    }
    drop(schema);
    let timeline = result?;
    let mut latencies: Vec<f64> = timeline
        .acked
        .iter()
        .filter_map(|(seq, acked)| {
            // A frame may arrive before A's answer is read: that counts as no delay.
            timeline.shown.get(seq).map(|shown| shown.saturating_duration_since(*acked).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let n = latencies.len();
        if n == 0 { 0.0 } else { latencies[((n as f64 * p).ceil() as usize).clamp(1, n) - 1] }
    };
    let row = Row {
        name,
        sent: timeline.acked.len(),
        arrived: latencies.len(),
        p50: pct(0.50),
        p95: pct(0.95),
        p99: pct(0.99),
        max: pct(1.0),
    };
    println!(
        "live-latency {name}: {} events at {rate}/s over {} s, {} arrived on B; ms p50 {:.1} p95 {:.1} p99 {:.1} max {:.1}",
        row.sent, args.duration, row.arrived, row.p50, row.p95, row.p99, row.max
    );
    Ok(row)
}

/// POSTs single events to `a` at `rate` for `--duration` seconds while reading `b`'s live stream.
async fn drive(args: &BenchArgs, rate: u64, http: &reqwest::Client, a: &str, b: &str) -> anyhow::Result<Timeline> {
    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let live = reqwest::Client::new()
        .get(format!("{b}/api/v1/events/live"))
        .send()
        .await
        .with_context(|| format!("cannot open the live stream of {b}"))?;
    if !live.status().is_success() {
        bail!("the live stream of {b} answered {}", live.status());
    }
    let reader = {
        let timeline = timeline.clone();
        tokio::spawn(async move {
            let mut body = live.bytes_stream();
            let mut buffer = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let frame: String = buffer.drain(..end + 2).collect();
                    if let Some(seq) = event_seq(&frame) {
                        let mut timeline = timeline.lock().unwrap_or_else(|p| p.into_inner());
                        timeline.shown.entry(seq).or_insert_with(Instant::now);
                    }
                }
            }
        })
    };
    let total = rate * args.duration;
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let started = tokio::time::Instant::now();
    let mut posts = tokio::task::JoinSet::new();
    for n in 0..total {
        tokio::time::sleep_until(started + Duration::from_secs_f64(n as f64 / rate as f64)).await;
        let permit = permits.clone().acquire_owned().await.context("the POST limiter closed")?;
        let (http, timeline, url) = (http.clone(), timeline.clone(), format!("{a}/api/v1/events/create"));
        posts.spawn(async move {
            let _permit = permit;
            let body = json!({"event_type": "bench.live", "data": {"n": n}});
            let response = http.post(url).json(&body).send().await?;
            let acked = Instant::now();
            if !response.status().is_success() {
                bail!("A answered {}: {}", response.status(), response.text().await.unwrap_or_default());
            }
            let event: Value = response.json().await?;
            let seq = event["seq"].as_i64().context("A's answer has no seq")?;
            timeline.lock().unwrap_or_else(|p| p.into_inner()).acked.insert(seq, acked);
            anyhow::Ok(())
        });
        while let Some(done) = posts.try_join_next() {
            done.context("a POST task panicked")??;
        }
    }
    while let Some(done) = posts.join_next().await {
        done.context("a POST task panicked")??;
    }
    let posted_in = started.elapsed();
    // Wait for the frames still in transit, as long as some are missing.
    let drained = tokio::time::Instant::now();
    while drained.elapsed() < DRAIN {
        let missing = {
            let timeline = timeline.lock().unwrap_or_else(|p| p.into_inner());
            timeline.acked.keys().any(|seq| !timeline.shown.contains_key(seq))
        };
        if !missing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reader.abort();
    println!(
        "posted {total} events in {:.2} s ({:.0}/s)",
        posted_in.as_secs_f64(),
        total as f64 / posted_in.as_secs_f64()
    );
    let timeline = std::mem::take(&mut *timeline.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(timeline)
}

/// The seq of an `event: event` frame.
fn event_seq(frame: &str) -> Option<i64> {
    let mut is_event = false;
    let mut id = None;
    for line in frame.lines() {
        if line == "event: event" || line == "event:event" {
            is_event = true;
        } else if let Some(value) = line.strip_prefix("id:") {
            id = value.trim().parse().ok();
        }
    }
    if is_event { id } else { None }
}

/// Starts server `index` on a free port and waits until it answers `/health`; returns it and its base URL.
async fn spawn(
    dir: &Path,
    index: usize,
    url: &str,
    nats: Option<&str>,
    prefix: &str,
    http: &reqwest::Client,
) -> anyhow::Result<(Child, String)> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    let addr = probe.local_addr()?.to_string();
    drop(probe);
    let log = |kind: &str| {
        std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("server-{index}.{kind}")))
    };
    let exe = std::env::current_exe().context("cannot find this executable to start servers")?;
    let mut command = Command::new(exe);
    command.current_dir(dir).kill_on_drop(true);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("EVENTDECK_") || k == "RUST_LOG") {
        command.env_remove(key);
    }
    command
        .args(["serve", "--addr", &addr, "--storage-url", url])
        .env("EVENTDECK_LOG__LEVEL", "warn")
        .env("EVENTDECK_NATS__PUBLISH", "false")
        .env("EVENTDECK_NATS__SUBJECT_PREFIX", prefix);
    if let Some(nats) = nats {
        command.env("EVENTDECK_NATS__URL", nats);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log("log")?)
        .stderr(log("err")?)
        .spawn()
        .context("cannot start eventdeck serve")?;
    let base = format!("http://{addr}");
    let started = Instant::now();
    loop {
        if let Ok(answer) = http.get(format!("{base}/health")).send().await
            && answer.status().is_success()
        {
            let health: Value = answer.json().await.unwrap_or_default();
            if nats.is_none() || health["nats"] == "connected" {
                return Ok((child, base));
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "server {index} exited at start ({status}); see {}",
                dir.join(format!("server-{index}.err")).display()
            );
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("server {index} was not ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
