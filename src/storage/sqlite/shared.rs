//! What the SQLite modules share, so no two of them lean on each other: the one writer connection
//! behind its lock (ingest first), the `IN (…)` list builder and its chunking, and the writes that
//! delivery and processing both make (dead letters, status counters) or read (processing results).
//! Rows become domain values in `storage::rows`, shared with every backend.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use sqlx::{Connection, Encode, QueryBuilder, Sqlite, SqliteConnection, Type};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard, Notify};
use tokio::time::Instant;

use crate::domain::{DeadLetter, EventId, EventStatus, ProcessingResult};
use crate::storage::Error;
use crate::storage::rows::{self, DLQ_COLUMNS, RESULT_COLUMNS};

/// Rows per multi-row INSERT: at most 20 columns each keeps the bound values (10,000) under SQLite's
/// limit of 32,766.
pub(super) const ROWS_PER_INSERT: usize = 500;

/// Values per `IN (…)` list, well under SQLite's bound-variable limit.
pub(super) const IN_LIST_MAX: usize = 500;

/// The one writer connection, and who gets it first.
///
/// SQLite takes one writer at a time, so every write of the store goes through this lock, and the
/// next seq lives beside the connection that assigns it. Callers waiting on ingest commits are the
/// ones a person is waiting for; deliveries, processing, replays and management writes are durable
/// work that can catch up. So appends come first:
///
/// - Writes other than appends line up among themselves first (`others`), so only one of them at a
///   time is at the writer's door: an append never queues behind a pile of background writes, only
///   behind the one write in progress.
/// - That one defers while ingest is busy: an append holds or waits for the writer, or one let go
///   less than [`APPEND_GAP`] ago (the engine's ingest writer is answering its callers and gathering
///   the next group: without the gap, a background write would slip in after every commit). It
///   defers for at most its [`Patience`], then queues for the writer (which is fair, first come
///   first served), so under unbroken ingest the other writes still get their turn.
///
/// While a background write holds the writer, ingest callers gather into one larger group, which goes
/// next: group commit keeps working.
pub(super) struct WriterLock {
    /// `None` once closed.
    writer: Mutex<Option<Writer>>,
    /// How the writer connection is opened again when a failed write left it unusable (see
    /// [`heal`]); `None`: an in-memory connection, which cannot be.
    connect: Option<SqliteConnectOptions>,
    /// Where writes other than appends wait for their turn at the writer.
    others: Mutex<()>,
    /// Appends holding or waiting for the writer.
    appends: AtomicUsize,
    /// When the last append let go of the writer, in microseconds after `epoch` (0: none yet).
    last_append_end: AtomicU64,
    epoch: Instant,
    /// Woken whenever an append lets go of the writer (or stops waiting for it).
    append_done: Notify,
}

/// How long after an append lets go ingest still counts as busy.
pub(super) const APPEND_GAP: Duration = Duration::from_millis(2);

/// How long a write other than an append defers to appends, at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Patience {
    /// 20 ms: most writes, the delivery dispatcher's among them (a webhook's latency shows).
    Short,
    /// 50 ms: a batch of background work that holds the writer a while (a processing batch, a
    /// replay's results): while ingest is busy, it keeps most of the writer, and the batches still
    /// get through.
    Batch,
    /// 250 ms: maintenance that nobody waits on (an archive run's reading, marking and deleting): while
    /// ingest is busy, it gets a turn about four times a second, so archiving slows down rather than
    /// ingest.
    Maintenance,
}

impl Patience {
    pub(super) const fn longest(self) -> Duration {
        match self {
            Patience::Short => Duration::from_millis(20),
            Patience::Batch => Duration::from_millis(50),
            Patience::Maintenance => Duration::from_millis(250),
        }
    }
}

/// Makes sure no transaction is left open on the writer before a write starts. A write that failed
/// part-way (a COMMIT on a full disk: SQLite rolls the transaction back itself, so the ROLLBACK of the
/// dropped `Transaction` fails) leaves sqlx counting a transaction nobody holds; every later `begin`
/// would then be a SAVEPOINT, and with SQLite holding a transaction open, "committed" writes would
/// stay in memory, acknowledged and never on disk. Such a connection is closed (SQLite rolls back
/// whatever it holds) and opened again. Checked on every write: cheap (an atomic) unless a dropped
/// transaction's rollback is still queued, then one round trip to the connection's thread.
async fn heal(conn: &mut SqliteConnection, connect: Option<&SqliteConnectOptions>) -> Result<(), Error> {
    if !conn.is_in_transaction() {
        return Ok(());
    }
    // A dropped transaction's rollback is queued on the connection; a ping runs after it.
    conn.ping().await?;
    if !conn.is_in_transaction() {
        return Ok(());
    }
    let Some(connect) = connect else {
        return Err(Error::WriterStuck);
    };
    tracing::warn!("a failed write left the database writer inside a transaction; opening it again");
    *conn = SqliteConnection::connect_with(connect).await?;
    Ok(())
}

