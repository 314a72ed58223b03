//! The publication cursors on SQLite: one row per publication log, claimed with a lease like the other
//! claims (only one process holds the file, but the rules are the same on every backend).

use async_trait::async_trait;

use super::SqliteStore;
use super::shared::insert_dead_letter;
use crate::domain::{DeadLetter, Timestamp};
use crate::storage::{Error, PublicationStore};

#[async_trait]
impl PublicationStore for SqliteStore {
    async fn claim_publication(
        &self,
        name: &str,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<i64>, Error> {
        let mut conn = self.writer.write().await?;
        // `WHERE true` keeps SQLite from reading ON CONFLICT as part of the SELECT.
        sqlx::query(
            "INSERT INTO publications (name, seq, owner, lease_until) \
             SELECT ?, coalesce(max(seq), 0), NULL, 0 FROM events WHERE true ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .execute(&mut *conn)
        .await?;
        let seq = sqlx::query_scalar(
            "UPDATE publications SET owner = ?, lease_until = ? \
             WHERE name = ? AND (owner IS NULL OR owner = ? OR lease_until < ?) RETURNING seq",
        )
        .bind(owner)
        .bind(lease_until.as_micros())
        .bind(name)
        .bind(owner)
        .bind(now.as_micros())
        .fetch_optional(&mut *conn)
        .await?;
        Ok(seq)
    }

    async fn advance_publication(&self, name: &str, owner: &str, seq: i64) -> Result<bool, Error> {
        let mut conn = self.writer.write().await?;
        let moved = sqlx::query("UPDATE publications SET seq = max(seq, ?) WHERE name = ? AND owner = ?")
            .bind(seq)
            .bind(name)
            .bind(owner)
            .execute(&mut *conn)
            .await?;
        Ok(moved.rows_affected() == 1)
    }

    async fn release_publication(&self, name: &str, owner: &str) -> Result<(), Error> {
        let mut conn = self.writer.write().await?;
        sqlx::query("UPDATE publications SET owner = NULL, lease_until = 0 WHERE name = ? AND owner = ?")
            .bind(name)
            .bind(owner)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    async fn add_dead_letter(&self, entry: &DeadLetter) -> Result<(), Error> {
        let mut conn = self.writer.write().await?;
        insert_dead_letter(&mut conn, entry).await
    }
}
