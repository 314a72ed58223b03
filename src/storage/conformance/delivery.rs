//! The delivery tables' contract: subscriptions, the cursor queued with its deliveries, claims as
//! leases, every next step of a completed delivery, and the dead-letter queue.

use std::collections::HashSet;
use std::sync::Arc;

use super::{SECOND, shifted, stored, subscription};
use crate::domain::delivery::{AttemptHistory, DlqGroupKey, DlqGroupQuery, DlqQuery, DlqSelector};
use crate::domain::{
    DeadLetter, DeadLetterKind, DeliveryAttempt, DeliveryId, DlqId, Event, EventCategory, EventSource, EventStatus,
    NewEvent, ProcessingResult, ProcessorId, RetryPolicy, Subscription, SubscriptionId, Timestamp, TypePattern,
};
use crate::storage::{
    Claim, ClaimedDelivery, Cursor, CursorMove, DELIVERY_CURSOR, DeliveryResult, NewDelivery, NextStep, ProcessingNext,
    ProcessingOutcome, Store,
};

/// A delivery of `event` to `subscription`.
pub(super) fn delivery(event: &Event, subscription: SubscriptionId) -> NewDelivery {
    NewDelivery {
        delivery_id: DeliveryId::new_v7(),
        event_seq: event.seq,
        event_id: event.event_id,
        subscription_id: subscription,
        replay_id: None,
        claimed_until: None,
    }
}

/// A subscription saved in the store.
async fn saved(store: &dyn Store, name: &str) -> Subscription {
    let subscription = subscription(name, 0);
    store.insert_subscription(&subscription).await.unwrap();
    subscription
}

/// Everything due now for every subscription, leased for a minute.
pub(super) async fn claim_now(store: &dyn Store) -> Vec<ClaimedDelivery> {
    let now = Timestamp::now();
    let wants: Vec<(SubscriptionId, u32)> =
        store.subscriptions().await.unwrap().iter().map(|s| (s.subscription_id, 100)).collect();
    store.claim_deliveries(now, shifted(now, 60 * SECOND), &wants).await.unwrap()
}

/// The attempt made for `claimed`: `status` is the answer (2xx succeeds), none for a refused connection.
pub(super) fn attempt(claimed: &ClaimedDelivery, status: Option<u16>) -> DeliveryAttempt {
    let success = status.is_some_and(|s| (200..300).contains(&s));
    DeliveryAttempt {
        delivery_id: claimed.delivery_id,
        event_id: claimed.event_id,
        subscription_id: claimed.subscription_id,
        attempt: claimed.attempts + 1,
        success,
        status_code: status,
        response_body: status.map(|s| format!("answer {s}")),
        error: (!success).then(|| status.map_or("connection refused".to_owned(), |s| format!("HTTP {s}"))),
        duration_ms: 12,
        attempted_at: Timestamp::now(),
    }
}

/// Records one outcome, returning the dead letters it wrote.
pub(super) async fn complete(
    store: &dyn Store,
    claimed: &ClaimedDelivery,
    attempt: Option<&DeliveryAttempt>,
    next: NextStep,
) -> Vec<DeadLetter> {
    let result = DeliveryResult { claimed: claimed.clone(), attempt: attempt.cloned(), next };
    store.complete_deliveries(vec![result]).await.unwrap()
}

/// Queues one delivery of `event` to `subscription`, claims it (it must be the only one due), fails it
/// once and dead-letters it.
pub(super) async fn dead_delivery(store: &dyn Store, event: &Event, subscription: SubscriptionId) -> DeadLetter {
    dead_delivery_with(store, event, subscription, Some(500)).await
}

/// Like [`dead_delivery`], its last attempt answered `status` (or refused the connection for `None`).
pub(super) async fn dead_delivery_with(
    store: &dyn Store,
    event: &Event,
    subscription: SubscriptionId,
    status: Option<u16>,
) -> DeadLetter {
    store.enqueue_deliveries(vec![delivery(event, subscription)], None).await.unwrap();
    let claimed = claim_now(store).await;
    assert_eq!(claimed.len(), 1, "one delivery due");
    let failed = attempt(&claimed[0], status);
    let next = NextStep::Dead { event_type: event.event_type.clone() };
    let mut dead = complete(store, &claimed[0], Some(&failed), next).await;
    assert_eq!(dead.len(), 1);
    dead.remove(0)
}

/// Fails `event` in processing at once (every other pending event is processed), returning its dead letter.
pub(super) async fn dead_event(store: &dyn Store, event: &Event, processor_id: ProcessorId) -> DeadLetter {
    let now = Timestamp::now();
    let claim = Claim { now, lease_until: shifted(now, 60 * SECOND), limit: 1000 };
    let claimed = store.complete_and_claim(Vec::new(), Some(claim)).await.unwrap().claimed;
    let outcomes = claimed
        .iter()
        .map(|c| {
            let failed = c.event.event_id == event.event_id;
            ProcessingOutcome {
                seq: c.event.seq,
                event_id: c.event.event_id,
                event_type: c.event.event_type.clone(),
                results: vec![ProcessingResult {
                    event_id: c.event.event_id,
                    processor_id,
                    processor_name: "checker".into(),
                    success: !failed,
                    duration_ms: 1.0,
                    error: failed.then(|| "checker: no".to_owned()),
                    replay_id: None,
                    processed_at: Timestamp::now(),
                }],
                next: if failed {
                    ProcessingNext::Failed { error: "checker: no".into(), processor_id }
                } else {
                    ProcessingNext::Processed
                },
            }
        })
        .collect();
    let mut dead = store.complete_and_claim(outcomes, None).await.unwrap().dead_letters;
    assert_eq!(dead.len(), 1, "{event:?} was claimed and failed");
    dead.remove(0)
}

