//! Projections' contract: cached folds only move forward, snapshots are kept and found by version
//! and by time, and the narrow stream reads folding needs.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{SECOND, at, shifted, stored};
use crate::domain::{EventId, NewEvent, Timestamp};
use crate::storage::{CachedProjection, Fold, ProjectionSnapshot, Store, StreamChange, VersionRange};

const BASE: Timestamp = Timestamp::from_micros(1_767_225_600_000_000);

fn time(second: i64) -> Timestamp {
    shifted(BASE, second * SECOND)
}

fn fold(version: i64, state: Value, max_second: i64) -> Fold {
    Fold {
        state,
        version,
        last_event_id: EventId::new_v7(),
        updated_at: time(max_second),
        max_timestamp: time(max_second),
    }
}

fn cached(stream_id: &str, fold: Fold) -> CachedProjection {
    CachedProjection { stream_id: stream_id.into(), fold, snapshot_version: 0, tail_min_timestamp: None }
}

fn snapshot(version: i64, from_version: i64, max_second: i64, min_second: i64) -> ProjectionSnapshot {
    ProjectionSnapshot {
        stream_id: "cart:1".into(),
        fold: fold(version, json!({"v": version}), max_second),
        from_version,
        min_timestamp: time(min_second),
    }
}

fn range(after: i64, until: Option<i64>) -> VersionRange {
    VersionRange { after, until }
}

pub(super) async fn a_cached_projection_only_moves_forward(store: Arc<dyn Store>) {
    store.save_projections(Vec::new(), Vec::new()).await.unwrap();
    let second = CachedProjection {
        snapshot_version: 1,
        tail_min_timestamp: Some(time(3)),
        ..cached("cart:1", fold(2, json!({"items": 2, "note": "ü"}), 4))
    };
    store.save_projections(vec![second.clone()], Vec::new()).await.unwrap();
    assert_eq!(store.cached_projection("cart:1").await.unwrap().as_ref(), Some(&second));
    assert_eq!(store.cached_projection("cart:2").await.unwrap(), None);

    // An older fold, or another at the same version (a racing writer), changes nothing.
    let older = cached("cart:1", fold(1, json!({"items": 1}), 2));
    let same = cached("cart:1", fold(2, json!({"items": "other"}), 9));
    store.save_projections(vec![older, same], Vec::new()).await.unwrap();
    assert_eq!(store.cached_projection("cart:1").await.unwrap().as_ref(), Some(&second));

    let deleted = cached("cart:1", fold(5, Value::Null, 8));
    store.save_projections(vec![deleted.clone()], Vec::new()).await.unwrap();
    assert_eq!(store.cached_projection("cart:1").await.unwrap(), Some(deleted), "a deleted state is null");
}

pub(super) async fn snapshots_are_kept_and_found_by_version_and_by_time(store: Arc<dyn Store>) {
    // Events need not arrive in time order: the third snapshot's newest timestamp is the second's.
    let snapshots = vec![snapshot(10, 0, 10, 1), snapshot(20, 10, 20, 11), snapshot(30, 20, 20, 5)];
    store.save_projections(Vec::new(), snapshots.clone()).await.unwrap();
    // A snapshot saved again (by another writer, with its own fold) keeps the first.
    let mut again = snapshot(20, 10, 20, 11);
    again.fold.state = json!({"v": "changed"});
    store.save_projections(Vec::new(), vec![again]).await.unwrap();

    let by_version = |version| {
        let store = store.clone();
        async move { store.snapshot_at_version("cart:1", version).await.unwrap() }
    };
    assert_eq!(by_version(9).await, None);
    assert_eq!(by_version(10).await.as_ref(), Some(&snapshots[0]));
    assert_eq!(by_version(29).await.as_ref(), Some(&snapshots[1]));
    assert_eq!(by_version(1000).await.as_ref(), Some(&snapshots[2]));
    assert_eq!(store.snapshot_at_version("cart:2", 1000).await.unwrap(), None);

    let by_time = |second| {
        let store = store.clone();
        async move { store.snapshot_at_time("cart:1", time(second)).await.unwrap() }
    };
    assert_eq!(by_time(9).await, None);
    assert_eq!(by_time(15).await.as_ref(), Some(&snapshots[0]));
    assert_eq!(by_time(20).await.as_ref(), Some(&snapshots[2]), "the newest of those all at or before the time");
}

