//! Seeded whole-node runs (`regmesh_nodesim::run`): faults and client writes
//! from each seed, then a heal; every run must converge, lose no
//! acknowledged write and acknowledge no id to two creators.
//!
//! Budget: `CI_SEEDS` seeds, about 15 s of real time on this loaded 2-core
//! machine (19-37 s simulated each). More:
//! `REGMESH_NODESIM_SEEDS=500 scripts/test -p regmesh-nodesim --test seeds
//! --no-capture`; one seed again: `REGMESH_NODESIM_SEED=17`.

use regmesh_nodesim::run::{run, RunConfig};

const CI_SEEDS: u64 = 5;

#[test]
fn seeded_runs_converge_and_lose_no_acknowledged_write() {
    let seeds: Vec<u64> = match std::env::var("REGMESH_NODESIM_SEED") {
        Ok(s) => vec![s.parse().expect("REGMESH_NODESIM_SEED is a number")],
        Err(_) => {
            let n = std::env::var("REGMESH_NODESIM_SEEDS")
                .ok()
                .map(|s| s.parse().expect("REGMESH_NODESIM_SEEDS is a number"))
                .unwrap_or(CI_SEEDS);
            (1..=n).collect()
        }
    };
    let t0 = std::time::Instant::now();
    let mut failed = Vec::new();
    for seed in &seeds {
        match run(*seed, &RunConfig::default()) {
            Ok(s) => eprintln!(
                "seed {seed}: ok, {} writes ({} acknowledged), {} ms simulated, faults {:?}",
                s.writes, s.acked, s.sim_ms, s.faults
            ),
            Err(e) => {
                eprintln!("{e}");
                failed.push(e);
            }
        }
    }
    eprintln!("{} seeds in {:.1} s", seeds.len(), t0.elapsed().as_secs_f64());
    assert!(
        failed.is_empty(),
        "{} of {} seeds failed: {failed:#?}",
        failed.len(),
        seeds.len()
    );
}
