//! [`RemoteClient`]: the [`EventService`] of another eventdeck, reached over its HTTP API (reqwest) and
//! its live stream (SSE, reconnecting with `Last-Event-ID`). The console's attach mode and the client
//! commands use it, so they behave as they do against the embedded engine, errors included.

mod answer;
mod feed;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderValue;
use reqwest::{Method, RequestBuilder, Url};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::domain::delivery::{DlqGroupQuery, DlqGroups, DlqQuery, DlqSelector};
use crate::domain::subscription::SubscriptionPatch;
use crate::domain::{
    DeadLetter, DeliveryAttempt, DlqId, Event, EventFilter, EventId, EventPage, EventQuery, NewEvent, ProcessingResult,
    Processor, ProcessorId, Projection, ProjectionAt, ReplayId, ReplayProgress, ReplayRequest, ReplayStarted,
    Statistics, Subscription, SubscriptionId, Timestamp,
};
use crate::service::{self, Cluster, DlqPage, EventService, Feed, Health, Ingested, StreamEvents, StreamList};
use crate::wire::{
    AttemptList, BatchAnswer, BatchItem, Discarded, DlqRetry, EventCreate, HealthAnswer, ProcessorCreate,
    ProcessorList, QueryAnswer, ReplayCreate, ResultList, Retried, SubscriptionCreate, SubscriptionList,
    SubscriptionUpdate, dlq_group_query_pairs, dlq_query_pairs, projection_pairs, query_pairs,
};
use answer::{Origin, Subject};

/// How long to wait for a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take, answer included. Live streams have no such limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a [`RemoteClient`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{url}` is not a server URL: {reason}; give one like http://127.0.0.1:8686")]
    InvalidUrl { url: String, reason: String },
    #[error("the API key cannot be sent in an HTTP header: use printable ASCII without spaces")]
    InvalidApiKey,
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Whether the live stream from the server is flowing. A console shows `Reconnecting` as such.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    Connected,
    /// Not connected (yet, or any more); a feed is trying again. `reason` says what went wrong last.
    Reconnecting {
        reason: String,
    },
}

/// An eventdeck server seen through [`EventService`]. Cheap to clone; clones share the connection pool
/// and the connection state.
#[derive(Clone)]
pub struct RemoteClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Always ends in `/`, so paths are appended below it.
    base: Url,
    api_key: Option<String>,
    state: watch::Sender<ConnectionState>,
}

impl std::fmt::Debug for RemoteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteClient")
            .field("base", &self.inner.base.as_str())
            .field("api_key", &self.inner.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl RemoteClient {
    /// A client of the server at `base_url` (`http` or `https`, optionally with a path prefix). Checks
    /// the URL and key only: the server need not be up yet.
    pub fn connect(base_url: &str, api_key: Option<String>) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidUrl { url: base_url.to_owned(), reason: reason.to_owned() };
        let mut base = Url::parse(base_url.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if base.host_str().is_none_or(str::is_empty) {
            return Err(invalid("it has no host"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("it must not have a query or fragment"));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(invalid("credentials go in --api-key, not in the URL"));
        }
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        if let Some(key) = &api_key {
            HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| Error::InvalidApiKey)?;
        }
        let http = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).timeout(REQUEST_TIMEOUT).build()?;
        let (state, _) = watch::channel(ConnectionState::Reconnecting { reason: "not connected yet".to_owned() });
        Ok(Self { inner: Arc::new(Inner { http, base, api_key, state }) })
    }

    /// The server's base URL, ending in `/`.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// The state of the live stream, updated by every open feed of this client (and its clones).
    pub fn connection(&self) -> watch::Receiver<ConnectionState> {
        self.inner.state.subscribe()
    }

    fn set_state(&self, state: ConnectionState) {
        self.inner.state.send_if_modified(|current| {
            let changed = *current != state;
            *current = state;
            changed
        });
    }

    fn origin(&self) -> Origin<'_> {
        Origin { base: &self.inner.base, has_key: self.inner.api_key.is_some() }
    }

    /// `segments` below the base URL, each percent-encoded as needed.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        // http(s) URLs always have path segments; `connect` checked the scheme.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let request = self.inner.http.request(method, self.url(segments));
        match &self.inner.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Sends `request`; a non-2xx answer becomes the `service::Error` the engine would have given.
    async fn send(
        &self,
        request: RequestBuilder,
        subject: Option<Subject>,
    ) -> Result<reqwest::Response, service::Error> {
        let response = request.send().await.map_err(|e| answer::transport(&self.origin(), &e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        Err(answer::from_response(&self.origin(), status, &body, subject.as_ref()))
    }

    async fn json<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        subject: Option<Subject>,
    ) -> Result<T, service::Error> {
        let response = self.send(request, subject).await?;
        let url = response.url().path().to_owned();
        let body = response.bytes().await.map_err(|e| answer::transport(&self.origin(), &e))?;
        serde_json::from_slice(&body).map_err(|e| {
            service::Error::Unavailable(format!(
                "the server at {} answered {url} with JSON this client does not understand ({e}): is it the same eventdeck version?",
                self.inner.base
            ))
        })
    }

    async fn empty(&self, request: RequestBuilder, subject: Option<Subject>) -> Result<(), service::Error> {
        self.send(request, subject).await.map(drop)
    }
}

