//! The publication cursors on PostgreSQL: one row per publication log, claimed by one instance at a
//! time with a lease, so instances sharing the database publish each event once between them.

use async_trait::async_trait;

use super::PostgresStore;
use super::shared::insert_dead_letter;
use crate::domain::{DeadLetter, Timestamp};
use crate::storage::{Error, PublicationStore};

#[async_trait]
impl PublicationStore for PostgresStore {
    async fn claim_publication(
        &self,
        name: &str,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<i64>, Error> {
        sqlx::query(
            "INSERT INTO publications (name, seq, owner, lease_until) \
             SELECT $1, coalesce(max(seq), 0), NULL, 0 FROM events ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .execute(&self.pool)
        .await?;
        let seq = sqlx::query_scalar(
            "UPDATE publications SET owner = $1, lease_until = $2 \
             WHERE name = $3 AND (owner IS NULL OR owner = $1 OR lease_until < $4) RETURNING seq",
        )
        .bind(owner)
        .bind(lease_until.as_micros())
        .bind(name)
        .bind(now.as_micros())
        .fetch_optional(&self.pool)
        .await?;
        Ok(seq)
    }

    async fn advance_publication(&self, name: &str, owner: &str, seq: i64) -> Result<bool, Error> {
        let moved = sqlx::query("UPDATE publications SET seq = greatest(seq, $1) WHERE name = $2 AND owner = $3")
            .bind(seq)
            .bind(name)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(moved.rows_affected() == 1)
    }

    async fn release_publication(&self, name: &str, owner: &str) -> Result<(), Error> {
        sqlx::query("UPDATE publications SET owner = NULL, lease_until = 0 WHERE name = $1 AND owner = $2")
            .bind(name)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn add_dead_letter(&self, entry: &DeadLetter) -> Result<(), Error> {
        let mut conn = self.pool.acquire().await?;
        insert_dead_letter(&mut conn, entry).await
    }
}
