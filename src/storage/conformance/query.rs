//! History reads' contract: every filter means what [`EventFilter::matches`] means, pages come in
//! timestamp order (ties by seq) with the total, and the log reads by seq.

use std::sync::Arc;

use serde_json::json;

use super::{SECOND, at, shifted, stored};
use crate::domain::{
    Event, EventCategory, EventFilter, EventQuery, EventSource, EventStatus, NewEvent, Order, Timestamp, TypePattern,
};
use crate::storage::Store;

fn pattern(text: &str) -> Option<TypePattern> {
    Some(TypePattern::parse("event_type", text).unwrap())
}

/// `events` as a query should page them: matching `filter`, by timestamp then seq, newest first.
fn expected(events: &[Event], filter: &EventFilter) -> Vec<Event> {
    let mut matching: Vec<Event> = events.iter().filter(|e| filter.matches(e)).cloned().collect();
    matching.sort_by_key(|e| std::cmp::Reverse((e.timestamp, e.seq)));
    matching
}

/// Forty events that differ in every filtered field, some sharing a timestamp.
async fn varied(store: &dyn Store) -> Vec<Event> {
    let base = Timestamp::from_micros(1_767_225_600_000_000);
    let types = ["user.created", "user.profile.updated", "users.created", "order.paid", "order.line.added"];
    let events = (0..40i64)
        .map(|i| NewEvent {
            event_source: EventSource::ALL[i as usize % EventSource::ALL.len()],
            event_category: EventCategory::ALL[i as usize % 3],
            user_id: (i % 4 != 0).then(|| format!("user_{}", i % 3)),
            tenant_id: match i % 5 {
                0 => None,
                1 | 2 => Some("acme".into()),
                _ => Some("globex".into()),
            },
            stream_id: (i % 6 == 0).then(|| format!("cart:{}", i % 12)),
            correlation_id: (i % 7 == 0).then(|| "corr-7".into()),
            data: json!({"note": if i % 8 == 0 { "Hello World" } else { "plain" }, "i": i})
                .as_object()
                .cloned()
                .unwrap(),
            // Every fifth event shares its timestamp with the one before.
            ..at(types[i as usize % types.len()], shifted(base, (i - i64::from(i % 5 == 4)) * SECOND))
        })
        .collect();
    stored(store, events).await
}

pub(super) async fn query_filters_match_the_domain_filter(store: Arc<dyn Store>) {
    let events = varied(store.as_ref()).await;
    let base = events[0].timestamp;
    let filters = [
        EventFilter::default(),
        EventFilter { event_type: pattern("user.created"), ..EventFilter::default() },
        EventFilter { event_type: pattern("user.*"), ..EventFilter::default() },
        EventFilter { event_type: pattern("user.>"), ..EventFilter::default() },
        EventFilter { event_type: pattern("*.created"), ..EventFilter::default() },
        EventFilter { event_type: pattern(">"), ..EventFilter::default() },
        EventFilter { event_type: pattern("nothing.*"), ..EventFilter::default() },
        EventFilter { event_source: Some(EventSource::Frontend), ..EventFilter::default() },
        EventFilter { event_category: Some(EventCategory::ALL[1]), ..EventFilter::default() },
        EventFilter { status: Some(EventStatus::Pending), ..EventFilter::default() },
        EventFilter { status: Some(EventStatus::Failed), ..EventFilter::default() },
        EventFilter { user_id: Some("user_1".into()), ..EventFilter::default() },
        EventFilter { stream_id: Some("cart:6".into()), ..EventFilter::default() },
        EventFilter { tenant_id: Some("acme".into()), ..EventFilter::default() },
        EventFilter { correlation_id: Some("corr-7".into()), ..EventFilter::default() },
        // Start inclusive, end exclusive, exactly on stored timestamps.
        EventFilter {
            start_time: Some(shifted(base, 5 * SECOND)),
            end_time: Some(shifted(base, 15 * SECOND)),
            ..EventFilter::default()
        },
        EventFilter { text: Some("hello WORLD".into()), ..EventFilter::default() },
        EventFilter {
            event_type: pattern("order.>"),
            tenant_id: Some("globex".into()),
            start_time: Some(shifted(base, 3 * SECOND)),
            text: Some("PLAIN".into()),
            ..EventFilter::default()
        },
    ];
    for filter in filters {
        let want = expected(&events, &filter);
        let page = store.query(&EventQuery { filter: filter.clone(), limit: 1000, ..EventQuery::default() }).await;
        let page = page.unwrap();
        assert_eq!(page.events, want, "{filter:?}");
        assert_eq!(page.total, want.len() as u64, "{filter:?}");
        // The log read by seq filters the same way.
        let mut by_seq = want.clone();
        by_seq.sort_by_key(|e| e.seq);
        assert_eq!(store.events_after(0, &filter, 1000).await.unwrap(), by_seq, "{filter:?}");
    }
}

