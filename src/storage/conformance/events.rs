//! The event log's contract: what an empty store answers, appends (ids, seqs, versions, idempotency,
//! skip-processing), the counters, and a closed store.

use std::sync::Arc;

use serde_json::json;

use super::{SECOND, at, shifted, stored};
use crate::domain::delivery::DlqQuery;
use crate::domain::processor::DEFAULT_PROJECTION_PROCESSOR;
use crate::domain::{
    EventCategory, EventFilter, EventId, EventQuery, EventSource, EventStatus, NameCount, NewEvent, ProcessorType,
    ReplayId, Timestamp,
};
use crate::storage::{Appended, Store};

pub(super) async fn a_new_store_is_empty_and_answers(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
    assert!(!store.backend().is_empty());
    assert_eq!(store.last_seq().await.unwrap(), 0);
    let page = store.query(&EventQuery::default()).await.unwrap();
    assert_eq!((page.events.len(), page.total), (0, 0));
    assert!(store.events_after(0, &EventFilter::default(), 10).await.unwrap().is_empty());
    assert!(store.events_by_seq(&[1, 2]).await.unwrap().is_empty());
    assert_eq!(store.event(EventId::new_v7()).await.unwrap(), None);
    assert_eq!(store.stream_version("user:1").await.unwrap(), 0);
    assert!(store.stream("user:1", 1, 10).await.unwrap().is_empty());

    let counters = store.counters().await.unwrap();
    assert!(counters.by_type.is_empty() && counters.by_status.is_empty() && counters.by_day.is_empty());
    assert!(counters.top_users.is_empty() && counters.by_delivery.values().all(|n| *n == 0));
    assert_eq!((counters.dlq_size, counters.subscriptions_active), (0, 0));

    assert!(store.subscriptions().await.unwrap().is_empty());
    assert_eq!(store.cursor("delivery").await.unwrap().seq, 0);
    assert_eq!(store.next_processing_due().await.unwrap(), None);
    assert_eq!(store.dead_letters(&DlqQuery { limit: 10, ..DlqQuery::default() }).await.unwrap().1, 0);
    assert_eq!(store.replay(ReplayId::new_v7()).await.unwrap(), None);
    assert_eq!(store.cached_projection("user:1").await.unwrap(), None);

    // Every new database starts with the projection processor, enabled.
    let processors = store.processors().await.unwrap();
    assert_eq!(processors.len(), 1, "{processors:?}");
    assert_eq!(processors[0].processor_name, DEFAULT_PROJECTION_PROCESSOR);
    assert_eq!(processors[0].processor_type, ProcessorType::Projection);
    assert!(processors[0].enabled);
}

