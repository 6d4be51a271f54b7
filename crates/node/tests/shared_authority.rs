//! Shared authority (document 004 §4.1): two processes' worth of centers,
//! one center id and key, on one store. Writes at either are fenced and
//! numbered one after another; each follows the other's changes (point
//! reads at once, indexes and watch streams within a follow interval); one
//! holds the timers lease and the other takes it over when it stops
//! renewing. The store here is the in-memory one (the fence and the log
//! are the same for PostgreSQL; crates/bin/tests/shared_pg.rs runs real
//! processes on a real database). Budget: under 10 s.

mod common;

use common::agent;
use regmesh_core::Kind;
use regmesh_front_agent::AgentKind;
use regmesh_node::center::{Center, EventType, WriteOp};
use regmesh_node::config::StoreBackend;
use regmesh_node::Config;
use regmesh_store::{MemStore, Store};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn shared_pair(dir: &std::path::Path) -> (Arc<Center>, Arc<Center>) {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let mut cfg = Config::for_test("c1", dir);
    cfg.store.backend = StoreBackend::Postgres;
    cfg.store.url = "postgres://unused".into();
    cfg.store.follow_interval_ms = 20;
    cfg.store.timers_lease_ms = 300;
    let open = || Center::open_with(&cfg, regmesh_front_agent::kinds(), Some(store.clone())).unwrap();
    (open(), open())
}

async fn put(c: &Center, id: &str, addr: &str) -> regmesh_core::Record {
    let p = AgentKind.prepare(id, agent(addr)).unwrap();
    match c
        .write(
            "agent",
            id,
            WriteOp::Put {
                prepared: p,
                if_version: None,
                above: None,
            },
        )
        .await
        .unwrap()
    {
        regmesh_node::center::Outcome::Created(r) | regmesh_node::center::Outcome::Replaced(r) => r,
        o => panic!("{o:?}"),
    }
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(5), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_store_number_apart_and_follow_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = shared_pair(dir.path());
    assert_eq!(a.public_key_hex(), b.public_key_hex(), "one center, one key");
    let mut b_events = b.subscribe();

    // Both write at once: every write lands, with its own seq and version.
    let (wa, wb) = tokio::join!(
        async {
            let mut v = Vec::new();
            for i in 0..20 {
                v.push(put(&a, &format!("a{i}"), "2001:db8::1").await);
            }
            v
        },
        async {
            let mut v = Vec::new();
            for i in 0..20 {
                v.push(put(&b, &format!("b{i}"), "2001:db8::2").await);
            }
            v
        }
    );
    let all: Vec<_> = wa.iter().chain(&wb).collect();
    let seqs: HashSet<u64> = all.iter().map(|r| r.seq).collect();
    let versions: HashSet<_> = all.iter().map(|r| r.version).collect();
    assert_eq!(seqs.len(), 40, "sequence numbers repeat across the processes");
    assert_eq!(versions.len(), 40, "versions repeat across the processes");

    // A point read sees the other's write at once.
    assert_eq!(b.get("agent", "a0").unwrap().as_ref(), Some(&wa[0]));
    // An update at one of what the other created.
    let newer = put(&a, "b3", "2001:db8::3").await;
    assert!(newer.version > wb[3].version && newer.seq > wb.iter().map(|r| r.seq).max().unwrap());
    assert_eq!(b.get("agent", "b3").unwrap().as_ref(), Some(&newer));

    // The other's indexes and watch stream follow.
    let (ra, rb) = (a.clone(), b.clone());
    tokio::spawn(ra.run_shared());
    tokio::spawn(rb.run_shared());
    eventually("b lists a's agents", || {
        b.list("agent", &[("origin", "c1")], None, 100).unwrap().0.len() == 40
    })
    .await;
    let listed = b.list("agent", &[], None, 100).unwrap().0;
    assert!(listed.contains(&newer), "b's listing has the update made at a");
    let mut from_a = HashSet::new();
    let t0 = Instant::now();
    while from_a.len() < 21 && t0.elapsed() < Duration::from_secs(5) {
        let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(100), b_events.recv()).await else {
            continue;
        };
        assert_eq!(ev.typ, EventType::Put);
        if ev.record.id.starts_with('a') || ev.record.id == "b3" && ev.record.version == newer.version {
            from_a.insert(ev.record.id.clone());
        }
    }
    assert_eq!(from_a.len(), 21, "b's watch stream lacks writes made at a: {from_a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_runs_the_timers_and_another_takes_over_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = shared_pair(dir.path());
    let ta = tokio::spawn(a.clone().run_shared());
    let tb = tokio::spawn(b.clone().run_shared());
    eventually("one process runs the timers", || a.runs_timers() || b.runs_timers()).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(a.runs_timers() != b.runs_timers(), "exactly one runs the timers");
    let (owner, other, t_owner, t_other) = if a.runs_timers() {
        (a, b, ta, tb)
    } else {
        (b, a, tb, ta)
    };
    // The owner stops renewing (its process died): the other takes over
    // within the lease (300 ms) and a renewal period.
    t_owner.abort();
    let t0 = Instant::now();
    eventually("the other takes the timers over", || other.runs_timers()).await;
    println!("timers fail-over: {} ms (lease 300 ms)", t0.elapsed().as_millis());
    assert!(t0.elapsed() < Duration::from_millis(1500), "{:?}", t0.elapsed());
    assert!(!owner.runs_timers(), "the old owner still thinks it runs the timers");
    t_other.abort();
}
