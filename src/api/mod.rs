//! The HTTP API of shared/API.md, on axum. Handlers reach the engine only through `EventService`.

mod auth;
mod conn;
pub mod error;
mod extract;
#[doc(hidden)]
pub mod fuzzing;
mod layers;
pub mod openapi;
mod routes;
pub mod state;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::middleware::from_fn_with_state;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower::util::MapRequestLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use error::ApiError;
pub use state::{AppState, Limits};

/// Every route of API.md with request ids, the request span and HTTP metrics around it.
pub fn router(state: AppState) -> Router {
    let observability = ServiceBuilder::new()
        .layer(MapRequestLayer::new(layers::drop_unusable_request_id))
        .layer(SetRequestIdLayer::new(layers::X_REQUEST_ID, layers::UuidV7RequestId))
        .layer(PropagateRequestIdLayer::new(layers::X_REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(layers::request_span)
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::DEBUG)),
        )
        .layer(from_fn_with_state(state.clone(), layers::record_metrics));
    routes(state).layer(observability)
}

/// The same routes without request ids, the request span and HTTP metrics: only for measuring what
/// those cost (`eventdeck bench --scenario ingest-overhead`).
pub fn router_without_observability(state: AppState) -> Router {
    routes(state)
}

fn routes(state: AppState) -> Router {
    const FRONTEND_METHODS: &[Method] = &[Method::GET, Method::POST];
    const OTHER_METHODS: &[Method] = &[Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];
    // `[server] max_concurrent_requests` bounds every route but the live stream (`[live] max_clients`
    // bounds it), `/health` and `/metrics`, which must answer even when the server is at its limit.
    let limit = || from_fn_with_state(state.clone(), layers::limit_concurrency);
    let frontend = with_cors(
        routes::frontend::router().layer(limit()),
        layers::cors(&state.limits.cors_frontend_origins, FRONTEND_METHODS),
    );
    let open = Router::new()
        .merge(routes::health::router())
        .merge(routes::metrics::router())
        .merge(Router::new().merge(routes::rudderstack::router()).merge(openapi::router()).layer(limit()));
    let live = routes::live::router().layer(from_fn_with_state(state.clone(), auth::headers_or_token));
    let managed = Router::new()
        .merge(routes::events::router())
        .merge(routes::statistics::router())
        .merge(routes::streams::router())
        .merge(routes::subscriptions::router())
        .merge(routes::webhooks::router())
        .merge(routes::dlq::router())
        .merge(routes::processors::router())
        .merge(routes::replay::router())
        .merge(routes::archive::router())
        .merge(routes::projections::router())
        .merge(routes::cluster::router())
        .layer(from_fn_with_state(state.clone(), auth::headers))
        .layer(limit());
    let others = with_cors(open.merge(live).merge(managed), layers::cors(&state.limits.cors_origins, OTHER_METHODS));
    Router::new()
        .merge(frontend)
        .merge(others)
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(from_fn_with_state(state.clone(), layers::refuse_oversized_bodies))
        .with_state(state)
}

/// Adds CORS to `router`'s routes. The 405 answer is set first so that the layer wraps it too: a
/// preflight (OPTIONS) to a POST-only route is answered by the layer, not refused.
fn with_cors(router: Router<AppState>, cors: Option<tower_http::cors::CorsLayer>) -> Router<AppState> {
    let router = router.method_not_allowed_fallback(wrong_method);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// Serves until `shutdown` is cancelled, then stops accepting and lets requests in progress finish
/// (live streams end at once).
pub async fn serve(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    let shutdown: CancellationToken = state.shutdown.clone();
    // `tap_io` adds nothing; it gives the wrapped listener axum's `ConnectInfo<SocketAddr>`.
    let listener = conn::JsonErrorListener(listener).tap_io(|_| {});
    axum::serve(listener, router(state).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("there is no {method} {}: see the API section of the README", uri.path()))
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method}: see the API section of the README", uri.path()),
    )
}
