//! Peer messages of part `hello` (see the module docs of `wire`): HELLO
//! (`POST /mesh/v1/hello`, document 003) and its answer, with the protocol
//! versions each side speaks ([`crate::version`]).
//!
//! JSON-compatible with the wire before versions: a HELLO
//! `{"id","interval_ms"}` and an answer `{"id","accepted","reason"?}` name
//! no version, which means version 1. Version fields are left out when
//! absent. Must never: decide which version is spoken (`version` does).

use crate::version::{Versions, VersionsError};
use serde::{Deserialize, Serialize};

/// Largest HELLO body a center reads, bytes.
pub const HELLO_BYTES_MAX: usize = 4096;

/// `POST /mesh/v1/hello`: a center introduces itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's center id (empty when missing: then no configured peer).
    #[serde(default)]
    pub id: String,
    /// The sender's beat interval, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// Lowest protocol version the sender speaks (absent: 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_min: Option<u16>,
    /// Highest protocol version the sender speaks (absent: its `protocol_min`, or 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_max: Option<u16>,
}

impl Hello {
    /// A HELLO from `id` speaking `versions`.
    pub fn new(id: &str, interval_ms: u64, versions: Versions) -> Hello {
        Hello {
            id: id.to_string(),
            interval_ms: Some(interval_ms),
            protocol_min: Some(versions.min),
            protocol_max: Some(versions.max),
        }
    }

    /// The versions the sender speaks.
    pub fn versions(&self) -> Result<Versions, VersionsError> {
        Versions::stated(self.protocol_min, self.protocol_max)
    }
}

/// Why an answer refuses, as the wire names it. Codes this build does not
/// know read as [`RefusalCode::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// The sender is not a configured peer of the answerer.
    NotAPeer,
    /// The two ranges share no version.
    NoCommonVersion,
    /// The HELLO states an empty range.
    BadRange,
    #[serde(other)]
    Unknown,
}

/// The answer to a HELLO: 200 when accepted, 403 (not a peer) or 409 (no
/// common version) when refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloAnswer {
    /// The answerer's center id.
    #[serde(default)]
    pub id: String,
    pub accepted: bool,
    /// Why it was refused, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why it was refused, as a code (absent from centers before versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<RefusalCode>,
    /// The version chosen, when accepted (absent: 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u16>,
    /// Lowest version the answerer speaks (absent: 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_min: Option<u16>,
    /// Highest version the answerer speaks (absent: its `protocol_min`, or 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_max: Option<u16>,
}

impl HelloAnswer {
    /// The versions the answerer speaks.
    pub fn versions(&self) -> Result<Versions, VersionsError> {
        Versions::stated(self.protocol_min, self.protocol_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_hello_before_versions_reads_as_version_1() {
        let h: Hello = serde_json::from_value(json!({"id": "c1", "interval_ms": 500})).unwrap();
        assert_eq!(h.versions(), Ok(Versions { min: 1, max: 1 }));
        assert_eq!(h.interval_ms, Some(500));
        // A body without an id still parses: the id matches no peer.
        let h: Hello = serde_json::from_value(json!({})).unwrap();
        assert_eq!(h.id, "");
    }

    #[test]
    fn a_hello_names_its_range_and_leaves_nothing_else_out() {
        let h = Hello::new("c1", 1000, Versions { min: 1, max: 2 });
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(
            v,
            json!({"id": "c1", "interval_ms": 1000, "protocol_min": 1, "protocol_max": 2})
        );
        assert_eq!(serde_json::from_value::<Hello>(v).unwrap(), h);
    }

    #[test]
    fn answers_before_versions_and_unknown_codes_parse() {
        let a: HelloAnswer = serde_json::from_value(json!({"id": "c2", "accepted": true})).unwrap();
        assert!(a.accepted);
        assert_eq!((a.protocol, a.versions()), (None, Ok(Versions { min: 1, max: 1 })));
        let a: HelloAnswer =
            serde_json::from_value(json!({"id": "c2", "accepted": false, "reason": "x", "refusal": "newer_reason"}))
                .unwrap();
        assert_eq!(a.refusal, Some(RefusalCode::Unknown));
        let refused = HelloAnswer {
            id: "c2".into(),
            accepted: false,
            reason: Some("why".into()),
            refusal: Some(RefusalCode::NoCommonVersion),
            protocol: None,
            protocol_min: Some(2),
            protocol_max: Some(2),
        };
        let v = serde_json::to_value(&refused).unwrap();
        assert_eq!(
            v,
            json!({"id": "c2", "accepted": false, "reason": "why", "refusal": "no_common_version",
                   "protocol_min": 2, "protocol_max": 2})
        );
    }
}
