//! Replay jobs' contract: progress saved and replaced, jobs a stop interrupted marked failed, and a
//! replay's deliveries counted as they finish.

use std::sync::Arc;

use super::delivery::{attempt, claim_now, complete, delivery};
use super::{SECOND, shifted, stored, subscription};
use crate::domain::{NewEvent, ReplayId, ReplayProgress, ReplayStatus, Timestamp};
use crate::storage::{NewDelivery, NextStep, Store};

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

pub(super) async fn replays_are_saved_replaced_and_failed_after_a_stop(store: Arc<dyn Store>) {
    let running = progress(ReplayStatus::Running);
    let other_running = progress(ReplayStatus::Running);
    let finished = ReplayProgress {
        done: 240,
        failed: 3,
        finished_at: Some(shifted(Timestamp::now(), SECOND)),
        ..progress(ReplayStatus::Completed)
    };
    for job in [&running, &other_running, &finished] {
        store.save_replay(job).await.unwrap();
    }
    assert_eq!(store.replay(finished.replay_id).await.unwrap().as_ref(), Some(&finished));

    let advanced = ReplayProgress { done: 100, failed: 1, ..running.clone() };
    store.save_replay(&advanced).await.unwrap();
    assert_eq!(store.replay(running.replay_id).await.unwrap().as_ref(), Some(&advanced), "saving replaces");

    let before = Timestamp::now();
    assert_eq!(store.fail_running_replays("the server stopped").await.unwrap(), 2);
    for id in [running.replay_id, other_running.replay_id] {
        let failed = store.replay(id).await.unwrap().unwrap();
        assert_eq!((failed.status, failed.error.as_deref()), (ReplayStatus::Failed, Some("the server stopped")));
        assert!(failed.finished_at.is_some_and(|at| at >= before));
    }
    assert_eq!(store.replay(advanced.replay_id).await.unwrap().unwrap().done, 100, "progress is kept");
    assert_eq!(store.replay(finished.replay_id).await.unwrap().as_ref(), Some(&finished), "finished ones stay");
    assert_eq!(store.fail_running_replays("again").await.unwrap(), 0);
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
