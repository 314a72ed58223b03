//! Test harness: an engine and HTTP server on port 0 over a temporary SQLite file or a scratch
//! PostgreSQL schema, a JSON client, and a small SSE reader. Tests wrapped in [`on_every_backend!`] run
//! once per backend.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use eventdeck::api::{self, AppState, Limits};
use eventdeck::config::Config;
use eventdeck::engine::Engine;
use eventdeck::storage;

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub engine: Engine,
    /// Key sent on every request made through the helpers, if set.
    pub api_key: Option<String>,
    shutdown: CancellationToken,
    server: Option<JoinHandle<std::io::Result<()>>>,
    config: Config,
    store: Keep,
}

/// What a test server's store lives in, kept until the server is dropped.
pub struct Keep {
    _dir: TempDir,
    /// The PostgreSQL schema, when the test runs on PostgreSQL.
    pub schema: Option<Arc<storage::ScratchSchema>>,
}

/// The store a test's servers open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

tokio::task_local! {
    /// The backend of the test running on this task ([`on_every_backend!`] sets it; SQLite without).
    pub static BACKEND: Backend;
}

/// Runs each test function once on SQLite (module `sqlite`) and once on PostgreSQL (module
/// `postgres`, printing SKIPPED when EVENTDECK_TEST_DATABASE_URL is not set): the test servers its
/// body starts open that backend.
#[macro_export]
macro_rules! on_every_backend {
    ($( $(#[$meta:meta])* async fn $name:ident() $body:block )*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                async fn $name() {
                    $crate::support::BACKEND.scope($crate::support::Backend::Sqlite, async $body).await
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                async fn $name() {
                    if std::env::var(eventdeck::storage::ScratchSchema::VARIABLE).is_err() {
                        println!("SKIPPED {}: {} is not set", stringify!($name), eventdeck::storage::ScratchSchema::VARIABLE);
                        return;
                    }
                    $crate::support::BACKEND.scope($crate::support::Backend::Postgres, async $body).await
                }
            )*
        }
    };
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with_config(|_| {}).await
    }

    /// Starts with the default configuration changed by `configure` (storage is always a temp file or
    /// a scratch schema, by the test's [`BACKEND`], and the processing loop is off unless `configure`
    /// turns it on).
    pub async fn with_config(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let schema = match BACKEND.try_with(|b| *b).unwrap_or(Backend::Sqlite) {
            Backend::Sqlite => None,
            Backend::Postgres => Some(Arc::new(storage::ScratchSchema::create().await.expect("a test schema"))),
        };
        Self::with_store(Keep { _dir: dir, schema }, configure).await
    }

    /// Starts another server on the same store as this one (PostgreSQL: another instance beside it).
    pub async fn beside(&self, configure: impl FnOnce(&mut Config)) -> Self {
        let schema = self.store.schema.clone().expect("instances side by side need PostgreSQL");
        Self::with_store(Keep { _dir: tempfile::tempdir().expect("temp dir"), schema: Some(schema) }, configure).await
    }

    async fn with_store(store: Keep, configure: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::default();
        config.storage.url = match &store.schema {
            Some(schema) => schema.url(),
            None => format!("sqlite://{}", store._dir.path().join("events.db").display()),
        };
        if store.schema.is_some() {
            // Servers on one schema are instances beside each other: each its own id.
            config.cluster.instance_id = format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        }
        // Most tests check what ingest stored, exactly; the processing loop would change the status
        // under them. Tests of processing turn it on.
        config.processing.enabled = false;
        // Archives go to the test's own folder, never the working directory.
        config.archive.dir = store._dir.path().join("archive").display().to_string();
        configure(&mut config);
        Self::launch(config, store).await
    }

    /// Starts engine and server on `config`'s store, which lives in `store`.
    async fn launch(config: Config, store: Keep) -> Self {
        let opened = storage::connect(&config.storage.url, &config.store_options()).await.expect("open store");
        let engine = Engine::start(opened, config.engine_options()).await.expect("start engine");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let shutdown = CancellationToken::new();
        let state = AppState {
            service: Arc::new(engine.clone()),
            limits: Arc::new(Limits::from_config(&config)),
            shutdown: shutdown.clone(),
            metrics: engine.metrics().clone(),
        };
        let server = tokio::spawn(api::serve(listener, state));
        let api_key = config.auth.api_keys.first().cloned();
        Self { base, client: reqwest::Client::new(), engine, api_key, shutdown, server: Some(server), config, store }
    }

    /// Stops cleanly and starts again on the same store (on a new port).
    pub async fn restart(mut self) -> Self {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server");
        }
        self.engine.shutdown().await;
        Self::launch(self.config.clone(), self.store).await
    }

    /// Stops cleanly and starts again on the same store with the configuration changed by `configure`.
    pub async fn restart_with(mut self, configure: impl FnOnce(&mut Config)) -> Self {
        configure(&mut self.config);
        self.restart().await
    }

    /// Stops cleanly, runs `between` with the store's URL while nothing holds the store, and starts
    /// again on it.
    pub async fn restart_around<F: std::future::Future<Output = ()>>(
        mut self,
        between: impl FnOnce(String) -> F,
    ) -> Self {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server");
        }
        self.engine.shutdown().await;
        between(self.config.storage.url.clone()).await;
        Self::launch(self.config.clone(), self.store).await
    }

    /// The folder this server archives to (`[archive] dir`).
    pub fn archive_dir(&self) -> std::path::PathBuf {
        self.config.archive.dir.clone().into()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        answer(self.authorize(self.client.get(self.url(path))).send().await.expect("GET")).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        answer(self.authorize(self.client.post(self.url(path))).json(body).send().await.expect("POST")).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        answer(self.authorize(self.client.put(self.url(path))).json(body).send().await.expect("PUT")).await
    }

    /// POSTs `body` as it is, for malformed input.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        let request = self.client.post(self.url(path)).header("content-type", "application/json").body(body);
        answer(self.authorize(request).send().await.expect("POST")).await
    }

    /// Stores one event through `POST /api/v1/events/create` and returns it.
    pub async fn create(&self, body: Value) -> Value {
        let (status, event) = self.post("/api/v1/events/create", &body).await;
        assert_eq!(status, StatusCode::CREATED, "create {body} answered {event}");
        event
    }

    /// Opens the live stream at `path_and_query`, with extra headers.
    pub async fn sse(&self, path_and_query: &str, headers: &[(&str, &str)]) -> SseReader {
        let mut request = self.authorize(self.client.get(self.url(path_and_query)));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("open SSE");
        assert_eq!(response.status(), StatusCode::OK, "SSE {path_and_query}");
        SseReader { body: response.bytes_stream().boxed(), buffer: String::new() }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server");
        }
        self.engine.shutdown().await;
    }
}

