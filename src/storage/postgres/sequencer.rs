//! Seqs for this instance's appends, given out so that two groups can be written at once and still
//! commit in seq order, across every instance of the schema.
//!
//! A group spends most of its time inserting rows and their index entries, which PostgreSQL does on one
//! core per transaction. Taking the schema's append lock in each transaction (lock, read the highest
//! seq, insert, commit, let go) kept every append of the schema on one core. Instead, while this
//! instance has groups in flight, one of its connections holds the append lock at session level, and
//! the instance numbers its groups itself:
//! - a group takes its turn (first come, first served), and on the lock's connection looks up what its
//!   given ids, keys and streams already hold; it is given the next seqs and a connection of its own,
//!   and the next group takes its turn while it inserts;
//! - at most [`AT_ONCE`] groups are in flight, each in its own slot with its own counter rows, so
//!   neither waits for rows the other holds;
//! - a group commits only once every group numbered before it has ended (committed, or failed and
//!   left a gap), so commits follow seqs: a reader that has seen seq N never later sees a smaller one;
//! - a group whose ids, keys or streams overlap a group in flight waits for that one to end before it
//!   is numbered: its lookups must see the other's rows, and a unique index must never fail a group
//!   of other people's events;
//! - when no group is left in flight the lock is let go; and after [`HOLD`] of holding it, a turn
//!   looks for anyone else waiting for it (another instance, or a subscription being created) and
//!   then lets it go once the groups in flight end. PostgreSQL grants a released lock to those
//!   already waiting, so they go first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tokio::sync::{Mutex, watch};

use super::events::known;
use super::shared::Serial;
use crate::domain::{NewEvent, Timestamp};
use crate::storage::group::{self, Lookups};
use crate::storage::{Appended, Error};

/// Groups of one instance in flight at once.
pub(super) const AT_ONCE: usize = 2;

/// How long this instance keeps the append lock while busy before it looks for others waiting. Three
/// instances ingesting at once (`bench --scenario ingest`, batch 10, 4 connections each): with 50 ms,
/// p50 15 ms and p99 150 ms, a request waiting out the others' turns; with 10 ms, p50 48 ms and p99
/// 100 ms, near what a lock taken per group gave (p50 49 ms, p99 83 ms), at the same rate.
const HOLD: Duration = Duration::from_millis(10);

pub(super) struct Sequencer {
    pool: PgPool,
    lock_space: i32,
    /// Taken by one group at a time to be numbered, first come first served. A group in flight never
    /// needs it again, so numbering may wait for groups in flight to end, or for a connection they
    /// give back.
    turn: Arc<Mutex<Turn>>,
    /// The groups numbered and not yet ended: what each looked up, and what ends when it ends.
    flight: Arc<std::sync::Mutex<Flight>>,
}

/// The groups numbered and not yet ended, by ticket.
type Flight = HashMap<u64, Flying>;

struct Flying {
    /// What the group looked up: a group overlapping it waits for it to end.
    lookups: Lookups,
    slot: usize,
    /// Changes (closes) when the group ends.
    ended: watch::Receiver<()>,
}

#[derive(Default)]
struct Turn {
    /// The connection holding the append lock, and since when (or since others were last looked for).
    holder: Option<(PoolConnection<Postgres>, Instant)>,
    /// The seq the next group starts at, while the lock is held.
    next_seq: i64,
    next_ticket: u64,
}

/// A group given its seqs, in flight until dropped.
pub(super) struct Numbered {
    ticket: u64,
    slot: usize,
    /// Dropped when this group ends.
    ended: Option<watch::Sender<()>>,
    sequencer: Leaving,
}

/// What a group needs to leave the flight, and the lock when it was the last.
struct Leaving {
    turn: Arc<Mutex<Turn>>,
    flight: Arc<std::sync::Mutex<Flight>>,
    lock_space: i32,
}

impl Sequencer {
    pub fn new(pool: PgPool, lock_space: i32) -> Self {
        Self { pool, lock_space, turn: Arc::default(), flight: Arc::default() }
    }

