//! The event log in SQLite: appending groups of events (idempotency keys and stream versions checked
//! inside the transaction, counters updated in it), reading one event, a stream, the counters. History
//! reads (`query`, `events_after`, `events_by_seq`) are in `query`.

use async_trait::async_trait;
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection};

use super::SqliteStore;
use super::query;
use super::shared::ROWS_PER_INSERT;
use crate::domain::{Counters, Event, EventFilter, EventId, EventPage, EventQuery, NameCount, NewEvent, Timestamp};
use crate::storage::group::{self, Known, Lookups};
use crate::storage::rows::{self, EVENT_COLUMNS, json_text};
use crate::storage::{Appended, Error, EventStore, StreamSummary};

#[async_trait]
impl EventStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, Error> {
        let mut writer = self.writer.append().await?;
        let writer = &mut *writer;
        let mut tx = writer.conn.begin().await?;
        let known = known(&mut tx, &Lookups::of(&events)).await?;
        let appended = group::assign(events, known, writer.next_seq, Timestamp::now());
        let created = group::created(&appended);
        for chunk in created.chunks(ROWS_PER_INSERT) {
            insert_rows(chunk).build().execute(&mut *tx).await?;
        }
        if !created.is_empty() {
            count_rows(&created).build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        writer.next_seq += created.len() as i64;
        Ok(appended)
    }

    async fn event(&self, id: EventId) -> Result<Option<Event>, Error> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?");
        let row = sqlx::query(&sql).bind(id.0).fetch_optional(&self.readers).await?;
        row.as_ref().map(rows::event).transpose()
    }

    async fn query(&self, query: &EventQuery) -> Result<EventPage, Error> {
        query::page(&self.readers, query).await
    }

    async fn events_after(&self, seq: i64, filter: &EventFilter, limit: u32) -> Result<Vec<Event>, Error> {
        query::events_after(&self.readers, seq, filter, limit).await
    }

    async fn events_by_seq(&self, seqs: &[i64]) -> Result<Vec<Event>, Error> {
        query::events_by_seq(&self.readers, seqs).await
    }

    async fn stream(&self, stream_id: &str, from_version: i64, limit: u32) -> Result<Vec<Event>, Error> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ? AND stream_version >= ? \
             ORDER BY stream_version LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(stream_id)
            .bind(from_version)
            .bind(i64::from(limit))
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(rows::event).collect()
    }

    async fn streams(&self, prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<StreamSummary>, Error> {
        // A range on the (stream_id, stream_version) index: ids from `prefix` up to `prefix` followed
        // by the highest character, grouped in index order, so LIMIT stops the scan early.
        let upper = format!("{prefix}\u{10FFFF}");
        let mut sql = QueryBuilder::<Sqlite>::new(
            "SELECT e.stream_id, e.stream_version, e.timestamp, e.event_type FROM (\
             SELECT stream_id, max(stream_version) AS version FROM events WHERE ",
        );
        // One lower bound, the tighter one, so the planner starts the range scan there.
        match after.filter(|after| *after >= prefix) {
            Some(after) => sql.push("stream_id > ").push_bind(after),
            None => sql.push("stream_id >= ").push_bind(prefix),
        };
        sql.push(" AND stream_id < ").push_bind(upper);
        sql.push(" GROUP BY stream_id ORDER BY stream_id LIMIT ").push_bind(i64::from(limit)).push(
            ") s JOIN events e ON e.stream_id = s.stream_id AND e.stream_version = s.version ORDER BY e.stream_id",
        );
        sql.build().fetch_all(&self.readers).await?.iter().map(rows::stream_summary).collect()
    }

    async fn stream_version(&self, stream_id: &str) -> Result<i64, Error> {
        Ok(sqlx::query_scalar("SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = ?")
            .bind(stream_id)
            .fetch_one(&self.readers)
            .await?)
    }

    async fn counters(&self) -> Result<Counters, Error> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT dimension, key, count FROM counters WHERE dimension <> 'user'")
                .fetch_all(&self.readers)
                .await?;
        let mut counters = Counters::default();
        for (dimension, key, count) in rows {
            let map = match dimension.as_str() {
                "type" => &mut counters.by_type,
                "source" => &mut counters.by_source,
                "category" => &mut counters.by_category,
                "status" => &mut counters.by_status,
                "day" => &mut counters.by_day,
                "delivery" => &mut counters.by_delivery,
                _ => continue,
            };
            map.insert(key, count);
        }
        let top: Vec<(String, i64)> = sqlx::query_as(
            "SELECT key, count FROM counters WHERE dimension = 'user' ORDER BY count DESC, key LIMIT 10",
        )
        .fetch_all(&self.readers)
        .await?;
        counters.top_users = top.into_iter().map(|(name, count)| NameCount { name, count }).collect();
        counters.dlq_size = sqlx::query_scalar("SELECT count(*) FROM dead_letters").fetch_one(&self.readers).await?;
        counters.subscriptions_active =
            sqlx::query_scalar("SELECT count(*) FROM subscriptions WHERE enabled = 1").fetch_one(&self.readers).await?;
        Ok(counters)
    }

    async fn last_seq(&self) -> Result<i64, Error> {
        Ok(sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events").fetch_one(&self.readers).await?)
    }

    async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    async fn close(&self) {
        self.close_connections().await;
    }
}

