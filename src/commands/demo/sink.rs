//! The demo's webhook sink: a local HTTP server on 127.0.0.1 that answers deliveries the way real
//! endpoints do, failures included. `POST /flaky/{name}` answers 200 after a short delay, or 500 for
//! about [`FLAKY_SHARE`] of requests; `POST /down/{name}` always answers 503.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::DemoStats;
use super::catalogue::{Rng, splitmix64};

/// Share of requests to a flaky path that fail with 500.
pub const FLAKY_SHARE: f64 = 0.15;

/// Shortest and longest time a flaky path takes to answer, so delivery durations look like a network.
const LATENCY_MS: (u64, u64) = (5, 60);

#[derive(Clone)]
struct Shared {
    stats: Arc<DemoStats>,
    seed: u64,
    requests: Arc<AtomicU64>,
}

impl Shared {
    /// A fresh random number per request, without a lock.
    fn rng(&self) -> Rng {
        Rng::new(splitmix64(self.seed ^ self.requests.fetch_add(1, Ordering::Relaxed)))
    }
}

/// Binds 127.0.0.1 on a free port and serves until `cancel`; returns the address and the server task.
pub async fn start(stats: Arc<DemoStats>, cancel: CancellationToken) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let shared = Shared { stats, seed: Rng::from_clock().next_u64(), requests: Arc::new(AtomicU64::new(0)) };
    let app = Router::new().route("/flaky/{name}", post(flaky)).route("/down/{name}", post(down)).with_state(shared);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move { cancel.cancelled().await }).await;
        if let Err(error) = served {
            tracing::warn!(%error, "the demo webhook sink stopped");
        }
    });
    Ok((addr, task))
}

/// Answers 200, or 500 for [`FLAKY_SHARE`] of requests, after a short delay. The body is read (axum
/// bounds it) so the connection can be reused.
async fn flaky(State(shared): State<Shared>, _body: Bytes) -> (StatusCode, &'static str) {
    let mut rng = shared.rng();
    tokio::time::sleep(Duration::from_millis(rng.between(LATENCY_MS.0, LATENCY_MS.1))).await;
    shared.stats.sink_received.fetch_add(1, Ordering::Relaxed);
    if rng.chance(FLAKY_SHARE) {
        shared.stats.sink_failed.fetch_add(1, Ordering::Relaxed);
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":"simulated failure: the demo sink fails about 15% of requests"}"#,
        )
    } else {
        (StatusCode::OK, r#"{"received":true}"#)
    }
}

/// Always 503, so deliveries here exhaust their retries and reach the dead-letter queue.
async fn down(State(shared): State<Shared>, _body: Bytes) -> (StatusCode, &'static str) {
    shared.stats.sink_received.fetch_add(1, Ordering::Relaxed);
    shared.stats.sink_failed.fetch_add(1, Ordering::Relaxed);
    (StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"the demo pager is down: every request here fails"}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn flaky_fails_a_share_down_always_fails_and_other_paths_are_unknown() {
        let stats = Arc::new(DemoStats::default());
        let cancel = CancellationToken::new();
        let (addr, task) = start(stats.clone(), cancel.clone()).await.unwrap();
        let client = reqwest::Client::new();
        let post = |path: &str| client.post(format!("http://{addr}{path}")).body("{}").send();

        let mut failed = 0;
        for answer in futures::future::join_all((0..200).map(|_| post("/flaky/orders"))).await {
            let status = answer.unwrap().status();
            assert!(status == 200 || status == 500, "{status}");
            failed += usize::from(status == 500);
        }
        // 15 % of 200 is 30; the bounds are more than six standard deviations away.
        assert!((10..=60).contains(&failed), "{failed} of 200 failed");
        let down = post("/down/pager").await.unwrap();
        assert_eq!(down.status(), 503);
        assert!(down.text().await.unwrap().contains("down"));
        assert_eq!(post("/elsewhere").await.unwrap().status(), 404);
        assert_eq!(stats.sink_received.load(Ordering::Relaxed), 201);
        assert_eq!(stats.sink_failed.load(Ordering::Relaxed), failed as u64 + 1);

        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("sink stops on cancel").unwrap();
    }
}