pub(super) async fn ranges_at_time_are_the_stretches_that_can_hold_earlier_events(store: Arc<dyn Store>) {
    assert_eq!(store.ranges_at_time("cart:1", 0, time(15)).await.unwrap(), [range(0, None)], "no snapshots");
    // (0,10] holds an event of second 1; (10,20] none before second 30; (20,30] one of second 12.
    let snapshots = vec![snapshot(10, 0, 10, 1), snapshot(20, 10, 40, 30), snapshot(30, 20, 45, 12)];
    store.save_projections(Vec::new(), snapshots).await.unwrap();
    let ranges = |after, second| {
        let store = store.clone();
        async move { store.ranges_at_time("cart:1", after, time(second)).await.unwrap() }
    };
    assert_eq!(ranges(0, 15).await, [range(0, Some(10)), range(20, None)], "adjacent stretches joined");
    assert_eq!(ranges(0, 35).await, [range(0, None)]);
    assert_eq!(ranges(0, 0).await, [range(30, None)], "always everything after the newest snapshot");
    assert_eq!(ranges(15, 15).await, [range(20, None)]);
    assert_eq!(ranges(25, 15).await, [range(25, None)], "a stretch starting before `after` starts at it");
    assert_eq!(ranges(40, 15).await, [range(40, None)]);
}

pub(super) async fn stream_changes_read_a_range_up_to_a_time_with_a_limit(store: Arc<dyn Store>) {
    let seconds = [5, 1, 7, 3, 9, 2];
    let events = stored(
        store.as_ref(),
        seconds
            .iter()
            .enumerate()
            .map(|(i, s)| NewEvent {
                stream_id: Some("cart:1".into()),
                data: json!({"i": i}).as_object().cloned().unwrap(),
                ..at(if i == 5 { "cart.deleted" } else { "cart.updated" }, time(*s))
            })
            .chain([NewEvent { stream_id: Some("cart:2".into()), ..NewEvent::new("cart.updated") }])
            .collect(),
    )
    .await;
    let change = |i: usize| StreamChange {
        version: events[i].stream_version.unwrap(),
        event_id: events[i].event_id,
        event_type: events[i].event_type.clone(),
        data: events[i].data.clone(),
        timestamp: events[i].timestamp,
    };
    let read = |versions, until: Option<i64>, limit| {
        let store = store.clone();
        async move { store.stream_changes("cart:1", versions, until.map(time), limit).await.unwrap() }
    };
    assert_eq!(read(range(0, None), None, 100).await, (0..6).map(change).collect::<Vec<_>>());
    assert_eq!(read(range(1, Some(4)), None, 100).await, [change(1), change(2), change(3)], "versions (1, 4]");
    assert_eq!(read(range(0, None), Some(3), 100).await, [change(1), change(3), change(5)], "at or before second 3");
    assert_eq!(read(range(2, None), Some(3), 1).await, [change(3)]);
    assert!(read(range(6, None), None, 100).await.is_empty());
}

pub(super) async fn stale_projections_are_the_streams_whose_fold_is_behind(store: Arc<dyn Store>) {
    let on = |stream: &str| NewEvent { stream_id: Some(stream.into()), ..NewEvent::new("cart.updated") };
    stored(store.as_ref(), vec![on("cart:1"), on("cart:1"), on("cart:1"), on("cart:2"), on("cart:2"), on("cart:3")])
        .await;
    let folds = vec![cached("cart:1", fold(3, json!({}), 1)), cached("cart:2", fold(1, json!({}), 1))];
    store.save_projections(folds, Vec::new()).await.unwrap();
    assert!(store.stale_projections(&[]).await.unwrap().is_empty());
    let asked: Vec<String> = ["cart:3", "cart:1", "cart:2", "cart:4", "cart:2"].map(String::from).to_vec();
    let mut stale = store.stale_projections(&asked).await.unwrap();
    stale.sort();
    assert_eq!(stale, ["cart:2", "cart:3"], "behind, or never folded; a stream with no events never is");
}
