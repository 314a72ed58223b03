//! A webhook sink for delivery tests: an HTTP server on port 0 that records every request and answers
//! as each path is told to (a status, fail N times then succeed, answer late, trickle a body that never
//! ends, or hang).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("delivery body is JSON")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("missing header {name}"))
    }
}

/// How a path answers.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Status(u16),
    /// Fails with 500 this many more times, then answers 200.
    FailTimes(u32),
    /// Never answers within the test.
    Hang,
    /// Answers 200 after this long.
    Late(Duration),
    /// Answers 200 at once, then sends its body a byte a second, forever.
    Trickle,
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    answers: HashMap<String, Answer>,
}

#[derive(Clone)]
pub struct Sink {
    pub base: String,
    shared: Arc<Mutex<Shared>>,
}

impl Sink {
    pub async fn start() -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new().route("/{*path}", post(receive)).with_state(shared.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, shared }
    }

    /// The URL of `path` (answering 200 until told otherwise).
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    pub fn answer(&self, path: &str, answer: Answer) {
        self.shared.lock().unwrap().answers.insert(path.to_owned(), answer);
    }

    /// Requests received at `path` so far.
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.shared.lock().unwrap().received.iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Waits until `path` has received at least `n` requests, failing after `within`.
    pub async fn wait_for(&self, path: &str, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let received = self.received(path);
            if received.len() >= n {
                return received;
            }
            assert!(Instant::now() < deadline, "{path} received {} of {n} requests in {within:?}", received.len());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn receive(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = {
        let mut shared = shared.lock().unwrap();
        shared.received.push(Received { path: path.clone(), headers, body, at: Instant::now() });
        let answer = shared.answers.get(&path).copied().unwrap_or(Answer::Status(200));
        if let Answer::FailTimes(n) = answer {
            shared.answers.insert(path.clone(), if n > 1 { Answer::FailTimes(n - 1) } else { Answer::Status(200) });
        }
        answer
    };
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Answer::FailTimes(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        Answer::Late(after) => {
            tokio::time::sleep(after).await;
            StatusCode::OK.into_response()
        }
        Answer::Trickle => {
            let bytes = futures::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some((Ok::<_, std::convert::Infallible>(Bytes::from_static(b"z")), ()))
            });
            axum::body::Body::from_stream(bytes).into_response()
        }
    }
}
