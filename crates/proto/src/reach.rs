//! How far a relayed RFI is passed on beyond the direct peers (the node's
//! diagnoses, the agent front's `?scope=mesh` queries): the asker sends it
//! with a `reach` (hops left, centers already covered, time left); a center
//! that gets one asks its own peers not yet covered with a reach one hop
//! shorter and [`MARGIN`] less time, and passes on what they answered, each
//! entry naming its path (`via`).
//!
//! Owns the reach's bounds and its reading from a message. Must never:
//! allow more than [`HOPS_MAX`] hops, more time than the asker's deadline,
//! or a covered set over [`COVERED_MAX`] names.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// How many relays deep a relayed RFI reaches at most.
pub const HOPS_MAX: u8 = 3;
/// How much less time each hop has than the one that asked it.
pub const MARGIN: Duration = Duration::from_millis(500);
/// Most relayed entries (centers) one answer carries.
pub const RELAYED_MAX: usize = 64;
/// Most centers a reach names as covered.
pub const COVERED_MAX: usize = 1024;

/// How far a relayed RFI may still go; sent as its `reach`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reach {
    /// Relays left below the center that gets it (0: answer alone).
    pub hops: u8,
    /// Centers already asked, or being asked, by someone upstream.
    pub covered: BTreeSet<String>,
    /// Time the receiver has to answer, in ms.
    pub deadline_ms: u64,
}

impl Reach {
    /// The reach of an RFI first sent by `me`, with `deadline` to answer.
    pub fn start(me: &str, deadline: Duration) -> Reach {
        Reach {
            hops: HOPS_MAX,
            covered: BTreeSet::from([me.to_string()]),
            deadline_ms: deadline.as_millis() as u64,
        }
    }

    /// The `reach` of a received RFI, capped at [`HOPS_MAX`] and
    /// `deadline_max`; None when absent or unreadable (answer alone).
    pub fn of_message(msg: &Value, deadline_max: Duration) -> Option<Reach> {
        let mut r: Reach = serde_json::from_value(msg.get("reach")?.clone()).ok()?;
        r.hops = r.hops.min(HOPS_MAX);
        r.deadline_ms = r.deadline_ms.min(deadline_max.as_millis() as u64);
        (r.covered.len() <= COVERED_MAX).then_some(r)
    }

    /// The reach to pass on from `me`, whose peers are `peers`, with
    /// `deadline` left here: one hop shorter, covering `me` and its peers,
    /// [`MARGIN`] less time. None when no hop or too little time is left.
    pub fn below(
        covered: &BTreeSet<String>,
        hops: u8,
        me: &str,
        peers: &[String],
        deadline: Duration,
    ) -> Option<Reach> {
        (hops > 0 && deadline > MARGIN * 2).then(|| Reach {
            hops: hops - 1,
            covered: covered
                .iter()
                .cloned()
                .chain(std::iter::once(me.to_string()))
                .chain(peers.iter().cloned())
                .take(COVERED_MAX)
                .collect(),
            deadline_ms: (deadline - MARGIN).as_millis() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reach_is_capped_and_shrinks() {
        let msg = json!({"reach": {"hops": 9, "covered": ["c1"], "deadline_ms": 99999}});
        let r = Reach::of_message(&msg, Duration::from_secs(2)).unwrap();
        assert_eq!((r.hops, r.deadline_ms), (HOPS_MAX, 2000));
        let b = Reach::below(&r.covered, r.hops, "c2", &["c3".into()], Duration::from_millis(2000)).unwrap();
        assert_eq!((b.hops, b.deadline_ms, b.covered.len()), (HOPS_MAX - 1, 1500, 3));
        assert!(Reach::below(&r.covered, 0, "c2", &[], Duration::from_secs(2)).is_none());
        assert!(Reach::below(&r.covered, 2, "c2", &[], MARGIN).is_none());
        assert!(Reach::of_message(&json!({}), Duration::from_secs(2)).is_none());
    }
}
