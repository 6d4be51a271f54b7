//! The vote count and the claims, judged against independent counts: a
//! tally never decides before a quorum of distinct configured centers said
//! yes (whatever paths and duplicates the answers took), and two racing
//! claims of one id, delivered in any order, with claims expiring and
//! records arriving late, are never both granted; on a healthy mesh one of
//! them is.

use proptest::prelude::*;
use regmesh_proto::tally::{Answer, Decision, Quorum, Rule, Tally};
use regmesh_proto::vote::{self, Arrival, Ballot, Claims, CLAIM_GRACE_MS, VOTE_DEADLINE_MAX_MS};
use std::collections::BTreeSet;

fn name(i: usize) -> String {
    format!("c{i}")
}

#[test]
fn a_tally_does_not_decide_before_a_quorum() {
    let rule = Rule::new(Quorum::Majority, (0..3).map(name));
    let mut t = Tally::new(Answer::yes("c0"), [name(1), name(2)]);
    assert_eq!(rule.decide(t.got(), false), None, "one yes of three");
    assert!(t.answer("c1", Answer::default()), "c1 spoke for nobody");
    assert_eq!(rule.decide(t.got(), false), None);
    assert!(matches!(rule.decide(t.got(), true), Some(Decision::Undecided(_))));
    assert!(t.answer("c2", Answer::yes("c2")));
    assert_eq!(rule.decide(t.got(), true), Some(Decision::Granted));

    let all = Rule::new(Quorum::All, (0..3).map(name));
    assert_eq!(all.decide(t.got(), false), None, "all needs c1 too");
    let mut no = t.got().clone();
    no.merge(Answer::no("c1", "pending claim"));
    assert!(matches!(all.decide(&no, false), Some(Decision::Refused(_))));
}

#[test]
fn yes_from_unknown_centers_and_repeats_do_not_count() {
    let rule = Rule::new(Quorum::Majority, (0..5).map(name));
    let mut t = Tally::new(Answer::yes("c0"), [name(1), name(2)]);
    let mut relay = Answer::yes("c1");
    relay.merge(Answer::yes("stranger"));
    relay.merge(Answer::yes("c0"));
    assert!(t.answer("c1", relay));
    assert!(!t.answer("c1", Answer::yes("c3")), "c1 answers once");
    assert!(!t.answer("c4", Answer::yes("c4")), "c4 was not asked");
    assert_eq!(rule.yes_count(t.got()), 2);
    assert_eq!(rule.decide(t.got(), true).map(|d| d == Decision::Granted), Some(false));
}

#[test]
fn an_owner_or_an_unresolved_doubt_blocks_a_grant() {
    let rule = Rule::new(Quorum::Majority, (0..3).map(name));
    let mut a = Answer::yes("c0");
    a.merge(Answer::yes("c1"));
    a.merge(Answer::owned("c2", "c9"));
    assert!(matches!(rule.decide(&a, false), Some(Decision::Refused(_))));
    let mut b = Answer::yes("c0");
    b.merge(Answer {
        doubts: BTreeSet::from([name(2)]),
        ..Answer::yes("c1")
    });
    assert_eq!(rule.decide(&b, false), None, "c2's earlier claim is in doubt");
    assert!(matches!(rule.decide(&b, true), Some(Decision::Undecided(_))));
    b.merge(Answer::yes("c2"));
    assert_eq!(rule.decide(&b, false), Some(Decision::Granted));
}

#[test]
fn a_late_request_takes_no_part_and_a_far_one_is_malformed() {
    assert_eq!(vote::arrival(1000, 999), Ok(Arrival::InTime));
    assert_eq!(vote::arrival(1000, 1000), Ok(Arrival::Late));
    assert_eq!(vote::arrival(1000, 5000), Ok(Arrival::Late));
    assert!(vote::arrival(1000 + VOTE_DEADLINE_MAX_MS + 1, 1000).is_err());
    assert_eq!(vote::arrival(1000 + VOTE_DEADLINE_MAX_MS, 1000), Ok(Arrival::InTime));
}

#[test]
fn a_pending_own_claim_yields_only_to_an_earlier_rival() {
    let k = ("agent", "x");
    let mut c = Claims::default();
    assert_eq!(c.claim_own(k, "B", 10, 5000, None, 0), Ballot::yes());
    assert!(
        matches!(c.vote(k, "C", 11, 5000, None, 1), Ballot::No(_)),
        "a later rival"
    );
    assert_eq!(
        c.vote(k, "A", 10, 5000, None, 1),
        Ballot::yes(),
        "same counter, earlier name"
    );
    assert!(!c.confirm(k, "B", 10), "B gave way");
    let mut d = Claims::default();
    assert_eq!(d.claim_own(k, "B", 10, 5000, None, 0), Ballot::yes());
    assert!(d.confirm(k, "B", 10));
    assert!(
        matches!(d.vote(k, "A", 1, 5000, None, 1), Ballot::No(_)),
        "confirmed never yields"
    );
    assert!(
        matches!(d.vote(k, "A", 1, 5000, None, 1_000_000), Ballot::No(_)),
        "nor expires"
    );
    d.release(k, "B", 10);
    assert_eq!(d.vote(k, "A", 1, 5000, None, 2), Ballot::yes());
}

