//! Protocol versions of the peer wire (document 000 §2.8.2: independent
//! operators upgrade at different times, so a center one version behind
//! must still interoperate).
//!
//! Each center speaks a range of versions ([`Versions`]): this build's
//! [`PROTOCOL_MIN`]..=[`PROTOCOL_MAX`], narrowed by the operator
//! (`[peer] protocol_min`, `protocol_max`). HELLO carries the range both
//! ways; [`negotiate`] picks the highest version in both ranges, and no
//! version in common refuses the HELLO ([`HelloRefusal`]). A peer that
//! names no version speaks version 1, the wire before versions existed.
//!
//! What each version adds:
//! - 1: the wire of regmesh before versions (DRiP plus `/mesh/v1`).
//! - 2: floods (`/commit`) and pull pages say their records' encoding
//!   format in [`RECORD_FORMAT_HEADER`], so a receiver refuses a message of
//!   an encoding it cannot read whole, before decoding any of it. A sender
//!   sends it only to peers it negotiated 2 or more with
//!   ([`says_record_format`]); a receiver takes it only if it speaks 2
//!   itself ([`read_record_format`]).
//!
//! A field an older build ignores and whose absence means what it meant
//! before (a pull page's `held_above`, a vote answer's `hlc`) needs no new
//! version. An older voter's answer carries no `hlc`: the initiator learns
//! nothing of its clock, and stamps as it did before.
//!
//! Must never: perform I/O, or take a version from an unauthenticated
//! message as the version to speak to a peer (the caller decides what is
//! authenticated; see [`PeerProtocol`]).

use crate::wire::hello::{Hello, HelloAnswer, RefusalCode};
use regmesh_core::codec::FORMAT_V1;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Lowest protocol version this build speaks.
pub const PROTOCOL_MIN: u16 = 1;
/// Highest protocol version this build speaks.
pub const PROTOCOL_MAX: u16 = 2;
/// The version of a peer whose HELLO or answer names none.
pub const PROTOCOL_UNNAMED: u16 = 1;
/// First version whose floods and pull pages carry [`RECORD_FORMAT_HEADER`].
pub const RECORD_FORMAT_SINCE: u16 = 2;
/// Header (version 2) naming the encoding format of every record in a
/// flood or pull page (`regmesh_core::codec`'s format byte).
pub const RECORD_FORMAT_HEADER: &str = "regmesh-record-format";

/// A range of protocol versions, `min..=max`, never empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    pub min: u16,
    pub max: u16,
}

/// A range of versions is not usable. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionsError {
    /// `min` is above `max`, or `min` is 0.
    #[error("protocol versions {min}..={max} are empty (min must be at least 1 and at most max)")]
    Empty { min: u16, max: u16 },
    /// The range asks for versions this build does not speak.
    #[error("protocol versions {min}..={max} are outside {PROTOCOL_MIN}..={PROTOCOL_MAX}, what this build speaks")]
    Unsupported { min: u16, max: u16 },
}

impl Versions {
    /// Everything this build speaks.
    pub const BUILD: Versions = Versions {
        min: PROTOCOL_MIN,
        max: PROTOCOL_MAX,
    };

    /// `min..=max`, if not empty.
    pub fn new(min: u16, max: u16) -> Result<Versions, VersionsError> {
        if min == 0 || min > max {
            return Err(VersionsError::Empty { min, max });
        }
        Ok(Versions { min, max })
    }

    /// The range an operator configured (`[peer] protocol_min`,
    /// `protocol_max`): not empty, and within what this build speaks.
    pub fn configured(min: u16, max: u16) -> Result<Versions, VersionsError> {
        let v = Versions::new(min, max)?;
        if min < PROTOCOL_MIN || max > PROTOCOL_MAX {
            return Err(VersionsError::Unsupported { min, max });
        }
        Ok(v)
    }

    /// A peer's range as its HELLO or answer states it: an absent bound is
    /// [`PROTOCOL_UNNAMED`] (an absent `max` with a `min` is that `min`).
    pub fn stated(min: Option<u16>, max: Option<u16>) -> Result<Versions, VersionsError> {
        let min = min.unwrap_or(PROTOCOL_UNNAMED);
        Versions::new(min, max.unwrap_or(min.max(PROTOCOL_UNNAMED)))
    }

