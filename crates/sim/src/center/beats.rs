//! A simulated center as the executor of proto's link part
//! (`regmesh_proto::mesh::link`, as the node's `peer/mesh/beats.rs`): its
//! timers on virtual time, HELLO and heartbeats as messages, the beats it
//! receives and the answers to its calls fed back, and its other commands
//! executed (pulls and repairs started here). Decisions — when to beat,
//! what a beat carries, lifecycles, node state, what to pull — are the link
//! part's. Must never apply records or raise a watermark (floods and pulls
//! do).
//!
//! A peer's word on its own origin (`OriginSpoke`) raises its ceiling, and
//! a mark found ahead of it is reset and pulled again, as in the node. Not
//! modelled: full syncs (a new center catches up by pulls), so
//! `RequestFullSync` is dropped.

use super::{Center, Out, Timer};
use crate::msg::Msg;
use regmesh_proto::digest::SetDigest;
use regmesh_proto::mesh::link::{Command, Link, Replica};
use regmesh_proto::version::{self, Versions};
use regmesh_proto::wire::hello::Hello;
use std::collections::{BTreeMap, HashMap};

impl Replica for Center {
    fn marks(&self) -> HashMap<String, u64> {
        self.all_marks()
    }

    fn mark(&self, origin: &str) -> u64 {
        Center::mark(self, origin)
    }

    fn class_digests(&self, origin: &str) -> BTreeMap<String, SetDigest> {
        Center::class_digests(self, origin)
    }

    fn pulls_idle(&self) -> bool {
        self.pulls.is_idle()
    }
}

impl Center {
    /// Runs `f` on the link part (this center as its replica), then
    /// executes what it emitted.
    pub(super) fn with_link<R>(
        &mut self,
        now: u64,
        out: &mut Vec<Out>,
        f: impl FnOnce(&mut Link, &Center, &mut Vec<Command>) -> R,
    ) -> R {
        let mut link = std::mem::take(&mut self.link);
        let mut cmds = Vec::new();
        let r = f(&mut link, self, &mut cmds);
        self.link = link;
        for c in cmds {
            self.execute(now, c, out);
        }
        r
    }

    fn execute(&mut self, now: u64, c: Command, out: &mut Vec<Out>) {
        match c {
            Command::SendHello { peer, call, .. } => out.push(Out::Send {
                to: self.peers[peer].idx,
                msg: Msg::Hello {
                    n: call,
                    body: Hello::new(&self.id, self.settings.interval_ms, Versions::BUILD),
                },
            }),
            Command::SendBeat { peer, call, beat, .. } => out.push(Out::Send {
                to: self.peers[peer].idx,
                msg: Msg::Beat { n: call, body: beat },
            }),
            Command::Schedule { timer, at_ms } => out.push(Out::Timer {
                at: self.global(at_ms),
                timer: Timer::Link(timer),
            }),
            Command::LifecycleChanged { peer, .. } => {
                self.peers[peer].life = self.link.peer(peer).lifecycle().clone();
            }
            Command::NodeStateChanged { to, .. } => self.state = to,
            Command::StartPull { peer, origin } => {
                self.start_pull(now, peer, &origin, out);
            }
            Command::Repair { peer, origin } => self.repair(now, peer, &origin, out),
            Command::OriginSpoke { peer, seq } => self.origin_spoke(now, peer, seq, out),
            Command::RequestFullSync { .. } => {}
        }
    }

    /// Peer slot `pi` said in its own beat that it reached seq `own` of its
    /// own origin: its ceiling rises, and a mark of ours ahead of it (only a
    /// false claim could have put it there) is reset and pulled again.
    fn origin_spoke(&mut self, now: u64, pi: usize, own: u64, out: &mut Vec<Out>) {
        let origin = self.peers[pi].id.clone();
        self.ceilings.witness(&origin, own);
        if self.ceilings.exceeded_by(&origin, self.mark(&origin)) && self.marks.reset(&origin) {
            self.link.on_mark_reset(pi);
            self.start_pull(now, pi, &origin, out);
        }
    }

    /// Re-judges every peer's lifecycle now (the link part's judge timer
    /// does too; the simulator also before checking the invariants).
    pub fn tick_lifecycles(&mut self, now: u64) {
        let local = self.local(now);
        let mut out = Vec::new();
        self.with_link(now, &mut out, |link, _, cmds| link.judge(local, cmds));
        debug_assert!(out.is_empty(), "judging only changes lifecycles");
    }

    /// HELLO, heartbeats and their answers from peer slot `pi`.
    pub(super) fn on_link_msg(&mut self, now: u64, pi: usize, msg: Msg, out: &mut Vec<Out>) {
        let local = self.local(now);
        let from = self.peers[pi].idx;
        match msg {
            Msg::Hello { n, body } => {
                let verdict = version::judge_hello(Versions::BUILD, &body, true);
                if verdict.is_ok() {
                    self.link.on_hello_received(pi);
                }
                out.push(Out::Send {
                    to: from,
                    msg: Msg::HelloOk {
                        n,
                        answer: version::hello_answer(&self.id, Versions::BUILD, &verdict),
                    },
                });
            }
            Msg::HelloOk { n, answer } => {
                let status = if answer.accepted { 200 } else { 409 };
                if version::conclude_hello(Versions::BUILD, status, &answer).is_ok() {
                    self.with_link(now, out, |link, r, cmds| link.on_hello_answered(local, pi, n, r, cmds));
                } else {
                    self.with_link(now, out, |link, r, cmds| link.on_call_failed(local, pi, n, r, cmds));
                }
            }
            Msg::Beat { n, body } => {
                let mut later = Vec::new();
                let answer = self.with_link(now, &mut later, |link, r, cmds| {
                    link.on_beat_received(local, pi, body, r, cmds)
                });
                out.push(Out::Send {
                    to: from,
                    msg: Msg::BeatOk { n, body: answer },
                });
                out.extend(later);
            }
            Msg::BeatOk { n, body } => {
                self.with_link(now, out, |link, r, cmds| {
                    link.on_beat_answered(local, pi, n, Some(body), r, cmds)
                });
            }
            _ => {}
        }
    }
}
