//! The SQLite store: one writer connection (WAL, synchronous per config) behind a lock, a small pool of
//! read-only connections, multi-row inserts, and counters updated in the same transaction as the events.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqliteConnection};
use tokio::sync::Mutex;

mod delivery;
mod processing;
mod projection;

use super::{Appended, Error, EventStore, SyncMode};
use crate::domain::filter::Segment;
use crate::domain::{
    Counters, Event, EventCategory, EventFilter, EventId, EventPage, EventQuery, EventSource, EventStatus, NameCount,
    NewEvent, Order, Timestamp,
};

const COLUMNS: &str = "seq, event_id, event_type, event_source, event_category, user_id, tenant_id, stream_id, \
    stream_version, data, metadata, context, correlation_id, idempotency_key, status, retry_count, error_message, \
    timestamp, created_at, processed_at";

/// Rows per INSERT statement: 20 columns each keeps the bound values (10,000) under SQLite's 32,766.
const ROWS_PER_INSERT: usize = 500;

const READERS: u32 = 4;

pub struct SqliteStore {
    writer: Mutex<Writer>,
    readers: SqlitePool,
}

struct Writer {
    /// `None` once closed.
    conn: Option<SqliteConnection>,
    next_seq: i64,
}

impl SqliteStore {
    pub async fn open(path: &Path, sync: SyncMode) -> Result<Self, Error> {
        let open_error = |reason: String| Error::Open { path: path.to_owned(), reason };
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| open_error(format!("cannot create the folder {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match sync {
                SyncMode::Full => SqliteSynchronous::Full,
                SyncMode::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(5))
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-32768");

        let mut conn = SqliteConnection::connect_with(&options).await.map_err(|e| open_error(e.to_string()))?;
        sqlx::migrate!("./migrations/sqlite").run(&mut conn).await?;
        let last: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events").fetch_one(&mut conn).await?;

        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options.read_only(true).pragma("cache_size", "-16384"))
            .await
            .map_err(|e| open_error(e.to_string()))?;
        Ok(Self { writer: Mutex::new(Writer { conn: Some(conn), next_seq: last + 1 }), readers })
    }

    /// How the filter's type pattern becomes SQL; `None` when no stored type can match.
    ///
    /// A wildcard pattern is expanded into the stored types it matches (the counters know every type,
    /// updated in the same transaction as the events): SQLite then walks one (type, timestamp) index
    /// range per type, bounded by the time window, instead of every entry of a prefix range.
    async fn type_condition(&self, filter: &EventFilter) -> Result<Option<TypeCondition>, Error> {
        let Some(pattern) = filter.event_type.as_ref().filter(|p| !p.matches_all()) else {
            return Ok(Some(TypeCondition::Any));
        };
        if let Some(exact) = pattern.exact() {
            return Ok(Some(TypeCondition::OneOf(vec![exact.to_owned()])));
        }
        let known: Vec<String> =
            sqlx::query_scalar("SELECT key FROM counters WHERE dimension = 'type'").fetch_all(&self.readers).await?;
        let matching: Vec<String> = known.into_iter().filter(|t| pattern.matches(t)).collect();
        Ok(match matching.len() {
            0 => None,
            n if n <= MAX_EXPANDED_TYPES => Some(TypeCondition::OneOf(matching)),
            _ => Some(TypeCondition::Pattern(pattern.clone())),
        })
    }
}

/// Most types a pattern is expanded into before the query falls back to matching it in SQL.
const MAX_EXPANDED_TYPES: usize = 256;

/// The event-type part of a query.
enum TypeCondition {
    Any,
    OneOf(Vec<String>),
    Pattern(crate::domain::TypePattern),
}

#[async_trait]
impl EventStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, Error> {
        let mut writer = self.writer.lock().await;
        let Writer { conn, next_seq } = &mut *writer;
        let conn = conn.as_mut().ok_or_else(closed)?;
        let mut tx = conn.begin().await?;

        let created_at = Timestamp::now();
        let mut seq = *next_seq;
        let mut out: Vec<Appended> = Vec::with_capacity(events.len());
        // Keys and stream versions claimed earlier in this group, which the database cannot see yet.
        let mut claimed_keys: HashMap<(String, String), usize> = HashMap::new();
        let mut versions: HashMap<String, i64> = HashMap::new();