    pub fn contains(&self, v: u16) -> bool {
        (self.min..=self.max).contains(&v)
    }
}

impl fmt::Display for Versions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "version {}", self.min)
        } else {
            write!(f, "versions {} to {}", self.min, self.max)
        }
    }
}

/// Why a HELLO was refused (by the peer, or by us on reading its answer).
/// The peer stays KNOWN; nothing else changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloRefusal {
    /// The two ranges share no version.
    #[error("no protocol version in common: we speak {ours}, the peer speaks {theirs}")]
    NoCommonVersion { ours: Versions, theirs: Versions },
    /// The answerer does not have the sender as a configured peer.
    #[error("{reason}")]
    NotAPeer { reason: String },
    /// The answer named a version that is not the highest common one.
    #[error("the peer chose protocol version {chosen}, but the highest in common is {expected}")]
    WrongChoice { chosen: u16, expected: u16 },
    /// The answer's stated range is empty.
    #[error("the peer's answer states no usable range: {0}")]
    BadRange(VersionsError),
    /// Refused for a reason this build does not know (HTTP status, text).
    #[error("refused ({status}): {reason}")]
    Other { status: u16, reason: String },
}

impl HelloRefusal {
    /// The code the wire carries for it ([`crate::wire::hello::RefusalCode`]).
    pub fn code(&self) -> &'static str {
        match self {
            HelloRefusal::NoCommonVersion { .. } => "no_common_version",
            HelloRefusal::NotAPeer { .. } => "not_a_peer",
            HelloRefusal::WrongChoice { .. } => "wrong_choice",
            HelloRefusal::BadRange(_) => "bad_range",
            HelloRefusal::Other { .. } => "other",
        }
    }
}

/// The version two centers speak: the highest in both ranges.
pub fn negotiate(ours: Versions, theirs: Versions) -> Result<u16, HelloRefusal> {
    let high = ours.max.min(theirs.max);
    if high >= ours.min.max(theirs.min) {
        Ok(high)
    } else {
        Err(HelloRefusal::NoCommonVersion { ours, theirs })
    }
}

/// What this center knows of the version it speaks with one peer: the
/// version agreed by the last HELLO exchange the caller authenticated (our
/// HELLO's answer, over TLS verified for the peer; or its HELLO, with a
/// client certificate for it), and the last refusal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerProtocol {
    agreed: Option<u16>,
    refused: Option<HelloRefusal>,
}

impl PeerProtocol {
    /// A HELLO exchange agreed on `version`; a refusal before it is over.
    pub fn agreed(&mut self, version: u16) {
        self.agreed = Some(version);
        self.refused = None;
    }

    /// A HELLO exchange was refused: no version is agreed any more (the
    /// peer stays or goes back to KNOWN until one is).
    pub fn refused(&mut self, why: HelloRefusal) {
        self.agreed = None;
        self.refused = Some(why);
    }

    /// The agreed version, if any (for status).
    pub fn agreed_version(&self) -> Option<u16> {
        self.agreed
    }

    /// The last refusal since the last agreement (for status).
    pub fn refusal(&self) -> Option<&HelloRefusal> {
        self.refused.as_ref()
    }

    /// The version to speak to this peer: the agreed one, else version 1
    /// (which every peer reads).
    pub fn speak(&self) -> u16 {
        self.agreed.unwrap_or(PROTOCOL_UNNAMED)
    }
}

/// Whether a message to a peer we speak `version` with carries
/// [`RECORD_FORMAT_HEADER`].
pub fn says_record_format(version: u16) -> bool {
    version >= RECORD_FORMAT_SINCE
}

/// A flood or pull page cannot be read: refused whole, nothing applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordFormatError {
    /// It names a record format this build cannot decode.
    #[error("record format {0} is unknown here (this center reads format {FORMAT_V1}); nothing was applied")]
    Unknown(u8),
    /// The header is not a small unsigned integer.
    #[error("{RECORD_FORMAT_HEADER} must be a number from 0 to 255, not {0:?}; nothing was applied")]
    Malformed(String),
    /// The header belongs to a protocol version above this center's own.
    #[error("{RECORD_FORMAT_HEADER} is protocol version {RECORD_FORMAT_SINCE}; this center speaks at most version {max}; nothing was applied")]
    AboveOurVersion { max: u16 },
}

