//! The JSON of shared/API.md, defined once: request bodies and how they become domain values, query
//! parameters, and answer shapes. Used by the HTTP API and by the client commands.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::delivery::{DlqQuery, DlqSelector};
use crate::domain::event::{MAX_NAME_LEN, validate_event_type, validate_stream_id};
use crate::domain::subscription::SubscriptionPatch;
use crate::domain::{
    DeadLetterKind, DlqId, Event, EventCategory, EventFilter, EventQuery, EventSource, EventStatus, FieldError,
    NewEvent, Order, ProcessorId, RetryPolicy, Subscription, SubscriptionId, Timestamp, TypePattern,
};

/// `POST /api/v1/events/create`, an item of `/batch`, and the seed-compatible `POST /events`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct EventCreate {
    #[serde(alias = "type")]
    pub event_type: Option<String>,
    #[serde(alias = "source")]
    pub event_source: Option<String>,
    pub event_category: Option<String>,
    pub user_id: Option<String>,
    pub tenant_id: Option<String>,
    #[serde(alias = "payload")]
    pub data: Option<Value>,
    pub metadata: Option<Value>,
    pub context: Option<Value>,
    pub timestamp: Option<String>,
    pub stream_id: Option<String>,
    pub expected_version: Option<i64>,
    pub correlation_id: Option<String>,
    pub idempotency_key: Option<String>,
}

impl EventCreate {
    pub fn into_new_event(self) -> Result<NewEvent, FieldError> {
        let event_type = self.event_type.unwrap_or_default();
        validate_event_type("event_type", &event_type)?;
        let mut event = NewEvent::new(event_type);
        if let Some(source) = self.event_source {
            event.event_source = EventSource::parse("event_source", &source)?;
        }
        if let Some(category) = self.event_category {
            event.event_category = EventCategory::parse("event_category", &category)?;
        }
        event.user_id = name("user_id", self.user_id)?;
        event.tenant_id = name("tenant_id", self.tenant_id)?;
        event.correlation_id = name("correlation_id", self.correlation_id)?;
        event.idempotency_key = name("idempotency_key", self.idempotency_key)?;
        event.data = object("data", self.data)?;
        event.metadata = object("metadata", self.metadata)?;
        event.context = object("context", self.context)?;
        if let Some(text) = self.timestamp {
            event.timestamp = timestamp("timestamp", &text)?;
        }
        if let Some(stream_id) = &self.stream_id {
            validate_stream_id("stream_id", stream_id)?;
        }
        match (self.expected_version, &self.stream_id) {
            (Some(v), _) if v < 0 => return Err(FieldError::new("expected_version", "must be 0 or more")),
            (Some(_), None) => {
                return Err(FieldError::new("expected_version", "needs a stream_id: it is the version of that stream"));
            }
            _ => {}
        }
        event.stream_id = self.stream_id;
        event.expected_version = self.expected_version;
        Ok(event)
    }
}

/// `POST /api/v1/events/frontend` and each item of `/frontend/batch`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct FrontendEvent {
    pub event_type: Option<String>,
    pub category: Option<String>,
    pub page_url: Option<String>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub properties: Option<Value>,
    pub timestamp: Option<String>,
}

/// `POST /api/v1/events/frontend/batch`.
#[derive(Debug, Clone, Deserialize)]
pub struct FrontendBatch {
    pub events: Vec<Value>,
    #[serde(default)]
    pub client_info: Option<Value>,
}

impl FrontendEvent {
    /// The event to store, with `client` (IP, User-Agent, Referer, batch `client_info`) put into context.
    pub fn into_new_event(self, client: &Map<String, Value>) -> Result<NewEvent, FieldError> {
        let event_type = self.event_type.unwrap_or_default();
        validate_event_type("event_type", &event_type)?;
        let mut event = NewEvent::new(event_type);
        event.event_source = EventSource::Frontend;
        event.event_category = match self.category {
            Some(category) => EventCategory::parse("category", &category)?,
            None => EventCategory::UserAction,
        };
        event.user_id = name("user_id", self.user_id)?;
        event.data = object("properties", self.properties)?;
        if let Some(text) = self.timestamp {
            event.timestamp = timestamp("timestamp", &text)?;
        }
        event.context = client.clone();
        if let Some(url) = self.page_url {
            event.context.insert("page_url".into(), Value::String(url));
        }
        if let Some(session) = self.session_id {
            event.context.insert("session_id".into(), Value::String(session));
        }
        Ok(event)
    }
}

