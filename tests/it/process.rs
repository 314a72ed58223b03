//! Tests that run the built `eventdeck` binary: crash durability, graceful drain, start-up errors, and
//! the `publish` and `tail` commands.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_eventdeck");

/// A running `eventdeck serve` on a temp database.
struct Served {
    child: Child,
    base: String,
    _logs: Lines<BufReader<ChildStdout>>,
}

fn command(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    // Run where no eventdeck.toml can be picked up, with no configuration from the environment.
    command.current_dir(dir).env_remove("RUST_LOG").kill_on_drop(true);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("EVENTDECK_")) {
        command.env_remove(key);
    }
    command
}

async fn serve(dir: &Path, addr: &str) -> Served {
    serve_with(dir, addr, &[]).await
}

/// `serve` with extra environment variables (configuration, RUST_LOG, OTEL_*).
async fn serve_with(dir: &Path, addr: &str, env: &[(&str, &str)]) -> Served {
    serve_on(dir, addr, &format!("sqlite://{}", dir.join("events.db").display()), env).await
}

/// `serve` on the store `db` names.
async fn serve_on(dir: &Path, addr: &str, db: &str, env: &[(&str, &str)]) -> Served {
    let mut child = command(dir)
        .args(["serve", "--addr", addr, "--storage-url", db])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn eventdeck serve");
    let mut logs = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let started = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = logs.next_line().await.expect("read log") {
            let entry: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            if entry["fields"]["message"] == "eventdeck serving" {
                return entry["fields"]["addr"].as_str().expect("addr").to_owned();
            }
        }
        panic!("eventdeck serve exited before serving");
    })
    .await
    .expect("eventdeck serve started within 20 s");
    Served { child, base: format!("http://{started}"), _logs: logs }
}

/// Posts events from several tasks until stopped, recording the id of every acknowledged one.
fn start_writers(base: &str, acked: Arc<Mutex<Vec<String>>>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..8)
        .map(|writer| {
            let (client, base, acked) = (reqwest::Client::new(), base.to_owned(), acked.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let answer = if writer % 2 == 0 {
                        let body = json!({"event_type": "crash.test", "data": {"writer": writer, "i": i}});
                        client.post(format!("{base}/api/v1/events/create")).json(&body).send().await
                    } else {
                        let body: Vec<_> =
                            (0..20).map(|j| json!({"event_type": "crash.batch", "data": {"j": j}})).collect();
                        client.post(format!("{base}/api/v1/events/batch")).json(&body).send().await
                    };
                    let Ok(response) = answer else { return };
                    if !response.status().is_success() {
                        return;
                    }
                    let Ok(body) = response.json::<Value>().await else { return };
                    let mut acked = acked.lock().unwrap();
                    match body["results"].as_array() {
                        Some(results) => {
                            acked.extend(results.iter().map(|r| r["event"]["event_id"].as_str().unwrap().to_owned()))
                        }
                        None => acked.push(body["event_id"].as_str().unwrap().to_owned()),
                    }
                }
            })
        })
        .collect()
}

async fn assert_all_stored(base: &str, acked: &[String]) {
    let client = reqwest::Client::new();
    for id in acked {
        let response = client.get(format!("{base}/api/v1/events/{id}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "acknowledged event {id} is missing after restart");
    }
    let stats: Value =
        client.get(format!("{base}/api/v1/events/statistics")).send().await.unwrap().json().await.unwrap();
    assert!(stats["total_events"].as_u64().unwrap() >= acked.len() as u64, "{stats}");
}

/// Lets the writers give up, restarts on the same database, and checks every acknowledged event.
async fn restart_and_check(dir: &Path, writers: Vec<tokio::task::JoinHandle<()>>, acked: &Mutex<Vec<String>>) {
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let restarted = serve(dir, "127.0.0.1:0").await;
    assert_all_stored(&restarted.base, &acked).await;
}

async fn wait_for_acks(acked: &Mutex<Vec<String>>, at_least: usize) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while acked.lock().unwrap().len() < at_least {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("events were acknowledged");
}

#[tokio::test]
async fn every_acknowledged_event_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(dir.path(), "127.0.0.1:0").await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers = start_writers(&served.base, acked.clone());
    wait_for_acks(&acked, 2_000).await;

    served.child.start_kill().expect("SIGKILL");
    served.child.wait().await.unwrap();
    restart_and_check(dir.path(), writers, &acked).await;
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero_without_losing_acknowledged_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(dir.path(), "127.0.0.1:0").await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers = start_writers(&served.base, acked.clone());
    wait_for_acks(&acked, 500).await;

    let pid = served.child.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), served.child.wait()).await.expect("exited").unwrap();
    assert!(status.success(), "serve exited with {status}");
    restart_and_check(dir.path(), writers, &acked).await;
}

