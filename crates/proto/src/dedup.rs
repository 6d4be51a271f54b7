//! Deduplication of flooded messages by `(initiator, counter)`.
//!
//! DRiP §5.4 keeps one "highest counter seen" per initiator and drops
//! anything at or below it. Messages from one initiator travel over different
//! paths, so they can arrive out of order, and that rule then drops real
//! updates. regmesh keeps a window instead:
//! - every counter below `base` counts as seen;
//! - a bitmap records which of the next [`WINDOW`] counters were seen.
//!
//! A counter far ahead slides the window. A counter below the window is
//! [`Seen::Old`]: it may or may not have been seen, so its records are applied
//! (merging is idempotent) but not relayed, and anti-entropy repairs what
//! further nodes miss. The set of records stays correct either way. Dedup only
//! saves bandwidth and relay loops.
//!
//! `DRiP-Node-Counter-reset: true` starts the window afresh, unless that very
//! counter is already marked, which means it is a copy of the reset message
//! that came by another path. regmesh persists its counters and resets only on
//! wrap-around (after 2^64 messages).

/// Counters tracked above `base`. Counters may have gaps (regmesh uses the
/// highest seq of a message), so the window is wide: 4096 counters, 512 bytes.
pub const WINDOW: u64 = 4096;
/// The highest counter a message may carry. DRiP counters wrap with a reset
/// long before this (2^63 messages); anything above is a peer's error or an
/// attack. The peer listener refuses it (400), and [`CounterWindow`] treats
/// it as [`Seen::Old`] (apply, never relay, the window does not move), so
/// no arithmetic near `u64::MAX` is ever done.
pub const COUNTER_MAX: u64 = u64::MAX / 2;
const WORDS: usize = (WINDOW / 64) as usize;
/// Length of [`CounterWindow::to_bytes`].
pub const ENCODED_BYTES: usize = 8 + 8 * WORDS + 9;

/// Whether a message is the first copy seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time: apply and relay.
    New,
    /// Seen before: neither apply nor relay.
    Duplicate,
    /// Below the window: perhaps seen, perhaps not. Apply (merging is
    /// idempotent) but do not relay.
    Old,
}

/// Seen counters of one initiator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterWindow {
    /// Every counter below this has been seen.
    base: u64,
    /// Bit `i` set: counter `base + i` seen.
    bits: [u64; WORDS],
    /// Counter of the reset message that started the current epoch, if any.
    epoch_start: Option<u64>,
}

impl Default for CounterWindow {
    fn default() -> Self {
        CounterWindow {
            base: 0,
            bits: [0; WORDS],
            epoch_start: None,
        }
    }
}

impl CounterWindow {
    pub fn new() -> Self {
        Self::default()
    }

    fn get(&self, c: u64) -> bool {
        let i = c - self.base;
        self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, c: u64) {
        let i = c - self.base;
        self.bits[(i / 64) as usize] |= 1 << (i % 64);
    }

    /// Moves `base` forward to `new_base`, keeping the bits that stay in range.
    fn slide_to(&mut self, new_base: u64) {
        debug_assert!(new_base > self.base);
        let shift = new_base - self.base;
        if shift >= WINDOW {
            self.bits = [0; WORDS];
        } else {
            let mut out = [0u64; WORDS];
            for c in new_base..self.base + WINDOW {
                let i = c - self.base;
                if self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0 {
                    let j = c - new_base;
                    out[(j / 64) as usize] |= 1 << (j % 64);
                }
            }
            self.bits = out;
        }
        self.base = new_base;
        self.compact();
    }

    /// Advances `base` over a prefix of seen counters.
    fn compact(&mut self) {
        let mut run = 0;
        while run < WINDOW && self.bits[(run / 64) as usize] & (1 << (run % 64)) != 0 {
            run += 1;
        }
        if run > 0 {
            let base = self.base + run;
            let mut out = [0u64; WORDS];
            for c in base..self.base + WINDOW {
                let i = c - self.base;
                if self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0 {
                    let j = c - base;
                    out[(j / 64) as usize] |= 1 << (j % 64);
                }
            }
            self.bits = out;
            self.base = base;
        }
    }

