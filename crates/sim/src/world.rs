//! The simulated world: centers, a faulty network, a workload, virtual time
//! and the invariants, all derived from one seed's [`Plan`] (`plan.rs`).
//!
//! A run is a **safety phase** (workload and faults; every invariant checked
//! after every step) then a **liveness phase** (faults healed, workload
//! stopped; the mesh must converge within a bound).

use crate::center::{Center, Change, ClientOp, Note, Out, Timer};
use crate::invariants::{self, Invariant, Step};
use crate::msg::{Key, Msg};
pub use crate::plan::{Clocks, Fault, Plan, BURST_WRITES};
use crate::rng::Rng;
use regmesh_core::Record;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

#[derive(Debug, Clone)]
enum Ev {
    Deliver {
        from: usize,
        to: usize,
        msg: Msg,
    },
    Timer {
        c: usize,
        epoch: u64,
        timer: Timer,
    },
    Workload,
    Client {
        c: usize,
        op: ClientOp,
    },
    Fault(Fault),
    /// The plan's burst begins.
    Burst,
}

/// What the oracle knows for certain: every acknowledged version.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub acked: BTreeMap<Key, Vec<Record>>,
    pub writes: u64,
    pub refused: u64,
    pub granted: u64,
}

impl History {
    /// Pairs of acknowledged versions of one id by two centers that carry
    /// one HLC.
    pub fn ties(&self) -> u64 {
        let mut n = 0;
        for vs in self.acked.values() {
            for (i, a) in vs.iter().enumerate() {
                n += vs[i + 1..]
                    .iter()
                    .filter(|b| b.version == a.version && b.origin != a.origin)
                    .count() as u64;
            }
        }
        n
    }
}

#[derive(Debug, Clone, Default)]
pub struct NetStats {
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub blocked: u64,
}

pub struct World {
    pub plan: Plan,
    pub now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Ev>,
    pub centers: Vec<Center>,
    blocked: HashMap<(usize, usize), u32>,
    loss: f64,
    dup: f64,
    net_rng: Rng,
    wl_rng: Rng,
    pub history: History,
    pub net: NetStats,
    invariants: Vec<Box<dyn Invariant>>,
    pub violation: Option<String>,
    pub healed: bool,
    pub steps: u64,
    /// Fault descriptions, for the report.
    pub log: Vec<String>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub violation: Option<String>,
    pub converged_after_ms: Option<u64>,
    pub steps: u64,
    pub writes: u64,
    pub granted: u64,
    pub refused: u64,
    pub centers: usize,
    pub net: NetStats,
    pub pulls: u64,
    pub resyncs: u64,
    pub purged: u64,
    pub forgot: u64,
    /// Acknowledged versions of one id by two centers with one HLC (ties
    /// the merge order breaks by origin).
    pub ties: u64,
}

impl World {
    pub fn new(plan: Plan) -> World {
        let n = plan.centers;
        let centers = (0..n)
            .map(|i| {
                let peers = plan
                    .links
                    .iter()
                    .filter_map(|&(a, b)| match (a == i, b == i) {
                        (true, _) => Some(b),
                        (_, true) => Some(a),
                        _ => None,
                    })
                    .map(|j| (j, Plan::center_id(j), plan.policies[&(i, j)].clone()))
                    .collect();
                let mut c = Center::new(i, Plan::center_id(i), plan.settings[i].clone(), peers);
                c.set_rule(plan.quorum, (0..n).map(Plan::center_id));
                c
            })
            .collect();
        let mut rng = Rng::new(plan.seed ^ 0x0005_EED0_F0E7);
        let mut w = World {
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            centers,
            blocked: HashMap::new(),
            loss: plan.loss,
            dup: plan.dup,
            net_rng: rng.fork(),
            wl_rng: rng.fork(),
            history: History::default(),
            net: NetStats::default(),
            invariants: invariants::all(),
            violation: None,
            healed: false,
            steps: 0,
            log: Vec::new(),
            plan,
        };
        for i in 0..n {
            let mut out = Vec::new();
            w.centers[i].start(0, &mut out);
            w.effects(i, out, &mut Vec::new(), &mut Vec::new());
        }
        w.push(500, Ev::Workload);
        if let Some((at, _, _)) = w.plan.burst {
            w.push(at, Ev::Burst);
        }
        for (at, f) in w.plan.faults.clone() {
            w.push(at, Ev::Fault(f));
        }
        w
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        self.net.sent += 1;
        if self.blocked.contains_key(&(from, to)) {
            self.net.blocked += 1;
            return;
        }
        if self.net_rng.chance(self.loss) {
            self.net.lost += 1;
            return;
        }
        let copies = if self.net_rng.chance(self.dup) {
            self.net.duplicated += 1;
            2
        } else {
            1
        };
        let (base, jitter) = self.plan.latency[&(from, to)];
        for _ in 0..copies {
            // Independent jitter per message: later sends may overtake.
            let at = self.now + base + self.net_rng.range(0, jitter);
            self.push(
                at,
                Ev::Deliver {
                    from,
                    to,
                    msg: msg.clone(),
                },
            );
        }
    }

