//! The entry points the fuzz targets (`fuzz/`) and their corpus test drive: every parser that takes a
//! client's bytes, called the way the handlers call it, with the checks a fuzzer cannot know on its own.
//! Each function panics when a rule breaks: an input answered with anything but a 4xx error, an
//! accepted value that does not survive the trip through the wire form the remote client sends, or a
//! type pattern whose index prefix would miss a type it matches. Not an API: hidden from the docs.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::extract::{from_value, parse_json, parse_query};
use super::routes::webhooks::WebhookUpdate;
use super::routes::{frontend, rudderstack, streams};
use crate::config::Config;
use crate::domain::{FieldError, TypePattern};
use crate::wire::{
    DlqRetry, EventCreate, FrontendBatch, FrontendEvent, ProcessorCreate, QueryParams, ReplayCreate,
    SubscriptionCreate, SubscriptionUpdate, WebhookCreate,
};

/// A rejection must be the client's fault (4xx) and say what to fix; 422 names the field.
fn check_error(what: &str, error: &ApiError) {
    assert!(error.status.is_client_error(), "{what}: a bad input got {} ({})", error.status, error.message);
    assert!(!error.message.trim().is_empty(), "{what}: an error without a message");
    if error.status.as_u16() == 422 {
        assert!(error.field.as_deref().is_some_and(|f| !f.is_empty()), "{what}: a 422 naming no field");
    }
    serde_json::to_vec(&error.body()).unwrap_or_else(|e| panic!("{what}: the error body does not serialize: {e}"));
}

fn check_field_error(what: &str, error: FieldError) {
    check_error(what, &ApiError::invalid(error));
}

/// Serializes a wire value and parses it back the way the server reads a body.
fn through_the_wire<T: Serialize + DeserializeOwned>(what: &str, value: &T) -> T {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|e| panic!("{what}: does not serialize: {e}"));
    parse_json(&bytes).unwrap_or_else(|e| panic!("{what}: its own wire form is refused: {} {}", e.status, e.message))
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The ingest bodies: `POST /api/v1/events/create` (and `/events`), `/batch`, the frontend single and
/// batch, and RudderStack; every one read from the same bytes.
pub fn ingest_bodies(bytes: &[u8]) {
    match parse_json::<EventCreate>(bytes) {
        Err(error) => check_error("create", &error),
        Ok(body) => match body.into_new_event() {
            Err(error) => check_field_error("create", error),
            Ok(event) => {
                // The remote client sends `EventCreate::from(&NewEvent)`: attached must store what
                // embedded stores.
                let again = through_the_wire("create", &EventCreate::from(&event))
                    .into_new_event()
                    .unwrap_or_else(|e| panic!("create: its own wire form fails validation: {e}"));
                assert_eq!(event, again, "create: the wire form changes the event");
            }
        },
    }
    match parse_json::<Vec<Value>>(bytes) {
        Err(error) => check_error("batch", &error),
        Ok(items) => {
            for item in items {
                if let Err(error) = from_value::<EventCreate>(item).and_then(EventCreate::into_new_event) {
                    check_field_error("batch item", error);
                }
            }
        }
    }
    let client = Map::from_iter([("ip".to_owned(), Value::String("127.0.0.1".into()))]);
    match parse_json::<FrontendEvent>(bytes) {
        Err(error) => check_error("frontend", &error),
        Ok(body) => {
            if let Err(error) = body.into_new_event(&client) {
                check_field_error("frontend", error);
            }
        }
    }
    match parse_json::<FrontendBatch>(bytes) {
        Err(error) => check_error("frontend batch", &error),
        Ok(body) => {
            if let Err(error) = frontend::batch_events(body, client) {
                check_error("frontend batch", &error);
            }
        }
    }
    match rudderstack::parse_messages(bytes, 1000) {
        Err(error) => check_error("rudderstack", &error),
        Ok(messages) => {
            assert_eq!(messages.events.len(), messages.positions.len(), "rudderstack: events without positions");
            for failed in &messages.failed {
                assert!(failed.error.field.is_some(), "rudderstack: a failed message naming no field");
            }
        }
    }
}

