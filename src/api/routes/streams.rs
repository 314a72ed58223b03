//! Event streams (`entity_type:entity_id`), read in version order.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};

use crate::api::error::ApiError;
use crate::api::extract::QueryPairs;
use crate::api::state::AppState;
use crate::domain::FieldError;
use crate::domain::event::validate_stream_id;
use crate::service::{StreamEvents, StreamList};
use crate::wire::stream_list_query;

/// Most events one stream read answers; read on with `from_version` = the last version received + 1.
const MAX_STREAM_PAGE: u32 = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events/stream/{stream_id}", get(read_stream))
        .route("/api/v1/events/streams", get(list_streams))
}

#[utoipa::path(get, path = "/api/v1/events/streams", tag = "projections", security(("bearer" = []), ("api_key" = [])),
    params(("prefix" = Option<String>, Query, description = "Ids that start with this, e.g. order: (all when absent)"), ("after" = Option<String>, Query, description = "Only ids after this one (the last id of the previous page)"), ("limit" = Option<u32>, Query, description = "1 to 1000 (100)")),
    responses((status = 200, body = StreamList, description = "In id order, each with its version and last event"), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn list_streams(
    State(state): State<AppState>,
    pairs: QueryPairs,
) -> Result<Json<StreamList>, ApiError> {
    let (prefix, after, limit) = stream_list_query(pairs.iter())?;
    Ok(Json(state.service.streams(&prefix, after.as_deref(), limit).await?))
}

#[utoipa::path(get, path = "/api/v1/events/stream/{stream_id}", tag = "projections", security(("bearer" = []), ("api_key" = [])),
    params(("stream_id" = String, Path, description = "entity_type:entity_id"), ("from_version" = Option<i64>, Query), ("limit" = Option<u32>, Query)),
    responses((status = 200, body = StreamEvents), (status = 401, body = crate::wire::ErrorEnvelope, description = "Missing or bad API key"), (status = 404, body = crate::wire::ErrorEnvelope, description = "Unknown id"), (status = 422, body = crate::wire::ErrorEnvelope, description = "A field failed validation; the message names it"), (status = 503, body = crate::wire::ErrorEnvelope, description = "Storage unavailable")))]
pub(crate) async fn read_stream(
    State(state): State<AppState>,
    Path(stream_id): Path<String>,
    pairs: QueryPairs,
) -> Result<Json<StreamEvents>, ApiError> {
    validate_stream_id("stream_id", &stream_id)?;
    let (from_version, limit) = page(pairs.iter())?;
    Ok(Json(state.service.stream(&stream_id, from_version, limit).await?))
}

/// `from_version` and `limit` of a stream read. API.md: versions from `from_version` (inclusive, default
/// 1), at most `limit` (default 1000).
pub(crate) fn page<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Result<(i64, u32), FieldError> {
    let (mut from_version, mut limit) = (1, 1000);
    for (key, value) in pairs {
        let number = |range: std::ops::RangeInclusive<i64>, hint: &str| {
            value.parse::<i64>().ok().filter(|n| range.contains(n)).ok_or_else(|| FieldError::new(key, hint.to_owned()))
        };
        match key {
            "from_version" => {
                from_version =
                    number(0..=i64::MAX, "must be the first stream version wanted: 1 or more (1 reads from the start)")?
            }
            "limit" => limit = number(1..=i64::from(MAX_STREAM_PAGE), "must be a number from 1 to 10000")? as u32,
            _ => return Err(FieldError::new(key, "is not a parameter here; accepted: from_version, limit")),
        }
    }
    Ok((from_version, limit))
}
