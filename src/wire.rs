//! The JSON of shared/API.md, defined once: request bodies and how they become domain values, query
//! parameters, and answer shapes. Used by the HTTP API and by the client commands.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::cdc;
use crate::domain::delivery::{DlqGroupKey, DlqGroupQuery, DlqQuery, DlqSelector};
use crate::domain::event::{MAX_NAME_LEN, validate_event_type, validate_stream_id};
use crate::domain::replay::ReplaySelection;
use crate::domain::subscription::SubscriptionPatch;
use crate::domain::{
    DeadLetter, DeadLetterKind, DeliveryAttempt, DlqId, Event, EventCategory, EventFilter, EventId, EventQuery,
    EventSource, EventStatus, FieldError, NewEvent, Order, ProcessingResult, Processor, ProcessorFilters, ProcessorId,
    ProcessorType, ProjectionAt, ReplayRequest, ReplayTarget, RetryPolicy, Subscription, SubscriptionId, TimeError,
    Timestamp, TypePattern,
};
use crate::service::DlqAction;

pub mod frontend_message;
pub mod rudderstack;

/// `POST /api/v1/events/create`, an item of `/batch`, and the seed-compatible `POST /events`. Unknown
/// fields are refused: a misspelt `expected_version` must not skip the check it asks for.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
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
        event.stream_id = self.stream_id;
        // A change event without a stream_id is put on its document's stream, which expected_version
        // then refers to.
        cdc::prepare(&mut event, "data")?;
        match (self.expected_version, &event.stream_id) {
            (Some(v), _) if v < 0 => return Err(FieldError::new("expected_version", "must be 0 or more")),
            (Some(_), None) => {
                return Err(FieldError::new("expected_version", "needs a stream_id: it is the version of that stream"));
            }
            _ => {}
        }
        event.expected_version = self.expected_version;
        Ok(event)
    }
}

/// `POST /api/v1/events/frontend` and each item of `/frontend/batch` (unknown fields refused).
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
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
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
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
        cdc::prepare(&mut event, "properties")?;
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
    Timestamp::parse(text).map_err(|error| match error {
        TimeError::OutOfRange => FieldError::new(
            field,
            format!("`{text}` is outside the years 1 to 9999 once converted to UTC: give a time within them"),
        ),
        TimeError::Syntax(_) => FieldError::new(
            field,
            format!("`{text}` is not an RFC 3339 time: use e.g. \"2026-01-02T03:04:05.123456Z\""),
        ),
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

/// The parameters of a history query as documented: the body of `POST /api/v1/events/query` and the
/// query string of `GET /api/v1/events` and the live stream. Parsing goes through [`QueryParams`],
/// which also takes numbers as strings and the aliases; a test keeps the two lists equal.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQueryBody {
    pub user_id: Option<String>,
    /// A type pattern (alias `type`).
    pub event_type: Option<TypePattern>,
    /// Alias `source`.
    pub event_source: Option<EventSource>,
    /// Alias `category`.
    pub event_category: Option<EventCategory>,
    pub status: Option<EventStatus>,
    pub stream_id: Option<String>,
    /// Absent: all tenants.
    pub tenant_id: Option<String>,
    pub correlation_id: Option<String>,
    /// On `timestamp`, inclusive (alias `since`).
    pub start_time: Option<Timestamp>,
    /// On `timestamp`, exclusive.
    pub end_time: Option<Timestamp>,
    /// 1 to 1000, default 100.
    pub limit: Option<u32>,
    pub offset: Option<u64>,
    /// By `timestamp`, ties by `seq`: `desc` (default) or `asc`.
    pub order: Option<String>,
    /// Case-insensitive substring of the data JSON.
    pub text: Option<String>,
}

/// The answer of a history query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueryAnswer {
    pub events: Vec<Event>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
    pub has_more: bool,
}

/// The answer of `POST /api/v1/events/batch`: `created` new, `duplicates` seen before (their stored
/// event is returned), `failed` rejected; `results` in request order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchAnswer {
    pub created: usize,
    pub duplicates: usize,
    pub failed: usize,
    pub results: Vec<BatchItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum BatchItem {
    Stored {
        index: usize,
        event: Arc<Event>,
        /// True when the idempotency key was seen before and `event` is the one stored then.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    Failed {
        index: usize,
        error: ErrorBody,
    },
}