        for new in events {
            let key = new.idempotency_key.as_ref().map(|k| (new.tenant_id.clone().unwrap_or_default(), k.clone()));
            if let Some(key) = &key {
                if let Some(earlier) = claimed_keys.get(key).and_then(|&i| out[i].event()) {
                    out.push(Appended::Duplicate(earlier.clone()));
                    continue;
                }
                let sql =
                    format!("SELECT {COLUMNS} FROM events WHERE coalesce(tenant_id, '') = ? AND idempotency_key = ?");
                if let Some(row) = sqlx::query(&sql).bind(&key.0).bind(&key.1).fetch_optional(&mut *tx).await? {
                    out.push(Appended::Duplicate(decode(&row)?));
                    continue;
                }
            }
            let stream_version = match &new.stream_id {
                None => None,
                Some(stream_id) => {
                    let current = match versions.get(stream_id) {
                        Some(&version) => version,
                        None => {
                            sqlx::query_scalar(
                                "SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = ?",
                            )
                            .bind(stream_id)
                            .fetch_one(&mut *tx)
                            .await?
                        }
                    };
                    if let Some(expected) = new.expected_version.filter(|&expected| expected != current) {
                        out.push(Appended::VersionConflict { stream_id: stream_id.clone(), expected, actual: current });
                        continue;
                    }
                    versions.insert(stream_id.clone(), current + 1);
                    Some(current + 1)
                }
            };
            if let Some(key) = key {
                claimed_keys.insert(key, out.len());
            }
            let (status, processed_at) = match new.skip_processing {
                true => (EventStatus::Processed, Some(created_at)),
                false => (EventStatus::Pending, None),
            };
            out.push(Appended::Created(Event {
                event_id: EventId::new_v7(),
                seq,
                event_type: new.event_type,
                event_source: new.event_source,
                event_category: new.event_category,
                user_id: new.user_id,
                tenant_id: new.tenant_id,
                stream_id: new.stream_id,
                stream_version,
                data: new.data,
                metadata: new.metadata,
                context: new.context,
                correlation_id: new.correlation_id,
                idempotency_key: new.idempotency_key,
                status,
                retry_count: 0,
                error_message: None,
                timestamp: new.timestamp,
                created_at,
                processed_at,
            }));
            seq += 1;
        }

        let created: Vec<&Event> =
            out.iter().filter_map(|a| if let Appended::Created(e) = a { Some(e) } else { None }).collect();
        for chunk in created.chunks(ROWS_PER_INSERT) {
            insert_rows(chunk).build().execute(&mut *tx).await?;
        }
        if !created.is_empty() {
            count_rows(&created).build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        *next_seq = seq;
        Ok(out)
    }

    async fn event(&self, id: EventId) -> Result<Option<Event>, Error> {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE event_id = ?");
        let row = sqlx::query(&sql).bind(id.0).fetch_optional(&self.readers).await?;
        row.as_ref().map(decode).transpose()
    }

    async fn query(&self, query: &EventQuery) -> Result<EventPage, Error> {
        let Some(types) = self.type_condition(&query.filter).await? else {
            return Ok(EventPage { events: Vec::new(), total: 0 });
        };
        let direction = match query.order {
            Order::Desc => "DESC",
            Order::Asc => "ASC",
        };
        // Two phases: the page's seqs from the indexes alone, then just those rows.
        let mut select =
            QueryBuilder::new(format!("SELECT {COLUMNS} FROM events WHERE seq IN (SELECT seq FROM events WHERE 1 = 1"));
        push_filter(&mut select, &query.filter, &types);
        select
            .push(format!(" ORDER BY timestamp {direction}, seq {direction} LIMIT "))
            .push_bind(i64::from(query.limit))
            .push(" OFFSET ")
            .push_bind(sql_offset(query.offset))
            .push(format!(") ORDER BY timestamp {direction}, seq {direction}"));
        let rows = select.build().fetch_all(&self.readers).await?;
        let events = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;

        // A first page that is not full already tells the total.
        let total = if query.offset == 0 && events.len() < query.limit as usize {
            events.len() as u64
        } else {
            let mut count = QueryBuilder::new("SELECT count(*) FROM events WHERE 1 = 1");
            push_filter(&mut count, &query.filter, &types);
            count.build_query_scalar::<i64>().fetch_one(&self.readers).await? as u64
        };
        Ok(EventPage { events, total })
    }

