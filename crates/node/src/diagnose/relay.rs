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
use std::time::Duration;

pub use regmesh_proto::reach::{Reach, COVERED_MAX, HOPS_MAX as RELAY_HOPS_MAX, MARGIN as RELAY_MARGIN, RELAYED_MAX};

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
    let peers: Vec<String> = mesh.peers().iter().map(|p| p.cfg.id.clone()).collect();
    let below = Reach::below(&reach.covered, reach.hops, &mesh.me, &peers, deadline);
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
        let r = Reach::of_message(&msg, crate::diagnose::DIAGNOSE_DEADLINE).unwrap();
        assert_eq!((r.hops, r.deadline_ms), (RELAY_HOPS_MAX, 3000));
        assert!(Reach::of_message(&serde_json::json!({"reach": "far"}), crate::diagnose::DIAGNOSE_DEADLINE).is_none());
        assert!(Reach::of_message(&serde_json::json!({}), crate::diagnose::DIAGNOSE_DEADLINE).is_none());
        let many: Vec<String> = (0..=COVERED_MAX).map(|i| format!("c{i}")).collect();
        let msg = serde_json::json!({"reach": {"hops": 1, "covered": many, "deadline_ms": 1000}});
        assert!(Reach::of_message(&msg, crate::diagnose::DIAGNOSE_DEADLINE).is_none());
    }
}
