//! History reads: filters through both `POST /api/v1/events/query` and `GET /api/v1/events`, ordering,
//! paging, the seed-compatible list, statistics, and unknown ids.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::{Map, Value, json};

use crate::support::{TestServer, assert_error};

/// A known set of events, by label. Stored in a different order than their timestamps, so that
/// ordering by `timestamp` and by `seq` give different answers; e3 and e7 share a timestamp.
struct Seeded {
    labels: HashMap<String, &'static str>,
}

const ALL_DESC: [&str; 8] = ["e6", "e5", "e4", "e7", "e3", "e2", "e1", "e0"];
const ALL_ASC: [&str; 8] = ["e0", "e1", "e2", "e3", "e7", "e4", "e5", "e6"];

fn at(minute: u32) -> String {
    format!("2026-01-10T10:{minute:02}:00.000000Z")
}

async fn seed(server: &TestServer) -> Seeded {
    let events: [(&'static str, Value); 8] = [
        (
            "e3",
            json!({"event_type": "order.paid", "event_source": "external_api", "event_category": "payment",
                   "user_id": "u2", "tenant_id": "t1", "correlation_id": "c2", "stream_id": "order:7",
                   "data": {"amount": 42, "note": "Rush DELIVERY"}, "timestamp": at(3)}),
        ),
        (
            "e0",
            json!({"event_type": "user.created", "event_category": "user_lifecycle", "user_id": "u1",
                   "tenant_id": "t1", "correlation_id": "c1", "data": {"email": "Alice@Example.com"},
                   "timestamp": at(0)}),
        ),
        (
            "e5",
            json!({"event_type": "page.view", "event_source": "frontend", "event_category": "page_view",
                   "user_id": "u1", "tenant_id": "t2", "data": {"path": "/pricing"}, "timestamp": at(5)}),
        ),
        (
            "e1",
            json!({"event_type": "user.deleted", "event_category": "user_lifecycle", "user_id": "u1",
                   "tenant_id": "t1", "correlation_id": "c1", "timestamp": at(1)}),
        ),
        (
            "e7",
            json!({"event_type": "order.paid", "event_category": "payment", "user_id": "u3", "tenant_id": "t1",
                   "data": {"amount": 7}, "timestamp": at(3)}),
        ),
        (
            "e6",
            json!({"event_type": "user.created", "event_source": "iot_device", "event_category": "device",
                   "user_id": "u4", "data": {"email": "carol@example.org"}, "timestamp": at(6)}),
        ),
        (
            "e2",
            json!({"event_type": "user.profile.updated", "event_source": "frontend", "event_category": "user_action",
                   "user_id": "u2", "tenant_id": "t2", "stream_id": "user:2", "data": {"name": "Bob"},
                   "timestamp": at(2)}),
        ),
        (
            "e4",
            json!({"event_type": "order.created", "event_source": "system", "event_category": "order",
                   "user_id": "u3", "data": {"items": 3}, "timestamp": at(4)}),
        ),
    ];
    let mut labels = HashMap::new();
    for (label, body) in events {
        let event = server.create(body).await;
        labels.insert(event["event_id"].as_str().expect("event_id").to_owned(), label);
    }
    Seeded { labels }
}

impl Seeded {
    fn labels_of(&self, page: &Value) -> Vec<&'static str> {
        let events = page["events"].as_array().unwrap_or_else(|| panic!("no events in {page}"));
        events
            .iter()
            .map(|e| {
                let id = e["event_id"].as_str().unwrap_or_else(|| panic!("no event_id in {e}"));
                *self.labels.get(id).unwrap_or_else(|| panic!("unknown event {id}"))
            })
            .collect()
    }
}