    /// Records `counter` (with the DRiP reset flag) and says whether it is new.
    pub fn observe(&mut self, counter: u64, reset: bool) -> Seen {
        if counter > COUNTER_MAX {
            return Seen::Old;
        }
        if reset {
            let seen = counter < self.base || (counter - self.base < WINDOW && self.get(counter));
            if seen && self.epoch_start.is_some_and(|s| counter >= s) {
                // A copy of the reset message that started this epoch.
                return Seen::Duplicate;
            }
            *self = CounterWindow {
                epoch_start: Some(counter),
                ..CounterWindow::default()
            };
            return self.mark(counter);
        }
        if counter < self.base {
            return Seen::Old;
        }
        if counter - self.base >= WINDOW {
            self.slide_to(counter - (WINDOW - 1));
        }
        if self.get(counter) {
            return Seen::Duplicate;
        }
        self.mark(counter)
    }

    fn mark(&mut self, counter: u64) -> Seen {
        if counter - self.base >= WINDOW {
            self.slide_to(counter - (WINDOW - 1));
        }
        self.set(counter);
        self.compact();
        Seen::New
    }

    /// What [`CounterWindow::observe`] would answer, without recording
    /// anything (to skip work on copies already seen).
    pub fn peek(&self, counter: u64, reset: bool) -> Seen {
        if counter > COUNTER_MAX {
            return Seen::Old;
        }
        let in_window = counter >= self.base && counter - self.base < WINDOW;
        if reset {
            let seen = counter < self.base || (in_window && self.get(counter));
            return if seen && self.epoch_start.is_some_and(|s| counter >= s) {
                Seen::Duplicate
            } else {
                Seen::New
            };
        }
        if counter < self.base {
            Seen::Old
        } else if in_window && self.get(counter) {
            Seen::Duplicate
        } else {
            Seen::New
        }
    }

    /// Every counter below this is known seen.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Fixed-size encoding for persistence: base, the bitmap, then the
    /// epoch start (flag byte and counter).
    pub fn to_bytes(&self) -> [u8; ENCODED_BYTES] {
        let mut out = [0u8; ENCODED_BYTES];
        out[..8].copy_from_slice(&self.base.to_be_bytes());
        for (i, w) in self.bits.iter().enumerate() {
            out[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_be_bytes());
        }
        let tail = 8 + 8 * WORDS;
        if let Some(s) = self.epoch_start {
            out[tail] = 1;
            out[tail + 1..].copy_from_slice(&s.to_be_bytes());
        }
        out
    }

    /// Inverse of [`CounterWindow::to_bytes`]; None on a wrong length or flag.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != ENCODED_BYTES {
            return None;
        }
        let mut w = CounterWindow {
            base: u64::from_be_bytes(b[..8].try_into().ok()?),
            ..Default::default()
        };
        for i in 0..WORDS {
            w.bits[i] = u64::from_be_bytes(b[8 + 8 * i..16 + 8 * i].try_into().ok()?);
        }
        let tail = 8 + 8 * WORDS;
        w.epoch_start = match b[tail] {
            0 => None,
            1 => Some(u64::from_be_bytes(b[tail + 1..].try_into().ok()?)),
            _ => return None,
        };
        Some(w)
    }
}

/// This center's own propagation counter (`DRiP-Node-Counter`). The caller
/// persists [`OwnCounter::last`] before sending, so a restart never reuses a
/// counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OwnCounter {
    last: Option<u64>,
}

