//! Peer messages of part `flood` (see the module docs of `wire`): the DRiP
//! `/commit` update (its headers and its `{"records": [...]}` body) with its
//! answer, and document 003's NOTIFY and RFI with theirs.
//!
//! `/commit` headers: `DRiP-Node-ID` (the initiator), `DRiP-Node-Counter`,
//! `DRiP-Node-Counter-reset` (`true`/`false`, absent = false),
//! `DRiP-Transaction-Type` (`update`; `sync` is part `pulls`' full sync) and
//! regmesh's `RegMesh-Seq-From` (first seq of the range the message covers)
//! and `RegMesh-Reached` (the centers an earlier hop sent the whole message
//! to, comma-separated, at most [`REACHED_MAX`]: relays skip them).
//! The body carries each record as base64url (no padding) of its canonical
//! signed encoding (`regmesh_core::codec`).
//!
//! Must never: decide what is applied or relayed (part `mesh::floods` does),
//! or accept a message it cannot read whole (a bad field refuses it all).

use crate::constants::FLOOD_RECORDS_MAX;
use crate::dedup::COUNTER_MAX;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use regmesh_core::{codec, Record};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Header naming the initiator of a propagated call (DRiP §5.3).
pub const NODE_ID: &str = "drip-node-id";
/// Header carrying the initiator's counter.
pub const NODE_COUNTER: &str = "drip-node-counter";
/// Header saying the counter started over (DRiP §5.4).
pub const COUNTER_RESET: &str = "drip-node-counter-reset";
/// Header saying `update` or `sync`.
pub const TRANSACTION_TYPE: &str = "drip-transaction-type";
/// regmesh header: first seq of the range `seq_from..=counter` covered.
pub const SEQ_FROM: &str = "regmesh-seq-from";

/// regmesh header: centers already sent this whole message by its
/// initiator or an earlier relay.
pub const REACHED: &str = "regmesh-reached";
/// Most centers a `RegMesh-Reached` header names; a longer list is cut
/// (the centers left out are relayed to as if the header were absent).
pub const REACHED_MAX: usize = 64;

/// The `/commit` headers of one flood message (`update`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodHead {
    /// The center whose change this is (records all have this origin).
    pub initiator: String,
    /// `DRiP-Node-Counter`: the highest own seq in the message.
    pub counter: u64,
    /// `DRiP-Node-Counter-reset`.
    pub reset: bool,
    /// First seq of the covered range, if the message covers one.
    pub seq_from: Option<u64>,
    /// `RegMesh-Reached`: centers sent every record of this message
    /// directly by an earlier hop (sorted, at most [`REACHED_MAX`]). A
    /// relay skips them; an old peer that ignores the header relays as
    /// DRiP does.
    pub reached: Vec<String>,
}

/// A header of a flood could not be read. Nothing was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{header} must be {want}, not {got:?}")]
    Malformed {
        header: &'static str,
        want: &'static str,
        got: String,
    },
    #[error("DRiP-Node-Counter above {COUNTER_MAX}: counters wrap with DRiP-Node-Counter-reset")]
    CounterOutOfRange,
    #[error("RegMesh-Seq-From is above DRiP-Node-Counter")]
    SeqFromAboveCounter,
}

/// Reads `true`/`false` (absent: false).
pub fn flag(header: &'static str, v: Option<&str>) -> Result<bool, HeadError> {
    match v.unwrap_or("false") {
        "true" => Ok(true),
        "false" => Ok(false),
        got => Err(HeadError::Malformed {
            header,
            want: "true or false",
            got: got.into(),
        }),
    }
}

/// Reads a counter header: an unsigned integer no greater than
/// [`COUNTER_MAX`].
pub fn counter(v: Option<&str>) -> Result<u64, HeadError> {
    let v = v.ok_or(HeadError::Missing("DRiP-Node-Counter"))?;
    let c: u64 = v.parse().map_err(|_| HeadError::Malformed {
        header: "DRiP-Node-Counter",
        want: "an unsigned integer",
        got: v.into(),
    })?;
    if c > COUNTER_MAX {
        return Err(HeadError::CounterOutOfRange);
    }
    Ok(c)
}

