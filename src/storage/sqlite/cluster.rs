//! What SQLite knows of instances: the one process that holds the database records itself and the
//! changes it makes like any instance would, so `/api/v1/cluster` and the change log read the same on
//! every backend; nobody else is there to share them with.

use async_trait::async_trait;

use super::SqliteStore;
use crate::domain::Timestamp;
use crate::storage::rows;
use crate::storage::{Change, ClusterStore, Error, InstanceClaims, InstanceRecord};

#[async_trait]
impl ClusterStore for SqliteStore {
    fn exclusive(&self) -> bool {
        true
    }

    fn instance_id(&self) -> &str {
        &self.instance_id
    }

    async fn heartbeat(&self, record: &InstanceRecord) -> Result<(), Error> {
        let mut conn = self.writer.write().await?;
        sqlx::query(
            "INSERT INTO instances (instance_id, addr, version, started_at, last_seen) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (instance_id) DO UPDATE SET addr = excluded.addr, version = excluded.version, \
             started_at = excluded.started_at, \
             last_seen = excluded.last_seen",
        )
        .bind(&self.instance_id)
        .bind(&record.addr)
        .bind(&record.version)
        .bind(record.started_at.as_micros())
        .bind(record.last_seen.as_micros())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn leave(&self) -> Result<(), Error> {
        let mut conn = self.writer.write().await?;
        sqlx::query("DELETE FROM instances WHERE instance_id = ?").bind(&self.instance_id).execute(&mut *conn).await?;
        Ok(())
    }

    async fn instances(&self, since: Timestamp) -> Result<Vec<(InstanceRecord, InstanceClaims)>, Error> {
        let rows = sqlx::query(
            "SELECT i.instance_id, i.addr, i.version, i.started_at, i.last_seen, \
             (SELECT count(*) FROM deliveries WHERE state = 'in_flight' AND claimed_by = i.instance_id) AS deliveries, \
             (SELECT count(*) FROM events WHERE status = 'processing' AND claimed_by = i.instance_id) AS processing, \
             (SELECT count(*) FROM replays WHERE status = 'running' AND owner = i.instance_id) AS replays \
             FROM instances i WHERE i.last_seen >= ? ORDER BY i.started_at, i.instance_id",
        )
        .bind(since.as_micros())
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(rows::instance).collect()
    }

    async fn record_changes(&self, bodies: &[String]) -> Result<Vec<i64>, Error> {
        if bodies.is_empty() {
            return Ok(Vec::new());
        }
        let now = Timestamp::now().as_micros();
        let mut conn = self.writer.write().await?;
        let mut insert = sqlx::QueryBuilder::new("INSERT INTO changes (origin, body, created_at) ");
        insert.push_values(bodies, |mut row, body| {
            row.push_bind(&self.instance_id).push_bind(body).push_bind(now);
        });
        insert.push(" RETURNING id");
        let mut ids: Vec<i64> = insert.build_query_scalar().fetch_all(&mut *conn).await?;
        // Ids are drawn in the order of the VALUES rows; RETURNING promises no order.
        ids.sort_unstable();
        Ok(ids)
    }

    async fn changes_after(&self, id: i64, limit: u32) -> Result<Vec<Change>, Error> {
        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT id, origin, body FROM changes WHERE id > ? ORDER BY id LIMIT ?")
                .bind(id)
                .bind(i64::from(limit))
                .fetch_all(&self.readers)
                .await?;
        Ok(rows.into_iter().map(|(id, origin, body)| Change { id, origin, body }).collect())
    }

    async fn last_change(&self) -> Result<i64, Error> {
        Ok(sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM changes").fetch_one(&self.readers).await?)
    }

    async fn prune_changes(&self, before: Timestamp) -> Result<u64, Error> {
        let mut conn = self.writer.write().await?;
        let pruned = sqlx::query("DELETE FROM changes WHERE created_at < ?")
            .bind(before.as_micros())
            .execute(&mut *conn)
            .await?;
        Ok(pruned.rows_affected())
    }
}