/// The record format of a flood or pull page, read from its
/// [`RECORD_FORMAT_HEADER`] (`header`, if present) by a center speaking
/// `ours`. Absent: format 1, the only format before version 2.
pub fn read_record_format(ours: Versions, header: Option<&str>) -> Result<u8, RecordFormatError> {
    let Some(h) = header else { return Ok(FORMAT_V1) };
    if !says_record_format(ours.max) {
        return Err(RecordFormatError::AboveOurVersion { max: ours.max });
    }
    let f: u8 = h
        .trim()
        .parse()
        .map_err(|_| RecordFormatError::Malformed(h.chars().take(32).collect()))?;
    if f != FORMAT_V1 {
        return Err(RecordFormatError::Unknown(f));
    }
    Ok(f)
}

/// How a center judges a HELLO: the version it agrees on with the sender,
/// or why it refuses. `is_peer`: the sender's id is a configured peer.
pub fn judge_hello(ours: Versions, hello: &Hello, is_peer: bool) -> Result<u16, HelloRefusal> {
    if !is_peer {
        return Err(HelloRefusal::NotAPeer {
            reason: format!("{:?} is not a configured peer of the answerer", hello.id),
        });
    }
    let theirs = hello.versions().map_err(HelloRefusal::BadRange)?;
    negotiate(ours, theirs)
}

/// The answer `me`, speaking `ours`, sends for `verdict` ([`judge_hello`]).
pub fn hello_answer(me: &str, ours: Versions, verdict: &Result<u16, HelloRefusal>) -> HelloAnswer {
    let (accepted, reason, refusal, protocol) = match verdict {
        Ok(v) => (true, None, None, Some(*v)),
        Err(r) => (
            false,
            Some(r.to_string()),
            Some(match r {
                HelloRefusal::NotAPeer { .. } => RefusalCode::NotAPeer,
                HelloRefusal::NoCommonVersion { .. } => RefusalCode::NoCommonVersion,
                HelloRefusal::BadRange(_) => RefusalCode::BadRange,
                HelloRefusal::WrongChoice { .. } | HelloRefusal::Other { .. } => RefusalCode::Unknown,
            }),
            None,
        ),
    };
    HelloAnswer {
        id: me.to_string(),
        accepted,
        reason,
        refusal,
        protocol,
        protocol_min: Some(ours.min),
        protocol_max: Some(ours.max),
    }
}

/// What the sender of a HELLO, speaking `ours`, concludes from the answer
/// (HTTP `status`, `body`): the version to speak, or why there is none. A
/// 200 from a center before versions names no version: version 1, if we
/// speak it; so does a 200 whose body is empty or no HELLO answer (a plain
/// positive response, document 003). The answer's own choice must be the
/// highest common version.
pub fn read_hello_answer(ours: Versions, status: u16, body: &[u8]) -> Result<u16, HelloRefusal> {
    match serde_json::from_slice::<HelloAnswer>(body) {
        Ok(a) => conclude_hello(ours, status, &a),
        Err(_) if status == 200 => negotiate(ours, Versions::stated(None, None).expect("version 1")),
        Err(_) => Err(HelloRefusal::Other {
            status,
            reason: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        }),
    }
}

