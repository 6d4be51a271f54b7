//! Bounded per-peer tables of the CoAP server: duplicate detection of
//! requests by (peer, message id) for EXCHANGE_LIFETIME with the cached
//! response, and Block1 reassembly of large request payloads.
//!
//! Must never: grow past its bound (a full table refuses new entries rather
//! than forgetting one younger than EXCHANGE_LIFETIME).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// RFC 7252 §4.8.2 EXCHANGE_LIFETIME with the default parameters.
pub const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);
/// Most remembered exchanges (only requests that are not safe: POST, PUT,
/// DELETE...). A response here is tens of bytes, so about 25 MB at most; it
/// caps sustained non-safe requests at this many per EXCHANGE_LIFETIME
/// (about 1,000/s), beyond which new ones are answered 5.03.
pub const DEDUP_ENTRIES_MAX: usize = 250_000;
/// Most Block1 transfers in progress, and the largest reassembled payload.
pub const BLOCK1_TRANSFERS_MAX: usize = 256;
pub const BLOCK1_BYTES_MAX: usize = 64 * 1024;
/// A Block1 transfer idle this long is dropped.
pub const BLOCK1_IDLE: Duration = Duration::from_secs(60);

/// What the dedup table knows of an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// New: now remembered as in progress; handle it.
    New,
    /// Being handled: drop the duplicate.
    InProgress,
    /// Answered: re-send these bytes.
    Answered(Vec<u8>),
    /// The table is full of live exchanges: answer 5.03.
    Full,
}

/// Duplicate detection by (peer, message id).
#[derive(Default)]
pub struct Dedup {
    map: HashMap<(SocketAddr, u16), Option<Vec<u8>>>,
    order: VecDeque<(Instant, SocketAddr, u16)>,
}

impl Dedup {
    fn expire(&mut self, now: Instant) {
        while let Some((t, p, m)) = self.order.front().copied() {
            if now.duration_since(t) < EXCHANGE_LIFETIME {
                break;
            }
            self.order.pop_front();
            self.map.remove(&(p, m));
        }
    }

    /// Looks up (peer, mid), remembering it as in progress if new.
    pub fn check(&mut self, peer: SocketAddr, mid: u16, now: Instant) -> Seen {
        self.expire(now);
        match self.map.get(&(peer, mid)) {
            Some(None) => Seen::InProgress,
            Some(Some(b)) => Seen::Answered(b.clone()),
            None if self.map.len() >= DEDUP_ENTRIES_MAX => Seen::Full,
            None => {
                self.map.insert((peer, mid), None);
                self.order.push_back((now, peer, mid));
                Seen::New
            }
        }
    }

    /// Stores the answer to (peer, mid).
    pub fn answered(&mut self, peer: SocketAddr, mid: u16, bytes: Vec<u8>) {
        if let Some(slot) = self.map.get_mut(&(peer, mid)) {
            *slot = Some(bytes);
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Outcome of one Block1 block.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembly {
    /// More blocks to come: answer 2.31 Continue.
    Continue,
    /// The whole payload.
    Done(Vec<u8>),
    /// Out of order, too large, or too many transfers: answer 4.08 / 4.13.
    Incomplete(&'static str),
    TooLarge,
}

/// Block1 reassembly keyed by (peer, request URI).
#[derive(Default)]
pub struct Block1 {
    map: HashMap<(SocketAddr, String), (Instant, Vec<u8>)>,
}

impl Block1 {
    pub fn add(
        &mut self,
        key: (SocketAddr, String),
        num: u32,
        size: usize,
        more: bool,
        data: &[u8],
        now: Instant,
    ) -> Assembly {
        self.map.retain(|_, (t, _)| now.duration_since(*t) < BLOCK1_IDLE);
        if num == 0 {
            if !self.map.contains_key(&key) && self.map.len() >= BLOCK1_TRANSFERS_MAX {
                return Assembly::Incomplete("too many block-wise transfers in progress");
            }
            self.map.insert(key.clone(), (now, Vec::new()));
        }
        let Some((t, buf)) = self.map.get_mut(&key) else {
            return Assembly::Incomplete("block-wise transfer did not start with block 0");
        };
        if buf.len() != num as usize * size || (more && data.len() != size) {
            self.map.remove(&key);
            return Assembly::Incomplete("block out of order or of the wrong size");
        }
        if buf.len() + data.len() > BLOCK1_BYTES_MAX {
            self.map.remove(&key);
            return Assembly::TooLarge;
        }
        buf.extend_from_slice(data);
        *t = now;
        if more {
            Assembly::Continue
        } else {
            Assembly::Done(self.map.remove(&key).map(|(_, b)| b).unwrap_or_default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_and_blocks() {
        let p: SocketAddr = "[::1]:9".parse().unwrap();
        let t = Instant::now();
        let mut d = Dedup::default();
        assert_eq!(d.check(p, 7, t), Seen::New);
        assert_eq!(d.check(p, 7, t), Seen::InProgress);
        d.answered(p, 7, vec![1]);
        assert_eq!(d.check(p, 7, t + Duration::from_secs(200)), Seen::Answered(vec![1]));
        assert_eq!(
            d.check(p, 7, t + EXCHANGE_LIFETIME),
            Seen::New,
            "forgotten after EXCHANGE_LIFETIME"
        );
        let mut b = Block1::default();
        let k = (p, "rd".to_string());
        assert_eq!(b.add(k.clone(), 0, 16, true, &[0; 16], t), Assembly::Continue);
        assert_eq!(
            b.add(k.clone(), 1, 16, false, &[1; 3], t),
            Assembly::Done([[0; 16].as_slice(), &[1; 3]].concat())
        );
        assert!(matches!(
            b.add(k.clone(), 2, 16, false, &[1], t),
            Assembly::Incomplete(_)
        ));
    }
}