fn name(field: &str, value: Option<String>) -> Result<Option<String>, FieldError> {
    match value {
        Some(text) if text.is_empty() => Err(FieldError::new(field, "must not be empty; leave it out instead")),
        Some(text) if text.len() > MAX_NAME_LEN => {
            Err(FieldError::new(field, format!("must be at most {MAX_NAME_LEN} characters")))
        }
        other => Ok(other),
    }
}

fn object(field: &str, value: Option<Value>) -> Result<Map<String, Value>, FieldError> {
    match value {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(FieldError::new(field, "must be a JSON object, e.g. {\"key\": \"value\"}")),
    }
}

fn timestamp(field: &str, text: &str) -> Result<Timestamp, FieldError> {
    Timestamp::parse(text).map_err(|_| {
        FieldError::new(field, format!("`{text}` is not an RFC 3339 time: use e.g. \"2026-01-02T03:04:05.123456Z\""))
    })
}

/// A query's parameters after parsing: the page wanted plus the live stream's resume point.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryParams {
    pub query: EventQuery,
    pub since_seq: Option<i64>,
}

/// Every parameter a query accepts, aliases included (for the error message).
const QUERY_KEYS: &[&str] = &[
    "user_id",
    "event_type",
    "event_source",
    "event_category",
    "status",
    "stream_id",
    "tenant_id",
    "correlation_id",
    "start_time",
    "end_time",
    "limit",
    "offset",
    "order",
    "text",
    "since_seq",
];
const QUERY_ALIASES: &[(&str, &str)] =
    &[("type", "event_type"), ("source", "event_source"), ("category", "event_category"), ("since", "start_time")];

impl QueryParams {
    /// Parses query-string pairs (GET forms and the live stream). `access_token` is the auth layer's.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, FieldError> {
        let mut params = Self::default();
        for (key, value) in pairs {
            if key != "access_token" {
                params.set(key, value)?;
            }
        }
        Ok(params)
    }

    /// Parses an EventQuery JSON body (`POST /api/v1/events/query`); numbers may be JSON numbers.
    pub fn from_json(body: Map<String, Value>) -> Result<Self, FieldError> {
        let mut params = Self::default();
        for (key, value) in body {
            let text = match value {
                Value::Null => continue,
                Value::String(text) => text,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return Err(FieldError::new(key, "must be a string or a number")),
            };
            params.set(&key, &text)?;
        }
        Ok(params)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), FieldError> {
        let key = QUERY_ALIASES.iter().find(|(alias, _)| *alias == key).map_or(key, |(_, name)| name);
        let filter = &mut self.query.filter;
        let text = || Some(value.to_owned());
        match key {
            "user_id" => filter.user_id = text(),
            "stream_id" => filter.stream_id = text(),
            "tenant_id" => filter.tenant_id = text(),
            "correlation_id" => filter.correlation_id = text(),
            "text" => filter.text = text(),
            "event_type" => filter.event_type = Some(TypePattern::parse(key, value)?),
            "event_source" => filter.event_source = Some(EventSource::parse(key, value)?),
            "event_category" => filter.event_category = Some(EventCategory::parse(key, value)?),
            "status" => filter.status = Some(EventStatus::parse(key, value)?),
            "start_time" => filter.start_time = Some(timestamp(key, value)?),
            "end_time" => filter.end_time = Some(timestamp(key, value)?),
            "limit" => self.query.limit = limit(key, value)?,
            "offset" => self.query.offset = offset(key, value)?,
            "order" => {
                self.query.order = match value {
                    "desc" => Order::Desc,
                    "asc" => Order::Asc,
                    _ => return Err(FieldError::one_of(key, value, &["desc", "asc"])),
                };
            }
            "since_seq" => {
                self.since_seq = Some(
                    value.parse().map_err(|_| FieldError::new(key, format!("`{value}` is not a sequence number")))?,
                );
            }
            unknown => {
                return Err(FieldError::new(
                    unknown,
                    format!("is not a query parameter; accepted: {}", QUERY_KEYS.join(", ")),
                ));
            }
        }
        Ok(())
    }

    pub fn filter(&self) -> &EventFilter {
        &self.query.filter
    }
}