/// Runs the same query as `GET /api/v1/events?…` and as `POST /api/v1/events/query`, checks both
/// answer the same, and returns the answer.
async fn both(server: &TestServer, params: &[(&str, &str)]) -> Value {
    let query = serde_urlencoded::to_string(params).expect("encode query");
    let (status, by_get) = server.get(&format!("/api/v1/events?{query}")).await;
    assert_eq!(status, StatusCode::OK, "GET ?{query}: {by_get}");
    let body: Map<String, Value> =
        params.iter().map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned()))).collect();
    let (status, by_post) = server.post("/api/v1/events/query", &Value::Object(body.clone())).await;
    assert_eq!(status, StatusCode::OK, "POST {body:?}: {by_post}");
    assert_eq!(by_get, by_post, "GET and POST answer alike for {params:?}");
    by_get
}

/// Query parameters as key-value pairs.
type Params<'a> = Vec<(&'a str, &'a str)>;

/// Asserts a query matches exactly `expected` (in order), with the page fields right.
#[track_caller]
fn assert_page(seeded: &Seeded, page: &Value, expected: &[&str], total: u64, limit: u64, offset: u64, has_more: bool) {
    assert_eq!(seeded.labels_of(page), expected, "events of {page}");
    assert_eq!(page["total"], total, "total of {page}");
    assert_eq!(page["limit"], limit, "limit of {page}");
    assert_eq!(page["offset"], offset, "offset of {page}");
    assert_eq!(page["has_more"], has_more, "has_more of {page}");
}

