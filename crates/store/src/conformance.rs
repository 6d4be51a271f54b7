//! The conformance suite every [`Store`] backend must pass. Backends call
//! [`run`] from their tests with a factory for fresh, empty stores; durable
//! backends also call [`run_durable`] with a function that (re)opens a store
//! at a path.
//!
//! Each check panics with a message naming the broken rule.

use crate::{Store, StoreError, WriteBatch};
use std::path::Path;

fn put(kind: &str, id: &str, v: &[u8]) -> WriteBatch {
    let mut b = WriteBatch::default();
    b.put(kind, id, v.to_vec());
    b
}

fn remove_batch(kind: &str, id: &str) -> WriteBatch {
    let mut b = WriteBatch::default();
    b.remove(kind, id);
    b
}

/// Runs every check that applies to all backends.
pub fn run(fresh: &dyn Fn() -> Box<dyn Store>) {
    put_get_replace(&*fresh());
    kinds_are_separate(&*fresh());
    batch_is_atomic_and_complete(&*fresh());
    remove(&*fresh());
    ops_apply_in_order(&*fresh());
    get_many_and_scan_order(&*fresh());
    change_log(&*fresh());
    meta_cells(&*fresh());
    large_values(&*fresh());
    fenced_batches(&*fresh());
}

/// Runs the checks for durable backends: what `apply` acknowledged is there
/// after reopening.
pub fn run_durable(dir: &Path, open: &dyn Fn(&Path) -> Box<dyn Store>) {
    let path = dir.join("conformance.db");
    {
        let s = open(&path);
        let mut b = put("agent", "a", b"1");
        b.changes.push((1, b"c1".to_vec()));
        b.meta.push(("seq".into(), b"7".to_vec()));
        s.apply(&b).unwrap();
        // A relaxed batch is visible at once, and durable once a later
        // ordinary batch is.
        let mut r = put("agent", "r", b"3");
        r.relaxed = true;
        s.apply(&r).unwrap();
        assert_eq!(s.get("agent", "r").unwrap().as_deref(), Some(&b"3"[..]));
        s.apply(&put("agent", "b", b"2")).unwrap();
        // Ordered ops survive a reopen as applied.
        let mut o = put("agent", "o", b"x");
        o.remove("agent", "o");
        o.put("agent", "o", b"4".to_vec());
        s.apply(&o).unwrap();
    }
    let s = open(&path);
    assert_eq!(
        s.get("agent", "r").unwrap().as_deref(),
        Some(&b"3"[..]),
        "relaxed batch lost although a durable one followed"
    );
    assert_eq!(
        s.get("agent", "a").unwrap().as_deref(),
        Some(&b"1"[..]),
        "record lost on reopen"
    );
    assert_eq!(
        s.get("agent", "b").unwrap().as_deref(),
        Some(&b"2"[..]),
        "second batch lost on reopen"
    );
    assert_eq!(
        s.get("agent", "o").unwrap().as_deref(),
        Some(&b"4"[..]),
        "ordered batch not as applied after reopen"
    );
    assert_eq!(s.change_bounds().unwrap(), Some((1, 1)), "change log lost on reopen");
    assert_eq!(
        s.meta("seq").unwrap().as_deref(),
        Some(&b"7"[..]),
        "meta lost on reopen"
    );
}

fn put_get_replace(s: &dyn Store) {
    assert_eq!(s.get("agent", "a").unwrap(), None, "empty store returns a record");
    s.apply(&put("agent", "a", b"v1")).unwrap();
    assert_eq!(s.get("agent", "a").unwrap().as_deref(), Some(&b"v1"[..]));
    s.apply(&put("agent", "a", b"v2")).unwrap();
    assert_eq!(
        s.get("agent", "a").unwrap().as_deref(),
        Some(&b"v2"[..]),
        "replace did not replace"
    );
    assert!(s.apply(&WriteBatch::default()).is_ok(), "empty batch refused");
}

