//! Operations through the HTTP API: `/metrics` parsed as Prometheus text, request and correlation ids,
//! trace context carried to deliveries and webhook processors, the RudderStack webhook, the OpenAPI
//! document against its committed copy, CORS, and the fixes for what outside clients tripped on.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::sink::Sink;
use crate::support::{TestServer, assert_error};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A histogram series' buckets: (upper bound, cumulative count).
type Buckets = Vec<(f64, f64)>;

/// One sample of a metrics exposition.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A metrics exposition read by the rules of the Prometheus text format / OpenMetrics: every sample
/// belongs to a family declared with `# TYPE`, label values are quoted and escaped, counters end in
/// `_total`, histograms have cumulative `le` buckets ending at `+Inf` equal to `_count`, and the text
/// ends with `# EOF`.
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut exposition = Self::default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.last(), Some(&"# EOF"), "the exposition ends with # EOF");
        for line in &lines[..lines.len() - 1] {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "type {kind}");
                assert!(exposition.types.insert(name.to_owned(), kind.to_owned()).is_none(), "{name} typed twice");
                continue;
            }
            if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line {line:?}");
            exposition.samples.push(parse_sample(line));
        }
        for sample in &exposition.samples {
            let family = exposition.family_of(&sample.name).unwrap_or_else(|| panic!("{} has no # TYPE", sample.name));
            match exposition.types[family].as_str() {
                "counter" => assert!(sample.name.ends_with("_total"), "counter sample {}", sample.name),
                "histogram" => assert!(
                    ["_bucket", "_sum", "_count"].iter().any(|s| sample.name == format!("{family}{s}")),
                    "histogram sample {}",
                    sample.name
                ),
                _ => assert_eq!(&sample.name, family),
            }
        }
        exposition.check_histograms();
        exposition
    }

    fn family_of(&self, sample: &str) -> Option<&str> {
        let candidates = [sample, sample.trim_end_matches("_total"), sample.trim_end_matches("_bucket")];
        let more = [sample.trim_end_matches("_sum"), sample.trim_end_matches("_count")];
        candidates.into_iter().chain(more).find_map(|name| self.types.get_key_value(name).map(|(k, _)| k.as_str()))
    }

    fn check_histograms(&self) {
        for (family, _) in self.types.iter().filter(|(_, kind)| *kind == "histogram") {
            let mut series: BTreeMap<Vec<(String, String)>, Buckets> = BTreeMap::new();
            for sample in self.samples.iter().filter(|s| s.name == format!("{family}_bucket")) {
                let le = sample.labels.get("le").expect("bucket has le");
                let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().expect("le is a number") };
                let key = sample.labels.iter().filter(|(k, _)| *k != "le").map(|(k, v)| (k.clone(), v.clone()));
                series.entry(key.collect()).or_default().push((bound, sample.value));
            }
            for (labels, buckets) in series {
                assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{family} {labels:?}");
                assert_eq!(buckets.last().unwrap().0, f64::INFINITY, "{family} ends at +Inf");
                let count = self
                    .samples
                    .iter()
                    .find(|s| {
                        s.name == format!("{family}_count")
                            && s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).eq(labels.iter().cloned())
                    })
                    .expect("histogram count");
                assert_eq!(count.value, buckets.last().unwrap().1, "{family}: +Inf bucket = count");
            }
        }
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .map(|s| s.value)
    }

    fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        self.samples.iter().filter(|s| s.name == name).filter_map(|s| s.labels.get(label).cloned()).collect()
    }
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).expect("sample name");
    let name = &line[..name_end];
    assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "metric name {name:?}");
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '}' {
                end = Some(i);
                break;
            }
            let key_start = i;
            let mut key_end = i;
            for (j, c) in chars.by_ref() {
                if c == '=' {
                    key_end = j;
                    break;
                }
            }
            let key = inner[key_start..key_end].trim_start_matches(',').to_owned();
            assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "label value is quoted in {line}");
            let mut value = String::new();
            loop {
                match chars.next().expect("closing quote").1 {
                    '\\' => match chars.next().expect("escape").1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break,
                    other => value.push(other),
                }
            }
            labels.insert(key, value);
            if chars.peek().map(|(_, c)| *c) == Some(',') {
                chars.next();
            }
        }
        let end = end.expect("closing brace");
        rest = &inner[end + 1..];
    }
    let value = rest.trim().split(' ').next().expect("value");
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("value {v:?} in {line}")),
    };
    Sample { name: name.to_owned(), labels, value }
}