pub(super) async fn type_patterns_match_the_same_as_in_memory_however_many_types_exist(store: Arc<dyn Store>) {
    let mut types: Vec<String> = (0..300).map(|i| format!("many.t{i}")).collect();
    types.extend(
        ["user.created", "user.profile.updated", "users.created", "user", "order.created", "a.b.c.d"].map(String::from),
    );
    store.append(types.iter().map(NewEvent::new).collect()).await.unwrap();
    for text in ["many.*", "many.>", "user.*", "user.>", "*.created", "*.*", "a.*.c.>", "*", "nothing.*", "user"] {
        let filter = EventFilter { event_type: pattern(text), ..EventFilter::default() };
        let expected = types.iter().filter(|t| filter.event_type.as_ref().unwrap().matches(t)).count() as u64;
        let page = store.query(&EventQuery { filter, limit: 1, ..EventQuery::default() }).await.unwrap();
        assert_eq!(page.total, expected, "pattern {text}");
    }
}

pub(super) async fn query_pages_by_timestamp_then_seq_with_a_total(store: Arc<dyn Store>) {
    // Timestamps out of seq order, with ties.
    let base = Timestamp::from_micros(1_767_225_600_000_000);
    let offsets = [5, 1, 3, 3, 9, 0, 3, 7, 1, 8];
    let events =
        stored(store.as_ref(), offsets.iter().map(|s| at("page.viewed", shifted(base, s * SECOND))).collect()).await;
    let mut newest_first = events.clone();
    newest_first.sort_by_key(|e| std::cmp::Reverse((e.timestamp, e.seq)));
    let oldest_first: Vec<Event> = newest_first.iter().rev().cloned().collect();

    for (order, all) in [(Order::Desc, &newest_first), (Order::Asc, &oldest_first)] {
        let mut paged = Vec::new();
        for offset in (0..12).step_by(3) {
            let query = EventQuery { limit: 3, offset, order, ..EventQuery::default() };
            let page = store.query(&query).await.unwrap();
            assert_eq!(page.total, 10, "the total counts every match, whatever the page ({order:?}, {offset})");
            paged.extend(page.events);
        }
        assert_eq!(&paged, all, "{order:?}");
    }
    let past_the_end = store.query(&EventQuery { offset: 50, ..EventQuery::default() }).await.unwrap();
    assert_eq!((past_the_end.events.len(), past_the_end.total), (0, 10));
    let huge_offset = store.query(&EventQuery { offset: u64::MAX, ..EventQuery::default() }).await.unwrap();
    assert_eq!((huge_offset.events.len(), huge_offset.total), (0, 10));
}

pub(super) async fn events_after_reads_the_log_in_seq_order(store: Arc<dyn Store>) {
    let base = Timestamp::from_micros(1_767_225_600_000_000);
    // Later seqs with earlier timestamps: the log is read by seq, never by time.
    let events = stored(
        store.as_ref(),
        (0..10).map(|i| at(if i % 2 == 0 { "even" } else { "odd" }, shifted(base, -i * SECOND))).collect(),
    )
    .await;
    let all = EventFilter::default();
    assert_eq!(store.events_after(0, &all, 100).await.unwrap(), events);
    assert_eq!(store.events_after(events[3].seq, &all, 4).await.unwrap(), events[4..8]);
    assert!(store.events_after(events[9].seq, &all, 100).await.unwrap().is_empty());
    let odd = EventFilter { event_type: pattern("odd"), ..EventFilter::default() };
    let after = store.events_after(events[2].seq, &odd, 2).await.unwrap();
    assert_eq!(after, [events[3].clone(), events[5].clone()]);
}

pub(super) async fn events_by_seq_returns_those_that_exist_in_seq_order_once(store: Arc<dyn Store>) {
    let events = stored(store.as_ref(), (0..1200).map(|i| NewEvent::new(format!("t.e{}", i % 7))).collect()).await;
    let seq = |i: usize| events[i].seq;
    let missing = events.last().unwrap().seq + 100;
    let asked = [seq(5), seq(1), missing, seq(5), seq(3)];
    assert_eq!(store.events_by_seq(&asked).await.unwrap(), [events[1].clone(), events[3].clone(), events[5].clone()]);
    assert!(store.events_by_seq(&[]).await.unwrap().is_empty());
    // More than any one statement's list takes.
    let every: Vec<i64> = events.iter().rev().map(|e| e.seq).collect();
    assert_eq!(store.events_by_seq(&every).await.unwrap(), events);
}
