//! Confirmable notifications (RFC 7641 §4.5, RFC 7252 §4.2): which
//! notification to an observer goes confirmable, and the retransmission of
//! those in flight until the observer acknowledges. An observer that never
//! acknowledges (gone, rebooted, moved) is dropped, so the table of
//! observers does not keep notifying the void.
//!
//! The policy: a notification is confirmable when [`NON_IN_A_ROW_MAX`]
//! non-confirmable ones went before it, or the last confirmable one is older
//! than [`CON_AT_LEAST_EVERY`] (RFC 7641's 24-hour rule). A newer
//! notification while one is still being retransmitted takes its place,
//! with a new message id and the retransmissions it had left (§4.5.2).
//!
//! Must never: keep more than one notification in flight per observer, or
//! retransmit past [`MAX_RETRANSMIT`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Non-confirmable notifications sent in a row before one goes confirmable.
pub const NON_IN_A_ROW_MAX: u32 = 4;
/// A confirmable notification at least this often (RFC 7641 §4.5).
pub const CON_AT_LEAST_EVERY: Duration = Duration::from_secs(24 * 3600);
/// RFC 7252's MAX_RETRANSMIT.
pub const MAX_RETRANSMIT: u32 = 4;
/// RFC 7252's default ACK_TIMEOUT; `[fronts.rd] ack_timeout_ms` changes it.
pub const ACK_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);

/// An observation: (peer, token).
pub type ObserverKey = (SocketAddr, Vec<u8>);

/// What a confirmable notification in flight needs to go again.
#[derive(Debug, Clone)]
struct InFlight {
    mid: u16,
    bytes: Vec<u8>,
    /// Retransmissions done so far.
    retransmitted: u32,
    timeout: Duration,
    next_at: Instant,
}

/// What [`Confirmables::due`] found.
#[derive(Debug, Default)]
pub struct Due {
    /// Notifications to send again: (peer, bytes).
    pub resend: Vec<(SocketAddr, Vec<u8>)>,
    /// Observers that acknowledged none of [`MAX_RETRANSMIT`] retransmissions.
    pub gave_up: Vec<ObserverKey>,
}

/// Confirmable notifications in flight, one per observer at most.
#[derive(Debug)]
pub struct Confirmables {
    ack_timeout: Duration,
    by_observer: HashMap<ObserverKey, InFlight>,
}

impl Confirmables {
    pub fn new(ack_timeout: Duration) -> Self {
        Confirmables {
            ack_timeout,
            by_observer: HashMap::new(),
        }
    }

    /// Whether the next notification to an observer that has had
    /// `non_in_a_row` non-confirmable ones since its last confirmable one,
    /// sent at `last_con` (None: never), must be confirmable.
    pub fn wants_con(non_in_a_row: u32, last_con: Option<Instant>, now: Instant) -> bool {
        non_in_a_row >= NON_IN_A_ROW_MAX
            || last_con.is_some_and(|t| now.saturating_duration_since(t) >= CON_AT_LEAST_EVERY)
    }

    /// Starts retransmitting the confirmable notification `bytes` (message
    /// id `mid`) to `key`; one still in flight to it is replaced and its
    /// retransmission count and timeout carry over.
    pub fn start(&mut self, key: ObserverKey, mid: u16, bytes: Vec<u8>, now: Instant) {
        let fresh = InFlight {
            mid,
            bytes,
            retransmitted: 0,
            timeout: jittered(self.ack_timeout, mid),
            next_at: now,
        };
        let entry = match self.by_observer.remove(&key) {
            Some(old) => InFlight {
                retransmitted: old.retransmitted,
                timeout: old.timeout,
                next_at: old.next_at,
                ..fresh
            },
            None => InFlight {
                next_at: now + fresh.timeout,
                ..fresh
            },
        };
        self.by_observer.insert(key, entry);
    }

    /// An acknowledgement (or reset) from `peer` of message `mid`; returns
    /// the observer whose notification it settled.
    pub fn settled(&mut self, peer: SocketAddr, mid: u16) -> Option<ObserverKey> {
        let key = self
            .by_observer
            .iter()
            .find(|((p, _), f)| *p == peer && f.mid == mid)
            .map(|(k, _)| k.clone())?;
        self.by_observer.remove(&key);
        Some(key)
    }

