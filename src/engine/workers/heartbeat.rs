//! The heartbeat: records this instance in the store every couple of seconds (what `/api/v1/cluster`
//! lists), carries on replays whose instance let go of them or died, and, with a store other instances
//! share, forgets changes old enough that nobody follows them any more. On stop it takes this instance
//! off the list.

use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::domain::Timestamp;
use crate::engine::Engine;

/// How often this instance records itself.
const EVERY: Duration = Duration::from_secs(2);
/// An instance seen this recently is alive.
pub const ALIVE: Duration = Duration::from_secs(15);
/// How long changes stay in the change log: an instance that falls further behind has lost its live
/// frames (stored events it reads from the log, which keeps everything).
const KEEP_CHANGES: Duration = Duration::from_secs(600);
/// How often old changes are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

pub async fn run(engine: Engine, shutdown: CancellationToken) {
    let inner = &engine.inner;
    let store = inner.store.clone();
    let mut record = inner.instance.clone();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pruned = Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        record.last_seen = Timestamp::now();
        if let Err(error) = store.heartbeat(&record).await {
            tracing::warn!(%error, "could not record this instance's heartbeat");
        }
        if let Err(error) = engine.take_over_replays().await {
            tracing::warn!(%error, "could not look for replays to carry on");
        }
        if !store.exclusive() && pruned.elapsed() >= PRUNE_EVERY {
            pruned = Instant::now();
            match store.prune_changes(Timestamp::now().minus(KEEP_CHANGES)).await {
                Ok(0) => {}
                Ok(forgotten) => tracing::debug!(forgotten, "old changes forgotten"),
                Err(error) => tracing::warn!(%error, "could not forget old changes"),
            }
        }
    }
    if let Err(error) = store.leave().await {
        tracing::warn!(%error, "could not take this instance off the list; it drops off within 15 s");
    }
}
