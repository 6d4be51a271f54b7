//! Proof the invariants can fail: each deliberately broken protocol variant
//! (regmesh-proto's `broken` feature) is caught within CI's seed budget, by
//! the invariant meant to catch it.
#![cfg(feature = "broken")]

use regmesh_sim::run_seed;

/// Seeds tried per variant before giving up: CI's seed budget
/// (tests/seeds.rs).
const BUDGET: u64 = 200;

fn caught(variant: &str, by: &str) {
    for seed in 1..=BUDGET {
        let (o, _) = run_seed(seed, Some(variant), false).expect("runs");
        if let Some(v) = o.violation {
            assert!(
                v.starts_with(by),
                "{variant} at seed {seed} was caught by another invariant: {v}"
            );
            return;
        }
    }
    panic!("{variant} went unnoticed for {BUDGET} seeds");
}

#[test]
fn skipping_watermark_gaps_loses_records() {
    caught("watermark-skips-gaps", "convergence");
}

#[test]
fn relaying_past_a_policy_is_caught() {
    caught("relay-ignores-policy", "export policy");
}

#[test]
fn voting_without_a_claim_makes_two_owners() {
    caught("vote-without-claim", "one owner after a vote");
}

#[test]
fn judging_a_peer_by_our_own_interval_is_caught() {
    caught("lifecycle-own-interval", "peer states follow intervals");
}

#[test]
fn an_export_check_that_lets_tombstones_through_is_caught() {
    caught("export-lets-tombstones", "export policy");
}

#[test]
fn a_digest_that_skips_the_logical_counter_is_caught() {
    caught("digest-skips-logical", "equal digests mean equal sets");
}

#[test]
fn a_resync_boundary_off_by_one_is_caught() {
    caught("resync-off-by-one", "convergence");
}

#[test]
fn the_correct_protocol_passes_the_same_seeds() {
    // With the feature compiled in but no variant on, nothing is found.
    for seed in 1..=20 {
        let (o, _) = run_seed(seed, None, false).expect("runs");
        assert!(o.violation.is_none(), "seed {seed}: {:?}", o.violation);
    }
}

#[test]
fn ceilings_that_trust_a_lying_relay_are_caught() {
    caught("ceilings-trust-relays", "no mark passes what its origin issued");
}
