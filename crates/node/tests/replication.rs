//! Versions from another center: verified, merged, never re-signed; a bad
//! record is refused alone and changes nothing; only the origin may change
//! its records.

mod common;

use common::agent;
use regmesh_core::Kind;
use regmesh_front_agent::AgentKind;
use regmesh_node::center::{Center, DeleteReason, EventType, Outcome, WriteError, WriteOp};
use regmesh_node::config::CenterKey;
use regmesh_node::Config;
use std::sync::Arc;

async fn pair() -> (Arc<Center>, Arc<Center>, tempfile::TempDir) {
    let (c1, cfg2, dir) = origin_and_config(|_| {});
    (
        c1,
        Center::open_with(&cfg2, regmesh_front_agent::kinds(), None).unwrap(),
        dir,
    )
}

/// c1, open, and the config of a c2 that knows c1's key (adjusted by `tune`).
fn origin_and_config(tune: impl FnOnce(&mut Config)) -> (Arc<Center>, Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let c1 = Center::open_with(
        &Config::for_test("c1", &dir.path().join("c1")),
        regmesh_front_agent::kinds(),
        None,
    )
    .unwrap();
    let mut cfg2 = Config::for_test("c2", &dir.path().join("c2"));
    cfg2.centers.push(CenterKey {
        id: "c1".into(),
        public_key: c1.public_key_hex(),
    });
    tune(&mut cfg2);
    (c1, cfg2, dir)
}

