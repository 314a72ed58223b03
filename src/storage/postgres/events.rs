//! The event log in PostgreSQL: appending groups of events in commit order, reading one event, a
//! stream, the counters. History reads (`query`, `events_after`, `events_by_seq`) are in `query`.

use async_trait::async_trait;
use sqlx::{Acquire, PgConnection, Postgres, QueryBuilder};

use super::PostgresStore;
use super::query;
use super::shared::{ROWS_PER_INSERT, add_counts};
use crate::domain::{Counters, Event, EventFilter, EventId, EventPage, EventQuery, NameCount, NewEvent, Timestamp};
use crate::storage::group::{self, Known, Lookups};
use crate::storage::rows::{self, EVENT_COLUMNS, json_text};
use crate::storage::{Appended, Error, EventStore, StreamSummary};

#[async_trait]
impl EventStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    /// Seqs follow commit order across instances: groups are numbered while this instance holds the
    /// schema's append lock, and each commits after the one numbered before it (see [`super::sequencer`]).
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, Error> {
        let (numbered, appended, mut conn) = self.sequencer.number(events).await?;
        let created = group::created(&appended);
        let mut tx = conn.begin().await?;
        insert_columns(&created).execute(&mut *tx).await?;
        add_counts(&mut tx, group::counts(&created), self.append_shard(numbered.slot())).await?;
        numbered.earlier_ended().await;
        tx.commit().await?;
        // The group ends when `numbered` is dropped, after its commit: the next may commit.
        drop(numbered);
        Ok(appended)
    }

    fn appends_at_once(&self) -> usize {
        super::sequencer::AT_ONCE
    }

    async fn event(&self, id: EventId) -> Result<Option<Event>, Error> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1");
        let row = sqlx::query(&sql).bind(id.0).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::event).transpose()
    }

    async fn query(&self, query: &EventQuery) -> Result<EventPage, Error> {
        query::page(&self.pool, query).await
    }

    async fn events_after(&self, seq: i64, filter: &EventFilter, limit: u32) -> Result<Vec<Event>, Error> {
        query::events_after(&self.pool, seq, filter, limit).await
    }

    async fn events_by_seq(&self, seqs: &[i64]) -> Result<Vec<Event>, Error> {
        query::events_by_seq(&self.pool, seqs).await
    }

    async fn stream(&self, stream_id: &str, from_version: i64, limit: u32) -> Result<Vec<Event>, Error> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND stream_version >= $2 \
             ORDER BY stream_version LIMIT $3"
        );
        let rows =
            sqlx::query(&sql).bind(stream_id).bind(from_version).bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(rows::event).collect()
    }

    async fn streams(&self, prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<StreamSummary>, Error> {
        // A range on the (stream_id, stream_version) index, from the tighter of `prefix` and `after`
        // up to `prefix` followed by the highest character, grouped in index order.
        let (lower, strict) = match after.filter(|after| *after >= prefix) {
            Some(after) => (after, true),
            None => (prefix, false),
        };
        let sql = format!(
            "SELECT e.stream_id, e.stream_version, e.timestamp, e.event_type FROM (\
             SELECT stream_id, max(stream_version) AS version FROM events \
             WHERE stream_id {} $1 AND stream_id < $2 GROUP BY stream_id ORDER BY stream_id LIMIT $3) s \
             JOIN events e ON e.stream_id = s.stream_id AND e.stream_version = s.version ORDER BY e.stream_id",
            if strict { ">" } else { ">=" }
        );
        let rows = sqlx::query(&sql)
            .bind(lower)
            .bind(format!("{prefix}\u{10FFFF}"))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::stream_summary).collect()
    }

    async fn stream_version(&self, stream_id: &str) -> Result<i64, Error> {
        Ok(sqlx::query_scalar("SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1")
            .bind(stream_id)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn counters(&self) -> Result<Counters, Error> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT dimension, key, sum(count)::BIGINT FROM counters WHERE dimension <> 'user' GROUP BY dimension, key",
        )
        .fetch_all(&self.pool)
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
            "SELECT key, sum(count)::BIGINT AS total FROM counters WHERE dimension = 'user' \
             GROUP BY key ORDER BY total DESC, key LIMIT 10",
        )
        .fetch_all(&self.pool)
        .await?;
        counters.top_users = top.into_iter().map(|(name, count)| NameCount { name, count }).collect();
        counters.dlq_size = sqlx::query_scalar("SELECT count(*) FROM dead_letters").fetch_one(&self.pool).await?;
        counters.subscriptions_active =
            sqlx::query_scalar("SELECT count(*) FROM subscriptions WHERE enabled").fetch_one(&self.pool).await?;
        Ok(counters)
    }

    async fn last_seq(&self) -> Result<i64, Error> {
        Ok(sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events").fetch_one(&self.pool).await?)
    }

    async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// What the store already holds for a group's given ids, keys and streams, read under the append lock.
pub(super) async fn known(conn: &mut PgConnection, lookups: &Lookups) -> Result<Known, Error> {
    let mut known = Known::default();
    if !lookups.ids.is_empty() {
        let ids: Vec<uuid::Uuid> = lookups.ids.iter().map(|id| id.0).collect();
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ANY($1::uuid[])");
        for row in sqlx::query(&sql).bind(ids).fetch_all(&mut *conn).await? {
            let event = rows::event(&row)?;
            known.events_by_id.insert(event.event_id, event);
        }
    }
    if !lookups.keys.is_empty() {
        let (tenants, keys): (Vec<&str>, Vec<&str>) =
            lookups.keys.iter().map(|(tenant, key)| (tenant.as_str(), key.as_str())).unzip();
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE (coalesce(tenant_id, ''), idempotency_key) IN \
             (SELECT * FROM unnest($1::text[], $2::text[])) AND idempotency_key IS NOT NULL"
        );
        for row in sqlx::query(&sql).bind(tenants).bind(keys).fetch_all(&mut *conn).await? {
            let event = rows::event(&row)?;
            let key = (event.tenant_id.clone().unwrap_or_default(), event.idempotency_key.clone().unwrap_or_default());
            known.events_by_key.insert(key, event);
        }
    }
    if !lookups.streams.is_empty() {
        let versions: Vec<(String, i64)> = sqlx::query_as(
            "SELECT s.stream_id, v.version FROM unnest($1::text[]) AS s(stream_id) CROSS JOIN LATERAL \
             (SELECT stream_version AS version FROM events WHERE stream_id = s.stream_id \
              ORDER BY stream_version DESC LIMIT 1) v",
        )
        .bind(&lookups.streams)
        .fetch_all(&mut *conn)
        .await?;
        known.versions.extend(versions);
    }
    Ok(known)
}

