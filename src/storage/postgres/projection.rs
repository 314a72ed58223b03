//! The PostgreSQL projection tables: each stream's cached latest fold and its snapshots, and the
//! narrow reads of a stream's events that folding needs.

use async_trait::async_trait;
use sqlx::Acquire;

use super::PostgresStore;
use crate::domain::Timestamp;
use crate::storage::rows::{self, SNAPSHOT_COLUMNS};
use crate::storage::{CachedProjection, Error, ProjectionSnapshot, ProjectionStore, StreamChange, VersionRange};

#[async_trait]
impl ProjectionStore for PostgresStore {
    async fn cached_projection(&self, stream_id: &str) -> Result<Option<CachedProjection>, Error> {
        let row = sqlx::query(
            "SELECT stream_id, state, version, last_event_id, updated_at, max_timestamp, snapshot_version, \
             tail_min_timestamp FROM projections WHERE stream_id = $1",
        )
        .bind(stream_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rows::cached_projection).transpose()
    }

    async fn stale_projections(&self, stream_ids: &[String]) -> Result<Vec<String>, Error> {
        if stream_ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(
            "SELECT s.id FROM (SELECT DISTINCT unnest($1::text[]) AS id) s \
             LEFT JOIN projections p ON p.stream_id = s.id \
             WHERE coalesce(p.version, 0) < \
                 (SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = s.id) \
             ORDER BY s.id",
        )
        .bind(stream_ids)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn snapshot_at_version(&self, stream_id: &str, version: i64) -> Result<Option<ProjectionSnapshot>, Error> {
        let sql = format!(
            "SELECT {SNAPSHOT_COLUMNS} FROM projection_snapshots WHERE stream_id = $1 AND version <= $2 \
             ORDER BY version DESC LIMIT 1"
        );
        let row = sqlx::query(&sql).bind(stream_id).bind(version).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::snapshot).transpose()
    }

    async fn snapshot_at_time(&self, stream_id: &str, time: Timestamp) -> Result<Option<ProjectionSnapshot>, Error> {
        let sql = format!(
            "SELECT {SNAPSHOT_COLUMNS} FROM projection_snapshots WHERE stream_id = $1 AND max_timestamp <= $2 \
             ORDER BY max_timestamp DESC, version DESC LIMIT 1"
        );
        let row = sqlx::query(&sql).bind(stream_id).bind(time.as_micros()).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::snapshot).transpose()
    }

    async fn ranges_at_time(&self, stream_id: &str, after: i64, time: Timestamp) -> Result<Vec<VersionRange>, Error> {
        let covered: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT from_version, version FROM projection_snapshots \
             WHERE stream_id = $1 AND version > $2 AND min_timestamp <= $3 ORDER BY version",
        )
        .bind(stream_id)
        .bind(after)
        .bind(time.as_micros())
        .fetch_all(&self.pool)
        .await?;
        let newest: i64 =
            sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM projection_snapshots WHERE stream_id = $1")
                .bind(stream_id)
                .fetch_one(&self.pool)
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
        let rows = sqlx::query(
            "SELECT stream_version, event_id, event_type, data, timestamp FROM events \
             WHERE stream_id = $1 AND stream_version > $2 AND stream_version <= $3 AND timestamp <= $4 \
             ORDER BY stream_version LIMIT $5",
        )
        .bind(stream_id)
        .bind(range.after)
        .bind(range.until.unwrap_or(i64::MAX))
        .bind(time.map_or(i64::MAX, Timestamp::as_micros))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
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
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        for snapshot in &snapshots {
            let fold = &snapshot.fold;
            sqlx::query(&format!(
                "INSERT INTO projection_snapshots ({SNAPSHOT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
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
        // In stream order, so two instances saving the same streams never wait for each other in a circle.
        let mut cached = cached;
        cached.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
        for projection in &cached {
            let fold = &projection.fold;
            sqlx::query(
                "INSERT INTO projections (stream_id, state, version, last_event_id, updated_at, max_timestamp, \
                     snapshot_version, tail_min_timestamp) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
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
