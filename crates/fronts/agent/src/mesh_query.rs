//! The asking side of `?scope=mesh` on `GET /v1/agents/{id}` and
//! `GET /v1/agents` (document 000 §3.3.2's hybrid, §4.1.4's fallback when
//! the local copy is incomplete): this center's copy, plus the RFI
//! `agent.query` (`mesh_answer.rs`) sent to every peer, merged.
//!
//! - Every peer is asked at once, at most [`FANOUT_MAX`] calls in flight,
//!   all under one [`DEADLINE`]; a peer that fails, refuses or is late is
//!   listed in `not_answered` with why.
//! - Merge: per id the highest version wins; at equal versions a whole
//!   record beats a projection, and this center's copy beats a peer's.
//!   Every item says where it came from (`source`), its `origin`, whether
//!   it is `stale`, and whether parts were withheld (`partial`).
//! - What a peer supplied is kept in the [`FetchCache`]; a later mesh
//!   lookup of that id within the TTL is answered from it, with its age,
//!   and asks nobody.
//!
//! Must never: wait on a peer past the deadline, hold more than
//! [`ITEMS_MAX`] items per answer, or store what a peer answered as a
//! record.

use crate::fetch_cache::FetchCache;
use crate::mesh_answer::{Query, ITEMS_MAX, RFI_QUERY};
use regmesh_node::messages::PeerVerb;
use regmesh_node::NodeHandle;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a mesh query waits for the peers' answers, in all.
pub const DEADLINE: Duration = Duration::from_secs(2);
/// Most calls in flight at once.
pub const FANOUT_MAX: usize = 16;

/// What the peers said.
#[derive(Debug, Default)]
pub struct Asked {
    /// Peers asked, in config order.
    pub asked: Vec<String>,
    pub answered: Vec<String>,
    /// `(peer, why)` for each peer that gave no usable answer.
    pub not_answered: Vec<(String, String)>,
    /// `(peer, item)`: the items answered.
    pub items: Vec<(String, Value)>,
    /// A peer answered only part of what matched.
    pub truncated: bool,
}

impl Asked {
    /// The `asked`, `answered`, `not_answered` fields of an answer.
    pub fn report(&self) -> Value {
        json!({
            "asked": self.asked,
            "answered": self.answered,
            "not_answered": self.not_answered.iter()
                .map(|(c, why)| json!({"center": c, "why": why})).collect::<Vec<_>>(),
        })
    }
}

/// Asks every peer `query`, bounded as the module says.
pub async fn ask(node: &NodeHandle, query: &Query) -> Asked {
    let mut out = Asked::default();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let permits = Arc::new(tokio::sync::Semaphore::new(FANOUT_MAX));
    let mut calls = tokio::task::JoinSet::new();
    for p in node.peers() {
        out.asked.push(p.id.clone());
        let (node, fields, permits) = (node.clone(), query.fields(), permits.clone());
        calls.spawn(async move {
            let call = async {
                let _permit = permits.acquire().await.expect("never closed");
                node.send(&p.id, PeerVerb::Rfi, RFI_QUERY, fields).await
            };
            let got = tokio::time::timeout_at(deadline, call).await;
            (p.id, got)
        });
    }
    let mut answered = BTreeMap::new();
    while let Some(joined) = calls.join_next().await {
        let Ok((peer, got)) = joined else { continue };
        let why = match got {
            Err(_) => format!("no answer within {} ms", DEADLINE.as_millis()),
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(a)) if !a.accepted => format!("refused: {}", a.reason.unwrap_or_default()),
            Ok(Ok(a)) => match a.data.as_ref().and_then(|d| d["items"].as_array()) {
                Some(items) => {
                    let items: Vec<Value> = items
                        .iter()
                        .filter(|i| well_formed(i))
                        .take(ITEMS_MAX)
                        .cloned()
                        .collect();
                    out.truncated |= a.data.as_ref().is_some_and(|d| d["truncated"] == true);
                    answered.insert(peer, items);
                    continue;
                }
                None => "answered without items".to_string(),
            },
        };
        out.not_answered.push((peer, why));
    }
    // Config order, not arrival order, so answers read the same each time.
    for peer in &out.asked {
        if let Some(items) = answered.remove(peer) {
            out.answered.push(peer.clone());
            out.items.extend(items.into_iter().map(|i| (peer.clone(), i)));
        }
    }
    out.not_answered
        .sort_by_key(|(p, _)| out.asked.iter().position(|a| a == p));
    out
}

/// An item has the envelope every answer carries.
fn well_formed(i: &Value) -> bool {
    ["id", "origin", "version"].iter().all(|f| i[f].is_string())
}

/// A version's text `wall_ms.logical`, as a sortable pair.
fn version_of(item: &Value) -> (u64, u64) {
    let text = item["version"].as_str().unwrap_or_default();
    let (w, l) = text.split_once('.').unwrap_or((text, "0"));
    (w.parse().unwrap_or(0), l.parse().unwrap_or(0))
}

/// Merges `(source, item)` pairs into one item per id, as the module says;
/// `me` is this center. Each kept item gets `source` and `partial`.
pub fn merge(me: &str, items: impl IntoIterator<Item = (String, Value)>) -> BTreeMap<String, Value> {
    let rank = |source: &str, item: &Value| (version_of(item), item["partial"] != true, source == me);
    let mut out: BTreeMap<String, (String, Value)> = BTreeMap::new();
    for (source, item) in items {
        let id = item["id"].as_str().unwrap_or_default().to_string();
        let better = out
            .get(&id)
            .is_none_or(|(s, held)| rank(&source, &item) > rank(s, held));
        if better {
            out.insert(id, (source, item));
        }
    }
    out.into_iter()
        .map(|(id, (source, mut item))| {
            item["source"] = json!(source);
            item["partial"] = json!(item["partial"] == true);
            if item.get("stale").is_none() {
                item["stale"] = json!(false);
            }
            (id, item)
        })
        .collect()
}

/// This center's copy of `r` as a mesh answer's item.
pub fn local_item(node: &NodeHandle, r: &regmesh_core::Record) -> Value {
    let stale = node.is_stale(r);
    let mut v = regmesh_core::kind::view(r, stale);
    v["stale"] = json!(stale);
    v
}

/// Caches every item a peer supplied (not this center's own copy).
pub fn remember(cache: &FetchCache, me: &str, items: &BTreeMap<String, Value>) {
    let now = Instant::now();
    for (id, item) in items {
        if item["source"] != me {
            cache.put(id, item.clone(), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, version: &str, partial: bool) -> Value {
        json!({"id": id, "origin": "c1", "version": version, "partial": partial})
    }

    #[test]
    fn newest_wins_then_whole_then_local() {
        let m = merge(
            "c2",
            [
                ("c2".to_string(), item("a", "10.0", false)),
                ("c1".to_string(), item("a", "10.1", true)),
                ("c1".to_string(), item("b", "5.0", true)),
                ("c3".to_string(), item("b", "5.0", false)),
                ("c3".to_string(), item("c", "7.0", false)),
                ("c2".to_string(), item("c", "7.0", false)),
            ],
        );
        assert_eq!(
            (m["a"]["source"].as_str(), m["a"]["partial"].as_bool()),
            (Some("c1"), Some(true))
        );
        assert_eq!(
            (m["b"]["source"].as_str(), m["b"]["partial"].as_bool()),
            (Some("c3"), Some(false))
        );
        assert_eq!(m["c"]["source"], "c2");
        assert_eq!(m["c"]["stale"], false);
        assert_eq!(version_of(&item("x", "100.20", false)), (100, 20));
    }
}
