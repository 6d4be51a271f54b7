//! The asking side of `?scope=mesh` on `GET /v1/agents/{id}` and
//! `GET /v1/agents` (document 000 §3.3.2's hybrid, §4.1.4's fallback when
//! the local copy is incomplete): this center's copy, plus the RFI
//! `agent.query` (`mesh_answer.rs`) sent to every peer, merged.
//!
//! - Every peer is asked at once, at most [`FANOUT_MAX`] calls in flight,
//!   all under one [`DEADLINE`]; a peer that fails, refuses or is late is
//!   listed in `not_answered` with why.
//! - Each peer passes the query on to its own peers not yet covered
//!   (`regmesh_proto::reach`); their answers come back as `relayed` entries, and
//!   `via` names, per center reached through others, the relays between.
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
use regmesh_proto::reach::{Reach, RELAYED_MAX};
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
    /// Centers that answered: the peers, then those reached through them.
    pub answered: Vec<String>,
    /// Per center reached through others, the relays between (first: the peer).
    pub via: BTreeMap<String, Vec<String>>,
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
            "via": self.via,
            "not_answered": self.not_answered.iter()
                .map(|(c, why)| json!({"center": c, "why": why})).collect::<Vec<_>>(),
        })
    }
}

/// Asks every peer `query`, bounded as the module says, each passing it on
/// as far as a fresh [`Reach`] allows.
pub async fn ask(node: &NodeHandle, query: &Query) -> Asked {
    let peers: Vec<String> = node.peers().into_iter().map(|p| p.id).collect();
    let below = Reach::below(
        &Default::default(),
        regmesh_proto::reach::HOPS_MAX,
        node.center_id(),
        &peers,
        DEADLINE,
    );
    ask_peers(node, peers, query, DEADLINE, below.as_ref()).await
}

/// Asks `targets` (peers) `query` within `deadline`, with `below` as the
/// reach they pass it on with (None: they answer alone).
pub async fn ask_peers(
    node: &NodeHandle,
    targets: Vec<String>,
    query: &Query,
    deadline: Duration,
    below: Option<&Reach>,
) -> Asked {
    let mut out = Asked::default();
    let mut fields = query.fields();
    if let Some(b) = below {
        fields["reach"] = serde_json::to_value(b).expect("a reach serializes");
    }
    let until = tokio::time::Instant::now() + deadline;
    let permits = Arc::new(tokio::sync::Semaphore::new(FANOUT_MAX));
    let mut calls = tokio::task::JoinSet::new();
    for p in targets {
        out.asked.push(p.clone());
        let (node, fields, permits) = (node.clone(), fields.clone(), permits.clone());
        calls.spawn(async move {
            let call = async {
                let _permit = permits.acquire().await.expect("never closed");
                node.send(&p, PeerVerb::Rfi, RFI_QUERY, fields).await
            };
            let got = tokio::time::timeout_at(until, call).await;
            (p, got)
        });
    }
    let mut answered = BTreeMap::new();
    let mut relayed_why = Vec::new();
    while let Some(joined) = calls.join_next().await {
        let Ok((peer, got)) = joined else { continue };
        let why = match got {
            Err(_) => format!("no answer within {} ms", deadline.as_millis()),
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(a)) if !a.accepted => format!("refused: {}", a.reason.unwrap_or_default()),
            Ok(Ok(a)) => match a.data.as_ref().and_then(|d| d["items"].as_array()) {
                Some(items) => {
                    let data = a.data.as_ref().expect("matched above");
                    out.truncated |= data["truncated"] == true;
                    let mut got = vec![(peer.clone(), Vec::new(), Ok(items_of(items)))];
                    for r in data["relayed"].as_array().into_iter().flatten().take(RELAYED_MAX) {
                        let Some(center) = r["center"].as_str() else { continue };
                        let mut via = vec![peer.clone()];
                        via.extend(
                            r["via"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|v| v.as_str().map(String::from)),
                        );
                        out.truncated |= r["truncated"] == true;
                        let what = match r["items"].as_array() {
                            Some(items) => Ok(items_of(items)),
                            None => Err(r["why"].as_str().unwrap_or("no reason given").to_string()),
                        };
                        got.push((center.to_string(), via, what));
                    }
                    answered.insert(peer, got);
                    continue;
                }
                None => "answered without items".to_string(),
            },
        };
        out.not_answered.push((peer, why));
    }
    // Config order, not arrival order, so answers read the same each time.
    let mut reached = Vec::new();
    for peer in &out.asked {
        for (center, via, what) in answered.remove(peer).into_iter().flatten() {
            if center == node.center_id()
                || out.via.contains_key(&center)
                || out.asked.contains(&center) && !via.is_empty()
            {
                continue;
            }
            if !via.is_empty() {
                out.via.insert(center.clone(), via);
            }
            match what {
                Ok(items) => {
                    reached.push(center.clone());
                    out.items.extend(items.into_iter().map(|i| (center.clone(), i)));
                }
                Err(why) => relayed_why.push((center, why)),
            }
        }
    }
    let direct: Vec<String> = reached.iter().filter(|c| !out.via.contains_key(*c)).cloned().collect();
    out.answered = direct;
    out.answered
        .extend(reached.into_iter().filter(|c| out.via.contains_key(c)));
    out.not_answered
        .sort_by_key(|(p, _)| out.asked.iter().position(|a| a == p));
    out.not_answered.extend(relayed_why);
    out
}

/// The well-formed items of an answer, at most [`ITEMS_MAX`].
fn items_of(items: &[Value]) -> Vec<Value> {
    items
        .iter()
        .filter(|i| well_formed(i))
        .take(ITEMS_MAX)
        .cloned()
        .collect()
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
