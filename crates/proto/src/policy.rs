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
        #[cfg(feature = "broken")]
        if r.deleted && crate::broken::is(crate::broken::Variant::ExportLetsTombstones) {
            return true;
        }
        (self.kinds.is_empty() || self.kinds.contains(&r.kind))
            && self.sees(&r.visibility)
            && parts.iter().all(|p| self.sees(p))
    }
}

/// The visibility class of a live record: its own visibility and its parts,
/// sorted and joined by `+` (`public`, `authorized:g1`,
/// `authorized:g1+public`, ...). `None` when anything is `local`: such a
/// record is never compared with a peer. Records of one class go to exactly
/// the same peers, so per-class digests can be compared with any peer whose
/// policy sees the class.
pub fn class_of<'a>(visibilities: impl IntoIterator<Item = &'a Visibility>) -> Option<String> {
    let mut v: Vec<String> = Vec::new();
    for vis in visibilities {
        if *vis == Visibility::Local {
            return None;
        }
        v.push(vis.to_string());
    }
    v.sort();
    v.dedup();
    Some(v.join("+"))
}

impl ExportPolicy {
    /// May a peer with this policy receive records of `kind` and `class`?
    pub fn sees_class(&self, kind: &str, class: &str) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(kind))
            && class
                .split('+')
                .all(|v| Visibility::parse(v).is_ok_and(|v| self.sees(&v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_name_who_may_see() {
        let g = Visibility::Authorized("g1".into());
        assert_eq!(class_of([&Visibility::Public]).as_deref(), Some("public"));
        assert_eq!(
            class_of([&Visibility::Public, &g, &Visibility::Public]).as_deref(),
            Some("authorized:g1+public")
        );
        assert_eq!(class_of([&Visibility::Public, &Visibility::Local]), None);
        let p = ExportPolicy::new(["agent".to_string()], ["g1".to_string()]);
        assert!(p.sees_class("agent", "authorized:g1+public"));
        assert!(!p.sees_class("service", "public"));
        let q = ExportPolicy::new([], []);
        assert!(q.sees_class("service", "public"));
        assert!(!q.sees_class("agent", "authorized:g1+public"));
    }
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
