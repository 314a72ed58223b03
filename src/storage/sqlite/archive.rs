//! Archiving in SQLite: the lease row and its plan, the archive lines of events, marking them
//! `archived` and deleting them. Writes go through the writer with a batch's patience, so ingest goes
//! first while an archive runs.

use async_trait::async_trait;
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection};

use super::SqliteStore;
use super::shared::{Patience, bump_status, in_chunks, push_in};
use crate::domain::{EventStatus, Timestamp};
use crate::storage::archive_line::{self, ARCHIVE_COLUMNS, merge, parse_plan};
use crate::storage::rows::corrupt;
use crate::storage::{ArchiveLine, ArchivePart, ArchiveStore, Deleted, Error};

#[async_trait]
impl ArchiveStore for SqliteStore {
    async fn claim_archive(&self, now: Timestamp, lease_until: Timestamp) -> Result<Option<Vec<ArchivePart>>, Error> {
        let mut conn = self.writer.write().await?;
        let plan: Option<Option<String>> = sqlx::query_scalar(
            "UPDATE archive_lease SET owner = ?1, lease_until = ?2 \
             WHERE id = 1 AND (owner IS NULL OR owner = ?1 OR lease_until < ?3) RETURNING plan",
        )
        .bind(&self.instance_id)
        .bind(lease_until.as_micros())
        .bind(now.as_micros())
        .fetch_optional(&mut *conn)
        .await?;
        plan.map(|plan| parse_plan(plan.as_deref())).transpose()
    }

    async fn archivable(&self, status: EventStatus, before: Timestamp, limit: u32) -> Result<Vec<ArchiveLine>, Error> {
        // The (status, timestamp) index holds the seq too (the rowid): its order is (timestamp, seq).
        let sql = format!(
            "SELECT {ARCHIVE_COLUMNS} FROM events INDEXED BY events_status_timestamp \
             WHERE status = ? AND timestamp < ? ORDER BY timestamp, seq LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(status.as_str())
            .bind(before.as_micros())
            .bind(i64::from(limit))
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(archive_line::line).collect()
    }

    async fn archive_lines(&self, seqs: &[i64]) -> Result<Vec<ArchiveLine>, Error> {
        let mut lines = Vec::with_capacity(seqs.len());
        for chunk in in_chunks(seqs) {
            let mut sql = QueryBuilder::<Sqlite>::new(format!("SELECT {ARCHIVE_COLUMNS} FROM events WHERE "));
            push_in(&mut sql, "seq", chunk.iter().copied());
            for row in sql.build().fetch_all(&self.readers).await? {
                lines.push(archive_line::line(&row)?);
            }
        }
        lines.sort_by_key(|line| (line.timestamp, line.seq));
        Ok(lines)
    }

    async fn plan_archive(&self, plan: &[ArchivePart], lease_until: Timestamp) -> Result<bool, Error> {
        let mut conn = self.writer.write().await?;
        save_plan(&mut conn, &self.instance_id, plan, lease_until).await
    }

    async fn mark_archived(&self, plan: &[ArchivePart], lease_until: Timestamp) -> Result<Option<u64>, Error> {
        let mut conn = self.writer.write_with(Patience::Batch).await?;
        let mut tx = conn.begin().await?;
        // The plan is cleared in the transaction that marks its events: a run that stops before the
        // commit leaves both for the next run, one that stops after leaves neither.
        if !save_plan(&mut tx, &self.instance_id, &[], lease_until).await? {
            return Ok(None);
        }
        let seqs: Vec<i64> = plan.iter().flat_map(|part| part.seqs.iter().copied()).collect();
        let mut deltas: Vec<(EventStatus, i64)> = Vec::new();
        let mut marked = 0;
        for chunk in in_chunks(&seqs) {
            let mut count = QueryBuilder::<Sqlite>::new(
                "SELECT status, count(*) FROM events WHERE +status IN ('processed', 'failed') AND ",
            );
            push_in(&mut count, "seq", chunk.iter().copied());
            count.push(" GROUP BY status");
            let counts: Vec<(String, i64)> = count.build_query_as().fetch_all(&mut *tx).await?;
            for (status, n) in counts {
                let status = EventStatus::parse("status", &status).map_err(|e| corrupt("status", e))?;
                deltas.push((status, -n));
                deltas.push((EventStatus::Archived, n));
            }
            let mut update = QueryBuilder::<Sqlite>::new(
                "UPDATE events SET status = 'archived', due_at = 0, claimed_by = NULL WHERE +status IN ('processed', 'failed') AND ",
            );
            push_in(&mut update, "seq", chunk.iter().copied());
            marked += update.build().execute(&mut *tx).await?.rows_affected();
        }
        bump_status(&mut tx, &merge(deltas)).await?;
        tx.commit().await?;
        Ok(Some(marked))
    }

    async fn delete_archived(
        &self,
        before: Timestamp,
        after: Option<(Timestamp, i64)>,
        limit: u32,
    ) -> Result<Deleted, Error> {
        let (after_time, after_seq) = after.map_or((i64::MIN, i64::MIN), |(t, s)| (t.as_micros(), s));
        let page: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT timestamp, seq FROM events INDEXED BY events_status_timestamp \
             WHERE status = 'archived' AND timestamp < ? AND timestamp >= ? AND (timestamp > ? OR seq > ?) \
             ORDER BY timestamp, seq LIMIT ?",
        )
        .bind(before.as_micros())
        .bind(after_time)
        .bind(after_time)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        let Some(&(last_time, last_seq)) = page.last() else { return Ok(Deleted::default()) };
        let seqs: Vec<i64> = page.iter().map(|(_, seq)| *seq).collect();

        let mut conn = self.writer.write_with(Patience::Batch).await?;
        let mut tx = conn.begin().await?;
        let mut deleted = 0;
        for chunk in in_chunks(&seqs) {
            deleted += delete_chunk(&mut tx, chunk).await?;
        }
        tx.commit().await?;
        Ok(Deleted { deleted, examined: page.len() as u64, last: Some((Timestamp::from_micros(last_time), last_seq)) })
    }