fn ids(claimed: &[ClaimedDelivery]) -> HashSet<DeliveryId> {
    claimed.iter().map(|c| c.delivery_id).collect()
}

fn delivery_count(store_counters: &crate::domain::Counters, key: &str) -> i64 {
    store_counters.by_delivery.get(key).copied().unwrap_or(0)
}

pub(super) async fn subscriptions_are_saved_listed_replaced_and_deleted(store: Arc<dyn Store>) {
    // The store decides the start (the last seq stored, here 0), whatever the subscription says.
    let mut first = subscription("orders", 0);
    first.event_types =
        vec![TypePattern::parse("t", "order.*").unwrap(), TypePattern::parse("t", "payment.>").unwrap()];
    first.event_sources = vec![EventSource::Frontend, EventSource::Scheduled];
    first.event_categories = vec![EventCategory::Order];
    first.secret = Some("whsec_c2VjcmV0".into());
    first.has_secret = true;
    first.retry_policy = RetryPolicy {
        max_retries: 7,
        initial_delay_ms: 50,
        backoff_multiplier: 1.5,
        max_delay_ms: 900,
        timeout_ms: 250,
    };
    let mut second = subscription("audit", 0);
    second.created_at = shifted(first.created_at, SECOND);
    // Listed by creation, whatever the order of saving.
    store.insert_subscription(&second).await.unwrap();
    store.insert_subscription(&first).await.unwrap();
    assert_eq!(store.subscriptions().await.unwrap(), [first.clone(), second.clone()], "secrets included");
    assert_eq!(store.counters().await.unwrap().subscriptions_active, 2);

    let mut changed = first.clone();
    changed.enabled = false;
    changed.disabled_reason = Some("paused by an operator".into());
    changed.callback_url = "https://elsewhere.example.com/hook".into();
    changed.secret = None;
    changed.has_secret = false;
    changed.updated_at = shifted(first.updated_at, 5 * SECOND);
    assert!(store.update_subscription(&changed).await.unwrap().is_some());
    assert_eq!(store.update_subscription(&subscription("never-saved", 0)).await.unwrap(), None, "no upsert");
    // An update keeps the start the store gave.
    assert!(store.update_subscription(&Subscription { start_seq: 99, ..changed.clone() }).await.unwrap().is_some());
    assert_eq!(store.subscriptions().await.unwrap(), [changed.clone(), second.clone()]);
    assert_eq!(store.counters().await.unwrap().subscriptions_active, 1);

    assert!(store.delete_subscription(second.subscription_id).await.unwrap());
    assert!(!store.delete_subscription(second.subscription_id).await.unwrap());
    assert_eq!(store.subscriptions().await.unwrap(), [changed.clone()]);

    // Enabled again, it starts at the last event stored, as a new one would: what was stored while it
    // was disabled is never sent to it. Changed while enabled, it keeps that start.
    let events = stored(store.as_ref(), vec![NewEvent::new("order.paid")]).await;
    let enabled = Subscription { enabled: true, disabled_reason: None, ..changed };
    assert_eq!(store.update_subscription(&enabled).await.unwrap(), Some(events[0].seq));
    assert_eq!(store.subscriptions().await.unwrap()[0].start_seq, events[0].seq);
    stored(store.as_ref(), vec![NewEvent::new("order.paid")]).await;
    let renamed = Subscription { subscriber_name: "renamed".into(), ..enabled };
    assert_eq!(store.update_subscription(&renamed).await.unwrap(), Some(events[0].seq));
}

pub(super) async fn the_cursor_moves_in_the_transaction_that_queues_deliveries(store: Arc<dyn Store>) {
    let events = stored(store.as_ref(), (0..3).map(|_| NewEvent::new("order.paid")).collect()).await;
    let target = saved(store.as_ref(), "cursor").await.subscription_id;
    let at_start = store.cursor(DELIVERY_CURSOR).await.unwrap();
    assert_eq!(at_start.seq, 0);

    let step = |from, to| Some(CursorMove { name: DELIVERY_CURSOR, from, to });
    assert!(store.enqueue_deliveries(vec![delivery(&events[0], target)], step(at_start, events[0].seq)).await.unwrap());
    let moved = store.cursor(DELIVERY_CURSOR).await.unwrap();
    assert_eq!(moved, Cursor { seq: events[0].seq, ..at_start });
    // Nothing to queue still moves the cursor.
    assert!(store.enqueue_deliveries(Vec::new(), step(moved, events[2].seq)).await.unwrap());
    let moved = store.cursor(DELIVERY_CURSOR).await.unwrap();
    assert_eq!(moved.seq, events[2].seq);
    // Deliveries without a cursor (a replay's) leave every cursor alone; cursors are per name.
    assert!(store.enqueue_deliveries(vec![delivery(&events[1], target)], None).await.unwrap());
    let other = Some(CursorMove { name: "other", from: Cursor::default(), to: 7 });
    assert!(store.enqueue_deliveries(Vec::new(), other).await.unwrap());
    assert_eq!(store.cursor(DELIVERY_CURSOR).await.unwrap(), moved);
    assert_eq!(store.cursor("other").await.unwrap(), Cursor { seq: 7, epoch: 0 });
    assert_eq!(claim_now(store.as_ref()).await.len(), 2);
}

