//! Archiving in SQLite: the lease row and its plan, the archive lines of events, marking them
//! `archived` and deleting them. Writes go through the writer with a batch's patience, so ingest goes
//! first while an archive runs.
//!
//! SQLite builds each archive line itself ([`LINE_COLUMNS`]), and a batch's lines come back as one
//! value ([`LINES_OF`]) instead of twenty columns a row, each copied out of SQLite and decoded:
//! reading was two thirds of a run, and this about halved it. The line is the one
//! `archive_line::line` builds from the columns (PostgreSQL's way), which a test holds it to. A large
//! batch is built in two halves at once, one per core.

use std::sync::LazyLock;

use async_trait::async_trait;
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection};

use super::SqliteStore;
use super::shared::{Patience, bump_status, in_chunks, push_in};
use crate::domain::{EventStatus, Timestamp};
use crate::storage::archive_line::{end_with_times, merge, parse_plan, position};
use crate::storage::rows::corrupt;
use crate::storage::{ArchiveLine, ArchivePart, ArchiveStore, Deleted, Error};

#[async_trait]
impl ArchiveStore for SqliteStore {
    async fn claim_archive(&self, now: Timestamp, lease_until: Timestamp) -> Result<Option<Vec<ArchivePart>>, Error> {
        let mut conn = self.writer.write().await?;
        let plan: Option<Option<String>> = sqlx::query_scalar(
            "UPDATE archive_lease SET owner = ?1, lease_until = ?2 \
             WHERE id = 1 AND (owner IS NULL OR owner = ?1 OR lease_until < ?3) RETURNING plan",
        )
        .bind(&self.instance_id)
        .bind(lease_until.as_micros())
        .bind(now.as_micros())
        .fetch_optional(&mut *conn)
        .await?;
        plan.map(|plan| parse_plan(plan.as_deref())).transpose()
    }

    async fn archivable(
        &self,
        status: EventStatus,
        before: Timestamp,
        after: Option<(Timestamp, i64)>,
        limit: u32,
    ) -> Result<Vec<ArchiveLine>, Error> {
        // Building lines takes a core for tens of milliseconds a batch, on the machine that ingests: like
        // the marking, the reading waits for a gap in ingest first (see `Patience::Maintenance`).
        let quiet = self.writer.defer(Patience::Maintenance).await;
        // A large batch is built in two halves at once, on two reader connections (each its own thread):
        // SQLite builds a line on one core, and reading is most of an archive run. Not while ingest is
        // busy: it keeps the other core.
        if !quiet || limit < SPLIT_FROM {
            return self.archivable_page(status, before, after, limit, 0).await;
        }
        let half = limit / 2;
        let (mut lines, second) = tokio::try_join!(
            self.archivable_page(status, before, after, half, 0),
            self.archivable_page(status, before, after, limit - half, half),
        )?;
        // Each half is read in its own snapshot: an event that changed status in between may show in
        // both (kept once here) or in neither (a later run takes it, as it takes anything that becomes
        // archivable behind a run's cursor).
        let last = lines.last().map(|line| (line.timestamp, line.seq));
        lines.extend(second.into_iter().filter(|line| Some((line.timestamp, line.seq)) > last));
        Ok(lines)
    }

    async fn archive_lines(&self, seqs: &[i64]) -> Result<Vec<ArchiveLine>, Error> {
        let mut all = Vec::with_capacity(seqs.len());
        for chunk in in_chunks(seqs) {
            let mut sql =
                QueryBuilder::<Sqlite>::new(format!("{} FROM (SELECT {} FROM events WHERE ", LINES_OF, *LINE_COLUMNS));
            push_in(&mut sql, "seq", chunk.iter().copied());
            sql.push(")");
            let (text, bad) = sql.build_query_as().fetch_one(&self.readers).await?;
            all.extend(lines(text, bad)?);
        }
        all.sort_by_key(|line| (line.timestamp, line.seq));
        Ok(all)
    }

    async fn plan_archive(&self, plan: &[ArchivePart], lease_until: Timestamp) -> Result<bool, Error> {
        let mut conn = self.writer.write().await?;
        save_plan(&mut conn, &self.instance_id, plan, lease_until).await
    }

