//! Long-running engine tasks, one per file, each stopped by a `CancellationToken`.

pub mod delivery;
pub mod processing;
