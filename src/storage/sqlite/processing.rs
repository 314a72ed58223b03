//! Processing in SQLite: processors with running totals, the queue of pending events (the events
//! table itself, through a partial index on `due_at`), and processing results.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqliteConnection};

use super::SqliteStore;
use super::shared::{Patience, ROWS_PER_INSERT, bump_status, in_chunks, insert_dead_letter, push_in, results_of};
use crate::domain::{DeadLetter, Event, EventId, EventStatus, ProcessingResult, Processor, ProcessorId, Timestamp};
use crate::storage::rows::{self, EVENT_COLUMNS, PROCESSOR_COLUMNS, json_text};
use crate::storage::settle;
use crate::storage::{Claim, ClaimedEvent, Completed, Error, ProcessingNext, ProcessingOutcome, ProcessingStore};

#[async_trait]
impl ProcessingStore for SqliteStore {
    async fn insert_processor(&self, p: &Processor) -> Result<bool, Error> {
        let mut conn = self.writer.write().await?;
        let sql = format!(
            "INSERT INTO processors ({PROCESSOR_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, ?, ?) \
             ON CONFLICT (processor_name) DO NOTHING"
        );
        let inserted = sqlx::query(&sql)
            .bind(p.processor_id.0)
            .bind(&p.processor_name)
            .bind(p.processor_type.as_str())
            .bind(p.enabled)
            .bind(p.priority)
            .bind(json_text(&p.filters))
            .bind(json_text(&p.config))
            .bind(i64::from(p.max_retries))
            .bind(p.created_at.as_micros())
            .bind(p.updated_at.as_micros())
            .execute(&mut *conn)
            .await?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn processors(&self) -> Result<Vec<Processor>, Error> {
        let sql =
            format!("SELECT {PROCESSOR_COLUMNS} FROM processors ORDER BY priority DESC, created_at, processor_id");
        sqlx::query(&sql).fetch_all(&self.readers).await?.iter().map(rows::processor).collect()
    }

    async fn set_processor_enabled(
        &self,
        id: ProcessorId,
        enabled: bool,
        now: Timestamp,
    ) -> Result<Option<Processor>, Error> {
        let mut conn = self.writer.write().await?;
        let sql = format!(
            "UPDATE processors SET enabled = ?, updated_at = ? WHERE processor_id = ? RETURNING {PROCESSOR_COLUMNS}"
        );
        let row = sqlx::query(&sql).bind(enabled).bind(now.as_micros()).bind(id.0).fetch_optional(&mut *conn).await?;
        row.as_ref().map(rows::processor).transpose()
    }

    async fn delete_processor(&self, id: ProcessorId) -> Result<bool, Error> {
        let mut conn = self.writer.write().await?;
        let deleted =
            sqlx::query("DELETE FROM processors WHERE processor_id = ?").bind(id.0).execute(&mut *conn).await?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn release_processing(&self) -> Result<u64, Error> {
        // This process holds the database alone: every claim in it is this instance's or a predecessor's.
        let mut conn = self.writer.write().await?;
        let mut tx = conn.begin().await?;
        let released = sqlx::query(
            "UPDATE events SET status = 'pending', due_at = 0, claimed_by = NULL WHERE status = 'processing'",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let moved = released as i64;
        bump_status(&mut tx, &[(EventStatus::Processing, -moved), (EventStatus::Pending, moved)]).await?;
        tx.commit().await?;
        Ok(released)
    }

    async fn next_processing_due(&self) -> Result<Option<Timestamp>, Error> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT min(due_at) FROM events INDEXED BY events_to_process WHERE status IN ('pending', 'processing')",
        )
        .fetch_one(&self.readers)
        .await?;
        Ok(due.map(Timestamp::from_micros))
    }

    async fn complete_and_claim(
        &self,
        outcomes: Vec<ProcessingOutcome>,
        claim: Option<Claim>,
    ) -> Result<Completed, Error> {
        if outcomes.is_empty() && claim.is_none() {
            return Ok(Completed::default());
        }
        let mut conn = self.writer.write_with(Patience::Batch).await?;
        let mut tx = conn.begin().await?;
        let dead_letters = complete(&mut tx, &outcomes, &self.instance_id).await?;
        let claimed = match claim {
            Some(claim) => claim_events(&mut tx, claim, &self.instance_id).await?,
            None => Vec::new(),
        };

        if outcomes.is_empty() && claimed.is_empty() {
            // Nothing changed: no commit, no sync.
            return Ok(Completed::default());
        }
        tx.commit().await?;
        Ok(Completed { dead_letters, claimed })
    }

    async fn record_results(&self, results: &[(i64, ProcessingResult)]) -> Result<(), Error> {
        let mut conn = self.writer.write_with(Patience::Batch).await?;
        let mut tx = conn.begin().await?;
        let results: Vec<(i64, &ProcessingResult)> = results.iter().map(|(seq, r)| (*seq, r)).collect();
        insert_results(&mut tx, &results).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn processing_results(&self, event_id: EventId) -> Result<Vec<ProcessingResult>, Error> {
        results_of(&self.readers, event_id).await
    }
}

/// Claims due events for `instance` in the caller's transaction.
async fn claim_events(conn: &mut SqliteConnection, claim: Claim, instance: &str) -> Result<Vec<ClaimedEvent>, Error> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events INDEXED BY events_to_process \
         WHERE status IN ('pending', 'processing') AND due_at <= ? \
         ORDER BY due_at, seq LIMIT ?"
    );
    let rows = sqlx::query(&sql).bind(claim.now.as_micros()).bind(i64::from(claim.limit)).fetch_all(&mut *conn).await?;
    let mut events = rows.iter().map(rows::event).collect::<Result<Vec<_>, _>>()?;
    if events.is_empty() {
        return Ok(Vec::new());
    }
    // Pending ones change status; expired claims were `processing` already.
    let newly = events.iter().filter(|e| e.status == EventStatus::Pending).count() as i64;
    for chunk in in_chunks(&events) {
        let mut update = QueryBuilder::<Sqlite>::new("UPDATE events SET status = 'processing', due_at = ");
        update.push_bind(claim.lease_until.as_micros()).push(", claimed_by = ").push_bind(instance).push(" WHERE ");
        push_in(&mut update, "seq", chunk.iter().map(|e| e.seq));
        update.build().execute(&mut *conn).await?;
    }
    bump_status(conn, &[(EventStatus::Pending, -newly), (EventStatus::Processing, newly)]).await?;
    let mut succeeded = succeeded_processors(conn, &events).await?;
    for event in &mut events {
        event.status = EventStatus::Processing;
    }
    Ok(events
        .into_iter()
        .map(|event| ClaimedEvent { succeeded: succeeded.remove(&event.seq).unwrap_or_default(), event })
        .collect())
}

