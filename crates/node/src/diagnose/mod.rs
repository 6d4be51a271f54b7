//! Diagnostics that answer operators' questions (document 000 §2.8.1): why
//! a record differs across centers (`record`), and how the mesh stands
//! (`mesh`: centers, states, a lag matrix, links whose digests disagree).
//!
//! The center asks every peer for its own view with an RFI of a type the
//! node registers itself (`diagnose.record`, `diagnose.mesh`), each call
//! bounded by [`DIAGNOSE_DEADLINE`]; peers pass the question on to centers
//! only they reach (`relay`), and explains the differences with pure
//! functions (`record::explain`, `mesh::summarize`) that tests call alone.
//!
//! Must never: change state (every answer is read from indexes, marks and
//! config), or wait on a peer without a deadline.

pub mod mesh;
pub mod record;
pub mod relay;

use crate::center::ReadError;
use crate::messages::{PeerAnswer, PeerMessage, PeerVerb};
use crate::peer::mesh::Mesh;
use serde_json::Value;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long the diagnosing center waits for each peer's answer.
pub const DIAGNOSE_DEADLINE: Duration = Duration::from_secs(3);

/// The RFI type a peer answers with its view of one record.
pub const RFI_RECORD: &str = "diagnose.record";
/// The RFI type a peer answers with its view of the mesh.
pub const RFI_MESH: &str = "diagnose.mesh";

/// The name the node registers its own message types under.
pub const NODE_FRONT: &str = "node";

/// A diagnosis could not be made. Nothing changed in any case.
#[derive(Debug, thiserror::Error)]
pub enum DiagnoseError {
    /// No front registered this kind here.
    #[error("unknown kind {0:?}")]
    UnknownKind(String),
    /// The record id is not a valid one.
    #[error("invalid record id: {0}")]
    BadId(String),
    /// The local copy could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// One center's answer, or why it gave none.
#[derive(Debug, Clone)]
pub enum Asked<T> {
    /// The center itself or a direct peer answered.
    Answered(T),
    /// A center answered through relays: `via` is the path from the asking
    /// center (its first hop first); `direct` why a direct ask of it, if
    /// it is a peer, failed.
    Relayed {
        via: Vec<String>,
        answer: T,
        direct: Option<String>,
    },
    Unreachable {
        center: String,
        why: String,
    },
}

impl<T> Asked<T> {
    /// The view, however it came.
    pub fn answer(&self) -> Option<&T> {
        match self {
            Asked::Answered(v) | Asked::Relayed { answer: v, .. } => Some(v),
            Asked::Unreachable { .. } => None,
        }
    }

