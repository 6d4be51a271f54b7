//! The dedup window against a plain model: a counter below (highest seen + 1
//! − WINDOW) is Old; otherwise it is new iff it was never seen. A counter
//! seen before may also answer Old once the window has slid over it (a prefix
//! of seen counters is folded into the base).

use proptest::prelude::*;
use regmesh_proto::dedup::{CounterWindow, Seen, WINDOW};
use std::collections::HashSet;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn matches_the_model(counters in proptest::collection::vec(0u64..20_000, 1..400)) {
        let mut w = CounterWindow::new();
        let mut seen = HashSet::new();
        let mut floor = 0u64;
        for c in counters {
            let model = if c < floor {
                Seen::Old
            } else if seen.contains(&c) {
                Seen::Duplicate
            } else {
                Seen::New
            };
            let ok = |got: Seen| got == model || (model == Seen::Duplicate && got == Seen::Old);
            let peeked = w.peek(c, false);
            prop_assert!(ok(peeked), "peek, counter {}: {:?}, model {:?}", c, peeked, model);
            let got = w.observe(c, false);
            prop_assert!(ok(got), "counter {}: {:?}, model {:?}", c, got, model);
            if model == Seen::New {
                seen.insert(c);
                floor = floor.max((c + 1).saturating_sub(WINDOW));
            }
        }
    }

    #[test]
    fn every_counter_is_new_exactly_once_within_the_window(mut perm in Just((1u64..=200).collect::<Vec<_>>()).prop_shuffle()) {
        // Any reordering within the window: each counter new once, copies dropped.
        let mut w = CounterWindow::new();
        let copies = perm.clone();
        perm.extend(copies);
        let news = perm.iter().filter(|c| w.observe(**c, false) == Seen::New).count();
        prop_assert_eq!(news, 200);
    }
}
