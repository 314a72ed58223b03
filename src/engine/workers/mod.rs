//! Long-running engine tasks, one per file, each stopped by a `CancellationToken` (the log follower by
//! the ingest writer's end).

pub mod announcer;
pub mod delivery;
pub mod follower;
pub mod frontend;
pub mod heartbeat;
pub mod live_link;
pub mod processing;
pub mod publisher;
pub mod retention;