    /// How a center that answered through relays was reached, for notes:
    /// "not a direct peer; reached via c2" (or via c2 → c4).
    pub fn reached_note(&self, asked_by: &str) -> Option<String> {
        match self {
            Asked::Relayed { via, direct, .. } => Some(match direct {
                None => format!("not a direct peer of {asked_by}; reached via {}", via.join(" → ")),
                Some(why) => format!(
                    "no direct answer to {asked_by} ({why}); reached via {}",
                    via.join(" → ")
                ),
            }),
            _ => None,
        }
    }
}

/// The node's own RFI types: each peer answers `diagnose.record` and
/// `diagnose.mesh` with its view, and the views it gathers from centers
/// only it reaches when the RFI carries a `reach` ([`relay`]). The
/// handlers hold the mesh weakly (the mesh holds them).
pub fn peer_messages(mesh: &Arc<Mesh>) -> Vec<PeerMessage> {
    let weak = Arc::downgrade(mesh);
    let w2 = weak.clone();
    vec![
        PeerMessage::new(PeerVerb::Rfi, RFI_RECORD, move |_from: String, msg: Value| {
            let weak: Weak<Mesh> = weak.clone();
            async move {
                let Some(mesh) = weak.upgrade() else {
                    return PeerAnswer::rejected("the center is shutting down");
                };
                let kind = msg["kind"].as_str().unwrap_or_default();
                let id = msg["id"].as_str().unwrap_or_default();
                match record::local(&mesh.center, Some(&mesh), kind, id) {
                    Ok(view) => {
                        let view = serde_json::to_value(view).expect("a view serializes");
                        PeerAnswer::with_data(
                            relay::answer(
                                &mesh,
                                RFI_RECORD,
                                &msg,
                                relay::Reach::of_message(&msg, DIAGNOSE_DEADLINE),
                                view,
                            )
                            .await,
                        )
                    }
                    Err(e) => PeerAnswer::rejected(e.to_string()),
                }
            }
        }),
        PeerMessage::new(PeerVerb::Rfi, RFI_MESH, move |_from: String, msg: Value| {
            let weak: Weak<Mesh> = w2.clone();
            async move {
                match weak.upgrade() {
                    Some(mesh) => {
                        let view =
                            serde_json::to_value(mesh::local(&mesh.center, Some(&mesh))).expect("a view serializes");
                        PeerAnswer::with_data(
                            relay::answer(
                                &mesh,
                                RFI_MESH,
                                &msg,
                                relay::Reach::of_message(&msg, DIAGNOSE_DEADLINE),
                                view,
                            )
                            .await,
                        )
                    }
                    None => PeerAnswer::rejected("the center is shutting down"),
                }
            }
        }),
    ]
}

/// Sends RFI `typ` with `fields` to every peer at once, each bounded by
/// [`DIAGNOSE_DEADLINE`], peers relaying it to centers only they reach
/// ([`relay::gather`]); if a peer did not answer, a second round asks the
/// peers that did to relay to it. Decodes each answer's data as `T`: one entry
/// per center, a direct answer before a relayed one, the shortest path
/// first, an answer before a failure.
pub(crate) async fn ask_peers<T: serde::de::DeserializeOwned>(mesh: &Mesh, typ: &str, fields: Value) -> Vec<Asked<T>> {
    let reach = relay::Reach::start(&mesh.me, DIAGNOSE_DEADLINE);
    let mut got = relay::gather(mesh, typ, &fields, &reach).await;
    // Peers that did not answer directly (a cut link): ask the peers that
    // did to relay to every center not heard from yet.
    let failed = got.iter().any(|r| r.via.is_empty() && r.view.is_none());
    if failed {
        let answered: Vec<String> = got
            .iter()
            .filter(|r| r.via.is_empty() && r.view.is_some())
            .map(|r| r.center.clone())
            .collect();
        let heard = got.iter().filter(|r| r.view.is_some()).map(|r| r.center.clone());
        let below = relay::Reach {
            hops: relay::RELAY_HOPS_MAX - 1,
            covered: std::iter::once(mesh.me.clone())
                .chain(heard)
                .take(relay::COVERED_MAX)
                .collect(),
            deadline_ms: (DIAGNOSE_DEADLINE - relay::RELAY_MARGIN).as_millis() as u64,
        };
        got.extend(relay::ask(mesh, typ, &fields, answered, DIAGNOSE_DEADLINE, Some(&below)).await);
    }
    let mut out: Vec<Asked<T>> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut direct_failed: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    // Direct answers first, then relayed ones by path length.
    got.sort_by_key(|r| (r.via.len(), r.view.is_none()));
    for r in got {
        if r.center == mesh.me {
            continue;
        }
        let why = match r.view.map(serde_json::from_value::<T>) {
            Some(Ok(v)) => {
                let entry = if r.via.is_empty() {
                    Asked::Answered(v)
                } else {
                    Asked::Relayed {
                        via: r.via.clone(),
                        answer: v,
                        direct: direct_failed.get(&r.center).cloned(),
                    }
                };
                match at.get(&r.center) {
                    Some(&i) if out[i].answer().is_some() => {}
                    Some(&i) => out[i] = entry,
                    None => {
                        at.insert(r.center.clone(), out.len());
                        out.push(entry);
                    }
                }
                continue;
            }
            Some(Err(e)) => format!("answered something unreadable: {e}"),
            None => r.unreachable.unwrap_or_else(|| "no answer".into()),
        };
        let why = if r.via.is_empty() {
            direct_failed.insert(r.center.clone(), why.clone());
            why
        } else {
            format!(
                "not a direct peer of {}; asked via {}: {why}",
                mesh.me,
                r.via.join(" → ")
            )
        };
        if let std::collections::hash_map::Entry::Vacant(e) = at.entry(r.center.clone()) {
            e.insert(out.len());
            out.push(Asked::Unreachable { center: r.center, why });
        }
    }
    out
}