async fn scrape(server: &TestServer) -> Exposition {
    let response = server.client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text; version=1.0.0"), "{content_type}");
    Exposition::parse(&response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_types_templates_and_labels() {
    let server = TestServer::with_config(|c| c.processing.enabled = true).await;
    let sink = Sink::start().await;
    let (status, _) =
        server.post("/api/v1/events/processors", &json!({"processor_name": "audit", "processor_type": "log"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, subscription) =
        server.post("/api/v1/events/subscriptions", &json!({"callback_url": sink.url("ok")})).await;
    assert_eq!(status, StatusCode::CREATED);
    let subscription_id = subscription["subscription_id"].as_str().unwrap().to_owned();

    let event = server.create(json!({"event_type": "order.paid", "idempotency_key": "k1"})).await;
    let (status, _) =
        server.post("/api/v1/events/create", &json!({"event_type": "order.paid", "idempotency_key": "k1"})).await;
    assert_eq!(status, StatusCode::OK, "a duplicate");
    let (status, _) = server.post("/api/v1/events/frontend", &json!({"event_type": "page.viewed"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = event["event_id"].as_str().unwrap();
    assert_eq!(server.get(&format!("/api/v1/events/{id}")).await.0, StatusCode::OK);
    assert_eq!(server.get("/no/such/path/4711").await.0, StatusCode::NOT_FOUND);
    sink.wait_for("ok", 2, Duration::from_secs(10)).await;
    let live = server.sse("/api/v1/events/live", &[]).await;

    // Processing and delivery outcomes are recorded after the sends; wait for them.
    let mut metrics = scrape(&server).await;
    for _ in 0..100 {
        let delivered = metrics
            .value("eventdeck_deliveries_total", &[("subscription_id", &subscription_id), ("outcome", "delivered")]);
        let processed =
            metrics.value("eventdeck_processing_runs_total", &[("processor", "audit"), ("outcome", "success")]);
        if delivered == Some(2.0) && processed == Some(2.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        metrics = scrape(&server).await;
    }
    let types = |name: &str| metrics.types.get(name).map(String::as_str);
    for (family, kind) in [
        ("eventdeck_events_ingested", "counter"),
        ("eventdeck_ingest_duplicates", "counter"),
        ("eventdeck_http_requests", "counter"),
        ("eventdeck_http_request_duration_seconds", "histogram"),
        ("eventdeck_commit_duration_seconds", "histogram"),
        ("eventdeck_commit_events", "histogram"),
        ("eventdeck_deliveries", "counter"),
        ("eventdeck_delivery_duration_seconds", "histogram"),
        ("eventdeck_delivery_lag_seconds", "histogram"),
        ("eventdeck_processing_runs", "counter"),
        ("eventdeck_events_pending", "gauge"),
        ("eventdeck_dlq_entries", "gauge"),
        ("eventdeck_live_clients", "gauge"),
        ("eventdeck_nats_connected", "gauge"),
    ] {
        assert_eq!(types(family), Some(kind), "{family}");
    }
    assert_eq!(metrics.value("eventdeck_events_ingested_total", &[("source", "backend")]), Some(1.0));
    assert_eq!(metrics.value("eventdeck_events_ingested_total", &[("source", "frontend")]), Some(1.0));
    assert_eq!(metrics.value("eventdeck_ingest_duplicates_total", &[]), Some(1.0));
    assert_eq!(
        metrics.value("eventdeck_deliveries_total", &[("subscription_id", &subscription_id), ("outcome", "delivered")]),
        Some(2.0)
    );
    assert_eq!(metrics.value("eventdeck_delivery_lag_seconds_count", &[]), Some(2.0));
    assert_eq!(
        metrics.value("eventdeck_processing_runs_total", &[("processor", "audit"), ("outcome", "success")]),
        Some(2.0)
    );
    assert_eq!(metrics.value("eventdeck_commit_events_count", &[]), Some(3.0), "three commits");
    assert_eq!(metrics.value("eventdeck_live_clients", &[]), Some(1.0));
    assert_eq!(metrics.value("eventdeck_nats_connected", &[]), Some(0.0));
    assert_eq!(metrics.value("eventdeck_dlq_entries", &[("kind", "delivery")]), Some(0.0));
    assert_eq!(metrics.value("eventdeck_events_pending", &[]), Some(0.0));

    // Routes are templates, never raw ids or unknown paths.
    let routes = metrics.label_values("eventdeck_http_requests_total", "route");
    assert!(routes.contains(&"/api/v1/events/{event_id}".to_owned()), "{routes:?}");
    assert!(routes.contains(&"unmatched".to_owned()), "{routes:?}");
    assert!(routes.iter().all(|r| !r.contains(id) && !r.contains("4711")), "{routes:?}");
    assert_eq!(
        metrics.value(
            "eventdeck_http_requests_total",
            &[("route", "/api/v1/events/create"), ("method", "POST"), ("status", "201")]
        ),
        Some(1.0)
    );
    assert!(
        metrics.value("eventdeck_http_request_duration_seconds_count", &[("route", "/api/v1/events/frontend")])
            == Some(1.0)
    );

    drop(live);
    let mut closed = scrape(&server).await;
    for _ in 0..100 {
        if closed.value("eventdeck_live_clients", &[]) == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        closed = scrape(&server).await;
    }
    assert_eq!(closed.value("eventdeck_live_clients", &[]), Some(0.0), "a closed stream is no longer counted");
    server.stop().await;
}

#[tokio::test]
async fn two_servers_in_one_process_keep_their_own_metrics() {
    let first = TestServer::start().await;
    let second = TestServer::start().await;
    first.create(json!({"event_type": "a.b"})).await;
    let count = |e: &Exposition| e.value("eventdeck_events_ingested_total", &[("source", "backend")]);
    assert_eq!(count(&scrape(&first).await), Some(1.0));
    assert_eq!(count(&scrape(&second).await), Some(0.0));
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let server = TestServer::with_config(|c| c.auth.api_keys = vec!["k".into()]).await;
    let request_id = |response: &reqwest::Response| {
        response.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned()).expect("x-request-id")
    };
    let fresh = |id: &str| uuid::Uuid::parse_str(id).map(|u| u.get_version_num()).unwrap_or(0) == 7;

    let own = server.client.get(server.url("/health")).header("x-request-id", "trace-me.42").send().await.unwrap();
    assert_eq!(request_id(&own), "trace-me.42");
    for path in ["/health", "/no/such/route", "/api/v1/events/statistics", "/metrics"] {
        let response = server.client.get(server.url(path)).send().await.unwrap();
        assert!(fresh(&request_id(&response)), "{path}: {}", request_id(&response));
    }
    let unauthorized = server.client.get(server.url("/api/v1/events/statistics")).send().await.unwrap();
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    for unusable in ["x".repeat(129), "has space".to_owned(), String::new()] {
        let response = server.client.get(server.url("/health")).header("x-request-id", &unusable).send().await.unwrap();
        assert!(fresh(&request_id(&response)), "{unusable:?} is replaced");
    }
    let longest = "y".repeat(128);
    let response = server.client.get(server.url("/health")).header("x-request-id", &longest).send().await.unwrap();
    assert_eq!(request_id(&response), longest);
    server.stop().await;
}

#[tokio::test]
async fn correlation_and_trace_context_reach_deliveries_and_webhook_processors() {
    let server = TestServer::with_config(|c| c.processing.enabled = true).await;
    let sink = Sink::start().await;
    let (status, _) = server
        .post("/api/v1/events/subscriptions", &json!({"event_types": ["order.*"], "callback_url": sink.url("hook")}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = server
        .post(
            "/api/v1/events/processors",
            &json!({"processor_name": "forward", "processor_type": "webhook", "config": {"url": sink.url("processor")},
                "filters": {"event_type": "order.*"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let post = |body: Value| {
        server
            .client
            .post(server.url("/api/v1/events/create"))
            .header("traceparent", TRACEPARENT)
            .header("x-correlation-id", "checkout-7")
            .json(&body)
            .send()
    };
    let event: Value = post(json!({"event_type": "order.paid"})).await.unwrap().json().await.unwrap();
    assert_eq!(event["correlation_id"], "checkout-7");
    assert_eq!(event["metadata"]["traceparent"], TRACEPARENT);
    let own: Value =
        post(json!({"event_type": "audit.x", "correlation_id": "own"})).await.unwrap().json().await.unwrap();
    assert_eq!(own["correlation_id"], "own", "the body's own correlation id wins");
    let batch: Value = server
        .client
        .post(server.url("/api/v1/events/batch"))
        .header("x-correlation-id", "bulk-1")
        .json(&json!([{"event_type": "audit.y"}]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(batch["results"][0]["event"]["correlation_id"], "bulk-1");
    assert!(batch["results"][0]["event"]["metadata"].get("traceparent").is_none(), "no header, no trace kept");

    for path in ["hook", "processor"] {
        let received = sink.wait_for(path, 1, Duration::from_secs(10)).await;
        let sent = received[0].header("traceparent").to_owned();
        let parts: Vec<&str> = sent.split('-').collect();
        assert_eq!(parts.len(), 4, "{path}: {sent}");
        assert_eq!((parts[0], parts[1], parts[3]), ("00", TRACE_ID, "01"), "{path}: the same trace, {sent}");
        assert_ne!(parts[2], "00f067aa0ba902b7", "{path}: a new parent id");
        assert_eq!(parts[2].len(), 16);
        assert_eq!(received[0].header("x-correlation-id"), "checkout-7", "{path}");
    }
    let (status, _) = server.get("/api/v1/events").await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

/// RudderStack messages as its Webhook destination sends them (trimmed from real payloads).
fn rudderstack_samples() -> Vec<Value> {
    let context = json!({
        "app": {"build": "1.0.0", "name": "RudderLabs JavaScript SDK", "namespace": "com.rudderlabs.javascript", "version": "3.0.0"},
        "library": {"name": "RudderLabs JavaScript SDK", "version": "3.0.0"},
        "locale": "en-US", "os": {"name": "", "version": ""}, "screen": {"density": 2, "width": 1440, "height": 900},
        "traits": {"email": "ada@example.com", "plan": "pro"},
        "userAgent": "Mozilla/5.0", "page": {"path": "/pricing", "url": "https://example.com/pricing"}
    });
    vec![
        json!({"type": "track", "event": "Product Purchased", "userId": "user-1", "anonymousId": "anon-1",
            "messageId": "msg-track-1", "rudderId": "r-1", "channel": "web", "context": context,
            "properties": {"revenue": 30, "currency": "USD", "sku": "SKU-1"},
            "integrations": {"All": true}, "originalTimestamp": "2026-01-02T03:04:05.000Z",
            "sentAt": "2026-01-02T03:04:05.100Z", "receivedAt": "2026-01-02T03:04:05.300Z",
            "timestamp": "2026-01-02T03:04:05.200Z", "request_ip": "203.0.113.7"}),
        json!({"type": "page", "name": "Pricing", "anonymousId": "anon-2", "messageId": "msg-page-1", "channel": "web",
            "context": context, "properties": {"path": "/pricing", "title": "Pricing"}, "integrations": {"All": true},
            "originalTimestamp": "2026-01-02T03:05:00.000Z", "rudderId": "r-2", "request_ip": "203.0.113.8"}),
        json!({"type": "screen", "name": "Cart", "userId": "user-3", "messageId": "msg-screen-1", "channel": "mobile",
            "context": {"device": {"model": "Pixel"}}, "properties": {"name": "Cart"}}),
        json!({"type": "identify", "userId": "user-4", "message_id": "msg-identify-1", "context": context,
            "traits": {"email": "bob@example.com"}, "rudderId": "r-4"}),
        json!({"type": "group", "userId": "user-5", "groupId": "acme", "messageId": "msg-group-1",
            "traits": {"name": "Acme", "employees": 42}}),
        json!({"type": "alias", "userId": "user-6", "previousId": "anon-6", "messageId": "msg-alias-1",
            "context": {"traits": {"merged": true}}}),
    ]
}

#[tokio::test]
async fn rudderstack_messages_are_mapped_and_stored_once() {
    let server = TestServer::start().await;
    let samples = rudderstack_samples();
    // RudderStack posts one message per request.
    for message in &samples {
        let response = server
            .client
            .post(server.url("/webhooks/rudderstack"))
            .header("user-agent", "RudderLabs")
            .json(message)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{message}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer, json!({"accepted": 1}));
    }
    let (_, page) = server.get("/api/v1/events?event_source=frontend&order=asc&limit=100").await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 6);
    let by_type = |t: &str| events.iter().find(|e| e["event_type"] == t).unwrap_or_else(|| panic!("{t} stored"));
    let track = by_type("product_purchased");
    assert_eq!(track["event_category"], "user_action");
    assert_eq!(track["user_id"], "user-1");
    assert_eq!(track["data"]["revenue"], 30);
    assert_eq!(track["timestamp"], "2026-01-02T03:04:05.200000Z");
    assert_eq!(track["idempotency_key"], "msg-track-1");
    assert_eq!(track["context"]["library"]["name"], "RudderLabs JavaScript SDK");
    let kept = &track["metadata"]["rudderstack"];
    assert_eq!((kept["event"].as_str(), kept["messageId"].as_str()), (Some("Product Purchased"), Some("msg-track-1")));
    assert_eq!((kept["anonymousId"].as_str(), kept["channel"].as_str()), (Some("anon-1"), Some("web")));
    assert_eq!(kept["sentAt"], "2026-01-02T03:04:05.100Z");
    let page_view = by_type("page_view");
    assert_eq!(
        (page_view["event_category"].as_str(), page_view["user_id"].as_str()),
        (Some("page_view"), Some("anon-2"))
    );
    assert_eq!(page_view["timestamp"], "2026-01-02T03:05:00.000000Z", "originalTimestamp when no timestamp");
    assert_eq!(page_view["metadata"]["rudderstack"]["name"], "Pricing");
    assert_eq!(by_type("screen_view")["event_category"], "page_view");
    let identify = by_type("identify");
    assert_eq!(
        (identify["event_category"].as_str(), identify["data"]["email"].as_str()),
        (Some("user_lifecycle"), Some("bob@example.com"))
    );
    assert_eq!(identify["idempotency_key"], "msg-identify-1", "the older message_id spelling");
    assert_eq!(by_type("group")["metadata"]["rudderstack"]["groupId"], "acme");
    let alias = by_type("alias");
    assert_eq!(alias["data"]["merged"], true, "context.traits when there are no properties or traits");
    assert_eq!(alias["metadata"]["rudderstack"]["previousId"], "anon-6");

    // A redelivery is stored once and still accepted; an array may mix good and bad messages.
    let mut batch = vec![samples[0].clone(), json!({"type": "track", "event": "No User"}), json!({"userId": "u"})];
    batch.push(json!({"type": "track", "event": "Signed Up", "anonymousId": "anon-9", "messageId": "msg-new"}));
    let (status, answer) = server.post("/webhooks/rudderstack", &Value::Array(batch)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 2);
    let failed = answer["failed"].as_array().unwrap();
    assert_eq!(failed.iter().map(|f| f["index"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(failed[0]["error"]["field"], "[1].userId");
    assert_eq!(failed[1]["error"]["field"], "[2].type");
    let (_, stats) = server.get("/api/v1/events/statistics").await;
    assert_eq!(stats["total_events"], 7, "the redelivered message was not stored twice");

    let answer = server.post("/webhooks/rudderstack", &json!({"type": "track", "event": "x"})).await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "userId");
    let answer = server.post("/webhooks/rudderstack", &json!([{"type": "nope", "userId": "u"}])).await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "no message is valid");
    server.stop().await;
}

#[tokio::test]
async fn rudderstack_checks_the_secret_either_way() {
    use hmac::{Hmac, Mac};
    let server = TestServer::with_config(|c| c.rudderstack.secret = "rs-secret".into()).await;
    let body = serde_json::to_vec(&rudderstack_samples()[0]).unwrap();
    let post = |headers: Vec<(&'static str, String)>| {
        let mut request = server.client.post(server.url("/webhooks/rudderstack")).body(body.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    assert_eq!(post(vec![]).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(post(vec![("x-rudderstack-secret", "wrong".into())]).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(post(vec![("x-rudderstack-secret", "rs-secret".into())]).await.unwrap().status(), StatusCode::ACCEPTED);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"rs-secret").unwrap();
    mac.update(&body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(post(vec![("x-signature", format!("sha256={hex}"))]).await.unwrap().status(), StatusCode::ACCEPTED);
    let wrong = format!("sha256={}", "0".repeat(64));
    assert_eq!(post(vec![("x-signature", wrong)]).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn the_openapi_document_matches_the_committed_copy_and_names_every_route() {
    let server = TestServer::start().await;
    let (status, served) = server.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served["openapi"].as_str().map(|v| v.starts_with("3.1")), Some(true));
    let committed_path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let generated = eventdeck::api::openapi::document_json();
    if std::env::var_os("EVENTDECK_UPDATE_OPENAPI").is_some() {
        std::fs::write(committed_path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date: regenerate it with `cargo run -- openapi > docs/openapi.json` \
         (or EVENTDECK_UPDATE_OPENAPI=1 cargo test openapi) and commit it"
    );
    assert_eq!(serde_json::from_str::<Value>(&committed).unwrap(), served, "the served document is the committed one");

    let paths = served["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/events/create", "post"),
        ("/api/v1/events/batch", "post"),
        ("/api/v1/events/frontend", "post"),
        ("/api/v1/events/frontend/batch", "post"),
        ("/api/v1/events/frontend/health", "get"),
        ("/webhooks/rudderstack", "post"),
        ("/events", "post"),
        ("/events", "get"),
        ("/api/v1/events/{event_id}", "get"),
        ("/api/v1/events/query", "post"),
        ("/api/v1/events", "get"),
        ("/api/v1/events/statistics", "get"),
        ("/api/v1/events/archive", "post"),
        ("/api/v1/events/{event_id}/deliveries", "get"),
        ("/api/v1/events/{event_id}/results", "get"),
        ("/api/v1/events/live", "get"),
        ("/events/stream", "get"),
        ("/api/v1/events/subscriptions", "post"),
        ("/api/v1/events/subscriptions", "get"),
        ("/api/v1/events/subscriptions/{subscription_id}", "patch"),
        ("/api/v1/events/subscriptions/{subscription_id}", "delete"),
        ("/webhooks", "post"),
        ("/webhooks/{id}", "patch"),
        ("/api/v1/events/dlq", "get"),
        ("/api/v1/events/dlq/{dlq_id}", "delete"),
        ("/api/v1/events/dlq/{dlq_id}/retry", "post"),
        ("/api/v1/events/dlq/retry", "post"),
        ("/api/v1/events/processors", "post"),
        ("/api/v1/events/processors/{processor_id}/toggle", "put"),
        ("/api/v1/events/processors/{processor_id}", "delete"),
        ("/api/v1/events/replay", "post"),
        ("/api/v1/events/replay/{replay_id}", "get"),
        ("/api/v1/events/stream/{stream_id}", "get"),
        ("/api/v1/events/projections/{entity_type}/{entity_id}", "get"),
        ("/health", "get"),
        ("/metrics", "get"),
        ("/api/v1/openapi.json", "get"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} is documented");
    }
    let schemas = served["components"]["schemas"].as_object().unwrap();
    for schema in [
        "Event",
        "EventCreate",
        "FrontendEvent",
        "Statistics",
        "Subscription",
        "DeadLetter",
        "Processor",
        "ErrorEnvelope",
    ] {
        assert!(schemas.contains_key(schema), "{schema} is described");
    }
    let event = &schemas["Event"]["properties"];
    assert_eq!(event["timestamp"]["$ref"], "#/components/schemas/Timestamp");
    assert_eq!(schemas["Timestamp"]["format"], "date-time");
    assert_eq!(event["event_id"]["$ref"], "#/components/schemas/EventId");
    assert_eq!(schemas["EventId"]["format"], "uuid");
    assert_eq!(schemas["EventCreate"]["additionalProperties"], false, "unknown fields are refused");
    server.stop().await;
}

#[tokio::test]
async fn cors_lets_any_page_post_analytics_and_only_listed_origins_use_the_rest() {
    let server = TestServer::with_config(|c| {
        c.server.cors_origins = vec!["https://dash.example".into()];
        c.auth.api_keys = vec!["key".into()];
    })
    .await;
    let preflight = |path: &str, origin: &str, headers: &str| {
        server
            .client
            .request(reqwest::Method::OPTIONS, server.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", headers)
            .send()
    };
    let header =
        |response: &reqwest::Response, name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());

    let answer = preflight("/api/v1/events/frontend", "https://shop.example", "content-type").await.unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
    assert_eq!(header(&answer, "access-control-allow-origin").as_deref(), Some("*"));
    assert!(header(&answer, "access-control-allow-methods").unwrap().contains("POST"));
    let posted = server
        .client
        .post(server.url("/api/v1/events/frontend"))
        .header("origin", "https://shop.example")
        .json(&json!({"event_type": "page.viewed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&posted, "access-control-allow-origin").as_deref(), Some("*"));

    let answer =
        preflight("/api/v1/events/subscriptions", "https://dash.example", "authorization,content-type").await.unwrap();
    assert!(answer.status().is_success(), "preflight needs no key: {}", answer.status());
    assert_eq!(header(&answer, "access-control-allow-origin").as_deref(), Some("https://dash.example"));
    let allowed = header(&answer, "access-control-allow-headers").unwrap();
    for name in [
        "authorization",
        "x-api-key",
        "content-type",
        "last-event-id",
        "x-request-id",
        "x-correlation-id",
        "traceparent",
    ] {
        assert!(allowed.contains(name), "{name} in {allowed}");
    }
    let other = preflight("/api/v1/events/subscriptions", "https://evil.example", "authorization").await.unwrap();
    assert_eq!(header(&other, "access-control-allow-origin"), None, "an unlisted origin gets no CORS headers");

    // The dashboard's EventSource: a plain GET with the key in the query string.
    let mut live = server
        .client
        .get(server.url("/api/v1/events/live?access_token=key"))
        .header("origin", "https://dash.example")
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(header(&live, "access-control-allow-origin").as_deref(), Some("https://dash.example"));
    drop(live.chunk());
    let managed = server
        .client
        .get(server.url("/api/v1/events/statistics"))
        .header("origin", "https://dash.example")
        .bearer_auth("key")
        .send()
        .await
        .unwrap();
    assert_eq!(managed.status(), StatusCode::OK);
    assert_eq!(header(&managed, "access-control-allow-origin").as_deref(), Some("https://dash.example"));
    assert_eq!(header(&managed, "access-control-expose-headers").as_deref(), Some("x-request-id"));
    server.stop().await;

    // By default no page of another origin may use the management API.
    let default = TestServer::start().await;
    let answer = default
        .client
        .request(reqwest::Method::OPTIONS, default.url("/api/v1/events/subscriptions"))
        .header("origin", "https://dash.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&answer, "access-control-allow-origin"), None);
    default.stop().await;
}

#[tokio::test]
async fn whsec_secrets_decode_like_standard_webhooks_and_bad_ones_are_refused() {
    let server = TestServer::start().await;
    for (path, field, secret) in [
        ("/api/v1/events/subscriptions", "webhook_secret", "whsec_"),
        ("/api/v1/events/subscriptions", "webhook_secret", "whsec_not base64!"),
        ("/webhooks", "secret", "whsec_%%%"),
    ] {
        let body = if path == "/webhooks" {
            json!({"url": "http://127.0.0.1:9/x", "secret": secret})
        } else {
            json!({"callback_url": "http://127.0.0.1:9/x", "webhook_secret": secret})
        };
        let answer = server.post(path, &body).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "whsec_");
        assert_eq!(answer.1["error"]["field"], field);
    }

    // A key whose base64 needs "==" padding, sent without it, signs as the padded form does.
    let sink = Sink::start().await;
    let key = b"twenty-two byte key!!!";
    let unpadded = "whsec_dHdlbnR5LXR3byBieXRlIGtleSEhIQ";
    let (status, _) = server
        .post("/api/v1/events/subscriptions", &json!({"callback_url": sink.url("hook"), "webhook_secret": unpadded}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    server.create(json!({"event_type": "a.b"})).await;
    let received = sink.wait_for("hook", 1, Duration::from_secs(10)).await;
    let (id, at) = (received[0].header("webhook-id"), received[0].header("webhook-timestamp"));
    let mut signed = format!("{id}.{at}.").into_bytes();
    signed.extend_from_slice(&received[0].body);
    let expected = {
        use base64::Engine as _;
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        mac.update(&signed);
        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
    };
    assert_eq!(received[0].header("webhook-signature"), expected);
    server.stop().await;
}

#[tokio::test]
async fn timestamps_outside_years_1_to_9999_are_422_naming_the_field() {
    let server = TestServer::start().await;
    for (path, body, field) in [
        ("/api/v1/events/create", json!({"event_type": "a", "timestamp": "9999-12-31T23:30:00-01:00"}), "timestamp"),
        ("/api/v1/events/create", json!({"event_type": "a", "timestamp": "0000-06-01T00:00:00Z"}), "timestamp"),
        ("/api/v1/events/frontend", json!({"event_type": "a", "timestamp": "0001-01-01T00:00:00+01:00"}), "timestamp"),
        ("/api/v1/events/query", json!({"start_time": "9999-12-31T22:00:00-05:00"}), "start_time"),
    ] {
        let answer = server.post(path, &body).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "years 1 to 9999");
        assert_eq!(answer.1["error"]["field"], field, "{path} {body}");
    }
    let edge = server.create(json!({"event_type": "a", "timestamp": "9999-12-31T23:59:59.999999Z"})).await;
    assert_eq!(edge["timestamp"], "9999-12-31T23:59:59.999999Z");
    server.stop().await;
}

#[tokio::test]
async fn a_raw_greater_than_in_the_url_gets_a_json_answer() {
    let server = TestServer::start().await;
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!("GET /api/v1/events?event_type=order.> HTTP/1.1\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(head.to_lowercase().contains("content-type: application/json"), "{head}");
    let body: Value = serde_json::from_str(body).unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("%3E"), "{body}");

    // Written as the message says, the pattern works.
    server.create(json!({"event_type": "order.paid.late"})).await;
    let (status, page) = server.get("/api/v1/events?event_type=order.%3E").await;
    assert_eq!((status, page["total"].as_u64()), (StatusCode::OK, Some(1)));
    server.stop().await;
}

#[tokio::test]
async fn unknown_fields_are_refused_with_the_closest_accepted_one() {
    let server = TestServer::start().await;
    for (path, body, field, suggestion) in [
        (
            "/api/v1/events/create",
            json!({"event_type": "a", "stream_id": "order:1", "expected_versoin": 0}),
            "expected_versoin",
            "expected_version",
        ),
        ("/events", json!({"type": "a", "paylod": {}}), "paylod", "payload"),
        ("/api/v1/events/frontend", json!({"event_type": "a", "propertes": {}}), "propertes", "properties"),
        (
            "/api/v1/events/frontend/batch",
            json!({"events": [{"event_type": "a", "sesion_id": "s"}]}),
            "events[0].sesion_id",
            "session_id",
        ),
        ("/api/v1/events/frontend/batch", json!({"events": [], "client_inf": {}}), "client_inf", "client_info"),
    ] {
        let answer = server.post(path, &body).await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            &format!("did you mean `{suggestion}`?"),
        );
        assert_eq!(answer.1["error"]["field"], field, "{path} {body}");
    }
    let (status, batch) = server.post("/api/v1/events/batch", &json!([{"event_type": "a", "user": "u"}])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(batch["results"][0]["error"]["field"], "user");
    // What is free-form stays free-form.
    let stored = server
        .create(
            json!({"event_type": "a", "data": {"anything": 1}, "metadata": {"x": {"y": 2}}, "context": {"z": true}}),
        )
        .await;
    assert_eq!(stored["data"]["anything"], 1);
    let (status, _) =
        server.post("/api/v1/events/frontend", &json!({"event_type": "a", "properties": {"whatever": [1, 2]}})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    server.stop().await;
}