/// The management bodies: subscription, webhook and processor create and patch, replay, DLQ retry
/// and the JSON form of a history query.
pub fn management_bodies(bytes: &[u8]) {
    match parse_json::<SubscriptionCreate>(bytes) {
        Err(error) => check_error("subscription", &error),
        Ok(body) => match body.into_subscription() {
            Err(error) => check_field_error("subscription", error),
            Ok(subscription) => {
                let sent = SubscriptionCreate::from(&subscription);
                let again = through_the_wire("subscription", &sent)
                    .into_subscription()
                    .unwrap_or_else(|e| panic!("subscription: its own wire form fails validation: {e}"));
                assert_eq!(json(&sent), json(&SubscriptionCreate::from(&again)), "subscription: changed by the wire");
            }
        },
    }
    match parse_json::<SubscriptionUpdate>(bytes) {
        Err(error) => check_error("subscription patch", &error),
        Ok(body) => match body.into_patch() {
            Err(error) => check_field_error("subscription patch", error),
            Ok(patch) => {
                let again = through_the_wire("subscription patch", &SubscriptionUpdate::from(&patch))
                    .into_patch()
                    .unwrap_or_else(|e| panic!("subscription patch: its own wire form fails validation: {e}"));
                assert_eq!(patch, again, "subscription patch: changed by the wire");
            }
        },
    }
    match parse_json::<WebhookCreate>(bytes) {
        Err(error) => check_error("webhook", &error),
        Ok(body) => {
            if let Err(error) = body.into_subscription() {
                check_field_error("webhook", error);
            }
        }
    }
    if let Err(error) = parse_json::<WebhookUpdate>(bytes) {
        check_error("webhook patch", &error);
    }
    match parse_json::<ProcessorCreate>(bytes) {
        Err(error) => check_error("processor", &error),
        Ok(body) => match body.into_processor(3) {
            Err(error) => check_field_error("processor", error),
            Ok(processor) => {
                let sent = ProcessorCreate::from(&processor);
                let again = through_the_wire("processor", &sent)
                    .into_processor(3)
                    .unwrap_or_else(|e| panic!("processor: its own wire form fails validation: {e}"));
                assert_eq!(json(&sent), json(&ProcessorCreate::from(&again)), "processor: changed by the wire");
            }
        },
    }
    match parse_json::<ReplayCreate>(bytes) {
        Err(error) => check_error("replay", &error),
        Ok(body) => match body.into_request() {
            Err(error) => check_field_error("replay", error),
            Ok(request) => {
                let sent = ReplayCreate::from(&request);
                let again = through_the_wire("replay", &sent)
                    .into_request()
                    .unwrap_or_else(|e| panic!("replay: its own wire form fails validation: {e}"));
                assert_eq!(request, again, "replay: changed by the wire");
            }
        },
    }
    match parse_json::<DlqRetry>(bytes) {
        Err(error) => check_error("dlq retry", &error),
        Ok(body) => match body.into_selector() {
            Err(error) => check_field_error("dlq retry", error),
            Ok(selector) => {
                let again = through_the_wire("dlq retry", &DlqRetry::from(&selector))
                    .into_selector()
                    .unwrap_or_else(|e| panic!("dlq retry: its own wire form fails validation: {e}"));
                assert_eq!(selector, again, "dlq retry: changed by the wire");
            }
        },
    }
    match parse_json::<Map<String, Value>>(bytes) {
        Err(error) => check_error("query body", &error),
        Ok(body) => {
            if let Err(error) = QueryParams::from_json(body) {
                check_field_error("query body", error);
            }
        }
    }
}

