//! Unit tests of part `votes`: the commands it emits for each protocol
//! step, one center driven by hand, and small meshes of parts driven by a
//! deterministic in-memory network (`Net`). Each test runs in well under a
//! second.

use super::*;
use crate::constants::{VOTE_DEADLINE_MAX_MS, VOTE_MARGIN_MS};
use crate::tally::Quorum;
use std::collections::BTreeSet;

mod hlc;
mod net;
use net::*;

#[test]
fn a_create_on_three_centers_all_yes() {
    let mut a = part("a", Quorum::Majority, &["a", "b", "c"]);
    let mut out = Vec::new();
    let n = a.on_create(T0, ("agent", "x"), &Held::default(), &names(&["b", "c"]), &mut out);
    assert_eq!(n, T0, "a vote counter is at least the clock");
    let vote = VoteId::new("a", n);
    let deadline = T0 + TIMEOUT_MS;
    let req = request("x", Some(deadline - VOTE_MARGIN_MS));
    assert_eq!(
        out,
        vec![
            Command::SendRequest {
                peer: "b".into(),
                vote: vote.clone(),
                request: req.clone()
            },
            Command::SendRequest {
                peer: "c".into(),
                vote: vote.clone(),
                request: req.clone()
            },
            Command::Schedule {
                at_ms: deadline,
                vote: vote.clone()
            },
        ]
    );

    // b: claims, persists, forwards to c with the deadline a margin earlier.
    let mut b = part("b", Quorum::Majority, &["a", "b", "c"]);
    let mut out = Vec::new();
    let inc = Incoming {
        from: "a".into(),
        vote: vote.clone(),
        reset: false,
        request: req.clone(),
    };
    b.on_request(T0 + 5, inc, true, &Held::default(), &names(&["a", "c"]), &mut out)
        .unwrap();
    let promise = Promise {
        kind: "agent".into(),
        id: "x".into(),
        initiator: "a".into(),
        counter: n,
        until_ms: deadline - VOTE_MARGIN_MS + CLAIM_GRACE_MS,
    };
    assert_eq!(
        out,
        vec![
            Command::Persist {
                promise: promise.clone()
            },
            Command::SendRequest {
                peer: "c".into(),
                vote: vote.clone(),
                request: request("x", Some(deadline - 2 * VOTE_MARGIN_MS)),
            },
            Command::Schedule {
                at_ms: deadline - VOTE_MARGIN_MS,
                vote: vote.clone()
            },
        ]
    );
    // c answers b (yes for itself); b's own yes is not durable yet: no answer.
    let mut out = Vec::new();
    b.on_answer("c", &vote, Answer::yes("c"), &mut out).unwrap();
    assert_eq!(out, vec![], "the yes waits for the disk");
    b.on_persisted(&promise, true, &mut out);
    let mut both = Answer::yes("b");
    both.merge(Answer::yes("c"));
    assert_eq!(
        out,
        vec![Command::SendAnswer {
            peer: "a".into(),
            vote: vote.clone(),
            answer: both.clone()
        }]
    );

    // a: b's answer speaks for b and c, a majority: granted at once.
    let mut out = Vec::new();
    a.on_answer("b", &vote, both, &mut out).unwrap();
    assert_eq!(
        out,
        vec![Command::Decided {
            counter: n,
            kind: "agent".into(),
            id: "x".into(),
            decision: Decision::Granted,
            hlc: None,
        }]
    );
    // The granted claim is held until the write is done; c's late answer
    // changes nothing.
    let mut out = Vec::new();
    a.on_answer("c", &vote, Answer::yes("c"), &mut out).unwrap();
    assert_eq!(out, vec![]);
    assert_eq!(a.claims_held(), 1);
    a.on_written(("agent", "x"), n);
    assert_eq!(a.claims_held(), 0);

    // The same on a whole network, under the "all" rule too.
    for quorum in [Quorum::Majority, Quorum::All] {
        let mut net = Net::new(quorum, &["a", "b", "c"]);
        let n = net.create("a", "x");
        net.run();
        assert_eq!(net.decision("a", n), Some(&Decision::Granted), "{quorum:?}");
        assert!(
            net.centers.values().all(|(v, _)| v.collecting() == 0),
            "every hop answered"
        );
    }
}