pub(super) async fn a_cursor_moves_only_from_where_it_is_and_subscription_changes_move_its_epoch(
    store: Arc<dyn Store>,
) {
    let events = stored(store.as_ref(), (0..3).map(|_| NewEvent::new("order.paid")).collect()).await;
    let first = subscription("first", 0);
    // A new subscription starts at the last seq stored, whatever start it was given.
    assert_eq!(store.insert_subscription(&first).await.unwrap(), events[2].seq);
    assert_eq!(store.subscriptions().await.unwrap()[0].start_seq, events[2].seq);
    let read = store.cursor(DELIVERY_CURSOR).await.unwrap();

    // Another fan-out moved it first: this one writes nothing.
    let step = |from, to| Some(CursorMove { name: DELIVERY_CURSOR, from, to });
    assert!(store.enqueue_deliveries(Vec::new(), step(read, events[1].seq)).await.unwrap());
    let stale = vec![delivery(&events[2], first.subscription_id)];
    assert!(!store.enqueue_deliveries(stale.clone(), step(read, events[2].seq)).await.unwrap(), "moved under it");
    assert!(claim_now(store.as_ref()).await.is_empty(), "a refused move writes nothing");

    // A subscription created or changed since the cursor was read: the move is refused too.
    let now = store.cursor(DELIVERY_CURSOR).await.unwrap();
    store.insert_subscription(&subscription("second", 0)).await.unwrap();
    assert!(!store.enqueue_deliveries(stale.clone(), step(now, events[2].seq)).await.unwrap());
    let after_insert = store.cursor(DELIVERY_CURSOR).await.unwrap();
    assert_eq!(after_insert.seq, now.seq);
    assert_ne!(after_insert.epoch, now.epoch);
    let changed = Subscription { enabled: false, ..store.subscriptions().await.unwrap()[0].clone() };
    assert!(store.update_subscription(&changed).await.unwrap().is_some());
    assert!(!store.enqueue_deliveries(stale.clone(), step(after_insert, events[2].seq)).await.unwrap());
    assert_eq!(store.subscriptions().await.unwrap()[0].start_seq, events[2].seq, "an update keeps the start");

    // Read again, it moves.
    let current = store.cursor(DELIVERY_CURSOR).await.unwrap();
    assert!(store.enqueue_deliveries(stale, step(current, events[2].seq)).await.unwrap());
    assert_eq!(store.cursor(DELIVERY_CURSOR).await.unwrap(), Cursor { seq: events[2].seq, ..current });
}

pub(super) async fn due_deliveries_are_claimed_once_until_their_lease_ends(store: Arc<dyn Store>) {
    let events = stored(store.as_ref(), (0..3).map(|_| NewEvent::new("order.paid")).collect()).await;
    let target = saved(store.as_ref(), "claims").await.subscription_id;
    let queued: Vec<NewDelivery> = events.iter().map(|e| delivery(e, target)).collect();
    store.enqueue_deliveries(queued.clone(), None).await.unwrap();

    let now = Timestamp::now();
    let lease = shifted(now, 60 * SECOND);
    let an_hour_ago = shifted(now, -3600 * SECOND);
    assert!(store.claim_deliveries(an_hour_ago, lease, &[(target, 10)]).await.unwrap().is_empty(), "not due then");
    let first = store.claim_deliveries(now, lease, &[(target, 2)]).await.unwrap();
    let second = store.claim_deliveries(now, lease, &[(target, 10)]).await.unwrap();
    assert_eq!((first.len(), second.len()), (2, 1), "at most `limit`, each once");
    let claimed: Vec<ClaimedDelivery> = first.into_iter().chain(second).collect();
    for new in &queued {
        let claim = claimed.iter().find(|c| c.delivery_id == new.delivery_id).expect("every delivery claimed");
        assert_eq!(
            (claim.event_seq, claim.event_id, claim.subscription_id),
            (new.event_seq, new.event_id, new.subscription_id)
        );
        assert_eq!((claim.attempts, claim.round_attempts, claim.first_failed_at), (0, 0, None));
    }
    // Leased: nobody else takes them, and nothing is pending.
    assert!(store.claim_deliveries(shifted(now, 30 * SECOND), lease, &[(target, 10)]).await.unwrap().is_empty());
    // Once the lease is over, another worker takes them again.
    let after = shifted(lease, SECOND);
    let retaken = store.claim_deliveries(after, shifted(after, 60 * SECOND), &[(target, 10)]).await.unwrap();
    assert_eq!(ids(&retaken), ids(&claimed));
}

pub(super) async fn each_subscription_is_claimed_on_its_own(store: Arc<dyn Store>) {
    let events = stored(store.as_ref(), (0..6).map(|_| NewEvent::new("order.paid")).collect()).await;
    let (busy, quiet, other) = (
        saved(store.as_ref(), "busy").await.subscription_id,
        saved(store.as_ref(), "quiet").await.subscription_id,
        saved(store.as_ref(), "other").await.subscription_id,
    );
    // A backlog of five for one subscription, queued before the other's single delivery.
    let mut queued: Vec<NewDelivery> = events[..5].iter().map(|e| delivery(e, busy)).collect();
    queued.push(delivery(&events[5], quiet));
    queued.push(delivery(&events[0], other));
    store.enqueue_deliveries(queued, None).await.unwrap();

    let now = Timestamp::now();
    let lease = shifted(now, 60 * SECOND);
    let claimed = store.claim_deliveries(now, lease, &[(busy, 2), (quiet, 5), (other, 0)]).await.unwrap();
    let per = |id: SubscriptionId| claimed.iter().filter(|c| c.subscription_id == id).count();
    assert_eq!((per(busy), per(quiet), per(other)), (2, 1, 0), "each up to its own count; none when 0 or not asked");
    assert!(store.claim_deliveries(now, lease, &[]).await.unwrap().is_empty());
    let rest = store.claim_deliveries(now, lease, &[(busy, 10), (other, 10)]).await.unwrap();
    assert_eq!(rest.len(), 4);
}

