//! The only place errors become HTTP: status codes and the JSON error body of API.md.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::domain::FieldError;
use crate::service;
use crate::wire::{ErrorBody, ErrorEnvelope};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None }
    }

    /// 422 for a field that failed validation.
    pub fn invalid(error: FieldError) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            message: error.to_string(),
            field: Some(error.field),
        }
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_json", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required: send `Authorization: Bearer KEY` or `X-API-Key: KEY`",
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code.to_owned(), message: self.message.clone(), field: self.field.clone() }
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        Self::invalid(error)
    }
}

impl From<service::Error> for ApiError {
    fn from(error: service::Error) -> Self {
        use service::Error as E;
        let message = error.to_string();
        match error {
            E::Invalid(field) => Self::invalid(field),
            E::NotFound { .. } => Self::not_found(message),
            E::VersionConflict { .. } => Self::new(StatusCode::CONFLICT, "stream_version_conflict", message),
            E::Conflict(field) => {
                Self { field: Some(field.field), ..Self::new(StatusCode::CONFLICT, "conflict", message) }
            }
            E::Unavailable(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", message),
            E::StorageFull(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "storage_full", message),
            E::ShuttingDown => Self::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message),
            E::Archived(_) => Self::new(StatusCode::GONE, "archived", message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, code = self.code, message = %self.message, "request failed");
        }
        (self.status, Json(ErrorEnvelope { error: self.body() })).into_response()
    }
}
