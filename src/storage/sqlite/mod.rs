//! The SQLite store: one writer connection (WAL, synchronous per config) behind a lock that lets
//! ingest go first, a small pool of read-only connections, multi-row inserts, and counters updated in
//! the same transaction as the rows they count. One process at a time: an exclusive lock on
//! `<db>.lock` (holding the pid) keeps a second one out. One file per store trait (`events`, `query`
//! for history reads, `delivery`, `processing`, `replay`, `projection`); what several of them need
//! is in `shared`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};

mod archive;
mod cluster;
mod delivery;
mod events;
mod processing;
mod projection;
mod publication;
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
    /// The open `<db>.lock`, locked while this store has the database; dropped (unlocked) on close.
    /// The operating system lets go of it too when the process dies.
    lock: std::sync::Mutex<Option<File>>,
    /// The instance this process is: its claims carry it.
    instance_id: String,
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
        // Before anything touches the database: a second process would fight this one for the writer
        // and assign seqs this one has assigned already.
        let lock = {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || lock_database(&path))
                .await
                .map_err(|e| open_error(format!("locking the database failed: {e}")))??
        };
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
        // A read-only file opens without complaint and fails at its first write, deep in a migration
        // or at the first ingest: try a write now, and say what is wrong.
        let probe = "BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS _eventdeck_write_probe (x); \
                     DROP TABLE _eventdeck_write_probe; COMMIT";
        if let Err(error) = sqlx::raw_sql(probe).execute(&mut conn).await {
            return Err(open_error(match &error {
                sqlx::Error::Database(e)
                    if e.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| c & 0xff == 8) =>
                {
                    "the database file is read-only: give the user running eventdeck write access to it and to \
                     its folder (SQLite writes -wal and -shm files beside it)"
                        .to_owned()
                }
                _ => format!("a first write failed: {error}"),
            }));
        }
        sqlx::migrate!("./migrations/sqlite").run(&mut conn).await?;
        let last: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events").fetch_one(&mut conn).await?;

        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(connect.clone().read_only(true).pragma("cache_size", "-16384"))
            .await
            .map_err(|e| open_error(e.to_string()))?;
        Ok(Self {
            writer: WriterLock::new(conn, last + 1, Some(connect.clone())),
            readers,
            lock: std::sync::Mutex::new(Some(lock)),
            instance_id: options.instance_id.clone(),
        })
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
        // Unlocked last, once nothing of this store writes any more.
        drop(self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take());
    }
}

/// The lock file of the database at `path`: `<path>.lock`.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Locks `<path>.lock` exclusively and writes this process's id into it; when another process holds
/// the lock, the error names the database and that process. Blocking: call it off the async threads.
fn lock_database(path: &Path) -> Result<File, Error> {
    let lock = lock_path(path);
    let failed = |what: &str, e: std::io::Error| Error::Open {
        path: path.to_owned(),
        reason: format!("cannot {what} the lock file {}: {e}", lock.display()),
    };
    // Not truncated on open: until the lock is ours, the pid in it is the holder's.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
        .map_err(|e| failed("open", e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            // A holder that has not written its pid yet (or an unreadable file) is still a holder.
            let _ = file.read_to_string(&mut pid);
            let holder = match pid.trim().parse::<u32>() {
                Ok(pid) => format!("process {pid}"),
                Err(_) => "a process that has not written its id yet".to_owned(),
            };
            return Err(Error::InUse { path: path.to_owned(), lock, holder });
        }
        Err(TryLockError::Error(e)) => return Err(failed("lock", e)),
    }
    file.set_len(0).map_err(|e| failed("write", e))?;
    file.rewind().map_err(|e| failed("write", e))?;
    writeln!(file, "{}", std::process::id()).map_err(|e| failed("write", e))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::EventStore;

    #[tokio::test]
    async fn a_second_store_on_the_same_file_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.db");
        let options = StoreOptions { sync: SyncMode::Normal, ..StoreOptions::default() };
        let first = SqliteStore::open(&path, &options).await.unwrap();
        let Err(refused) = SqliteStore::open(&path, &options).await else { panic!("a second store opened") };
        let message = refused.to_string();
        assert!(matches!(refused, Error::InUse { .. }), "{message}");
        assert!(message.contains(&path.display().to_string()), "names the database: {message}");
        assert!(message.contains(&format!("process {}", std::process::id())), "names the holder: {message}");

        first.close().await;
        let second = SqliteStore::open(&path, &options).await.expect("free once the first is closed");
        drop(second);
        let third = SqliteStore::open(&path, &options).await.expect("free once the second is dropped");
        third.close().await;
        // Another database in the same folder is a different lock.
        let other = SqliteStore::open(&dir.path().join("two.db"), &options).await.unwrap();
        other.close().await;
    }
}