/// Every query-string parser: history and the live stream, the DLQ list, a processor toggle, a
/// projection's point in time and a stream page. The bytes are a raw query string, decoded as axum's
/// `Query` decodes it.
pub fn query_string(bytes: &[u8]) {
    let pairs = match parse_query(&String::from_utf8_lossy(bytes)) {
        Ok(pairs) => pairs,
        Err(error) => return check_error("query string", &error),
    };
    let pairs = || pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    match QueryParams::from_pairs(pairs()) {
        Err(error) => check_field_error("query", error),
        Ok(params) => {
            // The remote client and the console send `query_pairs(query)`.
            let sent = crate::wire::query_pairs(&params.query);
            let again = QueryParams::from_pairs(sent.iter().map(|(k, v)| (*k, v.as_str())))
                .unwrap_or_else(|e| panic!("query: its own pairs {sent:?} are refused: {e}"));
            assert_eq!(params.query, again.query, "query: changed by its pairs {sent:?}");
        }
    }
    match crate::wire::dlq_query(pairs()) {
        Err(error) => check_field_error("dlq query", error),
        Ok(query) => {
            let sent = crate::wire::dlq_query_pairs(&query);
            let again = crate::wire::dlq_query(sent.iter().map(|(k, v)| (*k, v.as_str())))
                .unwrap_or_else(|e| panic!("dlq query: its own pairs {sent:?} are refused: {e}"));
            assert_eq!(query, again, "dlq query: changed by its pairs {sent:?}");
        }
    }
    if let Err(error) = crate::wire::toggle_enabled(pairs()) {
        check_field_error("toggle", error);
    }
    match crate::wire::projection_at(pairs()) {
        Err(error) => check_field_error("projection", error),
        Ok(at) => {
            let sent = crate::wire::projection_pairs(at);
            let again = crate::wire::projection_at(sent.iter().map(|(k, v)| (*k, v.as_str())))
                .unwrap_or_else(|e| panic!("projection: its own pairs {sent:?} are refused: {e}"));
            assert_eq!(at, again, "projection: changed by its pairs {sent:?}");
        }
    }
    if let Err(error) = streams::page(pairs()) {
        check_field_error("stream page", error);
    }
}

/// A type pattern (first line) and an event type (the rest): a pattern that parses reads back as
/// itself, matches the type it names, and every type it matches starts with its literal prefix (the
/// index range history queries scan).
pub fn type_pattern(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let (pattern, event_type) = text.split_once('\n').unwrap_or((&text, ""));
    let parsed = match TypePattern::parse("event_type", pattern) {
        Err(error) => return check_field_error("type pattern", error),
        Ok(parsed) => parsed,
    };
    let again = TypePattern::parse("event_type", parsed.as_str())
        .unwrap_or_else(|e| panic!("type pattern `{parsed}` does not parse again: {e}"));
    assert_eq!(parsed, again, "type pattern `{parsed}` changes when parsed again");
    if let Some(exact) = parsed.exact() {
        assert!(parsed.matches(exact), "type pattern `{parsed}` does not match the type it names");
    }
    if parsed.matches(event_type) {
        assert!(
            event_type.starts_with(&parsed.literal_prefix()),
            "type pattern `{parsed}` matches `{event_type}` outside its prefix `{}`",
            parsed.literal_prefix()
        );
    }
}

const SECRET: &str = "fuzz-secret-6f1c0d";

/// A config file: it loads or names what is wrong, and what loads can build every option the server
/// starts with.
pub fn config(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    match Config::from_toml(text) {
        Err(error) => assert!(!error.to_string().trim().is_empty(), "config: an error without a message"),
        Ok(config) => {
            let _options = (config.engine_options(), config.store_options());
            let limits = super::Limits::from_config(&config);
            let _cors = (
                super::layers::cors(&limits.cors_origins, &[axum::http::Method::GET]),
                super::layers::cors(&limits.cors_frontend_origins, &[axum::http::Method::GET]),
            );
            // Debug output is what logs show: it must never carry a secret, whatever else is set.
            let mut config = config;
            config.auth.api_keys = vec![SECRET.to_owned()];
            config.rudderstack.secret = SECRET.to_owned();
            let shown = format!("{config:?} {:?}", super::Limits::from_config(&config));
            assert!(!shown.contains(SECRET), "config: a secret shows in Debug output: {shown}");
        }
    }
}

#[cfg(test)]
mod tests {
    //! What CI runs without nightly: every file of the fuzz seeds and regressions (`fuzz/seeds/<target>`,
    //! `fuzz/regressions/<target>`) through its target, and proptest's inputs through all of them.