/// The inside of every error answer: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
    fn the_documented_query_has_exactly_the_parsed_parameters() {
        let documented = serde_json::to_value(EventQueryBody::default()).unwrap();
        let mut documented: Vec<&str> = documented.as_object().unwrap().keys().map(String::as_str).collect();
        let mut parsed: Vec<&str> = QUERY_KEYS.iter().copied().filter(|k| *k != "since_seq").collect();
        documented.sort_unstable();
        parsed.sort_unstable();
        assert_eq!(documented, parsed);
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
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
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
            Some(secret) => {
                crate::delivery::signing::whsec_key(&secret).map_err(|e| FieldError::new("webhook_secret", e))?;
                Some(secret)
            }
            None => None,
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
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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

/// `POST /api/v1/events/dlq/retry` and `POST /api/v1/events/dlq/discard`: exactly one of `ids`,
/// `subscription_id`, `group` (a key as `GET /api/v1/events/dlq/groups` lists it), `all: true`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DlqRetry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<DlqId>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<SubscriptionId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<DlqGroupKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
}

impl DlqRetry {
    pub fn into_selector(self) -> Result<DlqSelector, FieldError> {
        match (self.ids, self.subscription_id, self.group, self.all.unwrap_or(false)) {
            (Some(ids), None, None, false) => Ok(DlqSelector::Ids(ids)),
            (None, Some(id), None, false) => Ok(DlqSelector::Subscription(id)),
            (None, None, Some(group), false) => Ok(DlqSelector::Group(group)),
            (None, None, None, true) => Ok(DlqSelector::All),
            _ => Err(FieldError::new(
                "body",
                "send exactly one of {\"ids\": [...]}, {\"subscription_id\": \"...\"}, \
                 {\"group\": {\"kind\": ..., \"subscription_id\": ..., \"processor_id\": ..., \"last_status_code\": ..., \"error_class\": ...}} \
                 (as GET /api/v1/events/dlq/groups lists it) or {\"all\": true}",
            )),
        }
    }
}

/// The answer of a DLQ discard: how many entries left the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Discarded {
    pub discarded: usize,
}

/// Parses `GET /api/v1/events/streams` parameters: the prefix, the id to list after, the limit.
pub fn stream_list_query<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(String, Option<String>, u32), FieldError> {
    let (mut prefix, mut after, mut limit) = (String::new(), None, 100);
    for (key, value) in pairs {
        match key {
            "prefix" => prefix = value.to_owned(),
            "after" => after = Some(value.to_owned()),
            "limit" => {
                let max = crate::service::MAX_STREAMS;
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| FieldError::new(key, format!("`{value}` is not a number from 1 to {max}")))?;
            }
            _ => return Err(FieldError::new(key, "is not a parameter here; accepted: prefix, after, limit")),
        }
    }
    Ok((prefix, after, limit))
}

/// Parses `GET /api/v1/events/dlq/groups` parameters; the histograms end at `now` unless `until` says.
pub fn dlq_group_query<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    now: Timestamp,
) -> Result<DlqGroupQuery, FieldError> {
    let mut query = DlqGroupQuery::new(now);
    for (key, value) in pairs {
        match key {
            "kind" => query.kind = Some(DeadLetterKind::parse(key, value)?),
            "buckets" => {
                let max = DlqGroupQuery::MAX_BUCKETS;
                query.buckets = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| FieldError::new(key, format!("`{value}` is not a number from 1 to {max}")))?;
            }
            "until" => query.until = timestamp(key, value)?,
            _ => {
                return Err(FieldError::new(key, "is not a parameter here; accepted: kind, buckets, until"));
            }
        }
    }
    Ok(query)
}

/// The parameters that [`dlq_group_query`] reads back into the same query.
pub fn dlq_group_query_pairs(query: &DlqGroupQuery) -> Vec<(&'static str, String)> {
    let mut pairs = Vec::new();
    if let Some(kind) = query.kind {
        pairs.push(("kind", kind.as_str().to_owned()));
    }
    pairs.push(("buckets", query.buckets.to_string()));
    pairs.push(("until", query.until.to_string()));
    pairs
}