#[test]
fn an_expired_claim_without_a_record_becomes_a_doubt() {
    let k = ("agent", "x");
    let mut c = Claims::default();
    assert_eq!(c.vote(k, "A", 1, 100, None, 0), Ballot::yes());
    let Ballot::Yes { doubts } = c.vote(k, "B", 2, 500, None, 200) else {
        panic!("A's claim expired")
    };
    assert_eq!(doubts, BTreeSet::from(["A".to_string()]));
    // A's record arrives: the doubt is settled.
    assert_eq!(c.vote(k, "C", 3, 900, Some("A"), 600), Ballot::Owned("A".into()));
    // B's claim expired with no record of B's: now B is in doubt.
    assert_eq!(
        c.vote(k, "C", 3, 900, None, 600),
        Ballot::Yes {
            doubts: BTreeSet::from(["B".to_string()])
        }
    );
}

/// One step of the race model.
#[derive(Debug, Clone)]
enum Ev {
    /// Initiator `who`'s request reaches center `at`.
    Ask { who: usize, at: usize },
    /// Initiator `who` tries to decide with what it heard.
    Decide { who: usize },
    /// The granted initiator's record reaches center `at`.
    Record { at: usize },
    /// Time passes (claims may expire).
    Wait { ms: u64 },
}

fn ev(n: usize) -> impl Strategy<Value = Ev> {
    prop_oneof![
        4 => (0..2usize, 0..n).prop_map(|(who, at)| Ev::Ask { who, at }),
        2 => (0..2usize).prop_map(|who| Ev::Decide { who }),
        2 => (0..n).prop_map(|at| Ev::Record { at }),
        1 => (0..4000u64).prop_map(|ms| Ev::Wait { ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Two initiators claim one id across `n` centers; requests arrive in
    /// any order, claims expire, the winner's record spreads late, and
    /// some centers forget nothing (claims are durable). Never two grants.
    #[test]
    fn two_claims_of_one_id_are_never_both_granted(
        n in 2usize..7,
        quorum_all in any::<bool>(),
        counters in (1u64..5, 1u64..5),
        evs in prop::collection::vec(ev(7), 1..80),
    ) {
        let quorum = if quorum_all { Quorum::All } else { Quorum::Majority };
        let rule = Rule::new(quorum, (0..n).map(name));
        let key = ("agent", "x");
        let who = [0usize, n - 1];
        let counter = [counters.0, counters.1];
        let mut claims: Vec<Claims> = (0..n).map(|_| Claims::default()).collect();
        let mut record: Vec<Option<String>> = vec![None; n];
        let mut heard = [Answer::default(), Answer::default()];
        let mut asked = [BTreeSet::new(), BTreeSet::new()];
        let mut done = [false, false];
        let mut granted: Vec<usize> = Vec::new();
        let mut now = 0u64;
        let deadline = |now: u64| now + 1000 + CLAIM_GRACE_MS;
        for w in 0..2 {
            let b = claims[who[w]].claim_own(key, &name(who[w]), counter[w], deadline(now), None, now);
            heard[w] = b.answer(&name(who[w]));
            asked[w].insert(who[w]);
        }
        for e in evs {
            match e {
                Ev::Ask { who: w, at } if at < n && !done[w] && asked[w].insert(at) => {
                    let owner = record[at].clone();
                    let b = claims[at].vote(key, &name(who[w]), counter[w], deadline(now), owner.as_deref(), now);
                    heard[w].merge(b.answer(&name(at)));
                }
                Ev::Decide { who: w } if !done[w] && rule.decide(&heard[w], false) == Some(Decision::Granted) => {
                    done[w] = true;
                    if claims[who[w]].confirm(key, &name(who[w]), counter[w]) {
                        granted.push(w);
                        record[who[w]] = Some(name(who[w]));
                        claims[who[w]].release(key, &name(who[w]), counter[w]);
                    }
                }
                Ev::Record { at } if at < n => {
                    if let Some(&w) = granted.first() {
                        record[at] = Some(name(who[w]));
                    }
                }
                Ev::Wait { ms } => now += ms,
                _ => {}
            }
        }
        prop_assert!(granted.len() <= 1, "both granted: {heard:?}");
    }

    /// Yes-voters reported along a random relay tree, every answer also
    /// duplicated along a second path: the count is the number of distinct
    /// configured centers that said yes, and a grant needs a quorum of them.
    #[test]
    fn the_count_is_distinct_centers_whatever_the_paths(
        n in 1usize..12,
        said_yes in prop::collection::vec(any::<bool>(), 12),
        parents in prop::collection::vec(any::<prop::sample::Index>(), 12),
        dups in prop::collection::vec(any::<prop::sample::Index>(), 12),
    ) {
        // Center 0 initiates and says yes; center i > 0 hangs off parent p < i.
        let own = |i: usize| if i == 0 || said_yes[i] { Answer::yes(&name(i)) } else { Answer::no(&name(i), "no") };
        let mut sub: Vec<Answer> = (0..n).map(own).collect();
        let parent: Vec<usize> = (0..n).map(|i| if i == 0 { 0 } else { parents[i].index(i) }).collect();
        for i in (1..n).rev() {
            let a = sub[i].clone();
            sub[parent[i]].merge(a.clone());
            // The same report again by another path.
            sub[dups[i].index(i)].merge(a);
        }
        let rule = Rule::new(Quorum::Majority, (0..n).map(name));
        let truth = (0..n).filter(|&i| i == 0 || said_yes[i]).count();
        prop_assert_eq!(rule.yes_count(&sub[0]), truth);
        let granted = rule.decide(&sub[0], true) == Some(Decision::Granted);
        prop_assert_eq!(granted, truth > n / 2);
    }
}
