//! The HTTP API of shared/API.md, on axum. Handlers reach the engine only through `EventService`.

mod auth;
pub mod error;
mod extract;
mod routes;
pub mod state;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::middleware::from_fn_with_state;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use error::ApiError;
pub use state::{AppState, Limits};

pub fn router(state: AppState) -> Router {
    let open = Router::new().merge(routes::health::router()).merge(routes::frontend::router());
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
        .merge(routes::projections::router())
        .layer(from_fn_with_state(state.clone(), auth::headers));
    Router::new()
        .merge(open)
        .merge(live)
        .merge(managed)
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .with_state(state)
}

/// Serves until `shutdown` is cancelled, then stops accepting and lets requests in progress finish
/// (live streams end at once).
pub async fn serve(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    let shutdown: CancellationToken = state.shutdown.clone();
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
