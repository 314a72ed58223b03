//! Replay jobs' contract: saved with their plan and state by the instance holding them, taken over
//! once their lease ends, and their deliveries counted as they finish.

use std::sync::Arc;

use super::delivery::{attempt, claim_now, complete, delivery};
use super::{SECOND, shifted, stored, subscription};
use crate::domain::{NewEvent, ReplayId, ReplayProgress, ReplayStatus, Timestamp};
use crate::storage::{NewDelivery, NextStep, Store, StoredReplay};

fn progress(status: ReplayStatus) -> ReplayProgress {
    ReplayProgress {
        replay_id: ReplayId::new_v7(),
        status,
        events_count: 120,
        total: 240,
        done: 0,
        failed: 0,
        started_at: Timestamp::now(),
        finished_at: None,
        error: None,
    }
}

/// A replay as the engine would store it.
fn stored_replay(progress: ReplayProgress) -> StoredReplay {
    StoredReplay { progress, plan: r#"{"selection":{"stream":"order:1"}}"#.into(), state: r#"{"next":0}"#.into() }
}

pub(super) async fn replays_are_saved_by_their_holder_and_taken_over_when_its_lease_ends(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    let lease = shifted(now, 30 * SECOND);
    let running = stored_replay(progress(ReplayStatus::Running));
    let other = stored_replay(progress(ReplayStatus::Running));
    store.insert_replay(&running, lease).await.unwrap();
    store.insert_replay(&other, lease).await.unwrap();
    assert_eq!(store.replay(running.progress.replay_id).await.unwrap().as_ref(), Some(&running.progress));
    assert_eq!(store.replay(ReplayId::new_v7()).await.unwrap(), None);

    // Its holder saves progress and state, renewing the lease.
    let advanced = ReplayProgress { done: 100, failed: 1, ..running.progress.clone() };
    assert!(store.save_replay(&advanced, r#"{"next":7}"#, shifted(now, 60 * SECOND)).await.unwrap());
    assert_eq!(store.replay(advanced.replay_id).await.unwrap().as_ref(), Some(&advanced), "saving replaces");

    // Nobody takes over while the leases last.
    assert_eq!(store.claim_replay(shifted(now, 10 * SECOND), shifted(now, 100 * SECOND)).await.unwrap(), None);
    // Once one runs out, it is taken over with the state last saved, and only once.
    let later = shifted(now, 45 * SECOND);
    let taken = store.claim_replay(later, shifted(later, 30 * SECOND)).await.unwrap().expect("the lapsed one");
    assert_eq!(taken.progress.replay_id, other.progress.replay_id);
    assert_eq!((taken.plan.as_str(), taken.state.as_str()), (other.plan.as_str(), other.state.as_str()));
    assert_eq!(store.claim_replay(later, shifted(later, 30 * SECOND)).await.unwrap(), None);
    let much_later = shifted(now, 75 * SECOND);
    let second = store.claim_replay(much_later, shifted(much_later, 30 * SECOND)).await.unwrap().expect("lapsed");
    assert_eq!((second.progress, second.state.as_str()), (advanced.clone(), r#"{"next":7}"#));

    // Letting go ends every lease at once (this store's own; an exclusive store's, all of them).
    assert_eq!(store.release_replays().await.unwrap(), 2);
    let again = store.claim_replay(now, shifted(now, 30 * SECOND)).await.unwrap().expect("released");
    assert!([running.progress.replay_id, other.progress.replay_id].contains(&again.progress.replay_id));

    // A finished replay is never taken over.
    let done = ReplayProgress {
        status: ReplayStatus::Completed,
        finished_at: Some(shifted(now, SECOND)),
        ..again.progress.clone()
    };
    assert!(store.save_replay(&done, &again.state, now).await.unwrap());
    assert_eq!(store.replay(done.replay_id).await.unwrap().as_ref(), Some(&done));
    let far = shifted(now, 3600 * SECOND);
    let last = store.claim_replay(far, shifted(far, SECOND)).await.unwrap().expect("the other one");
    assert_ne!(last.progress.replay_id, done.replay_id);
    assert_eq!(store.claim_replay(far, shifted(far, SECOND)).await.unwrap(), None);
}

pub(super) async fn a_replays_finished_deliveries_are_counted(store: Arc<dyn Store>) {
    let events = stored(store.as_ref(), (0..4).map(|_| NewEvent::new("order.paid")).collect()).await;
    let target = subscription("replayed", 0);
    store.insert_subscription(&target).await.unwrap();
    let replay_id = ReplayId::new_v7();
    assert_eq!(store.replay_deliveries_finished(replay_id).await.unwrap(), (0, 0));
    let queued: Vec<_> = events
        .iter()
        .map(|event| NewDelivery { replay_id: Some(replay_id), ..delivery(event, target.subscription_id) })
        .collect();
    store.enqueue_deliveries(queued.clone(), None).await.unwrap();
    // Queued again with the same ids (a replay carried on after a crash re-queues the page it was on):
    // nothing more is stored, so nothing is sent or counted twice.
    store.enqueue_deliveries(queued.clone(), None).await.unwrap();
    // A delivery of the same event outside the replay does not count.
    let outside = delivery(&events[0], target.subscription_id);
    store.enqueue_deliveries(vec![outside.clone()], None).await.unwrap();

    let claimed = claim_now(store.as_ref()).await;
    assert_eq!(claimed.len(), 5);
    let claim_of = |id| claimed.iter().find(|c| c.delivery_id == id).expect("claimed");
    let steps = [
        (queued[0].delivery_id, NextStep::Delivered),
        (queued[1].delivery_id, NextStep::Dead { event_type: "order.paid".into() }),
        (queued[2].delivery_id, NextStep::Cancelled),
        (queued[3].delivery_id, NextStep::RetryAt(shifted(Timestamp::now(), 60 * SECOND))),
        (outside.delivery_id, NextStep::Dead { event_type: "order.paid".into() }),
    ];
    for (id, next) in steps {
        let claim = claim_of(id);
        let sent = (next != NextStep::Cancelled).then(|| attempt(claim, Some(500)));
        complete(store.as_ref(), claim, sent.as_ref(), next).await;
    }
    // Finished: delivered, dead or cancelled; the one waiting for its retry is not.
    assert_eq!(store.replay_deliveries_finished(replay_id).await.unwrap(), (3, 1));
}
