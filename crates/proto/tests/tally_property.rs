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
