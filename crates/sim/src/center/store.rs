//! The store model of a simulated center: current versions, the durable
//! ones, the seq index, held tombstones and purge marks, with the node's
//! durability rules (own writes durable before acknowledged; relaxed
//! commits durable at the next flush; a crash recovers only the durable
//! state). Must never decide which version wins (that is `Record`'s merge
//! order, asked by the caller) nor know about peers.

use crate::msg::Key;
use regmesh_core::Record;
use std::collections::{BTreeMap, BTreeSet};

/// The store: current versions, the durable ones, and the seq index.
#[derive(Debug, Clone, Default)]
pub struct Store {
    pub current: BTreeMap<Key, Record>,
    durable: BTreeMap<Key, Record>,
    dirty: BTreeSet<Key>,
    pub(super) by_seq: BTreeMap<(String, u64), Key>,
    /// Deletion time (its version's wall clock) of each held tombstone.
    pub(super) tomb_at: BTreeMap<Key, u64>,
    pub purged: BTreeMap<String, u64>,
    durable_purged: BTreeMap<String, u64>,
}

impl Store {
    pub(super) fn put(&mut self, r: Record, durable: bool) {
        let key = (r.kind.clone(), r.id.clone());
        if let Some(old) = self.current.get(&key) {
            self.by_seq.remove(&(old.origin.clone(), old.seq));
        }
        self.by_seq.insert((r.origin.clone(), r.seq), key.clone());
        if r.deleted {
            // As the node: the horizon counts from the deletion's version.
            self.tomb_at.insert(key.clone(), r.version.wall_ms);
        } else {
            self.tomb_at.remove(&key);
        }
        self.current.insert(key.clone(), r);
        self.dirty.insert(key);
        if durable {
            self.flush();
        }
    }

    pub(super) fn remove(&mut self, key: &Key) -> Option<Record> {
        let old = self.current.remove(key)?;
        self.by_seq.remove(&(old.origin.clone(), old.seq));
        self.tomb_at.remove(key);
        self.dirty.insert(key.clone());
        Some(old)
    }

    /// A durable commit: everything committed before is durable too.
    pub(super) fn flush(&mut self) {
        for k in std::mem::take(&mut self.dirty) {
            match self.current.get(&k) {
                Some(r) => self.durable.insert(k, r.clone()),
                None => self.durable.remove(&k),
            };
        }
        self.durable_purged = self.purged.clone();
    }

    pub(super) fn raise_purged(&mut self, origin: &str, seq: u64) {
        let m = self.purged.entry(origin.to_string()).or_insert(0);
        *m = (*m).max(seq);
    }

    /// What survives a crash.
    pub(super) fn recover(&mut self) {
        self.dirty.clear();
        self.current = self.durable.clone();
        self.purged = self.durable_purged.clone();
        self.by_seq = self
            .current
            .iter()
            .map(|(k, r)| ((r.origin.clone(), r.seq), k.clone()))
            .collect();
        self.tomb_at = self
            .current
            .iter()
            .filter(|(_, r)| r.deleted)
            .map(|(k, r)| (k.clone(), r.version.wall_ms))
            .collect();
    }

    pub fn durable(&self) -> &BTreeMap<Key, Record> {
        &self.durable
    }

    pub fn get(&self, key: &Key) -> Option<&Record> {
        self.current.get(key)
    }

    pub(super) fn origin_after(&self, origin: &str, after: u64, limit: usize) -> Vec<Record> {
        self.by_seq
            .range((origin.to_string(), after + 1)..)
            .take_while(|((o, _), _)| o == origin)
            .take(limit)
            .filter_map(|(_, k)| self.current.get(k).cloned())
            .collect()
    }

    pub(super) fn origin_live(&self, origin: &str) -> Vec<(String, String, u64)> {
        self.by_seq
            .range((origin.to_string(), 0)..)
            .take_while(|((o, _), _)| o == origin)
            .filter_map(|(_, k)| self.current.get(k))
            .filter(|r| !r.deleted)
            .map(|r| (r.kind.clone(), r.id.clone(), r.seq))
            .collect()
    }
}
