//! A seeded run: a fault schedule and a client workload drawn from one
//! seed, then a heal and the checks of [`crate::check`]. Faults: a link cut
//! both ways or one way, a link frozen (bytes held), a center cut off
//! (every link of it cut), a center paused (SIGSTOP: no task or timer of
//! it runs) and continued one phase later, a power loss (a kill that
//! loses what was not made durable) with a restart one phase later, a heal
//! of everything. Clients create, update and delete a small pool of ids at
//! random centers, one call at a time, so the history of each id is in
//! order.
//!
//! Must never: draw anything from a source other than the seed.

use crate::check::{self, Write};
use crate::world::{World, WorldConfig};
use hyper::Method;
use serde_json::json;

/// splitmix64: small, seedable, enough for a schedule.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_5eed_5eed_5eed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The shape of a seeded run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub centers: usize,
    /// Fault phases before the heal.
    pub phases: usize,
    pub phase_ms: u64,
    /// Client calls per phase.
    pub writes_per_phase: usize,
    /// Ids the clients share.
    pub ids: usize,
    /// Longest wait for convergence after the heal.
    pub converge_ms: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            centers: 3,
            phases: 8,
            phase_ms: 1500,
            writes_per_phase: 4,
            ids: 8,
            converge_ms: 60_000,
        }
    }
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub faults: Vec<String>,
    pub writes: usize,
    pub acked: usize,
    pub sim_ms: u64,
    /// What the run did, for replay.
    pub trace: crate::trace::Trace,
}

/// Runs seed `seed`; the first broken invariant is the error.
pub fn run(seed: u64, rc: &RunConfig) -> Result<Summary, String> {
    let mut rng = Rng::new(seed);
    let mut w = World::new(WorldConfig {
        centers: rc.centers,
        seed,
        ..WorldConfig::default()
    });
    let ids = w.ids.clone();
    w.run_until(10_000, |w| {
        ids.iter().all(|a| {
            ids.iter()
                .all(|b| a == b || w.peer_state(a, b).as_deref() == Some("OPERATIONAL"))
        })
    });
    let mut sum = Summary::default();
    let mut history: Vec<Write> = Vec::new();
    let mut down: Option<String> = None;
    let mut stopped: Option<String> = None;
    for _ in 0..rc.phases {
        if let Some(c) = down.take() {
            w.restart(&c);
            sum.faults.push(format!("restart {c}"));
        }
        if let Some(c) = stopped.take() {
            w.resume(&c);
            sum.faults.push(format!("resume {c}"));
        }
        let pick = |rng: &mut Rng| ids[rng.below(ids.len() as u64) as usize].clone();
        let (a, mut b) = (pick(&mut rng), pick(&mut rng));
        if a == b {
            b = ids[(ids.iter().position(|x| *x == a).unwrap() + 1) % ids.len()].clone();
        }
        let fault = match rng.below(8) {
            0 => {
                w.partition(&a, &b);
                format!("cut {a}-{b}")
            }
            1 => {
                w.partition_oneway(&a, &b);
                format!("cut {a}->{b}")
            }
            2 => {
                w.hold(&a, &b);
                format!("freeze {a}-{b}")
            }
            3 => {
                for o in ids.iter().filter(|o| **o != a) {
                    w.partition(&a, o);
                }
                format!("isolate {a}")
            }
            4 => {
                w.pause(&a);
                stopped = Some(a.clone());
                format!("pause {a}")
            }
            5 => {
                // A power loss: the restart finds only what was made
                // durable (a process kill keeps more, so this covers it).
                w.power_loss(&a);
                down = Some(a.clone());
                format!("power loss {a}")
            }
            6 => {
                w.heal_all();
                "heal".to_string()
            }
            _ => "none".to_string(),
        };
        sum.faults.push(fault);
        let phase_end = w.now_ms() + rc.phase_ms;
        let gap = rc.phase_ms / (rc.writes_per_phase as u64 + 1);
        for _ in 0..rc.writes_per_phase {
            w.run_for(rng.below(gap + 1));
            let at = pick(&mut rng);
            let id = format!("r{}", rng.below(rc.ids as u64));
            let wr = if rng.below(4) == 0 {
                let r = w.call(&at, Method::DELETE, &format!("/v1/agents/{id}"), None);
                written(&at, &id, None, r)
            } else {
                let addr = format!("2001:db8::{:x}", rng.below(0xffff));
                let body = json!({
                    "addresses": [addr],
                    "endpoints": [{"url": "https://agents.example.com/a2a", "protocol": "a2a"}],
                    "status": "online",
                });
                let r = w.call(&at, Method::PUT, &format!("/v1/agents/{id}"), Some(body));
                written(&at, &id, Some(&addr), r)
            };
            history.push(wr);
        }
        let left = phase_end.saturating_sub(w.now_ms());
        w.run_for(left);
    }
    if let Some(c) = down.take() {
        w.restart(&c);
        sum.faults.push(format!("restart {c}"));
    }
    if let Some(c) = stopped.take() {
        w.resume(&c);
        sum.faults.push(format!("resume {c}"));
    }
    w.heal_all();
    sum.faults.push("heal".into());
    let ok = w.run_until(rc.converge_ms, |w| check::converged(w).is_ok());
    sum.writes = history.len();
    sum.acked = history
        .iter()
        .filter(|h| h.status.is_some_and(|s| (200..300).contains(&s)))
        .count();
    sum.sim_ms = w.now_ms();
    let mut trace = std::mem::take(&mut w.trace);
    trace.end(&w);
    sum.trace = trace;
    let ctx = |e: String| format!("seed {seed}: {e}; faults {:?}", sum.faults);
    if !ok {
        return Err(ctx(check::converged(&w).unwrap_err()));
    }
    check::no_acked_write_lost(&w, &history).map_err(ctx)?;
    check::one_creator(&history).map_err(ctx)?;
    Ok(sum)
}

fn written(at: &str, id: &str, addr: Option<&str>, r: Result<regmesh_node::client::Reply, String>) -> Write {
    Write {
        at: at.into(),
        id: id.into(),
        addr: addr.map(str::to_string),
        status: r.ok().map(|r| r.status.as_u16()),
    }
}
