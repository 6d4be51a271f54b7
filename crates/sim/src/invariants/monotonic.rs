//! A record's version never goes backwards at any center: each version a
//! center takes for a key is at least as new as the one it held before —
//! also after that one was purged or dropped by a resync.
//!
//! Across a crash a center resumes from its durable state; with relaxed
//! replica commits that may be older than what it held just before (by at
//! most a second of other centers' versions), and the check resumes from
//! there. With durable replica commits this is strict.

use super::{at_least, show, Invariant, Step};
use crate::center::{Center, Change};
use crate::msg::Key;
use crate::world::History;
use regmesh_core::Record;
use std::collections::{HashMap, HashSet};

#[derive(Default)]
pub struct VersionsNeverGoBack {
    last: HashMap<(usize, Key), Record>,
    /// Keys whose last change was a (durable) purge or resync drop.
    gone: HashSet<(usize, Key)>,
}

impl Invariant for VersionsNeverGoBack {
    fn name(&self) -> &'static str {
        "versions never go back"
    }

    fn after_step(&mut self, centers: &[Center], _: &History, step: &Step) -> Result<(), String> {
        let c = step.center;
        for (key, ch) in step.changes {
            let k = (c, key.clone());
            match ch {
                Change::Put(r) => {
                    if let Some(l) = self.last.get(&k) {
                        if !at_least(r, l) {
                            return Err(format!("{} held {} and now holds {}", centers[c].id, show(l), show(r)));
                        }
                    }
                    self.gone.remove(&k);
                    self.last.insert(k, r.clone());
                }
                Change::Purged(_) | Change::Forgot(_) => {
                    self.gone.insert(k);
                }
            }
        }
        Ok(())
    }

    fn on_crash(&mut self, center: &Center) {
        let c = center.idx;
        let durable = center.store.durable();
        let keys = super::keys_of(&self.last, c);
        for key in keys {
            let k = (c, key.clone());
            match durable.get(&key) {
                Some(r) => {
                    self.last.insert(k.clone(), r.clone());
                    self.gone.remove(&k);
                }
                None if self.gone.contains(&k) => {}
                None => {
                    self.last.remove(&k);
                }
            }
        }
    }
}
