//! Aliases (document 000 §4.1.5): an operator marks agent id B an alias of
//! agent id A (`PUT /v1/agents/B/alias {"of": "A"}`), and every center then
//! answers a lookup of B with A and leaves B out of lists.
//!
//! Who writes: only B's origin. The `agent.alias` record (`alias_kind.rs`)
//! is written at the center that owns agent B, so no center can redirect
//! another center's agent; it replicates like any record of that origin.
//! An alias counts ([`target`]) only while agent B is live with the same
//! origin as the alias record, and A is live here.
//!
//! Resolution ([`resolve`]) follows at most [`DEPTH_MAX`] aliases; a cycle
//! (two origins aliasing each other's agents at once) resolves to its
//! least id at every center, so both sides agree without talking.
//!
//! Must never: write an alias for an agent another center owns, or follow
//! aliases without a bound.

use crate::alias_kind::ALIAS;
use crate::kind::AGENT;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use regmesh_node::center::Outcome;
use regmesh_node::error::ApiError;
use regmesh_node::handle::{HandleError, ListQuery};
use regmesh_node::http::{json_body, record_response, RecordId};
use regmesh_node::NodeHandle;
use serde_json::{json, Value};

/// Most aliases followed from one id.
pub const DEPTH_MAX: usize = 8;

/// Whether this center holds any alias at all (lists skip the per-record
/// check when none exists).
pub fn any(node: &NodeHandle) -> Result<bool, HandleError> {
    let q = ListQuery {
        filters: Vec::new(),
        cursor: None,
        limit: Some(1),
    };
    Ok(!node.list(ALIAS, &q)?.records.is_empty())
}

/// The id agent `id` is an alias of, if an alias of it counts here: the
/// alias record is live, agent `id` is live with the alias's origin, and the
/// target agent is live.
pub fn target(node: &NodeHandle, id: &str) -> Result<Option<String>, HandleError> {
    let Some(alias) = node.get(ALIAS, id)? else {
        return Ok(None);
    };
    let owned = node.get(AGENT, id)?.is_some_and(|a| a.origin == alias.origin);
    let of = alias
        .body_value()
        .ok()
        .and_then(|b| b.get("of").and_then(Value::as_str).map(str::to_string));
    match of {
        Some(of) if owned && node.get(AGENT, &of)?.is_some() => Ok(Some(of)),
        _ => Ok(None),
    }
}

/// The canonical id of agent `id`: itself unless an alias of it counts.
pub fn resolve(node: &NodeHandle, id: &str) -> Result<String, HandleError> {
    resolve_with(id, |x| target(node, x))
}

/// [`resolve`] over any `target` (the id an id is an alias of, if any).
pub fn resolve_with<E>(id: &str, mut target: impl FnMut(&str) -> Result<Option<String>, E>) -> Result<String, E> {
    let mut chain = vec![id.to_string()];
    loop {
        let cur = chain.last().expect("never empty").clone();
        let Some(next) = target(&cur)? else {
            return Ok(cur);
        };
        if let Some(pos) = chain.iter().position(|c| *c == next) {
            return Ok(chain[pos..].iter().min().expect("a cycle has members").clone());
        }
        if chain.len() > DEPTH_MAX {
            return Ok(id.to_string());
        }
        chain.push(next);
    }
}

/// `PUT /v1/agents/{id}/alias` with `{"of": "A"}`: marks agent `id` (owned
/// here) an alias of agent A (live here). Refusals change nothing.
pub async fn put(
    State(node): State<NodeHandle>,
    RecordId(id): RecordId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut value = json_body(&headers, body, node.limits()).await?;
    let agent = node
        .get(AGENT, &id)?
        .ok_or_else(|| ApiError::not_found(format!("agent {id} does not exist")))?;
    if agent.origin != node.center_id() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_owner",
            format!(
                "agent {id} belongs to center {}; only its origin may mark it an alias",
                agent.origin
            ),
        ));
    }
    if let Value::Object(m) = &mut value {
        // The alias is seen by whoever sees the agent it renames.
        m.insert("visibility".into(), json!(agent.visibility.to_string()));
    }
    let kind = node.kind(ALIAS).expect("the agent front registers the alias kind");
    let prepared = kind.prepare(&id, value).map_err(|e| {
        let mut err = ApiError::bad("invalid", e.to_string());
        err.field = Some(e.field);
        err
    })?;
    let of = prepared.body["of"].as_str().expect("prepare sets of").to_string();
    if node.get(AGENT, &of)?.is_none() {
        return Err(ApiError::not_found(format!("agent {of} does not exist")));
    }
    if resolve(&node, &of)? == id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "alias_cycle",
            format!("agent {of} already resolves to {id}"),
        ));
    }
    match node.put(ALIAS, &id, prepared, None).await? {
        Outcome::Created(r) => Ok(record_response(StatusCode::CREATED, &r, false)),
        Outcome::Replaced(r) => Ok(record_response(StatusCode::OK, &r, false)),
        other => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unexpected outcome {other:?}"),
        )),
    }
}

/// `GET /v1/agents/{id}/alias`: the alias record, whether it counts here,
/// and what `id` resolves to.
pub async fn get(State(node): State<NodeHandle>, RecordId(id): RecordId) -> Result<Response, ApiError> {
    let r = node
        .get(ALIAS, &id)?
        .ok_or_else(|| ApiError::not_found(format!("agent {id} is not an alias")))?;
    let mut v = regmesh_core::kind::view(&r, false);
    v["counts"] = json!(target(&node, &id)?.is_some());
    v["resolves_to"] = json!(resolve(&node, &id)?);
    Ok(axum::Json(v).into_response())
}

/// `DELETE /v1/agents/{id}/alias`: agent `id` stands for itself again
/// (only the alias's origin may; the node refuses others with 409).
pub async fn delete(State(node): State<NodeHandle>, RecordId(id): RecordId) -> Result<Response, ApiError> {
    if node.get(ALIAS, &id)?.is_none() {
        return Err(ApiError::not_found(format!("agent {id} is not an alias")));
    }
    node.delete(ALIAS, &id, None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve_in(aliases: &[(&str, &str)], id: &str) -> String {
        let m: HashMap<&str, &str> = aliases.iter().copied().collect();
        resolve_with::<()>(id, |x| Ok(m.get(x).map(|s| s.to_string()))).unwrap()
    }

    #[test]
    fn chains_cycles_and_depth() {
        assert_eq!(resolve_in(&[], "a"), "a");
        assert_eq!(resolve_in(&[("c", "b"), ("b", "a")], "c"), "a");
        // Two origins aliased each other's agents: both sides pick the least id.
        let cycle = [("b", "a"), ("a", "b")];
        assert_eq!(
            (resolve_in(&cycle, "a"), resolve_in(&cycle, "b")),
            ("a".into(), "a".into())
        );
        assert_eq!(resolve_in(&[("d", "c"), ("c", "b"), ("b", "c")], "d"), "b");
        // Longer than DEPTH_MAX: the id stands for itself.
        let ids: Vec<String> = (0..=DEPTH_MAX + 1).map(|i| format!("x{i:02}")).collect();
        let long: Vec<(&str, &str)> = ids.windows(2).map(|w| (w[0].as_str(), w[1].as_str())).collect();
        assert_eq!(resolve_in(&long, "x00"), "x00");
        assert_eq!(resolve_in(&long[..3], "x00"), "x03");
    }
}
