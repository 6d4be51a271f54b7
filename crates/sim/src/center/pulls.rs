//! A simulated center's anti-entropy (the node's `peer/mesh/pulls.rs`): an
//! executor of part `regmesh_proto::mesh::pulls` on virtual time. It feeds
//! the part what beats decide (a pull, a repair), page answers and page
//! timeouts, executes its commands (send a page call and arm its timeout,
//! merge, drop, raise a mark) and feeds their results back; it serves
//! peers' pulls with `serve_page`, and computes the digests beats carry.
//! Must never decide what to pull, what a page covers or what a resync
//! drops (the part does); full sync is not modelled (crate docs).

use super::{Center, Change, Out, Timer};
use crate::msg::{Msg, RECORD_WIRE_BYTES};
use regmesh_core::Record;
use regmesh_proto::digest::{element, SetDigest};
use regmesh_proto::mesh::pulls::{self as part, Command, Replica};
use regmesh_proto::policy::{class_of, ExportPolicy};
use regmesh_proto::sync::{self as ae, Marks};
use regmesh_proto::wire::pull::{PullPage, PullRequest};
use std::collections::{BTreeMap, VecDeque};

/// How far past the truth a lying center's pages claim to cover.
pub const LIE_AHEAD_SEQS: u64 = 1000;

/// The part's view of a simulated center's store and marks.
struct View<'a> {
    me: &'a str,
    own_seq: u64,
    marks: &'a Marks,
    store: &'a super::Store,
}

impl Replica for View<'_> {
    fn mark(&self, origin: &str) -> u64 {
        if origin == self.me {
            self.own_seq
        } else {
            self.marks.get(origin)
        }
    }
    fn purged_through(&self, origin: &str) -> u64 {
        self.store.purged.get(origin).copied().unwrap_or(0)
    }
    fn holds(&self, kind: &str, id: &str) -> bool {
        self.store.get(&(kind.to_string(), id.to_string())).is_some()
    }
    fn origin_live(&self, origin: &str) -> Vec<(String, String, u64)> {
        self.store.origin_live(origin)
    }
    fn still_sendable(&self, origin: &str, kind: &str, id: &str, seq: u64, policy: &ExportPolicy) -> bool {
        self.store
            .get(&(kind.to_string(), id.to_string()))
            .is_some_and(|r| r.seq == seq && !r.deleted && r.origin == origin && policy.allows(r, &[]))
    }
    fn knows_origin(&self, _origin: &str) -> bool {
        // Simulated centers know every key of the mesh.
        true
    }
}

/// The view of center `$c`, borrowing only the fields it reads (so the
/// part, another field, can be borrowed mutably beside it).
macro_rules! view {
    ($c:expr) => {
        View {
            me: &$c.id,
            own_seq: $c.own_seq,
            marks: &$c.marks,
            store: &$c.store,
        }
    };
}

/// An input to the part, fed with the view of the moment.
enum Input {
    Applied { call: u64 },
    Forgot { call: u64, dropped: u64 },
}

impl Center {
    /// Beats found peer slot `pi` ahead on `origin`: the part starts a pull
    /// unless one runs.
    pub(super) fn start_pull(&mut self, now: u64, pi: usize, origin: &str, out: &mut Vec<Out>) {
        let mut cmds = Vec::new();
        let view = view!(self);
        if self
            .pulls
            .on_start_pull(self.local(now), &self.peers[pi].id, origin, &view, &mut cmds)
        {
            self.stats.pulls += 1;
        }
        self.run_pulls(now, cmds, out);
    }

    /// Digests of `origin` differ from peer slot `pi`'s at equal marks: the
    /// part re-pulls it from seq 0 if its turn is due.
    pub(super) fn repair(&mut self, now: u64, pi: usize, origin: &str, out: &mut Vec<Out>) {
        let mut cmds = Vec::new();
        if self
            .pulls
            .on_repair(self.local(now), &self.peers[pi].id, origin, &mut cmds)
        {
            self.stats.pulls += 1;
            self.stats.repairs += 1;
        }
        self.run_pulls(now, cmds, out);
    }

    /// A page answer from peer slot `pi` to page call `call`.
    pub(super) fn on_pull_answer(
        &mut self,
        now: u64,
        pi: usize,
        call: u64,
        page: PullPage<Record>,
        out: &mut Vec<Out>,
    ) {
        let mut cmds = Vec::new();
        let view = view!(self);
        self.pulls
            .on_page(self.local(now), &self.peers[pi].id, call, page, &view, &mut cmds);
        self.run_pulls(now, cmds, out);
    }

    /// The timeout of page call `call` fired (a call answered is untouched).
    pub(super) fn on_pull_timeout(&mut self, now: u64, call: u64, out: &mut Vec<Out>) {
        let mut cmds = Vec::new();
        let view = view!(self);
        self.pulls.on_page_timeout(self.local(now), call, &view, &mut cmds);
        self.run_pulls(now, cmds, out);
    }

