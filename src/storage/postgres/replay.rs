//! Replay jobs in PostgreSQL: their rows (progress, plan and state, held by an instance with a
//! lease), how many of a replay's deliveries have finished, and taking over replays whose holder let
//! go or died.

use async_trait::async_trait;
use sqlx::Row;

use super::PostgresStore;
use crate::domain::{ReplayId, ReplayProgress, Timestamp};
use crate::storage::rows::{self, REPLAY_COLUMNS, replay_status_text};
use crate::storage::{Error, ReplayStore, StoredReplay};

#[async_trait]
impl ReplayStore for PostgresStore {
    async fn insert_replay(&self, job: &StoredReplay, lease_until: Timestamp) -> Result<(), Error> {
        let p = &job.progress;
        let sql = format!(
            "INSERT INTO replays ({REPLAY_COLUMNS}, plan, state, owner, lease_until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
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
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn save_replay(&self, p: &ReplayProgress, state: &str, lease_until: Timestamp) -> Result<bool, Error> {
        let saved = sqlx::query(
            "UPDATE replays SET status = $1, events_count = $2, total = $3, done = $4, failed = $5, error = $6, \
             finished_at = $7, state = $8, lease_until = $9 WHERE replay_id = $10 AND owner = $11",
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
        .execute(&self.pool)
        .await?;
        Ok(saved.rows_affected() == 1)
    }

    async fn replay(&self, id: ReplayId) -> Result<Option<ReplayProgress>, Error> {
        let sql = format!("SELECT {REPLAY_COLUMNS} FROM replays WHERE replay_id = $1");
        let row = sqlx::query(&sql).bind(id.0).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::replay).transpose()
    }

    async fn replay_deliveries_finished(&self, id: ReplayId) -> Result<(u64, u64), Error> {
        let (finished, dead): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state IN ('delivered', 'dead', 'cancelled')), \
             count(*) FILTER (WHERE state = 'dead') FROM deliveries WHERE replay_id = $1",
        )
        .bind(id.0)
        .fetch_one(&self.pool)
        .await?;
        Ok((finished as u64, dead as u64))
    }

    async fn claim_replay(&self, now: Timestamp, lease_until: Timestamp) -> Result<Option<StoredReplay>, Error> {
        let sql = format!(
            "UPDATE replays SET owner = $1, lease_until = $2 WHERE replay_id = \
             (SELECT replay_id FROM replays WHERE status = 'running' AND lease_until < $3 ORDER BY started_at \
              LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING {REPLAY_COLUMNS}, plan, state"
        );
        let row = sqlx::query(&sql)
            .bind(&self.instance_id)
            .bind(lease_until.as_micros())
            .bind(now.as_micros())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(StoredReplay {
            progress: rows::replay(&row)?,
            plan: row.try_get::<Option<String>, _>("plan")?.unwrap_or_default(),
            state: row.try_get::<Option<String>, _>("state")?.unwrap_or_default(),
        }))
    }

    async fn release_replays(&self) -> Result<u64, Error> {
        let released =
            sqlx::query("UPDATE replays SET owner = NULL, lease_until = 0 WHERE status = 'running' AND owner = $1")
                .bind(&self.instance_id)
                .execute(&self.pool)
                .await?;
        Ok(released.rows_affected())
    }
}