/// The answer of a history query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryAnswer {
    pub events: Vec<Event>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
    pub has_more: bool,
}

/// The answer of `POST /api/v1/events/batch`: `created` new, `duplicates` seen before (their stored
/// event is returned), `failed` rejected; `results` in request order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchAnswer {
    pub created: usize,
    pub duplicates: usize,
    pub failed: usize,
    pub results: Vec<BatchItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BatchItem {
    Stored { index: usize, event: Arc<Event> },
    Failed { index: usize, error: ErrorBody },
}

/// The inside of every error answer: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create(value: Value) -> Result<NewEvent, FieldError> {
        serde_json::from_value::<EventCreate>(value).unwrap().into_new_event()
    }

    #[test]
    fn seed_aliases_fill_the_canonical_fields() {
        let event = create(json!({"type": "order.paid", "source": "external_api", "payload": {"n": 1}})).unwrap();
        assert_eq!(event.event_type, "order.paid");
        assert_eq!(event.event_source, EventSource::ExternalApi);
        assert_eq!(event.data["n"], 1);
        assert_eq!(event.event_category, EventCategory::System);
    }

    #[test]
    fn invalid_fields_are_named() {
        let cases = [
            (json!({}), "event_type"),
            (json!({"event_type": "a", "event_source": "moon"}), "event_source"),
            (json!({"event_type": "a", "event_category": "x"}), "event_category"),
            (json!({"event_type": "a", "data": [1]}), "data"),
            (json!({"event_type": "a", "timestamp": "noon"}), "timestamp"),
            (json!({"event_type": "a", "stream_id": "nocolon"}), "stream_id"),
            (json!({"event_type": "a", "expected_version": 1}), "expected_version"),
            (json!({"event_type": "a", "user_id": ""}), "user_id"),
        ];
        for (body, field) in cases {
            assert_eq!(create(body.clone()).unwrap_err().field, field, "{body}");
        }
    }

    #[test]
    fn frontend_events_carry_page_and_client_in_context() {
        let item: FrontendEvent = serde_json::from_value(
            json!({"event_type": "button.click", "page_url": "/x", "session_id": "s1", "properties": {"b": 2}}),
        )
        .unwrap();
        let mut client = Map::new();
        client.insert("ip".into(), json!("10.0.0.1"));
        let event = item.into_new_event(&client).unwrap();
        assert_eq!(event.event_source, EventSource::Frontend);
        assert_eq!(event.event_category, EventCategory::UserAction);
        assert_eq!(event.context["page_url"], "/x");
        assert_eq!(event.context["session_id"], "s1");
        assert_eq!(event.context["ip"], "10.0.0.1");
        assert_eq!(event.data["b"], 2);
    }

    #[test]
    fn query_parameters_parse_with_aliases_and_bounds() {
        let params =
            QueryParams::from_pairs([("type", "user.*"), ("limit", "5"), ("order", "asc"), ("since_seq", "7")])
                .unwrap();
        assert_eq!(params.query.filter.event_type.as_ref().unwrap().as_str(), "user.*");
        assert_eq!(params.query.limit, 5);
        assert_eq!(params.query.order, Order::Asc);
        assert_eq!(params.since_seq, Some(7));
        for (key, value) in [("limit", "0"), ("limit", "1001"), ("status", "done"), ("start_time", "x"), ("bogus", "1")]
        {
            let err = QueryParams::from_pairs([(key, value)]).unwrap_err();
            assert_eq!(err.field, key);
        }
        let body = json!({"limit": 10, "offset": 20, "event_source": "backend", "user_id": null});
        let params = QueryParams::from_json(body.as_object().unwrap().clone()).unwrap();
        assert_eq!((params.query.limit, params.query.offset), (10, 20));
    }
}