    async fn mark_archived(&self, plan: &[ArchivePart], lease_until: Timestamp) -> Result<Option<u64>, Error> {
        let mut conn = self.writer.write_with(Patience::Maintenance).await?;
        let mut tx = conn.begin().await?;
        // The plan is cleared in the transaction that marks its events: a run that stops before the
        // commit leaves both for the next run, one that stops after leaves neither.
        if !save_plan(&mut tx, &self.instance_id, &[], lease_until).await? {
            return Ok(None);
        }
        let seqs: Vec<i64> = plan.iter().flat_map(|part| part.seqs.iter().copied()).collect();
        let mut deltas: Vec<(EventStatus, i64)> = Vec::new();
        let mut marked = 0;
        for chunk in in_chunks(&seqs) {
            // One status at a time, so what changed is counted by the UPDATE itself; a run's batches are
            // of one status, so the second statement runs only for a chunk the first did not cover.
            let mut left = chunk.len() as u64;
            for status in [EventStatus::Processed, EventStatus::Failed] {
                let mut update = QueryBuilder::<Sqlite>::new(
                    "UPDATE events SET status = 'archived', due_at = 0, claimed_by = NULL WHERE +status = ",
                );
                update.push_bind(status.as_str()).push(" AND ");
                push_in(&mut update, "seq", chunk.iter().copied());
                let changed = update.build().execute(&mut *tx).await?.rows_affected();
                let n = changed as i64;
                deltas.extend([(status, -n), (EventStatus::Archived, n)]);
                marked += changed;
                left = left.saturating_sub(changed);
                if left == 0 {
                    break;
                }
            }
        }
        bump_status(&mut tx, &merge(deltas)).await?;
        tx.commit().await?;
        Ok(Some(marked))
    }

    async fn delete_archived(
        &self,
        before: Timestamp,
        after: Option<(Timestamp, i64)>,
        limit: u32,
    ) -> Result<Deleted, Error> {
        let (after_time, after_seq) = position(after);
        let page: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT timestamp, seq FROM events INDEXED BY events_status_timestamp \
             WHERE status = 'archived' AND timestamp < ? AND timestamp >= ? AND (timestamp > ? OR seq > ?) \
             ORDER BY timestamp, seq LIMIT ?",
        )
        .bind(before.as_micros())
        .bind(after_time)
        .bind(after_time)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        let Some(&(last_time, last_seq)) = page.last() else { return Ok(Deleted::default()) };
        let seqs: Vec<i64> = page.iter().map(|(_, seq)| *seq).collect();

