//! A simulated center's claims of new ids (the node's
//! `peer/mesh/votes.rs`): its own votes, its part in other centers' votes,
//! the claims it promises, and how tallies settle. Decisions are
//! `regmesh_proto::vote` and `regmesh_proto::tally`. Must never decide a
//! vote itself, or answer yes without keeping the promise durable.

use super::{body, Center, Collect, Note, Out, Timer, Upstream};
use crate::msg::{Key, Msg};
use regmesh_core::Visibility;
use regmesh_proto::constants::CLAIM_GRACE_MS;
use regmesh_proto::dedup::Seen;
use regmesh_proto::tally::{Answer, Decision, Tally};
use regmesh_proto::vote::{self, Arrival, Ballot};

impl Center {
    pub(super) fn create(&mut self, now: u64, key: Key, visibility: Visibility, out: &mut Vec<Out>) {
        let local = self.local(now);
        if self.live_owner(&key).is_some() {
            out.push(Out::Note(Note::Refused {
                key,
                why: "exists".into(),
            }));
            return;
        }
        self.last_vote_counter = (self.last_vote_counter + 1).max(local);
        let counter = self.last_vote_counter;
        let deadline = local + self.settings.vote_timeout_ms;
        self.prune_claims_if_full(local);
        let ballot = self.claims.claim_own(
            (&key.0, &key.1),
            &self.id,
            counter,
            deadline + CLAIM_GRACE_MS,
            None,
            local,
        );
        if !ballot.is_yes() {
            let why = format!("{:?}", ballot);
            out.push(Out::Note(Note::Refused { key, why }));
            return;
        }
        out.push(Out::Note(Note::VotedYes {
            initiator: self.id.clone(),
            counter,
            key: key.clone(),
        }));
        let upstream = Upstream::Client {
            key: key.clone(),
            started: now,
        };
        // Remember the visibility of the create in the key's collect entry.
        self.pending_vis.insert((self.id.clone(), counter), visibility);
        let own = ballot.answer(&self.id);
        self.collect(
            now,
            (self.id.clone(), counter),
            key,
            deadline,
            None,
            (upstream, own),
            out,
        );
    }

    /// Asks every OPERATIONAL peer but `except` to vote; answers `upstream`
    /// when every asked peer answered (or, at the initiator, the count
    /// decides) or the deadline passes.
    #[allow(clippy::too_many_arguments)]
    fn collect(
        &mut self,
        now: u64,
        vote_id: (String, u64),
        key: Key,
        deadline: u64,
        except: Option<usize>,
        (upstream, own): (Upstream, Answer),
        out: &mut Vec<Out>,
    ) {
        let targets: Vec<(usize, String)> = self
            .peers
            .iter()
            .filter(|p| Some(p.idx) != except && p.life.receives_propagation())
            .map(|p| (p.idx, p.id.clone()))
            .collect();
        if self.collecting.contains_key(&vote_id) {
            // Already collecting this vote here: this copy is a duplicate,
            // answered naming nobody.
            if let Upstream::Peer(to) = upstream {
                out.push(Out::Send {
                    to,
                    msg: Msg::VoteAnswer {
                        initiator: vote_id.0,
                        counter: vote_id.1,
                        answer: Answer::default(),
                    },
                });
            }
            return;
        }
        self.collecting.insert(
            vote_id.clone(),
            Collect {
                tally: Tally::new(own, targets.iter().map(|(_, id)| id.clone())),
                upstream,
            },
        );
        if self.settle(now, &vote_id, false, out) {
            return;
        }
        for (to, _) in targets {
            out.push(Out::Send {
                to,
                msg: Msg::VoteReq {
                    initiator: vote_id.0.clone(),
                    counter: vote_id.1,
                    key: key.clone(),
                    deadline_ms: vote::forwarded_deadline(deadline),
                },
            });
        }
        out.push(Out::Timer {
            at: self.global(deadline).max(now + 1),
            timer: Timer::VoteDeadline {
                initiator: vote_id.0,
                counter: vote_id.1,
            },
        });
    }