/// `POST /api/v1/events/subscriptions`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionCreate {
    pub subscriber_name: Option<String>,
    pub subscriber_type: Option<String>,
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub event_sources: Vec<String>,
    #[serde(default)]
    pub event_categories: Vec<String>,
    pub callback_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub retry_policy: Option<RetryPolicy>,
    pub enabled: Option<bool>,
}

impl SubscriptionCreate {
    /// A new subscription; the callback URL's reachability rules are the engine's to check.
    pub fn into_subscription(self) -> Result<Subscription, FieldError> {
        let callback_url = self.callback_url.filter(|url| !url.trim().is_empty()).ok_or_else(|| {
            FieldError::new("callback_url", "is required: the http or https URL events are POSTed to")
        })?;
        let subscriber_type = self.subscriber_type.unwrap_or_else(|| "webhook".to_owned());
        if subscriber_type != "webhook" {
            return Err(FieldError::one_of("subscriber_type", &subscriber_type, &["webhook"]));
        }
        let retry_policy = self.retry_policy.unwrap_or_default();
        retry_policy.validate()?;
        let secret = match self.webhook_secret {
            Some(secret) if secret.is_empty() => {
                return Err(FieldError::new("webhook_secret", "must not be empty; leave it out instead"));
            }
            other => other,
        };
        let now = Timestamp::now();
        Ok(Subscription {
            subscription_id: SubscriptionId::new_v7(),
            subscriber_name: name("subscriber_name", self.subscriber_name)?.unwrap_or_else(|| callback_url.clone()),
            subscriber_type,
            event_types: type_patterns("event_types", self.event_types)?,
            event_sources: vocabulary_list("event_sources", &self.event_sources, EventSource::parse)?,
            event_categories: vocabulary_list("event_categories", &self.event_categories, EventCategory::parse)?,
            callback_url,
            has_secret: secret.is_some(),
            secret,
            retry_policy,
            enabled: self.enabled.unwrap_or(true),
            disabled_reason: None,
            created_at: now,
            updated_at: now,
            start_seq: 0,
        })
    }
}

/// `PATCH /api/v1/events/subscriptions/{id}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionUpdate {
    pub enabled: Option<bool>,
    pub event_types: Option<Vec<String>>,
    pub event_sources: Option<Vec<String>>,
    pub event_categories: Option<Vec<String>>,
    pub callback_url: Option<String>,
    pub retry_policy: Option<RetryPolicy>,
}

impl SubscriptionUpdate {
    pub fn into_patch(self) -> Result<SubscriptionPatch, FieldError> {
        if let Some(policy) = &self.retry_policy {
            policy.validate()?;
        }
        Ok(SubscriptionPatch {
            enabled: self.enabled,
            event_types: self.event_types.map(|t| type_patterns("event_types", t)).transpose()?,
            event_sources: self
                .event_sources
                .map(|s| vocabulary_list("event_sources", &s, EventSource::parse))
                .transpose()?,
            event_categories: self
                .event_categories
                .map(|c| vocabulary_list("event_categories", &c, EventCategory::parse))
                .transpose()?,
            callback_url: self.callback_url,
            retry_policy: self.retry_policy,
        })
    }
}

/// Seed-compatible `POST /webhooks`.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookCreate {
    pub url: Option<String>,
    #[serde(default)]
    pub events: Vec<String>,
    pub secret: Option<String>,
}

impl WebhookCreate {
    pub fn into_subscription(self) -> Result<Subscription, FieldError> {
        let field = |e: FieldError| match e.field.as_str() {
            "callback_url" => FieldError { field: "url".into(), ..e },
            "event_types" => FieldError { field: "events".into(), ..e },
            "webhook_secret" => FieldError { field: "secret".into(), ..e },
            _ => e,
        };
        SubscriptionCreate {
            callback_url: self.url,
            event_types: self.events,
            webhook_secret: self.secret,
            ..SubscriptionCreate::default()
        }
        .into_subscription()
        .map_err(field)
    }
}

