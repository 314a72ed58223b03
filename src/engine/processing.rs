//! Running processors on events: one processor on one event ([`Runner::run`]), and a batch of events
//! through every processor that matches each ([`Runner::run_batch`]), as the processing loop and
//! replays do it. Projections are folded once per batch for all the streams it touched.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use tracing::Instrument;

use super::bus::Bus;
use super::projection;
use crate::cluster::nats::Nats;
use crate::delivery::{WebhookClient, WebhookRequest};
use crate::delivery::{adopt_trace, trace_headers};
use crate::domain::{Event, ProcessingResult, Processor, ProcessorId, ProcessorType, ReplayId, Timestamp};
use crate::metrics::Metrics;
use crate::storage::Store;

/// One event and the processors to skip on it (they already succeeded before a retry).
pub struct Work {
    pub event: Arc<Event>,
    pub skip: Vec<ProcessorId>,
}

pub struct Runner {
    pub store: Arc<dyn Store>,
    pub client: WebhookClient,
    pub nats: Nats,
    /// Events of a batch processed at once.
    pub concurrency: usize,
    pub snapshot_every: i64,
    pub metrics: Arc<Metrics>,
    /// Where projections created by the projection step are announced.
    pub bus: Bus,
}

/// An event's results so far, and which of them is its projection step (filled in per batch).
struct Ran {
    event: Arc<Event>,
    results: Vec<ProcessingResult>,
    projection_step: Option<usize>,
}

impl Runner {
    /// Runs every processor (given highest priority first) that matches each event, in priority order,
    /// stopping at an event's first failure: a lower-priority processor never sees an event before the
    /// ones above it succeeded. Returns the results of each event, in the order given.
    pub async fn run_batch(
        &self,
        processors: &[Arc<Processor>],
        work: Vec<Work>,
        replay_id: Option<ReplayId>,
    ) -> Vec<(Arc<Event>, Vec<ProcessingResult>)> {
        let mut ran: Vec<Ran> = futures::stream::iter(work)
            .map(|work| self.run_event(processors, work, replay_id))
            .buffered(self.concurrency.max(1))
            .collect()
            .await;
        self.fold_projections(&mut ran).await;
        self.count_runs(&ran);
        ran.into_iter().map(|ran| (ran.event, ran.results)).collect()
    }

    /// Adds the batch's runs to `eventdeck_processing_runs_total`, one update per processor and outcome.
    fn count_runs(&self, ran: &[Ran]) {
        let mut counts: Vec<(&str, bool, u64)> = Vec::new();
        for result in ran.iter().flat_map(|r| &r.results) {
            match counts
                .iter_mut()
                .find(|(name, success, _)| *name == result.processor_name && *success == result.success)
            {
                Some((.., count)) => *count += 1,
                None => counts.push((&result.processor_name, result.success, 1)),
            }
        }
        for (processor, success, count) in counts {
            self.metrics.processing_runs(processor, success, count);
        }
    }

    async fn run_event(&self, processors: &[Arc<Processor>], work: Work, replay_id: Option<ReplayId>) -> Ran {
        let event = work.event;
        let mut ran = Ran { event: event.clone(), results: Vec::new(), projection_step: None };
        for processor in processors.iter().filter(|p| p.matches(&event) && !work.skip.contains(&p.processor_id)) {
            let started = Instant::now();
            let outcome = match processor.processor_type {
                // Folded for the whole batch afterwards; the result is filled in then.
                ProcessorType::Projection => {
                    ran.projection_step = Some(ran.results.len());
                    Ok(())
                }
                _ => {
                    let span = tracing::debug_span!(
                        "process",
                        processor = %processor.processor_name,
                        event_id = %event.event_id,
                        otel.kind = "client",
                    );
                    adopt_trace(&event, &span);
                    self.run(processor, &event, &span).instrument(span.clone()).await
                }
            };
            let failed = outcome.is_err();
            ran.results.push(ProcessingResult {
                event_id: event.event_id,
                processor_id: processor.processor_id,
                processor_name: processor.processor_name.clone(),
                success: outcome.is_ok(),
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                error: outcome.err(),
                replay_id,
                processed_at: Timestamp::now(),
            });
            if failed {
                break;
            }
        }
        ran
    }

    /// Runs one processor on one event. Projections are folded by [`Runner::run_batch`]; redaction
    /// happened at ingest, so both succeed here without doing anything.
    /// `span` is the run's span: a webhook call carries its trace on.
    pub async fn run(&self, processor: &Processor, event: &Event, span: &tracing::Span) -> Result<(), String> {
        match processor.processor_type {
            ProcessorType::Webhook => self.post(processor, event, span).await,
            ProcessorType::Nats => {
                let subject = processor.config.get("subject").and_then(|s| s.as_str()).unwrap_or_default();
                let body = serde_json::to_vec(event).map_err(|e| format!("cannot serialize the event: {e}"))?;
                self.nats.publish(subject, Bytes::from(body)).await
            }
            ProcessorType::Log => {
                tracing::info!(
                    target: "eventdeck::processor",
                    processor = %processor.processor_name,
                    event_id = %event.event_id,
                    event_type = %event.event_type,
                    seq = event.seq,
                    "event processed"
                );
                Ok(())
            }
            ProcessorType::Projection | ProcessorType::Redact => Ok(()),
        }
    }

    async fn post(&self, processor: &Processor, event: &Event, span: &tracing::Span) -> Result<(), String> {
        let url = processor.config.get("url").and_then(|u| u.as_str()).unwrap_or_default().to_owned();
        let body = serde_json::to_vec(event).map_err(|e| format!("cannot serialize the event: {e}"))?;
        let mut headers = vec![
            ("content-type".into(), "application/json".into()),
            ("x-event-id".into(), event.event_id.to_string()),
            ("x-event-type".into(), event.event_type.clone()),
            ("x-processor".into(), processor.processor_name.clone()),
        ];
        trace_headers(event, span, &mut headers);
        let request = WebhookRequest {
            url,
            headers,
            body: Bytes::from(body),
            timeout: Duration::from_millis(processor.timeout_ms()),
        };
        let outcome = self.client.send(request).await;
        if outcome.success() { Ok(()) } else { Err(outcome.error.unwrap_or_else(|| "failed".to_owned())) }
    }

    /// Brings the projection of every stream whose projection step was reached up to date in one go,
    /// and fills in those steps' results.
    async fn fold_projections(&self, ran: &mut [Ran]) {
        let mut streams: Vec<String> = Vec::new();
        for ran in ran.iter().filter(|r| r.projection_step.is_some()) {
            if let Some(stream_id) = &ran.event.stream_id
                && !streams.contains(stream_id)
            {
                streams.push(stream_id.clone());
            }
        }
        if streams.is_empty() {
            return;
        }
        let started = Instant::now();
        let outcome = projection::advance(self.store.as_ref(), &streams, self.snapshot_every).await;
        let each_ms = started.elapsed().as_secs_f64() * 1000.0 / streams.len() as f64;
        let outcome = outcome.map(|advanced| advanced.announce(&self.bus));
        for ran in ran.iter_mut() {
            let Some(step) = ran.projection_step else { continue };
            let result = &mut ran.results[step];
            result.duration_ms += each_ms;
            if let Err(error) = &outcome {
                result.success = false;
                result.error = Some(format!("projection update failed: {error}"));
            }
        }
    }
}