    /// Ends vote `vote_id` here if it can end (`expired`: its deadline
    /// passed): a relay answers upstream once every asked peer answered, the
    /// initiator once the count decides. Returns whether it ended.
    pub(super) fn settle(&mut self, now: u64, vote_id: &(String, u64), expired: bool, out: &mut Vec<Out>) -> bool {
        let Some(c) = self.collecting.get(vote_id) else {
            return false;
        };
        let complete = expired || c.tally.is_complete();
        match &c.upstream {
            Upstream::Peer(_) if !complete => false,
            Upstream::Peer(to) => {
                let to = *to;
                let c = self.collecting.remove(vote_id).expect("collecting");
                out.push(Out::Send {
                    to,
                    msg: Msg::VoteAnswer {
                        initiator: vote_id.0.clone(),
                        counter: vote_id.1,
                        answer: c.tally.got().clone(),
                    },
                });
                true
            }
            Upstream::Client { .. } => match self.rule.decide(c.tally.got(), complete) {
                Some(d) => {
                    self.vote_decided(now, vote_id.clone(), d, out);
                    true
                }
                None => false,
            },
        }
    }

    /// At the bound, drops what live records have settled (proto's rule).
    fn prune_claims_if_full(&mut self, local: u64) {
        if self.claims.is_full() {
            let store = &self.store;
            self.claims.prune(local, |kind, id| {
                store
                    .get(&(kind.to_string(), id.to_string()))
                    .filter(|r| !r.deleted)
                    .map(|r| r.origin.clone())
            });
        }
    }

    fn vote_decided(&mut self, now: u64, vote_id: (String, u64), decision: Decision, out: &mut Vec<Out>) {
        let Some(c) = self.collecting.remove(&vote_id) else {
            return;
        };
        let Upstream::Client { key, started } = c.upstream else {
            return;
        };
        let vis = self.pending_vis.remove(&vote_id).unwrap_or(Visibility::Public);
        let refuse = |out: &mut Vec<Out>, why: String| out.push(Out::Note(Note::Refused { key: key.clone(), why }));
        match decision {
            Decision::Granted if !self.claims.confirm((&key.0, &key.1), &self.id, vote_id.1) => {
                refuse(out, "gave way to an earlier claim".into())
            }
            Decision::Granted if self.state.accepts_updates() && self.live_owner(&key).is_none() => {
                let exp = Some(self.local(now) + self.settings.lease_ms);
                self.write_own(now, &key.0, &key.1, body(1, true), exp, vis, false, out);
                out.push(Out::Note(Note::Granted {
                    key: key.clone(),
                    counter: vote_id.1,
                    started,
                }));
            }
            Decision::Granted => refuse(
                out,
                "granted, but the id arrived meanwhile or the center went inactive".into(),
            ),
            Decision::Refused(why) | Decision::Undecided(why) => refuse(out, why),
        }
        // The write is durable (or failed): the record speaks now.
        self.claims.release((&key.0, &key.1), &self.id, vote_id.1);
    }

    pub(super) fn on_vote_req(
        &mut self,
        now: u64,
        from: usize,
        (initiator, counter): (String, u64),
        key: Key,
        deadline: u64,
        out: &mut Vec<Out>,
    ) {
        let local = self.local(now);
        let answer = |out: &mut Vec<Out>, answer: Answer| {
            out.push(Out::Send {
                to: from,
                msg: Msg::VoteAnswer {
                    initiator: initiator.clone(),
                    counter,
                    answer,
                },
            })
        };
        match vote::arrival(deadline, local) {
            // Malformed: a node refuses the call; nothing is answered.
            Err(_) => return,
            Ok(Arrival::Late) => return answer(out, Answer::default()),
            Ok(Arrival::InTime) => {}
        }
        let seen = if initiator == self.id {
            Seen::Duplicate
        } else {
            self.vote_windows
                .entry(initiator.clone())
                .or_default()
                .observe(counter, false)
        };
        if seen == Seen::Duplicate {
            // The first copy carries this node's real answer.
            return answer(out, Answer::default());
        }
        let owner = self.live_owner(&key);
        self.prune_claims_if_full(local);
        let ballot = self.claims.vote(
            (&key.0, &key.1),
            &initiator,
            counter,
            deadline + CLAIM_GRACE_MS,
            owner.as_deref(),
            local,
        );
        match &ballot {
            // The id is taken: no need to ask further.
            Ballot::Owned(_) => return answer(out, ballot.answer(&self.id)),
            Ballot::Yes { .. } => out.push(Out::Note(Note::VotedYes {
                initiator: initiator.clone(),
                counter,
                key: key.clone(),
            })),
            // A no still forwards: the centers behind this one count.
            Ballot::No(_) => {}
        }
        let own = ballot.answer(&self.id);
        self.collect(
            now,
            (initiator, counter),
            key,
            deadline,
            Some(from),
            (Upstream::Peer(from), own),
            out,
        );
    }
}
