//! The binary's commands; each `run` is the edge where errors become messages.

pub mod archive;
pub mod bench;
pub mod client;
pub mod console;
pub mod demo;
pub mod dlq;
pub mod publish;
pub mod replay;
pub mod serve;
pub mod tail;