/// The open writer: its connection and the seq the next appended event gets.
pub(super) struct Writer {
    pub conn: SqliteConnection,
    pub next_seq: i64,
}

/// The writer, held for an append; while it lives (waiting included) other writes defer.
pub(super) struct AppendGuard<'a> {
    // Declared first, so the writer is released before the ticket says the append is done.
    writer: MappedMutexGuard<'a, Writer>,
    _ticket: AppendTicket<'a>,
}

impl Deref for AppendGuard<'_> {
    type Target = Writer;
    fn deref(&self) -> &Writer {
        &self.writer
    }
}

impl DerefMut for AppendGuard<'_> {
    fn deref_mut(&mut self) -> &mut Writer {
        &mut self.writer
    }
}

/// The writer connection, held for a write other than an append.
pub(super) struct WriteGuard<'a> {
    // Declared first: the writer is free before the next write in line may go for it.
    conn: MappedMutexGuard<'a, SqliteConnection>,
    _turn: MutexGuard<'a, ()>,
}

impl Deref for WriteGuard<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl DerefMut for WriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

/// Counts one append from the moment it asks for the writer until it lets go (or gives up waiting).
struct AppendTicket<'a>(&'a WriterLock);

impl<'a> AppendTicket<'a> {
    fn new(lock: &'a WriterLock) -> Self {
        lock.appends.fetch_add(1, Ordering::SeqCst);
        Self(lock)
    }
}

impl Drop for AppendTicket<'_> {
    fn drop(&mut self) {
        let lock = self.0;
        // Written before the count drops, so whoever sees no append also sees when the last one ended.
        lock.last_append_end.store(lock.micros_since_epoch(Instant::now()), Ordering::SeqCst);
        lock.appends.fetch_sub(1, Ordering::SeqCst);
        lock.append_done.notify_waiters();
    }
}

impl WriterLock {
    pub fn new(conn: SqliteConnection, next_seq: i64, connect: Option<SqliteConnectOptions>) -> Self {
        Self {
            writer: Mutex::new(Some(Writer { conn, next_seq })),
            connect,
            others: Mutex::new(()),
            appends: AtomicUsize::new(0),
            last_append_end: AtomicU64::new(0),
            epoch: Instant::now(),
            append_done: Notify::new(),
        }
    }

    /// The writer for an append, which also assigns seqs. Other writes defer to it.
    pub async fn append(&self) -> Result<AppendGuard<'_>, Error> {
        let ticket = AppendTicket::new(self);
        let mut writer = MutexGuard::try_map(self.writer.lock().await, Option::as_mut).map_err(|_| closed())?;
        heal(&mut writer.conn, self.connect.as_ref()).await?;
        Ok(AppendGuard { writer, _ticket: ticket })
    }

    /// The writer connection for any write other than an append, once appends have had their turn
    /// (see [`WriterLock`]), deferring to them for at most [`Patience::Short`].
    pub async fn write(&self) -> Result<WriteGuard<'_>, Error> {
        self.write_with(Patience::Short).await
    }

    /// [`WriterLock::write`] for a write that may defer to appends as long as `patience` says.
    pub async fn write_with(&self, patience: Patience) -> Result<WriteGuard<'_>, Error> {
        let turn = self.others.lock().await;
        // Busy or not, the write goes once the patience is over.
        let _ = self.defer_to_appends(patience.longest()).await;
        let mut conn =
            MutexGuard::try_map(self.writer.lock().await, |w| w.as_mut().map(|w| &mut w.conn)).map_err(|_| closed())?;
        heal(&mut conn, self.connect.as_ref()).await?;
        Ok(WriteGuard { conn, _turn: turn })
    }

    /// Waits while ingest is busy, for at most `patience`, without taking the writer: for maintenance
    /// reads that would take the cores ingest is using (an archive's lines). True when ingest is quiet,
    /// false when it is still busy and the patience ran out.
    pub async fn defer(&self, patience: Patience) -> bool {
        self.defer_to_appends(patience.longest()).await
    }

    /// Takes the connection away for closing, once any write in progress is done; later writes fail.
    pub async fn take(&self) -> Option<SqliteConnection> {
        self.writer.lock().await.take().map(|w| w.conn)
    }

    /// Waits while ingest is busy (see [`WriterLock`]), for at most `longest`; false when it is busy
    /// still.
    async fn defer_to_appends(&self, longest: Duration) -> bool {
        let deadline = Instant::now() + longest;
        loop {
            // Listening before looking, so an append ending in between still wakes this wait.
            let append_done = self.append_done.notified();
            tokio::pin!(append_done);
            append_done.as_mut().enable();
            let now = Instant::now();
            let Some(until) = self.busy_until(now, deadline) else { return now < deadline };
            tokio::select! {
                () = append_done => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// Until when a write deciding at `now` still defers (woken early when an append ends); `None`:
    /// go now.
    fn busy_until(&self, now: Instant, deadline: Instant) -> Option<Instant> {
        if now >= deadline {
            return None;
        }
        if self.appends.load(Ordering::SeqCst) > 0 {
            return Some(deadline);
        }
        let ended = self.last_append_end.load(Ordering::SeqCst);
        let free_at = self.epoch + Duration::from_micros(ended) + APPEND_GAP;
        (ended > 0 && free_at > now).then(|| free_at.min(deadline))
    }

    /// `at` in microseconds after the lock was made, at least 1 (0 means "no append yet").
    fn micros_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX).max(1)
    }
}

