//! The peer side of `?scope=mesh` (document 000 §3.3.2, §4.1.4): the RFI
//! `agent.query`, asking for one id (`{"id"}`) or a search (`{"filters",
//! "limit"}`), answered from this center's copy with what the asking peer
//! may see under this center's export policy to it.
//!
//! - A record the policy allows whole is answered as held.
//! - A record this center originates whose own visibility the peer sees,
//!   but which has parts it may not see (an agent's capabilities marked
//!   `local` or for a group the peer is not in), is never replicated to it
//!   (`proto::policy`): here it is answered as a projection with those
//!   parts cut out (`partial`, `withheld_parts`). Only the origin cuts: a
//!   relay holds the whole signed record and answers nothing of it. The
//!   projection is unsigned; it is authenticated by the mutual-TLS call to
//!   the origin itself, and the asker never stores it as a record.
//! - A search matches a projection only on what the projection shows, so
//!   a filter on a withheld capability finds nothing.
//!
//! - With a `reach` (`regmesh_proto::reach`), the query is passed on to this
//!   center's peers not yet covered, and their answers returned as
//!   `relayed` entries (`center`, `via`, `items` or `why`), each item cut
//!   again to what this center's policy to the asker allows: a relay never
//!   passes on what it could not answer itself.
//!
//! Bounded: at most [`ITEMS_MAX`] items of its own, [`RELAYED_MAX`]
//! relayed entries, and [`ANSWER_BYTES_MAX`] bytes of items in all per
//! answer (`truncated` says so). Must never: answer anything outside the
//! asker's export policy, or change state.

use crate::kind::AGENT;
use regmesh_core::{Record, Visibility};
use regmesh_node::handle::{ExportPolicy, ListQuery, WeakNodeHandle};
use regmesh_node::messages::{PeerAnswer, PeerMessage, PeerVerb};
use regmesh_node::NodeHandle;
use regmesh_proto::reach::{Reach, RELAYED_MAX};
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};

/// The RFI type.
pub const RFI_QUERY: &str = "agent.query";
/// Most items one answer holds.
pub const ITEMS_MAX: usize = 100;
/// Most bytes of items one answer holds (the peer's answer limit is far above).
pub const ANSWER_BYTES_MAX: usize = 512 * 1024;
/// The filters a search may carry (those of `GET /v1/agents`).
pub const FILTERS: &[&str] = &["capability", "tag", "status", "origin"];

/// A received `agent.query` is not one. Nothing was read or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// `id` is not a string, or not a valid record id.
    #[error("id: {0}")]
    BadId(String),
    /// A filter this query does not know.
    #[error("unknown filter {0:?}")]
    UnknownFilter(String),
    /// A filter's value is not a string.
    #[error("filter {0} must be a string")]
    BadFilter(String),
}

/// What a peer asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    Id(String),
    Search {
        filters: Vec<(String, String)>,
        limit: usize,
    },
}

impl Query {
    /// The message fields that carry this query.
    pub fn fields(&self) -> Value {
        match self {
            Query::Id(id) => json!({ "id": id }),
            Query::Search { filters, limit } => json!({
                "filters": filters.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "limit": limit,
            }),
        }
    }

    /// Reads a query from a received message; the reason if it is not one.
    pub fn from_message(msg: &Value) -> Result<Query, QueryError> {
        if let Some(id) = msg.get("id") {
            let id = id.as_str().ok_or(QueryError::BadId("must be a string".into()))?;
            regmesh_core::validate_record_id(id).map_err(|e| QueryError::BadId(e.0))?;
            return Ok(Query::Id(id.to_string()));
        }
        let mut filters = Vec::new();
        for (k, v) in msg.get("filters").and_then(Value::as_object).into_iter().flatten() {
            if !FILTERS.contains(&k.as_str()) {
                return Err(QueryError::UnknownFilter(k.clone()));
            }
            let v = v.as_str().ok_or_else(|| QueryError::BadFilter(k.clone()))?;
            filters.push((k.clone(), v.to_string()));
        }
        let limit = msg.get("limit").and_then(Value::as_u64).unwrap_or(ITEMS_MAX as u64);
        Ok(Query::Search {
            filters,
            limit: (limit as usize).clamp(1, ITEMS_MAX),
        })
    }
}

