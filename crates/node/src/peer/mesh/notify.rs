//! NOTIFY and RFI in the mesh runtime: the executor of the dispatch that
//! proto's floods part decides (built-in types answered here, others handed
//! to the front that registered them, unknown ones rejected with a reason),
//! and sending such messages to a peer. Must never choose a handler itself
//! or answer a type no front registered.

use super::Mesh;
use crate::center::now_ms;
use crate::messages::{PeerAnswer, PeerBlob, PeerMessages, PeerVerb};
use hyper::{Method, StatusCode};
use regmesh_proto::mesh::floods::Command;
use regmesh_proto::wire::flood::{Message, PeerSyncState, SyncState};
use std::sync::Arc;

impl Mesh {
    /// Hands the mesh the fronts' NOTIFY/RFI types; called once, before the
    /// peer listener serves (later calls are ignored).
    pub fn set_front_messages(&self, m: Arc<PeerMessages>) {
        self.floods().set_fronts(m.fronts().clone());
        let _ = self.front_messages.set(m);
    }

    /// A NOTIFY or RFI from peer `sender` (document 003), answered as the
    /// floods part decides.
    pub async fn message(self: &Arc<Self>, sender: &str, verb: PeerVerb, message: Message) -> PeerAnswer {
        let mut out = Vec::new();
        self.floods().on_message(now_ms(), sender, verb, message, &mut out);
        let mut answer = None;
        for c in out {
            answer = Some(match c {
                Command::Answer(a) => a,
                Command::Announce { peer, state } => {
                    self.announce(&peer, state.as_str());
                    PeerAnswer::accepted()
                }
                Command::AnswerSyncState => {
                    PeerAnswer::with_data(serde_json::to_value(self.sync_state()).expect("a sync state serializes"))
                }
                Command::DeliverToFront {
                    front,
                    verb,
                    sender,
                    message,
                } => {
                    let reg = self.front_messages.get();
                    let got = match reg {
                        Some(reg) => reg.dispatch(verb, &message.typ, &sender, message.body).await,
                        None => None,
                    };
                    got.unwrap_or_else(|| {
                        PeerAnswer::rejected(format!(
                            "front {front} has no handler for {} {:?}",
                            verb.name(),
                            message.typ
                        ))
                    })
                }
                other => {
                    self.run_floods(vec![other]);
                    continue;
                }
            });
        }
        answer.unwrap_or_else(|| PeerAnswer::rejected(format!("{} gave no answer", self.me)))
    }

    /// What the built-in RFI `sync-state` answers.
    fn sync_state(&self) -> SyncState {
        SyncState {
            id: self.me.clone(),
            state: self.node_state().as_str().to_string(),
            watermarks: self.marks(),
            peers: self
                .peers()
                .iter()
                .map(|p| PeerSyncState {
                    id: p.cfg.id.clone(),
                    state: p.life.lock().expect("life lock").state().as_str().to_string(),
                })
                .collect(),
        }
    }

    /// Sends a NOTIFY or RFI (`body`: a JSON object with its `type`) to peer
    /// `to` and reads its answer.
    pub async fn send_message(
        &self,
        to: &str,
        verb: PeerVerb,
        body: Vec<u8>,
    ) -> Result<PeerAnswer, crate::handle::SendError> {
        use crate::handle::SendError;
        let peer = self.peer(to).ok_or_else(|| SendError::NotAPeer(to.into()))?;
        let path = format!("/mesh/v1/{}", verb.segment());
        let headers = [("drip-node-id", self.me.clone())];
        let a = peer
            .client
            .call(&self.center, Method::POST, &path, &headers, Some(body))
            .await
            .map_err(|why| SendError::Call { peer: to.into(), why })?;
        let parsed = serde_json::from_slice::<PeerAnswer>(&a.body).ok();
        match parsed {
            Some(answer) if a.status == StatusCode::OK => Ok(answer),
            _ => Err(SendError::BadAnswer {
                peer: to.into(),
                status: a.status.as_u16(),
                body: String::from_utf8_lossy(&a.body[..a.body.len().min(512)]).into_owned(),
            }),
        }
    }

    /// Part of a front's blob for peer `from` (the blob path's server side).
    pub fn front_blob(&self, typ: &str, from: &str, key: &str, offset: u64) -> Option<Result<PeerBlob, String>> {
        self.front_messages.get()?.blob(typ, from, key, offset)
    }

    /// Pulls part of blob `key` of type `typ` from peer `to`, raw bytes
    /// from `offset` (at most [`crate::messages::PEER_BLOB_BYTES_MAX`]).
    pub async fn fetch_blob(
        &self,
        to: &str,
        typ: &str,
        key: &str,
        offset: u64,
    ) -> Result<PeerBlob, crate::handle::SendError> {
        use crate::handle::SendError;
        if !crate::messages::valid_type(typ) || !crate::messages::valid_blob_key(key) {
            return Err(SendError::Invalid(format!("blob {typ:?}/{key:?}: bad type or key")));
        }
        let peer = self.peer(to).ok_or_else(|| SendError::NotAPeer(to.into()))?;
        let path = format!("/mesh/v1/blob/{typ}/{key}?offset={offset}");
        let headers = [("drip-node-id", self.me.clone())];
        let a = peer
            .client
            .call(&self.center, Method::GET, &path, &headers, None)
            .await
            .map_err(|why| SendError::Call { peer: to.into(), why })?;
        let bad = |why: &str| SendError::BadAnswer {
            peer: to.into(),
            status: a.status.as_u16(),
            body: format!("{why}{}", String::from_utf8_lossy(&a.body[..a.body.len().min(512)])),
        };
        if a.status != StatusCode::OK {
            return Err(bad(""));
        }
        if a.body.len() < 8 || a.body.len() - 8 > crate::messages::PEER_BLOB_BYTES_MAX {
            return Err(bad("blob answer of a wrong length: "));
        }
        let total = u64::from_be_bytes(a.body[..8].try_into().expect("8 bytes"));
        Ok(PeerBlob {
            total,
            data: a.body.slice(8..),
        })
    }
}
