//! Diagnostics that answer operators' questions (document 000 §2.8.1): why
//! a record differs across centers (`record`), and how the mesh stands
//! (`mesh`: centers, states, a lag matrix, links whose digests disagree).
//!
//! The center asks every peer for its own view with an RFI of a type the
//! node registers itself (`diagnose.record`, `diagnose.mesh`), each call
//! bounded by [`DIAGNOSE_DEADLINE`], and explains the differences with pure
//! functions (`record::explain`, `mesh::summarize`) that tests call alone.
//!
//! Must never: change state (every answer is read from indexes, marks and
//! config), or wait on a peer without a deadline.

pub mod mesh;
pub mod record;

use crate::center::ReadError;
use crate::messages::{message_body, PeerAnswer, PeerMessage, PeerVerb};
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
    Answered(T),
    Unreachable { center: String, why: String },
}

/// The node's own RFI types: each peer answers `diagnose.record` and
/// `diagnose.mesh` with its view. The handlers hold the mesh weakly (the
/// mesh holds them).
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
                    Ok(view) => PeerAnswer::with_data(serde_json::to_value(view).expect("a view serializes")),
                    Err(e) => PeerAnswer::rejected(e.to_string()),
                }
            }
        }),
        PeerMessage::new(PeerVerb::Rfi, RFI_MESH, move |_from: String, _msg: Value| {
            let weak: Weak<Mesh> = w2.clone();
            async move {
                match weak.upgrade() {
                    Some(mesh) => PeerAnswer::with_data(
                        serde_json::to_value(mesh::local(&mesh.center, Some(&mesh))).expect("a view serializes"),
                    ),
                    None => PeerAnswer::rejected("the center is shutting down"),
                }
            }
        }),
    ]
}

/// Sends RFI `typ` with `fields` to every peer at once, each bounded by
/// [`DIAGNOSE_DEADLINE`], and decodes each answer's data as `T`.
pub(crate) async fn ask_peers<T: serde::de::DeserializeOwned>(mesh: &Mesh, typ: &str, fields: Value) -> Vec<Asked<T>> {
    let body = serde_json::to_vec(&message_body(typ, fields).expect("fields are an object")).expect("JSON serializes");
    let calls = mesh.peers().into_iter().map(|p| {
        let (to, body) = (p.cfg.id.clone(), body.clone());
        async move {
            let unreachable = |why: String| Asked::Unreachable {
                center: to.clone(),
                why,
            };
            match tokio::time::timeout(DIAGNOSE_DEADLINE, mesh.send_message(&to, PeerVerb::Rfi, body)).await {
                Err(_) => unreachable(format!("no answer within {} ms", DIAGNOSE_DEADLINE.as_millis())),
                Ok(Err(e)) => unreachable(e.to_string()),
                Ok(Ok(a)) if !a.accepted => unreachable(format!(
                    "refused: {}",
                    a.reason.unwrap_or_else(|| "no reason given".into())
                )),
                Ok(Ok(a)) => match a.data.map(serde_json::from_value::<T>) {
                    Some(Ok(v)) => Asked::Answered(v),
                    Some(Err(e)) => unreachable(format!("answered something unreadable: {e}")),
                    None => unreachable("answered without data".into()),
                },
            }
        }
    });
    futures_util::future::join_all(calls).await
}