async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, body)
}

/// Asserts the API's error shape: status, `error.code`, and a message mentioning `mentions`.
#[track_caller]
pub fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str, mentions: &str) {
    let (got_status, body) = answer;
    assert_eq!(*got_status, status, "status of {body}");
    assert_eq!(body["error"]["code"], code, "code of {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(mentions), "message {message:?} should mention {mentions:?}");
}

/// One SSE frame: an event with id and data, or a comment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub comment: Option<String>,
}

impl Frame {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("frame data is not JSON ({e}): {:?}", self.data))
    }
}

pub struct SseReader {
    body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl SseReader {
    /// The next frame, or `None` if none arrives within `wait` or the stream ends.
    pub async fn next_frame(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let raw: String = self.buffer.drain(..end + 2).collect();
                let mut frame = Frame::default();
                for line in raw.lines() {
                    if let Some(comment) = line.strip_prefix(':') {
                        frame.comment = Some(comment.trim().to_owned());
                    } else if let Some((field, value)) = line.split_once(':') {
                        let value = value.strip_prefix(' ').unwrap_or(value);
                        match field {
                            "id" => frame.id = Some(value.to_owned()),
                            "event" => frame.event = Some(value.to_owned()),
                            "data" => frame.data.push_str(value),
                            _ => {}
                        }
                    }
                }
                return Some(frame);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next()).await.ok()??.ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event frame, skipping comments.
    pub async fn next_event(&mut self, wait: Duration) -> Option<Frame> {
        loop {
            let frame = self.next_frame(wait).await?;
            if frame.comment.is_none() {
                return Some(frame);
            }
        }
    }

    /// Collects `n` events' seqs (from their ids), failing if they do not arrive in time. Status, dlq
    /// and replay frames in between carry no seq and are skipped.
    pub async fn seqs(&mut self, n: usize, wait: Duration) -> Vec<i64> {
        let mut seqs = Vec::with_capacity(n);
        while seqs.len() < n {
            let Some(frame) = self.next_event(wait).await else {
                panic!("only {} of {n} events arrived: {seqs:?}", seqs.len());
            };
            if frame.event.as_deref() != Some("event") {
                continue;
            }
            seqs.push(frame.id.expect("event id").parse().expect("numeric id"));
        }
        seqs
    }
}
