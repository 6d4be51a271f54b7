//! The cache of agents fetched on demand from other centers
//! (`?scope=mesh`, document 000 §3.3.2's "detailed info separately
//! cached"): what a peer answered for an id this center does not hold, or
//! holds only older, kept for [`TTL`] so the next mesh lookup of that id
//! is answered without asking (with its age shown).
//!
//! Bounded by entries ([`ENTRIES_MAX`]) and bytes ([`BYTES_MAX`]); the
//! oldest insertion goes first. Time is passed in, so tests drive it.
//!
//! Must never: hand out an entry older than its TTL, or grow past its
//! bounds.

use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a fetched agent is answered from the cache.
pub const TTL: Duration = Duration::from_secs(30);
/// Most agents cached.
pub const ENTRIES_MAX: usize = 4096;
/// Most bytes of cached answers (their JSON text).
pub const BYTES_MAX: usize = 8 << 20;

struct Entry {
    item: Value,
    bytes: usize,
    at: Instant,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Entry>,
    /// Insertions in order; an id replaced later appears again, and its
    /// older position is skipped when evicting.
    order: VecDeque<(String, Instant)>,
    bytes: usize,
}

/// Agents fetched from other centers, by id.
pub struct FetchCache {
    ttl: Duration,
    entries_max: usize,
    bytes_max: usize,
    inner: Mutex<Inner>,
}

impl Default for FetchCache {
    fn default() -> Self {
        Self::new(TTL, ENTRIES_MAX, BYTES_MAX)
    }
}

impl FetchCache {
    pub fn new(ttl: Duration, entries_max: usize, bytes_max: usize) -> Self {
        FetchCache {
            ttl,
            entries_max,
            bytes_max,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The cached item for `id` and its age, if younger than the TTL.
    pub fn get(&self, id: &str, now: Instant) -> Option<(Value, Duration)> {
        let mut g = self.inner.lock().expect("cache lock");
        let age = now.saturating_duration_since(g.map.get(id)?.at);
        if age >= self.ttl {
            let e = g.map.remove(id).expect("just seen");
            g.bytes -= e.bytes;
            return None;
        }
        Some((g.map[id].item.clone(), age))
    }

    /// Caches `item` for `id` (replacing an older one); too large an item
    /// is not cached.
    pub fn put(&self, id: &str, item: Value, now: Instant) {
        let bytes = item.to_string().len() + id.len();
        if bytes > self.bytes_max || self.entries_max == 0 || self.ttl.is_zero() {
            return;
        }
        let mut g = self.inner.lock().expect("cache lock");
        if let Some(old) = g.map.insert(id.to_string(), Entry { item, bytes, at: now }) {
            g.bytes -= old.bytes;
        }
        g.bytes += bytes;
        g.order.push_back((id.to_string(), now));
        while g.map.len() > self.entries_max || g.bytes > self.bytes_max || g.order.len() > 2 * self.entries_max {
            let Some((k, at)) = g.order.pop_front() else { break };
            if g.map.get(&k).is_some_and(|e| e.at == at) {
                let e = g.map.remove(&k).expect("just seen");
                g.bytes -= e.bytes;
            }
        }
    }

    /// Entries held (expired ones included until looked up or evicted).
    pub fn len(&self) -> usize {
        self.inner.lock().expect("cache lock").map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_until_the_ttl_then_forgets() {
        let c = FetchCache::new(Duration::from_secs(30), 10, 1 << 20);
        let t0 = Instant::now();
        c.put("a", json!({"id": "a"}), t0);
        let (v, age) = c.get("a", t0 + Duration::from_secs(29)).unwrap();
        assert_eq!((v["id"].as_str(), age), (Some("a"), Duration::from_secs(29)));
        assert!(c.get("a", t0 + Duration::from_secs(30)).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn stays_within_entries_and_bytes() {
        let t0 = Instant::now();
        let c = FetchCache::new(Duration::from_secs(30), 3, 1 << 20);
        for i in 0..10 {
            c.put(&format!("a{i}"), json!({"i": i}), t0);
            assert!(c.len() <= 3);
        }
        assert!(c.get("a9", t0).is_some() && c.get("a6", t0).is_none());
        // A replaced id keeps one entry, and its old position is skipped.
        c.put("a9", json!({"i": 99}), t0);
        c.put("b", json!({}), t0);
        assert_eq!(c.get("a9", t0).unwrap().0["i"], 99);
        let c = FetchCache::new(Duration::from_secs(30), 100, 64);
        c.put("big", json!({"x": "y".repeat(100)}), t0);
        assert!(c.is_empty());
        for i in 0..10 {
            c.put(&format!("a{i}"), json!({"i": i}), t0);
        }
        assert!(c.len() < 10 && c.get("a9", t0).is_some());
    }
}
