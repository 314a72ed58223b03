//! Plain types and rules of eventdeck, with no I/O: events, filters, statistics, subscriptions,
//! deliveries and dead letters, processors, replays, projections, validation errors.

pub mod archive;
pub mod cdc;
pub mod delivery;
pub mod error;
pub mod event;
pub mod filter;
mod id;
pub mod processor;
pub mod projection;
pub mod replay;
mod schema;
pub mod stats;
pub mod subscription;
pub mod time;
pub mod trace;

pub use delivery::{DeadLetter, DeadLetterKind, DeliveryAttempt, DeliveryId, DlqId};
pub use error::FieldError;
pub use event::{Event, EventCategory, EventId, EventSource, EventStatus, NewEvent};
pub use filter::{EventFilter, EventPage, EventQuery, Order, TypePattern};
pub use processor::{ProcessingResult, Processor, ProcessorFilters, ProcessorId, ProcessorType};
pub use projection::{Projection, ProjectionAt};
pub use replay::{ReplayId, ReplayProgress, ReplayRequest, ReplayStarted, ReplayStatus, ReplayTarget};
pub use stats::{Counters, NameCount, Statistics};
pub use subscription::{RetryPolicy, Subscription, SubscriptionId};
pub use time::{TimeError, Timestamp};
