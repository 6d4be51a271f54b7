//! Diagnostics beyond the direct peers. A center reachable only through
//! relays (a line, a star, a cut link) is asked by the peers that can reach
//! it, as a vote's convergecast is (ARCHITECTURE.md, "Vote path"): the
//! asking center sends its RFI with a [`Reach`] (hops left, the centers
//! already covered, a deadline); each peer answers with its own view plus
//! what it gathered from its peers not yet covered, each entry naming the
//! path it came by. Hops ([`RELAY_HOPS_MAX`]), answers per relay
//! ([`RELAYED_MAX`]) and time (each hop [`RELAY_MARGIN`] less) are bounded.
//!
//! Must never: ask a center in the covered set, wait past the deadline it
//! was given, or change state (views are read-only).

use crate::messages::{message_body, PeerVerb};
use crate::peer::mesh::Mesh;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// How many relays deep a diagnosis reaches at most.
pub const RELAY_HOPS_MAX: u8 = 3;
/// How much less time each hop has than the one that asked it, to answer
/// in time with what it gathered.
pub const RELAY_MARGIN: Duration = Duration::from_millis(500);
/// Most relayed entries one answer carries.
pub const RELAYED_MAX: usize = 64;
/// Most centers a [`Reach`] names as covered.
pub const COVERED_MAX: usize = 1024;

/// How far a relayed diagnosis may still go; sent as the RFI's `reach`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reach {
    /// Relays left below the center that gets it (0: answer alone).
    pub hops: u8,
    /// Centers already asked or being asked by someone upstream.
    pub covered: BTreeSet<String>,
    /// Time the receiver has to answer, in ms.
    pub deadline_ms: u64,
}

impl Reach {
    /// The reach of a diagnosis started at `me`.
    pub fn start(me: &str, deadline: Duration) -> Reach {
        Reach {
            hops: RELAY_HOPS_MAX,
            covered: BTreeSet::from([me.to_string()]),
            deadline_ms: deadline.as_millis() as u64,
        }
    }

    /// The `reach` field of a received RFI, its hops and deadline capped at
    /// [`RELAY_HOPS_MAX`] and [`super::DIAGNOSE_DEADLINE`]; None when
    /// absent or unreadable (then the receiver answers alone).
    pub fn of_message(msg: &Value) -> Option<Reach> {
        let mut r: Reach = serde_json::from_value(msg.get("reach")?.clone()).ok()?;
        r.hops = r.hops.min(RELAY_HOPS_MAX);
        r.deadline_ms = r.deadline_ms.min(super::DIAGNOSE_DEADLINE.as_millis() as u64);
        (r.covered.len() <= COVERED_MAX).then_some(r)
    }
}

/// One center's answer as a relay passes it on, or why it gave none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relayed {
    pub center: String,
    /// The relays between the center that passes this on and `center`
    /// (empty: its direct peer).
    pub via: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
}

/// Asks every peer of `mesh` not covered by `reach` (RFI `typ` with
/// `fields`), each within `reach.deadline_ms`, passing on a reach one hop
/// shorter that covers this center and all its peers; returns each answer
/// and each relayed one, `via` naming the path from here.
pub async fn gather(mesh: &Mesh, typ: &str, fields: &Value, reach: &Reach) -> Vec<Relayed> {
    let targets: Vec<String> = mesh
        .peers()
        .iter()
        .map(|p| p.cfg.id.clone())
        .filter(|p| !reach.covered.contains(p))
        .collect();
    let deadline = Duration::from_millis(reach.deadline_ms);
    let below = (reach.hops > 0 && deadline > RELAY_MARGIN * 2).then(|| Reach {
        hops: reach.hops - 1,
        covered: reach
            .covered
            .iter()
            .cloned()
            .chain(std::iter::once(mesh.me.clone()))
            .chain(mesh.peers().iter().map(|p| p.cfg.id.clone()))
            .take(COVERED_MAX)
            .collect(),
        deadline_ms: (deadline - RELAY_MARGIN).as_millis() as u64,
    });
    ask(mesh, typ, fields, targets, deadline, below.as_ref()).await
}

