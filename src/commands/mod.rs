//! The binary's commands; each `run` is the edge where errors become messages.

pub mod bench;
pub mod client;
pub mod publish;
pub mod serve;
pub mod tail;
