//! Peer messages of part `beat` (see the module docs of `wire`): the body
//! of `POST /heartbeat/node/:id` and of its answer (PROTOCOL.md,
//! "Heartbeats"), as the node's server and client and the simulator carry
//! it. A regmesh beat is a JSON object
//! `{"state","interval_ms","watermarks","full","digests","policy"}`; DRiP's
//! bare state word (`active`, quoted or not) and an empty body parse too.
//!
//! Owns the shape of a beat and its size limits. Must never decide what a
//! beat means (`mesh::link` does).

use crate::digest::SetDigest;
use crate::node_state::NodeState;
use crate::policy::ExportPolicy;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};

/// Watermarks (origins) one beat may carry, at most.
pub const WATERMARKS_MAX: usize = 4096;
/// Digest keys (kind or `kind@class`) one origin's digests may hold, and
/// names in each list of a beat's policy, at most.
pub const NAMES_MAX: usize = 1024;

/// One heartbeat, or the answer to one (the receiver's own beat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    /// The sender's DRiP state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<NodeState>,
    /// How often the sender beats to the receiver (unclamped, as sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// The sender's watermarks: all of them (`full`), or those changed since
    /// the last beat the receiver answered.
    #[serde(default)]
    pub watermarks: BTreeMap<String, u64>,
    /// Whether `watermarks` is the whole map. A beat without it is whole.
    #[serde(default = "whole")]
    pub full: bool,
    /// Per origin, the sender's digests per `kind` or `kind@class`.
    #[serde(default)]
    pub digests: BTreeMap<String, BTreeMap<String, Digest>>,
    /// What the sender sends the receiver, so a class it holds nothing of
    /// still compares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<BeatPolicy>,
}

fn whole() -> bool {
    true
}

impl Default for Beat {
    /// An empty beat: no state, no interval, an empty whole map.
    fn default() -> Self {
        Beat {
            state: None,
            interval_ms: None,
            watermarks: BTreeMap::new(),
            full: true,
            digests: BTreeMap::new(),
            policy: None,
        }
    }
}

/// A set digest on the wire: 80 hex digits ([`SetDigest::to_hex`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest(pub SetDigest);

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SetDigest::from_hex(&s)
            .map(Digest)
            .ok_or_else(|| serde::de::Error::custom("a digest is 80 hex digits"))
    }
}

/// A beat's `policy`: the kinds and visibility groups the sender sends the
/// receiver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeatPolicy {
    #[serde(default)]
    pub kinds: BTreeSet<String>,
    #[serde(default)]
    pub groups: BTreeSet<String>,
}

impl From<&ExportPolicy> for BeatPolicy {
    fn from(p: &ExportPolicy) -> Self {
        BeatPolicy {
            kinds: p.kinds.clone(),
            groups: p.groups.clone(),
        }
    }
}

impl From<BeatPolicy> for ExportPolicy {
    fn from(p: BeatPolicy) -> Self {
        ExportPolicy {
            kinds: p.kinds,
            groups: p.groups,
        }
    }
}

/// Why a beat body was refused (nothing was read from it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeatError {
    /// A JSON body that is neither a beat object nor a state word.
    #[error("a heartbeat body is a JSON object or a state word: {0}")]
    Malformed(String),
    /// A state word other than `active`, `inactive` or `sync`.
    #[error("state {0:?} is not active, inactive or sync")]
    State(String),
    /// More than [`WATERMARKS_MAX`] watermarks or digest origins, or more
    /// than [`NAMES_MAX`] digest keys or policy names.
    #[error("a heartbeat carries more than {0} {1}")]
    TooMany(usize, &'static str),
}

fn state_word(s: &str) -> Result<NodeState, BeatError> {
    match s {
        "active" => Ok(NodeState::Active),
        "inactive" => Ok(NodeState::Inactive),
        "sync" => Ok(NodeState::Sync),
        _ => Err(BeatError::State(s.to_string())),
    }
}