    async fn release_archive(&self) -> Result<(), Error> {
        let mut conn = self.writer.write().await?;
        sqlx::query("UPDATE archive_lease SET owner = NULL, lease_until = NULL WHERE id = 1 AND owner = ?")
            .bind(&self.instance_id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    async fn oldest_event(&self) -> Result<Option<Timestamp>, Error> {
        let oldest: Option<i64> =
            sqlx::query_scalar("SELECT min(timestamp) FROM events").fetch_one(&self.readers).await?;
        Ok(oldest.map(Timestamp::from_micros))
    }

    async fn first_kept_version(&self, stream_id: &str) -> Result<i64, Error> {
        Ok(sqlx::query_scalar("SELECT coalesce(min(stream_version), 0) FROM events WHERE stream_id = ?")
            .bind(stream_id)
            .fetch_one(&self.readers)
            .await?)
    }
}

/// Saves the plan (or clears it, when empty) and extends the lease, if this instance holds it.
async fn save_plan(
    conn: &mut SqliteConnection,
    instance: &str,
    plan: &[ArchivePart],
    lease_until: Timestamp,
) -> Result<bool, Error> {
    let text = (!plan.is_empty()).then(|| serde_json::to_string(plan).unwrap_or_default());
    let saved = sqlx::query("UPDATE archive_lease SET plan = ?, lease_until = ? WHERE id = 1 AND owner = ?")
        .bind(text)
        .bind(lease_until.as_micros())
        .bind(instance)
        .execute(&mut *conn)
        .await?;
    Ok(saved.rows_affected() == 1)
}

/// Deletes the deletable events among `seqs` (see [`ArchiveStore::delete_archived`]) and what hangs
/// off them, in the caller's transaction.
async fn delete_chunk(conn: &mut SqliteConnection, seqs: &[i64]) -> Result<u64, Error> {
    let mut delete = QueryBuilder::<Sqlite>::new("DELETE FROM events WHERE +status = 'archived' AND ");
    push_in(&mut delete, "seq", seqs.iter().copied());
    // The newest event stays too: the next seq is counted from it.
    delete.push(
        " AND seq < (SELECT max(seq) FROM events) AND (stream_id IS NULL OR (\
           stream_version < (SELECT max(s.stream_version) FROM events s WHERE s.stream_id = events.stream_id) \
           AND stream_version <= coalesce((SELECT max(p.version) FROM projection_snapshots p \
                                           WHERE p.stream_id = events.stream_id), 0))) \
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = events.seq \
                         AND d.state IN ('pending', 'in_flight')) \
         RETURNING seq, event_id",
    );
    let gone: Vec<(i64, uuid::Uuid)> = delete.build_query_as().fetch_all(&mut *conn).await?;
    if gone.is_empty() {
        return Ok(0);
    }
    let seqs: Vec<i64> = gone.iter().map(|(seq, _)| *seq).collect();
    let ids: Vec<uuid::Uuid> = gone.iter().map(|(_, id)| *id).collect();
    for (table, column, by_seq) in [
        ("deliveries", "event_seq", true),
        ("processing_results", "event_seq", true),
        ("delivery_attempts", "event_id", false),
        ("dead_letters", "event_id", false),
    ] {
        let mut sql = QueryBuilder::<Sqlite>::new(format!("DELETE FROM {table} WHERE "));
        if by_seq {
            push_in(&mut sql, column, seqs.iter().copied());
        } else {
            push_in(&mut sql, column, ids.iter().copied());
        }
        sql.build().execute(&mut *conn).await?;
    }
    Ok(gone.len() as u64)
}
