//! The SQLite projection tables: each stream's cached latest fold and its snapshots, and the narrow
//! reads of a stream's events that folding needs. Writes go through the store's one writer connection.

use async_trait::async_trait;
use sqlx::Connection;

use super::SqliteStore;
use crate::domain::Timestamp;
use crate::storage::rows::{self, SNAPSHOT_COLUMNS};
use crate::storage::{CachedProjection, Error, ProjectionSnapshot, ProjectionStore, StreamChange, VersionRange};

#[async_trait]
impl ProjectionStore for SqliteStore {
    async fn cached_projection(&self, stream_id: &str) -> Result<Option<CachedProjection>, Error> {
        let row = sqlx::query(
            "SELECT stream_id, state, version, last_event_id, updated_at, max_timestamp, snapshot_version, \
             tail_min_timestamp FROM projections WHERE stream_id = ?",
        )
        .bind(stream_id)
        .fetch_optional(&self.readers)
        .await?;
        row.as_ref().map(rows::cached_projection).transpose()
    }

    async fn stale_projections(&self, stream_ids: &[String]) -> Result<Vec<String>, Error> {
        if stream_ids.is_empty() {
            return Ok(Vec::new());
        }
        // The ids travel as one JSON array, so any number of them needs one bound value.
        let ids = serde_json::to_string(stream_ids).map_err(|e| Error::Corrupt(e.to_string()))?;
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT s.value \
             FROM (SELECT DISTINCT value FROM json_each(?) WHERE type = 'text') AS s \
             LEFT JOIN projections AS p ON p.stream_id = s.value \
             WHERE coalesce(p.version, 0) < \
                 (SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = s.value) \
             ORDER BY s.value",
        )
        .bind(ids)
        .fetch_all(&self.readers)
        .await?;
        Ok(stale)
    }

    async fn snapshot_at_version(&self, stream_id: &str, version: i64) -> Result<Option<ProjectionSnapshot>, Error> {
        let sql = format!(
            "SELECT {SNAPSHOT_COLUMNS} FROM projection_snapshots WHERE stream_id = ? AND version <= ? \
             ORDER BY version DESC LIMIT 1"
        );
        let row = sqlx::query(&sql).bind(stream_id).bind(version).fetch_optional(&self.readers).await?;
        row.as_ref().map(rows::snapshot).transpose()
    }

    async fn snapshot_at_time(&self, stream_id: &str, time: Timestamp) -> Result<Option<ProjectionSnapshot>, Error> {
        let sql = format!(
            "SELECT {SNAPSHOT_COLUMNS} FROM projection_snapshots WHERE stream_id = ? AND max_timestamp <= ? \
             ORDER BY max_timestamp DESC, version DESC LIMIT 1"
        );
        let row = sqlx::query(&sql).bind(stream_id).bind(time.as_micros()).fetch_optional(&self.readers).await?;
        row.as_ref().map(rows::snapshot).transpose()
    }

    async fn ranges_at_time(&self, stream_id: &str, after: i64, time: Timestamp) -> Result<Vec<VersionRange>, Error> {
        let covered: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT from_version, version FROM projection_snapshots \
             WHERE stream_id = ? AND version > ? AND min_timestamp <= ? ORDER BY version",
        )
        .bind(stream_id)
        .bind(after)
        .bind(time.as_micros())
        .fetch_all(&self.readers)
        .await?;
        let newest: i64 =
            sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM projection_snapshots WHERE stream_id = ?")
                .bind(stream_id)
                .fetch_one(&self.readers)
                .await?;
        Ok(VersionRange::stretches(after, &covered, newest))
    }

    async fn stream_changes(
        &self,
        stream_id: &str,
        range: VersionRange,
        time: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<StreamChange>, Error> {
        // Real bounds (not `? IS NULL OR …`) so both ends of the version range come from the index.
        let rows = sqlx::query(
            "SELECT stream_version, event_id, event_type, data, timestamp FROM events \
             WHERE stream_id = ? AND stream_version > ? AND stream_version <= ? AND timestamp <= ? \
             ORDER BY stream_version LIMIT ?",
        )
        .bind(stream_id)
        .bind(range.after)
        .bind(range.until.unwrap_or(i64::MAX))
        .bind(time.map_or(i64::MAX, Timestamp::as_micros))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(rows::stream_change).collect()
    }

    async fn save_projections(
        &self,
        cached: Vec<CachedProjection>,
        snapshots: Vec<ProjectionSnapshot>,
    ) -> Result<(), Error> {
        if cached.is_empty() && snapshots.is_empty() {
            return Ok(());
        }
        let mut conn = self.writer.write().await?;
        let mut tx = conn.begin().await?;
        for snapshot in &snapshots {
            let fold = &snapshot.fold;
            sqlx::query(&format!(
                "INSERT INTO projection_snapshots ({SNAPSHOT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (stream_id, version) DO NOTHING"
            ))
            .bind(&snapshot.stream_id)
            .bind(fold.version)
            .bind(snapshot.from_version)
            .bind(fold.state.to_string())
            .bind(fold.last_event_id.0)
            .bind(fold.updated_at.as_micros())
            .bind(fold.max_timestamp.as_micros())
            .bind(snapshot.min_timestamp.as_micros())
            .execute(&mut *tx)
            .await?;
        }
        for projection in &cached {
            let fold = &projection.fold;
            sqlx::query(
                "INSERT INTO projections (stream_id, state, version, last_event_id, updated_at, max_timestamp, \
                     snapshot_version, tail_min_timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (stream_id) DO UPDATE SET state = excluded.state, version = excluded.version, \
                     last_event_id = excluded.last_event_id, updated_at = excluded.updated_at, \
                     max_timestamp = excluded.max_timestamp, snapshot_version = excluded.snapshot_version, \
                     tail_min_timestamp = excluded.tail_min_timestamp \
                 WHERE excluded.version > projections.version",
            )
            .bind(&projection.stream_id)
            .bind(fold.state.to_string())
            .bind(fold.version)
            .bind(fold.last_event_id.0)
            .bind(fold.updated_at.as_micros())
            .bind(fold.max_timestamp.as_micros())
            .bind(projection.snapshot_version)
            .bind(projection.tail_min_timestamp.map(Timestamp::as_micros))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