pub(super) async fn deliveries_can_be_queued_already_claimed(store: Arc<dyn Store>) {
    let events = stored(store.as_ref(), (0..2).map(|_| NewEvent::new("order.paid")).collect()).await;
    let target = saved(store.as_ref(), "at-once").await.subscription_id;
    let now = Timestamp::now();
    let lease = shifted(now, 60 * SECOND);
    let taken = NewDelivery { claimed_until: Some(lease), ..delivery(&events[0], target) };
    let pending = delivery(&events[1], target);
    assert!(store.enqueue_deliveries(vec![taken.clone(), pending.clone()], None).await.unwrap());
    // Only the pending one is there to claim while the lease lasts.
    let claimed = claim_now(store.as_ref()).await;
    assert_eq!(ids(&claimed), HashSet::from([pending.delivery_id]));
    let as_taken = ClaimedDelivery {
        delivery_id: taken.delivery_id,
        event_seq: taken.event_seq,
        event_id: taken.event_id,
        subscription_id: target,
        attempts: 0,
        round_attempts: 0,
        first_failed_at: None,
    };
    // Its holder completes it like any claim.
    let sent = attempt(&as_taken, Some(200));
    assert!(complete(store.as_ref(), &as_taken, Some(&sent), NextStep::Delivered).await.is_empty());
    assert_eq!(store.delivery_attempts(events[0].event_id).await.unwrap(), [sent]);
    // Past the lease, one still in flight is due again.
    let retaken = NewDelivery { claimed_until: Some(lease), ..delivery(&events[1], target) };
    assert!(store.enqueue_deliveries(vec![retaken.clone()], None).await.unwrap());
    let after = shifted(lease, SECOND);
    let again = store.claim_deliveries(after, shifted(after, 60 * SECOND), &[(target, 10)]).await.unwrap();
    assert!(ids(&again).contains(&retaken.delivery_id));
}

pub(super) async fn released_claims_are_due_again(store: Arc<dyn Store>) {
    let events = stored(store.as_ref(), (0..3).map(|_| NewEvent::new("order.paid")).collect()).await;
    let target = saved(store.as_ref(), "release").await.subscription_id;
    store.enqueue_deliveries(events.iter().map(|e| delivery(e, target)).collect(), None).await.unwrap();
    let now = Timestamp::now();
    let claimed = store.claim_deliveries(now, shifted(now, 60 * SECOND), &[(target, 2)]).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(store.release_claims().await.unwrap(), 2);
    assert_eq!(claim_now(store.as_ref()).await.len(), 3);
}

pub(super) async fn a_delivered_attempt_is_recorded_and_never_claimed_again(store: Arc<dyn Store>) {
    assert!(store.complete_deliveries(Vec::new()).await.unwrap().is_empty());
    let events = stored(store.as_ref(), vec![NewEvent::new("order.paid")]).await;
    let target = saved(store.as_ref(), "ok").await.subscription_id;
    store.enqueue_deliveries(vec![delivery(&events[0], target)], None).await.unwrap();
    let claimed = claim_now(store.as_ref()).await.remove(0);
    let sent = attempt(&claimed, Some(200));
    assert!(complete(store.as_ref(), &claimed, Some(&sent), NextStep::Delivered).await.is_empty());

    assert_eq!(store.delivery_attempts(events[0].event_id).await.unwrap(), [sent]);
    let far = shifted(Timestamp::now(), 3600 * SECOND);
    assert!(store.claim_deliveries(far, shifted(far, SECOND), &[(target, 10)]).await.unwrap().is_empty());
    let counters = store.counters().await.unwrap();
    assert_eq!(["attempts", "delivered", "retries", "dead"].map(|key| delivery_count(&counters, key)), [1, 1, 0, 0]);
}