/// Parses `GET /api/v1/events/dlq` parameters.
pub fn dlq_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<DlqQuery, FieldError> {
    let mut query = DlqQuery { limit: EventQuery::DEFAULT_LIMIT, ..DlqQuery::default() };
    for (key, value) in pairs {
        let uuid =
            || uuid::Uuid::parse_str(value).map_err(|_| FieldError::new(key, format!("`{value}` is not a UUID")));
        match key {
            "kind" => query.kind = Some(DeadLetterKind::parse(key, value)?),
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

impl From<&NewEvent> for EventCreate {
    /// The body that makes the server store `event` as it is (the client commands and `remote` send it).
    fn from(event: &NewEvent) -> Self {
        let object = |map: &Map<String, Value>| (!map.is_empty()).then(|| Value::Object(map.clone()));
        Self {
            event_type: Some(event.event_type.clone()),
            event_source: Some(event.event_source.as_str().to_owned()),
            event_category: Some(event.event_category.as_str().to_owned()),
            user_id: event.user_id.clone(),
            tenant_id: event.tenant_id.clone(),
            data: object(&event.data),
            metadata: object(&event.metadata),
            context: object(&event.context),
            timestamp: Some(event.timestamp.to_string()),
            stream_id: event.stream_id.clone(),
            expected_version: event.expected_version,
            correlation_id: event.correlation_id.clone(),
            idempotency_key: event.idempotency_key.clone(),
        }
    }
}

/// The query-string pairs that [`QueryParams::from_pairs`] reads back into the same filter.
pub fn filter_pairs(filter: &EventFilter) -> Vec<(&'static str, String)> {
    let mut pairs = Vec::new();
    let mut put = |key: &'static str, value: Option<String>| {
        if let Some(value) = value {
            pairs.push((key, value));
        }
    };
    put("event_type", filter.event_type.as_ref().map(|p| p.as_str().to_owned()));
    put("event_source", filter.event_source.map(|s| s.as_str().to_owned()));
    put("event_category", filter.event_category.map(|c| c.as_str().to_owned()));
    put("status", filter.status.map(|s| s.as_str().to_owned()));
    put("user_id", filter.user_id.clone());
    put("stream_id", filter.stream_id.clone());
    put("tenant_id", filter.tenant_id.clone());
    put("correlation_id", filter.correlation_id.clone());
    put("start_time", filter.start_time.map(|t| t.to_string()));
    put("end_time", filter.end_time.map(|t| t.to_string()));
    put("text", filter.text.clone());
    pairs
}

/// The parameters of a whole query (filter, page, order), as [`QueryParams`] reads them.
pub fn query_pairs(query: &EventQuery) -> Vec<(&'static str, String)> {
    let mut pairs = filter_pairs(&query.filter);
    pairs.push(("limit", query.limit.to_string()));
    pairs.push(("offset", query.offset.to_string()));
    pairs.push(("order", if query.order == Order::Asc { "asc" } else { "desc" }.to_owned()));
    pairs
}

impl From<&Subscription> for SubscriptionCreate {
    /// The body that creates a subscription like `subscription` (the server assigns id and times).
    fn from(subscription: &Subscription) -> Self {
        Self {
            subscriber_name: Some(subscription.subscriber_name.clone()),
            subscriber_type: Some(subscription.subscriber_type.clone()),
            event_types: subscription.event_types.iter().map(|p| p.as_str().to_owned()).collect(),
            event_sources: subscription.event_sources.iter().map(|s| s.as_str().to_owned()).collect(),
            event_categories: subscription.event_categories.iter().map(|c| c.as_str().to_owned()).collect(),
            callback_url: Some(subscription.callback_url.clone()),
            webhook_secret: subscription.secret.clone(),
            retry_policy: Some(subscription.retry_policy),
            enabled: Some(subscription.enabled),
        }
    }
}

impl From<&SubscriptionPatch> for SubscriptionUpdate {
    fn from(patch: &SubscriptionPatch) -> Self {
        Self {
            enabled: patch.enabled,
            event_types: patch.event_types.as_ref().map(|t| t.iter().map(|p| p.as_str().to_owned()).collect()),
            event_sources: patch.event_sources.as_ref().map(|s| s.iter().map(|s| s.as_str().to_owned()).collect()),
            event_categories: patch
                .event_categories
                .as_ref()
                .map(|c| c.iter().map(|c| c.as_str().to_owned()).collect()),
            callback_url: patch.callback_url.clone(),
            retry_policy: patch.retry_policy,
        }
    }
}

/// `POST /api/v1/events/frontend`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FrontendAccepted {
    pub accepted: bool,
    pub event_id: EventId,
}

/// `POST /api/v1/events/frontend/batch`: `event_ids` in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FrontendBatchAccepted {
    pub accepted: usize,
    pub event_ids: Vec<EventId>,
}

/// `GET /api/v1/events/frontend/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FrontendHealth {
    pub status: String,
    pub nats: String,
    /// Whether events posted now go through JetStream (`[ingest] frontend_via_nats`, NATS connected,
    /// the stream and its consumer in place); false: they are stored directly.
    #[serde(default)]
    pub via_nats: bool,
}

