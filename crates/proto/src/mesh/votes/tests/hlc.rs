//! Tests of the versions a vote carries: every answer names the highest
//! version of the id its centers hold (tombstones too), and the initiator's
//! decision carries the highest of them, so its create is stamped above a
//! deletion a voter made with a clock running ahead (simulator seed 8798).
//! Must never test anything else of the part. Each runs in well under a
//! second.

use super::super::*;
use super::net::*;
use crate::tally::Quorum;

fn key() -> (String, String) {
    ("agent".into(), "x".into())
}

/// The `hlc` of the only `Decided` in `out`.
fn decided_hlc(out: &[Command]) -> Option<Hlc> {
    let all: Vec<_> = out
        .iter()
        .filter_map(|c| match c {
            Command::Decided { hlc, .. } => Some(*hlc),
            _ => None,
        })
        .collect();
    assert_eq!(all.len(), 1, "one decision in {out:?}");
    all[0]
}

#[test]
fn a_grant_carries_the_highest_version_a_voter_held() {
    // b deleted x with its clock 8 ms ahead: it holds the tombstone only.
    let tomb = Hlc::new(T0 + 8, 0);
    let mut a = part("a", Quorum::Majority, &["a", "b", "c"]);
    let mut out = Vec::new();
    let n = a.on_create(T0, ("agent", "x"), &Held::default(), &names(&["b", "c"]), &mut out);
    let vote = VoteId::new("a", n);

    // b relays to c; c holds an older version, b the tombstone.
    let mut b = part("b", Quorum::Majority, &["a", "b", "c"]);
    let mut held_b = Held::default();
    held_b.1.insert(key(), tomb);
    let mut out = Vec::new();
    b.on_request(
        T0 + 1,
        incoming("a", "a", n, None),
        true,
        &held_b,
        &names(&["a", "c"]),
        &mut out,
    )
    .unwrap();
    let promise = out
        .iter()
        .find_map(|c| match c {
            Command::Persist { promise } => Some(promise.clone()),
            _ => None,
        })
        .expect("b promises");
    b.on_answer(
        "c",
        &vote,
        Answer::yes("c").holding(Some(Hlc::new(T0 - 50, 3))),
        &mut out,
    )
    .unwrap();
    let mut out = Vec::new();
    b.on_persisted(&promise, true, &mut out);
    let to_a = match out.as_slice() {
        [Command::SendAnswer { answer, .. }] => answer.clone(),
        other => panic!("b answers a once: {other:?}"),
    };
    assert_eq!(to_a.hlc, Some(tomb), "the relay reports the highest under it");

    // a: b's answer (b and c) is a majority: granted, carrying b's version.
    let mut out = Vec::new();
    a.on_answer("b", &vote, to_a, &mut out).unwrap();
    assert_eq!(decided(&out), vec![(n, Decision::Granted)]);
    assert_eq!(decided_hlc(&out), Some(tomb));
}

#[test]
fn a_no_carries_its_version_too_and_the_initiator_s_own_counts() {
    let mut a = part("a", Quorum::All, &["a", "b"]);
    let mut held_a = Held::default();
    held_a.1.insert(key(), Hlc::new(T0 - 5, 0));
    let mut out = Vec::new();
    let n = a.on_create(T0, ("agent", "x"), &held_a, &names(&["b"]), &mut out);
    let vote = VoteId::new("a", n);
    // b owns x live: it says no, naming its version.
    let mut b = part("b", Quorum::All, &["a", "b"]);
    let mut held_b = Held::default();
    held_b.0.insert(key(), "b".into());
    held_b.1.insert(key(), Hlc::new(T0 + 30, 1));
    let mut out = Vec::new();
    b.on_request(
        T0 + 1,
        incoming("a", "a", n, None),
        true,
        &held_b,
        &names(&["a"]),
        &mut out,
    )
    .unwrap();
    let no = match out.as_slice() {
        [Command::SendAnswer { answer, .. }] => answer.clone(),
        other => panic!("b answers at once: {other:?}"),
    };
    assert_eq!(no.hlc, Some(Hlc::new(T0 + 30, 1)));
    let mut out = Vec::new();
    a.on_answer("b", &vote, no, &mut out).unwrap();
    assert_eq!(decided_hlc(&out), Some(Hlc::new(T0 + 30, 1)));

    // Nobody holds a version: the decision carries none.
    let mut out = Vec::new();
    let mut c = part("c", Quorum::Majority, &["c"]);
    c.on_create(T0, ("agent", "y"), &Held::default(), &[], &mut out);
    assert_eq!(decided(&out).len(), 1);
    assert_eq!(decided_hlc(&out), None);
}