pub(super) async fn a_retry_is_due_at_its_time_and_counts_its_attempts(store: Arc<dyn Store>) {
    let events = stored(store.as_ref(), vec![NewEvent::new("order.paid")]).await;
    let target = saved(store.as_ref(), "flaky").await.subscription_id;
    store.enqueue_deliveries(vec![delivery(&events[0], target)], None).await.unwrap();

    let first = claim_now(store.as_ref()).await.remove(0);
    let failed = attempt(&first, Some(500));
    let retry_at = shifted(Timestamp::now(), 10 * SECOND);
    assert!(complete(store.as_ref(), &first, Some(&failed), NextStep::RetryAt(retry_at)).await.is_empty());
    assert!(claim_now(store.as_ref()).await.is_empty(), "not due yet");
    let just_before = shifted(retry_at, -1);
    assert!(
        store.claim_deliveries(just_before, shifted(retry_at, 60 * SECOND), &[(target, 10)]).await.unwrap().is_empty()
    );

    let second =
        store.claim_deliveries(retry_at, shifted(retry_at, 60 * SECOND), &[(target, 10)]).await.unwrap().remove(0);
    assert_eq!((second.attempts, second.round_attempts), (1, 1));
    assert_eq!(second.first_failed_at, Some(failed.attempted_at));
    let refused = attempt(&second, None);
    assert_eq!(refused.attempt, 2);
    assert!(complete(store.as_ref(), &second, Some(&refused), NextStep::RetryAt(retry_at)).await.is_empty());

    let third =
        store.claim_deliveries(retry_at, shifted(retry_at, 60 * SECOND), &[(target, 10)]).await.unwrap().remove(0);
    assert_eq!((third.attempts, third.round_attempts), (2, 2));
    assert_eq!(third.first_failed_at, Some(failed.attempted_at), "the first failure stays the first");
    assert_eq!(store.delivery_attempts(events[0].event_id).await.unwrap(), [failed, refused]);
    let counters = store.counters().await.unwrap();
    assert_eq!((delivery_count(&counters, "attempts"), delivery_count(&counters, "retries")), (2, 1));
}

pub(super) async fn out_of_retries_a_delivery_becomes_a_dead_letter(store: Arc<dyn Store>) {
    let events = stored(store.as_ref(), vec![NewEvent::new("order.paid")]).await;
    let target = saved(store.as_ref(), "dead").await.subscription_id;
    store.enqueue_deliveries(vec![delivery(&events[0], target)], None).await.unwrap();
    let first = claim_now(store.as_ref()).await.remove(0);
    let failed = attempt(&first, Some(500));
    complete(store.as_ref(), &first, Some(&failed), NextStep::RetryAt(Timestamp::now())).await;
    let second = claim_now(store.as_ref()).await.remove(0);
    let last = attempt(&second, Some(503));

    let before = Timestamp::now();
    let next = NextStep::Dead { event_type: "order.paid".into() };
    let dead = complete(store.as_ref(), &second, Some(&last), next).await.remove(0);
    assert_eq!(dead.kind, DeadLetterKind::Delivery);
    assert_eq!((dead.event_id, dead.event_type.as_str()), (events[0].event_id, "order.paid"));
    assert_eq!(
        (dead.subscription_id, dead.processor_id, dead.delivery_id),
        (Some(target), None, Some(first.delivery_id))
    );
    assert_eq!((dead.attempts, dead.last_status_code, &dead.last_error), (2, Some(503), &last.error));
    assert_eq!((dead.first_failed_at, dead.last_failed_at), (failed.attempted_at, last.attempted_at));
    assert!(dead.created_at >= before && dead.created_at <= Timestamp::now());
    assert_eq!(dead.attempt_history, None, "the history comes with a read by id");

    let (listed, total) = store.dead_letters(&DlqQuery { limit: 10, ..DlqQuery::default() }).await.unwrap();
    assert_eq!((listed, total), (vec![dead.clone()], 1));
    let read = store.dead_letter(dead.dlq_id).await.unwrap().expect("read by id");
    assert_eq!(read.attempt_history, Some(AttemptHistory::Delivery(vec![failed, last])));
    assert_eq!(DeadLetter { attempt_history: None, ..read }, dead);
    let counters = store.counters().await.unwrap();
    assert_eq!((counters.dlq_size, delivery_count(&counters, "dead")), (1, 1));
    let far = shifted(Timestamp::now(), 3600 * SECOND);
    assert!(store.claim_deliveries(far, shifted(far, SECOND), &[(target, 10)]).await.unwrap().is_empty());
}

pub(super) async fn gone_disables_the_subscription_and_cancels_what_it_had_pending(store: Arc<dyn Store>) {
    let events = stored(store.as_ref(), (0..3).map(|_| NewEvent::new("order.paid")).collect()).await;
    let gone = saved(store.as_ref(), "gone").await;
    let other = saved(store.as_ref(), "other").await;
    store.enqueue_deliveries(vec![delivery(&events[0], gone.subscription_id)], None).await.unwrap();
    let claimed = claim_now(store.as_ref()).await.remove(0);
    // Queued while the first one was on its way.
    let later = vec![
        delivery(&events[1], gone.subscription_id),
        delivery(&events[2], gone.subscription_id),
        delivery(&events[2], other.subscription_id),
    ];
    store.enqueue_deliveries(later.clone(), None).await.unwrap();

    let answered = attempt(&claimed, Some(410));
    let reason = "the endpoint answered 410 Gone".to_owned();
    let next = NextStep::Gone { reason: reason.clone() };
    assert!(complete(store.as_ref(), &claimed, Some(&answered), next).await.is_empty(), "no dead letter");

    let subscriptions = store.subscriptions().await.unwrap();
    let now_gone = subscriptions.iter().find(|s| s.subscription_id == gone.subscription_id).unwrap();
    assert!(!now_gone.enabled);
    assert_eq!(now_gone.disabled_reason.as_deref(), Some(reason.as_str()));
    assert!(subscriptions.iter().any(|s| s.subscription_id == other.subscription_id && s.enabled));
    assert_eq!(store.counters().await.unwrap().subscriptions_active, 1);
    assert_eq!(store.delivery_attempts(events[0].event_id).await.unwrap(), [answered]);
    assert_eq!(ids(&claim_now(store.as_ref()).await), HashSet::from([later[2].delivery_id]));
}

