//! eventdeck: an event service (durable ingest, history, statistics, live stream) and, in time, the
//! terminal console its operators use. See DESIGN.md for the map: front ends (`api`) reach the engine
//! only through [`service::EventService`].

pub mod api;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod engine;
pub mod metrics;
pub mod remote;
pub mod service;
pub mod storage;
pub mod telemetry;
pub mod tui;
pub mod wire;