pub(super) async fn append_keeps_every_field_and_assigns_seq_id_and_created_at(store: Arc<dyn Store>) {
    assert!(store.append(Vec::new()).await.unwrap().is_empty(), "an empty group stores nothing");
    let full = NewEvent {
        event_id: None,
        event_type: "order.paid".into(),
        event_source: EventSource::IotDevice,
        event_category: EventCategory::Payment,
        user_id: Some("user_7".into()),
        tenant_id: Some("acme".into()),
        stream_id: Some("order:7".into()),
        expected_version: Some(0),
        data: json!({"amount": 12.5, "items": [1, 2], "note": "naïve — ✓", "nested": {"a": null}})
            .as_object()
            .cloned()
            .unwrap(),
        metadata: json!({"traceparent": "00-abc-def-01"}).as_object().cloned().unwrap(),
        context: json!({"ip": "10.0.0.1"}).as_object().cloned().unwrap(),
        correlation_id: Some("corr-1".into()),
        idempotency_key: Some("key-1".into()),
        timestamp: Timestamp::from_micros(1_767_225_600_123_456),
        skip_processing: false,
    };
    let skipped = NewEvent { skip_processing: true, ..NewEvent::new("page.viewed") };
    let before = Timestamp::now();
    let first = stored(store.as_ref(), vec![full.clone(), NewEvent::new("minimal"), skipped]).await;

    let event = &first[0];
    assert_eq!(event.event_id.0.get_version_num(), 7, "event ids are UUID v7");
    assert_eq!(
        (&event.event_type, event.event_source, event.event_category),
        (&full.event_type, full.event_source, full.event_category)
    );
    assert_eq!((&event.user_id, &event.tenant_id), (&full.user_id, &full.tenant_id));
    assert_eq!((&event.stream_id, event.stream_version), (&full.stream_id, Some(1)));
    assert_eq!((&event.data, &event.metadata, &event.context), (&full.data, &full.metadata, &full.context));
    assert_eq!((&event.correlation_id, &event.idempotency_key), (&full.correlation_id, &full.idempotency_key));
    assert_eq!(event.timestamp, full.timestamp, "timestamps keep their microseconds");
    assert_eq!((event.status, event.retry_count, &event.error_message), (EventStatus::Pending, 0, &None));
    assert_eq!(event.processed_at, None);
    assert!(event.created_at >= before && event.created_at <= Timestamp::now());
    assert_eq!(first[1].stream_version, None, "no stream, no version");

    // One group: one commit time, seqs in order.
    assert!(first.iter().all(|e| e.created_at == event.created_at));
    assert!(first.windows(2).all(|w| w[0].seq < w[1].seq) && first[0].seq > 0, "{first:?}");
    // An event no processor wants is stored processed, at its commit.
    assert_eq!((first[2].status, first[2].processed_at), (EventStatus::Processed, Some(first[2].created_at)));

    let second = stored(store.as_ref(), vec![NewEvent::new("later")]).await;
    assert!(second[0].seq > first[2].seq, "seqs grow across groups");
    assert_eq!(store.last_seq().await.unwrap(), second[0].seq);
    let ids: std::collections::HashSet<EventId> = first.iter().chain(&second).map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 4);
    // What append answered is exactly what reads return.
    for event in first.iter().chain(&second) {
        assert_eq!(store.event(event.event_id).await.unwrap().as_ref(), Some(event));
    }
}

pub(super) async fn idempotency_keys_are_per_tenant_and_checked_within_a_group(store: Arc<dyn Store>) {
    let keyed = |key: &str, tenant: Option<&str>, n: i64| NewEvent {
        idempotency_key: Some(key.into()),
        tenant_id: tenant.map(String::from),
        data: json!({"n": n}).as_object().cloned().unwrap(),
        ..NewEvent::new("k")
    };
    let first = store
        .append(vec![keyed("a", None, 1), keyed("a", None, 2), keyed("a", Some("t2"), 3), keyed("b", None, 4)])
        .await
        .unwrap();
    let original = first[0].event().unwrap().clone();
    assert!(matches!(first[0], Appended::Created(_)));
    assert_eq!(first[1], Appended::Duplicate(original.clone()), "a repeat in the same group answers the first");
    assert!(matches!(first[2], Appended::Created(_)), "another tenant's key is a new event");
    assert!(matches!(first[3], Appended::Created(_)));

    // A later group, whatever else it carries, gets the stored event back, and stores nothing for it.
    let again = store.append(vec![keyed("a", None, 5), keyed("a", Some("t2"), 6)]).await.unwrap();
    assert_eq!(again[0], Appended::Duplicate(original));
    assert_eq!(again[1], Appended::Duplicate(first[2].event().unwrap().clone()));
    assert_eq!(store.query(&EventQuery::default()).await.unwrap().total, 3);
    assert_eq!(store.counters().await.unwrap().by_type["k"], 3, "duplicates are not counted");
    assert_eq!(store.last_seq().await.unwrap(), first[3].event().unwrap().seq);
}

