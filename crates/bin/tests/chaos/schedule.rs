//! The fault schedule: a list of faults with start and length, planned from
//! the seed alone (never from what happens while it runs), so a seed
//! reproduces its schedule exactly. Planning keeps at most two centers under
//! process faults (kill -9, SIGSTOP) at once and never two on one center,
//! and always cuts one center off alone for a while (unpaused, alive). It
//! owns the plan and how it prints; carrying it out is `nemesis`'s job.

use super::rng::Rng;
use std::fmt;

/// Length of the isolation every schedule of 10 s or more holds.
const ISOLATION_MS: u64 = 6000;

/// How a one-way split loses bytes from one side to the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OneWay {
    /// Calls from the one side to the other are refused and dropped.
    Cut,
    /// Bytes from the one side to the other are held (requests it sends,
    /// answers it gives); the other way flows.
    Freeze,
}

/// One fault. Centers are 0-based indexes; sides are bit masks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL, then a restart on the same data when the fault ends.
    Kill { c: usize },
    /// SIGSTOP, then SIGCONT when the fault ends.
    Pause { c: usize },
    /// Every link between `side` and the rest cut both ways.
    Split { side: u32 },
    /// Bytes from `from` to the rest lost, the other way not.
    OneWay { from: u32, how: OneWay },
    /// One link's bytes frozen: requests (`fwd`), answers (`back`) or both.
    Freeze {
        from: usize,
        to: usize,
        fwd: bool,
        back: bool,
    },
    /// One link delayed by `ms` per chunk.
    Delay { from: usize, to: usize, ms: u64 },
    /// One link's open connections dropped (at once; no length).
    Drop { from: usize, to: usize },
}

/// A fault at `at_ms` after the fault phase starts, healed `len_ms` later.
#[derive(Clone, Debug)]
pub struct Planned {
    pub at_ms: u64,
    pub len_ms: u64,
    pub fault: Fault,
}

/// The plan for one seed.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub seed: u64,
    pub n: usize,
    pub faults_ms: u64,
    pub tombstone_horizon_s: u64,
    pub faults: Vec<Planned>,
}

fn side_str(mask: u32, n: usize) -> String {
    let names = |want: bool| -> Vec<String> {
        (0..n)
            .filter(|i| (mask >> i & 1 == 1) == want)
            .map(|i| format!("c{}", i + 1))
            .collect()
    };
    format!("{{{}}}|{{{}}}", names(true).join(","), names(false).join(","))
}

impl Fault {
    pub fn describe(&self, n: usize) -> String {
        let c = |i: &usize| format!("c{}", i + 1);
        match self {
            Fault::Kill { c: i } => format!("kill -9 {} (restart on its data at the end)", c(i)),
            Fault::Pause { c: i } => format!("SIGSTOP {} (SIGCONT at the end)", c(i)),
            Fault::Split { side } => format!("two-way split {}", side_str(*side, n)),
            Fault::OneWay { from, how } => {
                format!(
                    "one-way split {} ({how:?}: left's bytes to right lost)",
                    side_str(*from, n)
                )
            }
            Fault::Freeze { from, to, fwd, back } => format!(
                "freeze {}->{} {}",
                c(from),
                c(to),
                match (fwd, back) {
                    (true, true) => "both ways",
                    (true, false) => "requests",
                    _ => "answers",
                }
            ),
            Fault::Delay { from, to, ms } => format!("delay {}->{} by {ms} ms per chunk", c(from), c(to)),
            Fault::Drop { from, to } => format!("drop open connections {}->{}", c(from), c(to)),
        }
    }

    /// The center a process fault holds.
    pub fn process_center(&self) -> Option<usize> {
        match self {
            Fault::Kill { c } | Fault::Pause { c } => Some(*c),
            _ => None,
        }
    }
}