fn kinds_are_separate(s: &dyn Store) {
    s.apply(&put("agent", "x", b"agent")).unwrap();
    s.apply(&put("note", "x", b"note")).unwrap();
    assert_eq!(s.get("agent", "x").unwrap().as_deref(), Some(&b"agent"[..]));
    assert_eq!(s.get("note", "x").unwrap().as_deref(), Some(&b"note"[..]));
    // A kind that is a prefix of another must not collide.
    s.apply(&put("a", "gent\0x", b"evil")).unwrap();
    assert_eq!(
        s.get("agent", "x").unwrap().as_deref(),
        Some(&b"agent"[..]),
        "kind/id keys collide"
    );
}

fn batch_is_atomic_and_complete(s: &dyn Store) {
    let mut b = WriteBatch::default();
    for i in 0..100 {
        b.put("agent", format!("id{i:03}"), vec![i as u8]);
        b.changes.push((i + 1, vec![i as u8]));
    }
    b.meta.push(("last".into(), b"100".to_vec()));
    s.apply(&b).unwrap();
    for i in 0..100u64 {
        assert_eq!(s.get("agent", &format!("id{i:03}")).unwrap(), Some(vec![i as u8]));
    }
    assert_eq!(s.change_bounds().unwrap(), Some((1, 100)));
    assert_eq!(s.meta("last").unwrap().as_deref(), Some(&b"100"[..]));
}

fn remove(s: &dyn Store) {
    s.apply(&put("agent", "a", b"v")).unwrap();
    s.apply(&remove_batch("agent", "a")).unwrap();
    assert_eq!(s.get("agent", "a").unwrap(), None, "removed record still there");
    s.apply(&remove_batch("agent", "never"))
        .expect("removing an absent record must succeed");
}

/// What `get`, `get_many` and `scan` say `(kind, id)` holds; panics if they
/// disagree (the backend's own key index out of step with its values).
fn held(s: &dyn Store, kind: &str, id: &str) -> Option<Vec<u8>> {
    let one = s.get(kind, id).unwrap();
    let many = s.get_many(kind, &[id]).unwrap().pop().expect("one answer");
    let mut scanned = None;
    s.scan(&mut |k, i, v| {
        if (k, i) == (kind, id) {
            scanned = Some(v.to_vec());
        }
        true
    })
    .unwrap();
    assert_eq!(one, many, "get and get_many disagree on {kind}/{id}");
    assert_eq!(one, scanned, "get and scan disagree on {kind}/{id}");
    one
}

/// The record ops of one batch apply in the order given: the last op on a
/// key decides, whatever mix of puts and removes came before it.
fn ops_apply_in_order(s: &dyn Store) {
    s.apply(&put("agent", "a", b"old")).unwrap();
    s.apply(&put("agent", "b", b"old")).unwrap();
    // Remove then put (a purged tombstone, then a new create of its id).
    let mut b = WriteBatch::default();
    b.remove("agent", "a");
    b.put("agent", "a", b"new".to_vec());
    // Put then remove.
    b.put("agent", "b", b"new".to_vec());
    b.remove("agent", "b");
    // Put, remove, put on a key that did not exist.
    b.put("agent", "c", b"1".to_vec());
    b.remove("agent", "c");
    b.put("agent", "c", b"2".to_vec());
    // Several puts: the last wins.
    b.put("agent", "d", b"1".to_vec());
    b.put("agent", "d", b"2".to_vec());
    s.apply(&b).unwrap();
    assert_eq!(
        held(s, "agent", "a").as_deref(),
        Some(&b"new"[..]),
        "a put after a remove of the same key in one batch was lost"
    );
    assert_eq!(
        held(s, "agent", "b"),
        None,
        "a remove after a put of the same key in one batch was ignored"
    );
    assert_eq!(held(s, "agent", "c").as_deref(), Some(&b"2"[..]), "put, remove, put");
    assert_eq!(
        held(s, "agent", "d").as_deref(),
        Some(&b"2"[..]),
        "the last put must win"
    );
    let mut ids = Vec::new();
    s.scan(&mut |_, i, _| {
        ids.push(i.to_string());
        true
    })
    .unwrap();
    assert_eq!(ids, vec!["a", "c", "d"], "scan after an ordered batch");
}

