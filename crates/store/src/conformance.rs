//! The conformance suite every [`Store`] backend must pass. Backends call
//! [`run`] from their tests with a factory for fresh, empty stores; durable
//! backends also call [`run_durable`] with a function that (re)opens a store
//! at a path.
//!
//! Each check panics with a message naming the broken rule.

use crate::{Store, WriteBatch};
use std::path::Path;

fn put(kind: &str, id: &str, v: &[u8]) -> WriteBatch {
    WriteBatch {
        puts: vec![(kind.into(), id.into(), v.to_vec())],
        ..Default::default()
    }
}

/// Runs every check that applies to all backends.
pub fn run(fresh: &dyn Fn() -> Box<dyn Store>) {
    put_get_replace(&*fresh());
    kinds_are_separate(&*fresh());
    batch_is_atomic_and_complete(&*fresh());
    remove(&*fresh());
    get_many_and_scan_order(&*fresh());
    change_log(&*fresh());
    meta_cells(&*fresh());
    large_values(&*fresh());
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
        b.puts.push(("agent".into(), format!("id{i:03}"), vec![i as u8]));
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
    s.apply(&WriteBatch {
        removes: vec![("agent".into(), "a".into())],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.get("agent", "a").unwrap(), None, "removed record still there");
    s.apply(&WriteBatch {
        removes: vec![("agent".into(), "never".into())],
        ..Default::default()
    })
    .expect("removing an absent record must succeed");
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
