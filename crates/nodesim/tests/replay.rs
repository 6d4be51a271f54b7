//! Bit-exact replay: one seed run twice gives the same event trace (peer
//! lifecycle changes with their times, client answers, every center's
//! whole change log with versions). Budget: two seeded runs, a few seconds.
//!
//! Not yet in CI (`#[ignore]`): seeds 1 to 3 replay, but others (4 to 7)
//! still diverge, within the first seconds (a beat sent one tick apart,
//! then a vote answered 3 ms apart), with the same network traffic before;
//! the sources found so far are fixed (tokio `select!` drawing its branch
//! order from an unseeded source, timer ties broken by a map's order, the
//! writer's relaxed commits judged on the real clock, hyper's header
//! deadline measured on the real clock). Run it:
//! `scripts/test -p regmesh-nodesim --test replay --run-ignored only`
//! (`REGMESH_NODESIM_SEED=N` for another seed).

use regmesh_nodesim::run::{run, RunConfig};

#[test]
#[ignore = "some seeds still diverge; see the module doc"]
fn one_seed_twice_gives_one_trace() {
    let seed = std::env::var("REGMESH_NODESIM_SEED")
        .ok()
        .map(|s| s.parse().expect("REGMESH_NODESIM_SEED is a number"))
        .unwrap_or(4);
    let rc = RunConfig::default();
    let a = run(seed, &rc).expect("first run");
    let b = run(seed, &rc).expect("second run");
    assert!(
        a.trace.lines.len() > 50,
        "a trace worth comparing: {}",
        a.trace.lines.len()
    );
    if let Some((i, x, y)) = a.trace.first_difference(&b.trace) {
        let before = a.trace.lines[i.saturating_sub(8)..i].join("\n");
        panic!(
            "seed {seed} diverged at line {i} of {} (faults {:?}), after\n{before}\n first: {x}\nsecond: {y}",
            a.trace.lines.len(),
            a.faults
        );
    }
}
