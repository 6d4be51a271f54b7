//! Per-peer export policy (document 000 §2.5; DESIGN.md "Security"): which
//! kinds a peer receives and which visibility groups it belongs to.
//!
//! A record goes to a peer only if the peer may see the record's own
//! visibility *and* the visibility of every part that has one (an agent's
//! capabilities). `local` never leaves the center. `authorized:<g>` goes only to
//! peers in group g. A relayed record keeps its origin's visibility, and every
//! hop applies the same rule.
//!
//! Records are signed whole by their origin, so a relay cannot cut parts out.
//! A record whose parts a peer may not all see is therefore not sent to that
//! peer. This is conservative: nothing leaks, and the peer misses that record.

use regmesh_core::{Record, Visibility};
use std::collections::BTreeSet;

/// What one peer may receive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportPolicy {
    /// Kinds exported; empty means every kind.
    pub kinds: BTreeSet<String>,
    /// Visibility groups the peer belongs to.
    pub groups: BTreeSet<String>,
}

impl ExportPolicy {
    pub fn new(kinds: impl IntoIterator<Item = String>, groups: impl IntoIterator<Item = String>) -> Self {
        ExportPolicy {
            kinds: kinds.into_iter().collect(),
            groups: groups.into_iter().collect(),
        }
    }

    /// May the peer see something with visibility `v`?
    pub fn sees(&self, v: &Visibility) -> bool {
        match v {
            Visibility::Public => true,
            Visibility::Authorized(g) => self.groups.contains(g),
            Visibility::Local => false,
        }
    }

    /// May `r`, whose parts have visibilities `parts`, be sent to the peer?
    pub fn allows(&self, r: &Record, parts: &[Visibility]) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&r.kind))
            && self.sees(&r.visibility)
            && parts.iter().all(|p| self.sees(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regmesh_core::Hlc;

    fn rec(kind: &str, v: Visibility) -> Record {
        Record {
            kind: kind.into(),
            id: "a".into(),
            origin: "c1".into(),
            version: Hlc::new(1, 0),
            seq: 1,
            expires_at_ms: None,
            visibility: v,
            deleted: false,
            body: "{}".into(),
            sig: [0; 64],
        }
    }

    #[test]
    fn rules() {
        let p = ExportPolicy::new(["agent".to_string()], ["partners".to_string()]);
        assert!(p.allows(&rec("agent", Visibility::Public), &[]));
        assert!(!p.allows(&rec("note", Visibility::Public), &[]), "kind not exported");
        assert!(!p.allows(&rec("agent", Visibility::Local), &[]), "local never leaves");
        assert!(p.allows(&rec("agent", Visibility::Authorized("partners".into())), &[]));
        assert!(!p.allows(&rec("agent", Visibility::Authorized("rivals".into())), &[]));
        assert!(
            !p.allows(
                &rec("agent", Visibility::Public),
                &[Visibility::Authorized("rivals".into())]
            ),
            "a hidden part withholds the record"
        );
        assert!(!p.allows(&rec("agent", Visibility::Public), &[Visibility::Local]));
        assert!(ExportPolicy::default().allows(&rec("anything", Visibility::Public), &[]));
    }
}
