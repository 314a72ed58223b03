//! `GET /metrics`: the engine's Prometheus metrics, with the store-backed gauges read at scrape time.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::api::error::ApiError;
use crate::api::state::AppState;
use crate::domain::DeadLetterKind;
use crate::domain::delivery::DlqQuery;
use crate::metrics::{CONTENT_TYPE, StoreGauges};

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// OpenMetrics text. The gauges about the shared store come from the statistics counters (kept
/// incrementally, so a scrape never scans events) and the DLQ totals; a store that does not answer
/// fails the scrape (503) rather than reporting stale figures.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics 1.0 text", content_type = "application/openmetrics-text", body = String)))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let service = state.service.as_ref();
    let dlq_total = |kind| async move {
        let query = DlqQuery { kind: Some(kind), limit: 1, ..DlqQuery::default() };
        service.dead_letters(query).await.map(|page| page.total)
    };
    let (statistics, delivery, processing, health, cluster) = tokio::try_join!(
        service.statistics(),
        dlq_total(DeadLetterKind::Delivery),
        dlq_total(DeadLetterKind::Processing),
        async { Ok(service.health().await) },
        service.cluster(),
    )?;
    state.metrics.set_store_gauges(&StoreGauges {
        events_pending: statistics.pending_events,
        dlq_delivery: i64::try_from(delivery).unwrap_or(i64::MAX),
        dlq_processing: i64::try_from(processing).unwrap_or(i64::MAX),
        nats_connected: health.nats == "connected",
        instances: i64::try_from(cluster.instances.len()).unwrap_or(i64::MAX),
    });
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], state.metrics.encode()))
}