/// Seed-compatible `GET /webhooks`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

/// `{"subscriptions": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubscriptionList {
    pub subscriptions: Vec<Arc<Subscription>>,
}

/// `GET /api/v1/events/{event_id}/deliveries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptList {
    pub attempts: Vec<DeliveryAttempt>,
}

impl From<&DlqSelector> for DlqRetry {
    fn from(selector: &DlqSelector) -> Self {
        match selector {
            DlqSelector::Ids(ids) => Self { ids: Some(ids.clone()), ..Self::default() },
            DlqSelector::Subscription(id) => Self { subscription_id: Some(*id), ..Self::default() },
            DlqSelector::Group(key) => Self { group: Some(key.clone()), ..Self::default() },
            DlqSelector::All => Self { all: Some(true), ..Self::default() },
        }
    }
}

/// The answer of a DLQ retry: how many entries left the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Retried {
    pub retried: usize,
}

/// The parameters that [`dlq_query`] reads back into the same query.
pub fn dlq_query_pairs(query: &DlqQuery) -> Vec<(&'static str, String)> {
    let mut pairs = Vec::new();
    if let Some(kind) = query.kind {
        pairs.push(("kind", kind.as_str().to_owned()));
    }
    if let Some(id) = query.subscription_id {
        pairs.push(("subscription_id", id.to_string()));
    }
    if let Some(id) = query.processor_id {
        pairs.push(("processor_id", id.to_string()));
    }
    pairs.push(("limit", query.limit.to_string()));
    pairs.push(("offset", query.offset.to_string()));
    pairs
}

/// The `event: dlq` payload of the live stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DlqChange {
    pub action: DlqAction,
    pub entry: Arc<DeadLetter>,
}

/// `POST /api/v1/events/processors`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessorCreate {
    pub processor_name: Option<String>,
    pub processor_type: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Higher runs first; default 0.
    pub priority: Option<i32>,
    pub filters: Option<ProcessorFiltersCreate>,
    /// A JSON object; default `{}`.
    pub config: Option<Value>,
    /// Default `[processing] max_retries` (3).
    pub max_retries: Option<u32>,
}

/// The `filters` of a [`ProcessorCreate`]; absent fields match everything.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessorFiltersCreate {
    pub event_type: Option<String>,
    pub event_source: Option<String>,
    pub event_category: Option<String>,
}

impl ProcessorCreate {
    /// A new, validated processor stamped now; `max_retries` defaults to `default_max_retries`.
    pub fn into_processor(self, default_max_retries: u32) -> Result<Processor, FieldError> {
        let name = self
            .processor_name
            .ok_or_else(|| FieldError::new("processor_name", "is required: a unique name of 1 to 128 characters"))?;
        let kind = self.processor_type.ok_or_else(|| {
            FieldError::new(
                "processor_type",
                format!("is required; accepted values: {}", ProcessorType::NAMES.join(", ")),
            )
        })?;
        let mut processor = Processor::new(name, ProcessorType::parse("processor_type", &kind)?, Timestamp::now());
        processor.enabled = self.enabled.unwrap_or(true);
        processor.priority = self.priority.unwrap_or(0);
        processor.max_retries = self.max_retries.unwrap_or(default_max_retries);
        processor.config = object("config", self.config)?;
        if let Some(filters) = self.filters {
            let field = |e: FieldError| e.within("filters");
            processor.filters = ProcessorFilters {
                event_type: filters
                    .event_type
                    .map(|p| TypePattern::parse("event_type", &p))
                    .transpose()
                    .map_err(field)?,
                event_source: filters
                    .event_source
                    .map(|s| EventSource::parse("event_source", &s))
                    .transpose()
                    .map_err(field)?,
                event_category: filters
                    .event_category
                    .map(|c| EventCategory::parse("event_category", &c))
                    .transpose()
                    .map_err(field)?,
            };
        }
        processor.validate()?;
        Ok(processor)
    }
}

impl From<&Processor> for ProcessorCreate {
    /// The body that registers a processor like `processor` (the server assigns id and times).
    fn from(processor: &Processor) -> Self {
        let filters = &processor.filters;
        Self {
            processor_name: Some(processor.processor_name.clone()),
            processor_type: Some(processor.processor_type.as_str().to_owned()),
            enabled: Some(processor.enabled),
            priority: Some(processor.priority),
            filters: Some(ProcessorFiltersCreate {
                event_type: filters.event_type.as_ref().map(|p| p.as_str().to_owned()),
                event_source: filters.event_source.map(|s| s.as_str().to_owned()),
                event_category: filters.event_category.map(|c| c.as_str().to_owned()),
            }),
            config: Some(Value::Object(processor.config.clone())),
            max_retries: Some(processor.max_retries),
        }
    }
}