/// Records outcomes in the caller's transaction; returns the dead letters written. The results are
/// recorded whatever happens; an event's status only while `instance` still holds its claim.
async fn complete(
    conn: &mut SqliteConnection,
    outcomes: &[ProcessingOutcome],
    instance: &str,
) -> Result<Vec<DeadLetter>, Error> {
    if outcomes.is_empty() {
        return Ok(Vec::new());
    }
    let now = Timestamp::now();
    let results: Vec<(i64, &ProcessingResult)> =
        outcomes.iter().flat_map(|o| o.results.iter().map(move |r| (o.seq, r))).collect();
    insert_results(conn, &results).await?;

    let mut statuses: HashMap<EventStatus, i64> = HashMap::new();
    let processed: Vec<i64> = outcomes.iter().filter(|o| o.next == ProcessingNext::Processed).map(|o| o.seq).collect();
    for chunk in in_chunks(&processed) {
        let mut done = QueryBuilder::<Sqlite>::new(
            "UPDATE events SET status = 'processed', due_at = 0, error_message = NULL, claimed_by = NULL, processed_at = ",
        );
        done.push_bind(now.as_micros()).push(" WHERE status = 'processing' AND claimed_by = ").push_bind(instance);
        done.push(" AND ");
        push_in(&mut done, "seq", chunk.iter().copied());
        *statuses.entry(EventStatus::Processed).or_default() +=
            done.build().execute(&mut *conn).await?.rows_affected() as i64;
    }

    let mut dead = Vec::new();
    for outcome in outcomes {
        match &outcome.next {
            ProcessingNext::Processed => {}
            ProcessingNext::Retry { due_at, error } => {
                let retried = sqlx::query(
                    "UPDATE events SET status = 'pending', retry_count = retry_count + 1, error_message = ?, \
                     due_at = ?, claimed_by = NULL WHERE seq = ? AND status = 'processing' AND claimed_by = ?",
                )
                .bind(error)
                .bind(due_at.as_micros())
                .bind(outcome.seq)
                .bind(instance)
                .execute(&mut *conn)
                .await?;
                *statuses.entry(EventStatus::Pending).or_default() += retried.rows_affected() as i64;
            }
            ProcessingNext::Failed { error, processor_id } => {
                if let Some(entry) = fail(conn, outcome, error, *processor_id, now, instance).await? {
                    dead.push(entry);
                    *statuses.entry(EventStatus::Failed).or_default() += 1;
                }
            }
        }
    }
    // Each status applied moved one event out of processing.
    let applied: i64 = statuses.values().sum();
    let mut deltas: Vec<(EventStatus, i64)> = statuses.into_iter().collect();
    deltas.push((EventStatus::Processing, -applied));
    bump_status(conn, &deltas).await?;
    Ok(dead)
}

