//! Peer messages of fronts: NOTIFY and RFI (document 003) with a type a front
//! chose, the answer every one of them gets (accepted or rejected, with a
//! reason), and the registry that routes a received message to the front that
//! registered its type at this center. A type may also carry a blob
//! source: raw bytes by key, pulled by peers with `GET
//! /mesh/v1/blob/<type>/<key>?offset=` (no JSON, no base64).
//!
//! Which (verb, type) goes where, and the wire types, are proto's
//! (`mesh::floods::Fronts`, `wire::flood`); this registry holds each type's
//! handler and runs it for the mesh (`peer/mesh/notify.rs`). Must never: let two fronts, or a front
//! and the node, register one (verb, type); let a handler run without a
//! deadline ([`PEER_HANDLER_TIMEOUT`]).

use regmesh_proto::mesh::floods::Fronts;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use regmesh_proto::mesh::floods::{RegisterError, BUILTIN};
pub use regmesh_proto::wire::flood::{
    valid_type, Answer as PeerAnswer, Verb as PeerVerb, MESSAGE_BYTES_MAX as PEER_MESSAGE_BYTES_MAX,
    TYPE_BYTES_MAX as PEER_TYPE_BYTES_MAX,
};

/// How long a front's handler may take to answer; then the message is
/// answered rejected (the handler's work is cancelled).
pub const PEER_HANDLER_TIMEOUT: Duration = Duration::from_secs(5);

/// A boxed future a handler returns.
pub type AnswerFuture = Pin<Box<dyn Future<Output = PeerAnswer> + Send + 'static>>;

/// Handles one registered message type: gets the sending peer's center id
/// (already authenticated by mutual TLS and its token) and the message
/// (a JSON object with its `type`), and answers. Closures
/// `Fn(String, Value) -> impl Future<Output = PeerAnswer>` implement it.
pub trait PeerHandler: Send + Sync + 'static {
    fn handle(&self, from: String, msg: Value) -> AnswerFuture;
}

impl<F, Fut> PeerHandler for F
where
    F: Fn(String, Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = PeerAnswer> + Send + 'static,
{
    fn handle(&self, from: String, msg: Value) -> AnswerFuture {
        Box::pin(self(from, msg))
    }
}

/// Most bytes of one blob answer (under the peer client's answer limit).
pub const PEER_BLOB_BYTES_MAX: usize = 4 << 20;
/// Longest blob key, bytes (`[0-9A-Za-z._-]`).
pub const PEER_BLOB_KEY_BYTES_MAX: usize = 128;

/// Part of a blob: its total length and at most [`PEER_BLOB_BYTES_MAX`]
/// bytes from the offset asked for. On the wire: the total as 8 bytes big
/// endian, then the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerBlob {
    pub total: u64,
    pub data: bytes::Bytes,
}

/// Serves a type's blobs: gets the asking peer's authenticated center id,
/// the key and the offset; answers the part from the offset, or why not
/// (nothing changes either way). Closures `Fn(&str, &str, u64) ->
/// Result<PeerBlob, String>` implement it. Must answer without blocking.
pub trait PeerBlobSource: Send + Sync + 'static {
    fn blob(&self, from: &str, key: &str, offset: u64) -> Result<PeerBlob, String>;
}

impl<F> PeerBlobSource for F
where
    F: Fn(&str, &str, u64) -> Result<PeerBlob, String> + Send + Sync + 'static,
{
    fn blob(&self, from: &str, key: &str, offset: u64) -> Result<PeerBlob, String> {
        self(from, key, offset)
    }
}

/// Whether `key` may name a blob.
pub fn valid_blob_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= PEER_BLOB_KEY_BYTES_MAX
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// One message type a front handles.
#[derive(Clone)]
pub struct PeerMessage {
    pub verb: PeerVerb,
    pub typ: String,
    pub handler: Arc<dyn PeerHandler>,
    /// Raw bytes served under this type, if any.
    pub blobs: Option<Arc<dyn PeerBlobSource>>,
}