/// `{"processors": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProcessorList {
    pub processors: Vec<Arc<Processor>>,
}

/// `GET /api/v1/events/{event_id}/results`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResultList {
    pub results: Vec<ProcessingResult>,
}

/// Parses the `enabled` parameter of `PUT /api/v1/events/processors/{id}/toggle`.
pub fn toggle_enabled<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<bool, FieldError> {
    let mut enabled = None;
    for (key, value) in pairs {
        match key {
            "enabled" => {
                enabled = Some(match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(FieldError::one_of(key, value, &["true", "false"])),
                });
            }
            _ => return Err(FieldError::new(key, "is not a parameter here; accepted: enabled")),
        }
    }
    enabled.ok_or_else(|| FieldError::new("enabled", "is required: `?enabled=true` or `?enabled=false`"))
}

/// `POST /api/v1/events/replay`: exactly one selection (`event_ids`, `stream_id`, or
/// `start_time`/`end_time`), narrowed by `event_type` and `event_source`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayCreate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_ids: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_source: Option<String>,
    /// None: every matching subscription and processor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<ReplayTargetCreate>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub confirm: bool,
}

/// The `target` of a [`ReplayCreate`]: one subscription or one processor.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayTargetCreate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processor_id: Option<String>,
}

const REPLAY_SELECTIONS: &str = "send exactly one selection: event_ids, stream_id, or start_time/end_time";