/// [`read_hello_answer`] of an answer already parsed.
pub fn conclude_hello(ours: Versions, status: u16, a: &HelloAnswer) -> Result<u16, HelloRefusal> {
    let theirs = a.versions().map_err(HelloRefusal::BadRange)?;
    if status != 200 || !a.accepted {
        let reason = a.reason.clone().unwrap_or_else(|| format!("HTTP {status}"));
        return Err(match a.refusal {
            Some(RefusalCode::NoCommonVersion) => HelloRefusal::NoCommonVersion { ours, theirs },
            Some(RefusalCode::NotAPeer) => HelloRefusal::NotAPeer { reason },
            _ => HelloRefusal::Other { status, reason },
        });
    }
    let expected = negotiate(ours, theirs)?;
    match a.protocol {
        Some(chosen) if chosen != expected => Err(HelloRefusal::WrongChoice { chosen, expected }),
        _ => Ok(expected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(min: u16, max: u16) -> Versions {
        Versions::new(min, max).unwrap()
    }

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        assert_eq!(negotiate(v(1, 2), v(1, 2)), Ok(2));
        assert_eq!(negotiate(v(1, 2), v(1, 1)), Ok(1));
        assert_eq!(negotiate(v(1, 1), v(1, 2)), Ok(1));
        assert_eq!(negotiate(v(1, 5), v(3, 9)), Ok(5));
        assert_eq!(negotiate(v(2, 2), v(1, 2)), Ok(2));
        assert_eq!(
            negotiate(v(2, 2), v(1, 1)),
            Err(HelloRefusal::NoCommonVersion {
                ours: v(2, 2),
                theirs: v(1, 1)
            })
        );
        let e = negotiate(v(2, 3), v(1, 1)).unwrap_err().to_string();
        assert!(e.contains("versions 2 to 3") && e.contains("version 1"), "{e}");
    }

    #[test]
    fn negotiation_is_symmetric() {
        for a in 1..5 {
            for b in a..5 {
                for c in 1..5 {
                    for d in c..5 {
                        let (x, y) = (v(a, b), v(c, d));
                        assert_eq!(negotiate(x, y).ok(), negotiate(y, x).ok(), "{x} {y}");
                        if let Ok(n) = negotiate(x, y) {
                            assert!(x.contains(n) && y.contains(n));
                            assert!(!(n + 1..=b.max(d)).any(|m| x.contains(m) && y.contains(m)));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn an_unnamed_version_is_version_1() {
        assert_eq!(Versions::stated(None, None), Ok(v(1, 1)));
        assert_eq!(Versions::stated(Some(2), None), Ok(v(2, 2)));
        assert_eq!(Versions::stated(None, Some(3)), Ok(v(1, 3)));
        assert_eq!(
            Versions::stated(Some(3), Some(2)),
            Err(VersionsError::Empty { min: 3, max: 2 })
        );
        assert!(Versions::stated(Some(0), Some(2)).is_err());
    }

    #[test]
    fn an_operator_pins_within_the_build() {
        assert_eq!(Versions::configured(1, 1), Ok(v(1, 1)));
        assert_eq!(Versions::configured(PROTOCOL_MIN, PROTOCOL_MAX), Ok(Versions::BUILD));
        assert!(matches!(
            Versions::configured(1, PROTOCOL_MAX + 1),
            Err(VersionsError::Unsupported { .. })
        ));
        assert!(matches!(Versions::configured(2, 1), Err(VersionsError::Empty { .. })));
    }

    #[test]
    fn a_peer_speaks_version_1_until_a_version_is_agreed() {
        let mut p = PeerProtocol::default();
        assert_eq!(p.speak(), 1);
        assert!(!says_record_format(p.speak()));
        p.agreed(2);
        assert_eq!(p.speak(), 2);
        assert!(says_record_format(p.speak()));
        p.refused(HelloRefusal::NoCommonVersion {
            ours: v(2, 2),
            theirs: v(1, 1),
        });
        assert_eq!((p.speak(), p.agreed_version()), (1, None));
        assert_eq!(p.refusal().unwrap().code(), "no_common_version");
        p.agreed(1);
        assert_eq!(p.refusal(), None);
    }

    #[test]
    fn the_record_format_header_is_read_only_by_version_2() {
        assert_eq!(read_record_format(v(1, 1), None), Ok(1));
        assert_eq!(read_record_format(v(1, 2), None), Ok(1));
        assert_eq!(read_record_format(v(1, 2), Some("1")), Ok(1));
        assert_eq!(
            read_record_format(v(1, 2), Some("7")),
            Err(RecordFormatError::Unknown(7))
        );
        assert!(matches!(
            read_record_format(v(1, 2), Some("x")),
            Err(RecordFormatError::Malformed(_))
        ));
        assert_eq!(
            read_record_format(v(1, 1), Some("1")),
            Err(RecordFormatError::AboveOurVersion { max: 1 })
        );
    }

    fn hello(min: Option<u16>, max: Option<u16>) -> Hello {
        Hello {
            id: "c2".into(),
            interval_ms: Some(1000),
            protocol_min: min,
            protocol_max: max,
        }
    }

    #[test]
    fn a_hello_is_judged_on_the_peer_and_the_ranges() {
        assert_eq!(judge_hello(v(1, 2), &hello(Some(1), Some(2)), true), Ok(2));
        // Before versions: no fields, version 1.
        assert_eq!(judge_hello(v(1, 2), &hello(None, None), true), Ok(1));
        assert_eq!(
            judge_hello(v(2, 2), &hello(None, None), true),
            Err(HelloRefusal::NoCommonVersion {
                ours: v(2, 2),
                theirs: v(1, 1)
            })
        );
        assert!(matches!(
            judge_hello(v(1, 2), &hello(Some(3), Some(1)), true),
            Err(HelloRefusal::BadRange(_))
        ));
        assert!(matches!(
            judge_hello(v(1, 2), &hello(Some(1), Some(2)), false),
            Err(HelloRefusal::NotAPeer { .. })
        ));
    }

    fn answer(me: Versions, verdict: Result<u16, HelloRefusal>) -> (u16, Vec<u8>) {
        let status = if verdict.is_ok() { 200 } else { 409 };
        (status, serde_json::to_vec(&hello_answer("c2", me, &verdict)).unwrap())
    }

    #[test]
    fn the_sender_reads_the_same_version_from_the_answer() {
        for (a, b) in [
            (v(1, 2), v(1, 2)),
            (v(1, 1), v(1, 2)),
            (v(1, 2), v(1, 1)),
            (v(2, 2), v(1, 2)),
        ] {
            let verdict = judge_hello(b, &Hello::new("c1", 1000, a), true);
            let (status, body) = answer(b, verdict.clone());
            assert_eq!(read_hello_answer(a, status, &body), verdict, "{a} to {b}");
        }
    }

    #[test]
    fn answers_before_versions_and_refusals_are_read() {
        // A center before versions accepts with no version: 1, if we speak it.
        let old = br#"{"id":"c2","accepted":true}"#;
        assert_eq!(read_hello_answer(v(1, 2), 200, old), Ok(1));
        assert_eq!(
            read_hello_answer(v(2, 2), 200, old),
            Err(HelloRefusal::NoCommonVersion {
                ours: v(2, 2),
                theirs: v(1, 1)
            })
        );
        let not_peer = br#"{"id":"c2","accepted":false,"reason":"\"c1\" is not a configured peer of c2"}"#;
        assert!(matches!(
            read_hello_answer(v(1, 2), 403, not_peer),
            Err(HelloRefusal::Other { status: 403, reason }) if reason.contains("not a configured peer")
        ));
        let (status, body) = answer(v(2, 2), judge_hello(v(2, 2), &hello(None, None), true));
        assert_eq!(status, 409);
        let r = read_hello_answer(v(1, 1), status, &body).unwrap_err();
        assert_eq!(
            r,
            HelloRefusal::NoCommonVersion {
                ours: v(1, 1),
                theirs: v(2, 2)
            }
        );
        assert_eq!(
            r.to_string(),
            "no protocol version in common: we speak version 1, the peer speaks version 2"
        );
        assert!(matches!(
            read_hello_answer(v(1, 2), 502, b"bad gateway"),
            Err(HelloRefusal::Other { status: 502, .. })
        ));
        // A plain positive response (no body, or not JSON) is version 1.
        assert_eq!(read_hello_answer(v(1, 2), 200, b""), Ok(1));
        assert_eq!(read_hello_answer(v(1, 2), 200, b"hello"), Ok(1));
        assert!(matches!(
            read_hello_answer(v(2, 2), 200, b""),
            Err(HelloRefusal::NoCommonVersion { .. })
        ));
        // An answer whose choice is not the highest common version.
        let wrong = br#"{"id":"c2","accepted":true,"protocol":1,"protocol_min":1,"protocol_max":2}"#;
        assert_eq!(
            read_hello_answer(v(1, 2), 200, wrong),
            Err(HelloRefusal::WrongChoice { chosen: 1, expected: 2 })
        );
    }
}