pub(super) async fn a_given_id_is_kept_and_a_repeat_of_it_is_a_duplicate(store: Arc<dyn Store>) {
    let given = |id: EventId, n: i64| NewEvent {
        event_id: Some(id),
        data: json!({"n": n}).as_object().cloned().unwrap(),
        ..NewEvent::new("page.viewed")
    };
    let (a, b) = (EventId::new_v7(), EventId::new_v7());
    let first = store.append(vec![given(a, 1), NewEvent::new("minted"), given(a, 2)]).await.unwrap();
    let original = first[0].event().unwrap().clone();
    assert_eq!(original.event_id, a, "stored under the id it was given");
    assert_ne!(first[1].event().unwrap().event_id, a, "an event without one gets a new id");
    assert_eq!(first[2], Appended::Duplicate(original.clone()), "a repeat in the same group answers the first");

    // Delivered again later (a message redelivered after a crash between commit and ack): the stored
    // event comes back, nothing is stored, seqs and counters do not move; a new id beside it is stored.
    let again = store.append(vec![given(a, 3), given(b, 4)]).await.unwrap();
    assert_eq!(again[0], Appended::Duplicate(original.clone()));
    let other = again[1].event().unwrap().clone();
    assert_eq!(other.event_id, b);
    assert_eq!(other.seq, first[1].event().unwrap().seq + 1, "no seq is spent on a duplicate");
    assert_eq!(store.event(a).await.unwrap(), Some(original));
    assert_eq!(store.query(&EventQuery::default()).await.unwrap().total, 3);
    assert_eq!(store.counters().await.unwrap().by_type["page.viewed"], 2, "duplicates are not counted");
}

pub(super) async fn expected_versions_are_checked_within_and_across_groups(store: Arc<dyn Store>) {
    let versioned = |stream: &str, expected: Option<i64>| NewEvent {
        stream_id: Some(stream.into()),
        expected_version: expected,
        ..NewEvent::new("s")
    };
    let group = store
        .append(vec![
            versioned("user:1", Some(0)),
            versioned("user:1", Some(1)),
            versioned("user:1", Some(1)),
            versioned("user:1", None),
            versioned("user:2", Some(0)),
        ])
        .await
        .unwrap();
    let versions: Vec<Option<i64>> = group.iter().map(|a| a.event().and_then(|e| e.stream_version)).collect();
    assert_eq!(versions, [Some(1), Some(2), None, Some(3), Some(1)]);
    assert_eq!(group[2], Appended::VersionConflict { stream_id: "user:1".into(), expected: 1, actual: 2 });

    let next = store.append(vec![versioned("user:1", Some(3)), versioned("user:1", Some(0))]).await.unwrap();
    assert_eq!(next[0].event().unwrap().stream_version, Some(4));
    assert_eq!(next[1], Appended::VersionConflict { stream_id: "user:1".into(), expected: 0, actual: 4 });
    assert_eq!(store.stream_version("user:1").await.unwrap(), 4);
    assert_eq!(store.stream_version("user:2").await.unwrap(), 1);
    assert_eq!(store.query(&EventQuery::default()).await.unwrap().total, 5, "conflicts store nothing");
}

pub(super) async fn counters_follow_every_commit(store: Arc<dyn Store>) {
    let day = Timestamp::from_micros(1_767_225_600_000_000); // 2026-01-01T00:00:00Z
    let mut events = Vec::new();
    for i in 0..12 {
        let mut event = at("order.paid", shifted(day, i * 3600 * SECOND));
        event.user_id = Some(format!("u{:02}", i % 11));
        event.event_source = if i % 2 == 0 { EventSource::Frontend } else { EventSource::Backend };
        events.push(event);
    }
    events.push(NewEvent { skip_processing: true, ..at("order.created", shifted(day, -SECOND)) });
    store.append(events).await.unwrap();

    let counters = store.counters().await.unwrap();
    assert_eq!(counters.by_type.get("order.paid"), Some(&12));
    assert_eq!(counters.by_type.get("order.created"), Some(&1));
    assert_eq!((counters.by_source["frontend"], counters.by_source["backend"]), (6, 7));
    assert_eq!(counters.by_category["system"], 13);
    assert_eq!((counters.by_status["pending"], counters.by_status["processed"]), (12, 1));
    assert_eq!(counters.by_day.get("2026-01-01"), Some(&12), "days are the UTC day of the timestamp");
    assert_eq!(counters.by_day.get("2025-12-31"), Some(&1));
    // Ten users at most, the most events first, ties by name.
    assert_eq!(counters.top_users.len(), 10);
    assert_eq!(counters.top_users[0], NameCount { name: "u00".into(), count: 2 });
    let rest: Vec<&str> = counters.top_users[1..].iter().map(|u| u.name.as_str()).collect();
    assert_eq!(rest, ["u01", "u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09"]);
}

