//! Plain types and rules of eventdeck, with no I/O: events, filters, statistics, validation errors.

pub mod error;
pub mod event;
pub mod filter;
pub mod stats;
pub mod time;

pub use error::FieldError;
pub use event::{Event, EventCategory, EventId, EventSource, EventStatus, NewEvent};
pub use filter::{EventFilter, EventPage, EventQuery, Order, TypePattern};
pub use stats::{Counters, NameCount, Statistics};
pub use time::Timestamp;
