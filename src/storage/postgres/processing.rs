//! Processing in PostgreSQL: processors with running totals, the queue of pending events (the events
//! table itself, through a partial index on `due_at`, claimed with `FOR UPDATE SKIP LOCKED`), and
//! processing results.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{Acquire, PgConnection, Postgres, QueryBuilder, Row};

use super::PostgresStore;
use super::shared::{ROWS_PER_INSERT, insert_dead_letter, results_of};
use crate::domain::{DeadLetter, Event, EventId, EventStatus, ProcessingResult, Processor, ProcessorId, Timestamp};
use crate::storage::rows::{self, EVENT_COLUMNS, PROCESSOR_COLUMNS, json_text};
use crate::storage::settle;
use crate::storage::{Claim, ClaimedEvent, Completed, Error, ProcessingNext, ProcessingOutcome, ProcessingStore};

#[async_trait]
impl ProcessingStore for PostgresStore {
    async fn insert_processor(&self, p: &Processor) -> Result<bool, Error> {
        let sql = format!(
            "INSERT INTO processors ({PROCESSOR_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, 0, $9, $10) \
             ON CONFLICT (processor_name) DO NOTHING"
        );
        let inserted = sqlx::query(&sql)
            .bind(p.processor_id.0)
            .bind(&p.processor_name)
            .bind(p.processor_type.as_str())
            .bind(p.enabled)
            .bind(i64::from(p.priority))
            .bind(json_text(&p.filters))
            .bind(json_text(&p.config))
            .bind(i64::from(p.max_retries))
            .bind(p.created_at.as_micros())
            .bind(p.updated_at.as_micros())
            .execute(&self.pool)
            .await?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn processors(&self) -> Result<Vec<Processor>, Error> {
        let sql =
            format!("SELECT {PROCESSOR_COLUMNS} FROM processors ORDER BY priority DESC, created_at, processor_id");
        sqlx::query(&sql).fetch_all(&self.pool).await?.iter().map(rows::processor).collect()
    }

    async fn set_processor_enabled(
        &self,
        id: ProcessorId,
        enabled: bool,
        now: Timestamp,
    ) -> Result<Option<Processor>, Error> {
        let sql = format!(
            "UPDATE processors SET enabled = $1, updated_at = $2 WHERE processor_id = $3 RETURNING {PROCESSOR_COLUMNS}"
        );
        let row = sqlx::query(&sql).bind(enabled).bind(now.as_micros()).bind(id.0).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::processor).transpose()
    }

