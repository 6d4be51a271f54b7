//! A store that can lose what was never made durable, for a simulated power
//! loss. Every batch goes to the center's real redb file; besides, a second
//! file (the disk image) takes the batches only once they are durable: a
//! durable batch (`relaxed` false, which the node fsyncs) carries every
//! relaxed batch before it into the image. A power loss
//! ([`crate::World::power_loss`]) puts the image in place of the live file
//! before the restart, so the center comes back with exactly what it had
//! made durable, as after a crash of the machine rather than of the process.
//!
//! Must never: change what the node sees while it runs (reads go to the
//! live file), or keep a relaxed batch out of the image once a durable one
//! followed it.

use regmesh_store::{RedbStore, Store, StoreError, WriteBatch};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The disk image's file, beside the node's own in its data directory.
pub const IMAGE_FILE: &str = "nodesim-durable-image.redb";

/// Cache of each redb file, bytes.
const CACHE_BYTES: usize = 8 << 20;

/// The live store and its durable image.
pub struct SimDisk {
    live: RedbStore,
    image: RedbStore,
    /// Relaxed batches since the last durable one, in order. The node makes
    /// a relaxed commit durable within a second (`RELAXED_FOR_MS`) at its
    /// next commit, so this holds at most what one second of replicated
    /// versions brings.
    pending: Mutex<Vec<WriteBatch>>,
}

impl SimDisk {
    /// Opens both files in `data_dir` (created if missing).
    pub fn open(data_dir: &Path) -> Result<SimDisk, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(SimDisk {
            live: RedbStore::open(&data_dir.join(regmesh_node::center::DB_FILE), CACHE_BYTES)?,
            image: RedbStore::open(&data_dir.join(IMAGE_FILE), CACHE_BYTES)?,
            pending: Mutex::new(Vec::new()),
        })
    }

    /// After a power loss, before the center opens its store again: the
    /// live file becomes the durable image.
    pub fn lose_unsynced(data_dir: &Path) -> std::io::Result<()> {
        let (live, image): (PathBuf, PathBuf) =
            (data_dir.join(regmesh_node::center::DB_FILE), data_dir.join(IMAGE_FILE));
        if image.exists() {
            std::fs::copy(&image, &live)?;
        }
        Ok(())
    }
}

impl Store for SimDisk {
    fn apply(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        self.live.apply(batch)?;
        let mut pending = self.pending.lock().expect("pending lock");
        if batch.relaxed {
            pending.push(batch.clone());
            return Ok(());
        }
        // The image is never read while the node runs; no need to wait
        // for the disk under it.
        for mut b in pending.drain(..).chain(std::iter::once(batch.clone())) {
            b.relaxed = true;
            self.image.apply(&b)?;
        }
        Ok(())
    }
    fn get(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.live.get(kind, id)
    }
    fn get_many(&self, kind: &str, ids: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.live.get_many(kind, ids)
    }
    fn scan(&self, f: &mut dyn FnMut(&str, &str, &[u8]) -> bool) -> Result<(), StoreError> {
        self.live.scan(f)
    }
    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.live.changes_after(after, limit)
    }
    fn change_bounds(&self) -> Result<Option<(u64, u64)>, StoreError> {
        self.live.change_bounds()
    }
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.live.meta(key)
    }
    fn backend(&self) -> &'static str {
        "redb with a durable image (nodesim)"
    }
}
