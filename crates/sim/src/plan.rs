//! What one seed makes of a run ([`Plan::from_seed`]): the topology and
//! export policies, link latencies, the centers' settings and clocks, loss
//! and duplication, the faults and their times, the burst. Must never run
//! anything: the world ([`crate::world`]) carries a plan out.

use crate::center::Settings;
use crate::rng::Rng;
use regmesh_core::Visibility;
use regmesh_proto::policy::ExportPolicy;
use regmesh_proto::tally::Quorum;
use std::collections::{BTreeSet, HashMap};

/// Everything a run is made of; [`Plan::from_seed`] derives it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    pub centers: usize,
    /// Undirected links (a < b).
    pub links: Vec<(usize, usize)>,
    /// What `a` sends `b`, per directed link.
    pub policies: HashMap<(usize, usize), ExportPolicy>,
    /// (base, jitter) ms per directed link.
    pub latency: HashMap<(usize, usize), (u64, u64)>,
    pub settings: Vec<Settings>,
    pub loss: f64,
    pub dup: f64,
    pub faults: Vec<(u64, Fault)>,
    pub safety_ms: u64,
    pub liveness_ms: u64,
    /// Mean gap between client operations (ms).
    pub op_gap_ms: u64,
    pub ids: usize,
    pub known_gaps: bool,
    /// Whose yes a claim needs (`[peer] claims`): a majority on most seeds.
    pub quorum: Quorum,
    /// How the centers' clocks stand to each other.
    pub clocks: Clocks,
    /// A burst of own writes at one center while another is isolated, so
    /// that the isolated center's dedup window for it slides (more than
    /// [`regmesh_proto::dedup::WINDOW`] counters): (at, center, writes).
    pub burst: Option<(u64, usize, usize)>,
}

/// The centers' clocks on a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clocks {
    /// Up to ±2 s apart: HLCs run ahead of some wall clocks.
    Skewed,
    /// All equal: writes of different centers in one millisecond carry one
    /// wall clock.
    Equal,
    /// 0, 2, 4 or 6 ms apart over 1 ms links: a create that follows
    /// another center's deletion of the id often lands on its very HLC (a
    /// version tie between centers, broken by the origin).
    Tight,
}

/// Writes of a burst: more than a dedup window.
pub const BURST_WRITES: usize = regmesh_proto::dedup::WINDOW as usize + 100;