    async fn delete_processor(&self, id: ProcessorId) -> Result<bool, Error> {
        let deleted =
            sqlx::query("DELETE FROM processors WHERE processor_id = $1").bind(id.0).execute(&self.pool).await?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn release_processing(&self) -> Result<u64, Error> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let released = sqlx::query(
            "UPDATE events SET status = 'pending', due_at = 0, claimed_by = NULL \
             WHERE status = 'processing' AND claimed_by = $1",
        )
        .bind(&self.instance_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let moved = released as i64;
        self.bump_status(&mut tx, &[(EventStatus::Processing, -moved), (EventStatus::Pending, moved)]).await?;
        tx.commit().await?;
        Ok(released)
    }

    async fn next_processing_due(&self) -> Result<Option<Timestamp>, Error> {
        let due: Option<i64> =
            sqlx::query_scalar("SELECT min(due_at) FROM events WHERE status IN ('pending', 'processing')")
                .fetch_one(&self.pool)
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
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let dead_letters = self.complete(&mut tx, &outcomes).await?;
        let claimed = match claim {
            Some(claim) => self.claim_events(&mut tx, claim).await?,
            None => Vec::new(),
        };
        if outcomes.is_empty() && claimed.is_empty() {
            // Nothing changed: rolled back now rather than when the pool takes the connection back.
            tx.rollback().await?;
            return Ok(Completed::default());
        }
        tx.commit().await?;
        Ok(Completed { dead_letters, claimed })
    }

    async fn record_results(&self, results: &[(i64, ProcessingResult)]) -> Result<(), Error> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let results: Vec<(i64, &ProcessingResult)> = results.iter().map(|(seq, r)| (*seq, r)).collect();
        insert_results(&mut tx, &results).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn processing_results(&self, event_id: EventId) -> Result<Vec<ProcessingResult>, Error> {
        results_of(&self.pool, event_id).await
    }
}

impl PostgresStore {
    /// Claims due events for this instance in the caller's transaction, skipping rows another
    /// instance is claiming or settling right now.
    async fn claim_events(&self, conn: &mut PgConnection, claim: Claim) -> Result<Vec<ClaimedEvent>, Error> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE status IN ('pending', 'processing') AND due_at <= $1 \
             ORDER BY due_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED"
        );
        let rows =
            sqlx::query(&sql).bind(claim.now.as_micros()).bind(i64::from(claim.limit)).fetch_all(&mut *conn).await?;
        let mut events = rows.iter().map(rows::event).collect::<Result<Vec<_>, _>>()?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        events.sort_by_key(|e| e.seq);
        // Pending ones change status; expired claims were `processing` already.
        let newly = events.iter().filter(|e| e.status == EventStatus::Pending).count() as i64;
        sqlx::query("UPDATE events SET status = 'processing', due_at = $1, claimed_by = $2 WHERE seq = ANY($3)")
            .bind(claim.lease_until.as_micros())
            .bind(&self.instance_id)
            .bind(events.iter().map(|e| e.seq).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        self.bump_status(conn, &[(EventStatus::Pending, -newly), (EventStatus::Processing, newly)]).await?;
        let mut succeeded = succeeded_processors(conn, &events).await?;
        for event in &mut events {
            event.status = EventStatus::Processing;
        }
        Ok(events
            .into_iter()
            .map(|event| ClaimedEvent { succeeded: succeeded.remove(&event.seq).unwrap_or_default(), event })
            .collect())
    }

    /// Records outcomes in the caller's transaction; returns the dead letters written. The results
    /// are recorded whatever happens; an event's status only while this instance still holds its claim.
    async fn complete(
        &self,
        conn: &mut PgConnection,
        outcomes: &[ProcessingOutcome],
    ) -> Result<Vec<DeadLetter>, Error> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let now = Timestamp::now();
        let results: Vec<(i64, &ProcessingResult)> =
            outcomes.iter().flat_map(|o| o.results.iter().map(move |r| (o.seq, r))).collect();
        insert_results(conn, &results).await?;

        let mut statuses: HashMap<EventStatus, i64> = HashMap::new();
        let processed: Vec<i64> =
            outcomes.iter().filter(|o| o.next == ProcessingNext::Processed).map(|o| o.seq).collect();
        if !processed.is_empty() {
            let done = sqlx::query(
                "UPDATE events SET status = 'processed', due_at = 0, error_message = NULL, claimed_by = NULL, \
                 processed_at = $1 WHERE status = 'processing' AND claimed_by = $2 AND seq = ANY($3)",
            )
            .bind(now.as_micros())
            .bind(&self.instance_id)
            .bind(processed)
            .execute(&mut *conn)
            .await?;
            *statuses.entry(EventStatus::Processed).or_default() += done.rows_affected() as i64;
        }

