//! Per-origin progress: the highest sequence number below which every write
//! of an origin has been applied here (DESIGN.md "Anti-entropy").
//!
//! Writes arrive out of order, so numbers above the contiguous mark are held
//! in a bounded set until the gap closes. A peer asked for "origin O after
//! seq N" sends what it has and may say it covered everything through M (some
//! numbers are never visible to us by export policy); [`OriginProgress::cover`]
//! takes that statement.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

/// Default bound on out-of-order numbers held above the contiguous mark.
pub const AHEAD_MAX: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginProgress {
    contiguous: u64,
    ahead: BTreeSet<u64>,
    ahead_max: usize,
}

/// Whether a sequence number was already applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    New,
    AlreadyApplied,
}

impl Default for OriginProgress {
    fn default() -> Self {
        Self::resume(0)
    }
}

impl OriginProgress {
    /// Resumes from a persisted contiguous mark.
    pub fn resume(contiguous: u64) -> Self {
        OriginProgress {
            contiguous,
            ahead: BTreeSet::new(),
            ahead_max: AHEAD_MAX,
        }
    }

    pub fn with_ahead_max(mut self, n: usize) -> Self {
        self.ahead_max = n.max(1);
        self
    }

    /// Every seq in `1..=contiguous` has been applied.
    pub fn contiguous(&self) -> u64 {
        self.contiguous
    }

    /// Highest seq applied, contiguous or not.
    pub fn highest(&self) -> u64 {
        self.ahead.last().copied().unwrap_or(self.contiguous)
    }

    /// Records that write `seq` was applied.
    pub fn observe(&mut self, seq: u64) -> Progress {
        if seq <= self.contiguous || self.ahead.contains(&seq) {
            return Progress::AlreadyApplied;
        }
        if seq == self.contiguous + 1 {
            self.contiguous = seq;
            while self.ahead.remove(&(self.contiguous + 1)) {
                self.contiguous += 1;
            }
        } else {
            self.ahead.insert(seq);
            if self.ahead.len() > self.ahead_max {
                // Forget the highest; re-applying it later is harmless
                // (merge is idempotent).
                self.ahead.pop_last();
            }
        }
        Progress::New
    }

    /// A peer covered every write of this origin through `through` that we
    /// may see.
    pub fn cover(&mut self, through: u64) {
        if through > self.contiguous {
            self.contiguous = through;
            self.ahead = self.ahead.split_off(&(through + 1));
            while self.ahead.remove(&(self.contiguous + 1)) {
                self.contiguous += 1;
            }
        }
    }

    /// Missing ranges below [`OriginProgress::highest`], at most `limit`.
    pub fn gaps(&self, limit: usize) -> Vec<RangeInclusive<u64>> {
        let mut out = Vec::new();
        let mut next = self.contiguous + 1;
        for &s in &self.ahead {
            if out.len() == limit {
                break;
            }
            if s > next {
                out.push(next..=s - 1);
            }
            next = s + 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_gaps_in_any_order() {
        let mut p = OriginProgress::default();
        assert_eq!(p.observe(3), Progress::New);
        assert_eq!(p.observe(1), Progress::New);
        assert_eq!(p.contiguous(), 1);
        assert_eq!(p.gaps(10), vec![2..=2]);
        assert_eq!(p.observe(2), Progress::New);
        assert_eq!(p.contiguous(), 3);
        assert_eq!(p.observe(2), Progress::AlreadyApplied);
        assert!(p.gaps(10).is_empty());
    }

    #[test]
    fn cover_skips_invisible_numbers() {
        let mut p = OriginProgress::default();
        p.observe(1);
        p.observe(5);
        p.observe(9);
        p.cover(6);
        assert_eq!(p.contiguous(), 6);
        assert_eq!(p.gaps(10), vec![7..=8]);
        p.cover(8);
        assert_eq!(p.contiguous(), 9);
    }

    #[test]
    fn bounded() {
        let mut p = OriginProgress::default().with_ahead_max(3);
        for s in [10, 20, 30, 40] {
            p.observe(s);
        }
        assert_eq!(p.highest(), 30);
        assert_eq!(p.observe(40), Progress::New, "forgotten, so new again");
    }
}
