//! An event row as its archive line: the Event JSON (the same fields, names and formats as the API's
//! `Event`), written straight from the row's columns. The JSON documents (`data`, `metadata`,
//! `context`) are copied as the store holds them, never parsed and written again, which is most of
//! what makes archiving fast.

use std::fmt::Write as _;

use super::rows::{Columns, corrupt};
use super::{ArchiveLine, Error};
use crate::domain::{EventStatus, Timestamp};

/// The columns [`line`] reads.
pub(super) const ARCHIVE_COLUMNS: &str = "seq, event_id, event_type, event_source, event_category, user_id, \
    tenant_id, stream_id, stream_version, data, metadata, context, correlation_id, idempotency_key, status, \
    retry_count, error_message, timestamp, created_at, processed_at";

/// The archive line of a row selected with [`ARCHIVE_COLUMNS`].
pub(super) fn line(row: &impl Columns) -> Result<ArchiveLine, Error> {
    let seq = row.int("seq")?;
    let status_text = row.text("status")?;
    let status = EventStatus::parse("status", &status_text).map_err(|e| Error::Corrupt(e.to_string()))?;
    let timestamp = Timestamp::from_micros(row.int("timestamp")?);
    let data = row.text("data")?;
    let metadata = row.text("metadata")?;
    let context = row.text("context")?;
    let mut out = String::with_capacity(320 + data.len() + metadata.len() + context.len());
    out.push_str("{\"event_id\":\"");
    // A UUID's hyphenated form needs no escaping.
    let _ = write!(out, "{}", row.uuid("event_id")?.hyphenated());
    let _ = write!(out, "\",\"seq\":{seq},\"event_type\":");
    string(&mut out, &row.text("event_type")?);
    out.push_str(",\"event_source\":");
    string(&mut out, &row.text("event_source")?);
    out.push_str(",\"event_category\":");
    string(&mut out, &row.text("event_category")?);
    out.push_str(",\"user_id\":");
    optional(&mut out, row.text_opt("user_id")?.as_deref());
    out.push_str(",\"tenant_id\":");
    optional(&mut out, row.text_opt("tenant_id")?.as_deref());
    out.push_str(",\"stream_id\":");
    optional(&mut out, row.text_opt("stream_id")?.as_deref());
    out.push_str(",\"stream_version\":");
    match row.int_opt("stream_version")? {
        Some(version) => {
            let _ = write!(out, "{version}");
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"data\":");
    document(&mut out, "data", &data)?;
    out.push_str(",\"metadata\":");
    document(&mut out, "metadata", &metadata)?;
    out.push_str(",\"context\":");
    document(&mut out, "context", &context)?;
    out.push_str(",\"correlation_id\":");
    optional(&mut out, row.text_opt("correlation_id")?.as_deref());
    out.push_str(",\"idempotency_key\":");
    optional(&mut out, row.text_opt("idempotency_key")?.as_deref());
    out.push_str(",\"status\":");
    string(&mut out, &status_text);
    let _ = write!(out, ",\"retry_count\":{}", row.int("retry_count")?);
    out.push_str(",\"error_message\":");
    optional(&mut out, row.text_opt("error_message")?.as_deref());
    let created_at = Timestamp::from_micros(row.int("created_at")?);
    let processed_at = row.int_opt("processed_at")?.map(Timestamp::from_micros);
    end_with_times(&mut out, timestamp, created_at, processed_at);
    Ok(ArchiveLine { seq, timestamp, status, line: out })
}

/// A position in (`timestamp`, seq) order as the two integers a query compares with; `None`, before
/// every event.
pub(super) fn position(after: Option<(Timestamp, i64)>) -> (i64, i64) {
    after.map_or((i64::MIN, i64::MIN), |(time, seq)| (time.as_micros(), seq))
}

/// Ends a line with its three times, the last fields of an Event: SQLite builds the rest of a line
/// itself, and leaves these to this (formatting times was a third of its work).
pub(super) fn end_with_times(
    out: &mut String,
    timestamp: Timestamp,
    created_at: Timestamp,
    processed_at: Option<Timestamp>,
) {
    let _ = write!(out, ",\"timestamp\":\"{timestamp}\",\"created_at\":\"{created_at}\",\"processed_at\":");
    match processed_at {
        Some(at) => {
            let _ = write!(out, "\"{at}\"");
        }
        None => out.push_str("null"),
    }
    out.push('}');
}

/// A JSON string.
fn string(out: &mut String, text: &str) {
    // Serialising a str into a String cannot fail.
    let _ = serde_json::to_writer(appender(out), text);
}

/// A JSON string or null.
fn optional(out: &mut String, text: Option<&str>) {
    match text {
        Some(text) => string(out, text),
        None => out.push_str("null"),
    }
}

/// A stored JSON document, copied as it is: one line, an object (what ingest stores). A document
/// that is not (hand-edited database) is reported rather than written into the archive broken.
fn document(out: &mut String, column: &str, text: &str) -> Result<(), Error> {
    let trimmed = text.trim();
    if !trimmed.starts_with('{') || !trimmed.ends_with('}') || trimmed.contains('\n') {
        return Err(corrupt(column, "not a one-line JSON object"));
    }
    out.push_str(trimmed);
    Ok(())
}

/// Appends serde_json's output to a String. serde_json writes only valid UTF-8.
fn appender(out: &mut String) -> impl std::io::Write + '_ {
    struct Appender<'a>(&'a mut String);
    impl std::io::Write for Appender<'_> {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let text = std::str::from_utf8(bytes).map_err(std::io::Error::other)?;
            self.0.push_str(text);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    Appender(out)
}

/// The plan column's JSON (`None`: no plan).
pub(super) fn parse_plan(text: Option<&str>) -> Result<Vec<super::ArchivePart>, Error> {
    match text {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(text).map_err(|e| corrupt("archive_lease.plan", e)),
    }
}

/// Status deltas summed per status (one row each, as an upsert needs).
pub(super) fn merge(deltas: Vec<(EventStatus, i64)>) -> Vec<(EventStatus, i64)> {
    let mut merged: Vec<(EventStatus, i64)> = Vec::new();
    for (status, n) in deltas {
        match merged.iter_mut().find(|(s, _)| *s == status) {
            Some((_, total)) => *total += n,
            None => merged.push((status, n)),
        }
    }
    merged.retain(|(_, n)| *n != 0);
    merged
}

#[cfg(test)]
mod tests {
    use crate::domain::{Event, NewEvent};

    /// The line built from columns is the Event JSON the API writes, field for field.
    #[tokio::test]
    async fn a_line_is_the_event_json() {
        use crate::storage::{ArchiveStore, EventStore, SqliteStore};
        let (_dir, store) = SqliteStore::temporary().await;
        let mut new = NewEvent::new("order.paid");
        new.user_id = Some("u\"1\n".to_owned());
        new.stream_id = Some("order:1".to_owned());
        new.data.insert("amount".to_owned(), serde_json::json!(12.5));
        new.data.insert("text".to_owned(), serde_json::json!("é \u{1} \"q\""));
        new.skip_processing = true;
        let stored = store.append(vec![new]).await.unwrap()[0].event().cloned().unwrap();
        let lines = store.archive_lines(&[stored.seq]).await.unwrap();
        assert_eq!(lines.len(), 1);
        let read: Event = serde_json::from_str(&lines[0].line).unwrap();
        assert_eq!(read, stored);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&lines[0].line).unwrap(),
            serde_json::to_value(&stored).unwrap()
        );
    }
}
