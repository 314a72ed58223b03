//! The `eventdeck publish` emitter, run as the built binary against a server behind a proxy that fails
//! as each test says: batches by size and by timer, retries with backoff, lines refused not retried, a
//! spool that keeps what was not acknowledged and is sent first when the publisher runs again, and a
//! publisher killed after the server stored its batch but before it heard so (the resend stores nothing).

use std::collections::VecDeque;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

use crate::support::TestServer;

const BIN: &str = env!("CARGO_BIN_EXE_eventdeck");

/// How the proxy answers one batch request.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// 503 without passing the request on.
    Unavailable,
    /// Passes the request on (the server stores it), then answers 503: the answer is lost.
    StoredThenUnavailable,
    /// Passes the request on, then never answers.
    StoredThenHang,
}

#[derive(Default)]
struct Shared {
    /// Faults for the next requests, in order; then requests pass.
    faults: VecDeque<Fault>,
    /// Every request fails with 503 while set.
    down: bool,
    /// (items in the batch, when it arrived, the status answered).
    requests: Vec<(usize, Instant, u16)>,
}

#[derive(Clone)]
struct Proxy {
    base: String,
    shared: Arc<Mutex<Shared>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new().route("/api/v1/events/batch", post(forward)).with_state((
            shared.clone(),
            upstream,
            reqwest::Client::new(),
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, shared }
    }

    fn fail_next(&self, faults: &[Fault]) {
        self.shared.lock().unwrap().faults.extend(faults);
    }

    fn set_down(&self, down: bool) {
        self.shared.lock().unwrap().down = down;
    }

    fn requests(&self) -> Vec<(usize, Instant, u16)> {
        self.shared.lock().unwrap().requests.clone()
    }

    async fn wait_for_requests(&self, n: usize) -> Vec<(usize, Instant, u16)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            assert!(Instant::now() < deadline, "{} of {n} requests arrived: {requests:?}", requests.len());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn forward(
    State((shared, upstream, client)): State<(Arc<Mutex<Shared>>, String, reqwest::Client)>,
    body: Bytes,
) -> Response {
    let items = serde_json::from_slice::<Vec<Value>>(&body).map_or(0, |items| items.len());
    let fault = {
        let mut shared = shared.lock().unwrap();
        if shared.down { Some(Fault::Unavailable) } else { shared.faults.pop_front() }
    };
    let record = |status: u16| shared.lock().unwrap().requests.push((items, Instant::now(), status));
    let unavailable =
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"error": {"code": "unavailable", "message": "injected"}})));
    if let Some(Fault::Unavailable) = fault {
        record(503);
        return unavailable.into_response();
    }
    let answer = client
        .post(format!("{upstream}/api/v1/events/batch"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the server answers the proxy");
    let status = answer.status().as_u16();
    let text = answer.bytes().await.expect("the server's answer");
    match fault {
        Some(Fault::StoredThenUnavailable) => {
            record(503);
            unavailable.into_response()
        }
        Some(Fault::StoredThenHang) => {
            record(0);
            std::future::pending::<()>().await;
            unreachable!()
        }
        _ => {
            record(status);
            (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], text).into_response()
        }
    }
}

/// `eventdeck publish` with `args`, stdin piped, stdout and stderr captured.
fn publish(dir: &Path, url: &str, args: &[&str]) -> Child {
    let mut command = Command::new(BIN);
    command.current_dir(dir).env_remove("RUST_LOG").kill_on_drop(true);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("EVENTDECK_")) {
        command.env_remove(key);
    }
    command
        .args(["publish", "--url", url])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn eventdeck publish")
}

fn lines(event_type: &str, range: std::ops::Range<u32>) -> String {
    range.map(|i| format!("{}\n", json!({"event_type": event_type, "data": {"i": i}}))).collect()
}

async fn finish(mut child: Child, input: &str) -> Output {
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("publish finished").unwrap()
}

