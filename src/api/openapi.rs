//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' `#[utoipa::path]`
//! annotations and the wire and domain types' schemas, served at `GET /api/v1/openapi.json`.
//! `docs/openapi.json` is a committed copy; a test fails when it drifts (regenerate it with
//! `eventdeck openapi > docs/openapi.json`).

use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::routes;
use super::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "eventdeck",
        description = "Event service: durable ingest, history, statistics, live stream, webhook delivery, processors, replay and projections. The contract is shared/API.md.",
        license(name = "MIT", identifier = "MIT"),
    ),
    modifiers(&Security),
    tags(
        (name = "ingest", description = "Storing events"),
        (name = "events", description = "Reading events"),
        (name = "live", description = "Server-Sent Events"),
        (name = "subscriptions", description = "Webhook delivery"),
        (name = "dlq", description = "Dead-letter queue"),
        (name = "processors", description = "Processing"),
        (name = "replay", description = "Replays"),
        (name = "archive", description = "Archive and retention"),
        (name = "projections", description = "Streams and projections"),
        (name = "operations", description = "Health, metrics, this document"),
    ),
    paths(
        routes::events::create,
        routes::events::seed_create,
        routes::events::batch,
        routes::events::query_json,
        routes::events::query_string,
        routes::events::seed_list,
        routes::events::get_event,
        routes::events::deliveries,
        routes::events::results,
        routes::frontend::single,
        routes::frontend::batch,
        routes::frontend::health,
        routes::rudderstack::receive,
        routes::statistics::statistics,
        routes::live::live,
        routes::live::live_alias,
        routes::subscriptions::create,
        routes::subscriptions::list,
        routes::subscriptions::read,
        routes::subscriptions::update,
        routes::subscriptions::remove,
        routes::webhooks::create,
        routes::webhooks::list,
        routes::webhooks::read,
        routes::webhooks::update,
        routes::webhooks::remove,
        routes::dlq::list,
        routes::dlq::read,
        routes::dlq::retry_one,
        routes::dlq::retry_many,
        routes::dlq::discard_many,
        routes::dlq::groups,
        routes::dlq::discard,
        routes::processors::create,
        routes::processors::list,
        routes::processors::toggle,
        routes::processors::remove,
        routes::replay::start,
        routes::replay::progress,
        routes::archive::archive,
        routes::streams::read_stream,
        routes::streams::list_streams,
        routes::projections::read,
        routes::health::health,
        routes::cluster::cluster,
        routes::metrics::metrics,
        openapi_json,
    ),
    components(schemas(crate::wire::EventQueryBody))
)]
struct ApiDoc;

/// Declares the API key schemes the management routes take.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
    }
}

/// The document as a value.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document
}

/// The document as pretty-printed JSON with a final newline, as committed in `docs/openapi.json`.
pub fn document_json() -> String {
    let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
    text.push('\n');
    text
}

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(openapi_json))
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json")))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