/// Marks an event failed and writes its dead letter, while `instance` holds its claim.
async fn fail(
    conn: &mut SqliteConnection,
    outcome: &ProcessingOutcome,
    error: &str,
    processor_id: ProcessorId,
    now: Timestamp,
    instance: &str,
) -> Result<Option<DeadLetter>, Error> {
    let attempts: Option<i64> = sqlx::query_scalar(
        "UPDATE events SET status = 'failed', retry_count = retry_count + 1, error_message = ?, due_at = 0, \
         claimed_by = NULL, processed_at = ? WHERE seq = ? AND status = 'processing' AND claimed_by = ? \
         RETURNING retry_count",
    )
    .bind(error)
    .bind(now.as_micros())
    .bind(outcome.seq)
    .bind(instance)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(attempts) = attempts else { return Ok(None) };
    let first_failed: Option<i64> = sqlx::query_scalar(
        "SELECT min(processed_at) FROM processing_results WHERE event_seq = ? AND success = 0 AND replay_id IS NULL",
    )
    .bind(outcome.seq)
    .fetch_one(&mut *conn)
    .await?;
    let entry = settle::failed_event(outcome, error, processor_id, attempts, first_failed, now);
    insert_dead_letter(conn, &entry).await?;
    Ok(Some(entry))
}

/// Which processors already succeeded on each of these events, outside replays.
async fn succeeded_processors(
    conn: &mut SqliteConnection,
    events: &[Event],
) -> Result<HashMap<i64, Vec<ProcessorId>>, Error> {
    let mut succeeded: HashMap<i64, Vec<ProcessorId>> = HashMap::new();
    // Only an event that ran before can have results: a retry, or one taken back from the DLQ.
    let ran: Vec<i64> =
        events.iter().filter(|e| e.retry_count > 0 || e.error_message.is_some()).map(|e| e.seq).collect();
    for chunk in in_chunks(&ran) {
        let mut select = QueryBuilder::<Sqlite>::new(
            "SELECT event_seq, processor_id FROM processing_results WHERE success = 1 AND replay_id IS NULL AND ",
        );
        push_in(&mut select, "event_seq", chunk.iter().copied());
        for row in select.build().fetch_all(&mut *conn).await? {
            succeeded.entry(row.try_get("event_seq")?).or_default().push(ProcessorId(row.try_get("processor_id")?));
        }
    }
    Ok(succeeded)
}

/// Inserts results and adds them to their processors' totals.
async fn insert_results(conn: &mut SqliteConnection, results: &[(i64, &ProcessingResult)]) -> Result<(), Error> {
    for chunk in results.chunks(ROWS_PER_INSERT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO processing_results (event_seq, processor_id, processor_name, success, duration_us, error, replay_id, processed_at) ",
        );
        insert.push_values(chunk, |mut row, (seq, r)| {
            row.push_bind(*seq)
                .push_bind(r.processor_id.0)
                .push_bind(r.processor_name.clone())
                .push_bind(r.success)
                .push_bind(duration_us(r.duration_ms))
                .push_bind(r.error.clone())
                .push_bind(r.replay_id.map(|id| id.0))
                .push_bind(r.processed_at.as_micros());
        });
        insert.build().execute(&mut *conn).await?;
    }
    // (processed, failed, microseconds) per processor.
    let mut totals: HashMap<ProcessorId, (i64, i64, i64)> = HashMap::new();
    for (_, r) in results {
        let total = totals.entry(r.processor_id).or_default();
        if r.success {
            total.0 += 1;
        } else {
            total.1 += 1;
        }
        total.2 += duration_us(r.duration_ms);
    }
    for (id, (processed, failed, micros)) in totals {
        sqlx::query(
            "UPDATE processors SET processed_count = processed_count + ?, failed_count = failed_count + ?, \
             total_duration_us = total_duration_us + ? WHERE processor_id = ?",
        )
        .bind(processed)
        .bind(failed)
        .bind(micros)
        .bind(id.0)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn duration_us(ms: f64) -> i64 {
    (ms * 1000.0).round() as i64
}