impl ReplayCreate {
    pub fn into_request(self) -> Result<ReplayRequest, FieldError> {
        let times = self.start_time.is_some() || self.end_time.is_some();
        let given: Vec<&str> = [
            (self.event_ids.is_some(), "event_ids"),
            (self.stream_id.is_some(), "stream_id"),
            (times, if self.start_time.is_some() { "start_time" } else { "end_time" }),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        let selection = match (given.as_slice(), self.event_ids, self.stream_id) {
            ([], ..) => return Err(FieldError::new("body", REPLAY_SELECTIONS)),
            ([first, second, ..], ..) => {
                return Err(FieldError::new(*second, format!("cannot be combined with {first}: {REPLAY_SELECTIONS}")));
            }
            (_, Some(ids), _) => {
                if ids.is_empty() {
                    return Err(FieldError::new("event_ids", "must list at least one event id"));
                }
                let ids = ids.iter().enumerate().map(|(i, id)| {
                    id.parse::<EventId>()
                        .map_err(|_| FieldError::new(format!("event_ids[{i}]"), format!("`{id}` is not an event id")))
                });
                ReplaySelection::Ids(ids.collect::<Result<_, _>>()?)
            }
            (_, _, Some(stream_id)) => {
                validate_stream_id("stream_id", &stream_id)?;
                ReplaySelection::Stream(stream_id)
            }
            _ => {
                let start = self.start_time.map(|t| timestamp("start_time", &t)).transpose()?;
                let end = self.end_time.map(|t| timestamp("end_time", &t)).transpose()?;
                if let (Some(start), Some(end)) = (start, end)
                    && end <= start
                {
                    return Err(FieldError::new("end_time", "must be after start_time"));
                }
                ReplaySelection::TimeRange { start, end }
            }
        };
        let target = match self.target {
            None => None,
            Some(ReplayTargetCreate { subscription_id: Some(id), processor_id: None }) => {
                Some(ReplayTarget::Subscription {
                    subscription_id: SubscriptionId(uuid_field("target.subscription_id", &id)?),
                })
            }
            Some(ReplayTargetCreate { subscription_id: None, processor_id: Some(id) }) => {
                Some(ReplayTarget::Processor { processor_id: ProcessorId(uuid_field("target.processor_id", &id)?) })
            }
            Some(_) => {
                return Err(FieldError::new(
                    "target",
                    "give exactly one of {\"subscription_id\": \"...\"} or {\"processor_id\": \"...\"}, or leave target out for every matching one",
                ));
            }
        };
        Ok(ReplayRequest {
            selection,
            event_type: self.event_type.map(|p| TypePattern::parse("event_type", &p)).transpose()?,
            event_source: self.event_source.map(|s| EventSource::parse("event_source", &s)).transpose()?,
            target,
            dry_run: self.dry_run,
            confirm: self.confirm,
        })
    }
}

impl From<&ReplayRequest> for ReplayCreate {
    fn from(request: &ReplayRequest) -> Self {
        let mut body = Self {
            event_type: request.event_type.as_ref().map(|p| p.as_str().to_owned()),
            event_source: request.event_source.map(|s| s.as_str().to_owned()),
            target: request.target.map(|target| match target {
                ReplayTarget::Subscription { subscription_id } => {
                    ReplayTargetCreate { subscription_id: Some(subscription_id.to_string()), processor_id: None }
                }
                ReplayTarget::Processor { processor_id } => {
                    ReplayTargetCreate { subscription_id: None, processor_id: Some(processor_id.to_string()) }
                }
            }),
            dry_run: request.dry_run,
            confirm: request.confirm,
            ..Self::default()
        };
        match &request.selection {
            ReplaySelection::Ids(ids) => body.event_ids = Some(ids.iter().map(ToString::to_string).collect()),
            ReplaySelection::Stream(stream_id) => body.stream_id = Some(stream_id.clone()),
            ReplaySelection::TimeRange { start, end } => {
                body.start_time = start.map(|t| t.to_string());
                body.end_time = end.map(|t| t.to_string());
            }
        }
        body
    }
}

fn uuid_field(field: &str, text: &str) -> Result<uuid::Uuid, FieldError> {
    uuid::Uuid::parse_str(text).map_err(|_| FieldError::new(field, format!("`{text}` is not a UUID")))
}

/// Parses `at_version` / `at_time` of `GET /api/v1/events/projections/{entity_type}/{entity_id}`.
pub fn projection_at<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<ProjectionAt, FieldError> {
    let mut at = ProjectionAt::Latest;
    for (key, value) in pairs {
        let next = match key {
            "at_version" => ProjectionAt::Version(
                value
                    .parse()
                    .ok()
                    .filter(|v| *v >= 1)
                    .ok_or_else(|| FieldError::new(key, format!("`{value}` is not a stream version, 1 or more")))?,
            ),
            "at_time" => ProjectionAt::Time(timestamp(key, value)?),
            _ => return Err(FieldError::new(key, "is not a parameter here; accepted: at_version, at_time")),
        };
        if at != ProjectionAt::Latest {
            return Err(FieldError::new(key, "give at_version or at_time, not both (nor one twice)"));
        }
        at = next;
    }
    Ok(at)
}

/// The parameters that [`projection_at`] reads back into `at`.
pub fn projection_pairs(at: ProjectionAt) -> Vec<(&'static str, String)> {
    match at {
        ProjectionAt::Latest => Vec::new(),
        ProjectionAt::Version(version) => vec![("at_version", version.to_string())],
        ProjectionAt::Time(time) => vec![("at_time", time.to_string())],
    }
}

/// `GET /health` as a client reads it (the server's [`crate::service::Health`] has static strings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthAnswer {
    pub status: String,
    pub version: String,
    pub uptime_s: u64,
    /// Absent from servers older than several-instance support.
    #[serde(default)]
    pub instance_id: String,
    pub storage: StorageHealthAnswer,
    pub nats: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StorageHealthAnswer {
    pub backend: String,
    pub ok: bool,
}

#[cfg(test)]
mod round_trip_tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn query_pairs_read_back_into_the_same_query() {
        let query = EventQuery {
            filter: EventFilter {
                event_type: Some(TypePattern::parse("event_type", "order.>").unwrap()),
                event_source: Some(EventSource::IotDevice),
                event_category: Some(EventCategory::Payment),
                status: Some(EventStatus::Failed),
                user_id: Some("u 1&x=y".into()),
                stream_id: Some("order:7".into()),
                tenant_id: Some("t".into()),
                correlation_id: Some("c".into()),
                start_time: Some(Timestamp::parse("2026-01-02T03:04:05.123456Z").unwrap()),
                end_time: Some(Timestamp::parse("2026-02-02T00:00:00Z").unwrap()),
                text: Some("needle".into()),
            },
            limit: 7,
            offset: 21,
            order: Order::Asc,
        };
        let pairs = query_pairs(&query);
        let parsed = QueryParams::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
        assert_eq!(parsed.query, query);
        assert_eq!(query_pairs(&EventQuery::default()).len(), 3, "an empty filter adds no pairs");
    }