/// The `{"published", ...}` line the publisher ends with.
fn summary(output: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().find(|l| l.starts_with("{\"")).unwrap_or_else(|| panic!("no summary in {stderr}"));
    serde_json::from_str(line).unwrap()
}

/// The `i` of every stored event of `event_type`, sorted: each once when nothing was duplicated.
async fn stored(server: &TestServer, event_type: &str) -> Vec<i64> {
    let (_, page) = server.get(&format!("/api/v1/events?event_type={event_type}&limit=1000")).await;
    let mut seen: Vec<i64> =
        page["events"].as_array().unwrap().iter().map(|e| e["data"]["i"].as_i64().unwrap()).collect();
    seen.sort_unstable();
    seen
}

#[tokio::test]
async fn batches_fill_by_size_or_go_out_on_the_timer() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.url("")).await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = publish(dir.path(), &proxy.base, &["--batch", "3", "--flush-ms", "300"]);
    let mut stdin = child.stdin.take().unwrap();
    // Taken before writing: no line can be read, and so no timer start, before it.
    let written = Instant::now();
    stdin.write_all(lines("pub.timer", 0..7).as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    // Two full batches at once; the seventh line waits for the timer, with stdin still open.
    let requests = proxy.wait_for_requests(3).await;
    let sizes: Vec<usize> = requests.iter().map(|r| r.0).collect();
    assert_eq!(sizes, [3, 3, 1]);
    let waited = requests[2].1 - written;
    assert!(waited >= Duration::from_millis(300), "the partial batch went out after {waited:?}, before --flush-ms");

    stdin.write_all(lines("pub.timer", 7..9).as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let sizes: Vec<usize> = proxy.requests().iter().map(|r| r.0).collect();
    assert_eq!(sizes, [3, 3, 1, 2], "the end of stdin sends what is left at once");
    assert_eq!(summary(&output), json!({"published": 9, "duplicates": 0, "failed": 0, "not_sent": 0}));
    assert!(!stderr.contains('\r'), "no progress line when stderr is not a terminal: {stderr:?}");
    assert_eq!(stored(&server, "pub.timer").await, (0..9).collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test]
async fn failed_batches_are_retried_and_lines_the_server_refuses_are_reported_not_retried() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.url("")).await;
    // The first batch fails twice, then is stored but its answer lost, so it is sent a fourth time.
    proxy.fail_next(&[Fault::Unavailable, Fault::Unavailable, Fault::StoredThenUnavailable]);
    let dir = tempfile::tempdir().unwrap();
    let child = publish(dir.path(), &proxy.base, &["--batch", "5", "--retries", "5", "--backoff-ms", "20"]);
    let mut input = lines("pub.retry", 0..10);
    // Line 11: a change event without its doc_id, refused with 422; line 12: not JSON.
    input.push_str("{\"event_type\": \"users.update\", \"data\": {\"doc\": {}}}\n{oops\n");
    let started = Instant::now();
    let output = finish(child, &input).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused lines make the exit code non-zero: {stderr}");
    assert_eq!(summary(&output), json!({"published": 10, "duplicates": 0, "failed": 2, "not_sent": 0}), "{stderr}");
    assert!(stderr.contains("line 11: validation_failed (data.doc_id)"), "{stderr}");
    assert!(stderr.contains("line 12: not JSON"), "{stderr}");
    for retry in ["retry 1 of 5 in 20 ms", "retry 2 of 5 in 40 ms", "retry 3 of 5 in 80 ms"] {
        assert!(stderr.contains(&format!("line 1 to 5: 503 Service Unavailable: injected; {retry}")), "{stderr}");
    }
    assert!(started.elapsed() >= Duration::from_millis(140), "backoff waited 20 + 40 + 80 ms");

    let statuses: Vec<(usize, u16)> = proxy.requests().iter().map(|r| (r.0, r.2)).collect();
    // The first batch 4 times, the second once, and the batch with the refused line once: a 4xx item
    // is not retried.
    assert_eq!(statuses, [(5, 503), (5, 503), (5, 503), (5, 200), (5, 200), (1, 200)]);
    assert_eq!(stored(&server, "pub.retry").await, (0..10).collect::<Vec<_>>(), "each line stored once");
    server.stop().await;
}

