//! Carries out a fault schedule against the running centers and their link
//! proxies, and records what it did and when (milliseconds since the test's
//! start) so the checks can judge writes against it: which centers were
//! isolated (every link in and out cut), paused or down. At the end it heals
//! everything. It never looks at records or at what the centers answer.

use super::cluster::Cluster;
use super::proxy::{Dir, Link};
use super::schedule::{Fault, OneWay, Schedule};
use anyhow::Result;
use std::time::{Duration, Instant};

/// Milliseconds since the test started.
#[derive(Clone, Copy, Debug)]
pub struct Clock(pub Instant);

impl Clock {
    pub fn ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

/// The links of a full mesh, one per ordered pair of centers.
pub struct Net {
    pub n: usize,
    pub links: Vec<Link>,
}

impl Net {
    /// Every link in and out of `c` is cut.
    fn isolated(&self, c: usize) -> bool {
        self.links
            .iter()
            .filter(|l| l.from == c || l.to == c)
            .all(|l| l.ctl.is_cut())
    }
}

/// What the nemesis did, in test milliseconds.
#[derive(Debug, Default)]
pub struct Timeline {
    /// `(center, from_ms, until_ms)`: every link of the center cut.
    pub isolated: Vec<(usize, u64, u64)>,
    /// `(center, from_ms, until_ms)`: SIGSTOPped.
    pub paused: Vec<(usize, u64, u64)>,
    /// `(center, killed_ms, restarted_ms)`; killed_ms is taken before the kill.
    pub down: Vec<(usize, u64, u64)>,
    /// `(from_ms, until_ms, description)` of every fault carried out.
    pub faults: Vec<(u64, u64, String)>,
    /// Each action as it was carried out.
    pub log: Vec<String>,
    isolated_since: Vec<Option<u64>>,
}

impl Timeline {
    /// Notes isolation changes made by a switch between `before` and
    /// `after`: an isolation counts from `after` and until `before` (the
    /// windows are never wider than the truth).
    fn note_isolation(&mut self, net: &Net, before: u64, after: u64) {
        self.isolated_since.resize(net.n, None);
        for c in 0..net.n {
            match (self.isolated_since[c], net.isolated(c)) {
                (None, true) => self.isolated_since[c] = Some(after),
                (Some(from), false) => {
                    self.isolated.push((c, from, before));
                    self.isolated_since[c] = None;
                }
                _ => {}
            }
        }
    }
}

fn in_mask(mask: u32, c: usize) -> bool {
    mask >> c & 1 == 1
}

/// Turns one network fault on or off.
fn switch(net: &Net, fault: &Fault, on: bool) {
    for l in &net.links {
        let (a, b) = (l.from, l.to);
        match fault {
            Fault::Split { side } if in_mask(*side, a) != in_mask(*side, b) => l.ctl.cut(on),
            Fault::OneWay { from, how: OneWay::Cut } if in_mask(*from, a) && !in_mask(*from, b) => l.ctl.cut(on),
            Fault::OneWay {
                from,
                how: OneWay::Freeze,
            } => {
                if in_mask(*from, a) && !in_mask(*from, b) {
                    l.ctl.freeze(Dir::Fwd, on);
                } else if !in_mask(*from, a) && in_mask(*from, b) {
                    l.ctl.freeze(Dir::Back, on);
                }
            }
            Fault::Freeze { from, to, fwd, back } if (a, b) == (*from, *to) => {
                if *fwd {
                    l.ctl.freeze(Dir::Fwd, on);
                }
                if *back {
                    l.ctl.freeze(Dir::Back, on);
                }
            }
            Fault::Delay { from, to, ms } if (a, b) == (*from, *to) => l.ctl.delay(*ms, on),
            Fault::Drop { from, to } if (a, b) == (*from, *to) && on => l.ctl.drop_open(),
            _ => {}
        }
    }
}

/// Runs `schedule` from `clock.ms() == start_ms`, then heals everything.
pub async fn run(
    schedule: &Schedule,
    cluster: &mut Cluster,
    net: &Net,
    clock: Clock,
    start_ms: u64,
) -> Result<Timeline> {
    let mut tl = Timeline::default();
    // (time, is_begin, fault index); heals sort before faults at one time.
    let mut actions: Vec<(u64, bool, usize)> = Vec::new();
    for (i, p) in schedule.faults.iter().enumerate() {
        actions.push((start_ms + p.at_ms, true, i));
        if !matches!(p.fault, Fault::Drop { .. }) {
            actions.push((start_ms + p.at_ms + p.len_ms, false, i));
        }
    }
    actions.sort();
    let mut began = vec![0u64; schedule.faults.len()];
    for (at, begin, i) in actions {
        loop {
            let now = clock.ms();
            tokio::task::block_in_place(|| cluster.reap(now))?;
            if now >= at {
                break;
            }
            tokio::time::sleep(Duration::from_millis((at - now).min(100))).await;
        }
        let fault = &schedule.faults[i].fault;
        let now = clock.ms();
        tl.log.push(format!(
            "{now:>6} ms  {} {}",
            if begin { "fault" } else { "heal " },
            fault.describe(schedule.n)
        ));
        match fault {
            Fault::Kill { c } if begin => {
                began[i] = now;
                tokio::task::block_in_place(|| cluster.kill9(*c));
            }
            Fault::Kill { c } => {
                tokio::task::block_in_place(|| cluster.start(*c))?;
                tl.down.push((*c, began[i], clock.ms()));
            }
            Fault::Pause { c } if begin => {
                cluster.pause(*c);
                began[i] = now;
            }
            Fault::Pause { c } => {
                cluster.resume(*c);
                tl.paused.push((*c, began[i], clock.ms()));
            }
            f => switch(net, f, begin),
        }
        tl.note_isolation(net, now, clock.ms());
        if begin {
            began[i] = now;
            if matches!(fault, Fault::Drop { .. }) {
                tl.faults.push((now, now, fault.describe(schedule.n)));
            }
        } else {
            tl.faults.push((began[i], clock.ms(), fault.describe(schedule.n)));
        }
    }
    // The fault phase lasts its whole length even if the faults end early.
    let end = start_ms + schedule.faults_ms;
    while clock.ms() < end {
        tokio::task::block_in_place(|| cluster.reap(clock.ms()))?;
        tokio::time::sleep(Duration::from_millis((end - clock.ms().min(end)).min(100))).await;
    }
    heal(cluster, net, clock, &mut tl)?;
    Ok(tl)
}

/// Every link open, every center running.
fn heal(cluster: &mut Cluster, net: &Net, clock: Clock, tl: &mut Timeline) -> Result<()> {
    let before = clock.ms();
    for l in &net.links {
        l.ctl.heal_all();
    }
    tl.note_isolation(net, before, clock.ms());
    tokio::task::block_in_place(|| cluster.heal())?;
    tl.log.push(format!("{:>6} ms  healed everything", clock.ms()));
    Ok(())
}
