//! Processing's contract: processors and their totals, claims of pending events as leases, the
//! outcomes of a batch (processed, retried, failed into the DLQ), and runs recorded for replays.

use std::sync::Arc;

use serde_json::json;

use super::{SECOND, shifted, stored};
use crate::domain::delivery::AttemptHistory;
use crate::domain::{
    EventStatus, NewEvent, ProcessingResult, Processor, ProcessorFilters, ProcessorId, ProcessorType, ReplayId,
    Timestamp, TypePattern,
};
use crate::storage::{Claim, ClaimedEvent, Completed, ProcessingNext, ProcessingOutcome, Store};

fn claim_at(now: Timestamp, limit: u32) -> Claim {
    Claim { now, lease_until: shifted(now, 60 * SECOND), limit }
}

async fn claim(store: &dyn Store, limit: u32) -> Vec<ClaimedEvent> {
    store.complete_and_claim(Vec::new(), Some(claim_at(Timestamp::now(), limit))).await.unwrap().claimed
}

fn seqs(claimed: &[ClaimedEvent]) -> Vec<i64> {
    claimed.iter().map(|c| c.event.seq).collect()
}

/// The non-zero status counters.
async fn statuses(store: &dyn Store) -> Vec<(String, i64)> {
    store.counters().await.unwrap().by_status.into_iter().filter(|(_, n)| *n != 0).collect()
}

fn run(claimed: &ClaimedEvent, processor: ProcessorId, success: bool, duration_ms: f64) -> ProcessingResult {
    ProcessingResult {
        event_id: claimed.event.event_id,
        processor_id: processor,
        processor_name: format!("p-{processor}"),
        success,
        duration_ms,
        error: (!success).then(|| "HTTP 500".to_owned()),
        replay_id: None,
        processed_at: Timestamp::now(),
    }
}

fn outcome(claimed: &ClaimedEvent, results: Vec<ProcessingResult>, next: ProcessingNext) -> ProcessingOutcome {
    ProcessingOutcome {
        seq: claimed.event.seq,
        event_id: claimed.event.event_id,
        event_type: claimed.event.event_type.clone(),
        results,
        next,
    }
}

pub(super) async fn processors_are_saved_listed_by_priority_toggled_and_deleted(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    let mut high = Processor::new("enrich", ProcessorType::Webhook, now);
    high.priority = 10;
    high.max_retries = 7;
    high.filters = ProcessorFilters {
        event_type: Some(TypePattern::parse("t", "order.>").unwrap()),
        event_source: Some(crate::domain::EventSource::Frontend),
        event_category: None,
    };
    high.config = json!({"url": "https://enrich.example.com", "timeout_ms": 500}).as_object().cloned().unwrap();
    let mut low = Processor::new("audit", ProcessorType::Log, shifted(now, SECOND));
    low.priority = -5;
    let mut also_zero = Processor::new("late", ProcessorType::Log, shifted(now, 2 * SECOND));
    also_zero.enabled = false;
    for processor in [&low, &also_zero, &high] {
        assert!(store.insert_processor(processor).await.unwrap());
    }
    let mut clash = Processor::new("enrich", ProcessorType::Log, now);
    clash.priority = 99;
    assert!(!store.insert_processor(&clash).await.unwrap(), "names are unique");

    // Highest priority first, then the oldest; the built-in projection processor has priority 0.
    let listed = store.processors().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|p| p.processor_name.as_str()).collect();
    assert_eq!(names, ["enrich", "projections", "late", "audit"]);
    assert_eq!(listed[0], high, "every field comes back, totals at zero");
    assert_eq!(listed[2], also_zero);

    let later = shifted(now, 5 * SECOND);
    let toggled = store.set_processor_enabled(high.processor_id, false, later).await.unwrap().expect("exists");
    assert_eq!(toggled, Processor { enabled: false, updated_at: later, ..high.clone() });
    assert_eq!(store.processors().await.unwrap()[0], toggled);
    assert_eq!(store.set_processor_enabled(ProcessorId::new_v7(), true, later).await.unwrap(), None);

    assert!(store.delete_processor(low.processor_id).await.unwrap());
    assert!(!store.delete_processor(low.processor_id).await.unwrap());
    assert_eq!(store.processors().await.unwrap().len(), 3);
}

