//! Archiving's contract: one lease, a plan that outlives a stopped run until its events are marked,
//! lines in (`timestamp`, seq) order, marking that moves the status counters, and deleting that keeps
//! what streams, projections, seqs and pending deliveries need.

use std::sync::Arc;

use super::{SECOND, at, shifted, stored};
use crate::domain::{DeliveryId, EventStatus, SubscriptionId, Timestamp};
use crate::storage::{ArchivePart, CachedProjection, Fold, NewDelivery, ProjectionSnapshot, Store};

fn processed(event_type: &str, timestamp: Timestamp) -> crate::domain::NewEvent {
    crate::domain::NewEvent { skip_processing: true, ..at(event_type, timestamp) }
}

fn status_count(counters: &crate::domain::Counters, status: EventStatus) -> i64 {
    counters.by_status.get(status.as_str()).copied().unwrap_or(0)
}

pub(super) async fn a_plan_outlives_a_stopped_run_until_its_events_are_marked(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    let old = shifted(now, -3600 * SECOND);
    // Out of time order on purpose: lines come in (timestamp, seq) order.
    let events = stored(
        store.as_ref(),
        vec![
            processed("b", shifted(old, 2 * SECOND)),
            processed("a", old),
            at("pending", old),
            processed("recent", now),
        ],
    )
    .await;
    let lease = shifted(now, 60 * SECOND);
    assert_eq!(store.claim_archive(now, lease).await.unwrap(), Some(vec![]), "a free lease, no plan");

    let before = shifted(now, -60 * SECOND);
    let lines = store.archivable(EventStatus::Processed, before, None, 10).await.unwrap();
    assert_eq!(lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [events[1].seq, events[0].seq]);
    let first = store.archivable(EventStatus::Processed, before, None, 1).await.unwrap();
    assert_eq!(first, lines[..1], "a limit");
    let rest = store.archivable(EventStatus::Processed, before, Some((first[0].timestamp, first[0].seq)), 10);
    assert_eq!(rest.await.unwrap(), lines[1..], "after where the last batch ended");
    let same_time = store.archivable(EventStatus::Processed, before, Some((lines[1].timestamp, lines[1].seq - 1)), 10);
    assert_eq!(same_time.await.unwrap(), lines[1..], "a later seq at the same time comes after");
    assert!(store.archivable(EventStatus::Failed, before, None, 10).await.unwrap().is_empty());
    let read: crate::domain::Event = serde_json::from_str(&lines[0].line).unwrap();
    assert_eq!(read, events[1], "a line is the event");

    let plan = vec![ArchivePart { path: "events/x/i_1.jsonl".into(), seqs: vec![events[1].seq, events[0].seq] }];
    assert!(store.plan_archive(&plan, lease).await.unwrap());
    // Stopped here: the next claim (this instance again, or anyone once the lease ran out) gets the plan.
    assert_eq!(store.claim_archive(now, lease).await.unwrap(), Some(plan.clone()));
    assert_eq!(store.claim_archive(shifted(lease, SECOND), lease).await.unwrap(), Some(plan.clone()));
    let again = store.archive_lines(&[events[0].seq, events[1].seq, 999_999]).await.unwrap();
    assert_eq!(again, lines, "the same lines, in the same order, missing ones left out");

    let counters = store.counters().await.unwrap();
    assert_eq!(store.mark_archived(&plan, lease).await.unwrap(), Some(2));
    let after = store.counters().await.unwrap();
    assert_eq!(status_count(&after, EventStatus::Processed), status_count(&counters, EventStatus::Processed) - 2);
    assert_eq!(status_count(&after, EventStatus::Archived), 2);
    assert_eq!(after.by_type, counters.by_type);
    assert_eq!(store.event(events[1].event_id).await.unwrap().unwrap().status, EventStatus::Archived);
    assert_eq!(store.claim_archive(now, lease).await.unwrap(), Some(vec![]), "the plan went with the marking");
    assert_eq!(store.mark_archived(&plan, lease).await.unwrap(), Some(0), "marking twice changes nothing");
    assert!(store.archivable(EventStatus::Processed, before, None, 10).await.unwrap().is_empty());

    store.release_archive().await.unwrap();
    assert!(!store.plan_archive(&plan, lease).await.unwrap(), "a plan needs the lease");
    assert_eq!(store.mark_archived(&plan, lease).await.unwrap(), None, "so does marking");
    assert_eq!(store.oldest_event().await.unwrap(), Some(events[1].timestamp));
}

pub(super) async fn deleting_keeps_the_newest_event_stream_heads_unsnapshotted_versions_and_pending_deliveries(
    store: Arc<dyn Store>,
) {
    let now = Timestamp::now();
    let old = shifted(now, -3600 * SECOND);
    let mut new = vec![processed("loose", old), processed("loose", old), processed("loose", old)];
    for _ in 0..4 {
        new.push(crate::domain::NewEvent { stream_id: Some("order:1".into()), ..processed("order.updated", old) });
    }
    new.push(processed("newest", old));
    let events = stored(store.as_ref(), new).await;
    // A snapshot at version 2 of order:1 (versions 3 and 4 come after it).
    let fold = |version: i64| Fold {
        state: serde_json::json!({"v": version}),
        version,
        last_event_id: events[2 + version as usize].event_id,
        updated_at: old,
        max_timestamp: old,
    };
    let snapshot =
        ProjectionSnapshot { stream_id: "order:1".into(), fold: fold(2), from_version: 0, min_timestamp: old };
    let cached = CachedProjection {
        stream_id: "order:1".into(),
        fold: fold(4),
        snapshot_version: 2,
        tail_min_timestamp: Some(old),
    };
    store.save_projections(vec![cached], vec![snapshot]).await.unwrap();
    // A delivery of the second loose event still pending.
    let delivery = NewDelivery {
        delivery_id: DeliveryId::new_v7(),
        event_seq: events[1].seq,
        event_id: events[1].event_id,
        subscription_id: SubscriptionId::new_v7(),
        replay_id: None,
        claimed_until: None,
    };
    assert!(store.enqueue_deliveries(vec![delivery], None).await.unwrap());

    let lease = shifted(now, 60 * SECOND);
    store.claim_archive(now, lease).await.unwrap().expect("the lease");
    let plan = vec![ArchivePart { path: "p".into(), seqs: events.iter().map(|e| e.seq).collect() }];
    assert_eq!(store.mark_archived(&plan, lease).await.unwrap(), Some(8));
    let counters = store.counters().await.unwrap();

    let before = shifted(now, -60 * SECOND);
    let first = store.delete_archived(before, None, 5).await.unwrap();
    assert_eq!(first.examined, 5);
    let rest = store.delete_archived(before, first.last, 5).await.unwrap();
    assert_eq!(rest.examined, 3);
    assert_eq!(store.delete_archived(before, rest.last, 5).await.unwrap().examined, 0);
    // Deleted: the first and third loose events, versions 1 and 2 of the stream.
    assert_eq!(first.deleted + rest.deleted, 4);
    let kept: Vec<bool> = {
        let mut kept = Vec::new();
        for event in &events {
            kept.push(store.event(event.event_id).await.unwrap().is_some());
        }
        kept
    };
    assert_eq!(kept, [false, true, false, false, false, true, true, true]);
    assert_eq!(store.stream_version("order:1").await.unwrap(), 4);
    assert_eq!(store.first_kept_version("order:1").await.unwrap(), 3);
    assert_eq!(store.last_seq().await.unwrap(), events[7].seq, "the newest event stays");
    assert_eq!(store.counters().await.unwrap(), counters, "statistics keep counting deleted events");
}
