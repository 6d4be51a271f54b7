//! The rules the invariants judge by, written out again from the plan and
//! the documents (DESIGN.md "Concepts", document 000 §2.5, PROTOCOL.md),
//! so that a mistake in the code under test cannot hide itself: which of
//! two versions of a record wins, who may receive a record, and which
//! versions a digest speaks for.
//!
//! Must never call the decisions it judges: `Record::supersedes` or
//! `lww_cmp`, `ExportPolicy::allows`/`sees`/`sees_class`, `class_of`,
//! `proto::tally`, the digest code, or anything else in `regmesh_proto`
//! and `regmesh_core` that makes a protocol decision. Only plain data
//! (record fields, the policy's sets) is read.

use crate::msg::Key;
use regmesh_core::{Record, Visibility};
use regmesh_proto::policy::ExportPolicy;
use std::cmp::Ordering;
use std::collections::BTreeSet;

/// The merge order of two versions of one key, as DESIGN.md states it:
/// the HLC (wall clock, then logical counter), then the origin's name,
/// then a tombstone above a live version. Two versions equal on all three
/// come from one origin issuing one HLC twice, which
/// [`one_version_per_hlc`] reports; here they compare equal.
pub fn order(a: &Record, b: &Record) -> Ordering {
    (a.version.wall_ms, a.version.logical)
        .cmp(&(b.version.wall_ms, b.version.logical))
        .then_with(|| a.origin.as_bytes().cmp(b.origin.as_bytes()))
        .then_with(|| match (a.deleted, b.deleted) {
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => Ordering::Equal,
        })
}

/// `a` is `b` or would replace it.
pub fn at_least(a: &Record, b: &Record) -> bool {
    a == b || order(a, b) == Ordering::Greater
}

/// The winner among `versions` of one key (None when empty).
pub fn newest<'a>(versions: impl IntoIterator<Item = &'a Record>) -> Option<&'a Record> {
    versions.into_iter().fold(None, |best: Option<&Record>, v| match best {
        Some(b) if order(v, b) != Ordering::Greater => Some(b),
        _ => Some(v),
    })
}

/// Whether a peer whose policy is `p` may receive `r` (document 000
/// §2.5): an exported kind (no kinds listed: every kind), and a visibility
/// it may see: `public` always, `authorized:<g>` only in group g, `local`
/// never. A tombstone keeps its record's kind and visibility, so the same
/// rule holds for it.
pub fn may_receive(p: &ExportPolicy, r: &Record) -> bool {
    let kind = p.kinds.is_empty() || p.kinds.iter().any(|k| *k == r.kind);
    let vis = match &r.visibility {
        Visibility::Public => true,
        Visibility::Authorized(g) => p.groups.iter().any(|x| x == g),
        Visibility::Local => false,
    };
    kind && vis
}

/// The class name of one visibility in a digest key (PROTOCOL.md,
/// "Digests"): `public`, `authorized:<g>`; `local` is in no class.
pub fn class_name(v: &Visibility) -> Option<String> {
    match v {
        Visibility::Public => Some("public".into()),
        Visibility::Authorized(g) => Some(format!("authorized:{g}")),
        Visibility::Local => None,
    }
}

/// One element of a digested set: (kind, id, origin, wall_ms, logical,
/// tombstone).
pub type Element = (String, String, String, u64, u32, bool);

/// What a digest of `origin` under `digest_key` (`kind` for public
/// records, `kind@class` otherwise) speaks for, among `held`: every
/// version of that origin, kind and class, tombstones included.
pub fn digested<'a>(
    held: impl IntoIterator<Item = (&'a Key, &'a Record)>,
    origin: &str,
    digest_key: &str,
) -> BTreeSet<Element> {
    let (kind, class) = match digest_key.split_once('@') {
        Some((k, c)) => (k, c.to_string()),
        None => (digest_key, "public".to_string()),
    };
    held.into_iter()
        .map(|(_, r)| r)
        .filter(|r| {
            r.origin == origin && r.kind == kind && class_name(&r.visibility).as_deref() == Some(class.as_str())
        })
        .map(|r| {
            (
                r.kind.clone(),
                r.id.clone(),
                r.origin.clone(),
                r.version.wall_ms,
                r.version.logical,
                r.deleted,
            )
        })
        .collect()
}

/// An origin issues each HLC once: two different acknowledged versions of
/// one origin with one HLC are a defect of the clock (and would make the
/// merge order fall back on the encoding). Returns the pair found.
pub fn one_version_per_hlc<'a>(versions: &'a [Record], new: &Record) -> Option<&'a Record> {
    versions
        .iter()
        .find(|v| v.origin == new.origin && v.version == new.version && *v != new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use regmesh_core::Hlc;

    fn rec(wall: u64, logical: u32, origin: &str, deleted: bool) -> Record {
        Record {
            kind: "agent".into(),
            id: "a".into(),
            origin: origin.into(),
            version: Hlc::new(wall, logical),
            seq: 1,
            expires_at_ms: None,
            visibility: Visibility::Public,
            deleted,
            body: "{}".into(),
            sig: [0; 64],
        }
    }

    #[test]
    fn the_spec_order_and_its_tie_breaks() {
        assert_eq!(order(&rec(2, 0, "a", false), &rec(1, 9, "z", true)), Ordering::Greater);
        assert_eq!(order(&rec(1, 1, "a", false), &rec(1, 0, "z", true)), Ordering::Greater);
        assert_eq!(order(&rec(1, 0, "b", false), &rec(1, 0, "a", true)), Ordering::Greater);
        assert_eq!(order(&rec(1, 0, "a", true), &rec(1, 0, "a", false)), Ordering::Greater);
        let v = [rec(1, 0, "b", false), rec(1, 0, "c", false), rec(1, 0, "a", true)];
        assert_eq!(newest(&v).map(|r| r.origin.as_str()), Some("c"));
        assert!(newest(&[]).is_none());
    }

    #[test]
    fn visibility_from_the_policy_data() {
        let p = ExportPolicy::new(["agent".to_string()], ["g1".to_string()]);
        let mut r = rec(1, 0, "a", true);
        assert!(may_receive(&p, &r));
        r.visibility = Visibility::Local;
        assert!(!may_receive(&p, &r), "a local tombstone never leaves");
        r.visibility = Visibility::Authorized("g2".into());
        assert!(!may_receive(&p, &r));
        r.visibility = Visibility::Authorized("g1".into());
        assert!(may_receive(&p, &r));
        r.kind = "service".into();
        assert!(!may_receive(&p, &r));
        assert!(may_receive(&ExportPolicy::default(), &rec(1, 0, "a", false)));
    }
}
