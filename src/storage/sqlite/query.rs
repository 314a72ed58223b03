//! History reads in SQLite: the paged, filtered query with its total, the log after a seq, events by
//! seq, and how an [`EventFilter`] becomes SQL (type patterns expanded into the stored types they
//! match, or matched with an index range and a GLOB). All reads go to the reader pool.

use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Sqlite};

use super::shared::{in_chunks, push_in, sql_offset};
use crate::domain::filter::Segment;
use crate::domain::{Event, EventFilter, EventPage, EventQuery, Order, TypePattern};
use crate::storage::Error;
use crate::storage::rows::{self, EVENT_COLUMNS};

/// Most types a pattern is expanded into before the query falls back to matching it in SQL.
const MAX_EXPANDED_TYPES: usize = 256;

/// The event-type part of a query.
enum TypeCondition {
    Any,
    OneOf(Vec<String>),
    Pattern(TypePattern),
}

/// One page of history, newest or oldest first, with the total of matching events.
pub(super) async fn page(readers: &SqlitePool, query: &EventQuery) -> Result<EventPage, Error> {
    let Some(types) = type_condition(readers, &query.filter).await? else {
        return Ok(EventPage { events: Vec::new(), total: 0 });
    };
    let rows = page_select(query, &types).build().fetch_all(readers).await?;
    let events = rows.iter().map(rows::event).collect::<Result<Vec<_>, _>>()?;

    // A first page that is not full already tells the total.
    let total = if query.offset == 0 && events.len() < query.limit as usize {
        events.len() as u64
    } else {
        let mut count = QueryBuilder::new("SELECT count(*) FROM events WHERE 1 = 1");
        push_filter(&mut count, &query.filter, &types);
        count.build_query_scalar::<i64>().fetch_one(readers).await? as u64
    };
    Ok(EventPage { events, total })
}

/// The SELECT of one page. Two phases: the page's seqs from the indexes alone, then just those rows.
fn page_select<'a>(query: &'a EventQuery, types: &'a TypeCondition) -> QueryBuilder<'a, Sqlite> {
    let direction = match query.order {
        Order::Desc => "DESC",
        Order::Asc => "ASC",
    };
    let mut select = QueryBuilder::new(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE seq IN (SELECT seq FROM events WHERE 1 = 1"
    ));
    push_filter(&mut select, &query.filter, types);
    select
        .push(format!(" ORDER BY timestamp {direction}, seq {direction} LIMIT "))
        .push_bind(i64::from(query.limit))
        .push(" OFFSET ")
        .push_bind(sql_offset(query.offset))
        .push(format!(") ORDER BY timestamp {direction}, seq {direction}"));
    select
}

/// Events after `seq` that match `filter`, in seq order, at most `limit`.
pub(super) async fn events_after(
    readers: &SqlitePool,
    seq: i64,
    filter: &EventFilter,
    limit: u32,
) -> Result<Vec<Event>, Error> {
    let Some(types) = type_condition(readers, filter).await? else {
        return Ok(Vec::new());
    };
    let mut select = QueryBuilder::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > "));
    select.push_bind(seq);
    push_filter(&mut select, filter, &types);
    select.push(" ORDER BY seq LIMIT ").push_bind(i64::from(limit));
    let rows = select.build().fetch_all(readers).await?;
    rows.iter().map(rows::event).collect()
}

/// The events with these seqs, in seq order, each once.
pub(super) async fn events_by_seq(readers: &SqlitePool, seqs: &[i64]) -> Result<Vec<Event>, Error> {
    let mut seqs = seqs.to_vec();
    seqs.sort_unstable();
    seqs.dedup();
    let mut events = Vec::with_capacity(seqs.len());
    // Sorted chunks read in order keep the whole answer in seq order.
    for chunk in in_chunks(&seqs) {
        let mut select = QueryBuilder::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE "));
        push_in(&mut select, "seq", chunk.iter().copied());
        select.push(" ORDER BY seq");
        for row in select.build().fetch_all(readers).await? {
            events.push(rows::event(&row)?);
        }
    }
    Ok(events)
}

/// How the filter's type pattern becomes SQL; `None` when no stored type can match.
///
/// A wildcard pattern is expanded into the stored types it matches (the counters know every type,
/// updated in the same transaction as the events): SQLite then walks one (type, timestamp) index
/// range per type, bounded by the time window, instead of every entry of a prefix range.
async fn type_condition(readers: &SqlitePool, filter: &EventFilter) -> Result<Option<TypeCondition>, Error> {
    let Some(pattern) = filter.event_type.as_ref().filter(|p| !p.matches_all()) else {
        return Ok(Some(TypeCondition::Any));
    };
    if let Some(exact) = pattern.exact() {
        return Ok(Some(TypeCondition::OneOf(vec![exact.to_owned()])));
    }
    let known: Vec<String> =
        sqlx::query_scalar("SELECT key FROM counters WHERE dimension = 'type'").fetch_all(readers).await?;
    let matching: Vec<String> = known.into_iter().filter(|t| pattern.matches(t)).collect();
    Ok(match matching.len() {
        0 => None,
        n if n <= MAX_EXPANDED_TYPES => Some(TypeCondition::OneOf(matching)),
        _ => Some(TypeCondition::Pattern(pattern.clone())),
    })
}

/// Appends ` AND …` conditions for every set field of the filter, the type as `types` says.
fn push_filter(sql: &mut QueryBuilder<'_, Sqlite>, filter: &EventFilter, types: &TypeCondition) {
    match types {
        TypeCondition::Any => {}
        TypeCondition::OneOf(names) => {
            sql.push(" AND ");
            push_in(sql, "event_type", names.iter().cloned());
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
/// together match exactly what [`TypePattern::matches`] does (segments are never empty and never
/// contain GLOB's special characters, which validation guarantees).
fn push_type_pattern(sql: &mut QueryBuilder<'_, Sqlite>, pattern: &TypePattern) {
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

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;
    use crate::domain::{NewEvent, Timestamp};
    use crate::storage::EventStore;
    use crate::storage::sqlite::SqliteStore;

    /// What SQLite plans for `sql` (parameters left unbound), one line per step.
    async fn plan(readers: &SqlitePool, sql: &str) -> Vec<String> {
        let rows = sqlx::raw_sql(&format!("EXPLAIN QUERY PLAN {sql}")).fetch_all(readers).await.unwrap();
        rows.iter().map(|row| row.get::<String, _>("detail")).collect()
    }

    #[tokio::test]
    async fn a_history_page_by_type_pattern_and_window_walks_the_type_and_time_index() {
        let (_dir, store) = SqliteStore::temporary().await;
        let types = ["user.created", "user.deleted", "order.paid", "page.viewed"];
        store.append((0..400).map(|i| NewEvent::new(types[i % types.len()])).collect()).await.unwrap();
        let filter = EventFilter {
            event_type: Some(TypePattern::parse("event_type", "user.*").unwrap()),
            start_time: Some(Timestamp::from_micros(0)),
            end_time: Some(Timestamp::now()),
            ..EventFilter::default()
        };
        let query = EventQuery { filter, ..EventQuery::default() };
        let condition = type_condition(&store.readers, &query.filter).await.unwrap().expect("types match");
        assert!(matches!(&condition, TypeCondition::OneOf(names) if names.len() == 2), "the pattern is expanded");
        let steps = plan(&store.readers, page_select(&query, &condition).sql()).await;
        assert!(steps.iter().any(|s| s.contains("INDEX events_type_timestamp")), "{steps:?}");
        assert!(!steps.iter().any(|s| s.starts_with("SCAN events")), "no walk over the whole table: {steps:?}");
    }
}
