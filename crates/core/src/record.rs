//! The record envelope (DESIGN.md "Concepts") and its merge rule.
//!
//! # Merge is a join-semilattice
//!
//! All versions of one record key `(kind, id)` are totally ordered by
//! [`Record::lww_cmp`]: first by `version` (HLC), then by `origin` (tiebreak
//! between centers), then tombstones above live records, then by the full
//! signed encoding (so two different records never compare equal). `merge`
//! returns the greater one. Because the order is total, `merge` is the join of
//! a semilattice whose bottom is "absent":
//!
//! - commutative: `merge(a, b) == merge(b, a)`
//! - associative: `merge(merge(a, b), c) == merge(a, merge(b, c))`
//! - idempotent:  `merge(a, a) == a`
//!
//! so replicas that receive the same set of versions in any order, with any
//! duplication, end in the same state. The laws are checked by proptest in
//! `tests/merge_laws.rs`.

use crate::hlc::Hlc;
use std::cmp::Ordering;
use std::fmt;

/// Who may see a record or a part of it (document 000 §2.1.2, §2.5.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Visibility {
    /// Exported to every peer.
    Public,
    /// Exported only to peers in the named group.
    Authorized(String),
    /// Never leaves this center.
    Local,
}

impl Visibility {
    /// Parses `public`, `local` or `authorized:<group>` with a group of
    /// 1–64 `[A-Za-z0-9._-]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "public" => Ok(Visibility::Public),
            "local" => Ok(Visibility::Local),
            _ => {
                let group = s
                    .strip_prefix("authorized:")
                    .ok_or_else(|| format!("visibility {s:?} is not public, local or authorized:<group>"))?;
                crate::id::validate_center_id(group)
                    .map_err(|_| format!("visibility group {group:?} must be 1-64 of A-Z a-z 0-9 . _ -"))?;
                Ok(Visibility::Authorized(group.to_string()))
            }
        }
    }
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Visibility::Public => f.write_str("public"),
            Visibility::Local => f.write_str("local"),
            Visibility::Authorized(g) => write!(f, "authorized:{g}"),
        }
    }
}

/// One version of one record. Only `origin` may issue versions of its records;
/// `sig` is origin's Ed25519 signature over [`crate::codec::encode_unsigned`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Kind name, e.g. `agent`.
    pub kind: String,
    /// Record id within its kind.
    pub id: String,
    /// Center that owns and signs this record.
    pub origin: String,
    /// HLC of the write at the origin.
    pub version: Hlc,
    /// Per-origin sequence number of this write (1, 2, 3, ... across all kinds).
    pub seq: u64,
    /// End of the lease, ms since the epoch, if the record has one.
    pub expires_at_ms: Option<u64>,
    /// Record-level visibility.
    pub visibility: Visibility,
    /// Tombstone: the record was deleted at `version`.
    pub deleted: bool,
    /// Kind-specific body as canonical JSON text (see [`crate::codec::canonical_json`]).
    /// Empty object `{}` for tombstones.
    pub body: String,
    /// Origin's signature; all zero until signed.
    pub sig: [u8; 64],
}

impl Record {
    /// The total order used by [`merge`]. See the module docs.
    pub fn lww_cmp(&self, other: &Record) -> Ordering {
        debug_assert_eq!((&self.kind, &self.id), (&other.kind, &other.id));
        self.version
            .cmp(&other.version)
            .then_with(|| self.origin.cmp(&other.origin))
            .then_with(|| self.deleted.cmp(&other.deleted))
            .then_with(|| crate::codec::encode(self).cmp(&crate::codec::encode(other)))
    }

    /// True when `self` would replace `current` under [`merge`].
    pub fn supersedes(&self, current: &Record) -> bool {
        self.lww_cmp(current) == Ordering::Greater
    }

    /// Parses the body. Bodies are validated before signing, so this only
    /// fails on a record that did not come through a [`crate::Kind`].
    pub fn body_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.body)
    }
}

/// Join of two versions of the same record key: the greater under
/// [`Record::lww_cmp`].
pub fn merge(a: Record, b: Record) -> Record {
    if b.lww_cmp(&a) == Ordering::Greater {
        b
    } else {
        a
    }
}

/// Join with "absent" as bottom.
pub fn merge_opt(a: Option<Record>, b: Option<Record>) -> Option<Record> {
    match (a, b) {
        (Some(a), Some(b)) => Some(merge(a, b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_parse() {
        assert_eq!(Visibility::parse("public").unwrap(), Visibility::Public);
        assert_eq!(Visibility::parse("local").unwrap(), Visibility::Local);
        assert_eq!(
            Visibility::parse("authorized:partners").unwrap(),
            Visibility::Authorized("partners".into())
        );
        assert!(Visibility::parse("authorized:").is_err());
        assert!(Visibility::parse("authorized:a b").is_err());
        assert!(Visibility::parse("secret").is_err());
        assert_eq!(Visibility::parse("authorized:x").unwrap().to_string(), "authorized:x");
    }
}