/// The RFI `agent.query`, answered by [`answer`] with the handle the
/// front's routes run on (`node`, filled when they are built). The handler
/// holds it weakly: the mesh holds the handler, and the routes keep the
/// handle alive while the center serves.
pub fn peer_message(node: Arc<OnceLock<WeakNodeHandle>>) -> PeerMessage {
    PeerMessage::new(PeerVerb::Rfi, RFI_QUERY, move |from: String, msg: Value| {
        let node = node.get().and_then(WeakNodeHandle::upgrade);
        async move {
            match node {
                Some(node) => answer(&node, &from, &msg).await,
                None => PeerAnswer::rejected("the agent front is not serving"),
            }
        }
    })
}

/// The answer to `msg` from peer `from`: `{"items": [...], "truncated",
/// "relayed": [...]}`.
pub async fn answer(node: &NodeHandle, from: &str, msg: &Value) -> PeerAnswer {
    let Some(policy) = node.export_policy(from) else {
        return PeerAnswer::rejected(format!("{from} is not a peer of {}", node.center_id()));
    };
    let query = match Query::from_message(msg) {
        Ok(q) => q,
        Err(why) => return PeerAnswer::rejected(why.to_string()),
    };
    if !(policy.kinds.is_empty() || policy.kinds.contains(AGENT)) {
        return PeerAnswer::with_data(json!({"items": [], "truncated": false}));
    }
    let (records, mut truncated, filters) = match &query {
        Query::Id(id) => match node.get(AGENT, id) {
            Ok(r) => (r.into_iter().collect::<Vec<_>>(), false, Vec::new()),
            Err(e) => return PeerAnswer::rejected(e.to_string()),
        },
        Query::Search { filters, limit } => {
            let q = ListQuery {
                filters: filters.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
                cursor: None,
                limit: Some((*limit).min(node.limits().list_limit_max)),
            };
            match node.list(AGENT, &q) {
                Ok(p) => (p.records, p.next_cursor.is_some(), filters.clone()),
                Err(e) => return PeerAnswer::rejected(e.to_string()),
            }
        }
    };
    let mut items = Vec::new();
    let mut bytes = 0;
    for r in &records {
        let Some(item) = item_for(node, &policy, r, &filters) else {
            continue;
        };
        bytes += item.to_string().len();
        if bytes > ANSWER_BYTES_MAX || items.len() == ITEMS_MAX {
            truncated = true;
            break;
        }
        items.push(item);
    }
    let mut relayed = Vec::new();
    if let Some(reach) = Reach::of_message(msg, crate::mesh_query::DEADLINE) {
        let peers: Vec<String> = node.peers().into_iter().map(|p| p.id).collect();
        let targets: Vec<String> = peers
            .iter()
            .filter(|p| *p != from && !reach.covered.contains(*p))
            .cloned()
            .collect();
        let deadline = std::time::Duration::from_millis(reach.deadline_ms);
        let below = Reach::below(&reach.covered, reach.hops, node.center_id(), &peers, deadline);
        if let (Some(below), false) = (below, targets.is_empty()) {
            let wait = std::time::Duration::from_millis(below.deadline_ms);
            let asked = crate::mesh_query::ask_peers(node, targets, &query, wait, Some(&below)).await;
            truncated |= asked.truncated;
            let mut by_center: std::collections::BTreeMap<&str, Vec<Value>> = Default::default();
            for (center, item) in &asked.items {
                if let Some(cut) = pass_on(&policy, item, &filters) {
                    let size = cut.to_string().len();
                    if bytes + size > ANSWER_BYTES_MAX {
                        truncated = true;
                        continue;
                    }
                    bytes += size;
                    by_center.entry(center.as_str()).or_default().push(cut);
                }
            }
            let via = |c: &str| asked.via.get(c).cloned().unwrap_or_default();
            for c in &asked.answered {
                let items = by_center.remove(c.as_str()).unwrap_or_default();
                relayed.push(json!({"center": c, "via": via(c), "items": items}));
            }
            for (c, why) in &asked.not_answered {
                relayed.push(json!({"center": c, "via": via(c), "why": why}));
            }
            truncated |= relayed.len() > RELAYED_MAX;
            relayed.truncate(RELAYED_MAX);
        }
    }
    PeerAnswer::with_data(json!({"items": items, "truncated": truncated, "relayed": relayed}))
}