fn insert_rows<'a>(events: &[&'a Event]) -> QueryBuilder<'a, Sqlite> {
    let mut insert = QueryBuilder::new(format!("INSERT INTO events ({EVENT_COLUMNS}) "));
    insert.push_values(events, |mut row, event| {
        row.push_bind(event.seq)
            .push_bind(event.event_id.0)
            .push_bind(event.event_type.as_str())
            .push_bind(event.event_source.as_str())
            .push_bind(event.event_category.as_str())
            .push_bind(event.user_id.as_deref())
            .push_bind(event.tenant_id.as_deref())
            .push_bind(event.stream_id.as_deref())
            .push_bind(event.stream_version)
            .push_bind(json_text(&event.data))
            .push_bind(json_text(&event.metadata))
            .push_bind(json_text(&event.context))
            .push_bind(event.correlation_id.as_deref())
            .push_bind(event.idempotency_key.as_deref())
            .push_bind(event.status.as_str())
            .push_bind(event.retry_count)
            .push_bind(event.error_message.as_deref())
            .push_bind(event.timestamp.as_micros())
            .push_bind(event.created_at.as_micros())
            .push_bind(event.processed_at.map(Timestamp::as_micros));
    });
    insert
}

/// Adds this group's events to the statistics counters, one upsert for the whole group.
fn count_rows(events: &[&Event]) -> QueryBuilder<'static, Sqlite> {
    let mut upsert = QueryBuilder::new("INSERT INTO counters (dimension, key, count) ");
    upsert.push_values(group::counts(events), |mut row, (dimension, key, count)| {
        row.push_bind(dimension).push_bind(key).push_bind(count);
    });
    upsert.push(" ON CONFLICT (dimension, key) DO UPDATE SET count = count + excluded.count");
    upsert
}

/// What the store already holds for a group's given ids, keys and streams: a lookup each, cheap in
/// process.
async fn known(conn: &mut SqliteConnection, lookups: &Lookups) -> Result<Known, Error> {
    let mut known = Known::default();
    if !lookups.ids.is_empty() {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?");
        for id in &lookups.ids {
            if let Some(row) = sqlx::query(&sql).bind(id.0).fetch_optional(&mut *conn).await? {
                known.events_by_id.insert(*id, rows::event(&row)?);
            }
        }
    }
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE coalesce(tenant_id, '') = ? AND idempotency_key = ?");
    for key in &lookups.keys {
        if let Some(row) = sqlx::query(&sql).bind(&key.0).bind(&key.1).fetch_optional(&mut *conn).await? {
            known.events_by_key.insert(key.clone(), rows::event(&row)?);
        }
    }
    for stream_id in &lookups.streams {
        let version: i64 =
            sqlx::query_scalar("SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = ?")
                .bind(stream_id)
                .fetch_one(&mut *conn)
                .await?;
        known.versions.insert(stream_id.clone(), version);
    }
    Ok(known)
}
