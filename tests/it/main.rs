//! Integration tests: one binary, a module per area. Each test starts its own server on port 0 with a
//! temporary database.

mod sink;
mod support;

mod archive;
mod auth;
mod cdc;
mod console;
mod cross_site;
mod delivery;
mod faults;
mod frontend_nats;
mod ingest;
mod instances;
mod limits;
mod live;
mod live_link;
mod nats;
mod ops;
mod process;
mod processing;
mod processors_api;
mod projections;
mod publish;
mod query;
mod remote;
mod soak;
mod tui_e2e;