fn get_many_and_scan_order(s: &dyn Store) {
    for id in ["c", "a", "b"] {
        s.apply(&put("agent", id, id.as_bytes())).unwrap();
    }
    s.apply(&put("zeta", "a", b"z")).unwrap();
    let got = s.get_many("agent", &["b", "missing", "a"]).unwrap();
    assert_eq!(got, vec![Some(b"b".to_vec()), None, Some(b"a".to_vec())]);
    let mut seen = Vec::new();
    s.scan(&mut |k, i, v| {
        seen.push((k.to_string(), i.to_string(), v.to_vec()));
        true
    })
    .unwrap();
    let keys: Vec<(&str, &str)> = seen.iter().map(|(k, i, _)| (k.as_str(), i.as_str())).collect();
    assert_eq!(
        keys,
        vec![("agent", "a"), ("agent", "b"), ("agent", "c"), ("zeta", "a")],
        "scan order"
    );
    let mut n = 0;
    s.scan(&mut |_, _, _| {
        n += 1;
        n < 2
    })
    .unwrap();
    assert_eq!(n, 2, "scan did not stop when asked");
}

fn change_log(s: &dyn Store) {
    assert_eq!(s.change_bounds().unwrap(), None);
    assert!(s.changes_after(0, 10).unwrap().is_empty());
    for n in 1..=10u64 {
        s.apply(&WriteBatch {
            changes: vec![(n, n.to_be_bytes().to_vec())],
            ..Default::default()
        })
        .unwrap();
    }
    let got: Vec<u64> = s.changes_after(3, 4).unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(got, vec![4, 5, 6, 7], "changes_after window");
    assert!(s.changes_after(10, 5).unwrap().is_empty());
    assert!(s.changes_after(u64::MAX, 5).unwrap().is_empty());
    s.apply(&WriteBatch {
        trim_changes_below: Some(6),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.change_bounds().unwrap(), Some((6, 10)), "trim");
    let got: Vec<u64> = s.changes_after(0, 100).unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(got, vec![6, 7, 8, 9, 10]);
}

fn meta_cells(s: &dyn Store) {
    assert_eq!(s.meta("x").unwrap(), None);
    s.apply(&WriteBatch {
        meta: vec![("x".into(), b"1".to_vec())],
        ..Default::default()
    })
    .unwrap();
    s.apply(&WriteBatch {
        meta: vec![("x".into(), b"2".to_vec())],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.meta("x").unwrap().as_deref(), Some(&b"2"[..]));
}

fn large_values(s: &dyn Store) {
    let big = vec![0xab; 256 * 1024];
    s.apply(&put("agent", "big", &big)).unwrap();
    assert_eq!(s.get("agent", "big").unwrap(), Some(big));
}

/// A batch with `expect_meta` applies only while the cell holds the value
/// expected; otherwise it is refused whole with `Conflict`.
fn fenced_batches(s: &dyn Store) {
    let fenced = |want: Option<&[u8]>, next: &[u8], id: &str| {
        let mut b = put("agent", id, b"v");
        b.changes.push((id.len() as u64, b"c".to_vec()));
        b.expect_meta = Some(("head".into(), want.map(|w| w.to_vec())));
        b.meta.push(("head".into(), next.to_vec()));
        b
    };
    s.apply(&fenced(None, b"1", "a")).expect("absent as expected");
    assert_eq!(s.meta("head").unwrap().as_deref(), Some(&b"1"[..]));
    for (want, id) in [(None, "bb"), (Some(&b"0"[..]), "ccc")] {
        match s.apply(&fenced(want, b"2", id)) {
            Err(StoreError::Conflict(k)) => assert_eq!(k, "head"),
            other => panic!("a batch whose fence does not hold: {other:?}"),
        }
        assert_eq!(held(s, "agent", id), None, "a refused fenced batch wrote its record");
        assert_eq!(
            s.change_bounds().unwrap(),
            Some((1, 1)),
            "a refused fenced batch wrote a change"
        );
        assert_eq!(
            s.meta("head").unwrap().as_deref(),
            Some(&b"1"[..]),
            "a refused batch moved the cell"
        );
    }
    s.apply(&fenced(Some(b"1"), b"2", "dd")).expect("the fence holds");
    assert_eq!(held(s, "agent", "dd").as_deref(), Some(&b"v"[..]));
    assert_eq!(s.meta("head").unwrap().as_deref(), Some(&b"2"[..]));
}
