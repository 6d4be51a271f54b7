//! Storage for regmesh: a byte-level [`Store`] trait keyed by `(kind, id)`,
//! an append-only change log for watchers, and small metadata cells.
//!
//! Backends: [`RedbStore`] (embedded, single file, crash-safe; the default),
//! [`PgStore`] (PostgreSQL; one database several processes may share) and
//! [`MemStore`] (volatile; for tests and simulation). Every backend must
//! pass [`conformance`]. The store knows nothing about kinds or record
//! formats: it stores opaque bytes, so adding a kind never touches it.
//!
//! [`Index`] holds the in-memory secondary indexes, rebuilt on start.
//!
//! Must never: interpret record bytes, or acknowledge a batch that is not
//! durable (for durable backends).

pub mod conformance;
mod index;
mod mem;
mod pg;
mod redb_store;

pub use index::{digest, Digest, Index, IndexEntry, Page};
pub use mem::MemStore;
pub use pg::{PgStore, PG_STORE_FORMAT, POOL_MAX as PG_POOL_MAX};
pub use redb_store::RedbStore;

use thiserror::Error;

/// A storage failure.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The backend failed (disk, file, lock). For [`Store::apply`]: the batch
    /// was not committed; state is as before the call.
    #[error("storage backend: {0}")]
    Backend(String),
    /// The connection to a networked backend broke while a batch was being
    /// committed: it may or may not be durable. Only [`Store::apply`] returns
    /// this; read the state again before relying on either outcome.
    #[error("storage backend: the commit's outcome is unknown (it may have been applied): {0}")]
    CommitUnknown(String),
    /// The batch's [`WriteBatch::expect_meta`] did not hold: another writer
    /// on the same store committed first. Nothing of the batch was applied.
    #[error("storage conflict: metadata cell {0:?} changed since it was read; nothing was applied")]
    Conflict(String),
    /// Stored data is not what this version of regmesh wrote. State unchanged.
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
    /// Stored data names a format newer than this build reads: written by a
    /// newer regmesh. Nothing was read into memory and nothing was changed.
    #[error("{what} is in format {found}, newer than the format {supported} this build reads; nothing was changed (run a newer regmesh)")]
    NewerFormat {
        /// What holds the format (`store layout`, `center metadata` ...).
        what: &'static str,
        found: u32,
        supported: u32,
    },
}

/// Reads a format number stored as decimal text (as in `store.format`):
/// `Ok(None)` when absent, [`StoreError::NewerFormat`] above `supported`,
/// [`StoreError::Corrupt`] when it is not a number.
pub fn check_format(what: &'static str, stored: Option<&[u8]>, supported: u32) -> Result<Option<u32>, StoreError> {
    let Some(b) = stored else { return Ok(None) };
    let found: u32 = std::str::from_utf8(b)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{what} format {:?} is not a number",
                String::from_utf8_lossy(b)
            ))
        })?;
    if found > supported {
        return Err(StoreError::NewerFormat { what, found, supported });
    }
    Ok(Some(found))
}

/// One change to the `records` table within a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOp {
    /// Insert or replace the bytes of `(kind, id)`.
    Put { kind: String, id: String, bytes: Vec<u8> },
    /// Remove `(kind, id)` entirely (a purged tombstone); absent is no error.
    Remove { kind: String, id: String },
}

impl RecordOp {
    /// The key this op changes.
    pub fn key(&self) -> (&str, &str) {
        match self {
            RecordOp::Put { kind, id, .. } | RecordOp::Remove { kind, id } => (kind, id),
        }
    }
}

/// One atomic, durable unit of change.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    /// Record changes, applied **in this order**: of several ops on one key,
    /// the last one decides what the key holds after the batch (a remove
    /// then a put leaves the put; a put then a remove leaves nothing).
    pub records: Vec<RecordOp>,
    /// Change-log entries to append: `(change number, bytes)`. Numbers are
    /// assigned by the caller and strictly increasing.
    pub changes: Vec<(u64, Vec<u8>)>,
    /// Drop change-log entries numbered below this.
    pub trim_changes_below: Option<u64>,
    /// Metadata cells to set.
    pub meta: Vec<(String, Vec<u8>)>,
    /// May be lost in a crash until the next batch without this flag is
    /// applied (which makes it durable too, in order). For copies that can
    /// be fetched again, such as other centers' records.
    pub relaxed: bool,
    /// Apply only if metadata cell `.0` holds `.1` (`None`: absent) at
    /// commit; else nothing is applied and [`StoreError::Conflict`] returned.
    /// Several processes writing one store fence their batches with it.
    pub expect_meta: Option<(String, Option<Vec<u8>>)>,
}

impl WriteBatch {
    /// Appends a put of `(kind, id)`.
    pub fn put(&mut self, kind: impl Into<String>, id: impl Into<String>, bytes: Vec<u8>) {
        self.records.push(RecordOp::Put {
            kind: kind.into(),
            id: id.into(),
            bytes,
        });
    }

    /// Appends a removal of `(kind, id)`.
    pub fn remove(&mut self, kind: impl Into<String>, id: impl Into<String>) {
        self.records.push(RecordOp::Remove {
            kind: kind.into(),
            id: id.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.changes.is_empty()
            && self.trim_changes_below.is_none()
            && self.meta.is_empty()
            && self.expect_meta.is_none()
    }
}

/// A storage backend. All methods are blocking; callers on an async runtime
/// run them on a blocking thread.
pub trait Store: Send + Sync + 'static {
    /// Applies `batch` atomically: after return, either all of it is durable
    /// (for durable backends: survives a crash) or, on error, none of it is.
    /// Its record ops apply in order ([`WriteBatch::records`]); every read
    /// (`get`, `get_many`, `scan`) then agrees on the result.
    /// A `relaxed` batch is visible at once but durable only once a later
    /// non-relaxed batch is applied; a crash before that loses it whole.
    fn apply(&self, batch: &WriteBatch) -> Result<(), StoreError>;

    /// Bytes of one record.
    fn get(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Bytes of several records of one kind, read from one snapshot.
    fn get_many(&self, kind: &str, ids: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    /// Visits every record in `(kind, id)` order. `f` returns false to stop.
    fn scan(&self, f: &mut dyn FnMut(&str, &str, &[u8]) -> bool) -> Result<(), StoreError>;

    /// Change-log entries numbered above `after`, in order, at most `limit`.
    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// Lowest and highest change numbers held, if any.
    fn change_bounds(&self) -> Result<Option<(u64, u64)>, StoreError>;

    /// One metadata cell.
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Short backend name for status output (`redb`, `postgres`, `memory`).
    fn backend(&self) -> &'static str;
}
