//! What instances know of each other: their records (with the claims each holds) and the change log.

use std::sync::Arc;

use super::delivery::{claim_now, delivery};
use super::{SECOND, shifted, stored, subscription};
use crate::domain::{NewEvent, ReplayId, ReplayProgress, ReplayStatus, Timestamp};
use crate::storage::{Claim, InstanceClaims, InstanceRecord, Store, StoredReplay};

fn record(store: &dyn Store, addr: &str, last_seen: Timestamp) -> InstanceRecord {
    InstanceRecord {
        instance_id: store.instance_id().to_owned(),
        addr: addr.to_owned(),
        version: "9.9.9".into(),
        started_at: shifted(last_seen, -10 * SECOND),
        last_seen,
    }
}

pub(super) async fn an_instance_is_listed_with_its_claims_while_it_beats(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    assert!(store.instances(shifted(now, -15 * SECOND)).await.unwrap().is_empty());
    store.heartbeat(&record(store.as_ref(), "10.0.0.7:8686", shifted(now, -20 * SECOND))).await.unwrap();
    assert!(store.instances(shifted(now, -15 * SECOND)).await.unwrap().is_empty(), "not seen lately");
    let beat = record(store.as_ref(), "10.0.0.7:8686", now);
    store.heartbeat(&beat).await.unwrap();
    let listed = store.instances(shifted(now, -15 * SECOND)).await.unwrap();
    // The latest record, start included: an instance started again under the same id shows its new start.
    assert_eq!(listed, [(beat.clone(), InstanceClaims::default())]);

    // Its claims, counted.
    let events = stored(store.as_ref(), (0..3).map(|_| NewEvent::new("order.paid")).collect()).await;
    let target = subscription("claims", 0);
    store.insert_subscription(&target).await.unwrap();
    let queued = events.iter().take(2).map(|e| delivery(e, target.subscription_id)).collect();
    store.enqueue_deliveries(queued, None).await.unwrap();
    assert_eq!(claim_now(store.as_ref()).await.len(), 2);
    let claim = Claim { now, lease_until: shifted(now, 60 * SECOND), limit: 1 };
    assert_eq!(store.complete_and_claim(Vec::new(), Some(claim)).await.unwrap().claimed.len(), 1);
    let progress = ReplayProgress {
        replay_id: ReplayId::new_v7(),
        status: ReplayStatus::Running,
        events_count: 1,
        total: 0,
        done: 0,
        failed: 0,
        started_at: now,
        finished_at: None,
        error: None,
    };
    let replay = StoredReplay { progress, plan: "{}".into(), state: "{}".into() };
    store.insert_replay(&replay, shifted(now, 60 * SECOND)).await.unwrap();
    let listed = store.instances(shifted(now, -15 * SECOND)).await.unwrap();
    assert_eq!(listed[0].1, InstanceClaims { deliveries: 2, processing: 1, replays: 1 });

    store.leave().await.unwrap();
    assert!(store.instances(shifted(now, -15 * SECOND)).await.unwrap().is_empty(), "gone once it leaves");
}

pub(super) async fn changes_are_read_back_in_order_and_forgotten_when_old(store: Arc<dyn Store>) {
    assert_eq!(store.last_change().await.unwrap(), 0);
    assert!(store.changes_after(0, 10).await.unwrap().is_empty());
    assert!(store.record_changes(&[]).await.unwrap().is_empty());
    let first = store.record_changes(&["a".into(), "b".into()]).await.unwrap();
    let second = store.record_changes(&["c".into()]).await.unwrap();
    let all = store.changes_after(0, 10).await.unwrap();
    let ids: Vec<i64> = all.iter().map(|c| c.id).collect();
    assert_eq!([first, second].concat(), ids, "the ids recorded are those read back, body for body");
    let bodies: Vec<&str> = all.iter().map(|c| c.body.as_str()).collect();
    assert_eq!(bodies, ["a", "b", "c"], "in the order recorded");
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert!(all.iter().all(|c| c.origin == store.instance_id()));
    assert_eq!(store.last_change().await.unwrap(), all[2].id);
    assert_eq!(store.changes_after(all[0].id, 1).await.unwrap(), [all[1].clone()], "after an id, at most limit");

    assert_eq!(store.prune_changes(shifted(Timestamp::now(), -60 * SECOND)).await.unwrap(), 0, "nothing that old");
    assert_eq!(store.prune_changes(shifted(Timestamp::now(), SECOND)).await.unwrap(), 3);
    assert!(store.changes_after(0, 10).await.unwrap().is_empty());
    assert!(store.last_change().await.unwrap() <= all[2].id);
}