impl PostgresStore {
    /// The baseline `eventdeck bench --scenario store` measures appends against: the same rows as one
    /// group, written by plain multi-row INSERTs in one transaction, with none of what `append` adds
    /// (the commit-order lock, idempotency and version checks, counters). The caller hands out the
    /// seqs: `first_seq..first_seq + events.len()` must be free.
    pub async fn insert_without_checks(&self, events: Vec<NewEvent>, first_seq: i64) -> Result<(), Error> {
        let appended = group::assign(events, Known::default(), first_seq, Timestamp::now());
        let created = group::created(&appended);
        let mut tx = self.pool.begin().await?;
        for chunk in created.chunks(ROWS_PER_INSERT) {
            insert_rows(chunk).build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// One INSERT of a whole group, a column an array: the statement is the same whatever the group's size
/// (prepared once, no bind list thousands long to build and parse), which makes it several times
/// cheaper than multi-row VALUES for large groups, and every microsecond here is spent holding the
/// append lock.
fn insert_columns<'a>(events: &[&'a Event]) -> sqlx::query::Query<'a, Postgres, sqlx::postgres::PgArguments> {
    fn column<'e, T>(events: &[&'e Event], f: impl Fn(&'e Event) -> T) -> Vec<T> {
        events.iter().map(|e| f(e)).collect()
    }
    sqlx::query(
        "INSERT INTO events (seq, event_id, event_type, event_source, event_category, user_id, tenant_id, \
         stream_id, stream_version, data, metadata, context, correlation_id, idempotency_key, status, \
         retry_count, error_message, timestamp, created_at, processed_at) \
         SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], \
         $7::text[], $8::text[], $9::bigint[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], \
         $15::text[], $16::bigint[], $17::text[], $18::bigint[], $19::bigint[], $20::bigint[])",
    )
    .bind(column(events, |e| e.seq))
    .bind(column(events, |e| e.event_id.0))
    .bind(column(events, |e| e.event_type.as_str()))
    .bind(column(events, |e| e.event_source.as_str()))
    .bind(column(events, |e| e.event_category.as_str()))
    .bind(column(events, |e| e.user_id.as_deref()))
    .bind(column(events, |e| e.tenant_id.as_deref()))
    .bind(column(events, |e| e.stream_id.as_deref()))
    .bind(column(events, |e| e.stream_version))
    .bind(column(events, |e| json_text(&e.data)))
    .bind(column(events, |e| json_text(&e.metadata)))
    .bind(column(events, |e| json_text(&e.context)))
    .bind(column(events, |e| e.correlation_id.as_deref()))
    .bind(column(events, |e| e.idempotency_key.as_deref()))
    .bind(column(events, |e| e.status.as_str()))
    .bind(column(events, |e| e.retry_count))
    .bind(column(events, |e| e.error_message.as_deref()))
    .bind(column(events, |e| e.timestamp.as_micros()))
    .bind(column(events, |e| e.created_at.as_micros()))
    .bind(column(events, |e| e.processed_at.map(Timestamp::as_micros)))
}

fn insert_rows<'a>(events: &[&'a Event]) -> QueryBuilder<'a, Postgres> {
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
