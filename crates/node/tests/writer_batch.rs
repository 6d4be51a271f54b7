//! The writer's group commit: ops that share one batch take effect in the
//! order they were queued, in the store as in the indexes, and survive a
//! restart as acknowledged.
//!
//! The store is the real redb file behind a gate the test holds shut, so the
//! writer is parked inside one commit while the next ops queue up behind it;
//! when the gate opens they are drained into one batch, deterministically.
//! Budget: well under a second.

mod common;

use regmesh_core::{AgentKind, Kind, Kinds};
use regmesh_node::center::{Center, Outcome, WriteOp, DB_FILE};
use regmesh_node::Config;
use regmesh_store::{RedbStore, Store, StoreError, WriteBatch};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A store whose commits wait while the gate is shut.
struct GatedStore {
    inner: RedbStore,
    /// (shut, commits waiting)
    gate: Mutex<(bool, usize)>,
    turn: Condvar,
}

impl GatedStore {
    fn shut(&self, yes: bool) {
        self.gate.lock().unwrap().0 = yes;
        self.turn.notify_all();
    }

    fn waiting(&self) -> usize {
        self.gate.lock().unwrap().1
    }
}

impl Store for GatedStore {
    fn apply(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        let mut g = self.gate.lock().unwrap();
        g.1 += 1;
        while g.0 {
            g = self.turn.wait(g).unwrap();
        }
        g.1 -= 1;
        drop(g);
        self.inner.apply(batch)
    }
    fn get(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(kind, id)
    }
    fn get_many(&self, kind: &str, ids: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.inner.get_many(kind, ids)
    }
    fn scan(&self, f: &mut dyn FnMut(&str, &str, &[u8]) -> bool) -> Result<(), StoreError> {
        self.inner.scan(f)
    }
    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.inner.changes_after(after, limit)
    }
    fn change_bounds(&self) -> Result<Option<(u64, u64)>, StoreError> {
        self.inner.change_bounds()
    }
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.meta(key)
    }
    fn backend(&self) -> &'static str {
        "gated redb"
    }
}

fn put_op(id: &str) -> WriteOp {
    WriteOp::Put {
        prepared: AgentKind.prepare(id, common::agent("::1")).unwrap(),
        if_version: None,
    }
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(5), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Issue 11 item 1: a create that shares a commit batch with the purge of
/// its id's old tombstone was acknowledged (201), then read 500 `integrity`,
/// and was gone after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_in_the_batch_that_purges_its_old_tombstone_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::for_test("c1", dir.path());
    // Tombstones are due for purging as soon as they are written.
    cfg.leases.tombstone_horizon_s = 0;
    std::fs::create_dir_all(dir.path()).unwrap();
    let store = Arc::new(GatedStore {
        inner: RedbStore::open(&dir.path().join(DB_FILE), 1 << 20).unwrap(),
        gate: Mutex::new((false, 0)),
        turn: Condvar::new(),
    });
    let center = Center::open_with(&cfg, Kinds::builtin(), Some(store.clone() as Arc<dyn Store>)).unwrap();
    assert!(matches!(
        center.write("agent", "a", put_op("a")).await,
        Ok(Outcome::Created(_))
    ));
    assert!(matches!(
        center.write("agent", "a", WriteOp::Delete { if_version: None }).await,
        Ok(Outcome::Deleted(_))
    ));

    // Park the writer inside the commit of an unrelated create...
    store.shut(true);
    let parked = tokio::spawn({
        let c = center.clone();
        async move { c.write("agent", "other", put_op("other")).await }
    });
    wait_for("the writer parked in a commit", || store.waiting() == 1).await;
    // ...queue the purge of a's tombstone, then a new create of a.
    assert_eq!(center.sweep_due().await, 1, "the tombstone of a is due");
    let create = tokio::spawn({
        let c = center.clone();
        async move { c.write("agent", "a", put_op("a")).await }
    });
    wait_for("the purge and the create queued", || {
        center.status()["write_queue"]["waiting"] == 2
    })
    .await;
    store.shut(false);
    assert!(matches!(parked.await.unwrap(), Ok(Outcome::Created(_))));
    let created = match create.await.unwrap() {
        Ok(Outcome::Created(r)) => r,
        other => panic!("the create must be acknowledged as created, got {other:?}"),
    };
    let read = center
        .get("agent", "a")
        .expect("the acknowledged create must read back");
    assert_eq!(read.map(|r| r.version), Some(created.version));
    assert_eq!(center.list("agent", &[], None, 10).unwrap().0.len(), 2);

    // And it survives a restart, on the same file.
    center.close();
    drop(store);
    let center = Center::open(&cfg).unwrap();
    let read = center.get("agent", "a").unwrap();
    assert_eq!(
        read.map(|r| r.version),
        Some(created.version),
        "acknowledged create lost on restart"
    );
    center.close();
}
