//! Archiving in PostgreSQL: the lease row (instances racing for it are serialised by its row lock)
//! and its plan, the archive lines of events, marking them `archived` and deleting them.

use async_trait::async_trait;
use sqlx::{Acquire, PgConnection};

use super::PostgresStore;
use crate::domain::{EventStatus, Timestamp};
use crate::storage::archive_line::{self, ARCHIVE_COLUMNS, merge, parse_plan, position};
use crate::storage::rows::corrupt;
use crate::storage::{ArchiveLine, ArchivePart, ArchiveStore, Deleted, Error};

#[async_trait]
impl ArchiveStore for PostgresStore {
    async fn claim_archive(&self, now: Timestamp, lease_until: Timestamp) -> Result<Option<Vec<ArchivePart>>, Error> {
        let plan: Option<Option<String>> = sqlx::query_scalar(
            "UPDATE archive_lease SET owner = $1, lease_until = $2 \
             WHERE id = 1 AND (owner IS NULL OR owner = $1 OR lease_until < $3) RETURNING plan",
        )
        .bind(&self.instance_id)
        .bind(lease_until.as_micros())
        .bind(now.as_micros())
        .fetch_optional(&self.pool)
        .await?;
        plan.map(|plan| parse_plan(plan.as_deref())).transpose()
    }

