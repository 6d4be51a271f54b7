//! Claims in the simulator: a vote count that decides one yes short of a
//! quorum (regmesh-proto's `tally-decides-early` variant) is caught by the
//! one-owner invariant within CI's budget, and the seeds that run DRiP's
//! every-center rule (`claims = "all"`) are part of the budget.
#![cfg(feature = "broken")]

use regmesh_proto::tally::Quorum;
use regmesh_sim::run_seed;
use regmesh_sim::world::Plan;

/// Seeds tried before giving up.
const BUDGET: u64 = 60;

#[test]
fn a_tally_that_decides_early_is_caught() {
    for seed in 1..=BUDGET {
        let (o, _) = run_seed(seed, Some("tally-decides-early"), false).expect("runs");
        if let Some(v) = o.violation {
            assert!(v.starts_with("one owner after a vote"), "seed {seed}: {v}");
            return;
        }
    }
    panic!("tally-decides-early went unnoticed for {BUDGET} seeds");
}

#[test]
fn both_claim_rules_are_in_the_budget() {
    let all = (1..=BUDGET)
        .filter(|s| Plan::from_seed(*s, false).quorum == Quorum::All)
        .count();
    assert!(
        all > 0 && all < BUDGET as usize,
        "{all} of {BUDGET} seeds use claims = all"
    );
}