    /// Carries out a center's effects; collects what the invariants see.
    fn effects(&mut self, c: usize, out: Vec<Out>, sent: &mut Vec<(usize, usize, Msg)>, notes: &mut Vec<Note>) {
        for o in out {
            match o {
                Out::Send { to, msg } => {
                    sent.push((c, to, msg.clone()));
                    self.send(c, to, msg);
                }
                Out::Timer { at, timer } => {
                    let epoch = self.centers[c].epoch;
                    self.push(at.max(self.now), Ev::Timer { c, epoch, timer });
                }
                Out::Note(n) => {
                    match &n {
                        Note::Acked(r) => {
                            self.history.writes += 1;
                            self.history
                                .acked
                                .entry((r.kind.clone(), r.id.clone()))
                                .or_default()
                                .push(r.clone());
                        }
                        Note::Refused { .. } => self.history.refused += 1,
                        Note::Granted { .. } => self.history.granted += 1,
                        Note::VotedYes { .. } => {}
                    }
                    notes.push(n);
                }
            }
        }
    }

    fn workload(&mut self) {
        if self.healed {
            return;
        }
        let n = self.plan.centers;
        let c = self.wl_rng.below(n as u64) as usize;
        let owned: Vec<Key> = self.centers[c]
            .store
            .current
            .values()
            .filter(|r| r.origin == self.centers[c].id && !r.deleted)
            .map(|r| (r.kind.clone(), r.id.clone()))
            .collect();
        // Ids only this center ever created (unless walking into the gaps).
        let single: Vec<Key> = owned
            .iter()
            .filter(|k| self.plan.known_gaps || self.history.acked[*k].iter().all(|v| v.origin == self.centers[c].id))
            .cloned()
            .collect();
        let roll = self.wl_rng.below(100);
        if owned.is_empty() || roll < 30 {
            let i = self.wl_rng.below(self.plan.ids as u64) as usize;
            let (kind, vis) = Plan::key_class(i);
            let key = (kind.to_string(), format!("a{i:02}"));
            self.push(
                self.now,
                Ev::Client {
                    c,
                    op: ClientOp::Create {
                        key: key.clone(),
                        visibility: vis.clone(),
                    },
                },
            );
            if self.wl_rng.chance(0.3) {
                // A concurrent claim of the same id elsewhere.
                // Half of them in the same millisecond.
                let other = self.wl_rng.below(n as u64) as usize;
                let at = self.now
                    + if self.wl_rng.chance(0.5) {
                        0
                    } else {
                        self.wl_rng.range(0, 40)
                    };
                self.push(
                    at,
                    Ev::Client {
                        c: other,
                        op: ClientOp::Create { key, visibility: vis },
                    },
                );
            }
        } else {
            let key = self.wl_rng.pick(&owned).clone();
            let op = match roll {
                30..=54 => ClientOp::Update { key },
                55..=69 if !single.is_empty() => ClientOp::Delete {
                    key: self.wl_rng.pick(&single).clone(),
                },
                55..=69 => ClientOp::Update { key },
                _ => ClientOp::Heartbeat { key },
            };
            match &op {
                ClientOp::Delete { key } if self.wl_rng.chance(0.4) => {
                    // Another center creates the id around the deletion:
                    // with tight clocks its create may carry the
                    // tombstone's very HLC.
                    // At a center that does not hold it live (one that
                    // does refuses at once).
                    let free: Vec<usize> = (0..n)
                        .filter(|i| self.centers[*i].store.get(key).is_none_or(|r| r.deleted))
                        .collect();
                    let other = if free.is_empty() {
                        self.wl_rng.below(n as u64) as usize
                    } else {
                        *self.wl_rng.pick(&free)
                    };
                    let at = self.now + self.wl_rng.range(0, 4);
                    let (_, vis) = Plan::key_class(key.1[1..].parse().unwrap_or(0));
                    self.push(
                        at,
                        Ev::Client {
                            c: other,
                            op: ClientOp::Create {
                                key: key.clone(),
                                visibility: vis,
                            },
                        },
                    );
                }
                ClientOp::Update { key } | ClientOp::Heartbeat { key } if self.wl_rng.chance(0.1) => {
                    // Two writes of one key in one millisecond: one wall
                    // clock, two logical counters.
                    let again = ClientOp::Update { key: key.clone() };
                    self.push(self.now, Ev::Client { c, op: again });
                }
                _ => {}
            }
            self.push(self.now, Ev::Client { c, op });
        }
        let gap = self.wl_rng.range(1, 2 * self.plan.op_gap_ms);
        self.push(self.now + gap, Ev::Workload);
    }