/// What a write on a closed store answers.
pub(super) fn closed() -> Error {
    Error::Database(sqlx::Error::PoolClosed)
}

/// Pushes `column IN (?, …)` binding `values`. Callers keep a list to at most [`IN_LIST_MAX`]
/// values, a statement per chunk when there may be more (see [`in_chunks`]).
pub(super) fn push_in<'a, V>(sql: &mut QueryBuilder<'a, Sqlite>, column: &str, values: impl IntoIterator<Item = V>)
where
    V: 'a + Encode<'a, Sqlite> + Type<Sqlite> + Send,
{
    sql.push(format!("{column} IN ("));
    let mut list = sql.separated(", ");
    for value in values {
        list.push_bind(value);
    }
    sql.push(")");
}

/// `values` in chunks that each fit one `IN (…)` list.
pub(super) fn in_chunks<T>(values: &[T]) -> std::slice::Chunks<'_, T> {
    values.chunks(IN_LIST_MAX)
}

/// An OFFSET SQLite accepts: it is a signed 64-bit number, and anything larger is past the end anyway.
pub(super) fn sql_offset(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

/// Writes a dead letter, in the caller's transaction (a failed delivery's or a failed event's).
pub(super) async fn insert_dead_letter(conn: &mut SqliteConnection, entry: &DeadLetter) -> Result<(), Error> {
    let sql = format!("INSERT INTO dead_letters ({DLQ_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    sqlx::query(&sql)
        .bind(entry.dlq_id.0)
        .bind(entry.kind.as_str())
        .bind(entry.event_id.0)
        .bind(&entry.event_type)
        .bind(entry.subscription_id.map(|id| id.0))
        .bind(entry.processor_id.map(|id| id.0))
        .bind(entry.delivery_id.map(|id| id.0))
        .bind(i64::from(entry.attempts))
        .bind(entry.last_status_code.map(i64::from))
        .bind(&entry.last_error)
        .bind(entry.first_failed_at.as_micros())
        .bind(entry.last_failed_at.as_micros())
        .bind(entry.created_at.as_micros())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Moves the status counters by these amounts, in the caller's transaction.
pub(super) async fn bump_status(conn: &mut SqliteConnection, deltas: &[(EventStatus, i64)]) -> Result<(), Error> {
    let deltas: Vec<_> = deltas.iter().filter(|(_, n)| *n != 0).collect();
    if deltas.is_empty() {
        return Ok(());
    }
    let mut upsert = QueryBuilder::<Sqlite>::new("INSERT INTO counters (dimension, key, count) ");
    upsert.push_values(deltas, |mut row, (status, count)| {
        row.push_bind("status").push_bind(status.as_str()).push_bind(*count);
    });
    upsert.push(" ON CONFLICT (dimension, key) DO UPDATE SET count = count + excluded.count");
    upsert.build().execute(&mut *conn).await?;
    Ok(())
}

/// Every processing result of an event, oldest first (a processing dead letter's history is made
/// of them too).
pub(super) async fn results_of(readers: &SqlitePool, event_id: EventId) -> Result<Vec<ProcessingResult>, Error> {
    let sql = format!(
        "SELECT {RESULT_COLUMNS} FROM processing_results r JOIN events e ON e.seq = r.event_seq \
         WHERE e.event_id = ? ORDER BY r.id"
    );
    sqlx::query(&sql).bind(event_id.0).fetch_all(readers).await?.iter().map(rows::processing_result).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use sqlx::Connection;

    use super::*;

    async fn lock() -> Arc<WriterLock> {
        let conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        Arc::new(WriterLock::new(conn, 1, None))
    }

    /// Runs the other tasks until `ready` holds.
    async fn until(ready: impl Fn() -> bool) {
        while !ready() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn ingest_is_busy_while_an_append_holds_or_waits_and_just_after() {
        let lock = lock().await;
        let now = Instant::now();
        let deadline = now + Patience::Short.longest();
        assert_eq!(lock.busy_until(now, deadline), None, "no append yet");
        let holding = lock.append().await.unwrap();
        assert_eq!(lock.busy_until(now, deadline), Some(deadline), "an append holds the writer");
        assert_eq!(lock.busy_until(deadline, deadline), None, "never past the deadline");
        let before_end = Instant::now();
        drop(holding);
        let gap_end = lock.busy_until(before_end, deadline).expect("just after an append");
        // The end is kept in whole microseconds.
        let earliest = before_end + APPEND_GAP - Duration::from_micros(1);
        assert!(gap_end >= earliest && gap_end <= Instant::now() + APPEND_GAP, "{gap_end:?}");
        assert_eq!(lock.busy_until(gap_end, deadline + APPEND_GAP), None, "the gap is over");
    }

    #[tokio::test]
    async fn an_append_goes_before_the_writes_lined_up_behind_the_write_in_progress() {
        let lock = lock().await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let in_progress = lock.write().await.unwrap();
        let mut tasks = Vec::new();
        for name in ["write 1", "write 2"] {
            let (lock, order) = (lock.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _conn = lock.write().await.unwrap();
                order.lock().unwrap().push(name);
            }));
        }
        tokio::task::yield_now().await;
        tasks.push(tokio::spawn({
            let (lock, order) = (lock.clone(), order.clone());
            async move {
                let _writer = lock.append().await.unwrap();
                order.lock().unwrap().push("append");
            }
        }));
        until(|| lock.appends.load(Ordering::SeqCst) == 1).await;
        drop(in_progress);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["append", "write 1", "write 2"]);
    }

    #[tokio::test]
    async fn under_unbroken_appends_a_write_gets_its_turn_after_deferring() {
        let lock = lock().await;
        let stop = Arc::new(AtomicBool::new(false));
        let appends = tokio::spawn({
            let (lock, stop) = (lock.clone(), stop.clone());
            async move {
                let mut appended = 0;
                while !stop.load(Ordering::SeqCst) {
                    let _writer = lock.append().await.unwrap();
                    // A commit takes a while; the next one follows at once.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    appended += 1;
                }
                appended
            }
        });
        until(|| lock.appends.load(Ordering::SeqCst) > 0).await;
        let started = Instant::now();
        let wrote = tokio::time::timeout(Duration::from_secs(10), lock.write()).await;
        let waited = started.elapsed();
        assert!(wrote.is_ok(), "the write never got the writer");
        drop(wrote);
        stop.store(true, Ordering::SeqCst);
        let appended = appends.await.unwrap();
        assert!(waited >= Patience::Short.longest(), "it deferred to the appends first, waited {waited:?}");
        assert!(appended >= 2, "appends ran while the write waited: {appended}");
    }

    #[tokio::test]
    async fn an_append_that_stops_waiting_no_longer_counts() {
        let lock = lock().await;
        let holding = lock.append().await.unwrap();
        let gave_up = tokio::time::timeout(Duration::from_millis(5), lock.append()).await;
        assert!(gave_up.is_err(), "the writer is held");
        assert_eq!(lock.appends.load(Ordering::SeqCst), 1);
        drop(holding);
        assert_eq!(lock.appends.load(Ordering::SeqCst), 0);
        // Nothing holds the writer now: a write goes at once.
        let write = tokio::time::timeout(Duration::from_secs(10), lock.write()).await;
        assert!(write.is_ok());
    }
}