impl RemoteClient {
    /// A request to `/api/v1/events/<rest…>`.
    fn events(&self, method: Method, rest: &[&str]) -> RequestBuilder {
        let mut segments = vec!["api", "v1", "events"];
        segments.extend_from_slice(rest);
        self.request(method, &segments)
    }
}

#[async_trait]
impl EventService for RemoteClient {
    /// One `POST /api/v1/events/batch`, so at most the server's `[ingest] max_batch` events per call.
    async fn ingest(&self, events: Vec<NewEvent>) -> Result<Vec<Result<Ingested, service::Error>>, service::Error> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let body: Vec<EventCreate> = events.iter().map(EventCreate::from).collect();
        let answer: BatchAnswer = self.json(self.events(Method::POST, &["batch"]).json(&body), None).await?;
        let mut results = answer.results;
        if results.len() != events.len() {
            return Err(service::Error::Unavailable(format!(
                "the server answered {} results for {} events",
                results.len(),
                events.len()
            )));
        }
        results.sort_by_key(|item| match item {
            BatchItem::Stored { index, .. } | BatchItem::Failed { index, .. } => *index,
        });
        Ok(results
            .into_iter()
            .map(|item| match item {
                BatchItem::Stored { event, duplicate, .. } => Ok(Ingested { event, created: !duplicate }),
                BatchItem::Failed { error, .. } => Err(answer::from_body(&self.origin(), None, error, None)),
            })
            .collect())
    }

    async fn event(&self, id: EventId) -> Result<Arc<Event>, service::Error> {
        self.json(self.events(Method::GET, &[&id.to_string()]), Some(Subject::new("event", id))).await
    }

    async fn query(&self, query: EventQuery) -> Result<EventPage, service::Error> {
        let body: serde_json::Map<String, serde_json::Value> =
            query_pairs(&query).into_iter().map(|(k, v)| (k.to_owned(), v.into())).collect();
        let answer: QueryAnswer = self.json(self.events(Method::POST, &["query"]).json(&body), None).await?;
        Ok(EventPage { events: answer.events, total: answer.total })
    }

    /// Reads at most 10,000 events per call (the server's page limit); read on from the last version
    /// received + 1 (`from_version` is inclusive).
    async fn stream(&self, stream_id: &str, from_version: i64, limit: u32) -> Result<StreamEvents, service::Error> {
        const MAX_PAGE: u32 = 10_000;
        let params = [("from_version", from_version.max(1)), ("limit", i64::from(limit.clamp(1, MAX_PAGE)))];
        let request = self.events(Method::GET, &["stream", stream_id]).query(&params);
        let mut answer: StreamEvents = self.json(request, Some(Subject::new("stream", stream_id))).await?;
        answer.events.truncate(limit as usize);
        Ok(answer)
    }

    async fn statistics(&self) -> Result<Statistics, service::Error> {
        self.json(self.events(Method::GET, &["statistics"]), None).await
    }

    /// The server's own health; `degraded` with storage not ok when it cannot be reached.
    async fn health(&self) -> Health {
        let request = self.request(Method::GET, &["health"]);
        let answer = match request.send().await {
            // 503 carries the same body, status `degraded`.
            Ok(response) => response.json::<HealthAnswer>().await.ok(),
            Err(_) => None,
        };
        answer.map_or_else(answer::unreachable_health, answer::health)
    }

    /// Reconnects by itself after a lost connection, resuming after the last event it passed on; see
    /// [`RemoteClient::connection`] for the state. Ends with an error only when retrying cannot help
    /// (e.g. a missing API key).
    fn feed(&self, filter: EventFilter, since_seq: Option<i64>) -> Feed {
        feed::open(self.clone(), filter, since_seq)
    }

    async fn create_subscription(&self, subscription: Subscription) -> Result<Arc<Subscription>, service::Error> {
        let body = SubscriptionCreate::from(&subscription);
        self.json(self.events(Method::POST, &["subscriptions"]).json(&body), None).await
    }

    async fn subscriptions(&self) -> Result<Vec<Arc<Subscription>>, service::Error> {
        let list: SubscriptionList = self.json(self.events(Method::GET, &["subscriptions"]), None).await?;
        Ok(list.subscriptions)
    }

    async fn subscription(&self, id: SubscriptionId) -> Result<Arc<Subscription>, service::Error> {
        let request = self.events(Method::GET, &["subscriptions", &id.to_string()]);
        self.json(request, Some(Subject::new("subscription", id))).await
    }

    async fn update_subscription(
        &self,
        id: SubscriptionId,
        patch: SubscriptionPatch,
    ) -> Result<Arc<Subscription>, service::Error> {
        let request =
            self.events(Method::PATCH, &["subscriptions", &id.to_string()]).json(&SubscriptionUpdate::from(&patch));
        self.json(request, Some(Subject::new("subscription", id))).await
    }

    async fn delete_subscription(&self, id: SubscriptionId) -> Result<(), service::Error> {
        let request = self.events(Method::DELETE, &["subscriptions", &id.to_string()]);
        self.empty(request, Some(Subject::new("subscription", id))).await
    }

    async fn delivery_attempts(&self, event_id: EventId) -> Result<Vec<DeliveryAttempt>, service::Error> {
        let request = self.events(Method::GET, &[&event_id.to_string(), "deliveries"]);
        let list: AttemptList = self.json(request, Some(Subject::new("event", event_id))).await?;
        Ok(list.attempts)
    }

    async fn dead_letters(&self, query: DlqQuery) -> Result<DlqPage, service::Error> {
        self.json(self.events(Method::GET, &["dlq"]).query(&dlq_query_pairs(&query)), None).await
    }

    async fn dead_letter(&self, id: DlqId) -> Result<DeadLetter, service::Error> {
        self.json(self.events(Method::GET, &["dlq", &id.to_string()]), Some(Subject::new("dead letter", id))).await
    }

    async fn retry_dead_letters(&self, selector: DlqSelector) -> Result<usize, service::Error> {
        let request = self.events(Method::POST, &["dlq", "retry"]).json(&DlqRetry::from(&selector));
        let answer: Retried = self.json(request, None).await?;
        Ok(answer.retried)
    }

    async fn discard_dead_letter(&self, id: DlqId) -> Result<(), service::Error> {
        self.empty(self.events(Method::DELETE, &["dlq", &id.to_string()]), Some(Subject::new("dead letter", id))).await
    }

    async fn streams(&self, prefix: &str, after: Option<&str>, limit: u32) -> Result<StreamList, service::Error> {
        let mut pairs = vec![("prefix", prefix.to_owned()), ("limit", limit.to_string())];
        if let Some(after) = after {
            pairs.push(("after", after.to_owned()));
        }
        self.json(self.events(Method::GET, &["streams"]).query(&pairs), None).await
    }

    async fn dead_letter_groups(&self, query: DlqGroupQuery) -> Result<DlqGroups, service::Error> {
        self.json(self.events(Method::GET, &["dlq", "groups"]).query(&dlq_group_query_pairs(&query)), None).await
    }

    async fn discard_dead_letters(&self, selector: DlqSelector) -> Result<usize, service::Error> {
        let request = self.events(Method::POST, &["dlq", "discard"]).json(&DlqRetry::from(&selector));
        let answer: Discarded = self.json(request, None).await?;
        Ok(answer.discarded)
    }

    async fn create_processor(&self, processor: Processor) -> Result<Arc<Processor>, service::Error> {
        let body = ProcessorCreate::from(&processor);
        self.json(self.events(Method::POST, &["processors"]).json(&body), None).await
    }

    async fn processors(&self) -> Result<Vec<Arc<Processor>>, service::Error> {
        let list: ProcessorList = self.json(self.events(Method::GET, &["processors"]), None).await?;
        Ok(list.processors)
    }

    async fn toggle_processor(&self, id: ProcessorId, enabled: bool) -> Result<Arc<Processor>, service::Error> {
        let request =
            self.events(Method::PUT, &["processors", &id.to_string(), "toggle"]).query(&[("enabled", enabled)]);
        self.json(request, Some(Subject::new("processor", id))).await
    }

    async fn delete_processor(&self, id: ProcessorId) -> Result<(), service::Error> {
        let request = self.events(Method::DELETE, &["processors", &id.to_string()]);
        self.empty(request, Some(Subject::new("processor", id))).await
    }

    async fn processing_results(&self, event_id: EventId) -> Result<Vec<ProcessingResult>, service::Error> {
        let request = self.events(Method::GET, &[&event_id.to_string(), "results"]);
        let list: ResultList = self.json(request, Some(Subject::new("event", event_id))).await?;
        Ok(list.results)
    }

    async fn replay(&self, request: ReplayRequest) -> Result<ReplayStarted, service::Error> {
        let body = ReplayCreate::from(&request);
        self.json(self.events(Method::POST, &["replay"]).json(&body), None).await
    }

    async fn cluster(&self) -> Result<Cluster, service::Error> {
        self.json(self.request(Method::GET, &["api", "v1", "cluster"]), None).await
    }

    async fn replay_progress(&self, id: ReplayId) -> Result<ReplayProgress, service::Error> {
        self.json(self.events(Method::GET, &["replay", &id.to_string()]), Some(Subject::new("replay", id))).await
    }

    async fn archive(
        &self,
        before: Timestamp,
        delete: bool,
    ) -> Result<crate::domain::archive::ArchiveReport, service::Error> {
        let body = crate::wire::ArchiveCreate { before: before.to_string(), delete };
        // A run over months of events takes a while: the request waits for it, not the usual 30 s.
        let request = self.events(Method::POST, &["archive"]).json(&body).timeout(Duration::from_secs(3600));
        self.json(request, None).await
    }

    async fn projection(
        &self,
        entity_type: &str,
        entity_id: &str,
        at: ProjectionAt,
    ) -> Result<Projection, service::Error> {
        let request = self.events(Method::GET, &["projections", entity_type, entity_id]).query(&projection_pairs(at));
        let entity = crate::domain::projection::stream_id(entity_type, entity_id);
        self.json(request, Some(Subject::new("entity", entity))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_checks_the_url_and_key_only() {
        for bad in ["", "localhost:8686", "ftp://host", "http://", "http://h/?x=1", "http://u:p@h/", "not a url"] {
            assert!(matches!(RemoteClient::connect(bad, None), Err(Error::InvalidUrl { .. })), "{bad:?}");
        }
        assert!(matches!(RemoteClient::connect("http://h", Some("a\nb".into())), Err(Error::InvalidApiKey)));
        let client = RemoteClient::connect("http://127.0.0.1:1", Some("s3cret-key".into())).unwrap();
        assert_eq!(client.base_url().as_str(), "http://127.0.0.1:1/");
        assert!(!format!("{client:?}").contains("s3cret-key"), "Debug must not show the key");
    }

    #[test]
    fn paths_are_appended_below_the_base_and_encoded() {
        let client = RemoteClient::connect("https://example.com/eventdeck", None).unwrap();
        assert_eq!(
            client.url(&["api", "v1", "events", "stream", "order:eu/7"]).as_str(),
            "https://example.com/eventdeck/api/v1/events/stream/order:eu%2F7"
        );
        let root = RemoteClient::connect("http://127.0.0.1:8686/", None).unwrap();
        assert_eq!(root.url(&["health"]).as_str(), "http://127.0.0.1:8686/health");
    }
}
