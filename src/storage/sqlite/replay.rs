//! Replay jobs in SQLite: their progress rows, how many of a replay's deliveries have finished, and
//! failing the jobs a stop interrupted. Writes go through the store's one writer connection.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::shared::corrupt;
use crate::domain::{ReplayId, ReplayProgress, ReplayStatus, Timestamp};
use crate::storage::{Error, ReplayStore};

const REPLAY_COLUMNS: &str = "replay_id, status, events_count, total, done, failed, error, started_at, finished_at";

#[async_trait]
impl ReplayStore for SqliteStore {
    async fn save_replay(&self, p: &ReplayProgress) -> Result<(), Error> {
        let mut conn = self.writer.write().await?;
        let sql = format!("INSERT OR REPLACE INTO replays ({REPLAY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
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
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    async fn replay(&self, id: ReplayId) -> Result<Option<ReplayProgress>, Error> {
        let sql = format!("SELECT {REPLAY_COLUMNS} FROM replays WHERE replay_id = ?");
        let row = sqlx::query(&sql).bind(id.0).fetch_optional(&self.readers).await?;
        row.as_ref().map(decode_replay).transpose()
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

    async fn fail_running_replays(&self, reason: &str) -> Result<u64, Error> {
        let mut conn = self.writer.write().await?;
        let failed =
            sqlx::query("UPDATE replays SET status = 'failed', error = ?, finished_at = ? WHERE status = 'running'")
                .bind(reason)
                .bind(Timestamp::now().as_micros())
                .execute(&mut *conn)
                .await?;
        Ok(failed.rows_affected())
    }
}

fn replay_status_text(status: ReplayStatus) -> &'static str {
    match status {
        ReplayStatus::DryRun => "dry_run",
        ReplayStatus::Running => "running",
        ReplayStatus::Completed => "completed",
        ReplayStatus::Failed => "failed",
    }
}

fn decode_replay(row: &SqliteRow) -> Result<ReplayProgress, Error> {
    let status = match row.try_get::<&str, _>("status")? {
        "running" => ReplayStatus::Running,
        "completed" => ReplayStatus::Completed,
        "failed" => ReplayStatus::Failed,
        "dry_run" => ReplayStatus::DryRun,
        other => return Err(corrupt("status", format!("unknown replay status `{other}`"))),
    };
    let count = |column: &str| row.try_get::<i64, _>(column).map(|n| n.max(0) as u64);
    Ok(ReplayProgress {
        replay_id: ReplayId(row.try_get("replay_id")?),
        status,
        events_count: count("events_count")?,
        total: count("total")?,
        done: count("done")?,
        failed: count("failed")?,
        started_at: Timestamp::from_micros(row.try_get("started_at")?),
        finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(Timestamp::from_micros),
        error: row.try_get("error")?,
    })
}