#[tokio::test]
async fn start_up_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let run = async |args: &[&str], env: &[(&str, &str)]| {
        let output = command(dir.path())
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .unwrap();
        assert!(!output.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let message = run(&["serve"], &[("EVENTDECK_SERVER__ADRESS", "x")]).await.to_lowercase();
    assert!(message.contains("adress"), "{message}");
    let message = run(&["serve"], &[("EVENTDECK_INGEST__MAX_BATCH", "lots")]).await.to_lowercase();
    assert!(message.contains("max_batch") && message.contains("lots"), "{message}");
    let message = run(&["serve", "--config", "missing.toml"], &[]).await;
    assert!(message.contains("missing.toml"), "{message}");

    // A database path that cannot be opened: its folder is a file.
    std::fs::write(dir.path().join("blocker"), "not a folder").unwrap();
    let message = run(&["serve", "--addr", "127.0.0.1:0", "--storage-url", "sqlite://blocker/events.db"], &[]).await;
    assert!(message.contains("blocker"), "{message}");
}

#[tokio::test]
async fn a_second_server_on_the_same_database_refuses_to_start_and_names_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = serve(dir.path(), "127.0.0.1:0").await;
    let pid = first.child.id().expect("pid");
    let db = format!("sqlite://{}", dir.path().join("events.db").display());
    let second = tokio::time::timeout(
        Duration::from_secs(20),
        command(dir.path())
            .args(["serve", "--addr", "127.0.0.1:0", "--storage-url", &db])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output(),
    )
    .await
    .expect("the second server stops at once")
    .unwrap();
    assert!(!second.status.success(), "the second server must not start");
    let message = String::from_utf8_lossy(&second.stderr);
    assert!(message.contains("events.db") && message.contains(&format!("process {pid}")), "{message}");

    // The first one still serves writes.
    let created = reqwest::Client::new()
        .post(format!("{}/api/v1/events/create", first.base))
        .json(&json!({"event_type": "still.here"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    // Once it is gone (even killed), the database is free again.
    first.child.start_kill().expect("SIGKILL");
    first.child.wait().await.unwrap();
    serve(dir.path(), "127.0.0.1:0").await;
}

#[tokio::test]
async fn publish_and_tail_work_against_a_server_and_tail_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    // A fixed port, so the restarted server is where tail reconnects to.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let mut served = serve(dir.path(), &addr).await;
    let base = served.base.clone();

    let mut tail = command(dir.path())
        .args(["tail", "--url", &base, "--type", "user.>"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut tailed = BufReader::new(tail.stdout.take().unwrap()).lines();
    let mut next_tailed = async || -> Value {
        let line =
            tokio::time::timeout(Duration::from_secs(20), tailed.next_line()).await.expect("tail printed").unwrap();
        serde_json::from_str(&line.expect("a line")).unwrap()
    };
    // Give tail a moment to connect before publishing live events.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let output = command(dir.path())
        .args(["publish", "--url", &base, "--type", "user.created", "--user", "u1", "--data", r#"{"plan":"pro"}"#])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let published: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(published["data"]["plan"], "pro");
    for (round, says_duplicate) in [(1, false), (2, true)] {
        let output = command(dir.path())
            .args(["publish", "--url", &base, "--type", "audit.x", "--idempotency-key", "once"])
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "round {round}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.contains("duplicate"), says_duplicate, "round {round}: {stderr}");
    }

    let mut stdin_publish = command(dir.path())
        .args(["publish", "--url", &base, "--batch", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = "{\"event_type\":\"user.updated\"}\n{\"event_type\":\"order.paid\"}\n\n{\"event_type\":\"user.deleted\"}\n\
        {\"event_type\":\"audit.x\",\"idempotency_key\":\"once\"}\n";
    stdin_publish.stdin.take().unwrap().write_all(lines.as_bytes()).await.unwrap();
    let output = stdin_publish.wait_with_output().await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"published\":3") && stderr.contains("\"duplicates\":1"), "{stderr}");
    assert!(stderr.contains("line 5: duplicate"), "{stderr}");

    let types: Vec<Value> = vec![next_tailed().await, next_tailed().await, next_tailed().await];
    let types: Vec<&str> = types.iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["user.created", "user.updated", "user.deleted"]);

    // The server dies; tail keeps trying, and after the restart continues after the last event it saw.
    served.child.start_kill().unwrap();
    served.child.wait().await.unwrap();
    let _restarted = serve(dir.path(), &addr).await;
    let client = reqwest::Client::new();
    client.post(format!("{base}/api/v1/events/create")).json(&json!({"event_type": "user.back"})).send().await.unwrap();
    assert_eq!(next_tailed().await["event_type"], "user.back", "no duplicates of events tail already printed");
    tail.start_kill().unwrap();
}

#[tokio::test]
async fn a_delivery_in_flight_at_sigkill_is_sent_again_after_restart() {
    use crate::sink::{Answer, Sink};
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    sink.answer("crash", Answer::Hang);
    let mut served = serve(dir.path(), "127.0.0.1:0").await;
    let client = reqwest::Client::new();
    let subscription = json!({"callback_url": sink.url("crash"), "webhook_secret": "s3cret"});
    let created =
        client.post(format!("{}/api/v1/events/subscriptions", served.base)).json(&subscription).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let event: Value = client
        .post(format!("{}/api/v1/events/create", served.base))
        .json(&json!({"event_type": "order.paid"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first = sink.wait_for("crash", 1, Duration::from_secs(10)).await;

    served.child.start_kill().expect("SIGKILL");
    served.child.wait().await.unwrap();
    sink.answer("crash", Answer::Status(200));
    let restarted = serve(dir.path(), "127.0.0.1:0").await;

    let again = sink.wait_for("crash", 2, Duration::from_secs(10)).await;
    assert_eq!(again[1].json()["event"]["event_id"], event["event_id"]);
    assert_eq!(again[1].header("webhook-id"), first[0].header("webhook-id"), "the same delivery, sent again");
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let attempts: Value = client
                .get(format!("{}/api/v1/events/{}/deliveries", restarted.base, event["event_id"].as_str().unwrap()))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if attempts["attempts"].as_array().is_some_and(|a| a.iter().any(|a| a["success"] == true)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the resent delivery is recorded as a success");
}

/// Two instances on one PostgreSQL schema: the first is SIGKILLed while its deliveries hang in flight;
/// once their lease ends, the second takes them over and every event is delivered.
#[tokio::test]
async fn a_killed_instances_deliveries_are_taken_over_when_its_lease_ends() {
    use crate::sink::{Answer, Sink};
    let schema = match eventdeck::storage::ScratchSchema::create().await {
        Ok(schema) => schema,
        Err(why) => return println!("SKIPPED: {why}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    sink.answer("hook", Answer::Hang);
    // The shortest lease, and a short delivery timeout: a claim lives 5 s + 1 s.
    let env = [("EVENTDECK_CLUSTER__LEASE_SECS", "5")];
    let mut first =
        serve_on(dir.path(), "127.0.0.1:0", &schema.url(), &[("EVENTDECK_CLUSTER__INSTANCE_ID", "first"), env[0]])
            .await;
    let client = reqwest::Client::new();
    let subscription =
        json!({"callback_url": sink.url("hook"), "retry_policy": {"timeout_ms": 1000, "max_retries": 10}});
    let created =
        client.post(format!("{}/api/v1/events/subscriptions", first.base)).json(&subscription).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let events: Vec<Value> = (0..5).map(|i| json!({"event_type": "order.paid", "data": {"i": i}})).collect();
    let stored = client.post(format!("{}/api/v1/events/batch", first.base)).json(&events).send().await.unwrap();
    assert!(stored.status().is_success());
    sink.wait_for("hook", 5, Duration::from_secs(10)).await;

    first.child.start_kill().expect("SIGKILL");
    first.child.wait().await.unwrap();
    sink.answer("hook", Answer::Status(200));
    let killed_at = std::time::Instant::now();
    let second =
        serve_on(dir.path(), "127.0.0.1:0", &schema.url(), &[("EVENTDECK_CLUSTER__INSTANCE_ID", "second"), env[0]])
            .await;

    // All five again, and not before the first one's claims ran out.
    let received = sink.wait_for("hook", 10, Duration::from_secs(30)).await;
    let mut redelivered: Vec<i64> =
        received[5..].iter().map(|r| r.json()["event"]["data"]["i"].as_i64().unwrap()).collect();
    redelivered.sort_unstable();
    assert_eq!(redelivered, [0, 1, 2, 3, 4]);
    assert!(received[5].at.duration_since(killed_at) >= Duration::from_secs(3), "taken over only once the lease ended");
    let cluster: Value =
        client.get(format!("{}/api/v1/cluster", second.base)).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> =
        cluster["instances"].as_array().unwrap().iter().filter_map(|i| i["instance_id"].as_str()).collect();
    assert!(ids.contains(&"second"), "{cluster}");
}

/// The spans an in-test OTLP/HTTP collector received, decoded from protobuf.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>,
}

impl Collector {
    async fn start(&self) -> String {
        use axum::routing::post;
        use prost::Message;
        let spans = self.spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            post(move |body: axum::body::Bytes| {
                let spans = spans.clone();
                async move {
                    let request =
                        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(body)
                            .expect("an OTLP protobuf export request");
                    let received = request.resource_spans.into_iter().flat_map(|r| r.scope_spans).flat_map(|s| s.spans);
                    spans.lock().unwrap().extend(received);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    fn named(&self, name: &str) -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
        self.spans.lock().unwrap().iter().filter(|s| s.name == name || s.name.starts_with(name)).cloned().collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn spans_are_exported_over_otlp_and_log_lines_carry_the_request_id() {
    use crate::sink::Sink;
    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let sink = Sink::start().await;
    let mut served = serve_with(
        dir.path(),
        "127.0.0.1:0",
        &[
            ("EVENTDECK_TRACING__OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("RUST_LOG", "info,tower_http=debug"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let subscription = json!({"callback_url": sink.url("hook")});
    let answer = client.post(format!("{}/api/v1/events/subscriptions", served.base)).json(&subscription).send().await;
    assert_eq!(answer.unwrap().status(), 201);
    let created = client
        .post(format!("{}/api/v1/events/create", served.base))
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .header("x-request-id", "req-otlp-1")
        .json(&json!({"event_type": "order.paid"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let delivered = sink.wait_for("hook", 1, Duration::from_secs(20)).await;
    let sent = delivered[0].header("traceparent").to_owned();

    // The request's log lines carry its id (here tower-http's "finished processing request").
    let logged = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = served._logs.next_line().await.unwrap() {
            let entry: Value = serde_json::from_str(&line).unwrap();
            if entry["span"]["request_id"] == "req-otlp-1" {
                return entry;
            }
        }
        panic!("serve stopped logging");
    })
    .await
    .expect("a log line with the request id");
    assert_eq!(logged["span"]["route"], "/api/v1/events/create");

    // SIGTERM flushes what is still buffered.
    let pid = served.child.id().expect("pid").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(20), served.child.wait()).await.expect("exited").unwrap();
    assert!(status.success(), "{status}");

    let request = collector.named("POST /api/v1/events/create");
    assert_eq!(request.len(), 1, "one request span");
    assert_eq!(hex(&request[0].trace_id), TRACE_ID, "the request continues the caller's trace");
    assert_eq!(hex(&request[0].parent_span_id), "00f067aa0ba902b7");
    let ingest = collector.named("ingest");
    assert!(ingest.iter().any(|s| s.parent_span_id == request[0].span_id), "ingest runs in the request");
    assert!(!collector.named("commit").is_empty(), "commits are exported");
    let delivery = collector.named("delivery");
    assert_eq!(delivery.len(), 1);
    assert_eq!(hex(&delivery[0].trace_id), TRACE_ID, "the delivery is in the same trace");
    assert_eq!(
        sent,
        format!("00-{TRACE_ID}-{}-01", hex(&delivery[0].span_id)),
        "the sink's parent is the delivery span"
    );
}
