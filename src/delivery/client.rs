//! The webhook HTTP client: one POST per attempt, with a deadline, no redirects, a bounded read of the
//! answer, and (unless private networks are allowed) no way to reach a private address.

use std::error::Error as StdError;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::redirect::Policy;

use super::guard::{ALLOW_HINT, is_private, literal_ip};

/// How much of a response body is read and kept.
pub const MAX_RESPONSE_BODY: usize = 4096;

/// How long opening a connection (DNS, TCP, TLS) may take, within the request's own timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the body may take to arrive once the status is in, within the request's own timeout. The
/// status decides the outcome; the body is only kept for people to read, so an endpoint that trickles
/// (or streams forever) does not hold a sending slot for the whole timeout.
const BODY_GRACE: Duration = Duration::from_secs(1);

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the HTTP/TLS stack could not be set up: {0}")]
    Build(#[source] reqwest::Error),
}

/// One webhook POST.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub url: String,
    /// Sent as given, Content-Type among them.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// For the whole attempt: connecting, sending, and reading up to 4 KiB of the answer (the body
    /// itself gets at most [`BODY_GRACE`] of it).
    pub timeout: Duration,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptOutcome {
    /// None when no response came (timeout, refused, DNS, blocked).
    pub status_code: Option<u16>,
    /// The first 4 KiB of the body, lossy UTF-8; None when no response came.
    pub response_body: Option<String>,
    /// What went wrong, for people, when the answer was not a 2xx.
    pub error: Option<String>,
    pub duration_ms: u64,
}

impl AttemptOutcome {
    /// The endpoint answered 2xx: delivered.
    pub fn success(&self) -> bool {
        self.status_code.is_some_and(|code| (200..300).contains(&code))
    }

    /// The endpoint answered 410 Gone: it wants no more deliveries.
    pub fn gone(&self) -> bool {
        self.status_code == Some(410)
    }
}

/// Sends webhooks. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    allow_private_networks: bool,
}

impl WebhookClient {
    /// Builds the client: no redirects followed (a 3xx is a failed attempt), a 5 s connect timeout, pooled
    /// connections, user agent `eventdeck/<version>`, and no proxies (the private-network guard must see the
    /// real target). When `allow_private_networks` is false, resolved addresses that are private are dropped
    /// (the attempt fails when none is left) and IP-literal hosts are checked before sending.
    pub fn new(allow_private_networks: bool) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("eventdeck/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { allow_private_networks }))
            .build()
            .map_err(ClientError::Build)?;
        Ok(Self { http, allow_private_networks })
    }

    /// POSTs `request.body` with its headers; gives up after `request.timeout`. The answer's body is read
    /// up to 4 KiB and for at most [`BODY_GRACE`], then the response is dropped (closing its connection
    /// when unread body remains); running out of time there keeps the status and what arrived.
    pub async fn send(&self, request: WebhookRequest) -> AttemptOutcome {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + request.timeout;
        let timed_out = format!("timed out after {} ms", request.timeout.as_millis());
        let finish = |status_code, response_body, error| AttemptOutcome {
            status_code,
            response_body,
            error,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };

        let response = match tokio::time::timeout_at(deadline, self.start(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(message)) => return finish(None, None, Some(message)),
            Err(_) => return finish(None, None, Some(timed_out)),
        };
        let status = response.status();
        let mut body = Vec::new();
        let body_deadline = deadline.min(tokio::time::Instant::now() + BODY_GRACE);
        // Running out of time here keeps what was read: the status already says how the attempt went.
        let _ = tokio::time::timeout_at(body_deadline, read_prefix(response, &mut body)).await;
        let error = if status.is_success() {
            None
        } else if status.is_redirection() {
            Some(format!("HTTP {} (redirects are not followed)", status.as_u16()))
        } else {
            Some(format!("HTTP {}", status.as_u16()))
        };
        finish(Some(status.as_u16()), Some(String::from_utf8_lossy(&body).into_owned()), error)
    }

    /// Checks the target and sends the request, up to the response head.
    async fn start(&self, request: WebhookRequest) -> Result<reqwest::Response, String> {
        let url = Url::parse(&request.url).map_err(|e| format!("invalid callback URL: {e}"))?;
        // IP-literal hosts never reach the resolver, so they are checked here.
        if !self.allow_private_networks
            && let Some(ip) = literal_ip(&url)
            && is_private(ip)
        {
            return Err(format!("blocked: {ip} is a private address ({ALLOW_HINT})"));
        }
        let mut headers = HeaderMap::with_capacity(request.headers.len());
        for (name, value) in &request.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name {name:?}"))?;
            let value = HeaderValue::from_str(value).map_err(|_| format!("invalid value for header {name}"))?;
            headers.append(name, value);
        }
        self.http.post(url).headers(headers).body(request.body).send().await.map_err(|e| describe(&e))
    }
}