#[test]
fn one_center_down_majority_grants_at_once_all_waits() {
    // c is down but still listed as a target (not yet judged DEGRADED): its
    // call fails, it speaks for nobody.
    let mut a = part("a", Quorum::Majority, &["a", "b", "c"]);
    let mut out = Vec::new();
    let n = a.on_create(T0, ("agent", "x"), &Held::default(), &names(&["b", "c"]), &mut out);
    let vote = VoteId::new("a", n);
    let mut out = Vec::new();
    a.on_request_failed("c", &vote, &mut out);
    assert_eq!(out, vec![], "one yes of three is not a majority");
    a.on_answer("b", &vote, Answer::yes("b"), &mut out).unwrap();
    assert_eq!(decided(&out), vec![(n, Decision::Granted)]);

    // "all": c silent, so nothing is decided before the deadline...
    let mut a = part("a", Quorum::All, &["a", "b", "c"]);
    let mut out = Vec::new();
    let n = a.on_create(T0, ("agent", "x"), &Held::default(), &names(&["b", "c"]), &mut out);
    let vote = VoteId::new("a", n);
    let mut out = Vec::new();
    a.on_answer("b", &vote, Answer::yes("b"), &mut out).unwrap();
    assert_eq!(out, vec![], "all must say yes: waits for c");
    // ...and at the deadline it is undecided, the claim dropped.
    a.on_deadline(&vote, &mut out);
    assert!(matches!(&decided(&out)[..], [(m, Decision::Undecided(_))] if *m == n));
    assert_eq!(a.claims_held(), 0);
    // A failed call to c completes the count at once: undecided too.
    let mut a = part("a", Quorum::All, &["a", "b", "c"]);
    let mut out = Vec::new();
    let n = a.on_create(T0, ("agent", "y"), &Held::default(), &names(&["b", "c"]), &mut out);
    let vote = VoteId::new("a", n);
    let mut out = Vec::new();
    a.on_answer("b", &vote, Answer::yes("b"), &mut out).unwrap();
    a.on_request_failed("c", &vote, &mut out);
    assert!(matches!(&decided(&out)[..], [(_, Decision::Undecided(_))]));

    // The same on a network with c down (and so not a target).
    for (quorum, granted) in [(Quorum::Majority, true), (Quorum::All, false)] {
        let mut net = Net::new(quorum, &["a", "b", "c"]);
        net.down.insert("c".into());
        let n = net.create("a", "x");
        net.run();
        match net.decision("a", n) {
            Some(Decision::Granted) => assert!(granted, "{quorum:?}"),
            Some(Decision::Undecided(_)) => assert!(!granted, "{quorum:?}"),
            other => panic!("{quorum:?}: {other:?}"),
        }
    }
    // c frozen (still OPERATIONAL here, its calls never answered): b, which
    // forwarded to c too, answers at its own deadline, a margin before a's;
    // then the majority grants, "all" is undecided at a's deadline only.
    for quorum in [Quorum::Majority, Quorum::All] {
        let mut net = Net::new(quorum, &["a", "b", "c"]);
        net.frozen.insert("c".into());
        let n = net.create("a", "x");
        net.run();
        if quorum == Quorum::All {
            assert_eq!(net.decision("a", n), None, "waits");
            net.advance(T0 + TIMEOUT_MS - 1);
            net.run();
            assert_eq!(net.decision("a", n), None, "waits until the deadline");
            net.advance(T0 + TIMEOUT_MS);
            assert!(matches!(net.decision("a", n), Some(Decision::Undecided(_))));
        } else {
            assert_eq!(net.decision("a", n), None, "b waits for c");
            net.advance(T0 + TIMEOUT_MS - VOTE_MARGIN_MS);
            net.run();
            assert_eq!(net.decision("a", n), Some(&Decision::Granted));
        }
        net.advance(T0 + TIMEOUT_MS);
        assert!(net
            .centers
            .iter()
            .filter(|(c, _)| *c != "c")
            .all(|(_, (v, _))| v.collecting() == 0));
    }
}