/// Asks `targets` (peers of `mesh`), each within `deadline`, with `below`
/// as the reach they relay with (None: they answer alone).
pub async fn ask(
    mesh: &Mesh,
    typ: &str,
    fields: &Value,
    targets: Vec<String>,
    deadline: Duration,
    below: Option<&Reach>,
) -> Vec<Relayed> {
    let mut fields = fields.clone();
    if let (Some(b), Some(o)) = (below, fields.as_object_mut()) {
        o.insert("reach".into(), serde_json::to_value(b).expect("a reach serializes"));
    }
    let body = serde_json::to_vec(&message_body(typ, fields).expect("fields are an object")).expect("JSON serializes");
    let calls = targets.into_iter().map(|to| {
        let body = body.clone();
        async move {
            let gone = |why: String| {
                vec![Relayed {
                    center: to.clone(),
                    via: Vec::new(),
                    view: None,
                    unreachable: Some(why),
                }]
            };
            let a = match tokio::time::timeout(deadline, mesh.send_message(&to, PeerVerb::Rfi, body)).await {
                Err(_) => return gone(format!("no answer within {} ms", deadline.as_millis())),
                Ok(Err(e)) => return gone(e.to_string()),
                Ok(Ok(a)) if !a.accepted => {
                    return gone(format!(
                        "refused: {}",
                        a.reason.unwrap_or_else(|| "no reason given".into())
                    ))
                }
                Ok(Ok(a)) => a,
            };
            let Some(Value::Object(mut view)) = a.data else {
                return gone("answered without a view".into());
            };
            let relayed: Vec<Relayed> = view
                .remove("relayed")
                .and_then(|r| serde_json::from_value(r).ok())
                .unwrap_or_default();
            let mut out = vec![Relayed {
                center: to.clone(),
                via: Vec::new(),
                view: Some(Value::Object(view)),
                unreachable: None,
            }];
            out.extend(relayed.into_iter().take(RELAYED_MAX).map(|mut r| {
                r.via.insert(0, to.clone());
                r
            }));
            out
        }
    });
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// A relay's answer: its own `view` (a JSON object) with what it gathered
/// for `reach` under `relayed` (at most [`RELAYED_MAX`], answers first).
pub async fn answer(mesh: &Mesh, typ: &str, fields: &Value, reach: Option<Reach>, view: Value) -> Value {
    let Some(reach) = reach else { return view };
    let mut fields = fields.clone();
    if let Some(o) = fields.as_object_mut() {
        o.remove("reach");
        o.remove("type");
    }
    let mut got = gather(mesh, typ, &fields, &reach).await;
    got.sort_by_key(|r| r.view.is_none());
    got.truncate(RELAYED_MAX);
    let mut view = view;
    if let Some(o) = view.as_object_mut() {
        o.insert("relayed".into(), serde_json::to_value(got).expect("entries serialize"));
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_received_reach_is_capped_and_a_bad_one_ignored() {
        let msg = serde_json::json!({"reach": {"hops": 200, "covered": ["c1"], "deadline_ms": 600000}});
        let r = Reach::of_message(&msg).unwrap();
        assert_eq!((r.hops, r.deadline_ms), (RELAY_HOPS_MAX, 3000));
        assert!(Reach::of_message(&serde_json::json!({"reach": "far"})).is_none());
        assert!(Reach::of_message(&serde_json::json!({})).is_none());
        let many: Vec<String> = (0..=COVERED_MAX).map(|i| format!("c{i}")).collect();
        let msg = serde_json::json!({"reach": {"hops": 1, "covered": many, "deadline_ms": 1000}});
        assert!(Reach::of_message(&msg).is_none());
    }
}