impl Beat {
    /// Reads a heartbeat body: a beat object, a state word (JSON string or
    /// bare, as in DRiP's example), or nothing. Refuses a beat over the
    /// limits.
    pub fn from_body(body: &[u8]) -> Result<Beat, BeatError> {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            return Ok(Beat::default());
        }
        let beat = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(_)) => {
                serde_json::from_str::<Beat>(text).map_err(|e| BeatError::Malformed(e.to_string()))?
            }
            Ok(serde_json::Value::String(s)) => Beat {
                state: Some(state_word(&s)?),
                ..Beat::default()
            },
            Ok(serde_json::Value::Null) => Beat::default(),
            Ok(other) => return Err(BeatError::Malformed(format!("found {other}"))),
            Err(_) => Beat {
                state: Some(state_word(text.trim_matches('"'))?),
                ..Beat::default()
            },
        };
        beat.check()?;
        Ok(beat)
    }

    /// The beat as JSON bytes (what [`Beat::from_body`] reads).
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a beat serializes")
    }

    /// Whether the beat is within the limits.
    pub fn check(&self) -> Result<(), BeatError> {
        if self.watermarks.len() > WATERMARKS_MAX {
            return Err(BeatError::TooMany(WATERMARKS_MAX, "watermarks"));
        }
        if self.digests.len() > WATERMARKS_MAX {
            return Err(BeatError::TooMany(WATERMARKS_MAX, "digest origins"));
        }
        if self.digests.values().any(|d| d.len() > NAMES_MAX) {
            return Err(BeatError::TooMany(NAMES_MAX, "digests of one origin"));
        }
        if let Some(p) = &self.policy {
            if p.kinds.len() > NAMES_MAX || p.groups.len() > NAMES_MAX {
                return Err(BeatError::TooMany(NAMES_MAX, "policy names"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn todays_json_reads_and_round_trips() {
        let d = SetDigest::default().to_hex();
        let body = format!(
            r#"{{"state":"sync","interval_ms":500,"watermarks":{{"c1":4,"c2":9}},"full":false,
                "digests":{{"c1":{{"agent":"{d}"}}}},"policy":{{"kinds":[],"groups":["g"]}},"later":1}}"#
        );
        let b = Beat::from_body(body.as_bytes()).unwrap();
        assert_eq!(b.state, Some(NodeState::Sync));
        assert_eq!(b.interval_ms, Some(500));
        assert_eq!(b.watermarks.get("c2"), Some(&9));
        assert!(!b.full);
        assert_eq!(b.digests["c1"]["agent"], Digest(SetDigest::default()));
        assert_eq!(b.policy.as_ref().unwrap().groups.len(), 1);
        assert_eq!(Beat::from_body(&b.to_body()).unwrap(), b);
    }

    #[test]
    fn drip_state_words_and_empty_bodies() {
        for body in ["active", "\"active\"", " active\n"] {
            let b = Beat::from_body(body.as_bytes()).unwrap();
            assert_eq!(b.state, Some(NodeState::Active), "{body:?}");
            assert!(b.full && b.interval_ms.is_none());
        }
        assert_eq!(Beat::from_body(b"").unwrap(), Beat::default());
        assert_eq!(Beat::from_body(b"null").unwrap(), Beat::default());
        assert!(
            Beat::from_body(b"{}").unwrap().full,
            "a beat without the field is whole"
        );
    }

    #[test]
    fn bad_bodies_are_refused() {
        assert!(matches!(Beat::from_body(b"asleep"), Err(BeatError::State(_))));
        assert!(matches!(
            Beat::from_body(br#"{"state":"asleep"}"#),
            Err(BeatError::Malformed(_))
        ));
        assert!(matches!(Beat::from_body(b"[1]"), Err(BeatError::Malformed(_))));
        assert!(matches!(
            Beat::from_body(br#"{"digests":{"c1":{"agent":"zz"}}}"#),
            Err(BeatError::Malformed(_))
        ));
        let many: BTreeMap<String, u64> = (0..=WATERMARKS_MAX).map(|i| (format!("c{i}"), 1)).collect();
        let big = Beat {
            watermarks: many,
            ..Beat::default()
        };
        assert!(matches!(Beat::from_body(&big.to_body()), Err(BeatError::TooMany(..))));
    }
}
