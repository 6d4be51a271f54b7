//! Refusal of replayed peer-call tokens: remembers `(iss, jti)` until the
//! token's `exp`, within a fixed number of entries. Time comes in as an
//! argument.
//!
//! Tokens live at most `regmesh_core::jwt::TTL_S_MAX` seconds, so the cache
//! only ever holds recent tokens. When it is full of unexpired tokens, new
//! tokens are refused (the caller answers 503). Only configured peers can
//! produce valid tokens, so only a peer can fill it.

use std::collections::{BTreeSet, HashMap};

/// Default capacity.
pub const ENTRIES_MAX: usize = 100_000;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// This `(iss, jti)` was already used.
    Replayed,
    /// Too many unexpired tokens are remembered to take another.
    Full,
}

#[derive(Debug, Clone)]
pub struct ReplayCache {
    seen: HashMap<(String, String), u64>,
    by_exp: BTreeSet<(u64, String, String)>,
    max: usize,
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::with_capacity(ENTRIES_MAX)
    }
}

impl ReplayCache {
    pub fn with_capacity(max: usize) -> Self {
        ReplayCache {
            seen: HashMap::new(),
            by_exp: BTreeSet::new(),
            max: max.max(1),
        }
    }

    /// Tokens remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Accepts a token's first use and remembers it until `exp_s`.
    pub fn admit(&mut self, iss: &str, jti: &str, exp_s: u64, now_s: u64) -> Result<(), ReplayError> {
        while let Some((exp, _, _)) = self.by_exp.first() {
            if *exp > now_s {
                break;
            }
            let (_, i, j) = self.by_exp.pop_first().expect("first exists");
            self.seen.remove(&(i, j));
        }
        let key = (iss.to_string(), jti.to_string());
        if self.seen.contains_key(&key) {
            return Err(ReplayError::Replayed);
        }
        if self.seen.len() >= self.max {
            return Err(ReplayError::Full);
        }
        self.by_exp.insert((exp_s, key.0.clone(), key.1.clone()));
        self.seen.insert(key, exp_s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_second_use_until_expiry_forgets_it() {
        let mut c = ReplayCache::with_capacity(10);
        assert_eq!(c.admit("c1", "j1", 100, 50), Ok(()));
        assert_eq!(c.admit("c1", "j1", 100, 60), Err(ReplayError::Replayed));
        assert_eq!(c.admit("c2", "j1", 100, 60), Ok(()), "jti is per issuer");
        // After exp the token itself is refused as expired by the verifier;
        // the cache may forget it.
        assert_eq!(c.admit("c3", "j9", 200, 101), Ok(()));
        assert_eq!(c.len(), 1, "both tokens with exp 100 were forgotten at 101");
    }

    #[test]
    fn bounded() {
        let mut c = ReplayCache::with_capacity(2);
        c.admit("c1", "a", 100, 0).unwrap();
        c.admit("c1", "b", 100, 0).unwrap();
        assert_eq!(c.admit("c1", "c", 100, 0), Err(ReplayError::Full));
        assert_eq!(c.admit("c1", "c", 200, 100), Ok(()), "expired entries make room");
    }
}