pub(super) async fn a_cancelled_delivery_is_recorded_without_an_attempt(store: Arc<dyn Store>) {
    let events = stored(store.as_ref(), vec![NewEvent::new("order.paid")]).await;
    let target = saved(store.as_ref(), "cancelled").await.subscription_id;
    store.enqueue_deliveries(vec![delivery(&events[0], target)], None).await.unwrap();
    let claimed = claim_now(store.as_ref()).await.remove(0);
    assert!(complete(store.as_ref(), &claimed, None, NextStep::Cancelled).await.is_empty());
    assert!(store.delivery_attempts(events[0].event_id).await.unwrap().is_empty());
    assert_eq!(delivery_count(&store.counters().await.unwrap(), "attempts"), 0);
    let far = shifted(Timestamp::now(), 3600 * SECOND);
    assert!(store.claim_deliveries(far, shifted(far, SECOND), &[(target, 10)]).await.unwrap().is_empty());
}

/// One event, three saved subscriptions, and a delivery of the event queued to each.
async fn one_event_queued_to_three(store: &dyn Store) -> (Event, [Subscription; 3], Vec<NewDelivery>) {
    let events = stored(store, vec![NewEvent::new("order.paid")]).await;
    let subscriptions = [saved(store, "a").await, saved(store, "b").await, saved(store, "c").await];
    let queued: Vec<NewDelivery> = subscriptions.iter().map(|s| delivery(&events[0], s.subscription_id)).collect();
    store.enqueue_deliveries(queued.clone(), None).await.unwrap();
    (events[0].clone(), subscriptions, queued)
}

pub(super) async fn disabling_or_deleting_a_subscription_cancels_its_pending_deliveries(store: Arc<dyn Store>) {
    let (_, [disabled, deleted, kept], queued) = one_event_queued_to_three(store.as_ref()).await;
    assert!(store.update_subscription(&Subscription { enabled: false, ..disabled }).await.unwrap().is_some());
    assert!(store.delete_subscription(deleted.subscription_id).await.unwrap());
    // Changing an enabled subscription cancels nothing.
    let moved = Subscription { callback_url: "https://moved.example.com/".into(), ..kept };
    assert!(store.update_subscription(&moved).await.unwrap().is_some());
    assert_eq!(ids(&claim_now(store.as_ref()).await), HashSet::from([queued[2].delivery_id]));
}

pub(super) async fn a_retry_whose_subscription_was_disabled_or_deleted_meanwhile_is_cancelled(store: Arc<dyn Store>) {
    let (event, [disabled, deleted, kept], queued) = one_event_queued_to_three(store.as_ref()).await;
    let claimed = claim_now(store.as_ref()).await;
    assert_eq!(claimed.len(), 3);

    // While the requests are on their way, one subscription is disabled and one deleted; then all three
    // endpoints answer 500.
    assert!(store.update_subscription(&Subscription { enabled: false, ..disabled.clone() }).await.unwrap().is_some());
    assert!(store.delete_subscription(deleted.subscription_id).await.unwrap());
    let results = claimed
        .iter()
        .map(|c| DeliveryResult {
            claimed: c.clone(),
            attempt: Some(attempt(c, Some(500))),
            next: NextStep::RetryAt(Timestamp::now()),
        })
        .collect();
    assert!(store.complete_deliveries(results).await.unwrap().is_empty());

    // Enabled again, the first has nothing pending: its retry was cancelled, not left waiting for it.
    assert!(store.update_subscription(&Subscription { enabled: true, ..disabled }).await.unwrap().is_some());
    let later = shifted(Timestamp::now(), SECOND);
    let wants = [(disabled.subscription_id, 10), (deleted.subscription_id, 10), (kept.subscription_id, 10)];
    let retried = store.claim_deliveries(later, shifted(later, 60 * SECOND), &wants).await.unwrap();
    assert_eq!(ids(&retried), HashSet::from([queued[2].delivery_id]), "only the enabled subscription retries");
    assert_eq!(store.delivery_attempts(event.event_id).await.unwrap().len(), 3, "every attempt stays");
}

pub(super) async fn dead_letters_are_listed_newest_first_filtered_and_paged(store: Arc<dyn Store>) {
    let events = stored(store.as_ref(), (0..5).map(|i| NewEvent::new(format!("order.e{i}"))).collect()).await;
    let (first, second) = (saved(store.as_ref(), "first").await, saved(store.as_ref(), "second").await);
    let processor = ProcessorId::new_v7();
    let mut entries = Vec::new();
    for event in &events[..3] {
        entries.push(dead_delivery(store.as_ref(), event, first.subscription_id).await);
    }
    entries.push(dead_delivery(store.as_ref(), &events[3], second.subscription_id).await);
    entries.push(dead_event(store.as_ref(), &events[4], processor).await);
    entries.sort_by_key(|e| std::cmp::Reverse((e.created_at, e.dlq_id)));

    let list = |query: DlqQuery| {
        let store = store.clone();
        async move { store.dead_letters(&DlqQuery { limit: query.limit.max(1), ..query }).await.unwrap() }
    };
    assert_eq!(list(DlqQuery { limit: 10, ..DlqQuery::default() }).await, (entries.clone(), 5));
    let of = |keep: &dyn Fn(&DeadLetter) -> bool| entries.iter().filter(|e| keep(e)).cloned().collect::<Vec<_>>();
    let deliveries = of(&|e| e.kind == DeadLetterKind::Delivery);
    let kind = Some(DeadLetterKind::Delivery);
    assert_eq!(list(DlqQuery { kind, limit: 10, ..DlqQuery::default() }).await, (deliveries, 4));
    let processing = list(DlqQuery { kind: Some(DeadLetterKind::Processing), limit: 10, ..DlqQuery::default() });
    assert_eq!(processing.await, (of(&|e| e.kind == DeadLetterKind::Processing), 1));
    let subscription_id = Some(first.subscription_id);
    let of_first = of(&|e| e.subscription_id == subscription_id);
    assert_eq!(list(DlqQuery { subscription_id, limit: 10, ..DlqQuery::default() }).await, (of_first, 3));
    let processor_id = Some(processor);
    let of_processor = of(&|e| e.processor_id == processor_id);
    assert_eq!(list(DlqQuery { processor_id, limit: 10, ..DlqQuery::default() }).await, (of_processor, 1));
    assert_eq!(list(DlqQuery { limit: 2, offset: 1, ..DlqQuery::default() }).await, (entries[1..3].to_vec(), 5));
    assert_eq!(list(DlqQuery { limit: 2, offset: 9, ..DlqQuery::default() }).await, (Vec::new(), 5));
}