/// What of `item`, answered to this center by another, it may pass on to
/// an asker under `policy`: nothing if the asker may not see the whole,
/// else the item without the capabilities the asker may not see (and
/// nothing if a search's capability filter then no longer matches).
fn pass_on(policy: &ExportPolicy, item: &Value, filters: &[(String, String)]) -> Option<Value> {
    let seen = Visibility::parse(item["visibility"].as_str()?).ok()?;
    if !policy.sees(&seen) {
        return None;
    }
    let (mut cut, withheld) = project(policy, item.clone());
    if withheld > 0 {
        let names: Vec<&str> = cut["capabilities"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        if !filters
            .iter()
            .all(|(n, v)| n != "capability" || names.contains(&v.as_str()))
        {
            return None;
        }
        let before = cut["withheld_parts"].as_u64().unwrap_or(0);
        cut["partial"] = json!(true);
        cut["withheld_parts"] = json!(before + withheld as u64);
    }
    Some(cut)
}

/// What peer policy `policy` may be told of `r`: the whole view, a
/// projection (own records only), or nothing.
fn item_for(node: &NodeHandle, policy: &ExportPolicy, r: &Record, filters: &[(String, String)]) -> Option<Value> {
    let kind = node.kind(AGENT)?;
    let body = r.body_value().ok()?;
    let stale = node.is_stale(r);
    if policy.allows(r, &kind.part_visibilities(&body)) {
        let mut v = regmesh_core::kind::view(r, stale);
        v["stale"] = json!(stale);
        return Some(v);
    }
    if r.origin != node.center_id() || !policy.sees(&r.visibility) {
        return None;
    }
    let (body, withheld) = project(policy, body);
    let terms = kind.index_terms(&body);
    let shown = |name: &str, value: &str| name == "origin" || terms.iter().any(|(n, v)| *n == name && v == value);
    if !filters.iter().all(|(n, v)| shown(n, v)) {
        return None;
    }
    let cut = Record {
        body: body.to_string(),
        ..r.clone()
    };
    let mut v = regmesh_core::kind::view(&cut, stale);
    v["stale"] = json!(stale);
    v["partial"] = json!(true);
    v["withheld_parts"] = json!(withheld);
    Some(v)
}

/// `body` with the capabilities `policy` may not see cut out, and how many.
pub fn project(policy: &ExportPolicy, mut body: Value) -> (Value, usize) {
    let mut withheld = 0;
    if let Some(caps) = body.get_mut("capabilities").and_then(Value::as_array_mut) {
        caps.retain(|c| {
            let seen = c
                .get("visibility")
                .and_then(Value::as_str)
                .and_then(|v| Visibility::parse(v).ok())
                .is_some_and(|v| policy.sees(&v));
            withheld += usize::from(!seen);
            seen
        });
    }
    (body, withheld)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_cuts_what_the_peer_may_not_see() {
        let policy = ExportPolicy::new([], ["g1".to_string()]);
        let body = json!({"capabilities": [
            {"name": "a", "visibility": "public"},
            {"name": "b", "visibility": "local"},
            {"name": "c", "visibility": "authorized:g1"},
            {"name": "d", "visibility": "authorized:g2"},
            {"name": "e"},
        ]});
        let (cut, n) = project(&policy, body);
        assert_eq!(n, 3);
        let names: Vec<&str> = cut["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "c"]);
    }

    #[test]
    fn queries_round_trip_and_refuse_bad_fields() {
        for q in [
            Query::Id("a1".into()),
            Query::Search {
                filters: vec![("capability".into(), "x".into())],
                limit: 7,
            },
        ] {
            assert_eq!(Query::from_message(&q.fields()).unwrap(), q);
        }
        assert!(Query::from_message(&json!({"id": "bad id"})).is_err());
        assert!(Query::from_message(&json!({"id": 1})).is_err());
        assert!(Query::from_message(&json!({"filters": {"secret": "x"}})).is_err());
        assert_eq!(
            Query::from_message(&json!({"limit": 100000})).unwrap(),
            Query::Search {
                filters: vec![],
                limit: ITEMS_MAX
            }
        );
    }
}
