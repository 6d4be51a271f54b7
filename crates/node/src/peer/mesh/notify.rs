//! NOTIFY and RFI in the mesh runtime: the messages peers send between
//! centers, handed to the front that registered their type, and sending
//! such messages to a peer. Must never answer a message type itself that
//! no front registered (it is rejected with a reason).

use super::Mesh;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

impl Mesh {
    /// Hands the mesh the fronts' NOTIFY/RFI types; called once, before the
    /// peer listener serves (later calls are ignored).
    pub fn set_front_messages(&self, m: Arc<crate::messages::PeerMessages>) {
        let _ = self.front_messages.set(m);
    }

    /// A message of a type the node does not answer itself: the front that
    /// registered it answers, else it is rejected with a reason.
    async fn to_front(&self, verb: crate::messages::PeerVerb, sender: &str, typ: &str, msg: Value) -> Value {
        let answer = match self.front_messages.get() {
            Some(reg) => reg.dispatch(verb, typ, sender, msg).await,
            None => None,
        };
        match answer {
            Some(a) => a.to_json(),
            None => {
                let does = match verb {
                    crate::messages::PeerVerb::Notify => "handle NOTIFY",
                    crate::messages::PeerVerb::Rfi => "answer RFI",
                };
                json!({"accepted": false, "reason": format!("{} does not {does} type {typ:?}", self.me)})
            }
        }
    }

    /// A NOTIFY from peer `sender` (document 003): `{"type", ...}`. Built in:
    /// `state` (`{"state": "active|inactive|sync"}`). Other types go to the
    /// front that registered them, else are rejected with a reason.
    pub async fn notify(&self, sender: &str, msg: Value) -> Value {
        let typ = msg.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        match typ.as_str() {
            "state" => match msg.get("state").and_then(Value::as_str) {
                Some(st @ ("active" | "inactive" | "sync")) => {
                    self.announce(sender, st);
                    json!({"accepted": true})
                }
                _ => json!({"accepted": false, "reason": "state must be active, inactive or sync"}),
            },
            "" => json!({"accepted": false, "reason": "a NOTIFY needs a type"}),
            other => {
                self.to_front(crate::messages::PeerVerb::Notify, sender, other, msg)
                    .await
            }
        }
    }

    /// An RFI (request for information) from peer `sender`. Built in:
    /// `sync-state` (our DRiP state, watermarks and peers' states), for the
    /// operator question "what is the synchronization state between centers"
    /// (document 000 §2.8.1). Other types go to the front that registered
    /// them, else are rejected with a reason.
    pub async fn rfi(&self, sender: &str, msg: Value) -> Value {
        let typ = msg.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        match typ.as_str() {
            "sync-state" => {
                let peers: Vec<Value> = self
                    .peers
                    .iter()
                    .map(|p| json!({"id": p.cfg.id, "state": p.life.lock().expect("life lock").state().as_str()}))
                    .collect();
                json!({
                    "accepted": true,
                    "data": {"id": self.me, "state": self.node_state().as_str(), "watermarks": self.marks(), "peers": peers}
                })
            }
            "" => json!({"accepted": false, "reason": "an RFI needs a type"}),
            other => self.to_front(crate::messages::PeerVerb::Rfi, sender, other, msg).await,
        }
    }

    /// Sends a NOTIFY or RFI (`body`: a JSON object with its `type`) to peer
    /// `to` and reads its answer.
    pub async fn send_message(
        &self,
        to: &str,
        verb: crate::messages::PeerVerb,
        body: Vec<u8>,
    ) -> Result<crate::messages::PeerAnswer, crate::handle::SendError> {
        use crate::handle::SendError;
        let peer = self.peer(to).ok_or_else(|| SendError::NotAPeer(to.into()))?;
        let path = format!("/mesh/v1/{}", verb.segment());
        let headers = [("drip-node-id", self.me.clone())];
        let a = peer
            .client
            .call(&self.center, Method::POST, &path, &headers, Some(body))
            .await
            .map_err(|why| SendError::Call { peer: to.into(), why })?;
        let parsed = serde_json::from_slice::<Value>(&a.body).ok();
        match parsed.as_ref().and_then(crate::messages::PeerAnswer::from_json) {
            Some(answer) if a.status == StatusCode::OK => Ok(answer),
            _ => Err(SendError::BadAnswer {
                peer: to.into(),
                status: a.status.as_u16(),
                body: String::from_utf8_lossy(&a.body[..a.body.len().min(512)]).into_owned(),
            }),
        }
    }
}
