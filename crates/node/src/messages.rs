//! Peer messages of fronts: NOTIFY and RFI (document 003) with a type a front
//! chose, the answer every one of them gets (accepted or rejected, with a
//! reason), and the registry that routes a received message to the front that
//! registered its type at this center.
//!
//! The mesh (`peer/mesh/notify.rs`) keeps its built-in types ([`BUILTIN`]) and asks
//! this registry for every other type. Must never: let two fronts, or a front
//! and the node, register one (verb, type); let a handler run without a
//! deadline ([`PEER_HANDLER_TIMEOUT`]).

use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Largest peer message body, bytes (the peer listener reads no more).
pub const PEER_MESSAGE_BYTES_MAX: usize = 64 * 1024;
/// How long a front's handler may take to answer; then the message is
/// answered rejected (the handler's work is cancelled).
pub const PEER_HANDLER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest message type name, bytes.
pub const PEER_TYPE_BYTES_MAX: usize = 64;

/// The two kinds of peer message of document 003.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerVerb {
    /// "Here is something you should know" (a contribution, a state).
    Notify,
    /// A request for information; the answer carries `data`.
    Rfi,
}

impl PeerVerb {
    /// The path segment on the peer listener (`/mesh/v1/<segment>`).
    pub fn segment(self) -> &'static str {
        match self {
            PeerVerb::Notify => "notify",
            PeerVerb::Rfi => "rfi",
        }
    }
    /// The name in messages and logs (`NOTIFY`, `RFI`).
    pub fn name(self) -> &'static str {
        match self {
            PeerVerb::Notify => "NOTIFY",
            PeerVerb::Rfi => "RFI",
        }
    }
}

/// Types the node answers itself: NOTIFY `state`, RFI `sync-state`.
pub const BUILTIN: &[(PeerVerb, &str)] = &[(PeerVerb::Notify, "state"), (PeerVerb::Rfi, "sync-state")];

/// The answer to a peer message: `{"accepted": bool, "reason"?, "data"?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerAnswer {
    pub accepted: bool,
    /// Why it was rejected (or a note on acceptance).
    pub reason: Option<String>,
    /// What an RFI asked for.
    pub data: Option<Value>,
}

impl PeerAnswer {
    pub fn accepted() -> Self {
        PeerAnswer {
            accepted: true,
            reason: None,
            data: None,
        }
    }
    pub fn with_data(data: Value) -> Self {
        PeerAnswer {
            data: Some(data),
            ..Self::accepted()
        }
    }
    pub fn rejected(reason: impl Into<String>) -> Self {
        PeerAnswer {
            accepted: false,
            reason: Some(reason.into()),
            data: None,
        }
    }
    pub fn to_json(&self) -> Value {
        let mut v = json!({"accepted": self.accepted});
        if let Some(r) = &self.reason {
            v["reason"] = json!(r);
        }
        if let Some(d) = &self.data {
            v["data"] = d.clone();
        }
        v
    }
    /// Reads an answer; None if `v` is not one.
    pub fn from_json(v: &Value) -> Option<Self> {
        Some(PeerAnswer {
            accepted: v.get("accepted")?.as_bool()?,
            reason: v.get("reason").and_then(Value::as_str).map(str::to_string),
            data: v.get("data").cloned(),
        })
    }
}

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

/// One message type a front handles.
#[derive(Clone)]
pub struct PeerMessage {
    pub verb: PeerVerb,
    pub typ: String,
    pub handler: Arc<dyn PeerHandler>,
}

impl PeerMessage {
    pub fn new(verb: PeerVerb, typ: impl Into<String>, handler: impl PeerHandler) -> Self {
        PeerMessage {
            verb,
            typ: typ.into(),
            handler: Arc::new(handler),
        }
    }
}

/// A message type could not be registered. Nothing was registered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegisterError {
    #[error("{verb} type {typ:?} must be 1 to {PEER_TYPE_BYTES_MAX} of a-z 0-9 . -")]
    BadType { verb: &'static str, typ: String },
    #[error("{verb} type {typ:?} is already handled by {by}")]
    Taken {
        verb: &'static str,
        typ: String,
        by: String,
    },
}

/// Checks a message type name: `[a-z0-9.-]{1,64}`.
pub fn valid_type(typ: &str) -> bool {
    !typ.is_empty()
        && typ.len() <= PEER_TYPE_BYTES_MAX
        && typ
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// Which front handles which (verb, type) at this center.
#[derive(Default)]
pub struct PeerMessages {
    by_type: HashMap<(PeerVerb, String), (String, Arc<dyn PeerHandler>)>,
}

impl PeerMessages {
    /// Registers `m` for front `front`.
    pub fn register(&mut self, front: &str, m: PeerMessage) -> Result<(), RegisterError> {
        let verb = m.verb.name();
        if !valid_type(&m.typ) {
            return Err(RegisterError::BadType { verb, typ: m.typ });
        }
        if BUILTIN.contains(&(m.verb, m.typ.as_str())) {
            return Err(RegisterError::Taken {
                verb,
                typ: m.typ,
                by: "the node".into(),
            });
        }
        if let Some((by, _)) = self.by_type.get(&(m.verb, m.typ.clone())) {
            return Err(RegisterError::Taken {
                verb,
                typ: m.typ,
                by: format!("front {by}"),
            });
        }
        self.by_type.insert((m.verb, m.typ), (front.to_string(), m.handler));
        Ok(())
    }

    /// Runs the handler registered for (`verb`, `typ`) with its deadline;
    /// None if no front registered it.
    pub async fn dispatch(&self, verb: PeerVerb, typ: &str, from: &str, msg: Value) -> Option<PeerAnswer> {
        let (front, h) = self.by_type.get(&(verb, typ.to_string()))?;
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