#[test]
fn the_minority_side_of_a_split_refuses() {
    let mut net = Net::new(Quorum::Majority, &["a", "b", "c"]);
    net.cut.insert(("a".into(), "c".into()));
    net.cut.insert(("b".into(), "c".into()));
    let minority = net.create("c", "x");
    let majority = net.create("a", "y");
    net.run();
    assert!(
        matches!(net.decision("c", minority), Some(Decision::Undecided(_))),
        "{:?}",
        net.decisions
    );
    assert_eq!(net.decision("a", majority), Some(&Decision::Granted));
    // The minority's own claim is gone: the majority may take that id.
    assert_eq!(net.centers["c"].0.claims_held(), 0);
    let again = net.create("b", "x");
    net.run();
    assert_eq!(net.decision("b", again), Some(&Decision::Granted));
}

/// Races `racers` for one id on a mesh of `members` over 300 delivery
/// orders (equal counters, or staggered by a millisecond); returns, per
/// order, how many were granted. Every racer ends granted or refused.
fn race(members: &[&str], racers: &[&str]) -> Vec<usize> {
    (1..=300u64)
        .map(|seed| {
            let mut net = Net::new(Quorum::Majority, members);
            net.seed = seed;
            let mut started = Vec::new();
            for r in racers {
                started.push((*r, net.create(r, "x")));
                if seed % 2 == 0 {
                    net.now_ms += 1;
                }
            }
            net.run();
            let ends: Vec<Option<&Decision>> = started.iter().map(|(r, n)| net.decision(r, *n)).collect();
            assert!(
                ends.iter()
                    .all(|d| matches!(d, Some(Decision::Granted | Decision::Refused(_)))),
                "{members:?} seed {seed}: {ends:?}"
            );
            ends.iter().filter(|d| **d == Some(&Decision::Granted)).count()
        })
        .collect()
}

#[test]
fn racing_initiators_leave_exactly_one_winner() {
    // On three centers, two or three racing: the earliest claim gathers
    // every other initiator's yes, so exactly one creator wins, whatever
    // the order (without the yield of a pending claim, three racers all
    // lose).
    for racers in [&["a", "b"][..], &["a", "b", "c"]] {
        let granted = race(&["a", "b", "c"], racers);
        assert!(granted.iter().all(|g| *g == 1), "{racers:?}: {granted:?}");
    }
    // On four, two racing: never two winners; both may lose when the two
    // other centers kept the later claim (PROTOCOL.md, the limit of the
    // yield), but not in most orders.
    let granted = race(&["a", "b", "c", "d"], &["a", "b"]);
    assert!(granted.iter().all(|g| *g <= 1), "{granted:?}");
    let one = granted.iter().filter(|g| **g == 1).count();
    assert!(
        one * 2 > granted.len(),
        "{one} of {} orders had a winner",
        granted.len()
    );
}

#[test]
fn the_deadline_passes_with_answers_missing() {
    // Initiator: b said yes, c said nothing; under "majority" of 4 (3
    // needed) nothing is decided until the deadline, then undecided.
    let mut a = part("a", Quorum::Majority, &["a", "b", "c", "d"]);
    let mut out = Vec::new();
    let n = a.on_create(T0, ("agent", "x"), &Held::default(), &names(&["b", "c"]), &mut out);
    let vote = VoteId::new("a", n);
    let mut out = Vec::new();
    a.on_answer("b", &vote, Answer::yes("b"), &mut out).unwrap();
    assert_eq!(out, vec![]);
    a.on_deadline(&vote, &mut out);
    assert!(matches!(&decided(&out)[..], [(_, Decision::Undecided(_))]), "{out:?}");
    let mut out = Vec::new();
    a.on_deadline(&vote, &mut out);
    a.on_answer("c", &vote, Answer::yes("c"), &mut out).unwrap();
    assert_eq!(out, vec![], "a vote ends once");

    // Relay: at its deadline it answers with what it heard, once.
    let mut b = part("b", Quorum::Majority, &["a", "b", "c", "d"]);
    let mut out = Vec::new();
    let deadline = T0 + 500;
    b.on_request(
        T0,
        incoming("a", "a", 7, Some(deadline)),
        true,
        &Held::default(),
        &names(&["a", "c", "d"]),
        &mut out,
    )
    .unwrap();
    let Command::Persist { promise } = out[0].clone() else {
        panic!("{out:?}")
    };
    let vote = VoteId::new("a", 7);
    let mut out = Vec::new();
    b.on_persisted(&promise, true, &mut out);
    b.on_answer("c", &vote, Answer::no("c", "busy"), &mut out).unwrap();
    assert_eq!(out, vec![], "d has not answered");
    b.on_deadline(&vote, &mut out);
    let mut got = Answer::yes("b");
    got.merge(Answer::no("c", "busy"));
    assert_eq!(
        out,
        vec![Command::SendAnswer {
            peer: "a".into(),
            vote: vote.clone(),
            answer: got
        }]
    );
    let mut out = Vec::new();
    b.on_answer("d", &vote, Answer::yes("d"), &mut out).unwrap();
    b.on_deadline(&vote, &mut out);
    assert_eq!(out, vec![], "answered once");

    // A relay whose promise is still not durable at its deadline answers
    // without itself.
    let mut c = part("c", Quorum::Majority, &["a", "b", "c"]);
    let mut out = Vec::new();
    c.on_request(
        T0,
        incoming("a", "a", 8, Some(deadline)),
        true,
        &Held::default(),
        &[],
        &mut out,
    )
    .unwrap();
    assert!(
        matches!(&out[..], [Command::Persist { .. }, Command::Schedule { .. }]),
        "{out:?}"
    );
    let mut out = Vec::new();
    c.on_deadline(&VoteId::new("a", 8), &mut out);
    assert_eq!(
        out,
        vec![Command::SendAnswer {
            peer: "a".into(),
            vote: VoteId::new("a", 8),
            answer: Answer::default()
        }]
    );
}

