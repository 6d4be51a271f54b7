//! The default backend: one redb file. redb is a pure-Rust, copy-on-write
//! B-tree with ACID transactions; a committed write transaction with
//! `Durability::Immediate` (redb's default) is on disk before `commit`
//! returns, and a crash at any point leaves the last committed state.
//!
//! Tables: `records` (key `kind \0 id`), `changes` (u64 → bytes), `meta`
//! (str → bytes). A `meta` cell `store.format` records the layout version.

use crate::{RecordOp, Store, StoreError, WriteBatch};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Layout version written in `meta["store.format"]` (decimal text).
const STORE_FORMAT: u32 = 1;

/// redb-backed [`Store`].
pub struct RedbStore {
    db: Database,
}

fn be<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn key(kind: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(kind.len() + 1 + id.len());
    k.extend_from_slice(kind.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

fn split_key(k: &[u8]) -> Result<(&str, &str), StoreError> {
    let p = k
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| StoreError::Corrupt("record key without separator".into()))?;
    let kind = std::str::from_utf8(&k[..p]).map_err(|_| StoreError::Corrupt("kind not UTF-8".into()))?;
    let id = std::str::from_utf8(&k[p + 1..]).map_err(|_| StoreError::Corrupt("id not UTF-8".into()))?;
    Ok((kind, id))
}

impl RedbStore {
    /// Opens or creates the database file at `path` with a page cache of
    /// `cache_bytes`. Refuses a file written with an unknown layout.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        let w = db.begin_write().map_err(be)?;
        {
            w.open_table(RECORDS).map_err(be)?;
            w.open_table(CHANGES).map_err(be)?;
            let mut meta = w.open_table(META).map_err(be)?;
            let existing = meta.get("store.format").map_err(be)?.map(|v| v.value().to_vec());
            // A newer or unreadable layout returns before the commit below:
            // the transaction is dropped, nothing is written.
            if crate::check_format("store layout", existing.as_deref(), STORE_FORMAT)?.is_none() {
                meta.insert("store.format", STORE_FORMAT.to_string().as_bytes())
                    .map_err(be)?;
            }
        }
        w.commit().map_err(be)?;
        Ok(RedbStore { db })
    }
}

impl Store for RedbStore {
    fn apply(&self, b: &WriteBatch) -> Result<(), StoreError> {
        let mut w = self.db.begin_write().map_err(be)?;
        if b.relaxed {
            w.set_durability(Durability::None).map_err(be)?;
        }
        if let Some((k, want)) = &b.expect_meta {
            let meta = w.open_table(META).map_err(be)?;
            let held = meta.get(k.as_str()).map_err(be)?.map(|v| v.value().to_vec());
            if held != *want {
                // Dropping the transaction aborts it: nothing is written.
                return Err(StoreError::Conflict(k.clone()));
            }
        }
        {
            let mut records = w.open_table(RECORDS).map_err(be)?;
            // In order: a later op on a key overrides an earlier one.
            for op in &b.records {
                match op {
                    RecordOp::Put { kind, id, bytes } => {
                        records.insert(key(kind, id).as_slice(), bytes.as_slice()).map_err(be)?;
                    }
                    RecordOp::Remove { kind, id } => {
                        records.remove(key(kind, id).as_slice()).map_err(be)?;
                    }
                }
            }
            let mut changes = w.open_table(CHANGES).map_err(be)?;
            for (n, v) in &b.changes {
                changes.insert(*n, v.as_slice()).map_err(be)?;
            }
            if let Some(below) = b.trim_changes_below {
                changes.retain_in(..below, |_, _| false).map_err(be)?;
            }
            let mut meta = w.open_table(META).map_err(be)?;
            for (k, v) in &b.meta {
                meta.insert(k.as_str(), v.as_slice()).map_err(be)?;
            }
        }
        w.commit().map_err(be)
    }

    fn get(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self.db.begin_read().map_err(be)?;
        let t = r.open_table(RECORDS).map_err(be)?;
        Ok(t.get(key(kind, id).as_slice()).map_err(be)?.map(|v| v.value().to_vec()))
    }

    fn get_many(&self, kind: &str, ids: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let r = self.db.begin_read().map_err(be)?;
        let t = r.open_table(RECORDS).map_err(be)?;
        ids.iter()
            .map(|id| Ok(t.get(key(kind, id).as_slice()).map_err(be)?.map(|v| v.value().to_vec())))
            .collect()
    }

    fn scan(&self, f: &mut dyn FnMut(&str, &str, &[u8]) -> bool) -> Result<(), StoreError> {
        let r = self.db.begin_read().map_err(be)?;
        let t = r.open_table(RECORDS).map_err(be)?;
        for e in t.iter().map_err(be)? {
            let (k, v) = e.map_err(be)?;
            let (kind, id) = split_key(k.value())?;
            if !f(kind, id, v.value()) {
                break;
            }
        }
        Ok(())
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let r = self.db.begin_read().map_err(be)?;
        let t = r.open_table(CHANGES).map_err(be)?;
        let mut out = Vec::new();
        if after == u64::MAX {
            return Ok(out);
        }
        for e in t.range(after + 1..).map_err(be)?.take(limit) {
            let (k, v) = e.map_err(be)?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn change_bounds(&self) -> Result<Option<(u64, u64)>, StoreError> {
        let r = self.db.begin_read().map_err(be)?;
        let t = r.open_table(CHANGES).map_err(be)?;
        let first = t.first().map_err(be)?.map(|(k, _)| k.value());
        let last = t.last().map_err(be)?.map(|(k, _)| k.value());
        Ok(first.zip(last))
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self.db.begin_read().map_err(be)?;
        let t = r.open_table(META).map_err(be)?;
        Ok(t.get(key).map_err(be)?.map(|v| v.value().to_vec()))
    }

    fn backend(&self) -> &'static str {
        "redb"
    }
}