impl OwnCounter {
    pub fn resume(last: Option<u64>) -> Self {
        OwnCounter { last }
    }

    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// Next counter and the `DRiP-Node-Counter-reset` flag to send with it:
    /// true only for the first counter after wrapping back to zero.
    pub fn issue(&mut self) -> (u64, bool) {
        let (c, reset) = match self.last {
            None => (1, false),
            Some(u64::MAX) => (0, true),
            Some(n) => (n + 1, false),
        };
        self.last = Some(c);
        (c, reset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_at_the_top_of_u64_are_old_and_leave_the_window_alone() {
        let mut w = CounterWindow::new();
        assert_eq!(w.observe(7, false), Seen::New);
        let before = w.clone();
        for c in [COUNTER_MAX + 1, u64::MAX - 1, u64::MAX] {
            for reset in [false, true] {
                assert_eq!(w.peek(c, reset), Seen::Old);
                assert_eq!(w.observe(c, reset), Seen::Old);
            }
        }
        assert_eq!(w, before);
        assert_eq!(w.observe(COUNTER_MAX, false), Seen::New);
        assert_eq!(w.observe(COUNTER_MAX, false), Seen::Duplicate);
        assert_eq!(w.base(), COUNTER_MAX - (WINDOW - 1));
    }

    #[test]
    fn reordered_counters_are_all_new_once() {
        let mut w = CounterWindow::new();
        for c in [3, 1, 2, 5, 4] {
            assert_eq!(w.observe(c, false), Seen::New, "{c}");
        }
        for c in [1, 2, 3, 4, 5] {
            assert_eq!(w.observe(c, false), Seen::Duplicate, "{c}");
        }
        // Counter 0 was never sent by a regmesh node, but 0..=5 all seen now
        // except 0: base only moves over a seen prefix.
        assert_eq!(w.observe(0, false), Seen::New);
        assert_eq!(w.base(), 6);
    }

    #[test]
    fn highest_counter_only_rule_would_drop_these() {
        // The DRiP rule (drop counter <= highest seen) loses 7 here; the
        // window does not.
        let mut w = CounterWindow::new();
        assert_eq!(w.observe(8, false), Seen::New);
        assert_eq!(w.observe(7, false), Seen::New);
    }

    #[test]
    fn far_jump_slides_and_old_counters_count_as_seen() {
        let mut w = CounterWindow::new();
        w.observe(1, false);
        assert_eq!(w.observe(10_000, false), Seen::New);
        assert_eq!(w.observe(5, false), Seen::Old, "below the window: apply, do not relay");
        assert_eq!(w.observe(10_000 - WINDOW + 1, false), Seen::New);
        assert_eq!(w.observe(9_999, false), Seen::New);
        assert_eq!(w.observe(10_000, false), Seen::Duplicate);
    }

    #[test]
    fn reset_starts_over_but_its_copies_are_duplicates() {
        let mut w = CounterWindow::new();
        for c in 1..=1000 {
            w.observe(c, false);
        }
        assert_eq!(w.observe(0, true), Seen::New);
        assert_eq!(
            w.observe(0, true),
            Seen::Duplicate,
            "copy of the reset message by another path"
        );
        assert_eq!(w.observe(1, false), Seen::New);
        assert_eq!(w.observe(2, false), Seen::New);
        assert_eq!(
            w.observe(0, true),
            Seen::Duplicate,
            "a late copy, after the epoch moved on"
        );
        let back = CounterWindow::from_bytes(&w.to_bytes()).unwrap();
        assert_eq!(back, w, "epoch survives persistence");
    }

    #[test]
    fn a_reset_to_a_counter_past_the_window_keeps_the_window_just_below_it() {
        let mut w = CounterWindow::new();
        let c = 3 * WINDOW + 17;
        assert_eq!(w.observe(c, true), Seen::New);
        assert_eq!(w.observe(c, true), Seen::Duplicate);
        // The whole window below the reset counter is still open.
        assert_eq!(w.observe(c - (WINDOW - 1), false), Seen::New);
        assert_eq!(w.observe(c - WINDOW, false), Seen::Old);
        assert_eq!(w.observe(c + 1, false), Seen::New);
    }

    #[test]
    fn persists() {
        let mut w = CounterWindow::new();
        for c in [1, 2, 5, 300, 299] {
            w.observe(c, false);
        }
        let back = CounterWindow::from_bytes(&w.to_bytes()).unwrap();
        assert_eq!(back, w);
        assert!(CounterWindow::from_bytes(&[0; 3]).is_none());
    }

    #[test]
    fn own_counter_wraps_with_reset() {
        let mut c = OwnCounter::resume(None);
        assert_eq!(c.issue(), (1, false));
        let mut c = OwnCounter::resume(Some(u64::MAX - 1));
        assert_eq!(c.issue(), (u64::MAX, false));
        assert_eq!(c.issue(), (0, true));
        assert_eq!(c.issue(), (1, false));
    }
}