    #[test]
    fn dlq_pairs_and_selectors_read_back() {
        let query = DlqQuery {
            kind: Some(DeadLetterKind::Processing),
            subscription_id: Some(SubscriptionId::new_v7()),
            processor_id: Some(ProcessorId::new_v7()),
            limit: 5,
            offset: 10,
        };
        let pairs = dlq_query_pairs(&query);
        assert_eq!(dlq_query(pairs.iter().map(|(k, v)| (*k, v.as_str()))).unwrap(), query);
        for selector in [
            DlqSelector::All,
            DlqSelector::Subscription(SubscriptionId::new_v7()),
            DlqSelector::Ids(vec![DlqId::new_v7()]),
            DlqSelector::Group(DlqGroupKey {
                kind: DeadLetterKind::Delivery,
                subscription_id: Some(SubscriptionId::new_v7()),
                processor_id: None,
                last_status_code: None,
                error_class: Some("connection refused".into()),
            }),
        ] {
            let body = serde_json::to_value(DlqRetry::from(&selector)).unwrap();
            let parsed: DlqRetry = serde_json::from_value(body).unwrap();
            assert_eq!(parsed.into_selector().unwrap(), selector);
        }
        let two = DlqRetry { all: Some(true), ..DlqRetry::from(&DlqSelector::Subscription(SubscriptionId::new_v7())) };
        assert!(two.into_selector().unwrap_err().to_string().contains("exactly one of"));
        let groups = DlqGroupQuery {
            kind: Some(DeadLetterKind::Delivery),
            buckets: 12,
            until: Timestamp::parse("2026-01-02T03:04:05.123456Z").unwrap(),
        };
        let pairs = dlq_group_query_pairs(&groups);
        let now = Timestamp::now();
        assert_eq!(dlq_group_query(pairs.iter().map(|(k, v)| (*k, v.as_str())), now).unwrap(), groups);
        assert_eq!(dlq_group_query([], now).unwrap(), DlqGroupQuery::new(now));
        for (key, value) in
            [("buckets", "0"), ("buckets", "201"), ("kind", "webhook"), ("until", "soon"), ("size", "1")]
        {
            let error = dlq_group_query([(key, value)], now).unwrap_err();
            assert_eq!(error.field, key, "{error}");
        }
    }

    #[test]
    fn new_events_and_subscriptions_survive_their_create_bodies() {
        let mut event = NewEvent::new("order.paid");
        event.event_source = EventSource::ExternalApi;
        event.stream_id = Some("order:1".into());
        event.expected_version = Some(0);
        event.data.insert("n".into(), json!(1));
        event.idempotency_key = Some("k".into());
        let body = serde_json::to_value(EventCreate::from(&event)).unwrap();
        assert_eq!(serde_json::from_value::<EventCreate>(body).unwrap().into_new_event().unwrap(), event);

        let mut subscription = SubscriptionCreate {
            callback_url: Some("https://example.com/hook".into()),
            event_types: vec!["user.*".into()],
            event_categories: vec!["payment".into()],
            webhook_secret: Some("s3cret".into()),
            ..SubscriptionCreate::default()
        }
        .into_subscription()
        .unwrap();
        subscription.enabled = false;
        let body = serde_json::to_value(SubscriptionCreate::from(&subscription)).unwrap();
        let again = serde_json::from_value::<SubscriptionCreate>(body).unwrap().into_subscription().unwrap();
        assert_eq!(
            (again.event_types, again.event_categories, again.secret, again.enabled),
            (subscription.event_types, subscription.event_categories, subscription.secret, false)
        );
    }

    fn processor(body: Value) -> Result<Processor, FieldError> {
        serde_json::from_value::<ProcessorCreate>(body).unwrap().into_processor(3)
    }

