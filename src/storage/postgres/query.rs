//! History reads in PostgreSQL: the paged, filtered query with its total (two phases: the page's
//! seqs from the indexes, then those rows), the log after a seq, events by seq, and how an
//! [`EventFilter`] becomes SQL (type patterns expanded into the stored types they match, or matched
//! with an index range and a regular expression).

use sqlx::postgres::PgPool;
use sqlx::{Postgres, QueryBuilder};

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
pub(super) async fn page(pool: &PgPool, query: &EventQuery) -> Result<EventPage, Error> {
    let Some(types) = type_condition(pool, &query.filter).await? else {
        return Ok(EventPage { events: Vec::new(), total: 0 });
    };
    let direction = match query.order {
        Order::Desc => "DESC",
        Order::Asc => "ASC",
    };
    let mut select = QueryBuilder::new(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE seq IN (SELECT seq FROM events WHERE true"
    ));
    push_filter(&mut select, &query.filter, &types);
    select
        .push(format!(" ORDER BY timestamp {direction}, seq {direction} LIMIT "))
        .push_bind(i64::from(query.limit))
        .push(" OFFSET ")
        .push_bind(i64::try_from(query.offset).unwrap_or(i64::MAX))
        .push(format!(") ORDER BY timestamp {direction}, seq {direction}"));
    // The page and its total from one snapshot, so they agree.
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
    let events = select.build().fetch_all(&mut *tx).await?.iter().map(rows::event).collect::<Result<Vec<_>, _>>()?;

    // A first page that is not full already tells the total.
    let total = if query.offset == 0 && events.len() < query.limit as usize {
        events.len() as u64
    } else {
        let mut count = QueryBuilder::new("SELECT count(*) FROM events WHERE true");
        push_filter(&mut count, &query.filter, &types);
        count.build_query_scalar::<i64>().fetch_one(&mut *tx).await? as u64
    };
    tx.commit().await?;
    Ok(EventPage { events, total })
}

/// Events after `seq` that match `filter`, in seq order, at most `limit`.
pub(super) async fn events_after(
    pool: &PgPool,
    seq: i64,
    filter: &EventFilter,
    limit: u32,
) -> Result<Vec<Event>, Error> {
    let Some(types) = type_condition(pool, filter).await? else {
        return Ok(Vec::new());
    };
    let mut select = QueryBuilder::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > "));
    select.push_bind(seq);
    push_filter(&mut select, filter, &types);
    select.push(" ORDER BY seq LIMIT ").push_bind(i64::from(limit));
    select.build().fetch_all(pool).await?.iter().map(rows::event).collect()
}

/// The events with these seqs, in seq order, each once.
pub(super) async fn events_by_seq(pool: &PgPool, seqs: &[i64]) -> Result<Vec<Event>, Error> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq = ANY($1) ORDER BY seq");
    sqlx::query(&sql).bind(seqs).fetch_all(pool).await?.iter().map(rows::event).collect()
}

/// How the filter's type pattern becomes SQL; `None` when no stored type can match. A wildcard
/// pattern is expanded into the stored types it matches (the counters know every type).
async fn type_condition(pool: &PgPool, filter: &EventFilter) -> Result<Option<TypeCondition>, Error> {
    let Some(pattern) = filter.event_type.as_ref().filter(|p| !p.matches_all()) else {
        return Ok(Some(TypeCondition::Any));
    };
    if let Some(exact) = pattern.exact() {
        return Ok(Some(TypeCondition::OneOf(vec![exact.to_owned()])));
    }
    let known: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT key FROM counters WHERE dimension = 'type'").fetch_all(pool).await?;
    let matching: Vec<String> = known.into_iter().filter(|t| pattern.matches(t)).collect();
    Ok(match matching.len() {
        0 => None,
        n if n <= MAX_EXPANDED_TYPES => Some(TypeCondition::OneOf(matching)),
        _ => Some(TypeCondition::Pattern(pattern.clone())),
    })
}

/// Appends ` AND …` conditions for every set field of the filter, the type as `types` says.
fn push_filter(sql: &mut QueryBuilder<'_, Postgres>, filter: &EventFilter, types: &TypeCondition) {
    match types {
        TypeCondition::Any => {}
        TypeCondition::OneOf(names) => {
            sql.push(" AND event_type = ANY(").push_bind(names.clone()).push(")");
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
        sql.push(" AND strpos(lower(data), ").push_bind(text.to_lowercase()).push(") > 0");
    }
}

/// A type pattern as SQL: an index range on its literal prefix, then a regular expression matching
/// exactly what [`TypePattern::matches`] does (literal segments hold only letters, digits, `_`, `-`
/// and `:`, none of them special in a regular expression).
fn push_type_pattern(sql: &mut QueryBuilder<'_, Postgres>, pattern: &TypePattern) {
    let prefix = pattern.literal_prefix();
    if let Some(last) = prefix.bytes().last() {
        let mut upper = prefix.clone().into_bytes();
        *upper.last_mut().unwrap_or(&mut 0) = last + 1;
        let upper = String::from_utf8(upper).unwrap_or_default();
        sql.push(" AND event_type >= ").push_bind(prefix).push(" AND event_type < ").push_bind(upper);
    }
    let segments: Vec<&str> = pattern
        .segments()
        .iter()
        .map(|s| if let Segment::Literal(text) = s { text.as_str() } else { "[^.]+" })
        .collect();
    let tail = if pattern.open_tail() { r"(\.[^.]+)+" } else { "" };
    sql.push(" AND event_type ~ ").push_bind(format!(r"^{}{tail}$", segments.join(r"\.")));
}