/// Appends made at once, as a writer keeping groups in flight makes them: groups sharing a key or a
/// stream see each other's events (one stored event per key, versions one after another), groups
/// sharing nothing go side by side, and seqs come out whole and in commit order.
pub(super) async fn appends_made_at_once_each_get_their_own_answer(store: Arc<dyn Store>) {
    let groups = (0..12).map(|i| {
        let mut keyed = NewEvent::new("paid");
        keyed.idempotency_key = Some("shared".into());
        let streamed = NewEvent { stream_id: Some("order:1".into()), ..NewEvent::new("changed") };
        let plain: Vec<NewEvent> = (0..1 + i % 3).map(|_| NewEvent::new("seen")).collect();
        match i % 3 {
            0 => vec![keyed, streamed],
            1 => plain,
            _ => [plain, vec![streamed]].concat(),
        }
    });
    let answers =
        futures::future::join_all(groups.map(|group| store.append(group))).await.into_iter().map(Result::unwrap);
    let mut keyed_ids = Vec::new();
    let mut created = Vec::new();
    for answer in answers.flatten() {
        match answer {
            Appended::Created(event) if event.event_type == "paid" => {
                keyed_ids.push(event.event_id);
                created.push(event);
            }
            Appended::Duplicate(event) => keyed_ids.push(event.event_id),
            Appended::Created(event) => created.push(event),
            other => panic!("no conflict was asked for: {other:?}"),
        }
    }
    assert_eq!(keyed_ids.len(), 4);
    assert!(keyed_ids.iter().all(|id| *id == keyed_ids[0]), "one event for the key, the others its duplicates");
    let mut seqs: Vec<i64> = created.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=created.len() as i64).collect::<Vec<_>>(), "no seq twice, none skipped");
    let mut versions: Vec<i64> = created.iter().filter_map(|e| e.stream_version).collect();
    versions.sort_unstable();
    assert_eq!(versions, (1..=8).collect::<Vec<_>>());
    let stored = store.events_after(0, &EventFilter::default(), 100).await.unwrap();
    assert_eq!(stored.len(), created.len());
    let in_seq_order: Vec<i64> = stored.iter().filter_map(|e| e.stream_version).collect();
    assert_eq!(in_seq_order, (1..=8).collect::<Vec<_>>(), "stream versions follow seqs");
    assert_eq!(store.counters().await.unwrap().by_status["pending"], created.len() as i64);
}

pub(super) async fn a_closed_store_refuses_work(store: Arc<dyn Store>) {
    stored(store.as_ref(), vec![NewEvent::new("before.close")]).await;
    store.close().await;
    assert!(store.append(vec![NewEvent::new("after.close")]).await.is_err());
    assert!(store.insert_subscription(&super::subscription("late", 0)).await.is_err());
    assert!(store.ping().await.is_err());
    assert!(store.last_seq().await.is_err());
}

