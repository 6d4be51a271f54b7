//! The executor of `regmesh_proto::mesh::votes` in a simulated center (as
//! the node's `peer/mesh/votes.rs` is in the node): it feeds the part its
//! inputs on virtual time — a client create, a vote request, answer or
//! refusal from a peer, a deadline timer — and turns its commands into
//! messages, timers and notes. A promise is durable as soon as it is given
//! (the store model keeps claims across a crash, as the node's claims log
//! does), so `Persist` completes at once.
//!
//! Must never decide anything about a vote (all the part's); the only
//! choices here are the client API's: a create of an id held live here is
//! refused before any vote, and a granted create is written only while the
//! center accepts updates and the id did not arrive meanwhile.

use super::{body, Center, Note, Out, OwnCreate, Store, Timer};
use crate::msg::{Key, Msg};
use regmesh_core::{Hlc, Visibility};
use regmesh_proto::mesh::votes::{Command, Incoming, Replica, VoteId};
use regmesh_proto::tally::{Answer, Decision};
use regmesh_proto::wire::vote::VoteRequest;
use std::collections::VecDeque;

/// The store model as the part sees it: a tombstone owns nothing.
struct Held<'a>(&'a Store);

impl Replica for Held<'_> {
    fn live_owner(&self, kind: &str, id: &str) -> Option<String> {
        self.0
            .get(&(kind.to_string(), id.to_string()))
            .filter(|r| !r.deleted)
            .map(|r| r.origin.clone())
    }

    fn version(&self, kind: &str, id: &str) -> Option<Hlc> {
        self.0.get(&(kind.to_string(), id.to_string())).map(|r| r.version)
    }
}

impl Center {
    /// OPERATIONAL peers' ids (the part's targets).
    fn vote_targets(&self) -> Vec<String> {
        self.peers
            .iter()
            .filter(|p| p.life.receives_propagation())
            .map(|p| p.id.clone())
            .collect()
    }

    fn peer_idx(&self, id: &str) -> Option<usize> {
        self.peers.iter().find(|p| p.id == id).map(|p| p.idx)
    }

    pub(super) fn create(&mut self, now: u64, key: Key, visibility: Visibility, out: &mut Vec<Out>) {
        if self.live_owner(&key).is_some() {
            out.push(Out::Note(Note::Refused {
                key,
                why: "exists".into(),
            }));
            return;
        }
        let local = self.local(now);
        let targets = self.vote_targets();
        let mut cmds = Vec::new();
        let counter = self
            .votes
            .on_create(local, (&key.0, &key.1), &Held(&self.store), &targets, &mut cmds);
        // The vote ran (its own claim taken) unless it ended at once unwon.
        let ran = cmds.iter().any(|c| {
            matches!(
                c,
                Command::SendRequest { .. }
                    | Command::Decided {
                        decision: Decision::Granted,
                        ..
                    }
            )
        });
        if ran {
            out.push(Out::Note(Note::VotedYes {
                initiator: self.id.clone(),
                counter,
                key: key.clone(),
            }));
        }
        self.own_creates.insert(
            counter,
            OwnCreate {
                key,
                visibility,
                started: now,
            },
        );
        self.run_votes(now, cmds, out);
    }

    pub(super) fn on_vote_req(
        &mut self,
        now: u64,
        from: usize,
        vote: VoteId,
        request: VoteRequest,
        out: &mut Vec<Out>,
    ) {
        let Some(sender) = self.peers.iter().find(|p| p.idx == from).map(|p| p.id.clone()) else {
            return;
        };
        let local = self.local(now);
        let accepting = self.state.accepts_updates();
        let targets = self.vote_targets();
        let mut cmds = Vec::new();
        let req = Incoming {
            from: sender,
            vote: vote.clone(),
            reset: false,
            request,
        };
        if self
            .votes
            .on_request(local, req, accepting, &Held(&self.store), &targets, &mut cmds)
            .is_err()
        {
            // The node answers 400; the sender counts it as naming nobody.
            out.push(Out::Send {
                to: from,
                msg: Msg::VoteRefused { vote },
            });
            return;
        }
        self.run_votes(now, cmds, out);
    }

