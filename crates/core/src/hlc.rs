//! Hybrid logical clock (Kulkarni et al.): a timestamp that follows physical
//! time when clocks are sane and still orders causally when they are not.
//!
//! The clock never reads the wall clock itself: every call takes the caller's
//! physical reading in milliseconds, so the simulator and tests drive it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One HLC reading. Ordered by `(wall_ms, logical)`. Records add their origin
/// as the tiebreak (see [`crate::record`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch, as the issuing clock understood it.
    pub wall_ms: u64,
    /// Counter that orders events within one millisecond.
    pub logical: u32,
}

impl Hlc {
    pub const ZERO: Hlc = Hlc { wall_ms: 0, logical: 0 };

    pub fn new(wall_ms: u64, logical: u32) -> Self {
        Hlc { wall_ms, logical }
    }
}

/// Text form `"<wall_ms>.<logical>"`, e.g. `"1763683200000.2"`.
impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall_ms, self.logical)
    }
}

impl FromStr for Hlc {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (w, l) = s
            .split_once('.')
            .ok_or_else(|| format!("version {s:?} is not <wall_ms>.<logical>"))?;
        Ok(Hlc {
            wall_ms: w.parse().map_err(|_| format!("bad wall_ms in {s:?}"))?,
            logical: l.parse().map_err(|_| format!("bad logical in {s:?}"))?,
        })
    }
}

impl Serialize for Hlc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hlc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A remote timestamp was too far ahead of our physical clock. State unchanged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("remote clock is {ahead_ms} ms ahead of ours (limit {limit_ms} ms)")]
pub struct ClockDriftError {
    pub ahead_ms: u64,
    pub limit_ms: u64,
}

/// The issuing side of an HLC. Strictly monotonic: every [`HlcClock::tick`]
/// returns a value greater than every value it returned or observed before.
#[derive(Clone, Debug)]
pub struct HlcClock {
    last: Hlc,
    drift_max_ms: u64,
}

impl HlcClock {
    /// Default bound on how far ahead a remote timestamp may be (5 minutes).
    pub const DRIFT_MAX_MS: u64 = 5 * 60 * 1000;

    /// Resume from the last value this clock issued (persisted by the caller),
    /// so a restart with a clock that went backwards never reissues a value.
    pub fn resume(last: Hlc) -> Self {
        HlcClock {
            last,
            drift_max_ms: Self::DRIFT_MAX_MS,
        }
    }

    pub fn last(&self) -> Hlc {
        self.last
    }

    /// Next timestamp for a local event at physical time `now_ms`.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        let next = if now_ms > self.last.wall_ms {
            Hlc::new(now_ms, 0)
        } else if self.last.logical < u32::MAX {
            Hlc::new(self.last.wall_ms, self.last.logical + 1)
        } else {
            Hlc::new(self.last.wall_ms + 1, 0)
        };
        debug_assert!(next > self.last);
        self.last = next;
        next
    }

    /// Fold in a timestamp received from elsewhere. Refuses (and changes
    /// nothing) when `remote` is more than the drift bound ahead of `now_ms`.
    pub fn observe(&mut self, remote: Hlc, now_ms: u64) -> Result<(), ClockDriftError> {
        if remote.wall_ms > now_ms.saturating_add(self.drift_max_ms) {
            return Err(ClockDriftError {
                ahead_ms: remote.wall_ms - now_ms,
                limit_ms: self.drift_max_ms,
            });
        }
        if remote > self.last {
            self.last = remote;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_when_clock_goes_back() {
        let mut c = HlcClock::resume(Hlc::ZERO);
        let a = c.tick(1000);
        let b = c.tick(999);
        let d = c.tick(1000);
        let e = c.tick(1001);
        assert!(a < b && b < d && d < e);
        assert_eq!(a, Hlc::new(1000, 0));
        assert_eq!(b, Hlc::new(1000, 1));
        assert_eq!(e, Hlc::new(1001, 0));
    }

    #[test]
    fn resume_never_reissues() {
        let mut c = HlcClock::resume(Hlc::new(5000, 7));
        assert_eq!(c.tick(10), Hlc::new(5000, 8));
    }

    #[test]
    fn observe_bounds_drift() {
        let mut c = HlcClock::resume(Hlc::ZERO);
        assert!(c.observe(Hlc::new(1_000_000_000, 0), 0).is_err());
        assert_eq!(c.last(), Hlc::ZERO);
        c.observe(Hlc::new(100, 3), 50).unwrap();
        assert_eq!(c.tick(50), Hlc::new(100, 4));
    }

    #[test]
    fn text_round_trip() {
        let h = Hlc::new(1_763_683_200_000, 2);
        assert_eq!(h.to_string(), "1763683200000.2");
        assert_eq!("1763683200000.2".parse::<Hlc>().unwrap(), h);
        assert!("12".parse::<Hlc>().is_err());
    }
}
