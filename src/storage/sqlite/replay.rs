//! Replay jobs in SQLite: their rows (progress, plan and state, held by an instance with a lease), how
//! many of a replay's deliveries have finished, and taking over replays whose holder let go.

use async_trait::async_trait;
use sqlx::Row;

use super::SqliteStore;
use crate::domain::{ReplayId, ReplayProgress, Timestamp};
use crate::storage::rows::{self, REPLAY_COLUMNS, replay_status_text};
use crate::storage::{Error, ReplayStore, StoredReplay};

#[async_trait]
impl ReplayStore for SqliteStore {
    async fn insert_replay(&self, job: &StoredReplay, lease_until: Timestamp) -> Result<(), Error> {
        let mut conn = self.writer.write().await?;
        let p = &job.progress;
        let sql = format!(
            "INSERT INTO replays ({REPLAY_COLUMNS}, plan, state, owner, lease_until) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        sqlx::query(&sql)
            .bind(p.replay_id.0)
            .bind(replay_status_text(p.status))
            .bind(p.events_count as i64)
            .bind(p.total as i64)
            .bind(p.done as i64)
            .bind(p.failed as i64)
            .bind(&p.error)
            .bind(p.started_at.as_micros())
            .bind(p.finished_at.map(Timestamp::as_micros))
            .bind(&job.plan)
            .bind(&job.state)
            .bind(&self.instance_id)
            .bind(lease_until.as_micros())
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    async fn save_replay(&self, p: &ReplayProgress, state: &str, lease_until: Timestamp) -> Result<bool, Error> {
        let mut conn = self.writer.write().await?;
        let saved = sqlx::query(
            "UPDATE replays SET status = ?, events_count = ?, total = ?, done = ?, failed = ?, error = ?, \
             finished_at = ?, state = ?, lease_until = ? WHERE replay_id = ? AND owner = ?",
        )
        .bind(replay_status_text(p.status))
        .bind(p.events_count as i64)
        .bind(p.total as i64)
        .bind(p.done as i64)
        .bind(p.failed as i64)
        .bind(&p.error)
        .bind(p.finished_at.map(Timestamp::as_micros))
        .bind(state)
        .bind(lease_until.as_micros())
        .bind(p.replay_id.0)
        .bind(&self.instance_id)
        .execute(&mut *conn)
        .await?;
        Ok(saved.rows_affected() == 1)
    }

    async fn replay(&self, id: ReplayId) -> Result<Option<ReplayProgress>, Error> {
        let sql = format!("SELECT {REPLAY_COLUMNS} FROM replays WHERE replay_id = ?");
        let row = sqlx::query(&sql).bind(id.0).fetch_optional(&self.readers).await?;
        row.as_ref().map(rows::replay).transpose()
    }

    async fn replay_deliveries_finished(&self, id: ReplayId) -> Result<(u64, u64), Error> {
        let (finished, dead): (i64, i64) = sqlx::query_as(
            "SELECT coalesce(sum(state IN ('delivered', 'dead', 'cancelled')), 0), coalesce(sum(state = 'dead'), 0) \
             FROM deliveries WHERE replay_id = ?",
        )
        .bind(id.0)
        .fetch_one(&self.readers)
        .await?;
        Ok((finished as u64, dead as u64))
    }

    async fn claim_replay(&self, now: Timestamp, lease_until: Timestamp) -> Result<Option<StoredReplay>, Error> {
        let mut conn = self.writer.write().await?;
        let sql = format!(
            "UPDATE replays SET owner = ?, lease_until = ? WHERE replay_id = \
             (SELECT replay_id FROM replays WHERE status = 'running' AND lease_until < ? ORDER BY started_at LIMIT 1) \
             RETURNING {REPLAY_COLUMNS}, plan, state"
        );
        let row = sqlx::query(&sql)
            .bind(&self.instance_id)
            .bind(lease_until.as_micros())
            .bind(now.as_micros())
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(StoredReplay {
            progress: rows::replay(&row)?,
            plan: row.try_get::<Option<String>, _>("plan")?.unwrap_or_default(),
            state: row.try_get::<Option<String>, _>("state")?.unwrap_or_default(),
        }))
    }

    async fn release_replays(&self) -> Result<u64, Error> {
        // This process holds the database alone: every running replay is this instance's or a
        // predecessor's.
        let mut conn = self.writer.write().await?;
        let released = sqlx::query("UPDATE replays SET owner = NULL, lease_until = 0 WHERE status = 'running'")
            .execute(&mut *conn)
            .await?;
        Ok(released.rows_affected())
    }
}
