//! The answers of `?scope=mesh`: `GET /v1/agents/{id}?scope=mesh` (one
//! agent, from the cache within its TTL, else from this center's copy and
//! every peer's) and `GET /v1/agents?scope=mesh&...` (a search over the
//! same, at most [`ITEMS_MAX`] items, no cursor). Each answer names the
//! peers asked, those that answered and those that did not (with why);
//! each item its `source`, `origin`, `stale` and `partial`.
//!
//! Aliases resolve as in local lookups (`alias.rs`, with this center's
//! aliases). Must never: change a record, or answer an item without its
//! source.

use crate::fetch_cache::FetchCache;
use crate::kind::AGENT;
use crate::mesh_answer::{Query, ITEMS_MAX};
use crate::mesh_query::{ask, local_item, merge, remember};
use axum::response::{IntoResponse, Response};
use axum::Json;
use regmesh_node::error::ApiError;
use regmesh_node::handle::ListQuery;
use regmesh_node::NodeHandle;
use serde_json::{json, Value};
use std::time::Instant;

/// Which copies a lookup reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This center's copy (the default).
    Local,
    /// This center's copy and every reachable peer's.
    Mesh,
}

impl Scope {
    /// Reads `?scope=`; absent means local.
    pub fn parse(v: Option<&str>) -> Result<Scope, ApiError> {
        match v {
            None | Some("local") => Ok(Scope::Local),
            Some("mesh") => Ok(Scope::Mesh),
            Some(other) => Err(ApiError::bad(
                "bad_query",
                format!("scope must be local or mesh, not {other:?}"),
            )),
        }
    }
}

/// `GET /v1/agents/{id}?scope=mesh`.
pub async fn lookup(node: &NodeHandle, cache: &FetchCache, id: &str) -> Result<Response, ApiError> {
    let canonical = crate::alias::resolve(node, id)?;
    let me = node.center_id().to_string();
    let local = node.get(AGENT, &canonical)?.map(|r| (me.clone(), local_item(node, &r)));
    let (mut found, report) = match cache.get(&canonical, Instant::now()) {
        Some((item, age)) => {
            let source = item["source"].as_str().unwrap_or_default().to_string();
            let mut m = merge(&me, local.into_iter().chain([(source, item)]));
            if let Some(i) = m.get_mut(&canonical).filter(|i| i["source"] != me.as_str()) {
                i["cached_age_ms"] = json!(age.as_millis() as u64);
            }
            (m, json!({"cached": true}))
        }
        None => {
            let asked = ask(node, &Query::Id(canonical.clone())).await;
            let m = merge(&me, local.into_iter().chain(asked.items.iter().cloned()));
            remember(cache, &me, &m);
            let mut report = asked.report();
            report["cached"] = json!(false);
            (m, report)
        }
    };
    let Some(mut item) = found.remove(&canonical) else {
        return Err(ApiError::not_found(format!(
            "agent {id} is held neither here nor at any center that answered ({report})"
        )));
    };
    if canonical != id {
        item["resolved_from"] = json!(id);
    }
    item["mesh"] = report;
    Ok(Json(item).into_response())
}

/// `GET /v1/agents?scope=mesh&...`.
pub async fn search(
    node: &NodeHandle,
    cache: &FetchCache,
    filters: Vec<(String, String)>,
    limit: Option<usize>,
) -> Result<Response, ApiError> {
    let limit = limit.unwrap_or(node.limits().list_limit_default.min(ITEMS_MAX));
    if limit == 0 || limit > ITEMS_MAX {
        return Err(ApiError::bad(
            "bad_query",
            format!("with scope=mesh, limit must be 1 to {ITEMS_MAX}"),
        ));
    }
    let me = node.center_id().to_string();
    let q = ListQuery {
        filters: filters.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
        cursor: None,
        limit: Some(limit.min(node.limits().list_limit_max)),
    };
    let page = node.list(AGENT, &q)?;
    let local_more = page.next_cursor.is_some();
    let local = page.records.iter().map(|r| (me.clone(), local_item(node, r)));
    let asked = ask(node, &Query::Search { filters, limit }).await;
    let merged = merge(&me, local.chain(asked.items.iter().cloned()));
    remember(cache, &me, &merged);
    let aliases = crate::alias::any(node)?;
    let mut items: Vec<Value> = Vec::new();
    let mut cut = local_more || asked.truncated;
    for (id, item) in merged {
        if aliases && crate::alias::resolve(node, &id)? != id {
            continue;
        }
        if items.len() == limit {
            cut = true;
            break;
        }
        items.push(item);
    }
    let mut out = asked.report();
    out["items"] = json!(items);
    out["next_cursor"] = Value::Null;
    out["scope"] = json!("mesh");
    out["truncated"] = json!(cut);
    Ok(Json(out).into_response())
}