/// Reads the body into `buf` until it holds `MAX_RESPONSE_BODY` bytes or the body ends, then stops.
async fn read_prefix(mut response: reqwest::Response, buf: &mut Vec<u8>) {
    while buf.len() < MAX_RESPONSE_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_BODY - buf.len();
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            // A body cut short keeps what arrived; the status already says how the attempt went.
            Ok(None) | Err(_) => break,
        }
    }
}

/// A short message for a request that got no response.
fn describe(error: &reqwest::Error) -> String {
    let mut innermost: Option<&(dyn StdError + 'static)> = None;
    let mut next = error.source();
    while let Some(cause) = next {
        if let Some(resolve) = cause.downcast_ref::<ResolveError>() {
            return resolve.to_string();
        }
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionRefused => return "connection refused".to_owned(),
                io::ErrorKind::ConnectionReset => {
                    return "connection reset by the endpoint".to_owned();
                }
                _ => {}
            }
        }
        innermost = Some(cause);
        next = cause.source();
    }
    let detail = innermost.map_or_else(|| error.to_string(), ToString::to_string);
    if error.is_connect() && error.is_timeout() {
        format!("connect timed out after {} ms", CONNECT_TIMEOUT.as_millis())
    } else if error.is_connect() {
        format!("connection failed: {detail}")
    } else {
        format!("request failed: {detail}")
    }
}

/// Why a host name gave no address to connect to.
#[derive(Debug, thiserror::Error)]
enum ResolveError {
    #[error("could not resolve {host}: {source}")]
    Lookup {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("could not resolve {host}: no addresses")]
    Empty { host: String },
    #[error("blocked: {host} resolves only to private addresses ({addrs}) ({ALLOW_HINT})")]
    Blocked { host: String, addrs: String },
}

