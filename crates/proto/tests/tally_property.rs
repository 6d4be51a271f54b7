//! The initiator's count judged against a count kept here: answers from
//! asked peers, strangers and repeats arrive in any order, each naming
//! centers that said yes or no; after every answer the decision is
//! checked against the documented rule (DESIGN.md "Claims by majority"):
//! a grant only once more than half (or, with `claims = "all"`, every one)
//! of the configured centers said yes and none of them said no anywhere;
//! a refusal only once so many said no that the quorum is out of reach;
//! nothing undecided before the end.

use proptest::prelude::*;
use regmesh_proto::tally::{Answer, Decision, Quorum, Rule, Tally};
use std::collections::BTreeSet;

fn name(i: usize) -> String {
    format!("c{i}")
}

/// One answer: who sends it, and the centers (by number; 20 and up are
/// strangers) it names as yes and as no.
#[derive(Debug, Clone)]
struct Arrives {
    from: usize,
    yes: Vec<usize>,
    no: Vec<usize>,
}

fn arrives() -> impl Strategy<Value = Arrives> {
    (
        0usize..9,
        proptest::collection::vec(prop_oneof![8 => 0usize..9, 1 => 20usize..22], 0..4),
        proptest::collection::vec(0usize..9, 0..2),
    )
        .prop_map(|(from, yes, no)| Arrives { from, yes, no })
}

fn answer(a: &Arrives) -> Answer {
    let mut out = Answer::default();
    for y in &a.yes {
        out.merge(Answer::yes(&name(*y)));
    }
    for n in &a.no {
        out.merge(Answer::no(&name(*n), "pending claim"));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn it_decides_only_as_the_rule_says(
        n in 1usize..9,
        all in any::<bool>(),
        asked in proptest::collection::btree_set(1usize..9, 0..8),
        seq in proptest::collection::vec(arrives(), 0..12),
    ) {
        let members: BTreeSet<String> = (0..n).map(name).collect();
        let quorum = if all { Quorum::All } else { Quorum::Majority };
        let needed = if all { n } else { n / 2 + 1 };
        let rule = Rule::new(quorum, members.iter().cloned());
        let asked: BTreeSet<usize> = asked.into_iter().filter(|i| *i < n).collect();
        let mut t = Tally::new(Answer::yes(&name(0)), asked.iter().map(|i| name(*i)));
        // The count kept here: who was heard saying yes and no.
        let (mut yes, mut no) = (BTreeSet::from([0usize]), BTreeSet::new());
        let mut waiting = asked.clone();
        for a in &seq {
            let taken = t.answer(&name(a.from), answer(a));
            prop_assert_eq!(taken, waiting.remove(&a.from), "only an asked peer, once");
            if taken {
                yes.extend(a.yes.iter().copied().filter(|c| *c < n));
                no.extend(a.no.iter().copied());
            }
            let counted: BTreeSet<usize> = yes.difference(&no).copied().collect();
            let said_no = no.iter().filter(|c| **c < n).count();
            let complete = waiting.is_empty();
            prop_assert_eq!(t.is_complete(), complete);
            prop_assert_eq!(rule.yes_count(t.got()), counted.len());
            for end in [false, true] {
                match rule.decide(t.got(), end) {
                    Some(Decision::Granted) => prop_assert!(
                        counted.len() >= needed,
                        "granted with {} of {} ({} needed)", counted.len(), n, needed
                    ),
                    Some(Decision::Refused(_)) => prop_assert!(
                        n - said_no < needed,
                        "refused with {} no of {} ({} needed)", said_no, n, needed
                    ),
                    Some(Decision::Undecided(_)) => prop_assert!(end, "undecided before the end"),
                    None => {
                        prop_assert!(!end, "nothing decided at the end");
                        prop_assert!(counted.len() < needed, "a quorum said yes but no grant");
                        prop_assert!(n - said_no >= needed, "out of reach but not refused");
                    }
                }
            }
        }
    }
}

#[test]
fn every_member_saying_yes_is_a_grant_under_both_rules() {
    for n in 1..7 {
        for quorum in [Quorum::Majority, Quorum::All] {
            let rule = Rule::new(quorum, (0..n).map(name));
            let mut t = Tally::new(Answer::yes(&name(0)), (1..n).map(name));
            for i in 1..n {
                let before = rule.decide(t.got(), false);
                let heard = i;
                let needed = if quorum == Quorum::All { n } else { n / 2 + 1 };
                assert_eq!(
                    before == Some(Decision::Granted),
                    heard >= needed,
                    "{n} {quorum:?} {heard}"
                );
                assert!(t.answer(&name(i), Answer::yes(&name(i))));
            }
            assert_eq!(rule.decide(t.got(), true), Some(Decision::Granted));
        }
    }
}

#[test]
fn an_answer_from_the_wire_is_bounded_and_kept_whole() {
    use regmesh_proto::constants::VOTE_ANSWER_CENTERS_MAX;
    let mut at_bound = Answer::default();
    for i in 0..VOTE_ANSWER_CENTERS_MAX - 2 {
        at_bound.yes.insert(name(i));
    }
    at_bound.no.insert("n".into(), "pending claim".into());
    at_bound.doubts.insert("d".into());
    assert_eq!(
        at_bound.clone().checked(),
        Ok(at_bound.clone()),
        "exactly the bound passes, unchanged"
    );
    let mut over = at_bound;
    over.doubts.insert("e".into());
    assert_eq!(
        over.checked().map(|_| ()).map_err(|e| e.0),
        Err(VOTE_ANSWER_CENTERS_MAX + 1)
    );
}

#[test]
fn drips_one_word_is_yes_only_for_an_own_yes_and_no_owner() {
    let mut a = Answer::yes("c1");
    assert_eq!(a.word("c1"), "yes");
    assert_eq!(a.word("c2"), "no", "another center's yes is not ours");
    a.owner = Some("c9".into());
    assert_eq!(a.word("c1"), "no", "the id is owned");
    assert_eq!(Answer::no("c1", "pending claim").word("c1"), "no");
}

#[test]
fn the_rule_names_and_its_accessors() {
    for q in [Quorum::Majority, Quorum::All] {
        assert_eq!(Quorum::parse(q.as_str()), Some(q));
    }
    assert_eq!(Quorum::Majority.as_str(), "majority");
    assert_eq!(Quorum::All.as_str(), "all");
    assert_eq!(Quorum::parse("majority"), Some(Quorum::Majority));
    let rule = Rule::new(Quorum::All, (0..3).map(name));
    assert_eq!(rule.quorum(), Quorum::All);
    assert_eq!(rule.members(), &(0..3).map(name).collect::<BTreeSet<_>>());
    let mut t = Tally::new(Answer::yes("c0"), [name(2), name(1)]);
    assert_eq!(t.missing(), vec![name(1), name(2)], "sorted");
    t.answer("c1", Answer::yes("c1"));
    assert_eq!(t.missing(), vec![name(2)]);
}
