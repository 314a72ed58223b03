//! `bench --scenario isolation`: how a healthy webhook endpoint fares beside bad ones. A sink in this
//! process serves a healthy path (200 at once) and bad ones: one that never answers, one that answers
//! after 2 s, one that answers 200 and then trickles its body forever, and a port that refuses
//! connections. `--events` events are posted to a running server with only the healthy subscription,
//! then again beside each bad kind in turn, beside all of them, and (the control for that last run)
//! beside as many healthy ones; each run reports the rate at which the healthy sink received its
//! deliveries, and its ratio to the rate alone.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::post;
use serde_json::{Value, json};

use super::post_events;
use crate::cli::BenchArgs;
use crate::commands::client::{Api, send};

/// The bad endpoints, by name.
const BAD: [&str; 4] = ["hang", "late", "trickle", "refused"];

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.server)?;
    send(api.get("/health")).await.with_context(|| format!("no eventdeck server at {}", api.base()))?;
    let healthy = Arc::new(AtomicU64::new(0));
    let base = start_sink(healthy.clone()).await?;
    let refused = {
        // Bound, then closed at once: connections to it are refused.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a port")?;
        format!("http://{}/refused", listener.local_addr()?)
    };
    let url = |kind: &str| if kind == "refused" { refused.clone() } else { format!("{base}/{kind}") };

    let healthy_id = subscribe(&api, "isolation-healthy", &format!("{base}/healthy")).await?;
    // A first, unmeasured run warms the server (caches, connections) so "alone" is not its cold start.
    post_events(&api, args.events, args.batch, args.concurrency, args.rate, false).await?;
    wait_for(&healthy, args.events).await?;
    let mut runs: Vec<(String, f64)> = Vec::new();
    let mut plans: Vec<Vec<&str>> = vec![Vec::new()];
    plans.extend(BAD.iter().map(|kind| vec![*kind]));
    plans.push(BAD.to_vec());
    // The control for the last row: as many neighbours, all answering at once, so the cost of fanning
    // each event out to five subscriptions is told apart from what bad endpoints do.
    plans.push(vec!["ok"; BAD.len()]);
    for plan in plans {
        let mut bad = Vec::new();
        for (i, kind) in plan.iter().enumerate() {
            bad.push(subscribe(&api, &format!("isolation-{kind}-{i}"), &url(kind)).await?);
        }
        let before = healthy.load(Ordering::Relaxed);
        let started = Instant::now();
        let ingest = post_events(&api, args.events, args.batch, args.concurrency, args.rate, false).await?;
        wait_for(&healthy, before + args.events).await?;
        let rate = args.events as f64 / started.elapsed().as_secs_f64();
        let name = match plan.first() {
            None => "alone".to_owned(),
            Some(&"ok") => format!("beside {} healthy (control)", plan.len()),
            Some(_) => format!("beside {}", plan.join(", ")),
        };
        println!(
            "healthy sink {name}: {rate:.0} deliveries/s (ingest took {:.2} s of {:.2} s)",
            ingest.elapsed.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        runs.push((name, rate));
        // Deleting a subscription also stops its requests in flight, so the next run starts clean.
        for id in bad {
            delete(&api, &id).await;
        }
    }
    delete(&api, &healthy_id).await;

    let alone = runs[0].1;
    println!("\n{:<44} {:>14} {:>9}", "healthy subscription", "deliveries/s", "of alone");
    for (name, rate) in &runs {
        println!("{name:<44} {rate:>14.0} {:>8.0} %", rate / alone * 100.0);
    }
    Ok(())
}

/// Waits until the healthy sink has received `target` requests in all.
async fn wait_for(received: &AtomicU64, target: u64) -> anyhow::Result<()> {
    let mut last = (received.load(Ordering::Relaxed), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = received.load(Ordering::Relaxed);
        if now >= target {
            return Ok(());
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) {
            bail!("the healthy sink stalled at {now} of {target} deliveries");
        }
    }
}

async fn subscribe(api: &Api, name: &str, url: &str) -> anyhow::Result<String> {
    let body = json!({"subscriber_name": name, "callback_url": url});
    let created: Value = send(api.post("/api/v1/events/subscriptions").json(&body)).await?.json().await?;
    created["subscription_id"].as_str().map(str::to_owned).context("the server answered no subscription_id")
}

async fn delete(api: &Api, id: &str) {
    // Cleaning up is best effort; the figures are already in.
    let _ = api.http_delete(&format!("/api/v1/events/subscriptions/{id}")).await;
}

/// Serves the healthy and bad paths on 127.0.0.1; returns the base URL.
async fn start_sink(healthy: Arc<AtomicU64>) -> anyhow::Result<String> {
    let sink = Router::new()
        .route(
            "/healthy",
            post(move |_: Bytes| {
                healthy.fetch_add(1, Ordering::Relaxed);
                async {}
            }),
        )
        .route("/ok", post(|_: Bytes| async {}))
        .route("/hang", post(|_: Bytes| std::future::pending::<()>()))
        .route("/late", post(|_: Bytes| tokio::time::sleep(Duration::from_secs(2))))
        .route(
            "/trickle",
            post(|_: Bytes| async {
                Body::from_stream(futures::stream::unfold((), |()| async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Some((Ok::<_, Infallible>(Bytes::from_static(b"z")), ()))
                }))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot bind the bench sink")?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, sink).await });
    Ok(base)
}