    /// The plan's burst: one own write after another (one per
    /// millisecond, a few in the same one) of the keys the center owns.
    fn burst(&mut self) {
        let Some((_, c, writes)) = self.plan.burst else { return };
        let owned: Vec<Key> = self.centers[c]
            .store
            .current
            .values()
            .filter(|r| r.origin == self.centers[c].id && !r.deleted)
            .map(|r| (r.kind.clone(), r.id.clone()))
            .collect();
        if owned.is_empty() {
            self.log.push(format!(
                "{} ms: no burst, {} owns nothing",
                self.now,
                Plan::center_id(c)
            ));
            return;
        }
        self.log.push(format!(
            "{} ms: burst of {writes} writes at {}",
            self.now,
            Plan::center_id(c)
        ));
        for i in 0..writes {
            let key = self.wl_rng.pick(&owned).clone();
            self.push(
                self.now + (i as u64) * 3 / 4,
                Ev::Client {
                    c,
                    op: ClientOp::Update { key },
                },
            );
        }
    }

    fn fault(&mut self, f: Fault) -> Option<usize> {
        match f {
            Fault::Block(links, what) => {
                self.log.push(format!("{} ms: {what} {links:?}", self.now));
                for l in links {
                    *self.blocked.entry(l).or_insert(0) += 1;
                }
                None
            }
            Fault::Unblock(links) => {
                for l in links {
                    if let Some(k) = self.blocked.get_mut(&l) {
                        *k -= 1;
                        if *k == 0 {
                            self.blocked.remove(&l);
                        }
                    }
                }
                None
            }
            Fault::Lie(c) | Fault::Honest(c) => {
                let lie = matches!(f, Fault::Lie(_));
                self.log.push(format!(
                    "{} ms: {} {}",
                    self.now,
                    Plan::center_id(c),
                    if lie { "lies" } else { "is honest again" }
                ));
                let lies_to = self.centers[c]
                    .peers
                    .iter()
                    .filter(|_| lie)
                    .map(|p| (p.idx, self.centers[p.idx].peers.iter().map(|q| q.id.clone()).collect()))
                    .collect();
                self.centers[c].lies_to = lies_to;
                None
            }
            Fault::Crash(c) => {
                if !self.centers[c].up {
                    return None;
                }
                self.log.push(format!("{} ms: crash {}", self.now, Plan::center_id(c)));
                for inv in &mut self.invariants {
                    inv.on_crash(&self.centers[c]);
                }
                self.centers[c].crash();
                None
            }
            Fault::Restart(c) => {
                if self.centers[c].up {
                    return None;
                }
                self.log
                    .push(format!("{} ms: restart {}", self.now, Plan::center_id(c)));
                let mut out = Vec::new();
                self.centers[c].restart(self.now, &mut out);
                let mut sent = Vec::new();
                let mut notes = Vec::new();
                self.effects(c, out, &mut sent, &mut notes);
                Some(c)
            }
        }
    }

    /// Ends the safety phase: every fault healed, the workload stopped.
    pub fn heal(&mut self) {
        self.healed = true;
        self.blocked.clear();
        self.loss = 0.0;
        self.dup = 0.0;
        for c in 0..self.centers.len() {
            if !self.centers[c].up {
                self.fault(Fault::Restart(c));
            }
        }
        self.log.push(format!("{} ms: healed", self.now));
    }

