//! Integration tests: one binary, a module per area. Each test starts its own server on port 0 with a
//! temporary database.

mod sink;
mod support;

mod auth;
mod delivery;
mod ingest;
mod live;
mod process;
mod query;