    /// Executes the part's commands in order, feeding each result back.
    fn run_pulls(&mut self, now: u64, cmds: Vec<Command>, out: &mut Vec<Out>) {
        let mut queue: VecDeque<Command> = cmds.into();
        while let Some(cmd) = queue.pop_front() {
            let input = match cmd {
                Command::SendPull {
                    peer,
                    call,
                    request,
                    timeout_ms,
                } => {
                    if let Some(p) = self.peers.iter().find(|p| p.id == peer) {
                        out.push(Out::Send {
                            to: p.idx,
                            msg: Msg::PullReq { call, request },
                        });
                    }
                    out.push(Out::Timer {
                        at: now + timeout_ms,
                        timer: Timer::PullTimeout { call },
                    });
                    None
                }
                Command::Apply {
                    call,
                    origin,
                    records,
                    origin_said,
                    advance,
                } => {
                    // Applied (signed, in the node): their seqs and the
                    // origin's own word raise its ceiling, then the mark
                    // moves, bounded by it.
                    let max_seq = records.iter().map(|r| r.seq).max();
                    self.apply_remote(now, records);
                    for seq in max_seq.into_iter().chain(origin_said) {
                        self.ceilings.witness(&origin, seq);
                    }
                    if let Some((from, through)) = advance {
                        self.advance(&origin, from, through);
                    }
                    Some(Input::Applied { call })
                }
                Command::ResyncStarted { .. } => {
                    self.stats.resyncs += 1;
                    None
                }
                Command::Forget {
                    call,
                    origin,
                    drops,
                    purged_through,
                } => {
                    let mut dropped = 0;
                    for (k, i, _) in drops {
                        let key = (k, i);
                        if let Some(r) = self.store.remove(&key) {
                            dropped += 1;
                            self.stats.forgot += 1;
                            self.changes.push((key, Change::Forgot(r)));
                        }
                    }
                    self.store.raise_purged(&origin, purged_through);
                    Some(Input::Forgot { call, dropped })
                }
                Command::RaiseMark { origin, through } => {
                    let through = self.ceilings.bound(&origin, through);
                    self.marks.raise(&origin, through);
                    // The drops, purge mark and mark are durable together.
                    self.store.flush();
                    self.last_flush = now;
                    None
                }
                Command::PullDone { .. } => None,
                // Full sync is not modelled; nothing here asks for one.
                Command::AskFullSync { .. } | Command::PushFullSync { .. } | Command::AdoptMarks { .. } => None,
            };
            let Some(input) = input else { continue };
            let mut next = Vec::new();
            let local = self.local(now);
            let view = view!(self);
            match input {
                Input::Applied { call } => self.pulls.on_applied(local, call, true, &view, &mut next),
                Input::Forgot { call, dropped } => self.pulls.on_forgot(local, call, Some(dropped), &view, &mut next),
            }
            queue.extend(next);
        }
    }

    /// Serves a pull from peer slot `pi`: the page proto's `serve_page`
    /// makes of what the store holds.
    pub(super) fn serve_pull(&self, pi: usize, req: &PullRequest) -> PullPage<Record> {
        let policy = &self.peers[pi].policy;
        let read = |after, n| Ok::<_, std::convert::Infallible>(self.store.origin_after(&req.origin, after, n));
        let page = part::serve_page(
            req.after,
            req.limit,
            read,
            view!(self).mark(&req.origin),
            |r| policy.allows(r, &[]).then(|| (r.clone(), RECORD_WIRE_BYTES as usize)),
            view!(self).purged_through(&req.origin),
            policy,
        );
        let mut page = match page {
            Ok(p) => p,
            Err(never) => match never {},
        };
        let puller = self.peers[pi].idx;
        if self.lies_to.get(&puller).is_some_and(|o| o.contains(&req.origin)) && req.origin != self.id {
            // The fault: claim to speak for far more than we hold.
            page.covered_through += LIE_AHEAD_SEQS;
            page.more = false;
        }
        page
    }

    /// Digests of `origin`'s versions, tombstones included, per (kind,
    /// visibility class), as the node's index keeps them.
    pub(super) fn class_digests(&self, origin: &str) -> BTreeMap<String, SetDigest> {
        let mut out: BTreeMap<String, SetDigest> = BTreeMap::new();
        for (_, key) in self
            .store
            .by_seq
            .range((origin.to_string(), 0)..)
            .take_while(|((o, _), _)| o == origin)
        {
            let Some(r) = self.store.get(key) else { continue };
            let Some(class) = class_of([&r.visibility]) else {
                continue;
            };
            let k = ae::digest_key(&r.kind, &class);
            let e = element(
                &r.kind,
                &r.id,
                &r.origin,
                r.version.wall_ms,
                r.version.logical,
                r.deleted,
            );
            out.entry(k).or_default().add(&e);
        }
        out
    }
}