pub(super) async fn retrying_dead_letters_restarts_them_with_a_fresh_budget(store: Arc<dyn Store>) {
    let events = stored(store.as_ref(), (0..4).map(|i| NewEvent::new(format!("order.e{i}"))).collect()).await;
    let (first, second) = (saved(store.as_ref(), "first").await, saved(store.as_ref(), "second").await);
    let d1 = dead_delivery(store.as_ref(), &events[0], first.subscription_id).await;
    let d2 = dead_delivery(store.as_ref(), &events[1], first.subscription_id).await;
    let d3 = dead_delivery(store.as_ref(), &events[2], second.subscription_id).await;
    let p1 = dead_event(store.as_ref(), &events[3], ProcessorId::new_v7()).await;
    assert!(store.retry_dead_letters(&DlqSelector::Ids(Vec::new())).await.unwrap().is_empty());
    assert!(store.retry_dead_letters(&DlqSelector::Ids(vec![DlqId::new_v7()])).await.unwrap().is_empty());

    assert_eq!(store.retry_dead_letters(&DlqSelector::Ids(vec![d1.dlq_id])).await.unwrap(), std::slice::from_ref(&d1));
    assert_eq!(store.dead_letter(d1.dlq_id).await.unwrap(), None, "it left the queue");
    // Due again at once, with the attempts made so far but a fresh round.
    let again = claim_now(store.as_ref()).await;
    assert_eq!(again.len(), 1);
    assert_eq!(Some(again[0].delivery_id), d1.delivery_id);
    assert_eq!((again[0].attempts, again[0].round_attempts, again[0].first_failed_at), (1, 0, None));

    let by_subscription = store.retry_dead_letters(&DlqSelector::Subscription(second.subscription_id)).await;
    assert_eq!(by_subscription.unwrap(), std::slice::from_ref(&d3));
    assert_eq!(ids(&claim_now(store.as_ref()).await), HashSet::from([d3.delivery_id.unwrap()]));

    let rest = store.retry_dead_letters(&DlqSelector::All).await.unwrap();
    assert_eq!(rest.iter().map(|e| e.dlq_id).collect::<HashSet<_>>(), HashSet::from([d2.dlq_id, p1.dlq_id]));
    assert_eq!(ids(&claim_now(store.as_ref()).await), HashSet::from([d2.delivery_id.unwrap()]));
    // A processing entry's event is pending again with a fresh retry budget, and claimable.
    let event = store.event(events[3].event_id).await.unwrap().unwrap();
    assert_eq!((event.status, event.retry_count, event.processed_at), (EventStatus::Pending, 0, None));
    let now = Timestamp::now();
    let claim = Claim { now, lease_until: shifted(now, 60 * SECOND), limit: 10 };
    let claimed = store.complete_and_claim(Vec::new(), Some(claim)).await.unwrap().claimed;
    assert_eq!(claimed.iter().map(|c| c.event.event_id).collect::<Vec<_>>(), [events[3].event_id]);
    let counters = store.counters().await.unwrap();
    assert_eq!(counters.dlq_size, 0);
    assert_eq!(counters.by_status.get("failed").copied().unwrap_or(0), 0);
    assert_eq!((counters.by_status["processing"], counters.by_status["processed"]), (1, 3));
}

pub(super) async fn discarding_a_dead_letter_keeps_the_event_and_its_delivery(store: Arc<dyn Store>) {
    let events = stored(store.as_ref(), vec![NewEvent::new("order.paid")]).await;
    let target = saved(store.as_ref(), "discard").await.subscription_id;
    let dead = dead_delivery(store.as_ref(), &events[0], target).await;
    assert_eq!(store.discard_dead_letter(DlqId::new_v7()).await.unwrap(), None);
    assert_eq!(store.discard_dead_letter(dead.dlq_id).await.unwrap(), Some(dead.clone()));
    assert_eq!(store.discard_dead_letter(dead.dlq_id).await.unwrap(), None);
    assert_eq!(store.dead_letter(dead.dlq_id).await.unwrap(), None);
    assert_eq!(store.counters().await.unwrap().dlq_size, 0);
    assert!(store.event(events[0].event_id).await.unwrap().is_some(), "the event stays");
    assert_eq!(store.delivery_attempts(events[0].event_id).await.unwrap().len(), 1, "its attempts stay");
    let far = shifted(Timestamp::now(), 3600 * SECOND);
    assert!(
        store.claim_deliveries(far, shifted(far, SECOND), &[(target, 10)]).await.unwrap().is_empty(),
        "not sent again"
    );
}