    pub(super) fn on_vote_refused(&mut self, now: u64, from: usize, vote: VoteId, out: &mut Vec<Out>) {
        let Some(peer) = self.peers.iter().find(|p| p.idx == from).map(|p| p.id.clone()) else {
            return;
        };
        let mut cmds = Vec::new();
        self.votes.on_request_failed(&peer, &vote, &mut cmds);
        self.run_votes(now, cmds, out);
    }

    pub(super) fn on_vote_answer(&mut self, now: u64, from: usize, vote: VoteId, answer: Answer, out: &mut Vec<Out>) {
        let Some(peer) = self.peers.iter().find(|p| p.idx == from).map(|p| p.id.clone()) else {
            return;
        };
        let mut cmds = Vec::new();
        // One naming too many centers is refused (the node answers 400).
        if self.votes.on_answer(&peer, &vote, answer, &mut cmds).is_ok() {
            self.run_votes(now, cmds, out);
        }
    }

    pub(super) fn on_vote_deadline(&mut self, now: u64, vote: VoteId, out: &mut Vec<Out>) {
        let mut cmds = Vec::new();
        self.votes.on_deadline(&vote, &mut cmds);
        self.run_votes(now, cmds, out);
    }

    /// Carries out the part's commands, and those their results bring.
    fn run_votes(&mut self, now: u64, cmds: Vec<Command>, out: &mut Vec<Out>) {
        let mut todo: VecDeque<Command> = cmds.into();
        while let Some(c) = todo.pop_front() {
            match c {
                Command::SendRequest { peer, vote, request } => {
                    if let Some(to) = self.peer_idx(&peer) {
                        out.push(Out::Send {
                            to,
                            msg: Msg::VoteReq { vote, request },
                        });
                    }
                }
                Command::SendAnswer { peer, vote, answer } => {
                    if let Some(to) = self.peer_idx(&peer) {
                        out.push(Out::Send {
                            to,
                            msg: Msg::VoteAnswer { vote, answer },
                        });
                    }
                }
                Command::Persist { promise } => {
                    out.push(Out::Note(Note::VotedYes {
                        initiator: promise.initiator.clone(),
                        counter: promise.counter,
                        key: (promise.kind.clone(), promise.id.clone()),
                    }));
                    let mut more = Vec::new();
                    self.votes.on_persisted(&promise, true, &mut more);
                    todo.extend(more);
                }
                Command::Schedule { at_ms, vote } => out.push(Out::Timer {
                    at: self.global(at_ms).max(now + 1),
                    timer: Timer::VoteDeadline { vote },
                }),
                Command::Decided {
                    counter,
                    kind,
                    id,
                    decision,
                    hlc,
                } => self.vote_decided(now, counter, (kind, id), (decision, hlc), out),
            }
        }
    }

    /// `hlc`: the highest version of the id a counted voter held.
    fn vote_decided(
        &mut self,
        now: u64,
        counter: u64,
        (kind, id): Key,
        (decision, hlc): (Decision, Option<Hlc>),
        out: &mut Vec<Out>,
    ) {
        let Some(c) = self.own_creates.remove(&counter) else {
            return;
        };
        let refuse = |out: &mut Vec<Out>, why: String| {
            out.push(Out::Note(Note::Refused {
                key: c.key.clone(),
                why,
            }))
        };
        match decision {
            Decision::Granted => {
                // Stamped above every version a voter held (as the node).
                let above = hlc.is_none_or(|h| self.hlc.observe(h, self.local(now)).is_ok());
                if above && self.state.accepts_updates() && self.live_owner(&c.key).is_none() {
                    let exp = Some(self.local(now) + self.settings.lease_ms);
                    self.write_own(now, &kind, &id, body(1, true), exp, c.visibility.clone(), false, out);
                    out.push(Out::Note(Note::Granted {
                        key: c.key.clone(),
                        counter,
                        started: c.started,
                    }));
                } else {
                    refuse(
                        out,
                        "granted, but the id arrived meanwhile, the center went inactive or a voter's version is too far ahead".into(),
                    );
                }
                // The write is durable (or failed): the record speaks now.
                self.votes.on_written((&kind, &id), counter);
            }
            Decision::Refused(why) | Decision::Undecided(why) => refuse(out, why),
        }
    }
}