pub(super) async fn claims_are_leases_released_at_start_and_counters_follow_every_step(store: Arc<dyn Store>) {
    stored(store.as_ref(), (0..5).map(|i| NewEvent::new(format!("t.e{i}"))).collect()).await;
    let first = claim(store.as_ref(), 3).await;
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|c| c.event.status == EventStatus::Processing && c.succeeded.is_empty()));
    assert_eq!(statuses(store.as_ref()).await, [("pending".into(), 2), ("processing".into(), 3)]);
    assert_eq!(store.event(first[0].event.event_id).await.unwrap().unwrap().status, EventStatus::Processing);
    // A claimed event is not claimed again while its lease runs; pending ones come in seq order.
    let second = claim(store.as_ref(), 10).await;
    let mut all = seqs(&first);
    all.extend(seqs(&second));
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
    assert_eq!(all.len(), 5);

    // As after a crash: every claim goes back to pending.
    assert_eq!(store.release_processing().await.unwrap(), 5);
    assert_eq!(statuses(store.as_ref()).await, [("pending".into(), 5)]);

    let again = claim(store.as_ref(), 10).await;
    let failing = again.last().unwrap().event.seq;
    let outcomes = again
        .iter()
        .map(|c| {
            let next = if c.event.seq == failing {
                ProcessingNext::Failed { error: "boom".into(), processor_id: ProcessorId::new_v7() }
            } else {
                ProcessingNext::Processed
            };
            outcome(c, Vec::new(), next)
        })
        .collect();
    let done = store.complete_and_claim(outcomes, Some(claim_at(Timestamp::now(), 10))).await.unwrap();
    assert!(done.claimed.is_empty());
    assert_eq!(done.dead_letters.len(), 1);
    assert_eq!(done.dead_letters[0].attempts, 1);
    assert_eq!(statuses(store.as_ref()).await, [("failed".into(), 1), ("processed".into(), 4)]);
}

pub(super) async fn an_expired_claim_is_taken_again_without_counting_it_twice(store: Arc<dyn Store>) {
    stored(store.as_ref(), vec![NewEvent::new("t.e")]).await;
    let now = Timestamp::now();
    let short = Claim { now, lease_until: shifted(now, SECOND), limit: 10 };
    assert_eq!(store.complete_and_claim(Vec::new(), Some(short)).await.unwrap().claimed.len(), 1);
    assert_eq!(store.next_processing_due().await.unwrap(), Some(shifted(now, SECOND)), "the lease's end");
    let during = claim_at(shifted(now, SECOND / 2), 10);
    assert!(store.complete_and_claim(Vec::new(), Some(during)).await.unwrap().claimed.is_empty());
    let after = claim_at(shifted(now, 2 * SECOND), 10);
    let retaken = store.complete_and_claim(Vec::new(), Some(after)).await.unwrap().claimed;
    assert_eq!(retaken.len(), 1, "the lease ran out");
    assert_eq!(statuses(store.as_ref()).await, [("processing".into(), 1)]);
}

