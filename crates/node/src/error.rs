//! The client API's error body: `{"error": {"code", "message", "field"?}}`
//! with the matching HTTP status. Every refusal goes through here.

use crate::center::{ReadError, WriteError};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if let Some(f) = self.field {
            body["error"]["field"] = f.into();
        }
        let mut r = (self.status, axum::Json(body)).into_response();
        match self.status {
            StatusCode::SERVICE_UNAVAILABLE => {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::UNAUTHORIZED => {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"regmesh\""),
                );
            }
            // RFC 7694: say which content codings would have been read.
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                r.headers_mut()
                    .insert(header::ACCEPT_ENCODING, HeaderValue::from_static("deflate"));
            }
            _ => {}
        }
        r
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        let (status, code) = match &e {
            WriteError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            WriteError::NotOwner { .. } => (StatusCode::CONFLICT, "not_owner"),
            WriteError::VersionMismatch { .. } => (StatusCode::PRECONDITION_FAILED, "version_mismatch"),
            WriteError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            WriteError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            WriteError::Overloaded(_) => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            WriteError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            WriteError::Inactive => (StatusCode::SERVICE_UNAVAILABLE, "inactive"),
            WriteError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
            WriteError::Refused { .. } => (StatusCode::BAD_REQUEST, "refused"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        let (status, code) = match &e {
            ReadError::Integrity { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "integrity"),
            ReadError::Storage(_) | ReadError::Event(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
            ReadError::BadQuery(_) => (StatusCode::BAD_REQUEST, "bad_query"),
        };
        ApiError::new(status, code, e.to_string())
    }
}
