//! The trace headers of a call made on an event's behalf (a delivery or a `webhook` processor run).

use tracing::Span;

use crate::domain::Event;
use crate::domain::trace::{METADATA_KEY, TraceParent};
use crate::telemetry;

/// Makes `span` (not entered yet) part of the trace the event was created in, when spans are exported.
pub fn adopt_trace(event: &Event, span: &Span) {
    if telemetry::exporting()
        && let Some(parent) = traceparent(event)
    {
        telemetry::set_remote_parent(span, &parent);
    }
}

fn traceparent(event: &Event) -> Option<TraceParent> {
    event.metadata.get(METADATA_KEY).and_then(|v| v.as_str()).and_then(TraceParent::parse)
}

/// Adds `traceparent` (the trace the event was created in, with a new parent id: `span`'s when spans
/// are exported) and `X-Correlation-Id` (the event's correlation id) to `headers`. A correlation id
/// that cannot be a header value is left out rather than failing every attempt. `span` should have
/// adopted the trace ([`adopt_trace`]) before it was entered.
pub fn trace_headers(event: &Event, span: &Span, headers: &mut Vec<(String, String)>) {
    if let Some(parent) = traceparent(event) {
        headers.push(("traceparent".to_owned(), telemetry::outgoing(span, &parent).to_string()));
    }
    if let Some(correlation_id) = &event.correlation_id
        && correlation_id.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        headers.push(("X-Correlation-Id".to_owned(), correlation_id.clone()));
    }
}