pub(super) async fn outcomes_move_events_to_processed_pending_or_failed(store: Arc<dyn Store>) {
    stored(store.as_ref(), (0..3).map(|i| NewEvent::new(format!("order.e{i}"))).collect()).await;
    let (ok, flaky) = (ProcessorId::new_v7(), ProcessorId::new_v7());
    for id in [ok, flaky] {
        let mut processor = Processor::new(format!("p-{id}"), ProcessorType::Log, Timestamp::now());
        processor.processor_id = id;
        store.insert_processor(&processor).await.unwrap();
    }
    let claimed = claim(store.as_ref(), 10).await;
    let retry_at = shifted(Timestamp::now(), 30 * SECOND);
    let before = Timestamp::now();
    let batch = vec![
        outcome(&claimed[0], vec![run(&claimed[0], ok, true, 2.0)], ProcessingNext::Processed),
        outcome(
            &claimed[1],
            vec![run(&claimed[1], ok, true, 4.0), run(&claimed[1], flaky, false, 6.0)],
            ProcessingNext::Retry { due_at: retry_at, error: "flaky: HTTP 500".into() },
        ),
        outcome(
            &claimed[2],
            vec![run(&claimed[2], flaky, false, 0.5)],
            ProcessingNext::Failed { error: "flaky: HTTP 500".into(), processor_id: flaky },
        ),
    ];
    let results = [batch[0].results.clone(), batch[1].results.clone(), batch[2].results.clone()];
    let Completed { dead_letters, claimed: next } =
        store.complete_and_claim(batch, Some(claim_at(Timestamp::now(), 10))).await.unwrap();
    assert!(next.is_empty(), "the retried event is not due yet");

    let processed = store.event(claimed[0].event.event_id).await.unwrap().unwrap();
    assert_eq!((processed.status, processed.retry_count, &processed.error_message), (EventStatus::Processed, 0, &None));
    assert!(processed.processed_at.is_some_and(|at| at >= before));
    let retried = store.event(claimed[1].event.event_id).await.unwrap().unwrap();
    assert_eq!((retried.status, retried.retry_count), (EventStatus::Pending, 1));
    assert_eq!((retried.error_message.as_deref(), retried.processed_at), (Some("flaky: HTTP 500"), None));
    assert_eq!(store.next_processing_due().await.unwrap(), Some(retry_at));
    let failed = store.event(claimed[2].event.event_id).await.unwrap().unwrap();
    assert_eq!((failed.status, failed.retry_count), (EventStatus::Failed, 1));
    assert_eq!(failed.error_message.as_deref(), Some("flaky: HTTP 500"));

    assert_eq!(dead_letters.len(), 1);
    let dead = &dead_letters[0];
    assert_eq!((dead.kind, dead.event_id), (crate::domain::DeadLetterKind::Processing, failed.event_id));
    assert_eq!((dead.processor_id, dead.subscription_id, dead.delivery_id), (Some(flaky), None, None));
    assert_eq!((dead.attempts, dead.last_error.as_deref()), (1, Some("flaky: HTTP 500")));
    assert_eq!(dead.first_failed_at, results[2][0].processed_at, "the first failed run");
    assert_eq!(dead.event_type, claimed[2].event.event_type);
    let read = store.dead_letter(dead.dlq_id).await.unwrap().unwrap();
    assert_eq!(read.attempt_history, Some(AttemptHistory::Processing(results[2].clone())));

    for (claim, results) in claimed.iter().zip(&results) {
        assert_eq!(&store.processing_results(claim.event.event_id).await.unwrap(), results, "oldest first");
    }
    assert_eq!(statuses(store.as_ref()).await, [("failed".into(), 1), ("pending".into(), 1), ("processed".into(), 1)]);
    // Totals per processor: runs and their mean duration.
    let totals = |store: Arc<dyn Store>| async move {
        let processors = store.processors().await.unwrap();
        [ok, flaky].map(|id| {
            let p = processors.iter().find(|p| p.processor_id == id).expect("saved");
            (p.processed_count, p.failed_count, p.avg_duration_ms)
        })
    };
    assert_eq!(totals(store.clone()).await, [(2, 0, 3.0), (0, 2, 3.25)]);
    let retry = store.complete_and_claim(Vec::new(), Some(claim_at(retry_at, 10))).await.unwrap().claimed;
    let results = vec![run(&retry[0], flaky, true, 1.0)];
    store.complete_and_claim(vec![outcome(&retry[0], results, ProcessingNext::Processed)], None).await.unwrap();
    assert_eq!(totals(store.clone()).await, [(2, 0, 3.0), (1, 2, 2.5)]);
}

