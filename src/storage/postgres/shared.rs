//! What the PostgreSQL modules share: the advisory locks that put seqs and change ids in commit
//! order, the sharded counters, the writes delivery and processing both make (dead letters, status
//! counters) or read (processing results), and a scratch schema per test.

use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{Connection, PgConnection, Postgres, QueryBuilder};

use super::{PostgresStore, SHARDS};
use crate::domain::{DeadLetter, EventId, EventStatus, ProcessingResult};
use crate::storage::Error;
use crate::storage::rows::{self, DLQ_COLUMNS, RESULT_COLUMNS};

/// Rows per multi-row INSERT: at most 20 columns each keeps the bound values under PostgreSQL's
/// limit of 65,535.
pub(super) const ROWS_PER_INSERT: usize = 1000;

/// What a transaction-level advisory lock serialises, within the schema's lock space.
#[derive(Debug, Clone, Copy)]
#[repr(i32)]
pub(super) enum Serial {
    /// Appends: seqs are assigned and committed one group at a time, so they follow commit order.
    Seq = 1,
    /// The change log's ids, likewise.
    Change = 2,
}

impl PostgresStore {
    /// Takes the advisory lock for `serial` until the transaction ends. The lock is let go only after
    /// the commit is visible, so the next holder's numbers are always higher than any a reader saw.
    pub(super) async fn serialise(&self, conn: &mut PgConnection, serial: Serial) -> Result<(), Error> {
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(serial as i32)
            .bind(self.lock_space)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Adds `deltas` to this instance's shard of the counters for all but appends, in the caller's
    /// transaction. Appends have shards of their own ([`Self::append_shard`]): a processing batch holds
    /// its counter rows until its transaction ends, and an append waiting for them would hold back every
    /// append numbered after it.
    pub(super) async fn add_counts(
        &self,
        conn: &mut PgConnection,
        deltas: Vec<(&str, String, i64)>,
    ) -> Result<(), Error> {
        add_counts(conn, deltas, (self.shard + SHARDS as i16 / 4) % SHARDS as i16).await
    }

    /// The counter shard of this instance's appends in `slot` (0 or 1): two groups in flight at once
    /// add to different rows, so neither waits for the other's.
    pub(super) fn append_shard(&self, slot: usize) -> i16 {
        match slot {
            0 => self.shard,
            _ => (self.shard + SHARDS as i16 / 2) % SHARDS as i16,
        }
    }

    /// Moves the status counters by these amounts, in the caller's transaction.
    pub(super) async fn bump_status(
        &self,
        conn: &mut PgConnection,
        deltas: &[(EventStatus, i64)],
    ) -> Result<(), Error> {
        let deltas = deltas.iter().map(|(status, n)| ("status", status.as_str().to_owned(), *n)).collect();
        self.add_counts(conn, deltas).await
    }
}

/// Adds `deltas` to counter shard `shard`, in the caller's transaction. Rows are touched in key order,
/// so two transactions never wait for each other in a circle.
pub(super) async fn add_counts(
    conn: &mut PgConnection,
    mut deltas: Vec<(&str, String, i64)>,
    shard: i16,
) -> Result<(), Error> {
    deltas.retain(|(_, _, n)| *n != 0);
    if deltas.is_empty() {
        return Ok(());
    }
    deltas.sort();
    for chunk in deltas.chunks(ROWS_PER_INSERT) {
        let mut upsert = QueryBuilder::<Postgres>::new("INSERT INTO counters (dimension, key, shard, count) ");
        upsert.push_values(chunk, |mut row, (dimension, key, count)| {
            row.push_bind(*dimension).push_bind(key.as_str()).push_bind(shard).push_bind(*count);
        });
        upsert.push(" ON CONFLICT (dimension, key, shard) DO UPDATE SET count = counters.count + excluded.count");
        upsert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Writes a dead letter, in the caller's transaction (a failed delivery's or a failed event's).
pub(super) async fn insert_dead_letter(conn: &mut PgConnection, entry: &DeadLetter) -> Result<(), Error> {
    let sql = format!(
        "INSERT INTO dead_letters ({DLQ_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    );
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

/// Every processing result of an event, oldest first (a processing dead letter's history is made
/// of them too).
pub(super) async fn results_of(pool: &PgPool, event_id: EventId) -> Result<Vec<ProcessingResult>, Error> {
    let sql = format!(
        "SELECT {RESULT_COLUMNS} FROM processing_results r JOIN events e ON e.seq = r.event_seq \
         WHERE e.event_id = $1 ORDER BY r.id"
    );
    sqlx::query(&sql).bind(event_id.0).fetch_all(pool).await?.iter().map(rows::processing_result).collect()
}

/// A schema of its own for one test, in the database `EVENTDECK_TEST_DATABASE_URL` names, dropped
/// with everything in it when this is dropped. Tests on several schemas run in parallel.
pub struct ScratchSchema {
    url: String,
    name: String,
}

impl ScratchSchema {
    /// The variable naming the test database.
    pub const VARIABLE: &'static str = "EVENTDECK_TEST_DATABASE_URL";

    /// A new empty schema, or why there can be none: the variable is not set.
    ///
    /// # Panics
    /// When the variable is set but the database cannot be reached: a test that should run must not
    /// pass silently.
    pub async fn create() -> Result<Self, String> {
        let Ok(url) = std::env::var(Self::VARIABLE) else {
            return Err(format!("{} is not set", Self::VARIABLE));
        };
        Ok(Self::create_in(&url).await.unwrap_or_else(|e| panic!("{} = {url}: {e}", Self::VARIABLE)))
    }

    /// A new empty schema in the database `url` names (`eventdeck bench --scenario soak` makes its own).
    pub async fn create_in(url: &str) -> Result<Self, Error> {
        let name = format!("eventdeck_test_{}", uuid::Uuid::new_v4().simple());
        let pool = PgPool::connect(url).await?;
        let created = sqlx::query(&format!("CREATE SCHEMA {name}")).execute(&pool).await;
        pool.close().await;
        created?;
        Ok(Self { url: url.to_owned(), name })
    }

    /// The URL of the database with this schema first on the search path, as `[storage] url` takes it.
    pub fn url(&self) -> String {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}options=-c%20search_path%3D{}", self.url, self.name)
    }

    pub fn connect_options(&self) -> PgConnectOptions {
        self.url().parse().expect("the test database URL")
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop runs inside a test's runtime, which cannot be blocked on: a thread of its own drops it.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&url).await?;
                // The test's own connections may still be open (a test that failed half-way holds
                // its servers): never wait for them for long, this thread blocks the test's runtime.
                sqlx::query("SET lock_timeout = '5s'").execute(&mut conn).await?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).execute(&mut conn).await?;
                conn.close().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test schema {}", self.name);
        }
    }
}

/// The conformance suite's factory: a store on a fresh schema, or SKIPPED without a test database.
#[cfg(test)]
pub(crate) async fn test_store() -> Result<crate::storage::conformance::TestStore, crate::storage::conformance::Skip> {
    use crate::storage::conformance::{Skip, TestStore};
    let schema = ScratchSchema::create().await.map_err(Skip)?;
    let options =
        crate::storage::StoreOptions { max_connections: 8, instance_id: "test".to_owned(), ..Default::default() };
    let store = PostgresStore::open_with(schema.connect_options(), &options).await.expect("a store on the test schema");
    Ok(TestStore { store: std::sync::Arc::new(store), keep: Box::new(schema) })
}