pub(super) async fn dead_letters_are_grouped_by_cause_and_a_group_is_retried_or_discarded(store: Arc<dyn Store>) {
    let empty = store.dead_letter_groups(&DlqGroupQuery::new(Timestamp::now())).await.unwrap();
    assert_eq!((empty.groups.len(), empty.total, empty.since), (0, 0, None));

    let events = stored(store.as_ref(), (0..7).map(|i| NewEvent::new(format!("order.e{i}"))).collect()).await;
    let (pager, orders) = (saved(store.as_ref(), "pager").await, saved(store.as_ref(), "orders").await);
    let (pager, orders) = (pager.subscription_id, orders.subscription_id);
    let mut of_503 = Vec::new();
    for event in &events[0..3] {
        of_503.push(dead_delivery_with(store.as_ref(), event, pager, Some(503)).await);
    }
    let of_500 = dead_delivery_with(store.as_ref(), &events[3], orders, Some(500)).await;
    let refused = dead_delivery_with(store.as_ref(), &events[4], pager, None).await;
    let refused_too = dead_delivery_with(store.as_ref(), &events[5], pager, None).await;
    let processor = ProcessorId::new_v7();
    let processing = dead_event(store.as_ref(), &events[6], processor).await;

    let until = Timestamp::now();
    let query = DlqGroupQuery { kind: None, buckets: 10, until };
    let answer = store.dead_letter_groups(&query).await.unwrap();
    assert_eq!(answer.total, 7);
    let all = [&of_503[0], &of_503[1], &of_503[2], &of_500, &refused, &refused_too, &processing];
    let earliest = all.iter().map(|e| e.last_failed_at).min().unwrap();
    assert_eq!(answer.since, Some(earliest));
    assert!(answer.until >= until && answer.bucket_s >= 1);
    let counts: Vec<u64> = answer.groups.iter().map(|g| g.count).collect();
    assert_eq!(counts, [3, 2, 1, 1], "largest first");
    let key = |kind, subscription_id, processor_id, last_status_code, error_class: Option<&str>| DlqGroupKey {
        kind,
        subscription_id,
        processor_id,
        last_status_code,
        error_class: error_class.map(str::to_owned),
    };
    let by_503 = &answer.groups[0];
    assert_eq!(by_503.key, key(DeadLetterKind::Delivery, Some(pager), None, Some(503), None));
    assert_eq!(by_503.first_failed_at, of_503.iter().map(|e| e.first_failed_at).min().unwrap());
    assert_eq!(by_503.last_failed_at, of_503.iter().map(|e| e.last_failed_at).max().unwrap());
    assert_eq!(by_503.histogram.len(), 10);
    assert_eq!(by_503.histogram.iter().sum::<u64>(), 3);
    // The error class is the text before its first colon: "connection refused" as it is.
    let by_refusal = key(DeadLetterKind::Delivery, Some(pager), None, None, Some("connection refused"));
    assert_eq!(answer.groups[1].key, by_refusal);
    let rest: HashSet<DlqGroupKey> = answer.groups[2..].iter().map(|g| g.key.clone()).collect();
    // A processing error's class leaves out the processor's name: "checker: no" is "no".
    let by_checker = key(DeadLetterKind::Processing, None, Some(processor), None, Some("no"));
    let by_500 = key(DeadLetterKind::Delivery, Some(orders), None, Some(500), None);
    assert_eq!(rest, HashSet::from([by_checker.clone(), by_500.clone()]));
    for group in &answer.groups {
        assert_eq!(group.histogram.iter().sum::<u64>(), group.count);
    }
    let processing_only = DlqGroupQuery { kind: Some(DeadLetterKind::Processing), ..query };
    let only = store.dead_letter_groups(&processing_only).await.unwrap();
    assert_eq!((only.total, only.groups.len()), (1, 1));
    assert_eq!(only.groups[0].key, by_checker);

    // A group is retried as a whole, and nothing else moves.
    let retried = store.retry_dead_letters(&DlqSelector::Group(by_503.key.clone())).await.unwrap();
    let dlq_ids = |entries: &[DeadLetter]| entries.iter().map(|e| e.dlq_id).collect::<HashSet<_>>();
    assert_eq!(dlq_ids(&retried), dlq_ids(&of_503));
    let sent_again: HashSet<DeliveryId> = of_503.iter().filter_map(|e| e.delivery_id).collect();
    assert_eq!(ids(&claim_now(store.as_ref()).await), sent_again, "only the group is due again");
    let discarded = store.discard_dead_letters(&DlqSelector::Group(by_refusal)).await.unwrap();
    assert_eq!(dlq_ids(&discarded), dlq_ids(&[refused, refused_too]));
    assert!(store.discard_dead_letters(&DlqSelector::Ids(Vec::new())).await.unwrap().is_empty());
    let left = store.dead_letter_groups(&query).await.unwrap();
    assert_eq!(left.total, 2);
    assert_eq!(store.counters().await.unwrap().dlq_size, 2);
    let discarded = store.discard_dead_letters(&DlqSelector::Group(by_checker)).await.unwrap();
    assert_eq!(dlq_ids(&discarded), dlq_ids(&[processing]));
    assert_eq!(store.dead_letter_groups(&query).await.unwrap().groups[0].key, by_500);
}