#[test]
fn a_promise_that_cannot_be_persisted_is_a_no() {
    let mut b = part("b", Quorum::Majority, &["a", "b", "c"]);
    let mut out = Vec::new();
    b.on_request(
        T0,
        incoming("a", "a", 7, Some(T0 + 500)),
        true,
        &Held::default(),
        &[],
        &mut out,
    )
    .unwrap();
    let Command::Persist { promise } = out[0].clone() else {
        panic!("{out:?}")
    };
    let mut out = Vec::new();
    b.on_persisted(&promise, false, &mut out);
    assert_eq!(
        out,
        vec![Command::SendAnswer {
            peer: "a".into(),
            vote: VoteId::new("a", 7),
            answer: Answer::no("b", "this center could not record its claim")
        }]
    );
    assert_eq!(b.claims_held(), 0, "nothing promised");
}

#[test]
fn duplicate_and_replayed_requests_are_answered_naming_nobody() {
    let mut b = part("b", Quorum::Majority, &["a", "b", "c"]);
    let targets = names(&["a", "c"]);
    let nobody = |peer: &str, counter| Command::SendAnswer {
        peer: peer.into(),
        vote: VoteId::new("a", counter),
        answer: Answer::default(),
    };
    let mut out = Vec::new();
    b.on_request(
        T0,
        incoming("a", "a", 7, Some(T0 + 500)),
        true,
        &Held::default(),
        &targets,
        &mut out,
    )
    .unwrap();
    assert!(matches!(out[0], Command::Persist { .. }));
    // The same vote by a second path: at once, nobody, nothing claimed.
    let mut out = Vec::new();
    b.on_request(
        T0,
        incoming("c", "a", 7, Some(T0 + 350)),
        true,
        &Held::default(),
        &targets,
        &mut out,
    )
    .unwrap();
    assert_eq!(out, vec![nobody("c", 7)]);
    // Replayed after the vote ended here: still nobody.
    let mut out = Vec::new();
    b.on_deadline(&VoteId::new("a", 7), &mut out);
    let mut out = Vec::new();
    b.on_request(
        T0 + 1,
        incoming("a", "a", 7, Some(T0 + 500)),
        true,
        &Held::default(),
        &targets,
        &mut out,
    )
    .unwrap();
    assert_eq!(out, vec![nobody("a", 7)]);
    // Our own vote come back, and a request while inactive: nobody.
    let mut mine = Vec::new();
    b.on_request(
        T0,
        incoming("a", "b", 9, Some(T0 + 500)),
        true,
        &Held::default(),
        &targets,
        &mut mine,
    )
    .unwrap();
    assert!(matches!(&mine[..], [Command::SendAnswer { answer, .. }] if *answer == Answer::default()));
    let mut out = Vec::new();
    b.on_request(
        T0,
        incoming("a", "a", 11, Some(T0 + 500)),
        false,
        &Held::default(),
        &targets,
        &mut out,
    )
    .unwrap();
    assert_eq!(out, vec![nobody("a", 11)]);
    assert_eq!(b.claims_held(), 1, "only the first copy claimed");
    // A counter far below the window (too old to tell): nobody.
    let mut out = Vec::new();
    let far = 7 + 2 * crate::dedup::WINDOW;
    b.on_request(
        T0,
        incoming("a", "a", far, Some(T0 + 500)),
        true,
        &Held::default(),
        &[],
        &mut out,
    )
    .unwrap();
    let mut out = Vec::new();
    b.on_request(
        T0,
        incoming("a", "a", 8, Some(T0 + 500)),
        true,
        &Held::default(),
        &[],
        &mut out,
    )
    .unwrap();
    assert_eq!(out, vec![nobody("a", 8)]);
}