pub(super) async fn a_retried_event_is_claimed_with_the_processors_that_succeeded(store: Arc<dyn Store>) {
    stored(store.as_ref(), vec![NewEvent::new("order.paid")]).await;
    let (ok, flaky) = (ProcessorId::new_v7(), ProcessorId::new_v7());
    let claimed = claim(store.as_ref(), 10).await.remove(0);
    let due_at = shifted(Timestamp::now(), 5 * SECOND);
    let results = vec![run(&claimed, ok, true, 1.0), run(&claimed, flaky, false, 1.0)];
    let retry = ProcessingNext::Retry { due_at, error: "flaky: HTTP 500".into() };
    store.complete_and_claim(vec![outcome(&claimed, results, retry)], None).await.unwrap();

    let early = claim_at(shifted(due_at, -1), 10);
    assert!(store.complete_and_claim(Vec::new(), Some(early)).await.unwrap().claimed.is_empty());
    let again = store.complete_and_claim(Vec::new(), Some(claim_at(due_at, 10))).await.unwrap().claimed;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].succeeded, [ok], "only the failed processor runs again");
    assert_eq!((again[0].event.retry_count, again[0].event.status), (1, EventStatus::Processing));
}

pub(super) async fn events_stored_processed_are_never_claimed(store: Arc<dyn Store>) {
    let events =
        stored(store.as_ref(), vec![NewEvent { skip_processing: true, ..NewEvent::new("a") }, NewEvent::new("b")])
            .await;
    let claimed = claim(store.as_ref(), 10).await;
    assert_eq!(seqs(&claimed), [events[1].seq]);
    assert_eq!(store.release_processing().await.unwrap(), 1);
    assert_eq!(store.event(events[0].event_id).await.unwrap().unwrap().status, EventStatus::Processed);
}

pub(super) async fn replay_results_are_recorded_apart_from_the_event_lifecycle(store: Arc<dyn Store>) {
    let events = stored(store.as_ref(), vec![NewEvent::new("order.paid")]).await;
    let mut processor = Processor::new("replayed", ProcessorType::Log, Timestamp::now());
    processor.max_retries = 0;
    store.insert_processor(&processor).await.unwrap();
    let replay_id = ReplayId::new_v7();
    let replayed = ProcessingResult {
        event_id: events[0].event_id,
        processor_id: processor.processor_id,
        processor_name: processor.processor_name.clone(),
        success: true,
        duration_ms: 3.0,
        error: None,
        replay_id: Some(replay_id),
        processed_at: Timestamp::now(),
    };
    store.record_results(&[(events[0].seq, replayed.clone())]).await.unwrap();
    assert_eq!(store.processing_results(events[0].event_id).await.unwrap(), [replayed]);
    let event = store.event(events[0].event_id).await.unwrap().unwrap();
    assert_eq!((event.status, event.retry_count), (EventStatus::Pending, 0), "the event's lifecycle is untouched");
    let saved = store.processors().await.unwrap().into_iter().find(|p| p.processor_id == processor.processor_id);
    assert_eq!(saved.map(|p| (p.processed_count, p.avg_duration_ms)), Some((1, 3.0)));

    // A replay's success does not count as the event's own: its processing starts from scratch.
    let claimed = claim(store.as_ref(), 10).await.remove(0);
    assert!(claimed.succeeded.is_empty());
    let failed = run(&claimed, processor.processor_id, false, 1.0);
    let next = ProcessingNext::Failed { error: "no".into(), processor_id: processor.processor_id };
    let dead = store.complete_and_claim(vec![outcome(&claimed, vec![failed.clone()], next)], None).await.unwrap();
    let read = store.dead_letter(dead.dead_letters[0].dlq_id).await.unwrap().unwrap();
    assert_eq!(read.attempt_history, Some(AttemptHistory::Processing(vec![failed])), "replay runs left out");
}

pub(super) async fn with_nothing_to_do_complete_and_claim_changes_nothing(store: Arc<dyn Store>) {
    assert_eq!(store.complete_and_claim(Vec::new(), None).await.unwrap(), Completed::default());
    assert_eq!(
        store.complete_and_claim(Vec::new(), Some(claim_at(Timestamp::now(), 10))).await.unwrap(),
        Completed::default()
    );
    assert_eq!(store.release_processing().await.unwrap(), 0);
    assert_eq!(store.next_processing_due().await.unwrap(), None);
    let events = stored(store.as_ref(), vec![NewEvent::new("a")]).await;
    let due = store.next_processing_due().await.unwrap().expect("a pending event is due");
    assert!(due <= events[0].created_at, "due at once");
    assert!(
        store.complete_and_claim(Vec::new(), Some(claim_at(Timestamp::now(), 0))).await.unwrap().claimed.is_empty()
    );
}
