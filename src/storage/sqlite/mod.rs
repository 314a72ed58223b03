//! The SQLite store: one writer connection (WAL, synchronous per config) behind a lock, a small pool
//! of read-only connections, multi-row inserts, and counters updated in the same transaction as the
//! rows they count. One file per store trait (`events`, `query` for history reads, `delivery`,
//! `processing`, `replay`, `projection`); what several of them need is in `shared`.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};

mod delivery;
mod events;
mod processing;
mod projection;
mod query;
mod replay;
mod shared;

use super::{Error, StoreOptions, SyncMode};
use shared::WriterLock;

/// Read-only connections in the pool.
const READERS: u32 = 4;

pub struct SqliteStore {
    writer: WriterLock,
    readers: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `path` and brings its schema up to date.
    /// `options.max_connections` does not apply: one writer and [`READERS`] readers.
    pub async fn open(path: &Path, options: &StoreOptions) -> Result<Self, Error> {
        let open_error = |reason: String| Error::Open { path: path.to_owned(), reason };
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| open_error(format!("cannot create the folder {}: {e}", dir.display())))?;
        }
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.sync {
                SyncMode::Full => SqliteSynchronous::Full,
                SyncMode::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(5))
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-32768");

        let mut conn = SqliteConnection::connect_with(&connect).await.map_err(|e| open_error(e.to_string()))?;
        sqlx::migrate!("./migrations/sqlite").run(&mut conn).await?;
        let last: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events").fetch_one(&mut conn).await?;

        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(connect.read_only(true).pragma("cache_size", "-16384"))
            .await
            .map_err(|e| open_error(e.to_string()))?;
        Ok(Self { writer: WriterLock::new(conn, last + 1), readers })
    }

    /// A store on a new file in a temporary folder, which must outlive it; commits are not synced.
    #[cfg(test)]
    pub(crate) async fn temporary() -> (tempfile::TempDir, Self) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let options = StoreOptions { sync: SyncMode::Normal, ..StoreOptions::default() };
        let store = Self::open(&dir.path().join("store.db"), &options).await.expect("a new SQLite store");
        (dir, store)
    }

    /// Closes the writer after the write in progress, then the readers; later calls fail.
    async fn close_connections(&self) {
        if let Some(mut conn) = self.writer.take().await {
            // Refreshing planner statistics is an optimisation; failing it must not block shutdown.
            let _ = sqlx::query("PRAGMA optimize").execute(&mut conn).await;
            if let Err(error) = conn.close().await {
                tracing::warn!(%error, "closing the SQLite writer connection failed");
            }
        }
        self.readers.close().await;
    }
}