#[test]
fn deadlines_too_far_or_already_past() {
    let mut b = part("b", Quorum::Majority, &["a", "b", "c"]);
    let targets = names(&["a", "c"]);
    // Too far ahead: malformed, refused, nothing claimed or sent.
    let mut out = Vec::new();
    let too_far = T0 + VOTE_DEADLINE_MAX_MS + 1;
    assert_eq!(
        b.on_request(
            T0,
            incoming("a", "a", 7, Some(too_far)),
            true,
            &Held::default(),
            &targets,
            &mut out
        ),
        Err(DeadlineTooFar)
    );
    assert_eq!(out, vec![]);
    assert_eq!((b.claims_held(), b.collecting()), (0, 0));
    // Already past (or exactly now): no part taken, answered at once.
    for deadline in [T0 - 1, T0] {
        let mut out = Vec::new();
        b.on_request(
            T0,
            incoming("a", "a", 8, Some(deadline)),
            true,
            &Held::default(),
            &targets,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out,
            vec![Command::SendAnswer {
                peer: "a".into(),
                vote: VoteId::new("a", 8),
                answer: Answer::default()
            }]
        );
    }
    assert_eq!((b.claims_held(), b.collecting()), (0, 0));
    // Missing (a plain DRiP node): the default from arrival.
    let mut out = Vec::new();
    b.on_request(T0, incoming("a", "a", 9, None), true, &Held::default(), &[], &mut out)
        .unwrap();
    assert_eq!(
        out.last(),
        Some(&Command::Schedule {
            at_ms: T0 + VOTE_DEADLINE_DEFAULT_MS,
            vote: VoteId::new("a", 9)
        })
    );
}

#[test]
fn an_answer_naming_too_many_centers_counts_nothing() {
    let mut a = part("a", Quorum::Majority, &["a", "b", "c"]);
    let mut out = Vec::new();
    let n = a.on_create(T0, ("agent", "x"), &Held::default(), &names(&["b", "c"]), &mut out);
    let vote = VoteId::new("a", n);
    let mut huge = Answer::yes("b");
    huge.yes.extend((0..VOTE_ANSWER_CENTERS_MAX).map(|i| format!("z{i}")));
    let mut out = Vec::new();
    assert_eq!(
        a.on_answer("b", &vote, huge, &mut out),
        Err(TooManyCenters(VOTE_ANSWER_CENTERS_MAX + 1))
    );
    assert_eq!(out, vec![]);
    // b is still waited for: its proper answer counts.
    a.on_answer("b", &vote, Answer::yes("b"), &mut out).unwrap();
    assert_eq!(decided(&out), vec![(n, Decision::Granted)]);
}

#[test]
fn an_owned_id_is_refused_and_not_forwarded() {
    let mut held = Held::default();
    held.0.insert(("agent".into(), "x".into()), "c".into());
    let mut a = part("a", Quorum::Majority, &["a", "b", "c"]);
    let mut out = Vec::new();
    let n = a.on_create(T0, ("agent", "x"), &held, &names(&["b", "c"]), &mut out);
    assert_eq!(decided(&out), vec![(n, Decision::Refused("owned by center c".into()))]);
    assert_eq!(out.len(), 1, "nobody asked");

    let mut b = part("b", Quorum::Majority, &["a", "b", "c"]);
    let mut out = Vec::new();
    b.on_request(
        T0,
        incoming("a", "a", 7, Some(T0 + 500)),
        true,
        &held,
        &names(&["a", "c"]),
        &mut out,
    )
    .unwrap();
    assert_eq!(
        out,
        vec![Command::SendAnswer {
            peer: "a".into(),
            vote: VoteId::new("a", 7),
            answer: Answer::owned("b", "c")
        }]
    );
}

