//! Talking to other systems across machines: NATS (for `nats` processors, and the health of that link).

pub mod nats;