    /// Forgets the observer's notification in flight (it was cancelled).
    pub fn forget(&mut self, key: &ObserverKey) {
        self.by_observer.remove(key);
    }

    /// What is due at `now`: retransmissions (each doubling its timeout), and
    /// the observers given up on after [`MAX_RETRANSMIT`] of them.
    pub fn due(&mut self, now: Instant) -> Due {
        let mut due = Due::default();
        for (key, f) in self.by_observer.iter_mut() {
            if f.next_at > now {
                continue;
            }
            if f.retransmitted >= MAX_RETRANSMIT {
                due.gave_up.push(key.clone());
                continue;
            }
            f.retransmitted += 1;
            f.timeout *= 2;
            f.next_at = now + f.timeout;
            due.resend.push((key.0, f.bytes.clone()));
        }
        for key in &due.gave_up {
            self.by_observer.remove(key);
        }
        due
    }

    pub fn len(&self) -> usize {
        self.by_observer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_observer.is_empty()
    }
}

/// The first timeout: `ack_timeout` times a factor in [1, 1.5) (RFC 7252's
/// ACK_RANDOM_FACTOR), spread by the message id.
fn jittered(ack_timeout: Duration, mid: u16) -> Duration {
    let spread = u64::from(mid.wrapping_mul(40503)) % 500;
    ack_timeout + ack_timeout * spread as u32 / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> ObserverKey {
        ("[::1]:5683".parse().unwrap(), vec![n])
    }

    #[test]
    fn every_fifth_notification_and_once_a_day_is_confirmable() {
        let now = Instant::now();
        assert!(!Confirmables::wants_con(0, None, now));
        assert!(!Confirmables::wants_con(NON_IN_A_ROW_MAX - 1, Some(now), now));
        assert!(Confirmables::wants_con(NON_IN_A_ROW_MAX, Some(now), now));
        let day_later = now + CON_AT_LEAST_EVERY;
        assert!(Confirmables::wants_con(0, Some(now), day_later));
    }

    #[test]
    fn unacknowledged_notifications_are_retransmitted_then_given_up() {
        let t0 = Instant::now();
        let ack = Duration::from_millis(100);
        let mut c = Confirmables::new(ack);
        c.start(key(1), 7, b"n1".to_vec(), t0);
        assert!(c.due(t0).resend.is_empty(), "nothing due before its timeout");
        let mut at = t0;
        let mut resent = 0;
        let mut waits = vec![];
        for _ in 0..400 {
            at += Duration::from_millis(50);
            let d = c.due(at);
            resent += d.resend.len();
            if !d.resend.is_empty() {
                waits.push(at);
            }
            if !d.gave_up.is_empty() {
                assert_eq!(d.gave_up, vec![key(1)]);
                break;
            }
            if at > t0 + Duration::from_secs(10) {
                break;
            }
        }
        assert_eq!(resent, MAX_RETRANSMIT as usize, "four retransmissions");
        assert!(c.is_empty(), "given up");
        // The waits double: each gap is at least the one before.
        let gaps: Vec<_> = waits.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "{gaps:?}");
    }

    #[test]
    fn an_ack_settles_and_a_newer_notification_takes_over_the_count() {
        let t0 = Instant::now();
        let mut c = Confirmables::new(Duration::from_millis(100));
        c.start(key(1), 7, b"n1".to_vec(), t0);
        let d = c.due(t0 + Duration::from_millis(200));
        assert_eq!(d.resend.len(), 1);
        // A newer state replaces it, with a new mid, keeping its count.
        c.start(key(1), 8, b"n2".to_vec(), t0 + Duration::from_millis(210));
        assert_eq!(c.len(), 1);
        assert_eq!(c.settled(key(1).0, 7), None, "the old mid settles nothing");
        let d = c.due(t0 + Duration::from_secs(1));
        assert_eq!(d.resend, vec![(key(1).0, b"n2".to_vec())]);
        assert_eq!(c.settled(key(1).0, 8), Some(key(1)));
        assert!(c.is_empty());
        assert!(c.due(t0 + Duration::from_secs(60)).gave_up.is_empty());
    }
}
