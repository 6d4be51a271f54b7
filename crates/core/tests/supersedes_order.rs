//! `Record::supersedes` is the strict part of a total order on the
//! versions of one key, and it is the order DESIGN.md states: HLC (wall
//! clock, then logical counter), then the origin's name, then a tombstone
//! above a live version. The expected order is written out here from the
//! documents, independently of `lww_cmp`; the generator keeps every field
//! in small ranges so that ties on each of them are common.

use proptest::prelude::*;
use regmesh_core::{Hlc, Record, Visibility};
use std::cmp::Ordering;

fn rec(wall: u64, logical: u32, origin: &str, deleted: bool, body: &str) -> Record {
    Record {
        kind: "agent".into(),
        id: "a".into(),
        origin: origin.into(),
        version: Hlc::new(wall, logical),
        seq: 1,
        expires_at_ms: None,
        visibility: Visibility::Public,
        deleted,
        body: body.into(),
        sig: [0; 64],
    }
}

fn record() -> impl Strategy<Value = Record> {
    (
        0u64..3,
        0u32..3,
        prop_oneof![Just("c1"), Just("c2"), Just("c10")],
        any::<bool>(),
        prop_oneof![Just("{}"), Just("{\"n\":1}"), Just("{\"n\":2}")],
        0u64..3,
    )
        .prop_map(|(w, l, o, d, b, seq)| {
            let mut r = rec(w, l, o, d, b);
            r.seq = seq;
            r
        })
}

/// The documented order on (HLC, origin, tombstone); None when all three
/// tie (then only the encoding decides).
fn documented(a: &Record, b: &Record) -> Option<Ordering> {
    let o = (a.version.wall_ms, a.version.logical)
        .cmp(&(b.version.wall_ms, b.version.logical))
        .then(a.origin.as_bytes().cmp(b.origin.as_bytes()))
        .then((a.deleted as u8).cmp(&(b.deleted as u8)));
    (o != Ordering::Equal).then_some(o)
}

#[test]
fn each_tie_break_in_its_place() {
    let live = |w, l, o| rec(w, l, o, false, "{}");
    assert!(live(2, 0, "c1").supersedes(&live(1, 9, "c2")), "the wall clock first");
    assert!(
        live(1, 1, "c1").supersedes(&live(1, 0, "c2")),
        "then the logical counter"
    );
    assert!(live(1, 0, "c2").supersedes(&live(1, 0, "c1")), "then the origin");
    assert!(
        live(1, 0, "c2").supersedes(&rec(1, 0, "c10", true, "{}")),
        "origins compare as text: c2 above c10, even against a tombstone"
    );
    assert!(
        rec(1, 0, "c1", true, "{}").supersedes(&live(1, 0, "c1")),
        "then the tombstone"
    );
    assert!(!live(1, 0, "c1").supersedes(&live(1, 0, "c1")), "never itself");
    let (x, y) = (rec(1, 0, "c1", false, "{\"n\":1}"), rec(1, 0, "c1", false, "{\"n\":2}"));
    assert!(x.supersedes(&y) != y.supersedes(&x), "different bodies still ordered");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn it_follows_the_documented_order(a in record(), b in record()) {
        if let Some(o) = documented(&a, &b) {
            prop_assert_eq!(a.supersedes(&b), o == Ordering::Greater);
            prop_assert_eq!(b.supersedes(&a), o == Ordering::Less);
        }
    }

    #[test]
    fn it_is_irreflexive_and_antisymmetric_and_total(a in record(), b in record()) {
        prop_assert!(!a.supersedes(&a));
        prop_assert!(!(a.supersedes(&b) && b.supersedes(&a)));
        if a != b {
            prop_assert!(a.supersedes(&b) || b.supersedes(&a), "two different versions always ordered");
        }
    }

    #[test]
    fn it_is_transitive(a in record(), b in record(), c in record()) {
        if a.supersedes(&b) && b.supersedes(&c) {
            prop_assert!(a.supersedes(&c));
        }
    }

    #[test]
    fn merge_keeps_the_documented_winner(v in proptest::collection::vec(record(), 1..8)) {
        let merged = v.iter().cloned().reduce(regmesh_core::record::merge).unwrap();
        for x in &v {
            prop_assert!(x == &merged || merged.supersedes(x));
            if let Some(o) = documented(x, &merged) {
                prop_assert_ne!(o, Ordering::Greater, "{:?} beats the merge result {:?}", x, merged);
            }
        }
    }
}