        let mut conn = self.writer.write_with(Patience::Maintenance).await?;
        let mut tx = conn.begin().await?;
        let mut deleted = 0;
        for chunk in in_chunks(&seqs) {
            deleted += delete_chunk(&mut tx, chunk).await?;
        }
        tx.commit().await?;
        Ok(Deleted { deleted, examined: page.len() as u64, last: Some((Timestamp::from_micros(last_time), last_seq)) })
    }

    async fn release_archive(&self) -> Result<(), Error> {
        let mut conn = self.writer.write().await?;
        sqlx::query("UPDATE archive_lease SET owner = NULL, lease_until = NULL WHERE id = 1 AND owner = ?")
            .bind(&self.instance_id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    async fn oldest_event(&self) -> Result<Option<Timestamp>, Error> {
        let oldest: Option<i64> =
            sqlx::query_scalar("SELECT min(timestamp) FROM events").fetch_one(&self.readers).await?;
        Ok(oldest.map(Timestamp::from_micros))
    }

    async fn first_kept_version(&self, stream_id: &str) -> Result<i64, Error> {
        Ok(sqlx::query_scalar("SELECT coalesce(min(stream_version), 0) FROM events WHERE stream_id = ?")
            .bind(stream_id)
            .fetch_one(&self.readers)
            .await?)
    }
}

/// Batches from this size on are read in two halves at once.
const SPLIT_FROM: u32 = 1_000;

impl SqliteStore {
    /// One page of [`ArchiveStore::archivable`]: `limit` lines after skipping `offset`.
    async fn archivable_page(
        &self,
        status: EventStatus,
        before: Timestamp,
        after: Option<(Timestamp, i64)>,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<ArchiveLine>, Error> {
        let (after_time, after_seq) = position(after);
        // The (status, timestamp) index holds the seq too (the rowid): its order is (timestamp, seq), and
        // the rows skipped by the offset are only stepped over in it.
        let sql = format!(
            "{} FROM (SELECT {} FROM events INDEXED BY events_status_timestamp \
             WHERE status = ? AND timestamp < ? AND timestamp >= ? AND (timestamp > ? OR seq > ?) \
             ORDER BY timestamp, seq LIMIT ? OFFSET ?)",
            LINES_OF, *LINE_COLUMNS
        );
        let (text, bad) = sqlx::query_as(&sql)
            .bind(status.as_str())
            .bind(before.as_micros())
            .bind(after_time)
            .bind(after_time)
            .bind(after_seq)
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_one(&self.readers)
            .await?;
        lines(text, bad)
    }
}

/// The columns of an archive line: `seq, timestamp, created_at, processed_at, status`, `line` (the
/// Event JSON up to its times, see [`crate::storage::archive_line`]) and whether its documents are
/// one-line objects, as ingest stores them (a hand-edited database may hold others, reported rather
/// than archived broken). The times are formatted in Rust ([`end_with_times`]): SQLite's `strftime`
/// and `printf` took a third of the time building a line.
static LINE_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    // A UUID blob in its hyphenated form, lower case as `Uuid` writes it: each group of bytes in hex,
    // lowered once.
    let id = "lower(concat(hex(substr(event_id, 1, 4)), '-', hex(substr(event_id, 5, 2)), '-', \
              hex(substr(event_id, 7, 2)), '-', hex(substr(event_id, 9, 2)), '-', hex(substr(event_id, 11, 6))))";
    let one_line_object = |column: &str| {
        format!(
            "(substr({column}, 1, 1) = '{{' AND substr(CAST({column} AS BLOB), -1) = CAST('}}' AS BLOB) AND instr({column}, char(10)) = 0)"
        )
    };
    format!(
        "seq, timestamp, created_at, processed_at, status, concat(\
           '{{\"event_id\":\"', {id}, \
           '\",\"seq\":', seq, \
           ',\"event_type\":', json_quote(event_type), \
           ',\"event_source\":', json_quote(event_source), \
           ',\"event_category\":', json_quote(event_category), \
           ',\"user_id\":', json_quote(user_id), \
           ',\"tenant_id\":', json_quote(tenant_id), \
           ',\"stream_id\":', json_quote(stream_id), \
           ',\"stream_version\":', coalesce(stream_version, 'null'), \
           ',\"data\":', data, ',\"metadata\":', metadata, ',\"context\":', context, \
           ',\"correlation_id\":', json_quote(correlation_id), \
           ',\"idempotency_key\":', json_quote(idempotency_key), \
           ',\"status\":', json_quote(status), \
           ',\"retry_count\":', retry_count, \
           ',\"error_message\":', json_quote(error_message)) AS line, \
         {} AND {} AND {} AS well_formed",
        one_line_object("data"),
        one_line_object("metadata"),
        one_line_object("context"),
    )
});

/// The aggregate over rows of [`LINE_COLUMNS`] that brings them all in one value: a line each,
/// `<seq> <timestamp> <created_at> <processed_at or -> <status> <Event JSON up to its times>`, and the
/// first seq whose documents are not well formed (NULL when none). One value, not a row per event: a
/// row crossing from SQLite's thread to the async side costs more than building its line did.
/// Unordered: sorting the lines in SQLite would copy them all once more; [`lines`] orders them.
const LINES_OF: &str = "SELECT group_concat(concat(seq, ' ', timestamp, ' ', created_at, ' ', \
                               coalesce(processed_at, '-'), ' ', status, ' ', line), char(10)), \
                               min(CASE WHEN NOT well_formed THEN seq END)";

/// The archive lines of a [`LINES_OF`] answer, in (timestamp, seq) order.
fn lines(text: Option<String>, bad: Option<i64>) -> Result<Vec<ArchiveLine>, Error> {
    if let Some(seq) = bad {
        return Err(corrupt("data", format!("event {seq}: a document that is not a one-line JSON object")));
    }
    let Some(text) = text else { return Ok(Vec::new()) };
    let time = |text: &str, name: &str| text.parse().map(Timestamp::from_micros).map_err(|e| corrupt(name, e));
    text.split('\n')
        .map(|entry| {
            let mut fields = entry.splitn(6, ' ');
            let mut next = |name: &str| fields.next().ok_or_else(|| corrupt("archive line", format!("no {name}")));
            let seq = next("seq")?.parse().map_err(|e| corrupt("seq", e))?;
            let timestamp = time(next("timestamp")?, "timestamp")?;
            let created_at = time(next("created_at")?, "created_at")?;
            let processed_at = match next("processed_at")? {
                "-" => None,
                at => Some(time(at, "processed_at")?),
            };
            let status = EventStatus::parse("status", next("status")?).map_err(|e| corrupt("status", e))?;
            let start = next("line")?;
            let mut line = String::with_capacity(start.len() + 120);
            line.push_str(start);
            end_with_times(&mut line, timestamp, created_at, processed_at);
            Ok(ArchiveLine { seq, timestamp, status, line })
        })
        .collect::<Result<Vec<_>, Error>>()
        .map(|mut lines| {
            lines.sort_unstable_by_key(|line| (line.timestamp, line.seq));
            lines
        })
}

