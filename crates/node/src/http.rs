//! HTTP helpers for the client API and the fronts' routes, so that every
//! front answers like the node: the record id from the path ([`RecordId`],
//! the one place it is extracted), JSON bodies under the configured limits,
//! `If-Match`, record responses with their `ETag`, and the error bodies of
//! [`HandleError`]s. Must never: change state (these only read requests and
//! shape responses).

use crate::config::Config;
use crate::error::ApiError;
use crate::handle::HandleError;
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use regmesh_core::kind::view_json;
use regmesh_core::{Hlc, Record};
use serde_json::Value;
use std::time::Duration;

/// The client API's limits a front's handlers apply.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// Largest request body, bytes (`api.max_body_bytes`).
    pub max_body_bytes: usize,
    /// Deadline for receiving a body (`api.body_timeout_ms`).
    pub body_timeout: Duration,
    /// Page size when a list names none (`limits.list_limit_default`).
    pub list_limit_default: usize,
    /// Largest page size (`limits.list_limit_max`).
    pub list_limit_max: usize,
}

impl ApiLimits {
    pub fn from_config(cfg: &Config) -> Self {
        ApiLimits {
            max_body_bytes: cfg.api.max_body_bytes,
            body_timeout: Duration::from_millis(cfg.api.body_timeout_ms),
            list_limit_default: cfg.limits.list_limit_default,
            list_limit_max: cfg.limits.list_limit_max,
        }
    }
}

/// The record id of a route's single `{id}` path parameter, exactly as
/// written in the path (never percent-decoded: [`crate::id_path`]), checked as
/// a record id. Refusals are 400 `invalid_id` (with `field: "id"` when the id
/// itself is bad).
pub struct RecordId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RecordId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // The raw path segment, never percent-decoded (crate::id_path).
        let crate::id_path::IdPath(id) = crate::id_path::IdPath::from_request_parts(parts, state).await?;
        Ok(RecordId(id))
    }
}

/// The record's version as an `ETag` value.
pub fn etag(r: &Record) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}\"", r.version)).expect("version is ASCII")
}

/// The version an `If-Match` header asks for, if any.
pub fn if_match(headers: &HeaderMap) -> Result<Option<Hlc>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim().trim_matches('"');
    s.parse::<Hlc>()
        .map(Some)
        .map_err(|_| ApiError::bad("bad_header", "If-Match must be a version as returned in ETag"))
}

/// A response whose body is JSON text built by hand.
pub fn json_text(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

/// A record's client view with `status` and its `ETag`.
pub fn record_response(status: StatusCode, r: &Record, stale: bool) -> Response {
    let mut resp = (status, json_text(view_json(r, stale))).into_response();
    resp.headers_mut().insert(header::ETAG, etag(r));
    resp
}

/// Reads a JSON body: content type, size limit, time limit, syntax.
pub async fn json_body(headers: &HeaderMap, body: Body, limits: &ApiLimits) -> Result<Value, ApiError> {
    let (limit, deadline) = (limits.max_body_bytes, limits.body_timeout);
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime != "application/json" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type must be application/json, not {ct:?}"),
        ));
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body exceeds {limit} bytes"),
        )
    };
    if let Some(n) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
    {
        if n > limit {
            return Err(too_large());
        }
    }
    let bytes = tokio::time::timeout(deadline, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!("request body not received within {} ms", deadline.as_millis()),
            )
        })?
        .map_err(|_| too_large())?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad("malformed_json", format!("body is not valid JSON: {e}")))
}

impl From<HandleError> for ApiError {
    fn from(e: HandleError) -> Self {
        match e {
            HandleError::Write(w) => w.into(),
            HandleError::Read(r) => r.into(),
            HandleError::Claimed { .. } => ApiError::new(StatusCode::CONFLICT, "claimed", e.to_string()),
            HandleError::Undecided { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "vote_undecided", e.to_string())
            }
            HandleError::BadLimit { .. } => ApiError::bad("bad_query", e.to_string()),
            HandleError::BadCursor => ApiError::bad("bad_cursor", e.to_string()),
            HandleError::NotOwnKind { .. } | HandleError::Unexpected(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}
