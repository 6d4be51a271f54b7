//! The writer's group commit: ops that share one batch take effect in the
//! order they were queued, in the store as in the indexes, and survive a
//! restart as acknowledged.
//!
//! The store is the real redb file behind a gate the test holds shut, so the
//! writer is parked inside one commit while the next ops queue up behind it;
//! when the gate opens they are drained into one batch, deterministically.
//! Budget: well under a second.

mod common;

use regmesh_core::Kind;
use regmesh_front_agent::AgentKind;
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
        above: None,
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
    let center = Center::open_with(
        &cfg,
        regmesh_front_agent::kinds(),
        Some(store.clone() as Arc<dyn Store>),
    )
    .unwrap();
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
    let center = Center::open_with(&cfg, regmesh_front_agent::kinds(), None).unwrap();
    let read = center.get("agent", "a").unwrap();
    assert_eq!(
        read.map(|r| r.version),
        Some(created.version),
        "acknowledged create lost on restart"
    );
    center.close();
}

/// The same at a replica: the purge of another center's tombstone and the
/// merge of that center's new version of the id, in one batch. Before the
/// fix every later read, page and flood carrying the id failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_in_the_batch_that_purges_its_old_tombstone_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let c1 = Center::open_with(
        &Config::for_test("c1", &dir.path().join("c1")),
        regmesh_front_agent::kinds(),
        None,
    )
    .unwrap();
    let mut cfg = Config::for_test("c2", &dir.path().join("c2"));
    cfg.leases.tombstone_horizon_s = 0;
    cfg.centers.push(regmesh_node::config::CenterKey {
        id: "c1".into(),
        public_key: c1.public_key_hex(),
    });
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let store = Arc::new(GatedStore {
        inner: RedbStore::open(&cfg.data_dir.join(DB_FILE), 1 << 20).unwrap(),
        gate: Mutex::new((false, 0)),
        turn: Condvar::new(),
    });
    let c2 = Center::open_with(
        &cfg,
        regmesh_front_agent::kinds(),
        Some(store.clone() as Arc<dyn Store>),
    )
    .unwrap();
    c1.write("agent", "a", put_op("a")).await.unwrap();
    let Ok(Outcome::Deleted(tomb)) = c1.write("agent", "a", WriteOp::Delete { if_version: None }).await else {
        panic!("delete at c1")
    };
    assert_eq!(c2.apply_remote(vec![tomb]).await.unwrap(), 1);
    let Ok(Outcome::Created(again)) = c1.write("agent", "a", put_op("a")).await else {
        panic!("create again at c1")
    };

    store.shut(true);
    let parked = tokio::spawn({
        let c = c2.clone();
        async move { c.write("agent", "other", put_op("other")).await }
    });
    wait_for("the writer parked in a commit", || store.waiting() == 1).await;
    assert_eq!(c2.sweep_due().await, 1, "c1's tombstone of a is due at c2");
    let merge = tokio::spawn({
        let (c, v) = (c2.clone(), again.clone());
        async move { c.apply_remote(vec![v]).await }
    });
    wait_for("the purge and the merge queued", || {
        c2.status()["write_queue"]["waiting"] == 2
    })
    .await;
    store.shut(false);
    assert!(parked.await.unwrap().is_ok());
    assert_eq!(merge.await.unwrap().unwrap(), 1);
    let read = c2.get("agent", "a").expect("the merged version must read back");
    assert_eq!(read.map(|r| r.version), Some(again.version));
    let pulled = c2.origin_after("c1", 0, 10).unwrap();
    assert_eq!(
        pulled.iter().map(|r| r.version).collect::<Vec<_>>(),
        vec![again.version]
    );

    c2.close();
    drop(store);
    let c2 = Center::open_with(&cfg, regmesh_front_agent::kinds(), None).unwrap();
    assert_eq!(
        c2.get("agent", "a").unwrap().map(|r| r.version),
        Some(again.version),
        "merged version lost on restart"
    );
    c2.close();
    c1.close();
}
