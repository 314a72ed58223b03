//! What instances sharing a PostgreSQL database know of each other: their heartbeats, the claims each
//! holds, and the change log they tell each other through (ids in commit order, like seqs).

use async_trait::async_trait;
use sqlx::Acquire;

use super::PostgresStore;
use super::shared::Serial;
use crate::domain::Timestamp;
use crate::storage::rows;
use crate::storage::{Change, ClusterStore, Error, InstanceClaims, InstanceRecord};

#[async_trait]
impl ClusterStore for PostgresStore {
    fn exclusive(&self) -> bool {
        false
    }

    fn instance_id(&self) -> &str {
        &self.instance_id
    }

    async fn heartbeat(&self, record: &InstanceRecord) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO instances (instance_id, addr, version, started_at, last_seen) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (instance_id) DO UPDATE SET addr = excluded.addr, version = excluded.version, \
             started_at = excluded.started_at, \
             last_seen = excluded.last_seen",
        )
        .bind(&self.instance_id)
        .bind(&record.addr)
        .bind(&record.version)
        .bind(record.started_at.as_micros())
        .bind(record.last_seen.as_micros())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn leave(&self) -> Result<(), Error> {
        sqlx::query("DELETE FROM instances WHERE instance_id = $1").bind(&self.instance_id).execute(&self.pool).await?;
        Ok(())
    }

    async fn instances(&self, since: Timestamp) -> Result<Vec<(InstanceRecord, InstanceClaims)>, Error> {
        let rows = sqlx::query(
            "SELECT i.instance_id, i.addr, i.version, i.started_at, i.last_seen, \
             (SELECT count(*) FROM deliveries WHERE state = 'in_flight' AND claimed_by = i.instance_id) AS deliveries, \
             (SELECT count(*) FROM events WHERE status = 'processing' AND claimed_by = i.instance_id) AS processing, \
             (SELECT count(*) FROM replays WHERE status = 'running' AND owner = i.instance_id) AS replays \
             FROM instances i WHERE i.last_seen >= $1 ORDER BY i.started_at, i.instance_id",
        )
        .bind(since.as_micros())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::instance).collect()
    }

    async fn record_changes(&self, bodies: &[String]) -> Result<Vec<i64>, Error> {
        if bodies.is_empty() {
            return Ok(Vec::new());
        }
        let now = Timestamp::now().as_micros();
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        self.serialise(&mut tx, Serial::Change).await?;
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO changes (origin, body, created_at) \
             SELECT $1, b.body, $2 FROM unnest($3::text[]) WITH ORDINALITY AS b(body, n) ORDER BY b.n RETURNING id",
        )
        .bind(&self.instance_id)
        .bind(now)
        .bind(bodies)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        // Ids are drawn in the order the rows are inserted (ORDER BY b.n); RETURNING promises no order.
        ids.sort_unstable();
        Ok(ids)
    }

    async fn changes_after(&self, id: i64, limit: u32) -> Result<Vec<Change>, Error> {
        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT id, origin, body FROM changes WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(id)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(id, origin, body)| Change { id, origin, body }).collect())
    }

    async fn last_change(&self) -> Result<i64, Error> {
        Ok(sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM changes").fetch_one(&self.pool).await?)
    }

    async fn prune_changes(&self, before: Timestamp) -> Result<u64, Error> {
        let pruned = sqlx::query("DELETE FROM changes WHERE created_at < $1")
            .bind(before.as_micros())
            .execute(&self.pool)
            .await?;
        Ok(pruned.rows_affected())
    }
}
