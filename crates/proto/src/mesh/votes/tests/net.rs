//! The test bench of part `votes`: helpers that build parts and
//! requests, and `Net`, a deterministic in-memory network of parts that
//! executes every command at once (persisting succeeds) and delivers
//! queued messages in FIFO or a seeded order. Must never decide anything
//! the part decides: it only carries commands.

use super::super::*;
use crate::tally::Quorum;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub(super) const T0: u64 = 1_000_000;
pub(super) const TIMEOUT_MS: u64 = 1000;

/// Records held by one center: (kind, id) → origin of the live ones, and
/// (kind, id) → version of any held (tombstones too).
#[derive(Default)]
pub(super) struct Held(
    pub(super) HashMap<(String, String), String>,
    pub(super) HashMap<(String, String), Hlc>,
);

impl Replica for Held {
    fn live_owner(&self, kind: &str, id: &str) -> Option<String> {
        self.0.get(&(kind.to_string(), id.to_string())).cloned()
    }

    fn version(&self, kind: &str, id: &str) -> Option<Hlc> {
        self.1.get(&(kind.to_string(), id.to_string())).copied()
    }
}

pub(super) fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

pub(super) fn part(me: &str, quorum: Quorum, members: &[&str]) -> Votes {
    Votes::new(me, Rule::new(quorum, names(members)), TIMEOUT_MS, Claims::default())
}

pub(super) fn request(id: &str, deadline_ms: Option<u64>) -> VoteRequest {
    VoteRequest {
        kind: "agent".into(),
        id: id.into(),
        deadline_ms,
    }
}

pub(super) fn incoming(from: &str, initiator: &str, counter: u64, deadline_ms: Option<u64>) -> Incoming {
    Incoming {
        from: from.into(),
        vote: VoteId::new(initiator, counter),
        reset: false,
        request: request("x", deadline_ms),
    }
}

pub(super) fn decided(out: &[Command]) -> Vec<(u64, Decision)> {
    out.iter()
        .filter_map(|c| match c {
            Command::Decided { counter, decision, .. } => Some((*counter, decision.clone())),
            _ => None,
        })
        .collect()
}

/// A deterministic network of parts: every command is executed at once
/// (persisting succeeds), messages queue until delivered; `pick` chooses
/// which queued message goes next (a seeded order, or FIFO).
pub(super) struct Net {
    pub(super) centers: BTreeMap<String, (Votes, Held)>,
    /// Centers that are down (their calls fail, nothing reaches them).
    pub(super) down: BTreeSet<String>,
    /// Links cut both ways (a split).
    pub(super) cut: BTreeSet<(String, String)>,
    /// Centers that look up but whose messages vanish (a frozen process).
    pub(super) frozen: BTreeSet<String>,
    pub(super) now_ms: u64,
    pub(super) queue: VecDeque<Msg>,
    pub(super) timers: Vec<(u64, String, VoteId)>,
    pub(super) decisions: Vec<(String, u64, Decision)>,
    pub(super) seed: u64,
}

#[derive(Debug)]
pub(super) enum Msg {
    Request {
        to: String,
        req: Incoming,
    },
    Answer {
        to: String,
        from: String,
        vote: VoteId,
        answer: Answer,
    },
    Persisted {
        at: String,
        promise: Promise,
    },
}

impl Net {
    pub(super) fn new(quorum: Quorum, members: &[&str]) -> Net {
        Net {
            centers: members
                .iter()
                .map(|m| (m.to_string(), (part(m, quorum, members), Held::default())))
                .collect(),
            down: BTreeSet::new(),
            cut: BTreeSet::new(),
            frozen: BTreeSet::new(),
            now_ms: T0,
            queue: VecDeque::new(),
            timers: Vec::new(),
            decisions: Vec::new(),
            seed: 0,
        }
    }

    pub(super) fn linked(&self, a: &str, b: &str) -> bool {
        !self.down.contains(a)
            && !self.down.contains(b)
            && !self.cut.contains(&(a.to_string(), b.to_string()))
            && !self.cut.contains(&(b.to_string(), a.to_string()))
    }

    /// `me`'s OPERATIONAL peers: those it is linked to.
    pub(super) fn targets(&self, me: &str) -> Vec<String> {
        self.centers
            .keys()
            .filter(|p| *p != me && self.linked(me, p))
            .cloned()
            .collect()
    }