    /// Runs one event. Returns false when nothing is left before `until`.
    pub fn step(&mut self, until: u64) -> bool {
        let Some(Reverse((at, id))) = self.queue.peek().copied() else {
            return false;
        };
        if at > until {
            return false;
        }
        self.queue.pop();
        let ev = self.events.remove(&id).expect("event");
        self.now = at;
        self.steps += 1;
        let mut out = Vec::new();
        let mut sent = Vec::new();
        let mut notes = Vec::new();
        let mut delivered = None;
        let center = match ev {
            Ev::Deliver { from, to, msg } => {
                if !self.centers[to].up || self.blocked.contains_key(&(from, to)) {
                    self.net.lost += 1;
                    None
                } else {
                    self.net.delivered += 1;
                    for inv in &mut self.invariants {
                        inv.on_deliver(self.now, &self.centers[to], from, &msg);
                    }
                    delivered = Some((from, to));
                    self.centers[to].on_msg(at, from, msg, &mut out);
                    Some(to)
                }
            }
            Ev::Timer { c, epoch, timer } => {
                if self.centers[c].up && self.centers[c].epoch == epoch {
                    self.centers[c].on_timer(at, timer, &mut out);
                    Some(c)
                } else {
                    None
                }
            }
            Ev::Workload => {
                self.workload();
                None
            }
            Ev::Client { c, op } => {
                if self.centers[c].up && !self.healed {
                    self.centers[c].client(at, op, &mut out);
                    Some(c)
                } else {
                    None
                }
            }
            Ev::Fault(f) => self.fault(f),
            Ev::Burst => {
                self.burst();
                None
            }
        };
        let Some(c) = center else { return true };
        self.effects(c, out, &mut sent, &mut notes);
        self.centers[c].tick_lifecycles(at);
        let changes: Vec<(Key, Change)> = std::mem::take(&mut self.centers[c].changes);
        let step = Step {
            now: at,
            center: c,
            delivered,
            changes: &changes,
            sent: &sent,
            notes: &notes,
        };
        if self.violation.is_none() {
            for inv in &mut self.invariants {
                if let Err(e) = inv.after_step(&self.centers, &self.history, &step) {
                    self.violation = Some(format!("{}: {e} (at {at} ms, step {})", inv.name(), self.steps));
                    break;
                }
            }
        }
        true
    }

    /// The whole run: safety phase, heal, liveness phase.
    pub fn run(mut self) -> (Outcome, World) {
        let safety_end = self.plan.safety_ms;
        while self.violation.is_none() && self.step(safety_end) {}
        self.now = safety_end;
        self.heal();
        let bound = safety_end + self.plan.liveness_ms;
        let mut converged = None;
        let mut next_check = self.now + 250;
        while self.violation.is_none() {
            if !self.step(next_check.min(bound)) {
                self.now = next_check.min(bound);
                if invariants::convergence::differences(&self.centers, &self.history, 1).is_empty() {
                    converged = Some(self.now - safety_end);
                    break;
                }
                if self.now >= bound {
                    let d = invariants::convergence::differences(&self.centers, &self.history, 5);
                    self.violation = Some(format!(
                        "convergence: not converged {} ms after healing: {}",
                        self.plan.liveness_ms,
                        d.join("; ")
                    ));
                    break;
                }
                next_check += 250;
            }
        }
        if self.violation.is_none() {
            for inv in &mut self.invariants {
                if let Err(e) = inv.at_end(&self.centers, &self.history) {
                    self.violation = Some(format!("{}: {e} (at the end)", inv.name()));
                    break;
                }
            }
        }
        let sum = |f: fn(&Center) -> u64| self.centers.iter().map(f).sum::<u64>();
        let outcome = Outcome {
            seed: self.plan.seed,
            violation: self.violation.clone(),
            converged_after_ms: converged,
            steps: self.steps,
            writes: self.history.writes,
            granted: self.history.granted,
            refused: self.history.refused,
            centers: self.plan.centers,
            net: self.net.clone(),
            pulls: sum(|c| c.stats.pulls),
            resyncs: sum(|c| c.stats.resyncs),
            purged: sum(|c| c.stats.purged),
            forgot: sum(|c| c.stats.forgot),
            ties: self.history.ties(),
        };
        (outcome, self)
    }
}

/// Ids of the centers in `set`, for messages.
pub fn names(set: &HashSet<usize>) -> String {
    let mut v: Vec<String> = set.iter().map(|i| Plan::center_id(*i)).collect();
    v.sort();
    v.join(",")
}