/// A subscription as the seed-compatible `/webhooks` endpoints show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookView {
    pub id: SubscriptionId,
    pub url: String,
    pub events: Vec<String>,
    pub active: bool,
    pub created_at: Timestamp,
}

impl From<&Subscription> for WebhookView {
    fn from(s: &Subscription) -> Self {
        Self {
            id: s.subscription_id,
            url: s.callback_url.clone(),
            events: s.event_types.iter().map(|p| p.as_str().to_owned()).collect(),
            active: s.enabled,
            created_at: s.created_at,
        }
    }
}

/// `POST /api/v1/events/dlq/retry`: exactly one of `ids`, `subscription_id`, `all: true`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqRetry {
    pub ids: Option<Vec<DlqId>>,
    pub subscription_id: Option<SubscriptionId>,
    pub all: Option<bool>,
}

impl DlqRetry {
    pub fn into_selector(self) -> Result<DlqSelector, FieldError> {
        match (self.ids, self.subscription_id, self.all.unwrap_or(false)) {
            (Some(ids), None, false) => Ok(DlqSelector::Ids(ids)),
            (None, Some(id), false) => Ok(DlqSelector::Subscription(id)),
            (None, None, true) => Ok(DlqSelector::All),
            _ => Err(FieldError::new(
                "body",
                "send exactly one of {\"ids\": [...]}, {\"subscription_id\": \"...\"} or {\"all\": true}",
            )),
        }
    }
}

/// Parses `GET /api/v1/events/dlq` parameters.
pub fn dlq_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<DlqQuery, FieldError> {
    let mut query = DlqQuery { limit: EventQuery::DEFAULT_LIMIT, ..DlqQuery::default() };
    for (key, value) in pairs {
        let uuid =
            || uuid::Uuid::parse_str(value).map_err(|_| FieldError::new(key, format!("`{value}` is not a UUID")));
        match key {
            "kind" => {
                query.kind = Some(match value {
                    "delivery" => DeadLetterKind::Delivery,
                    "processing" => DeadLetterKind::Processing,
                    _ => return Err(FieldError::one_of(key, value, &["delivery", "processing"])),
                });
            }
            "subscription_id" => query.subscription_id = Some(SubscriptionId(uuid()?)),
            "processor_id" => query.processor_id = Some(ProcessorId(uuid()?)),
            "limit" => query.limit = limit(key, value)?,
            "offset" => query.offset = offset(key, value)?,
            _ => {
                return Err(FieldError::new(
                    key,
                    "is not a parameter here; accepted: kind, subscription_id, processor_id, limit, offset",
                ));
            }
        }
    }
    Ok(query)
}

/// A page size: 1 to [`EventQuery::MAX_LIMIT`].
fn limit(field: &str, value: &str) -> Result<u32, FieldError> {
    let max = EventQuery::MAX_LIMIT;
    value
        .parse()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| FieldError::new(field, format!("`{value}` is not a number from 1 to {max}")))
}

/// An offset: any whole number 0 or more (one past the end is an empty page).
fn offset(field: &str, value: &str) -> Result<u64, FieldError> {
    value.parse().map_err(|_| FieldError::new(field, format!("`{value}` is not a whole number 0 or more")))
}

fn type_patterns(field: &str, patterns: Vec<String>) -> Result<Vec<TypePattern>, FieldError> {
    patterns.iter().enumerate().map(|(i, pattern)| TypePattern::parse(&format!("{field}[{i}]"), pattern)).collect()
}

fn vocabulary_list<T>(
    field: &str,
    values: &[String],
    parse: fn(&str, &str) -> Result<T, FieldError>,
) -> Result<Vec<T>, FieldError> {
    values.iter().enumerate().map(|(i, value)| parse(&format!("{field}[{i}]"), value)).collect()
}
