//! Integration tests: one binary, a module per area. Each test starts its own server on port 0 with a
//! temporary database.

mod sink;
mod support;

mod archive;
mod auth;
mod console;
mod cross_site;
mod delivery;
mod faults;
mod ingest;
mod instances;
mod live;
mod ops;
mod process;
mod processing;
mod processors_api;
mod projections;
mod query;
mod remote;
mod tui_e2e;