    pub(super) fn create(&mut self, at: &str, id: &str) -> u64 {
        let targets = self.targets(at);
        let mut out = Vec::new();
        let (v, held) = self.centers.get_mut(at).unwrap();
        let counter = v.on_create(self.now_ms, ("agent", id), held, &targets, &mut out);
        self.execute(at, out);
        counter
    }

    pub(super) fn execute(&mut self, at: &str, out: Vec<Command>) {
        for c in out {
            match c {
                Command::SendRequest { peer, vote, request } if self.linked(at, &peer) => {
                    self.queue.push_back(Msg::Request {
                        to: peer,
                        req: Incoming {
                            from: at.to_string(),
                            vote,
                            reset: false,
                            request,
                        },
                    })
                }
                Command::SendRequest { peer, vote, .. } => {
                    let mut out = Vec::new();
                    self.centers
                        .get_mut(at)
                        .unwrap()
                        .0
                        .on_request_failed(&peer, &vote, &mut out);
                    self.execute(at, out);
                }
                Command::SendAnswer { peer, vote, answer } => {
                    if self.linked(at, &peer) {
                        self.queue.push_back(Msg::Answer {
                            to: peer,
                            from: at.to_string(),
                            vote,
                            answer,
                        })
                    }
                }
                Command::Persist { promise } => self.queue.push_back(Msg::Persisted {
                    at: at.to_string(),
                    promise,
                }),
                Command::Schedule { at_ms, vote } => self.timers.push((at_ms, at.to_string(), vote)),
                Command::Decided {
                    counter,
                    kind,
                    id,
                    decision,
                    ..
                } => {
                    let (v, held) = self.centers.get_mut(at).unwrap();
                    if decision == Decision::Granted {
                        held.0.insert((kind.clone(), id.clone()), at.to_string());
                        v.on_written((&kind, &id), counter);
                    }
                    self.decisions.push((at.to_string(), counter, decision));
                }
            }
        }
    }

    pub(super) fn next_index(&mut self) -> usize {
        if self.seed == 0 {
            return 0;
        }
        self.seed = self
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.seed >> 33) % self.queue.len() as u64) as usize
    }

    /// Delivers one queued message; false when none is left.
    pub(super) fn step(&mut self) -> bool {
        if self.queue.is_empty() {
            return false;
        }
        let i = self.next_index();
        let msg = self.queue.remove(i).unwrap();
        if let Msg::Request { to, .. } | Msg::Answer { to, .. } = &msg {
            if self.frozen.contains(to) {
                return true;
            }
        }
        let mut out = Vec::new();
        let at = match msg {
            Msg::Request { to, req } => {
                let targets = self.targets(&to);
                let (v, held) = self.centers.get_mut(&to).unwrap();
                v.on_request(self.now_ms, req, true, held, &targets, &mut out)
                    .expect("deadlines in range");
                to
            }
            Msg::Answer { to, from, vote, answer } => {
                let (v, _) = self.centers.get_mut(&to).unwrap();
                v.on_answer(&from, &vote, answer, &mut out).expect("bounded");
                to
            }
            Msg::Persisted { at, promise } => {
                self.centers
                    .get_mut(&at)
                    .unwrap()
                    .0
                    .on_persisted(&promise, true, &mut out);
                at
            }
        };
        self.execute(&at, out);
        true
    }

    pub(super) fn run(&mut self) {
        while self.step() {}
    }

    /// Moves the clock to `to_ms`, firing due timers.
    pub(super) fn advance(&mut self, to_ms: u64) {
        self.now_ms = to_ms;
        let (due, later): (Vec<_>, Vec<_>) = self.timers.drain(..).partition(|(at, _, _)| *at <= to_ms);
        self.timers = later;
        for (_, at, vote) in due {
            let mut out = Vec::new();
            self.centers.get_mut(&at).unwrap().0.on_deadline(&vote, &mut out);
            self.execute(&at, out);
        }
    }

    pub(super) fn decision(&self, at: &str, counter: u64) -> Option<&Decision> {
        self.decisions
            .iter()
            .find(|(c, n, _)| c == at && *n == counter)
            .map(|(_, _, d)| d)
    }
}
