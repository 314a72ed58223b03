//! Trace export and trace context: the OTLP/HTTP exporter behind `[tracing] otlp_endpoint` (a
//! `tracing` layer, absent when unset), and how spans continue a caller's W3C trace and pass it on.
//!
//! With no exporter, nothing here costs more than a relaxed atomic load: the engine's spans are at
//! debug level (disabled for the log output at the usual levels), and outgoing `traceparent` headers
//! get a random parent id instead of a span's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use crate::domain::trace::TraceParent;

/// Set once an exporter is installed: spans then carry OpenTelemetry contexts worth reading.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (an OTLP endpoint is configured in this process).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot set up the OTLP exporter for {endpoint}: {reason}")]
    Exporter { endpoint: String, reason: String },
}

/// The installed exporter; [`Exporter::shutdown`] sends the spans still buffered.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Flushes and stops the exporter (a blocking call: run it off the async threads).
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            tracing::warn!(%error, "exporting the last spans failed");
        }
    }
}

/// A `tracing` layer that exports eventdeck's spans to the OTLP/HTTP (protobuf) collector at
/// `endpoint` (a base URL such as `http://127.0.0.1:4318`; `/v1/traces` is appended), batched on a
/// background thread. Only spans are exported, and only eventdeck's own.
pub fn otlp_layer<S>(endpoint: &str) -> Result<(impl Layer<S> + use<S>, Exporter), TelemetryError>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .build()
        .map_err(|e| TelemetryError::Exporter { endpoint: endpoint.to_owned(), reason: e.to_string() })?;
    let resource = Resource::builder()
        .with_service_name("eventdeck")
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    let tracer = provider.tracer("eventdeck");
    let layer =
        tracing_opentelemetry::layer().with_tracer(tracer).with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.is_span() && meta.target().starts_with("eventdeck")
        }));
    EXPORTING.store(true, Ordering::Relaxed);
    Ok((layer, Exporter { provider }))
}

/// Makes `span` a child of the remote caller `parent` (when exporting; the span must not have been
/// entered yet).
pub fn set_remote_parent(span: &Span, parent: &TraceParent) {
    if !exporting() {
        return;
    }
    let context = SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.parent_id),
        TraceFlags::new(parent.flags),
        true,
        TraceState::default(),
    );
    // A span filtered out or already started keeps its own parent: the trace is then only linked loosely.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(context));
}

/// The `traceparent` for an outgoing call made within `span` on behalf of an event created under
/// `parent`: the same trace, with `span` as the parent when it is exported (and was made a child of
/// `parent` with [`set_remote_parent`] before it was entered), else a fresh random parent id.
pub fn outgoing(span: &Span, parent: &TraceParent) -> TraceParent {
    if exporting() {
        let context = span.context();
        let own = context.span().span_context().clone();
        if own.is_valid() && own.trace_id().to_bytes() == parent.trace_id {
            return parent.child(own.span_id().to_bytes());
        }
    }
    parent.child(random_span_id())
}

/// The trace context of `span`, when it is exported and has one: what an event created within it
/// keeps, so its deliveries continue the request's trace although the client sent none.
pub fn current(span: &Span) -> Option<TraceParent> {
    if !exporting() {
        return None;
    }
    let context = span.context();
    let own = context.span().span_context().clone();
    own.is_valid().then(|| TraceParent {
        trace_id: own.trace_id().to_bytes(),
        parent_id: own.span_id().to_bytes(),
        flags: own.trace_flags().to_u8(),
    })
}

/// Eight random bytes, never all zero (which W3C forbids).
fn random_span_id() -> [u8; 8] {
    loop {
        let random = uuid::Uuid::new_v4();
        let mut id = [0u8; 8];
        id.copy_from_slice(&random.as_bytes()[..8]);
        if id != [0; 8] {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_exporter_the_trace_goes_on_with_a_new_parent() {
        let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let first = outgoing(&Span::none(), &parent);
        let second = outgoing(&Span::none(), &parent);
        assert_eq!((first.trace_id, first.flags), (parent.trace_id, parent.flags));
        assert_ne!(first.parent_id, parent.parent_id);
        assert_ne!(first.parent_id, second.parent_id, "each call gets its own parent id");
        assert_eq!(current(&Span::none()), None);
    }
}
