//! Volatile in-memory backend: same contract as the durable ones except that
//! nothing survives the process. For tests and the simulator.

use crate::{RecordOp, Store, StoreError, WriteBatch};
use std::collections::BTreeMap;
use std::sync::RwLock;

#[derive(Default)]
struct Inner {
    records: BTreeMap<(String, String), Vec<u8>>,
    changes: BTreeMap<u64, Vec<u8>>,
    meta: BTreeMap<String, Vec<u8>>,
}

/// In-memory [`Store`].
#[derive(Default)]
pub struct MemStore {
    inner: RwLock<Inner>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemStore {
    fn apply(&self, b: &WriteBatch) -> Result<(), StoreError> {
        let mut g = self.inner.write().expect("memstore lock");
        if let Some((k, want)) = &b.expect_meta {
            if g.meta.get(k) != want.as_ref() {
                return Err(StoreError::Conflict(k.clone()));
            }
        }
        // In order: a later op on a key overrides an earlier one.
        for op in &b.records {
            match op {
                RecordOp::Put { kind, id, bytes } => {
                    g.records.insert((kind.clone(), id.clone()), bytes.clone());
                }
                RecordOp::Remove { kind, id } => {
                    g.records.remove(&(kind.clone(), id.clone()));
                }
            }
        }
        for (n, v) in &b.changes {
            g.changes.insert(*n, v.clone());
        }
        if let Some(below) = b.trim_changes_below {
            g.changes = g.changes.split_off(&below);
        }
        for (k, v) in &b.meta {
            g.meta.insert(k.clone(), v.clone());
        }
        Ok(())
    }

    fn get(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let g = self.inner.read().expect("memstore lock");
        Ok(g.records.get(&(kind.to_string(), id.to_string())).cloned())
    }

    fn get_many(&self, kind: &str, ids: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let g = self.inner.read().expect("memstore lock");
        Ok(ids
            .iter()
            .map(|id| g.records.get(&(kind.to_string(), id.to_string())).cloned())
            .collect())
    }

    fn scan(&self, f: &mut dyn FnMut(&str, &str, &[u8]) -> bool) -> Result<(), StoreError> {
        let g = self.inner.read().expect("memstore lock");
        for ((k, i), v) in &g.records {
            if !f(k, i, v) {
                break;
            }
        }
        Ok(())
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let g = self.inner.read().expect("memstore lock");
        Ok(g.changes
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(n, v)| (*n, v.clone()))
            .collect())
    }

    fn change_bounds(&self) -> Result<Option<(u64, u64)>, StoreError> {
        let g = self.inner.read().expect("memstore lock");
        Ok(g.changes
            .first_key_value()
            .zip(g.changes.last_key_value())
            .map(|((a, _), (b, _))| (*a, *b)))
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.inner.read().expect("memstore lock").meta.get(key).cloned())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}