#[derive(Debug, Clone)]
pub enum Fault {
    Block(Vec<(usize, usize)>, &'static str),
    Unblock(Vec<(usize, usize)>),
    Crash(usize),
    Restart(usize),
    /// The center starts lying: its pull pages claim to cover other
    /// origins far past its mark (`LIE_AHEAD_SEQS` in center/pulls.rs), as the peer
    /// of `bin/tests/peer_attacks.rs` does. Ceilings must bound the claim.
    Lie(usize),
    /// The center stops lying.
    Honest(usize),
}

impl Plan {
    /// The plan of `seed`: a core mesh (a ring plus random chords) whose
    /// links carry everything but `local` records, up to two edge centers,
    /// each hanging off one core center by a link with a restrictive export
    /// policy in both directions, and on half the seeds restrictive
    /// policies on random core links too.
    ///
    /// With `known_gaps`, the plan walks into the two gaps PROTOCOL.md lists
    /// under "Known gaps": tombstones are purged after 4 s, before faults
    /// end, and the workload deletes ids that two centers created (a
    /// tombstone of one origin superseding another origin's version).
    pub fn from_seed(seed: u64, known_gaps: bool) -> Plan {
        let mut rng = Rng::new(seed);
        let core = rng.range(3, 6) as usize;
        let edges = rng.range(0, 2) as usize;
        let n = core + edges;
        // A ring (connected), plus random chords.
        let mut links: BTreeSet<(usize, usize)> = (0..core)
            .map(|i| (i.min((i + 1) % core), i.max((i + 1) % core)))
            .collect();
        for a in 0..core {
            for b in a + 1..core {
                if rng.chance(0.3) {
                    links.insert((a, b));
                }
            }
        }
        let mut edge_links = BTreeSet::new();
        for e in core..n {
            let hub = rng.below(core as u64) as usize;
            links.insert((hub, e));
            edge_links.insert((hub, e));
        }
        let links: Vec<(usize, usize)> = links.into_iter().collect();
        // Half the seeds also restrict random core links, so records reach a
        // center by paths that filter them differently; the class digests
        // repair what a filtering path covered. Those seeds keep tombstones
        // past the run: a deletion a filtering path covered cannot be
        // repaired once purged (PROTOCOL.md, "Known gaps").
        let mixed = known_gaps || rng.chance(0.5);
        let clocks = match rng.below(4) {
            0 | 1 => Clocks::Skewed,
            2 => Clocks::Equal,
            _ => Clocks::Tight,
        };
        let full = ExportPolicy::new([], ["g1".to_string()]);
        let restricted = [
            ExportPolicy::new(["agent".to_string()], []),
            ExportPolicy::new([], []),
            ExportPolicy::new(["agent".to_string()], ["g1".to_string()]),
        ];
        let mut policies = HashMap::new();
        let mut latency = HashMap::new();
        for &(a, b) in &links {
            for (x, y) in [(a, b), (b, a)] {
                let restrict = edge_links.contains(&(a, b)) || (mixed && rng.chance(0.2));
                let p = if restrict {
                    rng.pick(&restricted).clone()
                } else {
                    full.clone()
                };
                policies.insert((x, y), p);
                let base = match clocks {
                    Clocks::Tight => 1,
                    _ => rng.range(1, 60),
                };
                latency.insert((x, y), (base, rng.range(0, base / 2 + 1)));
            }
        }
        let relaxed = rng.chance(0.5);
        let mut settings: Vec<Settings> = (0..n)
            .map(|_| Settings {
                interval_ms: *rng.pick(&[150, 300, 500, 1000]),
                skew_ms: match clocks {
                    Clocks::Skewed => rng.range(0, 4000) as i64 - 2000,
                    Clocks::Equal => 0,
                    Clocks::Tight => 2 * rng.range(0, 4) as i64,
                },
                lease_ms: 3000,
                // Longer than any fault lasts, unless walking into the gaps.
                tombstone_horizon_ms: match (known_gaps, mixed) {
                    (true, _) => 4000,
                    (false, true) => 600_000,
                    (false, false) => 10_000,
                },
                vote_timeout_ms: 1000,
                relaxed_replicas: relaxed,
                pull_page: *rng.pick(&[3, 50, 1000]),
            })
            .collect();
        let safety_ms = 30_000;
        let mut faults = Vec::new();
        // Dense in faults: 4 to 11 per 30 s, often overlapping, so that
        // CI's few hundred seeds reach what thousands of sparser ones did.
        for _ in 0..rng.range(4, 12) {
            let at = rng.range(1000, safety_ms - 2000);
            let dur = rng.range(300, 5000);
            let end = (at + dur).min(safety_ms - 1);
            match rng.below(5) {
                0 => {
                    // Symmetric partition into two sides.
                    let side: Vec<bool> = (0..n).map(|_| rng.chance(0.5)).collect();
                    let cut: Vec<(usize, usize)> = links
                        .iter()
                        .filter(|(a, b)| side[*a] != side[*b])
                        .flat_map(|&(a, b)| [(a, b), (b, a)])
                        .collect();
                    faults.push((at, Fault::Block(cut.clone(), "partition")));
                    faults.push((end, Fault::Unblock(cut)));
                }
                1 => {
                    // One-way: some directions stop carrying anything.
                    let mut cut = Vec::new();
                    for &(a, b) in &links {
                        if rng.chance(0.4) {
                            cut.push(if rng.chance(0.5) { (a, b) } else { (b, a) });
                        }
                    }
                    faults.push((at, Fault::Block(cut.clone(), "one-way")));
                    faults.push((end, Fault::Unblock(cut)));
                }
                2 => {
                    let c = rng.below(n as u64) as usize;
                    let cut: Vec<(usize, usize)> = links
                        .iter()
                        .filter(|(a, b)| *a == c || *b == c)
                        .flat_map(|&(a, b)| [(a, b), (b, a)])
                        .collect();
                    faults.push((at, Fault::Block(cut.clone(), "isolate")));
                    faults.push((end, Fault::Unblock(cut)));
                }
                _ => {
                    // Crashes twice as often as each other fault: every
                    // restart walks the durable state.
                    let c = rng.below(n as u64) as usize;
                    faults.push((at, Fault::Crash(c)));
                    faults.push((end, Fault::Restart(c)));
                }
            }
        }
        // A lying center on a quarter of the seeds, drawn from a stream of
        // its own so the rest of every plan stays as it was.
        // Ceilings bound a lie only to what the origin has shown, so a mark
        // may still skip records the liar lacked: digests repair those, but
        // not a deletion already purged (PROTOCOL.md, "Known gaps"), so such
        // seeds keep their tombstones past the run.
        let mut lies = Rng::new(seed ^ 0x6c69_6573);
        if lies.chance(0.25) {
            let c = lies.below(n as u64) as usize;
            let at = lies.range(1000, safety_ms - 10_000);
            faults.push((at, Fault::Lie(c)));
            faults.push((at + lies.range(2000, 8000), Fault::Honest(c)));
            if !known_gaps {
                for s in &mut settings {
                    s.tombstone_horizon_ms = s.tombstone_horizon_ms.max(600_000);
                }
            }
        }
        let burst = if rng.chance(0.06) {
            let c = rng.below(n as u64) as usize;
            let d = (c + 1 + rng.below(n as u64 - 1) as usize) % n;
            let at = rng.range(3000, safety_ms - 9000);
            let cut: Vec<(usize, usize)> = links
                .iter()
                .filter(|(a, b)| *a == d || *b == d)
                .flat_map(|&(a, b)| [(a, b), (b, a)])
                .collect();
            faults.push((at, Fault::Block(cut.clone(), "isolate")));
            faults.push((at + 6000, Fault::Unblock(cut)));
            Some((at + 300, c, BURST_WRITES))
        } else {
            None
        };
        Plan {
            seed,
            centers: n,
            links,
            policies,
            latency,
            settings,
            loss: rng.range(0, 10) as f64 / 100.0,
            dup: rng.range(0, 5) as f64 / 100.0,
            faults,
            safety_ms,
            liveness_ms: 60_000,
            op_gap_ms: rng.range(20, 80),
            ids: 40,
            known_gaps,
            quorum: if rng.chance(0.2) { Quorum::All } else { Quorum::Majority },
            clocks,
            burst,
        }
    }

    pub fn center_id(i: usize) -> String {
        format!("c{i:02}")
    }

    /// The kind and visibility every version of id number `i` has.
    pub fn key_class(i: usize) -> (&'static str, Visibility) {
        let kind = if i % 5 == 4 { "service" } else { "agent" };
        let vis = match i % 10 {
            7 | 8 => Visibility::Authorized("g1".into()),
            9 => Visibility::Local,
            _ => Visibility::Public,
        };
        (kind, vis)
    }
}