    async fn archivable(
        &self,
        status: EventStatus,
        before: Timestamp,
        after: Option<(Timestamp, i64)>,
        limit: u32,
    ) -> Result<Vec<ArchiveLine>, Error> {
        let (after_time, after_seq) = position(after);
        let sql = format!(
            "SELECT {ARCHIVE_COLUMNS} FROM events WHERE status = $1 AND timestamp < $2 AND (timestamp, seq) > ($3, $4) \
             ORDER BY timestamp, seq LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(status.as_str())
            .bind(before.as_micros())
            .bind(after_time)
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(archive_line::line).collect()
    }

    async fn archive_lines(&self, seqs: &[i64]) -> Result<Vec<ArchiveLine>, Error> {
        let sql = format!("SELECT {ARCHIVE_COLUMNS} FROM events WHERE seq = ANY($1) ORDER BY timestamp, seq");
        let rows = sqlx::query(&sql).bind(seqs).fetch_all(&self.pool).await?;
        rows.iter().map(archive_line::line).collect()
    }

    async fn plan_archive(&self, plan: &[ArchivePart], lease_until: Timestamp) -> Result<bool, Error> {
        let mut conn = self.pool.acquire().await?;
        save_plan(&mut conn, &self.instance_id, plan, lease_until).await
    }

    async fn mark_archived(&self, plan: &[ArchivePart], lease_until: Timestamp) -> Result<Option<u64>, Error> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        // The plan is cleared in the transaction that marks its events: a run that stops before the
        // commit leaves both for the next run, one that stops after leaves neither. The lease row stays
        // locked until the commit, so no other instance takes over in between.
        if !save_plan(&mut tx, &self.instance_id, &[], lease_until).await? {
            return Ok(None);
        }
        let seqs: Vec<i64> = plan.iter().flat_map(|part| part.seqs.iter().copied()).collect();
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "WITH marked AS (\
               UPDATE events e SET status = 'archived', due_at = 0, claimed_by = NULL \
               FROM (SELECT seq, status FROM events WHERE seq = ANY($1) AND status IN ('processed', 'failed') FOR UPDATE) old \
               WHERE e.seq = old.seq RETURNING old.status) \
             SELECT status, count(*) FROM marked GROUP BY status",
        )
        .bind(&seqs)
        .fetch_all(&mut *tx)
        .await?;
        let mut deltas = Vec::new();
        let mut marked = 0;
        for (status, n) in counts {
            let status = EventStatus::parse("status", &status).map_err(|e| corrupt("status", e))?;
            deltas.push((status, -n));
            deltas.push((EventStatus::Archived, n));
            marked += n as u64;
        }
        self.bump_status(&mut tx, &merge(deltas)).await?;
        tx.commit().await?;
        Ok(Some(marked))
    }

    async fn delete_archived(
        &self,
        before: Timestamp,
        after: Option<(Timestamp, i64)>,
        limit: u32,
    ) -> Result<Deleted, Error> {
        let (after_time, after_seq) = position(after);
        let page: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT timestamp, seq FROM events \
             WHERE status = 'archived' AND timestamp < $1 AND (timestamp, seq) > ($2, $3) \
             ORDER BY timestamp, seq LIMIT $4",
        )
        .bind(before.as_micros())
        .bind(after_time)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let Some(&(last_time, last_seq)) = page.last() else { return Ok(Deleted::default()) };
        let seqs: Vec<i64> = page.iter().map(|(_, seq)| *seq).collect();
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let deleted = delete_events(&mut tx, &seqs).await?;
        tx.commit().await?;
        Ok(Deleted { deleted, examined: page.len() as u64, last: Some((Timestamp::from_micros(last_time), last_seq)) })
    }

    async fn release_archive(&self) -> Result<(), Error> {
        sqlx::query("UPDATE archive_lease SET owner = NULL, lease_until = NULL WHERE id = 1 AND owner = $1")
            .bind(&self.instance_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn oldest_event(&self) -> Result<Option<Timestamp>, Error> {
        let oldest: Option<i64> = sqlx::query_scalar("SELECT min(timestamp) FROM events").fetch_one(&self.pool).await?;
        Ok(oldest.map(Timestamp::from_micros))
    }

    async fn first_kept_version(&self, stream_id: &str) -> Result<i64, Error> {
        Ok(sqlx::query_scalar("SELECT coalesce(min(stream_version), 0) FROM events WHERE stream_id = $1")
            .bind(stream_id)
            .fetch_one(&self.pool)
            .await?)
    }
}

/// Saves the plan (or clears it, when empty) and extends the lease, if this instance holds it.
async fn save_plan(
    conn: &mut PgConnection,
    instance: &str,
    plan: &[ArchivePart],
    lease_until: Timestamp,
) -> Result<bool, Error> {
    let text = (!plan.is_empty()).then(|| serde_json::to_string(plan).unwrap_or_default());
    let saved = sqlx::query("UPDATE archive_lease SET plan = $1, lease_until = $2 WHERE id = 1 AND owner = $3")
        .bind(text)
        .bind(lease_until.as_micros())
        .bind(instance)
        .execute(&mut *conn)
        .await?;
    Ok(saved.rows_affected() == 1)
}

/// Deletes the deletable events among `seqs` (see [`ArchiveStore::delete_archived`]) and what hangs
/// off them, in the caller's transaction.
async fn delete_events(conn: &mut PgConnection, seqs: &[i64]) -> Result<u64, Error> {
    // The newest event stays: the next seq is counted from it.
    let gone: Vec<(i64, uuid::Uuid)> = sqlx::query_as(
        "DELETE FROM events WHERE status = 'archived' AND seq = ANY($1) \
         AND seq < (SELECT max(seq) FROM events) \
         AND (stream_id IS NULL OR (\
           stream_version < (SELECT max(s.stream_version) FROM events s WHERE s.stream_id = events.stream_id) \
           AND stream_version <= coalesce((SELECT max(p.version) FROM projection_snapshots p \
                                           WHERE p.stream_id = events.stream_id), 0))) \
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = events.seq \
                         AND d.state IN ('pending', 'in_flight')) \
         RETURNING seq, event_id",
    )
    .bind(seqs)
    .fetch_all(&mut *conn)
    .await?;
    if gone.is_empty() {
        return Ok(0);
    }
    let seqs: Vec<i64> = gone.iter().map(|(seq, _)| *seq).collect();
    let ids: Vec<uuid::Uuid> = gone.iter().map(|(_, id)| *id).collect();
    sqlx::query("DELETE FROM deliveries WHERE event_seq = ANY($1)").bind(&seqs).execute(&mut *conn).await?;
    sqlx::query("DELETE FROM processing_results WHERE event_seq = ANY($1)").bind(&seqs).execute(&mut *conn).await?;
    sqlx::query("DELETE FROM delivery_attempts WHERE event_id = ANY($1)").bind(&ids).execute(&mut *conn).await?;
    sqlx::query("DELETE FROM dead_letters WHERE event_id = ANY($1)").bind(&ids).execute(&mut *conn).await?;
    Ok(gone.len() as u64)
}
