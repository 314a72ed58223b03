//! The publication cursors: made at the newest seq, claimed by one owner at a time with a lease, moved
//! only forward by their holder; and dead letters recorded outside delivery and processing.

use std::sync::Arc;

use super::{SECOND, shifted, stored};
use crate::domain::delivery::DlqQuery;
use crate::domain::{DeadLetter, DeadLetterKind, DlqId, NewEvent, Timestamp};
use crate::storage::{EVENTS_PUBLICATION, Store};

pub(super) async fn a_publication_cursor_starts_at_the_newest_seq_and_is_held_by_one_owner(store: Arc<dyn Store>) {
    let events = stored(store.as_ref(), (0..3).map(|_| NewEvent::new("order.paid")).collect()).await;
    let now = Timestamp::now();
    let lease = shifted(now, 30 * SECOND);
    // Made at the newest seq: what was stored before publications were turned on is not published.
    let at = store.claim_publication(EVENTS_PUBLICATION, "a", now, lease).await.unwrap();
    assert_eq!(at, Some(events[2].seq));
    // Its holder renews it; nobody else takes it while the lease runs.
    assert_eq!(store.claim_publication(EVENTS_PUBLICATION, "a", now, lease).await.unwrap(), Some(events[2].seq));
    assert_eq!(store.claim_publication(EVENTS_PUBLICATION, "b", now, lease).await.unwrap(), None);
    assert!(!store.advance_publication(EVENTS_PUBLICATION, "b", events[2].seq + 5).await.unwrap(), "not b's");

    let more = stored(store.as_ref(), vec![NewEvent::new("order.paid"), NewEvent::new("order.paid")]).await;
    assert!(store.advance_publication(EVENTS_PUBLICATION, "a", more[1].seq).await.unwrap());
    assert!(store.advance_publication(EVENTS_PUBLICATION, "a", more[0].seq).await.unwrap(), "held, but never back");
    assert_eq!(store.claim_publication(EVENTS_PUBLICATION, "a", now, lease).await.unwrap(), Some(more[1].seq));

    // Once the lease is over another owner takes it over where it stands, and the first one cannot move it.
    let later = shifted(now, 31 * SECOND);
    let b = store.claim_publication(EVENTS_PUBLICATION, "b", later, shifted(later, 30 * SECOND)).await.unwrap();
    assert_eq!(b, Some(more[1].seq));
    assert!(!store.advance_publication(EVENTS_PUBLICATION, "a", more[1].seq + 1).await.unwrap());

    // Released, it is free at once; cursors of other names are apart.
    store.release_publication(EVENTS_PUBLICATION, "a").await.unwrap();
    assert_eq!(
        store.claim_publication(EVENTS_PUBLICATION, "a", later, lease).await.unwrap(),
        None,
        "a released nothing"
    );
    store.release_publication(EVENTS_PUBLICATION, "b").await.unwrap();
    assert_eq!(store.claim_publication(EVENTS_PUBLICATION, "a", later, lease).await.unwrap(), Some(more[1].seq));
    assert_eq!(store.claim_publication("other", "b", later, lease).await.unwrap(), Some(more[1].seq));
}

pub(super) async fn dead_letters_of_publications_and_ingest_are_recorded_and_listed(store: Arc<dyn Store>) {
    let events = stored(store.as_ref(), vec![NewEvent::new("big.one")]).await;
    let now = Timestamp::now();
    for kind in [DeadLetterKind::Publication, DeadLetterKind::Ingest] {
        let entry = DeadLetter {
            dlq_id: DlqId::new_v7(),
            kind,
            event_id: events[0].event_id,
            event_type: "big.one".into(),
            subscription_id: None,
            processor_id: None,
            delivery_id: None,
            attempts: 1,
            last_status_code: None,
            last_error: Some("too large".into()),
            first_failed_at: now,
            last_failed_at: now,
            created_at: now,
            attempt_history: None,
        };
        store.add_dead_letter(&entry).await.unwrap();
        let (listed, total) =
            store.dead_letters(&DlqQuery { kind: Some(kind), limit: 10, ..DlqQuery::default() }).await.unwrap();
        assert_eq!(total, 1);
        assert_eq!(listed[0].dlq_id, entry.dlq_id);
        assert_eq!(listed[0].kind, kind);
        assert_eq!(listed[0].last_error.as_deref(), Some("too large"));
    }
}
