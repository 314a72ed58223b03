//! The store contract as tests: one set of cases, written once against the store traits (through
//! `Arc<dyn Store>`, as the engine holds a store) and run against every backend. The cases are what
//! `storage/mod.rs` documents, made exact; a backend is done when they all pass.
//!
//! Each backend gets a fresh, empty store per test from a factory, an `async fn() -> Result<TestStore,
//! Skip>`, and one line at the bottom of this file:
//!
//! ```text
//! conformance!(sqlite: crate::storage::conformance::sqlite);
//! conformance!(postgres: crate::storage::postgres::test_store);
//! ```
//!
//! A factory that cannot make a store (PostgreSQL without `EVENTDECK_TEST_DATABASE_URL`) returns
//! `Err(Skip(why))`: every case of that backend then prints `SKIPPED …` and passes.
//!
//! Cases share one clock with the store (`Timestamp::now()`); where a case needs time to pass (leases,
//! retries) it hands the store explicit times instead of sleeping.

use std::any::Any;
use std::sync::Arc;

use super::{SqliteStore, Store};
use crate::domain::{Event, NewEvent, Subscription, SubscriptionId, Timestamp};
use crate::storage::Appended;

mod archive;
mod cluster;
mod delivery;
mod events;
mod processing;
mod projection;
mod publication;
mod query;
mod replay;

/// A store made for one test, with whatever must live as long as it.
pub(crate) struct TestStore {
    pub store: Arc<dyn Store>,
    /// A temporary folder, or a guard that drops a test schema: kept until the test ends.
    pub keep: Box<dyn Any + Send>,
}

/// Why a backend's cases cannot run here (e.g. no test database configured).
#[derive(Debug)]
pub(crate) struct Skip(pub String);

/// SQLite: a new file in a temporary folder per test.
pub(crate) async fn sqlite() -> Result<TestStore, Skip> {
    let (dir, store) = SqliteStore::temporary().await;
    Ok(TestStore { store: Arc::new(store), keep: Box::new(dir) })
}