pub(super) async fn streams_are_listed_by_prefix_in_id_order_with_version_and_last_event(store: Arc<dyn Store>) {
    assert!(store.streams("", None, 10).await.unwrap().is_empty());
    let base = Timestamp::from_micros(1_767_225_600_000_000);
    let on = |stream: &str, event_type: &str, second: i64| NewEvent {
        stream_id: Some(stream.into()),
        ..at(event_type, shifted(base, second * SECOND))
    };
    stored(
        store.as_ref(),
        vec![
            on("order:2", "order.created", 1),
            on("order:10", "order.created", 2),
            on("order:2", "order.paid", 3),
            on("users:u1", "user.created", 4),
            on("order:2", "order.shipped", 5),
            at("no.stream", base),
            on("orders:9", "order.created", 6),
        ],
    )
    .await;
    let listed = |prefix: &'static str, after: Option<&'static str>, limit| {
        let store = store.clone();
        async move {
            let found = store.streams(prefix, after, limit).await.unwrap();
            found.into_iter().map(|s| (s.stream_id, s.version, s.last_event_type)).collect::<Vec<_>>()
        }
    };
    let row = |id: &str, version, event_type: &str| (id.to_owned(), version, event_type.to_owned());
    assert_eq!(
        listed("order:", None, 10).await,
        [row("order:10", 1, "order.created"), row("order:2", 3, "order.shipped")],
        "in id order; `orders:9` does not start with `order:`"
    );
    let all = store.streams("", None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|s| s.stream_id.as_str()).collect::<Vec<_>>(),
        ["order:10", "order:2", "orders:9", "users:u1"]
    );
    assert_eq!(all[1].last_event_at, shifted(base, 5 * SECOND));
    assert_eq!(listed("", None, 2).await.len(), 2, "at most `limit`");
    assert_eq!(
        listed("", Some("order:2"), 10).await,
        [row("orders:9", 1, "order.created"), row("users:u1", 1, "user.created")]
    );
    assert_eq!(listed("users:u1", None, 10).await, [row("users:u1", 1, "user.created")], "a whole id is a prefix too");
    assert_eq!(listed("order:", Some("a"), 10).await.len(), 2, "an `after` before the prefix changes nothing");
    assert_eq!(listed("order:", Some("order:10"), 10).await, [row("order:2", 3, "order.shipped")]);
    assert!(listed("order:", Some("order:99"), 10).await.is_empty());
    assert!(listed("cart:", None, 10).await.is_empty());
}

pub(super) async fn stream_reads_start_at_a_version_inclusive_in_version_order_with_a_limit(store: Arc<dyn Store>) {
    let on = |stream: &str, second: i64| NewEvent {
        stream_id: Some(stream.into()),
        ..at("cart.updated", shifted(Timestamp::from_micros(1_767_225_600_000_000), second * SECOND))
    };
    // Version order, not time order; another stream in between.
    let events = stored(
        store.as_ref(),
        vec![on("cart:1", 9), on("cart:2", 0), on("cart:1", 1), on("cart:1", 5), on("cart:1", 3)],
    )
    .await;
    let cart: Vec<_> = [0, 2, 3, 4].map(|i| events[i].clone()).to_vec();
    assert_eq!(store.stream("cart:1", 1, 100).await.unwrap(), cart, "version 1 is the first");
    assert_eq!(store.stream("cart:1", 0, 100).await.unwrap(), cart, "0 reads from the start too");
    assert_eq!(store.stream("cart:1", 2, 100).await.unwrap(), cart[1..], "from version 2, inclusive");
    assert_eq!(store.stream("cart:1", 2, 2).await.unwrap(), cart[1..3], "at most `limit`");
    assert_eq!(store.stream("cart:1", 4, 100).await.unwrap(), cart[3..]);
    assert!(store.stream("cart:1", 5, 100).await.unwrap().is_empty());
    assert!(store.stream("cart:3", 1, 100).await.unwrap().is_empty());
    assert_eq!((store.stream_version("cart:1").await.unwrap(), store.stream_version("cart:2").await.unwrap()), (4, 1));
}
