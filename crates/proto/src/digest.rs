//! Order-independent digest of a set of record versions, for cheap
//! divergence checks on every beat (DESIGN.md "Anti-entropy").
//!
//! Each element is hashed with blake3 to 256 bits, and the digest is the sum of
//! those hashes as four 64-bit lanes, modulo 2^64 per lane. A sum, unlike XOR,
//! does not cancel a pair of equal elements. Adding and removing one element
//! costs one hash. Two centers holding the same versions get the same digest
//! whatever order they applied them in.

/// Digest of a set. `Default` is the empty set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct SetDigest {
    lanes: [u64; 4],
    count: u64,
}

/// Hash of one record version: kind, id, origin, HLC, tombstone flag.
pub fn element(kind: &str, id: &str, origin: &str, wall_ms: u64, logical: u32, deleted: bool) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("regmesh set-digest element v1");
    for part in [kind.as_bytes(), id.as_bytes(), origin.as_bytes()] {
        h.update(&(part.len() as u32).to_be_bytes());
        h.update(part);
    }
    h.update(&wall_ms.to_be_bytes());
    #[cfg(feature = "broken")]
    let logical = if crate::broken::is(crate::broken::Variant::DigestSkipsLogical) {
        0
    } else {
        logical
    };
    h.update(&logical.to_be_bytes());
    h.update(&[deleted as u8]);
    *h.finalize().as_bytes()
}

fn lanes(e: &[u8; 32]) -> [u64; 4] {
    let mut l = [0u64; 4];
    for (i, x) in l.iter_mut().enumerate() {
        *x = u64::from_le_bytes(e[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    }
    l
}

impl SetDigest {
    pub fn add(&mut self, e: &[u8; 32]) {
        for (a, b) in self.lanes.iter_mut().zip(lanes(e)) {
            *a = a.wrapping_add(b);
        }
        self.count = self.count.wrapping_add(1);
    }

    pub fn remove(&mut self, e: &[u8; 32]) {
        for (a, b) in self.lanes.iter_mut().zip(lanes(e)) {
            *a = a.wrapping_sub(b);
        }
        self.count = self.count.wrapping_sub(1);
    }

    /// Replaces one element by another (a record's new version).
    pub fn replace(&mut self, old: &[u8; 32], new: &[u8; 32]) {
        self.remove(old);
        self.add(new);
    }

    /// Elements in the set.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Hex text for the wire and for operators.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(80);
        for l in self.lanes.iter().chain(std::iter::once(&self.count)) {
            s.push_str(&format!("{l:016x}"));
        }
        s
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 80 || !s.is_ascii() {
            return None;
        }
        let mut v = [0u64; 5];
        for (i, x) in v.iter_mut().enumerate() {
            *x = u64::from_str_radix(&s[16 * i..16 * i + 16], 16).ok()?;
        }
        Some(SetDigest {
            lanes: [v[0], v[1], v[2], v[3]],
            count: v[4],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_independent_and_reversible() {
        let a = element("agent", "a", "c1", 1, 0, false);
        let b = element("agent", "b", "c1", 2, 0, false);
        let b2 = element("agent", "b", "c1", 3, 0, false);
        let mut x = SetDigest::default();
        x.add(&a);
        x.add(&b);
        let mut y = SetDigest::default();
        y.add(&b);
        y.add(&a);
        assert_eq!(x, y);
        x.replace(&b, &b2);
        assert_ne!(x, y);
        x.replace(&b2, &b);
        assert_eq!(x, y);
        x.remove(&a);
        x.remove(&b);
        assert_eq!(x, SetDigest::default());
        assert_eq!(SetDigest::from_hex(&y.to_hex()), Some(y));
        assert_eq!(SetDigest::from_hex("zz"), None);
    }

    #[test]
    fn fields_are_not_ambiguous() {
        assert_ne!(
            element("agent", "ab", "c", 1, 0, false),
            element("agent", "a", "bc", 1, 0, false)
        );
        assert_ne!(
            element("agent", "a", "c", 1, 0, false),
            element("agent", "a", "c", 1, 0, true)
        );
    }
}