impl PeerMessage {
    pub fn new(verb: PeerVerb, typ: impl Into<String>, handler: impl PeerHandler) -> Self {
        PeerMessage {
            verb,
            typ: typ.into(),
            handler: Arc::new(handler),
            blobs: None,
        }
    }

    /// A type whose blobs `source` serves; an RFI of this type is
    /// answered rejected (the bytes travel by the blob path only).
    pub fn blobs(typ: impl Into<String>, source: impl PeerBlobSource) -> Self {
        let typ = typ.into();
        let why = format!("{typ} is read with GET /mesh/v1/blob/{typ}/<key>");
        PeerMessage {
            verb: PeerVerb::Rfi,
            handler: Arc::new(move |_: String, _: Value| {
                let why = why.clone();
                async move { PeerAnswer::rejected(why) }
            }),
            typ,
            blobs: Some(Arc::new(source)),
        }
    }
}

/// Which front handles which (verb, type) at this center: the types as
/// proto's [`Fronts`] decides them, and each one's handler.
#[derive(Default)]
pub struct PeerMessages {
    fronts: Fronts,
    handlers: HashMap<(PeerVerb, String), (String, Arc<dyn PeerHandler>)>,
    blobs: HashMap<String, Arc<dyn PeerBlobSource>>,
}

impl PeerMessages {
    /// Registers `m` for front `front`.
    pub fn register(&mut self, front: &str, m: PeerMessage) -> Result<(), RegisterError> {
        self.fronts.register(front, m.verb, &m.typ)?;
        if let Some(b) = m.blobs {
            self.blobs.insert(m.typ.clone(), b);
        }
        self.handlers.insert((m.verb, m.typ), (front.to_string(), m.handler));
        Ok(())
    }

    /// The registered types (for the mesh's dispatch).
    pub fn fronts(&self) -> &Fronts {
        &self.fronts
    }

    /// Part of blob `key` of type `typ` for peer `from`; None if no front
    /// serves blobs of `typ`.
    pub fn blob(&self, typ: &str, from: &str, key: &str, offset: u64) -> Option<Result<PeerBlob, String>> {
        let src = self.blobs.get(typ)?;
        Some(if valid_blob_key(key) {
            src.blob(from, key, offset).and_then(|b| {
                if b.data.len() > PEER_BLOB_BYTES_MAX {
                    Err(format!("blob part over {PEER_BLOB_BYTES_MAX} bytes"))
                } else {
                    Ok(b)
                }
            })
        } else {
            Err(format!(
                "blob key {key:?} is not 1 to {PEER_BLOB_KEY_BYTES_MAX} of [0-9A-Za-z._-]"
            ))
        })
    }

    /// Runs the handler registered for (`verb`, `typ`) with its deadline;
    /// None if no front registered it.
    pub async fn dispatch(&self, verb: PeerVerb, typ: &str, from: &str, msg: Value) -> Option<PeerAnswer> {
        let (front, h) = self.handlers.get(&(verb, typ.to_string()))?;
        let fut = h.handle(from.to_string(), msg);
        Some(match tokio::time::timeout(PEER_HANDLER_TIMEOUT, fut).await {
            Ok(a) => a,
            Err(_) => {
                tracing::warn!(front = %front, verb = verb.name(), typ, from, "peer message handler timed out");
                PeerAnswer::rejected(format!(
                    "{} {typ:?} was not handled within {} ms",
                    verb.name(),
                    PEER_HANDLER_TIMEOUT.as_millis()
                ))
            }
        })
    }
}