    async fn events_after(&self, seq: i64, filter: &EventFilter, limit: u32) -> Result<Vec<Event>, Error> {
        let Some(types) = self.type_condition(filter).await? else {
            return Ok(Vec::new());
        };
        let mut select = QueryBuilder::new(format!("SELECT {COLUMNS} FROM events WHERE seq > "));
        select.push_bind(seq);
        push_filter(&mut select, filter, &types);
        select.push(" ORDER BY seq LIMIT ").push_bind(i64::from(limit));
        let rows = select.build().fetch_all(&self.readers).await?;
        rows.iter().map(decode).collect()
    }

    async fn events_by_seq(&self, seqs: &[i64]) -> Result<Vec<Event>, Error> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut select = QueryBuilder::new(format!("SELECT {COLUMNS} FROM events WHERE seq IN ("));
        let mut list = select.separated(", ");
        for seq in seqs {
            list.push_bind(*seq);
        }
        select.push(") ORDER BY seq");
        let rows = select.build().fetch_all(&self.readers).await?;
        rows.iter().map(decode).collect()
    }

    async fn stream(&self, stream_id: &str, from_version: i64, limit: u32) -> Result<Vec<Event>, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE stream_id = ? AND stream_version > ? ORDER BY stream_version LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(stream_id)
            .bind(from_version)
            .bind(i64::from(limit))
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(decode).collect()
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
        if let Some(mut conn) = self.writer.lock().await.conn.take() {
            // Refreshing planner statistics is an optimisation; failing it must not block shutdown.
            let _ = sqlx::query("PRAGMA optimize").execute(&mut conn).await;
            if let Err(error) = conn.close().await {
                tracing::warn!(%error, "closing the SQLite writer connection failed");
            }
        }
        self.readers.close().await;
    }
}

fn closed() -> Error {
    Error::Database(sqlx::Error::PoolClosed)
}

impl Appended {
    /// The stored event, if there is one.
    pub fn event(&self) -> Option<&Event> {
        match self {
            Appended::Created(event) | Appended::Duplicate(event) => Some(event),
            Appended::VersionConflict { .. } => None,
        }
    }
}

fn insert_rows<'a>(events: &[&'a Event]) -> QueryBuilder<'a, Sqlite> {
    let mut insert = QueryBuilder::new(format!("INSERT INTO events ({COLUMNS}) "));
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
    let mut deltas: HashMap<(&'static str, String), i64> = HashMap::new();
    for event in events {
        let mut bump = |dimension, key: String| *deltas.entry((dimension, key)).or_default() += 1;
        bump("type", event.event_type.clone());
        bump("source", event.event_source.as_str().to_owned());
        bump("category", event.event_category.as_str().to_owned());
        bump("status", event.status.as_str().to_owned());
        bump("day", event.timestamp.to_datetime().format("%Y-%m-%d").to_string());
        if let Some(user) = &event.user_id {
            bump("user", user.clone());
        }
    }
    let mut upsert = QueryBuilder::new("INSERT INTO counters (dimension, key, count) ");
    upsert.push_values(deltas, |mut row, ((dimension, key), count)| {
        row.push_bind(dimension).push_bind(key).push_bind(count);
    });
    upsert.push(" ON CONFLICT (dimension, key) DO UPDATE SET count = count + excluded.count");
    upsert
}