/// Runs every case against the backend whose factory is `$fresh`, as `#[tokio::test]`s in a module
/// named `$backend`.
macro_rules! conformance {
    ($backend:ident: $fresh:path) => {
        mod $backend {
            conformance!(@cases $fresh;
                events::a_new_store_is_empty_and_answers,
                events::append_keeps_every_field_and_assigns_seq_id_and_created_at,
                events::idempotency_keys_are_per_tenant_and_checked_within_a_group,
                events::a_given_id_is_kept_and_a_repeat_of_it_is_a_duplicate,
                events::expected_versions_are_checked_within_and_across_groups,
                events::stream_reads_start_at_a_version_inclusive_in_version_order_with_a_limit,
                events::streams_are_listed_by_prefix_in_id_order_with_version_and_last_event,
                events::counters_follow_every_commit,
                events::appends_made_at_once_each_get_their_own_answer,
                events::a_closed_store_refuses_work,
                query::query_filters_match_the_domain_filter,
                query::type_patterns_match_the_same_as_in_memory_however_many_types_exist,
                query::query_pages_by_timestamp_then_seq_with_a_total,
                query::events_after_reads_the_log_in_seq_order,
                query::events_by_seq_returns_those_that_exist_in_seq_order_once,
                delivery::subscriptions_are_saved_listed_replaced_and_deleted,
                delivery::the_cursor_moves_in_the_transaction_that_queues_deliveries,
                delivery::a_cursor_moves_only_from_where_it_is_and_subscription_changes_move_its_epoch,
                delivery::due_deliveries_are_claimed_once_until_their_lease_ends,
                delivery::each_subscription_is_claimed_on_its_own,
                delivery::deliveries_can_be_queued_already_claimed,
                delivery::released_claims_are_due_again,
                delivery::a_delivered_attempt_is_recorded_and_never_claimed_again,
                delivery::a_retry_is_due_at_its_time_and_counts_its_attempts,
                delivery::out_of_retries_a_delivery_becomes_a_dead_letter,
                delivery::gone_disables_the_subscription_and_cancels_what_it_had_pending,
                delivery::a_cancelled_delivery_is_recorded_without_an_attempt,
                delivery::disabling_or_deleting_a_subscription_cancels_its_pending_deliveries,
                delivery::a_retry_whose_subscription_was_disabled_or_deleted_meanwhile_is_cancelled,
                delivery::dead_letters_are_listed_newest_first_filtered_and_paged,
                delivery::retrying_dead_letters_restarts_them_with_a_fresh_budget,
                delivery::discarding_a_dead_letter_keeps_the_event_and_its_delivery,
                delivery::dead_letters_are_grouped_by_cause_and_a_group_is_retried_or_discarded,
                processing::processors_are_saved_listed_by_priority_toggled_and_deleted,
                processing::claims_are_leases_released_at_start_and_counters_follow_every_step,
                processing::an_expired_claim_is_taken_again_without_counting_it_twice,
                processing::outcomes_move_events_to_processed_pending_or_failed,
                processing::a_retried_event_is_claimed_with_the_processors_that_succeeded,
                processing::events_stored_processed_are_never_claimed,
                processing::replay_results_are_recorded_apart_from_the_event_lifecycle,
                processing::with_nothing_to_do_complete_and_claim_changes_nothing,
                replay::replays_are_saved_by_their_holder_and_taken_over_when_its_lease_ends,
                cluster::an_instance_is_listed_with_its_claims_while_it_beats,
                cluster::changes_are_read_back_in_order_and_forgotten_when_old,
                replay::a_replays_finished_deliveries_are_counted,
                projection::a_cached_projection_only_moves_forward,
                projection::snapshots_are_kept_and_found_by_version_and_by_time,
                projection::ranges_at_time_are_the_stretches_that_can_hold_earlier_events,
                projection::stream_changes_read_a_range_up_to_a_time_with_a_limit,
                projection::stale_projections_are_the_streams_whose_fold_is_behind,
                publication::a_publication_cursor_starts_at_the_newest_seq_and_is_held_by_one_owner,
                publication::dead_letters_of_publications_and_ingest_are_recorded_and_listed,
                archive::a_plan_outlives_a_stopped_run_until_its_events_are_marked,
                archive::deleting_keeps_the_newest_event_stream_heads_unsnapshotted_versions_and_pending_deliveries,
            );
        }
    };
    (@cases $fresh:path; $($group:ident::$case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                match $fresh().await {
                    Ok(fresh) => {
                        $crate::storage::conformance::$group::$case(fresh.store.clone()).await;
                        fresh.store.close().await;
                        drop(fresh.keep);
                    }
                    Err($crate::storage::conformance::Skip(why)) => {
                        println!("SKIPPED {}::{}: {why}", stringify!($group), stringify!($case));
                    }
                }
            }
        )+
    };
}

conformance!(sqlite: crate::storage::conformance::sqlite);
// A fresh schema per test in the database EVENTDECK_TEST_DATABASE_URL names; SKIPPED without it.
conformance!(postgres: crate::storage::postgres::test_store);

// Helpers the cases share.

/// Appends `events` as one group and returns them stored, failing the test on a duplicate or conflict.
async fn stored(store: &dyn Store, events: Vec<NewEvent>) -> Vec<Event> {
    store
        .append(events)
        .await
        .expect("append")
        .into_iter()
        .map(|appended| match appended {
            Appended::Created(event) => event,
            other => panic!("expected a new event, got {other:?}"),
        })
        .collect()
}

/// A new event of `event_type` stamped at `timestamp`.
fn at(event_type: &str, timestamp: Timestamp) -> NewEvent {
    NewEvent { timestamp, ..NewEvent::new(event_type) }
}

/// A plain enabled subscription to everything, receiving events after `start_seq`.
fn subscription(name: &str, start_seq: i64) -> Subscription {
    let now = Timestamp::now();
    Subscription {
        subscription_id: SubscriptionId::new_v7(),
        subscriber_name: name.to_owned(),
        subscriber_type: "webhook".into(),
        event_types: Vec::new(),
        event_sources: Vec::new(),
        event_categories: Vec::new(),
        callback_url: format!("https://hooks.example.com/{name}"),
        has_secret: false,
        retry_policy: crate::domain::RetryPolicy::default(),
        enabled: true,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
        secret: None,
        start_seq,
    }
}

/// `moment` moved `micros` earlier or later.
fn shifted(moment: Timestamp, micros: i64) -> Timestamp {
    Timestamp::from_micros(moment.as_micros() + micros)
}

/// One second, in microseconds.
const SECOND: i64 = 1_000_000;
