//! Nothing deleted comes back: once a center has held a tombstone, it never
//! again holds a live version older than it — not after the tombstone is
//! purged at the horizon, nor after a replacing resync.
//!
//! Across a crash only what was durable counts: with relaxed replica commits
//! (ARCHITECTURE.md, "Durability") a tombstone merged in the last second
//! before a crash may be lost with the crash and learnt again from peers.
//! With durable replica commits this is strict.

use super::{at_least, show, Invariant, Step};
use crate::center::{Center, Change};
use crate::msg::Key;
use crate::world::History;
use regmesh_core::Record;
use std::collections::HashMap;

#[derive(Default)]
pub struct NothingDeletedComesBack {
    /// (center, key) → newest tombstone it held (durably or not).
    floor: HashMap<(usize, Key), Record>,
    /// (center, key) → newest tombstone it purged (purges are durable).
    purged: HashMap<(usize, Key), Record>,
}

fn newer(a: Option<&Record>, b: &Record) -> Record {
    match a {
        Some(a) if at_least(a, b) => a.clone(),
        _ => b.clone(),
    }
}

impl Invariant for NothingDeletedComesBack {
    fn name(&self) -> &'static str {
        "nothing deleted comes back"
    }

    fn after_step(&mut self, centers: &[Center], _: &History, step: &Step) -> Result<(), String> {
        let c = step.center;
        for (key, ch) in step.changes {
            let k = (c, key.clone());
            match ch {
                Change::Put(r) if r.deleted => {
                    let f = newer(self.floor.get(&k), r);
                    self.floor.insert(k, f);
                }
                Change::Put(r) => {
                    if let Some(t) = self.floor.get(&k) {
                        if !at_least(r, t) {
                            return Err(format!("{} held {} and now holds {}", centers[c].id, show(t), show(r)));
                        }
                    }
                }
                Change::Purged(t) => {
                    let f = newer(self.purged.get(&k), t);
                    self.purged.insert(k, f);
                }
                Change::Forgot(_) => {}
            }
        }
        Ok(())
    }

    fn on_crash(&mut self, center: &Center) {
        let c = center.idx;
        let durable = center.store.durable();
        let keys = super::keys_of(&self.floor, c);
        for key in keys {
            let kept = durable.get(&key).filter(|r| r.deleted);
            let f = match (kept, self.purged.get(&(c, key.clone()))) {
                (Some(a), Some(b)) => Some(newer(Some(a), b)),
                (Some(a), None) => Some(a.clone()),
                (None, b) => b.cloned(),
            };
            match f {
                Some(f) => self.floor.insert((c, key), f),
                None => self.floor.remove(&(c, key)),
            };
        }
    }
}