async fn put(c: &Center, id: &str, addr: &str) {
    let p = AgentKind.prepare(id, agent(addr)).unwrap();
    c.write(
        "agent",
        id,
        WriteOp::Put {
            prepared: p,
            if_version: None,
            above: None,
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn merges_verified_versions_and_ignores_old_ones() {
    let (c1, c2, _dir) = pair().await;
    put(&c1, "a1", "2001:db8::1").await;
    let v1 = c1.get("agent", "a1").unwrap().unwrap();
    put(&c1, "a1", "2001:db8::2").await;
    let v2 = c1.get("agent", "a1").unwrap().unwrap();

    assert_eq!(c2.apply_remote(vec![v2.clone()]).await.unwrap(), 1);
    assert_eq!(
        c2.apply_remote(vec![v1.clone()]).await.unwrap(),
        0,
        "older version changes nothing"
    );
    assert_eq!(
        c2.apply_remote(vec![v2.clone()]).await.unwrap(),
        0,
        "duplicate changes nothing"
    );
    let got = c2.get("agent", "a1").unwrap().unwrap();
    assert_eq!(got, v2, "stored exactly as signed by its origin");
    assert_eq!(c2.list("agent", &[("origin", "c1")], None, 10).unwrap().0.len(), 1);

    // Only the origin may change it.
    let p = AgentKind.prepare("a1", agent("::9")).unwrap();
    let e = c2
        .write(
            "agent",
            "a1",
            WriteOp::Put {
                prepared: p,
                if_version: None,
                above: None,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, WriteError::NotOwner { ref owner, .. } if owner == "c1"),
        "{e}"
    );

    // A delete at the origin travels as a tombstone and wins.
    c1.write("agent", "a1", WriteOp::Delete { if_version: None })
        .await
        .unwrap();
    let events = c1.changes_after(0, 10).unwrap();
    let tomb = events.last().unwrap().record.clone();
    assert!(tomb.deleted);
    assert_eq!(c2.apply_remote(vec![tomb]).await.unwrap(), 1);
    assert!(c2.get("agent", "a1").unwrap().is_none());
    assert_eq!(
        c2.apply_remote(vec![v2]).await.unwrap(),
        0,
        "no resurrection by an older version"
    );
    assert!(c2.get("agent", "a1").unwrap().is_none());
}

/// A record that fails its checks is refused alone (issue 11 item 5): the
/// call reports it, and the good records beside it are merged.
#[tokio::test]
async fn bad_records_are_refused_alone() {
    let (c1, c2, _dir) = pair().await;
    put(&c1, "a1", "2001:db8::1").await;
    put(&c1, "a2", "2001:db8::2").await;
    let good = c1.get("agent", "a1").unwrap().unwrap();
    let mut tampered = c1.get("agent", "a2").unwrap().unwrap();
    tampered.body = tampered.body.replace("2001:db8::2", "2001:db8::666");
    let head = c2.head();
    let e = c2.apply_remote(vec![good.clone(), tampered]).await.unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
    assert!(
        matches!(&e, WriteError::Refused { applied: 1, refused } if refused.len() == 1 && refused[0].id == "a2"),
        "{e}"
    );
    assert_eq!(c2.head(), head + 1, "the good record alone is applied");
    assert!(c2.get("agent", "a1").unwrap().is_some());
    assert!(c2.get_held("agent", "a2").unwrap().is_none());
    let head = c2.head();

    // An origin we have no key for.
    let stranger = Center::open_with(
        &Config::for_test("c9", &_dir.path().join("c9")),
        regmesh_front_agent::kinds(),
        None,
    )
    .unwrap();
    put(&stranger, "s1", "2001:db8::9").await;
    let s1 = stranger.get("agent", "s1").unwrap().unwrap();
    let e = c2.apply_remote(vec![s1]).await.unwrap_err();
    assert!(e.to_string().contains("not a known center"), "{e}");
    assert_eq!(c2.head(), head);
}

#[tokio::test]
async fn lapsed_leases_of_other_centers_are_stale_then_hidden_never_deleted() {
    let (c1, cfg2, _dir) = origin_and_config(|c| c.leases.retention_s = 1);
    let c2 = Center::open_with(&cfg2, regmesh_front_agent::kinds(), None).unwrap();
    let mut doc = agent("2001:db8::1");
    doc["lease_s"] = serde_json::json!(1);
    let p = AgentKind.prepare("leased", doc).unwrap();
    c1.write(
        "agent",
        "leased",
        WriteOp::Put {
            prepared: p,
            if_version: None,
            above: None,
        },
    )
    .await
    .unwrap();
    let rec = c1.get("agent", "leased").unwrap().unwrap();
    c2.apply_remote(vec![rec]).await.unwrap();
    let got = c2.get("agent", "leased").unwrap().unwrap();
    assert!(!c2.is_stale(&got), "lease still running");
    // c2 hears nothing more from c1 (cut off): after the lease, stale...
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let got = c2
        .get("agent", "leased")
        .unwrap()
        .expect("still served during the grace");
    assert!(c2.is_stale(&got));
    // ...and after lease + grace, no longer served, but not deleted.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert!(c2.get("agent", "leased").unwrap().is_none());
    assert!(c2.list("agent", &[], None, 10).unwrap().0.is_empty());
    assert_eq!(
        c2.status()["records"]["agent"],
        1,
        "kept in the store: expiry is the origin's call"
    );
}

#[tokio::test]
async fn resync_forgets_only_the_versions_named_and_remembers_the_purge_mark() {
    let (c1, cfg2, _dir) = origin_and_config(|_| {});
    let c2 = Center::open_with(&cfg2, regmesh_front_agent::kinds(), None).unwrap();
    put(&c1, "a1", "2001:db8::1").await;
    put(&c1, "a2", "2001:db8::2").await;
    let a1 = c1.get("agent", "a1").unwrap().unwrap();
    let a2 = c1.get("agent", "a2").unwrap().unwrap();
    c2.apply_remote(vec![a1.clone(), a2.clone()]).await.unwrap();
    put(&c2, "b1", "2001:db8::b").await;
    let b1 = c2.get("agent", "b1").unwrap().unwrap();
    let mut feed = c2.subscribe();

    let drops = vec![
        ("agent".to_string(), "a1".to_string(), a1.seq + 100), // not the version held
        ("agent".to_string(), "a2".to_string(), a2.seq),
        ("agent".to_string(), "b1".to_string(), b1.seq), // not c1's
    ];
    assert_eq!(c2.forget("c1", drops, 7).await.unwrap(), 1);
    assert_eq!(
        c2.forget("c2", vec![("agent".into(), "b1".into(), b1.seq)], 9)
            .await
            .unwrap(),
        0
    );
    assert!(c2.get("agent", "a1").unwrap().is_some());
    assert!(c2.get("agent", "a2").unwrap().is_none());
    assert!(
        c2.get("agent", "b1").unwrap().is_some(),
        "own records are never forgotten"
    );
    let ev = feed.recv().await.unwrap();
    assert_eq!(
        (ev.record.id.as_str(), ev.typ, ev.reason),
        ("a2", EventType::Delete, Some(DeleteReason::Resync))
    );
    assert_eq!(c2.purged_through("c1"), 7);
    // Raising with nothing to drop works too; the mark never goes down.
    assert_eq!(c2.forget("c1", vec![], 11).await.unwrap(), 0);
    assert_eq!(c2.forget("c1", vec![], 3).await.unwrap(), 0);
    assert_eq!(c2.purged_through("c1"), 11);
    assert_eq!(c2.origin_live("c1").len(), 1);

    c2.close();
    let c2 = Center::open_with(&cfg2, regmesh_front_agent::kinds(), None).unwrap();
    assert_eq!(c2.purged_through("c1"), 11, "purge marks survive a restart");
    assert!(c2.get("agent", "a2").unwrap().is_none());
}

#[tokio::test]
async fn purging_a_tombstone_raises_its_origins_purge_mark() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::for_test("c1", dir.path());
    cfg.leases.tombstone_horizon_s = 0;
    let c1 = Center::open_with(&cfg, regmesh_front_agent::kinds(), None).unwrap();
    put(&c1, "a1", "2001:db8::1").await;
    assert_eq!(c1.purged_through("c1"), 0);
    let deleted = c1
        .write("agent", "a1", WriteOp::Delete { if_version: None })
        .await
        .unwrap();
    let Outcome::Deleted(t) = deleted else {
        panic!("{deleted:?}")
    };
    let sweeper = tokio::spawn(c1.clone().run_sweeper());
    let t0 = std::time::Instant::now();
    while c1.purged_through("c1") < t.seq {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "tombstone never purged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(c1.purged_through("c1"), t.seq);
    assert!(c1.origin_after("c1", 0, 10).unwrap().is_empty(), "tombstone gone");
    sweeper.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_commits_what_was_queued_even_while_the_center_is_shared() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::for_test("c1", dir.path());
    let c = Center::open_with(&cfg, regmesh_front_agent::kinds(), None).unwrap();
    let held_elsewhere = c.clone();
    let mut writes = Vec::new();
    for i in 0..200 {
        let c = c.clone();
        writes.push(tokio::spawn(async move {
            let p = AgentKind.prepare(&format!("q{i}"), agent("2001:db8::7")).unwrap();
            c.write(
                "agent",
                &format!("q{i}"),
                WriteOp::Put {
                    prepared: p,
                    if_version: None,
                    above: None,
                },
            )
            .await
            .is_ok()
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    c.close();
    let mut acked = Vec::new();
    for (i, w) in writes.into_iter().enumerate() {
        if w.await.unwrap() {
            acked.push(i);
        }
    }
    let late = AgentKind.prepare("late", agent("2001:db8::8")).unwrap();
    let e = held_elsewhere
        .write(
            "agent",
            "late",
            WriteOp::Put {
                prepared: late,
                if_version: None,
                above: None,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, WriteError::ShuttingDown), "{e}");
    drop(held_elsewhere);
    let c = Center::open_with(&cfg, regmesh_front_agent::kinds(), None).unwrap();
    for i in acked {
        assert!(
            c.get("agent", &format!("q{i}")).unwrap().is_some(),
            "acknowledged q{i} lost"
        );
    }
}

#[tokio::test]
async fn relaxed_copies_are_kept_by_close_and_change_numbers_never_repeat() {
    let (c1, cfg2, _dir) = origin_and_config(|_| {});
    let c2 = Center::open_with(&cfg2, regmesh_front_agent::kinds(), None).unwrap();
    put(&c1, "a1", "2001:db8::1").await;
    put(&c1, "a2", "2001:db8::2").await;
    let copies = c1.origin_after("c1", 0, 10).unwrap();
    // Other centers' versions only: committed relaxed, visible at once.
    assert_eq!(c2.apply_remote(copies).await.unwrap(), 2);
    assert!(c2.get("agent", "a2").unwrap().is_some());
    let head = c2.head();
    c2.close();
    let c2 = Center::open_with(&cfg2, regmesh_front_agent::kinds(), None).unwrap();
    assert!(
        c2.get("agent", "a1").unwrap().is_some(),
        "close made the relaxed commit durable"
    );
    assert!(c2.head() >= head);
    let mut feed = c2.subscribe();
    put(&c2, "b1", "2001:db8::b").await;
    let ev = feed.recv().await.unwrap();
    assert!(ev.no > head, "change {} reused after restart (head was {head})", ev.no);
}
