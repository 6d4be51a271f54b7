//! CI's seed budget: the randomized fault search over a fixed range of
//! seeds, every invariant checked after every step, then convergence.
//! A failure names the command that replays it.

use regmesh_sim::world::{Clocks, Plan};
use regmesh_sim::{replay_command, run_seed};

/// Seeds CI runs (a few seconds in a release build, under a minute of
/// one core in a debug one). Each seed carries 4 to 11 faults, so these
/// reach what 2,000 seeds of 2 to 5 faults did (the broken variants in
/// tests/broken.rs are caught within them). `regmesh-sim run --seeds N`
/// searches further.
pub const BUDGET: u64 = 200;

#[test]
fn the_seed_budget_finds_no_violation() {
    for seed in 1..=BUDGET {
        let (o, _) = run_seed(seed, None, false).expect("runs");
        if let Some(v) = o.violation {
            panic!("seed {seed}: {v}\nreproduce: {}", replay_command(seed, None, false));
        }
        assert!(o.converged_after_ms.is_some(), "seed {seed} converged");
    }
}

#[test]
fn a_deletion_superseded_by_another_create_may_leave_nothing() {
    // Seed 212: c00 deletes a00, c05 creates it anew, deletes it and purges
    // the tombstone; c00's resync drops c05's version. Holding nothing is
    // right: the acknowledged deletion was superseded, then lawfully
    // dropped.
    let (o, _) = run_seed(212, None, false).expect("runs");
    assert!(o.violation.is_none(), "{:?}", o.violation);
}

#[test]
fn a_create_is_stamped_above_every_version_a_voter_held() {
    // Seed 8798: c00 deletes a08 with its clock 8 ms ahead, c01 claims it,
    // c00 votes yes; without the voter's version in the answer c01 stamps
    // its create below the deletion, which wins the merge, and c02 is
    // later granted a08 too. Seed 9808 is the same on another id. Budget:
    // two seeds, well under a second each in a debug build.
    for seed in [8798, 9808] {
        let (o, _) = run_seed(seed, None, false).expect("runs");
        assert!(o.violation.is_none(), "seed {seed}: {:?}", o.violation);
    }
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [3, 17] {
        let (a, wa) = run_seed(seed, None, false).expect("runs");
        let (b, wb) = run_seed(seed, None, false).expect("runs");
        assert_eq!(a.steps, b.steps);
        assert_eq!(a.net.sent, b.net.sent);
        assert_eq!(a.converged_after_ms, b.converged_after_ms);
        assert_eq!(wa.log, wb.log);
        for (x, y) in wa.centers.iter().zip(&wb.centers) {
            assert_eq!(x.store.current, y.store.current);
        }
    }
}

#[test]
fn the_runs_exercise_the_faults_and_the_protocol() {
    // The budget is only worth something if the runs reach the interesting
    // paths: lost and duplicated messages, crashes, pulls, resyncs of an
    // origin behind the tombstone horizon, granted and refused creates.
    let mut total = regmesh_sim::world::NetStats::default();
    let (mut pulls, mut resyncs, mut purged, mut granted, mut refused, mut crashes) = (0, 0, 0, 0, 0, 0);
    for seed in 1..=40 {
        let (o, w) = run_seed(seed, None, false).expect("runs");
        total.lost += o.net.lost;
        total.duplicated += o.net.duplicated;
        total.blocked += o.net.blocked;
        pulls += o.pulls;
        resyncs += o.resyncs;
        purged += o.purged;
        granted += o.granted;
        refused += o.refused;
        crashes += w.log.iter().filter(|l| l.contains("crash")).count();
    }
    assert!(total.lost > 0 && total.duplicated > 0 && total.blocked > 0);
    assert!(
        pulls > 0 && resyncs > 0 && purged > 0,
        "{pulls} pulls, {resyncs} resyncs, {purged} purged"
    );
    assert!(granted > 0 && refused > 0 && crashes > 0);
}

#[test]
fn the_budget_reaches_equal_clocks_and_slid_dedup_windows() {
    // Seeds with equal clocks (writes of different centers in one
    // millisecond carry one wall clock) and with tight ones; and a burst
    // of more own writes than a dedup window holds while another center is
    // isolated, so its window for the writer slides when it comes back.
    let plans: Vec<Plan> = (1..=BUDGET).map(|s| Plan::from_seed(s, false)).collect();
    for clocks in [Clocks::Skewed, Clocks::Equal, Clocks::Tight] {
        let n = plans.iter().filter(|p| p.clocks == clocks).count();
        assert!(n >= BUDGET as usize / 8, "{n} seeds with {clocks:?} clocks");
    }
    // Some burst writes are refused (a key deleted meanwhile, the writer
    // inactive a moment): at least one burst must still pass a window.
    let mut most = (0, 0);
    for p in plans.iter().filter(|p| p.burst.is_some()) {
        let (_, w) = run_seed(p.seed, None, false).expect("runs");
        let (_, c, _) = p.burst.expect("a burst");
        let writer = Plan::center_id(c);
        let own = w
            .history
            .acked
            .values()
            .flatten()
            .filter(|r| r.origin == writer)
            .count();
        most = most.max((own, p.seed));
        if own > regmesh_proto::dedup::WINDOW as usize {
            return;
        }
    }
    panic!("no burst in the budget passed a dedup window (most: {most:?})");
}