/// Appends ` AND …` conditions for every set field of the filter, the type as `types` says.
fn push_filter(sql: &mut QueryBuilder<'_, Sqlite>, filter: &EventFilter, types: &TypeCondition) {
    match types {
        TypeCondition::Any => {}
        TypeCondition::OneOf(names) => {
            sql.push(" AND event_type IN (");
            let mut list = sql.separated(", ");
            for name in names {
                list.push_bind(name.clone());
            }
            sql.push(")");
        }
        TypeCondition::Pattern(pattern) => push_type_pattern(sql, pattern),
    }
    let mut equals = |column: &str, value: Option<String>| {
        if let Some(value) = value {
            sql.push(format!(" AND {column} = ")).push_bind(value);
        }
    };
    equals("event_source", filter.event_source.map(|s| s.as_str().to_owned()));
    equals("event_category", filter.event_category.map(|c| c.as_str().to_owned()));
    equals("status", filter.status.map(|s| s.as_str().to_owned()));
    equals("user_id", filter.user_id.clone());
    equals("stream_id", filter.stream_id.clone());
    equals("tenant_id", filter.tenant_id.clone());
    equals("correlation_id", filter.correlation_id.clone());
    if let Some(start) = filter.start_time {
        sql.push(" AND timestamp >= ").push_bind(start.as_micros());
    }
    if let Some(end) = filter.end_time {
        sql.push(" AND timestamp < ").push_bind(end.as_micros());
    }
    if let Some(text) = &filter.text {
        sql.push(" AND instr(lower(data), ").push_bind(text.to_ascii_lowercase()).push(") > 0");
    }
}

/// A type pattern as SQL: an index range on its literal prefix, then a GLOB and a segment count that
/// together match exactly what [`crate::domain::TypePattern::matches`] does (segments are never empty
/// and never contain GLOB's special characters, which validation guarantees).
fn push_type_pattern(sql: &mut QueryBuilder<'_, Sqlite>, pattern: &crate::domain::TypePattern) {
    let prefix = pattern.literal_prefix();
    if let Some(last) = prefix.bytes().last() {
        let mut upper = prefix.clone().into_bytes();
        *upper.last_mut().unwrap_or(&mut 0) = last + 1;
        let upper = String::from_utf8(upper).unwrap_or_default();
        sql.push(" AND event_type >= ").push_bind(prefix).push(" AND event_type < ").push_bind(upper);
    }
    let mut glob: Vec<&str> =
        pattern.segments().iter().map(|s| if let Segment::Literal(text) = s { text.as_str() } else { "*" }).collect();
    if pattern.open_tail() {
        glob.push("*");
    }
    let dots = pattern.segments().len() as i64 - i64::from(!pattern.open_tail());
    sql.push(" AND event_type GLOB ").push_bind(glob.join("."));
    sql.push(" AND length(event_type) - length(replace(event_type, '.', ''))")
        .push(if pattern.open_tail() { " >= " } else { " = " })
        .push_bind(dots);
}

/// An OFFSET SQLite accepts: it is a signed 64-bit number, and anything larger is past the end anyway.
fn sql_offset(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

fn json_text(map: &Map<String, Value>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| "{}".to_owned())
}