/// Builds the body of a message: `fields` (an object) with `type` set.
pub fn message_body(typ: &str, fields: Value) -> Result<Value, String> {
    let mut m = match fields {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        _ => return Err("a peer message's fields must be a JSON object".into()),
    };
    if m.get("type").is_some_and(|t| t != typ) {
        return Err("the fields must not carry another \"type\"".into());
    }
    m.insert("type".into(), json!(typ));
    Ok(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn routes_by_verb_and_type_and_refuses_clashes() {
        let mut reg = PeerMessages::default();
        reg.register(
            "rd",
            PeerMessage::new(PeerVerb::Notify, "rd.moved", |from: String, msg: Value| async move {
                PeerAnswer::with_data(json!({"from": from, "n": msg["n"]}))
            }),
        )
        .unwrap();
        let a = reg
            .dispatch(PeerVerb::Notify, "rd.moved", "c2", json!({"type": "rd.moved", "n": 3}))
            .await
            .unwrap();
        assert_eq!(a.to_json(), json!({"accepted": true, "data": {"from": "c2", "n": 3}}));
        assert!(reg.dispatch(PeerVerb::Rfi, "rd.moved", "c2", json!({})).await.is_none());
        let noop = |_: String, _: Value| async { PeerAnswer::accepted() };
        assert!(matches!(
            reg.register("dns", PeerMessage::new(PeerVerb::Notify, "rd.moved", noop)),
            Err(RegisterError::Taken { .. })
        ));
        assert!(matches!(
            reg.register("dns", PeerMessage::new(PeerVerb::Notify, "state", noop)),
            Err(RegisterError::Taken { .. })
        ));
        assert!(matches!(
            reg.register("dns", PeerMessage::new(PeerVerb::Rfi, "Zone Transfer", noop)),
            Err(RegisterError::BadType { .. })
        ));
        reg.register("dns", PeerMessage::new(PeerVerb::Rfi, "rd.moved", noop))
            .unwrap();
    }

    #[test]
    fn blobs_are_served_by_key_within_the_limit() {
        let mut reg = PeerMessages::default();
        let src = |from: &str, key: &str, offset: u64| {
            if from != "c1" {
                return Err(format!("{from} may not"));
            }
            let n = if key == "big" { PEER_BLOB_BYTES_MAX + 1 } else { 3 };
            Ok(PeerBlob {
                total: n as u64,
                data: bytes::Bytes::from(vec![7u8; n.saturating_sub(offset as usize)]),
            })
        };
        reg.register("rpki", PeerMessage::blobs("rpki.blob", src)).unwrap();
        let b = reg.blob("rpki.blob", "c1", "ab", 1).unwrap().unwrap();
        assert_eq!((b.total, b.data.len()), (3, 2));
        assert!(reg
            .blob("rpki.blob", "c2", "ab", 0)
            .unwrap()
            .unwrap_err()
            .contains("c2 may not"));
        assert!(
            reg.blob("rpki.blob", "c1", "big", 0).unwrap().is_err(),
            "over the part limit"
        );
        for bad in ["", "a/b", "a b", &"x".repeat(PEER_BLOB_KEY_BYTES_MAX + 1)] {
            assert!(reg.blob("rpki.blob", "c1", bad, 0).unwrap().is_err(), "{bad:?}");
        }
        assert!(reg.blob("other", "c1", "ab", 0).is_none());
        // The type is taken for RFIs too, answered with where to read it.
        assert!(matches!(
            reg.register(
                "dns",
                PeerMessage::new(PeerVerb::Rfi, "rpki.blob", |_: String, _: Value| async {
                    PeerAnswer::accepted()
                })
            ),
            Err(RegisterError::Taken { .. })
        ));
    }

    #[test]
    fn answers_and_bodies() {
        let a = PeerAnswer::rejected("no");
        assert_eq!(PeerAnswer::from_json(&a.to_json()), Some(a));
        assert_eq!(PeerAnswer::from_json(&json!({"x": 1})), None);
        assert_eq!(
            message_body("t", json!({"a": 1})).unwrap(),
            json!({"type": "t", "a": 1})
        );
        assert!(message_body("t", json!({"type": "u"})).is_err());
        assert!(message_body("t", json!([1])).is_err());
    }
}