    #[test]
    fn processor_create_applies_defaults_and_names_bad_fields() {
        let created = processor(json!({"processor_name": "audit", "processor_type": "log"})).unwrap();
        assert!(created.enabled);
        assert_eq!((created.priority, created.max_retries), (0, 3));
        assert!(created.config.is_empty());

        let cases = [
            (json!({"processor_type": "log"}), "processor_name"),
            (json!({"processor_name": "a"}), "processor_type"),
            (json!({"processor_name": "a", "processor_type": "teleport"}), "processor_type"),
            (json!({"processor_name": " ", "processor_type": "log"}), "processor_name"),
            (json!({"processor_name": "a", "processor_type": "log", "config": [1]}), "config"),
            (json!({"processor_name": "a", "processor_type": "webhook"}), "config.url"),
            (json!({"processor_name": "a", "processor_type": "log", "max_retries": 101}), "max_retries"),
            (
                json!({"processor_name": "a", "processor_type": "log", "filters": {"event_type": "a..b"}}),
                "filters.event_type",
            ),
            (
                json!({"processor_name": "a", "processor_type": "log", "filters": {"event_source": "x"}}),
                "filters.event_source",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(processor(body.clone()).unwrap_err().field, field, "{body}");
        }

        let mut original = Processor::new("pii", ProcessorType::Redact, Timestamp::now());
        original.config.insert("fields".into(), json!(["email"]));
        original.priority = -4;
        original.filters.event_source = Some(EventSource::Frontend);
        let body = serde_json::to_value(ProcessorCreate::from(&original)).unwrap();
        let again = processor(body).unwrap();
        assert_eq!((again.config, again.priority, again.filters), (original.config, -4, original.filters));
    }

    fn replay(body: Value) -> Result<ReplayRequest, FieldError> {
        serde_json::from_value::<ReplayCreate>(body).unwrap().into_request()
    }

    #[test]
    fn replay_takes_exactly_one_selection() {
        let cases = [
            (json!({}), "body"),
            (json!({"stream_id": "user:1", "event_ids": ["x"]}), "stream_id"),
            (json!({"stream_id": "user:1", "end_time": "2026-01-01T00:00:00Z"}), "end_time"),
            (json!({"event_ids": []}), "event_ids"),
            (json!({"event_ids": ["nope"]}), "event_ids[0]"),
            (json!({"stream_id": "nocolon"}), "stream_id"),
            (json!({"start_time": "yesterday"}), "start_time"),
            (json!({"start_time": "2026-01-02T00:00:00Z", "end_time": "2026-01-01T00:00:00Z"}), "end_time"),
            (json!({"stream_id": "user:1", "event_type": "a..b"}), "event_type"),
            (json!({"stream_id": "user:1", "event_source": "moon"}), "event_source"),
            (json!({"stream_id": "user:1", "target": {}}), "target"),
            (json!({"stream_id": "user:1", "target": {"subscription_id": "x"}}), "target.subscription_id"),
        ];
        for (body, field) in cases {
            assert_eq!(replay(body.clone()).unwrap_err().field, field, "{body}");
        }
        let request = replay(json!({"start_time": "2026-01-01T00:00:00Z", "event_type": "user.*", "dry_run": true,
            "target": {"processor_id": ProcessorId::new_v7()}}))
        .unwrap();
        assert!(matches!(request.selection, ReplaySelection::TimeRange { start: Some(_), end: None }));
        assert!(request.dry_run && !request.confirm);
        let again = serde_json::to_value(ReplayCreate::from(&request)).unwrap();
        assert_eq!(replay(again).unwrap(), request);
    }

    #[test]
    fn projection_points_parse_and_read_back() {
        assert_eq!(projection_at([]).unwrap(), ProjectionAt::Latest);
        for at in [ProjectionAt::Version(3), ProjectionAt::Time(Timestamp::parse("2026-01-01T00:00:00Z").unwrap())] {
            let pairs = projection_pairs(at);
            assert_eq!(projection_at(pairs.iter().map(|(k, v)| (*k, v.as_str()))).unwrap(), at);
        }
        let cases = [
            (vec![("at_version", "0")], "at_version"),
            (vec![("at_version", "x")], "at_version"),
            (vec![("at_time", "noon")], "at_time"),
            (vec![("at_version", "1"), ("at_time", "2026-01-01T00:00:00Z")], "at_time"),
            (vec![("version", "1")], "version"),
        ];
        for (pairs, field) in cases {
            assert_eq!(projection_at(pairs.clone()).unwrap_err().field, field, "{pairs:?}");
        }
        assert!(toggle_enabled([("enabled", "true")]).unwrap());
        assert!(!toggle_enabled([("enabled", "false")]).unwrap());
        for pairs in [vec![], vec![("enabled", "yes")], vec![("on", "true")]] {
            assert!(toggle_enabled(pairs.clone()).is_err(), "{pairs:?}");
        }
        assert_eq!(toggle_enabled([]).unwrap_err().field, "enabled");
    }
}

/// `POST /api/v1/events/archive`: archive the processed and failed events with a `timestamp` before
/// `before` (RFC 3339, not in the future); with `delete`, then remove the archived ones from the store.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveCreate {
    pub before: String,
    #[serde(default)]
    pub delete: bool,
}

impl ArchiveCreate {
    /// The time `before` names.
    pub fn before(&self) -> Result<Timestamp, FieldError> {
        timestamp("before", &self.before)
    }
}