/// The system resolver (via tokio), dropping private addresses unless they are allowed.
struct GuardedResolver {
    allow_private_networks: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private_networks = self.allow_private_networks;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port in.
            let looked_up = tokio::net::lookup_host((host.as_str(), 0)).await.map(Iterator::collect::<Vec<_>>);
            let resolved: Vec<SocketAddr> = match looked_up {
                Ok(addrs) => addrs,
                Err(source) => return Err(ResolveError::Lookup { host, source }.into()),
            };
            if resolved.is_empty() {
                return Err(ResolveError::Empty { host }.into());
            }
            let (public, private): (Vec<SocketAddr>, Vec<SocketAddr>) =
                resolved.into_iter().partition(|addr| allow_private_networks || !is_private(addr.ip()));
            if public.is_empty() {
                let addrs = private.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ");
                return Err(ResolveError::Blocked { host, addrs }.into());
            }
            let addrs: Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A request as the test server saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        path: String,
        /// Names lowercased.
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
        }
    }

    /// A bare HTTP/1.1 server on 127.0.0.1:0, one request per connection, with canned routes.
    struct TestServer {
        addr: SocketAddr,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl TestServer {
        async fn start() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let log = seen.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(handle(stream, log.clone()));
                }
            });
            Self { addr, seen }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    async fn handle(mut stream: TcpStream, log: Arc<Mutex<Vec<Seen>>>) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split_whitespace();
        let method = request_line.next().unwrap_or_default().to_owned();
        let path = request_line.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize =
            headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        while buf.len() < head_end + 4 + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[head_end + 4..head_end + 4 + length].to_vec();
        log.lock().unwrap().push(Seen { method, path: path.clone(), headers, body });

        let respond = |status: &str, extra: &str, body: &[u8]| {
            let mut out =
                format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n", body.len())
                    .into_bytes();
            out.extend_from_slice(body);
            out
        };
        let response = match path.as_str() {
            "/ok" => respond("200 OK", "", &[b'a'; 10 * 1024]),
            "/fail" => respond("500 Internal Server Error", "", b"boom"),
            "/gone" => respond("410 Gone", "", b""),
            "/redirect" => respond("302 Found", "Location: /ok\r\n", b""),
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                respond("200 OK", "", b"late")
            }
            "/trickle" => {
                // A byte a second, forever: the status is in at once, the body never ends.
                if stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").await.is_err() {
                    return;
                }
                while stream.write_all(b"z").await.is_ok() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                return;
            }
            "/gigabyte" => {
                // Announces 1 GiB and keeps the connection open for more: only the client closing it stops
                // the writes, and the bytes written until then show how much it read.
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 1u64 << 30);
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'g'; 64 * 1024];
                while stream.write_all(&chunk).await.is_ok() {
                    GIGABYTE_WRITTEN.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                    if GIGABYTE_WRITTEN.load(Ordering::SeqCst) >= 1 << 30 {
                        return;
                    }
                }
                GIGABYTE_CLOSED.store(true, Ordering::SeqCst);
                return;
            }
            "/endless" => {
                // No length: the body runs until the connection closes, which this server never does itself.
                if stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").await.is_err() {
                    return;
                }
                while stream.write_all(&[b'z'; 1024]).await.is_ok() {}
                return;
            }
            _ => respond("404 Not Found", "", b""),
        };
        let _ = stream.write_all(&response).await;
        let _ = stream.shutdown().await;
    }

    fn post(url: String, timeout: Duration) -> WebhookRequest {
        WebhookRequest {
            url,
            headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
            body: Bytes::from_static(br#"{"attempt":1}"#),
            timeout,
        }
    }

    fn open_client() -> WebhookClient {
        WebhookClient::new(true).unwrap()
    }

    #[tokio::test]
    async fn success_keeps_only_the_first_4_kib_of_the_body() {
        let server = TestServer::start().await;
        let outcome = open_client().send(post(server.url("/ok"), Duration::from_secs(5))).await;
        assert_eq!(outcome.status_code, Some(200));
        assert!(outcome.success() && !outcome.gone());
        assert_eq!(outcome.error, None);
        let body = outcome.response_body.unwrap();
        assert_eq!(body.len(), 4096);
        assert!(body.bytes().all(|b| b == b'a'));
    }

    #[tokio::test]
    async fn an_endless_body_is_not_read_to_the_end() {
        let server = TestServer::start().await;
        let outcome = open_client().send(post(server.url("/endless"), Duration::from_secs(5))).await;
        assert_eq!(outcome.status_code, Some(200));
        assert_eq!(outcome.response_body.as_deref().map(str::len), Some(4096));
        assert!(outcome.duration_ms < 4000, "stopped reading early, took {} ms", outcome.duration_ms);
    }

    static GIGABYTE_WRITTEN: AtomicU64 = AtomicU64::new(0);
    static GIGABYTE_CLOSED: AtomicBool = AtomicBool::new(false);

    #[tokio::test]
    async fn a_gigabyte_body_is_cut_at_4_kib_and_its_connection_closed() {
        let server = TestServer::start().await;
        let outcome = open_client().send(post(server.url("/gigabyte"), Duration::from_secs(5))).await;
        assert_eq!(outcome.status_code, Some(200));
        assert_eq!(outcome.response_body.as_deref().map(str::len), Some(4096));
        assert!(outcome.duration_ms < 4000, "stopped reading early, took {} ms", outcome.duration_ms);
        // The client drops the response with most of the body unread: the connection is closed, not
        // drained for reuse, so the sink's writes fail soon after what the socket buffers hold.
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            while !GIGABYTE_CLOSED.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let written = GIGABYTE_WRITTEN.load(Ordering::SeqCst);
        assert!(closed.is_ok(), "the connection stayed open; {written} bytes were written to it");
        assert!(written < 64 << 20, "{written} bytes were taken before the connection closed");
    }

    #[tokio::test]
    async fn a_trickling_body_is_cut_short_after_the_grace() {
        let server = TestServer::start().await;
        let outcome = open_client().send(post(server.url("/trickle"), Duration::from_secs(10))).await;
        assert_eq!(outcome.status_code, Some(200));
        assert!(outcome.success(), "the status decides: {:?}", outcome.error);
        assert!(outcome.response_body.is_some_and(|b| !b.is_empty() && b.len() < 10));
        let grace = BODY_GRACE.as_millis() as u64;
        assert!((grace..grace + 2000).contains(&outcome.duration_ms), "took {} ms", outcome.duration_ms);
    }

    #[tokio::test]
    async fn failures_and_gone() {
        let server = TestServer::start().await;
        let client = open_client();
        let failed = client.send(post(server.url("/fail"), Duration::from_secs(5))).await;
        assert_eq!(failed.status_code, Some(500));
        assert!(!failed.success() && !failed.gone());
        assert_eq!(failed.error.as_deref(), Some("HTTP 500"));
        assert_eq!(failed.response_body.as_deref(), Some("boom"));

        let gone = client.send(post(server.url("/gone"), Duration::from_secs(5))).await;
        assert_eq!(gone.status_code, Some(410));
        assert!(gone.gone() && !gone.success());
        assert_eq!(gone.error.as_deref(), Some("HTTP 410"));
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let server = TestServer::start().await;
        let outcome = open_client().send(post(server.url("/redirect"), Duration::from_secs(5))).await;
        assert_eq!(outcome.status_code, Some(302));
        assert!(!outcome.success());
        assert!(outcome.error.as_deref().is_some_and(|e| e.starts_with("HTTP 302")), "{:?}", outcome.error);
        let paths: Vec<String> = server.seen().into_iter().map(|s| s.path).collect();
        assert_eq!(paths, ["/redirect"]);
    }

    #[tokio::test]
    async fn a_slow_endpoint_times_out() {
        let server = TestServer::start().await;
        let outcome = open_client().send(post(server.url("/slow"), Duration::from_millis(200))).await;
        assert_eq!(outcome.status_code, None);
        assert_eq!(outcome.response_body, None);
        assert_eq!(outcome.error.as_deref(), Some("timed out after 200 ms"));
        assert!(!outcome.success());
        assert!((200..1500).contains(&outcome.duration_ms), "took {} ms", outcome.duration_ms);
    }

    #[tokio::test]
    async fn method_headers_and_body_arrive() {
        let server = TestServer::start().await;
        let request = WebhookRequest {
            url: server.url("/ok"),
            headers: vec![
                ("Content-Type".to_owned(), "application/json".to_owned()),
                ("X-Event-Id".to_owned(), "0190-abc".to_owned()),
                ("X-Delivery-Attempt".to_owned(), "2".to_owned()),
                ("webhook-signature".to_owned(), "v1,abc=".to_owned()),
            ],
            body: Bytes::from_static(br#"{"event":{}}"#),
            timeout: Duration::from_secs(5),
        };
        assert!(open_client().send(request).await.success());
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        let seen = &seen[0];
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.header("content-type"), Some("application/json"));
        assert_eq!(seen.header("x-event-id"), Some("0190-abc"));
        assert_eq!(seen.header("x-delivery-attempt"), Some("2"));
        assert_eq!(seen.header("webhook-signature"), Some("v1,abc="));
        assert_eq!(seen.header("user-agent"), Some(concat!("eventdeck/", env!("CARGO_PKG_VERSION"))));
        assert_eq!(seen.body, br#"{"event":{}}"#);
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_error() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let outcome = open_client().send(post(format!("http://127.0.0.1:{port}/"), Duration::from_secs(5))).await;
        assert_eq!(outcome.status_code, None);
        assert_eq!(outcome.error.as_deref(), Some("connection refused"));
        assert!(!outcome.success());
    }

    #[tokio::test]
    async fn private_literals_are_blocked_before_sending() {
        let server = TestServer::start().await;
        let guarded = WebhookClient::new(false).unwrap();
        let outcome = guarded.send(post(server.url("/ok"), Duration::from_secs(5))).await;
        assert_eq!(outcome.status_code, None);
        assert_eq!(
            outcome.error.as_deref(),
            Some("blocked: 127.0.0.1 is a private address (set [delivery] allow_private_networks = true to allow)")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(server.seen().is_empty(), "the server saw {:?}", server.seen());
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_blocked() {
        let server = TestServer::start().await;
        let url = format!("http://localhost:{}/ok", server.addr.port());
        let outcome = WebhookClient::new(false).unwrap().send(post(url.clone(), Duration::from_secs(5))).await;
        assert_eq!(outcome.status_code, None);
        let error = outcome.error.unwrap();
        assert!(error.starts_with("blocked: localhost resolves only to private addresses"), "{error}");
        assert!(error.contains("allow_private_networks"), "{error}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(server.seen().is_empty(), "the server saw {:?}", server.seen());

        // The same name is fine when private networks are allowed.
        assert!(open_client().send(post(url, Duration::from_secs(5))).await.success());
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn unusable_requests_fail_without_sending() {
        let server = TestServer::start().await;
        let mut request = post(server.url("/ok"), Duration::from_secs(5));
        request.headers.push(("bad header".to_owned(), "x".to_owned()));
        let outcome = open_client().send(request).await;
        assert_eq!(outcome.status_code, None);
        assert!(outcome.error.as_deref().is_some_and(|e| e.contains("invalid header name")), "{:?}", outcome.error);

        let outcome = open_client().send(post("not a url".to_owned(), Duration::from_secs(5))).await;
        assert!(outcome.error.as_deref().is_some_and(|e| e.starts_with("invalid callback URL")), "{:?}", outcome.error);
        assert!(server.seen().is_empty());
    }
}