impl FloodHead {
    /// Reads the headers through `get` (lower-case names). The transaction
    /// type is the caller's (it routes `sync` elsewhere).
    pub fn parse<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<FloodHead, HeadError> {
        let initiator = get(NODE_ID).ok_or(HeadError::Missing("DRiP-Node-ID"))?.to_string();
        let counter = counter(get(NODE_COUNTER))?;
        let reset = flag("DRiP-Node-Counter-reset", get(COUNTER_RESET))?;
        let seq_from = match get(SEQ_FROM) {
            None => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| HeadError::Malformed {
                header: "RegMesh-Seq-From",
                want: "an unsigned integer",
                got: v.into(),
            })?),
        };
        if seq_from.is_some_and(|f| f > counter) {
            return Err(HeadError::SeqFromAboveCounter);
        }
        let mut reached = Vec::new();
        for id in get(REACHED).unwrap_or("").split(',').filter(|s| !s.is_empty()) {
            if reached.len() == REACHED_MAX || regmesh_core::validate_center_id(id).is_err() {
                return Err(HeadError::Malformed {
                    header: "RegMesh-Reached",
                    want: "at most 64 comma-separated center ids",
                    got: id.chars().take(64).collect(),
                });
            }
            reached.push(id.to_string());
        }
        reached.sort();
        reached.dedup();
        Ok(FloodHead {
            initiator,
            counter,
            reset,
            seq_from,
            reached,
        })
    }

    /// The headers to send (`update`).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            (NODE_ID, self.initiator.clone()),
            (NODE_COUNTER, self.counter.to_string()),
            (COUNTER_RESET, self.reset.to_string()),
            (TRANSACTION_TYPE, "update".to_string()),
        ];
        if let Some(f) = self.seq_from {
            h.push((SEQ_FROM, f.to_string()));
        }
        if !self.reached.is_empty() {
            h.push((REACHED, self.reached.join(",")));
        }
        h
    }
}

/// One flood message: its headers and records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flood {
    pub head: FloodHead,
    pub records: Vec<Record>,
}

/// A flood body could not be read. Nothing was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is not a JSON object with a \"records\" array of strings: {0}")]
    Json(String),
    #[error("more than {FLOOD_RECORDS_MAX} records in one message")]
    TooMany,
    #[error("records[{0}] is not base64url")]
    Base64(usize),
    #[error("records[{index}]: {why}")]
    Record { index: usize, why: String },
    #[error("{kind}/{id} is from {origin:?}, but the message's initiator is {initiator:?}")]
    WrongOrigin {
        kind: String,
        id: String,
        origin: String,
        initiator: String,
    },
}

#[derive(Serialize, Deserialize)]
struct RecordsBody {
    records: Vec<String>,
}

/// Encodes a `{"records": [...]}` body.
pub fn encode_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> Vec<u8> {
    let body = RecordsBody {
        records: records.into_iter().map(|r| B64.encode(codec::encode(r))).collect(),
    };
    serde_json::to_vec(&body).expect("a list of strings serializes")
}

/// Decodes a `{"records": [...]}` body (at most [`FLOOD_RECORDS_MAX`]).
pub fn decode_records(body: &[u8]) -> Result<Vec<Record>, BodyError> {
    let b: RecordsBody = serde_json::from_slice(body).map_err(|e| BodyError::Json(e.to_string()))?;
    if b.records.len() > FLOOD_RECORDS_MAX {
        return Err(BodyError::TooMany);
    }
    b.records
        .iter()
        .enumerate()
        .map(|(index, s)| {
            let raw = B64.decode(s).map_err(|_| BodyError::Base64(index))?;
            codec::decode(&raw).map_err(|e| BodyError::Record {
                index,
                why: e.to_string(),
            })
        })
        .collect()
}

