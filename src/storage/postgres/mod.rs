//! The PostgreSQL store, for several instances sharing one database. Every statement goes to a pool
//! (`[storage] max_connections`); what SQLite gets from its single writer, this store gets from the
//! database: seqs (and change ids) are assigned in commit order under transaction-level advisory
//! locks, claims are taken with `FOR UPDATE SKIP LOCKED` so instances never take the same work, and
//! counters are spread over shards so no row is one every instance waits for. The modules mirror
//! `storage/sqlite`: one file per store trait, what several need in `shared`.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

mod archive;
mod cluster;
mod delivery;
mod events;
mod processing;
mod projection;
mod publication;
mod query;
mod replay;
mod sequencer;
mod shared;

pub use shared::ScratchSchema;
#[cfg(test)]
pub(crate) use shared::test_store;

use super::{Error, StoreOptions};

/// Counter shards: an instance adds to one of them, reads add them all up.
const SHARDS: u64 = 16;

pub struct PostgresStore {
    pool: PgPool,
    instance_id: String,
    /// This instance's counter shard.
    shard: i16,
    /// The advisory-lock space of this schema (its name hashed): instances on other schemas of the
    /// same database never wait for each other's locks.
    lock_space: i32,
    /// Numbers this instance's appends while it holds the append lock.
    sequencer: sequencer::Sequencer,
}

impl PostgresStore {
    /// Connects to the database `url` names and brings its schema up to date (several instances
    /// starting at once migrate one after another: sqlx holds an advisory lock while it migrates).
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Self, Error> {
        let connect: PgConnectOptions = url.parse().map_err(|e| Error::Open {
            path: redacted(url).into(),
            reason: format!("not a PostgreSQL URL: {e}; use postgres://USER@HOST:PORT/DATABASE"),
        })?;
        Self::open_with(connect, options).await
    }

    pub(crate) async fn open_with(connect: PgConnectOptions, options: &StoreOptions) -> Result<Self, Error> {
        let place = format!("{}:{}/{}", connect.get_host(), connect.get_port(), connect.get_database().unwrap_or(""));
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(connect)
            .await
            .map_err(|e| Error::Open {
                path: place.clone().into(),
                reason: format!("cannot reach PostgreSQL at {place}: {e}"),
            })?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let lock_space: i32 = sqlx::query_scalar("SELECT hashtext(current_schema())").fetch_one(&pool).await?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        options.instance_id.hash(&mut hasher);
        Ok(Self {
            sequencer: sequencer::Sequencer::new(pool.clone(), lock_space),
            pool,
            instance_id: options.instance_id.clone(),
            shard: (hasher.finish() % SHARDS) as i16,
            lock_space,
        })
    }
}

/// A URL without its password, for messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redacted("postgres://me:secret@db:5432/x"), "postgres://me:***@db:5432/x");
        assert_eq!(redacted("postgres://me@db/x"), "postgres://me@db/x");
        assert_eq!(redacted("postgres://db/x"), "postgres://db/x");
    }
}

#[cfg(test)]
mod commit_order {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::domain::{EventFilter, NewEvent};
    use crate::storage::EventStore;

    /// Appenders on three stores (three instances' pools) while a follower reads the log after the
    /// last seq it saw: if a seq ever committed behind one already read, the follower would skip it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_follower_reading_after_the_last_seq_it_saw_misses_nothing() {
        let schema = match ScratchSchema::create().await {
            Ok(schema) => schema,
            Err(why) => return println!("SKIPPED: {why}"),
        };
        let mut stores = Vec::new();
        for i in 0..3 {
            let options = StoreOptions { max_connections: 4, instance_id: format!("i{i}"), ..StoreOptions::default() };
            stores.push(Arc::new(PostgresStore::open_with(schema.connect_options(), &options).await.unwrap()));
        }
        let done = Arc::new(AtomicBool::new(false));
        let mut appenders = Vec::new();
        for (i, store) in stores.iter().enumerate() {
            for writer in 0..3 {
                let store = store.clone();
                appenders.push(tokio::spawn(async move {
                    for round in 0..40 {
                        let group = (0..1 + (round + writer) % 5).map(|_| NewEvent::new(format!("t.{i}"))).collect();
                        store.append(group).await.unwrap();
                    }
                }));
            }
        }
        let follower = {
            let (store, done) = (stores[0].clone(), done.clone());
            tokio::spawn(async move {
                let (mut last, mut seen) = (0, Vec::new());
                loop {
                    let finished = done.load(Ordering::SeqCst);
                    let events = store.events_after(last, &EventFilter::default(), 1000).await.unwrap();
                    for event in &events {
                        assert!(event.seq > last, "seq {} after {last}", event.seq);
                        last = event.seq;
                        seen.push(event.seq);
                    }
                    if finished && events.is_empty() {
                        return seen;
                    }
                }
            })
        };
        for appender in appenders {
            appender.await.unwrap();
        }
        done.store(true, Ordering::SeqCst);
        let seen = follower.await.unwrap();
        let stored = stores[1].last_seq().await.unwrap();
        assert_eq!(seen, (1..=stored).collect::<Vec<_>>(), "the follower saw every seq, in order");
        for store in stores {
            store.close().await;
        }
    }
}