    /// Takes this group's turn: makes sure this instance holds the append lock, looks up what the
    /// group's ids, keys and streams hold (while no other instance can append), decides each event
    /// (duplicate, version conflict, or created with the next seq), and takes a connection for the
    /// group's transaction.
    pub async fn number(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<(Numbered, Vec<Appended>, PoolConnection<Postgres>), Error> {
        let lookups = Lookups::of(&events);
        let mut turn = self.turn.lock().await;
        // Groups in flight that must end before this one is numbered: those it overlaps, or all of
        // them when the lock is to be let go for others. It waits holding its turn, so groups keep
        // their order (no group in flight needs the turn to end).
        all_of(self.in_flight(|theirs| overlaps(theirs, &lookups))).await;
        // At most two in flight, in the two slots: then two groups at once never add to the same
        // counter rows (see `append_shard`), and neither waits for the other's.
        while let Some(oldest) = self.oldest_if_full() {
            all_of(vec![oldest]).await;
        }
        if self.others_waiting(&mut turn).await.map_err(|error| lost(&mut turn, error))? {
            self.all_ended().await;
            let_go(&mut turn, self.lock_space).await;
        }
        if turn.holder.is_none() {
            self.take_lock(&mut turn).await?;
        }
        let numbered = self.numbered(&mut turn, events, lookups).await;
        if numbered.is_err() && self.in_flight(|_| true).is_empty() {
            // Nobody in flight would let it go when they end.
            let_go(&mut turn, self.lock_space).await;
        }
        numbered
    }

    /// [`Sequencer::number`] once the lock is held.
    async fn numbered(
        &self,
        turn: &mut Turn,
        events: Vec<NewEvent>,
        lookups: Lookups,
    ) -> Result<(Numbered, Vec<Appended>, PoolConnection<Postgres>), Error> {
        let Some((holder, _)) = turn.holder.as_mut() else { unreachable!("the lock was just taken") };
        let known = known(holder, &lookups).await.map_err(|error| lost(turn, error))?;
        // Taken in turn: a group numbered later never holds the connection an earlier one waits for.
        let conn = self.pool.acquire().await?;
        let appended = group::assign(events, known, turn.next_seq, Timestamp::now());
        let ticket = turn.next_ticket;
        turn.next_ticket += 1;
        turn.next_seq += group::created(&appended).len() as i64;
        let (ended, ends) = watch::channel(());
        let slot = {
            let mut flight = self.flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let slot = (0..AT_ONCE).find(|slot| flight.values().all(|f| f.slot != *slot)).expect("a slot is free");
            flight.insert(ticket, Flying { lookups, slot, ended: ends });
            slot
        };
        let sequencer = Leaving { turn: self.turn.clone(), flight: self.flight.clone(), lock_space: self.lock_space };
        Ok((Numbered { ticket, slot, ended: Some(ended), sequencer }, appended, conn))
    }

    /// What ends with the oldest group in flight when [`AT_ONCE`] are.
    fn oldest_if_full(&self) -> Option<watch::Receiver<()>> {
        let flight = self.flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if flight.len() < AT_ONCE {
            return None;
        }
        flight.iter().min_by_key(|(ticket, _)| **ticket).map(|(_, flying)| flying.ended.clone())
    }

    /// What ends with each group in flight that `must_end` picks.
    fn in_flight(&self, must_end: impl Fn(&Lookups) -> bool) -> Vec<watch::Receiver<()>> {
        let flight = self.flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        flight.values().filter(|flying| must_end(&flying.lookups)).map(|flying| flying.ended.clone()).collect()
    }

    /// After [`HOLD`] of holding the lock, whether anyone else waits for it (another instance, or a
    /// subscription being created); if not, the lock is kept for another [`HOLD`].
    async fn others_waiting(&self, turn: &mut Turn) -> Result<bool, Error> {
        let Some((holder, since)) = turn.holder.as_mut() else { return Ok(false) };
        if since.elapsed() < HOLD {
            return Ok(false);
        }
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND classid = $1::int::oid AND objid = $2::int::oid AND objsubid = 2 \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
        )
        .bind(Serial::Seq as i32)
        .bind(self.lock_space)
        .fetch_one(&mut **holder)
        .await?;
        if !waiting {
            *since = Instant::now();
        }
        Ok(waiting)
    }