/// Saves the plan (or clears it, when empty) and extends the lease, if this instance holds it.
async fn save_plan(
    conn: &mut SqliteConnection,
    instance: &str,
    plan: &[ArchivePart],
    lease_until: Timestamp,
) -> Result<bool, Error> {
    let text = (!plan.is_empty()).then(|| serde_json::to_string(plan).unwrap_or_default());
    let saved = sqlx::query("UPDATE archive_lease SET plan = ?, lease_until = ? WHERE id = 1 AND owner = ?")
        .bind(text)
        .bind(lease_until.as_micros())
        .bind(instance)
        .execute(&mut *conn)
        .await?;
    Ok(saved.rows_affected() == 1)
}

/// Deletes the deletable events among `seqs` (see [`ArchiveStore::delete_archived`]) and what hangs
/// off them, in the caller's transaction.
async fn delete_chunk(conn: &mut SqliteConnection, seqs: &[i64]) -> Result<u64, Error> {
    let mut delete = QueryBuilder::<Sqlite>::new("DELETE FROM events WHERE +status = 'archived' AND ");
    push_in(&mut delete, "seq", seqs.iter().copied());
    // The newest event stays too: the next seq is counted from it.
    delete.push(
        " AND seq < (SELECT max(seq) FROM events) AND (stream_id IS NULL OR (\
           stream_version < (SELECT max(s.stream_version) FROM events s WHERE s.stream_id = events.stream_id) \
           AND stream_version <= coalesce((SELECT max(p.version) FROM projection_snapshots p \
                                           WHERE p.stream_id = events.stream_id), 0))) \
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = events.seq \
                         AND d.state IN ('pending', 'in_flight')) \
         RETURNING seq, event_id",
    );
    let gone: Vec<(i64, uuid::Uuid)> = delete.build_query_as().fetch_all(&mut *conn).await?;
    if gone.is_empty() {
        return Ok(0);
    }
    let seqs: Vec<i64> = gone.iter().map(|(seq, _)| *seq).collect();
    let ids: Vec<uuid::Uuid> = gone.iter().map(|(_, id)| *id).collect();
    for (table, column, by_seq) in [
        ("deliveries", "event_seq", true),
        ("processing_results", "event_seq", true),
        ("delivery_attempts", "event_id", false),
        ("dead_letters", "event_id", false),
    ] {
        let mut sql = QueryBuilder::<Sqlite>::new(format!("DELETE FROM {table} WHERE "));
        if by_seq {
            push_in(&mut sql, column, seqs.iter().copied());
        } else {
            push_in(&mut sql, column, ids.iter().copied());
        }
        sql.build().execute(&mut *conn).await?;
    }
    Ok(gone.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Event, NewEvent};
    use crate::storage::archive_line::{self, ARCHIVE_COLUMNS};
    use crate::storage::{EventStore, SqliteStore};

    /// A large batch, read in two halves at once, comes back whole and in order, and the next batch
    /// starts where it ended.
    #[tokio::test]
    async fn a_large_batch_read_in_halves_is_whole_and_in_order() {
        let (_dir, store) = SqliteStore::temporary().await;
        let start = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
        // Two events a time, so the order within a time (seq) counts too.
        let events: Vec<NewEvent> = (0..1_500)
            .map(|i| {
                let mut new = NewEvent::new("page.viewed");
                new.timestamp = Timestamp::from_micros(start.as_micros() + (1_500 - i) / 2);
                new.skip_processing = true;
                new
            })
            .collect();
        store.append(events).await.unwrap();
        let before = Timestamp::parse("2026-01-02T00:00:00Z").unwrap();
        let first = store.archivable(EventStatus::Processed, before, None, 1_200).await.unwrap();
        let last = first.last().map(|line| (line.timestamp, line.seq));
        let rest = store.archivable(EventStatus::Processed, before, last, 1_200).await.unwrap();
        assert_eq!((first.len(), rest.len()), (1_200, 300));
        let keys: Vec<(Timestamp, i64)> = first.iter().chain(&rest).map(|line| (line.timestamp, line.seq)).collect();
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "in (timestamp, seq) order, each once");
        let all = store.archivable(EventStatus::Processed, before, None, 2_000).await.unwrap();
        assert_eq!(all.len(), 1_500);
        assert_eq!(all[..1_200], first[..]);
    }

    /// The line SQLite builds is, byte for byte, the one built from the columns in Rust (PostgreSQL's
    /// way), and reads back as the stored Event: over strings that need escaping, NULLs, a stream, an
    /// error and a processing time, and times at the ends of the years allowed and around 1970.
    #[tokio::test]
    async fn sqlite_builds_the_same_line_as_the_columns_give() {
        let (_dir, store) = SqliteStore::temporary().await;
        let times = [
            "0001-01-01T00:00:00.000000Z",
            "1969-12-31T23:59:59.999999Z",
            "1970-01-01T00:00:00.000001Z",
            "2026-01-02T03:04:05.123456Z",
            "9999-12-31T23:59:59.999999Z",
        ];
        let mut events = Vec::new();
        for (i, time) in times.iter().enumerate() {
            let mut new = NewEvent::new(format!("order.paid.v{i}"));
            new.timestamp = Timestamp::parse(time).unwrap();
            new.skip_processing = true;
            if i % 2 == 0 {
                new.user_id = Some("u\"1\n\t\\ é 😀 \u{1} \u{7f} </script>".to_owned());
                new.tenant_id = Some("acme".to_owned());
                new.stream_id = Some(format!("order:{i}"));
                new.correlation_id = Some("corr-1".to_owned());
                new.idempotency_key = Some(format!("key-{i}"));
                new.data.insert("text".to_owned(), serde_json::json!("é \u{1} \"q\" \n"));
                new.metadata.insert("n".to_owned(), serde_json::json!([1, 2.5, null, true]));
                new.context.insert("ip".to_owned(), serde_json::json!("10.0.0.1"));
            }
            events.push(new);
        }
        let stored: Vec<Event> =
            store.append(events).await.unwrap().iter().map(|outcome| outcome.event().cloned().unwrap()).collect();
        {
            let mut conn = store.writer.write().await.unwrap();
            sqlx::query(
                "UPDATE events SET status = 'failed', retry_count = 3, error_message = 'boom \"x\"\n', \
                 processed_at = timestamp + 1 WHERE seq = ?",
            )
            .bind(stored[1].seq)
            .execute(&mut *conn)
            .await
            .unwrap();
        }
        let seqs: Vec<i64> = stored.iter().map(|event| event.seq).collect();
        let lines = store.archive_lines(&seqs).await.unwrap();
        assert_eq!(lines.len(), stored.len());

        let sql = format!("SELECT {ARCHIVE_COLUMNS} FROM events ORDER BY timestamp, seq");
        let rows = sqlx::query(&sql).fetch_all(&store.readers).await.unwrap();
        for (line, row) in lines.iter().zip(&rows) {
            let expected = archive_line::line(row).unwrap();
            assert_eq!(line.line, expected.line);
            assert_eq!((line.seq, line.timestamp, line.status), (expected.seq, expected.timestamp, expected.status));
            let read: Event = serde_json::from_str(&line.line).unwrap();
            let again = store.event(read.event_id).await.unwrap().unwrap();
            assert_eq!(read, again);
        }
        let failed: Event = serde_json::from_str(&lines[1].line).unwrap();
        assert_eq!(failed.error_message.as_deref(), Some("boom \"x\"\n"));
        assert_eq!(failed.processed_at.unwrap().as_micros(), failed.timestamp.as_micros() + 1);

        // A document that is not a one-line object is reported, not archived broken.
        {
            let mut conn = store.writer.write().await.unwrap();
            sqlx::query("UPDATE events SET data = '{\"a\":\n1}' WHERE seq = ?")
                .bind(stored[3].seq)
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        let refused = store.archive_lines(&seqs).await.unwrap_err().to_string();
        assert!(refused.contains(&format!("event {}", stored[3].seq)), "{refused}");
    }
}