impl Flood {
    /// Reads a body for `head`; every record must be the initiator's.
    pub fn decode(head: FloodHead, body: &[u8]) -> Result<Flood, BodyError> {
        let records = decode_records(body)?;
        if let Some(r) = records.iter().find(|r| r.origin != head.initiator) {
            return Err(BodyError::WrongOrigin {
                kind: r.kind.clone(),
                id: r.id.clone(),
                origin: r.origin.clone(),
                initiator: head.initiator.clone(),
            });
        }
        Ok(Flood { head, records })
    }

    /// The body to send.
    pub fn body(&self) -> Vec<u8> {
        encode_records(&self.records)
    }
}

/// The 200 answer to a flood: `{"accepted": true, "duplicate", "applied"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloodAnswer {
    pub accepted: bool,
    /// A copy already seen: nothing was applied.
    pub duplicate: bool,
    /// Records that changed what this center holds.
    pub applied: usize,
}

/// The two kinds of peer message of document 003.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    /// "Here is something you should know" (a contribution, a state).
    Notify,
    /// A request for information; the answer carries `data`.
    Rfi,
}

impl Verb {
    /// The path segment on the peer listener (`/mesh/v1/<segment>`).
    pub fn segment(self) -> &'static str {
        match self {
            Verb::Notify => "notify",
            Verb::Rfi => "rfi",
        }
    }

    /// The verb of a path segment.
    pub fn from_segment(s: &str) -> Option<Verb> {
        match s {
            "notify" => Some(Verb::Notify),
            "rfi" => Some(Verb::Rfi),
            _ => None,
        }
    }

    /// The name in messages and logs (`NOTIFY`, `RFI`).
    pub fn name(self) -> &'static str {
        match self {
            Verb::Notify => "NOTIFY",
            Verb::Rfi => "RFI",
        }
    }
}

/// Largest NOTIFY/RFI body, bytes (the peer listener reads no more).
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024;
/// Longest message type name, bytes.
pub const TYPE_BYTES_MAX: usize = 64;

/// Checks a message type name: `[a-z0-9.-]{1,64}`.
pub fn valid_type(typ: &str) -> bool {
    !typ.is_empty()
        && typ.len() <= TYPE_BYTES_MAX
        && typ
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// A NOTIFY or RFI: a JSON object with its `type`; the other fields are
/// the type's (a front reads them).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `type`; empty when the object has none (rejected with a reason).
    pub typ: String,
    /// The whole object, `type` included.
    pub body: Value,
}

/// A NOTIFY/RFI body is not a JSON object. Nothing was done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a peer message is a JSON object with a \"type\": {0}")]
pub struct MessageError(String);

impl Message {
    /// Reads a body.
    pub fn decode(body: &[u8]) -> Result<Message, MessageError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| MessageError(e.to_string()))?;
        Message::from_value(v)
    }

    /// Reads a JSON value.
    pub fn from_value(body: Value) -> Result<Message, MessageError> {
        if !body.is_object() {
            return Err(MessageError("not an object".into()));
        }
        let typ = body.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        Ok(Message { typ, body })
    }
}

/// The built-in NOTIFY `state`: `{"type": "state", "state": "active"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StateNotice {
    pub state: String,
}

/// The `data` of the answer to the built-in RFI `sync-state` (document
/// 000 §2.8.1: "what is the synchronization state between centers").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// The answering center.
    pub id: String,
    /// Its DRiP state (`active`, `inactive`, `sync`).
    pub state: String,
    /// Its watermark per origin, its own included.
    pub watermarks: std::collections::HashMap<String, u64>,
    pub peers: Vec<PeerSyncState>,
}

/// One peer in [`SyncState`]: its lifecycle state as the answerer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSyncState {
    pub id: String,
    pub state: String,
}