impl Schedule {
    /// Plans `faults_ms` of faults for `n` centers from `seed`.
    pub fn plan(seed: u64, n: usize, faults_ms: u64) -> Schedule {
        let mut rng = Rng::new(seed).fork(1);
        let tombstone_horizon_s = [3, 8, 604_800][rng.below(3) as usize];
        let mut faults: Vec<Planned> = Vec::new();
        let mut t = rng.range(300, 1200);
        while t + 500 < faults_ms {
            let len_ms = rng.range(800, 7000).min(faults_ms - t);
            let pair = |rng: &mut Rng| {
                let from = rng.below(n as u64) as usize;
                let to = (from + 1 + rng.below(n as u64 - 1) as usize) % n;
                (from, to)
            };
            // Weights: kill, pause, split, one-way, freeze, delay, drop.
            let fault = match rng.weighted(&[14, 12, 16, 14, 18, 10, 8]) {
                0 => Fault::Kill {
                    c: rng.below(n as u64) as usize,
                },
                1 => Fault::Pause {
                    c: rng.below(n as u64) as usize,
                },
                2 => Fault::Split {
                    side: side(&mut rng, n),
                },
                3 => Fault::OneWay {
                    from: side(&mut rng, n),
                    how: if rng.chance(50) { OneWay::Cut } else { OneWay::Freeze },
                },
                4 => {
                    let (from, to) = pair(&mut rng);
                    let (fwd, back) = [(true, false), (false, true), (true, true)][rng.below(3) as usize];
                    Fault::Freeze { from, to, fwd, back }
                }
                5 => {
                    let (from, to) = pair(&mut rng);
                    Fault::Delay {
                        from,
                        to,
                        ms: rng.range(20, 400),
                    }
                }
                _ => {
                    let (from, to) = pair(&mut rng);
                    Fault::Drop { from, to }
                }
            };
            let clash = fault.process_center().is_some_and(|c| {
                let overlapping: Vec<&Planned> = faults
                    .iter()
                    .filter(|p| p.fault.process_center().is_some() && p.at_ms + p.len_ms > t)
                    .collect();
                overlapping.len() >= 2 || overlapping.iter().any(|p| p.fault.process_center() == Some(c))
            });
            if !clash {
                let len_ms = if matches!(fault, Fault::Drop { .. }) { 0 } else { len_ms };
                faults.push(Planned {
                    at_ms: t,
                    len_ms,
                    fault,
                });
            }
            t += rng.range(200, 1800);
        }
        // One center cut off alone for a while, unpaused and alive, so the
        // inactive-write check has a window to judge in every run.
        if faults_ms >= 10_000 {
            let c = rng.below(n as u64) as usize;
            let at_ms = faults_ms * rng.range(30, 55) / 100;
            let len_ms = ISOLATION_MS.min(faults_ms - at_ms);
            faults.retain(|p| {
                p.fault.process_center() != Some(c) || p.at_ms > at_ms + len_ms || p.at_ms + p.len_ms < at_ms
            });
            faults.push(Planned {
                at_ms,
                len_ms,
                fault: Fault::Split { side: 1 << c },
            });
            faults.sort_by_key(|p| p.at_ms);
        }
        Schedule {
            seed,
            n,
            faults_ms,
            tombstone_horizon_s,
            faults,
        }
    }
}

/// A proper non-empty subset of the centers, one or two of them (a single
/// center cut off both ways is isolated).
fn side(rng: &mut Rng, n: usize) -> u32 {
    let a = rng.below(n as u64);
    let mut mask = 1u32 << a;
    if rng.chance(45) {
        mask |= 1 << ((a + 1 + rng.below(n as u64 - 1)) % n as u64);
    }
    mask
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {} centers, {} faults over {} ms, tombstone_horizon_s = {}",
            self.seed,
            self.n,
            self.faults.len(),
            self.faults_ms,
            self.tombstone_horizon_s
        )?;
        for p in &self.faults {
            writeln!(
                f,
                "  t={:>6} ms  len={:>5} ms  {}",
                p.at_ms,
                p.len_ms,
                p.fault.describe(self.n)
            )?;
        }
        Ok(())
    }
}

#[test]
fn a_seed_plans_one_schedule() {
    let a = Schedule::plan(42, 5, 30_000);
    let b = Schedule::plan(42, 5, 30_000);
    assert_eq!(a.to_string(), b.to_string());
    assert!(a.faults.len() >= 10, "{a}");
    assert!(a.faults.iter().all(|p| p.at_ms + p.len_ms <= 30_000));
    assert_ne!(a.to_string(), Schedule::plan(43, 5, 30_000).to_string());
}