#[tokio::test]
async fn a_spool_keeps_what_was_not_acknowledged_and_the_next_run_sends_it_first() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.url("")).await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("out.spool");
    let spool_arg = spool.to_str().unwrap();
    let args = ["--batch", "4", "--retries", "2", "--backoff-ms", "10", "--spool", spool_arg];

    proxy.set_down(true);
    let output = finish(publish(dir.path(), &proxy.base, &args), &lines("pub.spool", 0..4)).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert_eq!(summary(&output)["not_sent"], 4, "{stderr}");
    assert!(stderr.contains("line 4: not sent yet (kept in the spool): 503"), "{stderr}");
    assert!(stderr.contains("(after 2 retries)") && stderr.contains("kept in"), "{stderr}");
    assert_eq!(proxy.requests().len(), 3, "one try and two retries");
    assert!(std::fs::metadata(&spool).unwrap().len() > 0, "the spool holds the lines");
    assert!(stored(&server, "pub.spool").await.is_empty());

    // The server is back: the next run sends the spooled lines first, then its own.
    proxy.set_down(false);
    let output = finish(publish(dir.path(), &proxy.base, &args), &lines("pub.spool", 4..7)).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("4 lines an earlier publisher did not get acknowledged are sent first"), "{stderr}");
    assert_eq!(summary(&output), json!({"published": 7, "duplicates": 0, "failed": 0, "not_sent": 0}));
    assert_eq!(stored(&server, "pub.spool").await, (0..7).collect::<Vec<_>>());
    assert!(!spool.exists(), "a spool with nothing left in it is removed");
    server.stop().await;
}

#[tokio::test]
async fn a_publisher_killed_before_hearing_the_answer_resends_and_nothing_is_stored_twice() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.url("")).await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("out.spool");
    let args = ["--batch", "5", "--spool", spool.to_str().unwrap()];

    proxy.fail_next(&[Fault::StoredThenHang]);
    let mut child = publish(dir.path(), &proxy.base, &args);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(lines("pub.kill", 0..5).as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    proxy.wait_for_requests(1).await;
    assert_eq!(stored(&server, "pub.kill").await, (0..5).collect::<Vec<_>>(), "the server stored the batch");
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let output = finish(publish(dir.path(), &proxy.base, &args), &lines("pub.kill", 5..6)).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // The resent lines carry the keys the first run gave them: the server answers them as seen before,
    // which the publisher counts as published (they are), not as duplicates of the user's keys.
    assert_eq!(summary(&output), json!({"published": 6, "duplicates": 0, "failed": 0, "not_sent": 0}), "{stderr}");
    assert_eq!(stored(&server, "pub.kill").await, (0..6).collect::<Vec<_>>(), "nothing stored twice");
    server.stop().await;
}

#[tokio::test]
async fn a_request_the_server_refuses_is_not_retried_and_its_lines_are_named() {
    // The proxy passes no API key on, so the server refuses every request with 401.
    let server = TestServer::with_config(|config| config.auth.api_keys = vec!["secret-key".into()]).await;
    let proxy = Proxy::start(server.url("")).await;
    let dir = tempfile::tempdir().unwrap();
    let child = publish(dir.path(), &proxy.base, &["--batch", "2", "--retries", "5", "--backoff-ms", "5000"]);
    let output = finish(child, &lines("pub.refused", 0..3)).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert_eq!(proxy.requests().iter().map(|r| r.2).collect::<Vec<_>>(), [401], "a 401 is not retried");
    assert!(stderr.contains("line 1: not sent: 401") && stderr.contains("line 2: not sent: 401"), "{stderr}");
    assert!(stderr.contains("stdin was not read past line 2"), "{stderr}");
    assert_eq!(summary(&output)["not_sent"], 2, "{stderr}");
    server.stop().await;
}