#[test]
fn a_claim_for_another_is_held_the_grace_past_its_deadline() {
    let mut b = part("b", Quorum::Majority, &["a", "b", "c"]);
    let deadline = T0 + 500;
    let mut out = Vec::new();
    b.on_request(
        T0,
        incoming("a", "a", 7, Some(deadline)),
        true,
        &Held::default(),
        &[],
        &mut out,
    )
    .unwrap();
    let mut out = Vec::new();
    let mut inc = incoming("c", "c", 20, Some(deadline + CLAIM_GRACE_MS + 400));
    b.on_request(
        deadline + CLAIM_GRACE_MS - 1,
        inc.clone(),
        true,
        &Held::default(),
        &[],
        &mut out,
    )
    .unwrap();
    assert!(
        matches!(&out[..], [Command::SendAnswer { answer, .. }] if answer.no.contains_key("b")),
        "still a's: {out:?}"
    );
    let mut out = Vec::new();
    inc.vote.counter = 21;
    b.on_request(deadline + CLAIM_GRACE_MS, inc, true, &Held::default(), &[], &mut out)
        .unwrap();
    let Command::Persist { promise } = out[0].clone() else {
        panic!("{out:?}")
    };
    let mut out = Vec::new();
    b.on_persisted(&promise, true, &mut out);
    let Command::SendAnswer { answer, .. } = &out[0] else {
        panic!("{out:?}")
    };
    assert!(answer.yes.contains("b"));
    assert_eq!(
        answer.doubts,
        BTreeSet::from(["a".to_string()]),
        "a's lapsed claim is a doubt"
    );
}

#[test]
fn bounded_collections() {
    let mut b = part("b", Quorum::Majority, &["a", "b", "c"]);
    for i in 0..VOTES_COLLECTING_MAX as u64 {
        let mut inc = incoming("a", "a", i, Some(T0 + 500));
        inc.request.id = format!("x{i}");
        inc.reset = i == 0;
        let mut out = Vec::new();
        b.on_request(T0, inc, true, &Held::default(), &names(&["c"]), &mut out)
            .unwrap();
    }
    assert_eq!(b.collecting(), VOTES_COLLECTING_MAX);
    let mut out = Vec::new();
    let mut inc = incoming("a", "a", VOTES_COLLECTING_MAX as u64, Some(T0 + 500));
    inc.request.id = "y".into();
    b.on_request(T0, inc, true, &Held::default(), &names(&["c"]), &mut out)
        .unwrap();
    assert!(matches!(&out[..], [Command::SendAnswer { answer, .. }] if *answer == Answer::default()));
    let mut out = Vec::new();
    let n = b.on_create(T0, ("agent", "z"), &Held::default(), &names(&["c"]), &mut out);
    assert!(matches!(&decided(&out)[..], [(m, Decision::Undecided(_))] if *m == n));
}

#[test]
fn a_restart_ends_our_own_votes_but_keeps_promises_to_others() {
    // Mutation testing found `restarted` unchecked (a no-op survived).
    let mut a = part("a", Quorum::Majority, &["a", "b", "c"]);
    let mut out = Vec::new();
    a.on_create(T0, ("agent", "x"), &Held::default(), &names(&["b", "c"]), &mut out);
    assert_eq!((a.claims_held(), a.collecting()), (1, 1), "our claim, our vote");
    a.restarted();
    assert_eq!((a.claims_held(), a.collecting()), (0, 0));
    // The same id can be asked for again at once.
    let mut out = Vec::new();
    a.on_create(T0 + 1, ("agent", "x"), &Held::default(), &names(&["b", "c"]), &mut out);
    assert!(out.iter().any(|c| matches!(c, Command::SendRequest { .. })), "{out:?}");
}
