//! The `{id}` of a record route, read from the raw request path. A record id
//! is exactly its path segment, never percent-decoded (`%3A` in
//! `did:web:example.com%3A8080:a1` is part of the DID), so curl, the CLI and
//! the mesh all name a record the same way. axum's `Path` decodes escapes, so
//! record routes use [`IdPath`] instead (fronts through `http::RecordId`).
//!
//! Must never: decode, normalise or otherwise rewrite the segment; or accept
//! a segment `regmesh_core::validate_record_id` refuses.

use crate::error::ApiError;
use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::StatusCode;

/// A valid record id, taken verbatim from the `{id}` segment of the route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let template = parts
            .extensions
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_string())
            .ok_or_else(|| no_id_route("no matched route"))?;
        let id = raw_segment(&template, parts.uri.path()).ok_or_else(|| no_id_route(&template))?;
        regmesh_core::validate_record_id(id).map_err(|e| {
            let mut err = ApiError::bad("invalid_id", e.0);
            err.field = Some("id".into());
            err
        })?;
        Ok(IdPath(id.to_string()))
    }
}

/// The segment of `path` in the place of `{id}` in `template`, counted from
/// the end (so a router nested under a prefix finds the same segment).
fn raw_segment<'a>(template: &str, path: &'a str) -> Option<&'a str> {
    let after = template.split('/').rev().position(|s| s == "{id}")?;
    path.split('/').rev().nth(after)
}

fn no_id_route(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("record id extractor on a route without {{id}}: {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::raw_segment;

    #[test]
    fn takes_the_segment_verbatim() {
        let t = "/v1/agents/{id}";
        assert_eq!(raw_segment(t, "/v1/agents/did:web:x%3A80:a"), Some("did:web:x%3A80:a"));
        assert_eq!(raw_segment(t, "/v1/agents/.."), Some(".."));
        assert_eq!(raw_segment(t, "/v1/agents/"), Some(""));
        let t = "/v1/agents/{id}/heartbeat";
        assert_eq!(raw_segment(t, "/v1/agents/a%2Fb/heartbeat"), Some("a%2Fb"));
        // Nested under a prefix that was stripped from the path.
        assert_eq!(raw_segment("/api/v1/agents/{id}", "/v1/agents/a1"), Some("a1"));
        assert_eq!(raw_segment("/v1/agents", "/v1/agents"), None);
    }
}