        let mut dead = Vec::new();
        for outcome in outcomes {
            match &outcome.next {
                ProcessingNext::Processed => {}
                ProcessingNext::Retry { due_at, error } => {
                    let retried = sqlx::query(
                        "UPDATE events SET status = 'pending', retry_count = retry_count + 1, error_message = $1, \
                         due_at = $2, claimed_by = NULL WHERE seq = $3 AND status = 'processing' AND claimed_by = $4",
                    )
                    .bind(error)
                    .bind(due_at.as_micros())
                    .bind(outcome.seq)
                    .bind(&self.instance_id)
                    .execute(&mut *conn)
                    .await?;
                    *statuses.entry(EventStatus::Pending).or_default() += retried.rows_affected() as i64;
                }
                ProcessingNext::Failed { error, processor_id } => {
                    if let Some(entry) = self.fail(conn, outcome, error, *processor_id, now).await? {
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
        self.bump_status(conn, &deltas).await?;
        Ok(dead)
    }

    /// Marks an event failed and writes its dead letter, while this instance holds its claim.
    async fn fail(
        &self,
        conn: &mut PgConnection,
        outcome: &ProcessingOutcome,
        error: &str,
        processor_id: ProcessorId,
        now: Timestamp,
    ) -> Result<Option<DeadLetter>, Error> {
        let attempts: Option<i64> = sqlx::query_scalar(
            "UPDATE events SET status = 'failed', retry_count = retry_count + 1, error_message = $1, due_at = 0, \
             claimed_by = NULL, processed_at = $2 WHERE seq = $3 AND status = 'processing' AND claimed_by = $4 \
             RETURNING retry_count",
        )
        .bind(error)
        .bind(now.as_micros())
        .bind(outcome.seq)
        .bind(&self.instance_id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(attempts) = attempts else { return Ok(None) };
        let first_failed: Option<i64> = sqlx::query_scalar(
            "SELECT min(processed_at) FROM processing_results WHERE event_seq = $1 AND NOT success AND replay_id IS NULL",
        )
        .bind(outcome.seq)
        .fetch_one(&mut *conn)
        .await?;
        let entry = settle::failed_event(outcome, error, processor_id, attempts, first_failed, now);
        insert_dead_letter(conn, &entry).await?;
        Ok(Some(entry))
    }
}

/// Which processors already succeeded on each of these events, outside replays.
async fn succeeded_processors(
    conn: &mut PgConnection,
    events: &[Event],
) -> Result<HashMap<i64, Vec<ProcessorId>>, Error> {
    let mut succeeded: HashMap<i64, Vec<ProcessorId>> = HashMap::new();
    // Only an event that ran before can have results: a retry, or one taken back from the DLQ.
    let ran: Vec<i64> =
        events.iter().filter(|e| e.retry_count > 0 || e.error_message.is_some()).map(|e| e.seq).collect();
    if ran.is_empty() {
        return Ok(succeeded);
    }
    let rows = sqlx::query(
        "SELECT event_seq, processor_id FROM processing_results \
         WHERE success AND replay_id IS NULL AND event_seq = ANY($1) ORDER BY id",
    )
    .bind(ran)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        succeeded.entry(row.try_get("event_seq")?).or_default().push(ProcessorId(row.try_get("processor_id")?));
    }
    Ok(succeeded)
}

/// Inserts results and adds them to their processors' totals (in processor order, so two
/// transactions never wait for each other in a circle).
async fn insert_results(conn: &mut PgConnection, results: &[(i64, &ProcessingResult)]) -> Result<(), Error> {
    for chunk in results.chunks(ROWS_PER_INSERT) {
        let mut insert = QueryBuilder::<Postgres>::new(
            "INSERT INTO processing_results (event_seq, processor_id, processor_name, success, duration_us, error, \
             replay_id, processed_at) ",
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
    let mut totals: std::collections::BTreeMap<uuid::Uuid, (i64, i64, i64)> = Default::default();
    for (_, r) in results {
        let total = totals.entry(r.processor_id.0).or_default();
        if r.success {
            total.0 += 1;
        } else {
            total.1 += 1;
        }
        total.2 += duration_us(r.duration_ms);
    }
    for (id, (processed, failed, micros)) in totals {
        sqlx::query(
            "UPDATE processors SET processed_count = processed_count + $1, failed_count = failed_count + $2, \
             total_duration_us = total_duration_us + $3 WHERE processor_id = $4",
        )
        .bind(processed)
        .bind(failed)
        .bind(micros)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn duration_us(ms: f64) -> i64 {
    (ms * 1000.0).round() as i64
}