/// The answer to a NOTIFY or RFI: `{"accepted": bool, "reason"?, "data"?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub accepted: bool,
    /// Why it was rejected (or a note on acceptance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What an RFI asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl Answer {
    pub fn accepted() -> Self {
        Answer {
            accepted: true,
            reason: None,
            data: None,
        }
    }

    pub fn with_data(data: Value) -> Self {
        Answer {
            data: Some(data),
            ..Self::accepted()
        }
    }

    pub fn rejected(reason: impl Into<String>) -> Self {
        Answer {
            accepted: false,
            reason: Some(reason.into()),
            data: None,
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("an answer serializes")
    }

    /// Reads an answer; None if `v` is not one.
    pub fn from_json(v: &Value) -> Option<Self> {
        Answer::deserialize(v).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    #[test]
    fn heads_round_trip_and_refuse_bad_headers() {
        let head = FloodHead {
            initiator: "c1".into(),
            counter: 9,
            reset: true,
            seq_from: Some(3),
            reached: vec!["c2".into(), "c3".into()],
        };
        let h: HashMap<&str, String> = head.headers().into_iter().collect();
        assert_eq!(h[REACHED], "c2,c3");
        assert_eq!(h[TRANSACTION_TYPE], "update");
        assert_eq!(FloodHead::parse(|n| h.get(n).map(String::as_str)), Ok(head));
        let with = |k: &'static str, v: &'static str| {
            let mut h = h.clone();
            h.insert(k, v.into());
            FloodHead::parse(|n| h.get(n).map(String::as_str))
        };
        assert!(matches!(with(COUNTER_RESET, "yes"), Err(HeadError::Malformed { .. })));
        assert_eq!(with(SEQ_FROM, "10"), Err(HeadError::SeqFromAboveCounter));
        assert!(matches!(
            with(REACHED, "c2,not a center"),
            Err(HeadError::Malformed { .. })
        ));
        let many = (0..=REACHED_MAX).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",");
        let mut long = h.clone();
        long.insert(REACHED, many);
        assert!(matches!(
            FloodHead::parse(|n| long.get(n).map(String::as_str)),
            Err(HeadError::Malformed { .. })
        ));
        // Unsorted and repeated names read as one sorted set; none is none.
        assert_eq!(
            with(REACHED, "c3,c2,c3").map(|h| h.reached),
            Ok(vec!["c2".into(), "c3".into()])
        );
        let mut without = h.clone();
        without.remove(REACHED);
        assert_eq!(
            FloodHead::parse(|n| without.get(n).map(String::as_str)).map(|h| h.reached),
            Ok(vec![])
        );
        assert_eq!(
            with(NODE_COUNTER, "9223372036854775808"),
            Err(HeadError::CounterOutOfRange)
        );
        assert_eq!(
            FloodHead::parse(|n| (n == NODE_ID).then_some("c1")),
            Err(HeadError::Missing("DRiP-Node-Counter"))
        );
    }

    #[test]
    fn bodies_refuse_garbage_and_too_many() {
        assert!(matches!(decode_records(b"[]"), Err(BodyError::Json(_))));
        assert_eq!(decode_records(br#"{"records":["!"]}"#), Err(BodyError::Base64(0)));
        assert!(matches!(
            decode_records(br#"{"records":["AAAA"]}"#),
            Err(BodyError::Record { index: 0, .. })
        ));
        let many = serde_json::to_vec(&json!({"records": vec![""; FLOOD_RECORDS_MAX + 1]})).unwrap();
        assert_eq!(decode_records(&many), Err(BodyError::TooMany));
        assert_eq!(decode_records(br#"{"records":[]}"#), Ok(vec![]));
    }

    #[test]
    fn answers_read_what_they_write() {
        let a = Answer::rejected("no");
        assert_eq!(a.to_json(), json!({"accepted": false, "reason": "no"}));
        assert_eq!(Answer::from_json(&a.to_json()), Some(a));
        assert_eq!(Answer::from_json(&json!({"x": 1})), None);
        let f = FloodAnswer {
            accepted: true,
            duplicate: false,
            applied: 2,
        };
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            json!({"accepted": true, "duplicate": false, "applied": 2})
        );
        assert!(Message::decode(b"[1]").is_err());
        assert_eq!(Message::decode(br#"{"a":1}"#).unwrap().typ, "");
        assert!(valid_type("rd.moved") && !valid_type("Zone Transfer") && !valid_type(""));
    }
}