crate::on_every_backend! {
    #[tokio::test]
    async fn filters_select_exactly_the_matching_events() {
        let server = TestServer::start().await;
        let seeded = seed(&server).await;
        let (t1, t2, t3, t5) = (at(1), at(2), at(3), at(5));

        let cases: Vec<(Params, Vec<&str>)> = vec![
            (vec![], ALL_DESC.to_vec()),
            (vec![("event_type", "user.created")], vec!["e6", "e0"]),
            (vec![("event_type", "order.paid")], vec!["e7", "e3"]),
            (vec![("event_type", "user.*")], vec!["e6", "e1", "e0"]),
            (vec![("event_type", "user.>")], vec!["e6", "e2", "e1", "e0"]),
            (vec![("event_type", "order.*")], vec!["e4", "e7", "e3"]),
            (vec![("event_type", "*.created")], vec!["e6", "e4", "e0"]),
            (vec![("event_type", "user.profile.*")], vec!["e2"]),
            (vec![("event_type", "*")], ALL_DESC.to_vec()),
            (vec![("event_type", ">")], ALL_DESC.to_vec()),
            (vec![("event_type", "user")], vec![]),
            (vec![("event_type", "nothing.here")], vec![]),
            (vec![("event_source", "frontend")], vec!["e5", "e2"]),
            (vec![("event_source", "backend")], vec!["e7", "e1", "e0"]),
            (vec![("event_source", "scheduled")], vec![]),
            (vec![("event_category", "payment")], vec!["e7", "e3"]),
            (vec![("event_category", "user_lifecycle")], vec!["e1", "e0"]),
            (vec![("status", "pending")], ALL_DESC.to_vec()),
            (vec![("status", "processed")], vec![]),
            (vec![("user_id", "u1")], vec!["e5", "e1", "e0"]),
            (vec![("user_id", "u9")], vec![]),
            (vec![("stream_id", "order:7")], vec!["e3"]),
            (vec![("tenant_id", "t1")], vec!["e7", "e3", "e1", "e0"]),
            (vec![("tenant_id", "t2")], vec!["e5", "e2"]),
            (vec![("correlation_id", "c1")], vec!["e1", "e0"]),
            (vec![("correlation_id", "c2")], vec!["e3"]),
            // Inclusive start, exclusive end, on `timestamp`.
            (vec![("start_time", &t3), ("end_time", &t5)], vec!["e4", "e7", "e3"]),
            (vec![("start_time", &t5)], vec!["e6", "e5"]),
            (vec![("end_time", &t1)], vec!["e0"]),
            (vec![("start_time", &t2), ("end_time", &t2)], vec![]),
            (vec![("start_time", "2026-01-10T11:03:00+01:00"), ("end_time", "2026-01-10T10:04:00Z")], vec!["e7", "e3"]),
            // Case-insensitive substring of the data JSON.
            (vec![("text", "example")], vec!["e6", "e0"]),
            (vec![("text", "ALICE@example.COM")], vec!["e0"]),
            (vec![("text", "rush delivery")], vec!["e3"]),
            (vec![("text", "zzz-not-there")], vec![]),
            // Filters combine with AND.
            (vec![("event_type", "user.>"), ("user_id", "u1")], vec!["e1", "e0"]),
            (vec![("tenant_id", "t1"), ("event_category", "payment"), ("user_id", "u2")], vec!["e3"]),
            (vec![("event_source", "frontend"), ("text", "bob")], vec!["e2"]),
            // Order by timestamp, ties by seq.
            (vec![("order", "asc")], ALL_ASC.to_vec()),
            (vec![("order", "desc")], ALL_DESC.to_vec()),
            (vec![("event_type", "order.paid"), ("order", "asc")], vec!["e3", "e7"]),
        ];
        for (params, expected) in &cases {
            let page = both(&server, params).await;
            assert_eq!(seeded.labels_of(&page), *expected, "{params:?}");
            assert_page(&seeded, &page, expected, expected.len() as u64, 100, 0, false);
        }

        // Matching events come back whole, as stored.
        let page = both(&server, &[("stream_id", "user:2")]).await;
        let event = &page["events"][0];
        assert_eq!(event["event_type"], "user.profile.updated");
        assert_eq!(event["stream_version"], 1);
        assert_eq!(event["data"], json!({"name": "Bob"}));
        assert_eq!(event["timestamp"], at(2));
        let (_, by_id) = server.get(&format!("/api/v1/events/{}", event["event_id"].as_str().unwrap())).await;
        assert_eq!(by_id, *event);

        // Aliases of the GET form.
        let (status, page) = server.get("/api/v1/events?type=order.paid&source=backend").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(seeded.labels_of(&page), ["e7"]);
        server.stop().await;
    }

    #[tokio::test]
    async fn limit_and_offset_page_through_with_exact_totals() {
        let server = TestServer::start().await;
        let seeded = seed(&server).await;

        let page = both(&server, &[("limit", "3")]).await;
        assert_page(&seeded, &page, &ALL_DESC[..3], 8, 3, 0, true);
        let page = both(&server, &[("limit", "3"), ("offset", "3")]).await;
        assert_page(&seeded, &page, &ALL_DESC[3..6], 8, 3, 3, true);
        let page = both(&server, &[("limit", "3"), ("offset", "6")]).await;
        assert_page(&seeded, &page, &ALL_DESC[6..], 8, 3, 6, false);
        let page = both(&server, &[("limit", "3"), ("offset", "5")]).await;
        assert_page(&seeded, &page, &ALL_DESC[5..], 8, 3, 5, false);
        let page = both(&server, &[("limit", "8")]).await;
        assert_page(&seeded, &page, &ALL_DESC, 8, 8, 0, false);
        let page = both(&server, &[("limit", "7")]).await;
        assert_page(&seeded, &page, &ALL_DESC[..7], 8, 7, 0, true);
        let page = both(&server, &[("offset", "8")]).await;
        assert_page(&seeded, &page, &[], 8, 100, 8, false);
        let page = both(&server, &[("offset", "100"), ("limit", "1000")]).await;
        assert_page(&seeded, &page, &[], 8, 1000, 100, false);
        let page = both(&server, &[("limit", "1"), ("offset", "1"), ("order", "asc")]).await;
        assert_page(&seeded, &page, &["e1"], 8, 1, 1, true);
        // Totals count the filtered set, not everything.
        let page = both(&server, &[("event_type", "user.>"), ("limit", "2")]).await;
        assert_page(&seeded, &page, &["e6", "e2"], 4, 2, 0, true);
        let page = both(&server, &[("event_type", "user.>"), ("limit", "2"), ("offset", "2")]).await;
        assert_page(&seeded, &page, &["e1", "e0"], 4, 2, 2, false);
        let page = both(&server, &[("tenant_id", "t1"), ("limit", "1"), ("offset", "3"), ("order", "asc")]).await;
        assert_page(&seeded, &page, &["e7"], 4, 1, 3, false);

        // JSON numbers are accepted in the body.
        let (status, page) = server.post("/api/v1/events/query", &json!({"limit": 2, "offset": 1, "order": "asc"})).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_page(&seeded, &page, &["e1", "e2"], 8, 2, 1, true);
        server.stop().await;
    }

    #[tokio::test]
    async fn bad_query_parameters_are_422_naming_the_parameter() {
        let server = TestServer::start().await;
        seed(&server).await;
        let cases: [(&str, &str, &str); 11] = [
            ("limit", "0", "limit"),
            ("limit", "1001", "limit"),
            ("limit", "ten", "limit"),
            ("offset", "-1", "offset"),
            ("bogus", "1", "bogus"),
            ("start_time", "yesterday", "start_time"),
            ("end_time", "2026-01-10 10:00", "end_time"),
            ("status", "done", "status"),
            ("event_source", "moon", "event_source"),
            ("event_type", "user..x", "event_type"),
            ("order", "sideways", "order"),
        ];
        for (key, value, mentions) in cases {
            let query = serde_urlencoded::to_string([(key, value)]).unwrap();
            let answer = server.get(&format!("/api/v1/events?{query}")).await;
            assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", mentions);
            let answer = server.post("/api/v1/events/query", &json!({key: value})).await;
            assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", mentions);
        }
        // The messages say what is accepted.
        let (_, body) = server.get("/api/v1/events?status=done").await;
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("pending, processing, processed, failed, archived"), "{message}");
        let (_, body) = server.get("/api/v1/events?limit=0").await;
        assert!(body["error"]["message"].as_str().unwrap().contains("1 to 1000"), "{body}");
        let (_, body) = server.get("/api/v1/events?bogus=1").await;
        assert!(body["error"]["message"].as_str().unwrap().contains("event_type"), "lists the accepted ones: {body}");

        // JSON numbers out of range, and values of the wrong JSON type.
        for body in [json!({"limit": 0}), json!({"limit": 1001})] {
            assert_error(
                &server.post("/api/v1/events/query", &body).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "limit",
            );
        }
        assert_error(
            &server.post("/api/v1/events/query", &json!({"user_id": ["u1"]})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "user_id",
        );
        assert_error(
            &server.post_raw("/api/v1/events/query", "{\"limit\": ").await,
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "",
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn seed_compatible_list_answers_events_only() {
        let server = TestServer::start().await;
        let seeded = seed(&server).await;

        let (status, page) = server.get("/events").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()), Some(vec!["events".to_owned()]));
        assert_eq!(seeded.labels_of(&page), ALL_DESC);

        let cases: [(&str, &[&str]); 6] = [
            ("type=order.paid&source=backend", &["e7"]),
            ("type=user.*", &["e6", "e1", "e0"]),
            ("source=frontend", &["e5", "e2"]),
            ("since=2026-01-10T10:05:00Z", &["e6", "e5"]),
            ("limit=2", &["e6", "e5"]),
            ("type=user.%3E&since=2026-01-10T10:01:00Z&limit=2", &["e6", "e2"]),
        ];
        for (query, expected) in cases {
            let (status, page) = server.get(&format!("/events?{query}")).await;
            assert_eq!(status, StatusCode::OK, "{query}: {page}");
            assert_eq!(seeded.labels_of(&page), expected, "{query}");
        }
        assert_error(
            &server.get("/events?since=noon").await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "noon",
        );
        assert_error(&server.get("/events?limit=0").await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "limit");
        server.stop().await;
    }

    /// The event counts of a small, known history; only successful, new events count.
    #[tokio::test]
    async fn statistics_count_exactly_what_was_ingested() {
        let server = TestServer::start().await;
        let today_before = chrono::Utc::now().date_naive();
        for user in ["u1", "u1", "u2"] {
            server.create(json!({"event_type": "user.created", "event_category": "user_lifecycle", "user_id": user})).await;
        }
        for (user, key) in [("u1", "pay-1"), ("u3", "pay-2")] {
            server
                .create(json!({"event_type": "order.paid", "event_source": "external_api", "event_category": "payment",
                               "user_id": user, "idempotency_key": key}))
                .await;
        }
        // In the past: not today, this week or this month.
        server
            .create(json!({"event_type": "page.view", "event_source": "frontend", "event_category": "page_view",
                           "user_id": "u3", "timestamp": "2020-03-04T05:06:07Z"}))
            .await;
        server
            .create(json!({"event_type": "order.paid", "event_category": "payment", "timestamp": "2020-03-04T00:00:00Z",
                           "stream_id": "order:1", "expected_version": 0}))
            .await;
        // None of these add to the counts: a repeated key, invalid input, a version conflict.
        let (status, _) = server
            .post(
                "/api/v1/events/create",
                &json!({"event_type": "order.paid", "user_id": "u1", "idempotency_key": "pay-1"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) =
            server.post("/api/v1/events/create", &json!({"event_type": "order.paid", "event_source": "moon"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, _) = server
            .post(
                "/api/v1/events/create",
                &json!({"event_type": "order.paid", "stream_id": "order:1", "expected_version": 0}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, batch) = server
            .post(
                "/api/v1/events/batch",
                &json!([{"event_type": "order.paid", "idempotency_key": "pay-2"}, {"event_type": "x", "data": 1}]),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{batch}");
        assert_eq!((batch["created"].as_u64(), batch["failed"].as_u64()), (Some(0), Some(1)), "{batch}");

        let (status, stats) = server.get("/api/v1/events/statistics").await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        let today_after = chrono::Utc::now().date_naive();

        assert_eq!(stats["total_events"], 7, "{stats}");
        assert_eq!(stats["pending_events"], 7, "{stats}");
        assert_eq!(stats["processing_events"], 0);
        assert_eq!(stats["processed_events"], 0);
        assert_eq!(stats["failed_events"], 0);
        assert_eq!(stats["events_by_type"], json!({"user.created": 3, "order.paid": 3, "page.view": 1}));
        assert_eq!(stats["events_by_source"], json!({"backend": 4, "external_api": 2, "frontend": 1}));
        assert_eq!(stats["events_by_category"], json!({"user_lifecycle": 3, "payment": 3, "page_view": 1}));
        assert_eq!(stats["events_by_status"], json!({"pending": 7}));
        if today_before == today_after {
            assert_eq!(stats["events_today"], 5, "{stats}");
            assert_eq!(stats["events_this_week"], 5, "{stats}");
            assert_eq!(stats["events_this_month"], 5, "{stats}");
        }
        assert_eq!(
            stats["top_users"],
            json!([{"name": "u1", "count": 3}, {"name": "u3", "count": 2}, {"name": "u2", "count": 1}])
        );
        assert_eq!(
            stats["top_event_types"],
            json!([{"name": "order.paid", "count": 3}, {"name": "user.created", "count": 3}, {"name": "page.view", "count": 1}])
        );
        assert_eq!(stats["dlq_size"], 0);
        assert_eq!(stats["subscriptions_active"], 0);
        assert_eq!(stats["processing_rate"], 0.0, "no finished events yet");
        assert_eq!(stats["error_rate"], 0.0);
        let rate = stats["ingest_rate_per_s"].as_f64().expect("ingest_rate_per_s is a number");
        assert!(rate > 0.0, "events were stored within the last 60 s: {rate}");

        // The counters agree with a query over the same events.
        let (_, page) = server.get("/api/v1/events?limit=1").await;
        assert_eq!(page["total"], stats["total_events"]);
        server.stop().await;
    }

    /// Every Statistics field that API.md lists is in the answer.
    #[tokio::test]
    async fn statistics_have_every_field_of_the_contract() {
        let server = TestServer::start().await;
        server.create(json!({"event_type": "a.b"})).await;
        let (status, stats) = server.get("/api/v1/events/statistics").await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        let fields = [
            "total_events",
            "pending_events",
            "processing_events",
            "processed_events",
            "failed_events",
            "events_by_source",
            "events_by_category",
            "events_by_type",
            "events_by_status",
            "events_today",
            "events_this_week",
            "events_this_month",
            "average_processing_time",
            "processing_rate",
            "error_rate",
            "top_users",
            "top_event_types",
            "dlq_size",
            "ingest_rate_per_s",
            "processing_latency_ms",
            "delivery_success_rate",
            "retry_rate",
            "subscriptions_active",
            "processors_enabled",
        ];
        let missing: Vec<&str> = fields.into_iter().filter(|f| stats.get(f).is_none()).collect();
        assert!(missing.is_empty(), "missing {missing:?} in {stats}");
        for p in ["p50", "p95", "p99"] {
            assert!(stats["processing_latency_ms"][p].is_number(), "processing_latency_ms.{p} in {stats}");
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn unknown_and_malformed_event_ids_are_404() {
        let server = TestServer::start().await;
        let stored = server.create(json!({"event_type": "a.b"})).await;
        let unknown = uuid::Uuid::now_v7().to_string();
        assert_error(&server.get(&format!("/api/v1/events/{unknown}")).await, StatusCode::NOT_FOUND, "not_found", &unknown);
        assert_error(&server.get("/api/v1/events/not-a-uuid").await, StatusCode::NOT_FOUND, "not_found", "not-a-uuid");
        assert_error(
            &server.get(&format!("/api/v1/events/{unknown}/deliveries")).await,
            StatusCode::NOT_FOUND,
            "not_found",
            &unknown,
        );
        // The known one is found, in either case of hex.
        let id = stored["event_id"].as_str().unwrap();
        let (status, event) = server.get(&format!("/api/v1/events/{id}")).await;
        assert_eq!((status, &event), (StatusCode::OK, &stored));
        let (status, event) = server.get(&format!("/api/v1/events/{}", id.to_uppercase())).await;
        assert_eq!((status, &event), (StatusCode::OK, &stored));
        server.stop().await;
    }

    /// An offset past what SQLite's signed 64-bit OFFSET holds is still just "past the end".
    #[tokio::test]
    async fn huge_offsets_answer_an_empty_page() {
        let server = TestServer::start().await;
        let seeded = seed(&server).await;
        let page = both(&server, &[("offset", "9223372036854775808"), ("limit", "2")]).await;
        assert_eq!(seeded.labels_of(&page), Vec::<&str>::new(), "nothing lies that far: {page}");
        assert_eq!(page["total"], 8);
        assert_eq!(page["has_more"], false);
        server.stop().await;
    }

    /// Bad input never breaks a request: the largest u64 offset gets an answer, not a dropped connection.
    #[tokio::test]
    async fn the_largest_offset_is_answered() {
        let server = TestServer::start().await;
        seed(&server).await;
        let response = server.client.get(server.url("/api/v1/events?offset=18446744073709551615")).send().await;
        let response = response.expect("an answer, not a dropped connection");
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON body");
        assert!(status == StatusCode::OK || status == StatusCode::UNPROCESSABLE_ENTITY, "{status}: {body}");
        if status == StatusCode::OK {
            assert_eq!(body["events"], json!([]), "{body}");
            assert_eq!(body["has_more"], false, "{body}");
        } else {
            assert_eq!(body["error"]["code"], "validation_failed", "{body}");
        }
        let response =
            server.client.post(server.url("/api/v1/events/query")).json(&json!({"offset": u64::MAX})).send().await;
        assert!(response.is_ok(), "POST query with the largest offset answers: {response:?}");
        server.stop().await;
    }
}