fn decode(row: &SqliteRow) -> Result<Event, Error> {
    fn vocabulary<T>(
        row: &SqliteRow,
        column: &str,
        parse: fn(&str, &str) -> Result<T, crate::domain::FieldError>,
    ) -> Result<T, Error> {
        let text: &str = row.try_get(column)?;
        parse(column, text).map_err(|e| Error::Corrupt(e.to_string()))
    }
    fn json(row: &SqliteRow, column: &str) -> Result<Map<String, Value>, Error> {
        let text: &str = row.try_get(column)?;
        serde_json::from_str(text).map_err(|e| Error::Corrupt(format!("{column}: {e}")))
    }
    Ok(Event {
        event_id: EventId(row.try_get("event_id")?),
        seq: row.try_get("seq")?,
        event_type: row.try_get("event_type")?,
        event_source: vocabulary(row, "event_source", EventSource::parse)?,
        event_category: vocabulary(row, "event_category", EventCategory::parse)?,
        user_id: row.try_get("user_id")?,
        tenant_id: row.try_get("tenant_id")?,
        stream_id: row.try_get("stream_id")?,
        stream_version: row.try_get("stream_version")?,
        data: json(row, "data")?,
        metadata: json(row, "metadata")?,
        context: json(row, "context")?,
        correlation_id: row.try_get("correlation_id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        status: vocabulary(row, "status", EventStatus::parse)?,
        retry_count: row.try_get("retry_count")?,
        error_message: row.try_get("error_message")?,
        timestamp: Timestamp::from_micros(row.try_get("timestamp")?),
        created_at: Timestamp::from_micros(row.try_get("created_at")?),
        processed_at: row.try_get::<Option<i64>, _>("processed_at")?.map(Timestamp::from_micros),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TypePattern;

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db"), SyncMode::Normal).await.unwrap();
        (dir, store)
    }

    fn typed(event_type: &str) -> NewEvent {
        NewEvent::new(event_type)
    }

    async fn count(store: &SqliteStore, pattern: &str) -> u64 {
        let filter =
            EventFilter { event_type: Some(TypePattern::parse("t", pattern).unwrap()), ..EventFilter::default() };
        store.query(&EventQuery { filter, limit: 1000, ..EventQuery::default() }).await.unwrap().total
    }

    #[tokio::test]
    async fn patterns_match_the_same_in_sql_as_in_memory_whether_expanded_or_not() {
        let (_dir, store) = store().await;
        let mut types: Vec<String> = (0..300).map(|i| format!("many.t{i}")).collect();
        types.extend(
            ["user.created", "user.profile.updated", "users.created", "user", "order.created", "a.b.c.d"]
                .map(String::from),
        );
        store.append(types.iter().map(|t| typed(t)).collect()).await.unwrap();

        // `many.*` matches more types than are expanded, so SQL matches the pattern itself.
        for pattern in ["many.*", "many.>", "user.*", "user.>", "*.created", "*.*", "a.*.c.>", "*", "nothing.*", "user"]
        {
            let parsed = TypePattern::parse("t", pattern).unwrap();
            let expected = types.iter().filter(|t| parsed.matches(t)).count() as u64;
            assert_eq!(count(&store, pattern).await, expected, "pattern {pattern}");
        }
    }

    #[tokio::test]
    async fn idempotency_keys_are_per_tenant_and_checked_within_a_group() {
        let (_dir, store) = store().await;
        let keyed = |key: &str, tenant: Option<&str>| {
            let mut event = typed("k");
            event.idempotency_key = Some(key.into());
            event.tenant_id = tenant.map(String::from);
            event
        };
        let first = store.append(vec![keyed("a", None), keyed("a", None), keyed("a", Some("t2"))]).await.unwrap();
        assert!(matches!(first[0], Appended::Created(_)));
        assert_eq!(first[1], Appended::Duplicate(first[0].event().unwrap().clone()));
        assert!(matches!(first[2], Appended::Created(_)), "another tenant's key is a new event");
        let again = store.append(vec![keyed("a", None)]).await.unwrap();
        assert_eq!(again[0], Appended::Duplicate(first[0].event().unwrap().clone()));
        assert_eq!(store.last_seq().await.unwrap(), 2);
    }

    #[tokio::test]
    async fn stream_versions_follow_expected_version_within_and_across_groups() {
        let (_dir, store) = store().await;
        let versioned = |expected: Option<i64>| {
            let mut event = typed("s");
            event.stream_id = Some("user:1".into());
            event.expected_version = expected;
            event
        };
        let group = store
            .append(vec![versioned(Some(0)), versioned(Some(1)), versioned(Some(1)), versioned(None)])
            .await
            .unwrap();
        let versions: Vec<Option<i64>> = group.iter().map(|a| a.event().and_then(|e| e.stream_version)).collect();
        assert_eq!(versions, [Some(1), Some(2), None, Some(3)]);
        assert_eq!(group[2], Appended::VersionConflict { stream_id: "user:1".into(), expected: 1, actual: 2 });
        let next = store.append(vec![versioned(Some(3))]).await.unwrap();
        assert_eq!(next[0].event().unwrap().stream_version, Some(4));
        assert_eq!(store.stream_version("user:1").await.unwrap(), 4);
        assert_eq!(store.stream("user:1", 2, 10).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn counters_follow_every_commit() {
        let (_dir, store) = store().await;
        let mut event = typed("order.paid");
        event.user_id = Some("u1".into());
        store.append(vec![event.clone(), event, typed("order.created")]).await.unwrap();
        let counters = store.counters().await.unwrap();
        assert_eq!(counters.by_type["order.paid"], 2);
        assert_eq!(counters.by_status["pending"], 3);
        assert_eq!(counters.by_source["backend"], 3);
        assert_eq!(counters.top_users, [NameCount { name: "u1".into(), count: 2 }]);
        assert_eq!(counters.by_day.values().sum::<i64>(), 3);
    }
}