    async fn all_ended(&self) {
        all_of(self.in_flight(|_| true)).await;
    }

    async fn take_lock(&self, turn: &mut Turn) -> Result<(), Error> {
        // After the lock's connection failed, groups numbered under it may still be in flight: the
        // highest seq is known once they have ended.
        self.all_ended().await;
        let mut conn = self.pool.acquire().await?;
        let locked = async {
            sqlx::query("SELECT pg_advisory_lock($1, $2)")
                .bind(Serial::Seq as i32)
                .bind(self.lock_space)
                .execute(&mut *conn)
                .await?;
            sqlx::query_scalar("SELECT coalesce(max(seq), 0) + 1 FROM events").fetch_one(&mut *conn).await
        }
        .await;
        match locked {
            Ok(next_seq) => turn.next_seq = next_seq,
            Err(error) => {
                // Never back to the pool holding the lock.
                conn.close_on_drop();
                return Err(error.into());
            }
        }
        turn.holder = Some((conn, Instant::now()));
        Ok(())
    }
}

/// The lock's connection failed (or a statement on it did): it is closed rather than given back to the
/// pool still holding the lock, and the next group takes the lock again.
fn lost(turn: &mut Turn, error: Error) -> Error {
    if let Some((mut conn, _)) = turn.holder.take() {
        conn.close_on_drop();
    }
    error
}

/// Lets the append lock go (no group is in flight). A connection that cannot say so is closed, which
/// lets the lock go too.
async fn let_go(turn: &mut Turn, lock_space: i32) {
    let Some((mut conn, _)) = turn.holder.take() else { return };
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
        .bind(Serial::Seq as i32)
        .bind(lock_space)
        .execute(&mut *conn)
        .await;
    if let Err(error) = unlocked {
        tracing::warn!(%error, "could not let the append lock go; closing its connection instead");
        conn.close_on_drop();
    }
}

impl Numbered {
    /// Which of the [`AT_ONCE`] slots the group is in: no other group in flight has the same.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// Waits until every group numbered before this one has ended (committed, or failed and left a
    /// gap): a group commits only after this, so commits follow seqs.
    pub async fn earlier_ended(&self) {
        let earlier: Vec<watch::Receiver<()>> = {
            let flight = self.sequencer.flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            flight.iter().filter(|(ticket, _)| **ticket < self.ticket).map(|(_, flying)| flying.ended.clone()).collect()
        };
        all_of(earlier).await;
    }
}

impl Drop for Numbered {
    /// Leaves the flight; the last group out lets the lock go (in a task: dropping cannot wait for the
    /// turn, and groups in flight must never wait for it).
    fn drop(&mut self) {
        self.ended.take();
        let Leaving { turn, flight, lock_space } = &self.sequencer;
        let mut groups = flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        groups.remove(&self.ticket);
        if groups.is_empty() {
            drop(groups);
            // Without a runtime (it is shutting down) the pool's connections close, lock and all.
            let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
            let (turn, flight, lock_space) = (turn.clone(), flight.clone(), *lock_space);
            runtime.spawn(async move {
                let mut turn = turn.lock().await;
                if flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).is_empty() {
                    let_go(&mut turn, lock_space).await;
                }
            });
        }
    }
}

/// Waits until each of these groups has ended (its sender dropped).
async fn all_of(ended: Vec<watch::Receiver<()>>) {
    for mut ended in ended {
        let _ = ended.changed().await;
    }
}

/// Whether two groups share a given id, an idempotency key or a stream.
fn overlaps(a: &Lookups, b: &Lookups) -> bool {
    fn share<T: Ord>(a: &[T], b: &[T]) -> bool {
        let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
        small.iter().any(|x| large.binary_search(x).is_ok())
    }
    share(&a.ids, &b.ids) || share(&a.keys, &b.keys) || share(&a.streams, &b.streams)
}
