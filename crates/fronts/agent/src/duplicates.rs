//! `GET /v1/duplicates` (document 000 §4.1.5): agents registered under
//! different ids that share an endpoint URL, an address or an agent card,
//! found in this center's copy of the whole mesh's agents, with the
//! evidence and each id's origin.
//!
//! Bounded: at most [`SCAN_MAX`] agents are read per request (the answer
//! says whether the scan was complete) and [`GROUPS_MAX`] groups returned.
//! A group whose ids all resolve to one agent (an operator marked the
//! others aliases, `alias.rs`) is still listed, as `resolved`, with its
//! canonical id. Must never change state.

use crate::kind::AGENT;
use axum::extract::State;
use axum::Json;
use regmesh_node::error::ApiError;
use regmesh_node::handle::ListQuery;
use regmesh_node::NodeHandle;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Agents read per request, at most.
pub const SCAN_MAX: usize = 100_000;
/// Groups answered, at most.
pub const GROUPS_MAX: usize = 1000;

/// What two agents may share: `(what, value)`.
fn evidence(body: &Value) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for a in body["addresses"].as_array().into_iter().flatten() {
        if let Some(a) = a.as_str() {
            out.push(("address", a.to_string()));
        }
    }
    for e in body["endpoints"].as_array().into_iter().flatten() {
        if let Some(u) = e["url"].as_str() {
            out.push(("endpoint", u.to_string()));
        }
    }
    if let Some(c) = body.get("card").filter(|c| !c.is_null()) {
        out.push(("card", c.to_string()));
    }
    out
}

/// The duplicate groups among `agents` (`(id, origin, body)`): ids that
/// share one piece of evidence, with everything they share.
pub fn find(agents: &[(String, String, Value)]) -> Vec<Value> {
    let mut by_key: BTreeMap<(&'static str, String), BTreeSet<usize>> = BTreeMap::new();
    for (i, (_, _, body)) in agents.iter().enumerate() {
        for k in evidence(body) {
            by_key.entry(k).or_default().insert(i);
        }
    }
    // One group per set of ids, with every piece of evidence they share.
    let mut groups: BTreeMap<Vec<usize>, Vec<String>> = BTreeMap::new();
    for ((what, value), ids) in by_key {
        if ids.len() > 1 {
            let shown = if what == "card" {
                "(same card)".to_string()
            } else {
                value
            };
            groups
                .entry(ids.into_iter().collect())
                .or_default()
                .push(format!("same {what} {shown}"));
        }
    }
    groups
        .into_iter()
        .take(GROUPS_MAX)
        .map(|(ids, evidence)| {
            json!({
                "ids": ids.iter().map(|&i| &agents[i].0).collect::<Vec<_>>(),
                "origins": ids.iter().map(|&i| (&agents[i].0, &agents[i].1)).collect::<BTreeMap<_, _>>(),
                "evidence": evidence,
            })
        })
        .collect()
}

/// Says whether an operator resolved group `g` with aliases: `aliases`
/// maps each aliased id to its canonical one, and `resolved` is true once
/// every id of the group resolves to one agent (`canonical`).
fn mark_resolution(node: &NodeHandle, g: &mut Value) -> Result<(), ApiError> {
    let mut aliases = BTreeMap::new();
    let mut canonical = BTreeSet::new();
    for id in g["ids"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        let c = crate::alias::resolve(node, id)?;
        if c != id {
            aliases.insert(id.to_string(), c.clone());
        }
        canonical.insert(c);
    }
    let one = canonical.len() == 1;
    g["resolved"] = json!(one);
    g["canonical"] = if one { json!(canonical.pop_first()) } else { Value::Null };
    g["aliases"] = json!(aliases);
    Ok(())
}

/// `GET /v1/duplicates`.
pub async fn list(State(node): State<NodeHandle>) -> Result<Json<Value>, ApiError> {
    let mut agents = Vec::new();
    let mut cursor: Option<String> = None;
    let page = node.limits().list_limit_max;
    loop {
        let q = ListQuery {
            filters: Vec::new(),
            limit: Some(page),
            cursor: cursor.as_deref(),
        };
        let p = node.list(AGENT, &q)?;
        for r in p.records {
            if let Ok(b) = r.body_value() {
                agents.push((r.id, r.origin, b));
            }
        }
        cursor = p.next_cursor;
        if cursor.is_none() || agents.len() >= SCAN_MAX {
            break;
        }
    }
    let mut groups = find(&agents);
    for g in &mut groups {
        mark_resolution(&node, g)?;
    }
    Ok(Json(json!({
        "groups": groups,
        "scanned": agents.len(),
        "complete": cursor.is_none(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_ids_that_share_evidence() {
        let a = |id: &str, o: &str, b: Value| (id.to_string(), o.to_string(), b);
        let agents = vec![
            a(
                "a",
                "c1",
                json!({"addresses": ["2001:db8::1"], "endpoints": [{"url": "https://x/a2a"}]}),
            ),
            a(
                "b",
                "c2",
                json!({"addresses": ["2001:db8::1"], "endpoints": [{"url": "https://x/a2a"}]}),
            ),
            a("c", "c3", json!({"addresses": ["2001:db8::2"]})),
        ];
        let g = find(&agents);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0]["ids"], json!(["a", "b"]));
        assert_eq!(g[0]["origins"], json!({"a": "c1", "b": "c2"}));
        assert_eq!(g[0]["evidence"].as_array().unwrap().len(), 2);
    }
}