    use std::path::Path;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// A fuzz target: its name (the folder of its files) and its entry point.
    type Target = (&'static str, fn(&[u8]));

    const TARGETS: &[Target] = &[
        ("ingest_bodies", ingest_bodies),
        ("management_bodies", management_bodies),
        ("query_string", query_string),
        ("type_pattern", type_pattern),
        ("config", config),
    ];

    #[test]
    fn the_seeds_and_every_regression_pass_their_target() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut ran = 0;
        for (target, run) in TARGETS {
            for folder in ["seeds", "regressions"] {
                let Ok(entries) = std::fs::read_dir(root.join(folder).join(target)) else { continue };
                for entry in entries {
                    let path = entry.unwrap().path();
                    let bytes = std::fs::read(&path).unwrap();
                    let outcome = std::panic::catch_unwind(|| run(&bytes));
                    assert!(outcome.is_ok(), "{} fails its target", path.display());
                    ran += 1;
                }
            }
        }
        assert!(ran >= 25, "only {ran} corpus files were found under {}", root.display());
    }

    /// Text made of the pieces the parsers care about, so random inputs reach past the first check.
    fn pieces() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("user".to_owned()),
            Just(".".to_owned()),
            Just("*".to_owned()),
            Just(">".to_owned()),
            Just(":".to_owned()),
            Just("-".to_owned()),
            Just("_".to_owned()),
            Just("é".to_owned()),
            Just(" ".to_owned()),
            Just("2026-01-01T00:00:00Z".to_owned()),
            Just("9223372036854775807".to_owned()),
            Just("-1".to_owned()),
            "[a-z0-9]{0,3}",
            any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..8).prop_map(|parts| parts.concat())
    }

    /// A JSON value built from the fields the bodies know, with values of every kind.
    fn body() -> impl Strategy<Value = serde_json::Value> {
        let keys = prop::sample::select(vec![
            "event_type",
            "type",
            "event_source",
            "source",
            "event_category",
            "user_id",
            "tenant_id",
            "data",
            "payload",
            "metadata",
            "context",
            "timestamp",
            "stream_id",
            "expected_version",
            "correlation_id",
            "idempotency_key",
            "events",
            "client_info",
            "event",
            "userId",
            "anonymousId",
            "messageId",
            "properties",
            "traits",
            "subscriber_name",
            "event_types",
            "callback_url",
            "retry_policy",
            "enabled",
            "url",
            "secret",
            "active",
            "processor_name",
            "processor_type",
            "filters",
            "config",
            "max_retries",
            "priority",
            "event_ids",
            "start_time",
            "end_time",
            "target",
            "dry_run",
            "confirm",
            "ids",
            "all",
            "subscription_id",
            "limit",
            "offset",
            "order",
            "status",
            "since_seq",
            "text",
        ]);
        let leaf = prop_oneof![
            Just(json!(null)),
            any::<bool>().prop_map(|b| json!(b)),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            pieces().prop_map(|s| json!(s)),
        ];
        leaf.prop_recursive(3, 24, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(keys.clone(), inner, 0..6)
                    .prop_map(|map| map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn json_bodies_never_panic(value in body()) {
            let bytes = serde_json::to_vec(&value).unwrap();
            ingest_bodies(&bytes);
            management_bodies(&bytes);
        }

        #[test]
        fn raw_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            for (_, run) in TARGETS {
                run(&bytes);
            }
        }

        #[test]
        fn query_strings_never_panic(
            pairs in prop::collection::vec((prop::sample::select(vec![
                "event_type", "type", "event_source", "event_category", "status", "stream_id", "start_time",
                "end_time", "since", "limit", "offset", "order", "text", "since_seq", "kind", "subscription_id",
                "processor_id", "enabled", "at_version", "at_time", "from_version", "access_token",
            ]), pieces()), 0..5)
        ) {
            let text = serde_urlencoded::to_string(&pairs).unwrap();
            query_string(text.as_bytes());
        }

        #[test]
        fn type_patterns_never_panic(pattern in pieces(), event_type in pieces()) {
            type_pattern(format!("{pattern}\n{event_type}").as_bytes());
        }
    }
}
