//! One resource per file, each with its own `router()`.

pub mod archive;
pub mod cluster;
pub mod dlq;
pub mod events;
pub mod frontend;
pub mod health;
pub mod live;
pub mod metrics;
pub mod processors;
pub mod projections;
pub mod replay;
pub mod rudderstack;
pub mod statistics;
pub mod streams;
pub mod subscriptions;
pub mod webhooks;
