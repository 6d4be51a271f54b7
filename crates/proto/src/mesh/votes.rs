//! Part `votes` of the mesh machine (see the module docs of `mesh`): the
//! claims of new ids (DRiP §5.5.1 as PROTOCOL.md, "Votes on new ids",
//! settles it) for one center — its own votes, its part in other centers'
//! votes (the convergecast), and when each ends.
//!
//! Inputs: a client create ([`Votes::on_create`]), a vote request from a
//! peer ([`Votes::on_request`]), a peer's answer or a failed call
//! ([`Votes::on_answer`], [`Votes::on_request_failed`]), a promise made
//! durable or not ([`Votes::on_persisted`]), a deadline timer
//! ([`Votes::on_deadline`]) and a granted create's write done
//! ([`Votes::on_written`]). Outputs: [`Command`]s.
//!
//! The rules strung together here: the initiator claims the id for itself
//! first, asks its OPERATIONAL peers with its deadline less
//! [`VOTE_MARGIN_MS`](crate::constants::VOTE_MARGIN_MS), and decides by
//! [`crate::tally::Rule`] as soon as the count allows, or at its deadline.
//! A hop votes once per vote ([`crate::dedup`] windows of vote counters),
//! only in time ([`crate::vote::arrival`]) and only while it accepts
//! updates; a copy it does not vote on is answered at once naming nobody.
//! A yes to another initiator is a promise held until the deadline plus
//! [`CLAIM_GRACE_MS`] and goes upstream only once it is durable
//! ([`Command::Persist`]); the hop forwards the request to its other peers
//! at once and answers upstream, once, with everything heard, when every
//! asked peer answered or at its deadline. Every answer names the highest
//! version of the id held under it ([`Replica::version`], tombstones too),
//! and the decision carries the highest counted, for the runtime to stamp
//! the create above it.
//!
//! Must never: send a yes before its promise is durable, answer one vote
//! twice upstream, decide before the count allows it, or hold more than
//! [`VOTES_COLLECTING_MAX`] votes or [`WINDOWS_MAX`] dedup windows.

use crate::constants::{CLAIM_GRACE_MS, VOTES_COLLECTING_MAX, VOTE_ANSWER_CENTERS_MAX, VOTE_DEADLINE_DEFAULT_MS};
use crate::dedup::{CounterWindow, Seen};
use crate::tally::{Answer, Decision, Rule, Tally, TooManyCenters};
use crate::vote::{self, Arrival, Ballot, Claims, DeadlineTooFar, Promise};
use crate::wire::vote::VoteRequest;
use regmesh_core::Hlc;
use std::collections::HashMap;

#[cfg(test)]
mod tests;

/// Initiators whose vote counters a center tracks at once (one window
/// each; initiators are configured centers, at most this many).
pub const WINDOWS_MAX: usize = VOTE_ANSWER_CENTERS_MAX;

/// One vote: its initiator and that initiator's vote counter
/// (`DRiP-Node-ID`, `DRiP-Node-Counter`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VoteId {
    pub initiator: String,
    pub counter: u64,
}

impl VoteId {
    pub fn new(initiator: &str, counter: u64) -> VoteId {
        VoteId {
            initiator: initiator.to_string(),
            counter,
        }
    }
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `POST /voting` to `peer`, naming `vote` in the headers; its failure
    /// (no 200) comes back as [`Votes::on_request_failed`].
    SendRequest {
        peer: String,
        vote: VoteId,
        request: VoteRequest,
    },
    /// Answer `vote` to `peer`, which asked us
    /// (`POST /votingphase/node/:me/response/:word`).
    SendAnswer { peer: String, vote: VoteId, answer: Answer },
    /// Put `promise` on disk, then call [`Votes::on_persisted`] with it.
    Persist { promise: Promise },
    /// Call [`Votes::on_deadline`] for `vote` once this center's clock
    /// reads `at_ms`.
    Schedule { at_ms: u64, vote: VoteId },
    /// This center's own vote `counter` on `kind/id` ended. On
    /// [`Decision::Granted`] the runtime writes the record, then calls
    /// [`Votes::on_written`]; on the others the claim is already dropped.
    /// `hlc`: the highest version of the id any counted center held; the
    /// runtime observes it into its clock before stamping the create, so
    /// the create wins the merge over each of them.
    Decided {
        counter: u64,
        kind: String,
        id: String,
        decision: Decision,
        hlc: Option<Hlc>,
    },
}

/// What the part asks of this center's replica.
pub trait Replica {
    /// The origin of the live record of `kind/id` held here, if any: a
    /// create of it is refused, a vote for another initiator is answered
    /// `"owner"`, and it settles expired claims and doubts of the id.
    fn live_owner(&self, kind: &str, id: &str) -> Option<String>;

    /// The version of `kind/id` held here, a tombstone included, if any:
    /// every answer of this center to a vote on the id names it.
    fn version(&self, kind: &str, id: &str) -> Option<Hlc>;
}

/// A vote request as it arrived from peer `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub from: String,
    pub vote: VoteId,
    /// `DRiP-Node-Counter-reset`.
    pub reset: bool,
    pub request: VoteRequest,
}

#[derive(Debug, Clone)]
enum Upstream {
    /// This center's own vote: decided here.
    Client,
    /// A relayed vote: answered to this peer.
    Peer(String),
}

#[derive(Debug, Clone)]
enum Own {
    /// This hop's vote, as it may be reported.
    Ready(Answer),
    /// A yes whose promise is not durable yet.
    Persisting(Answer),
}

/// How a collection ends.
enum End {
    Answer(String),
    Decide(Decision),
}

#[derive(Debug, Clone)]
struct Collecting {
    kind: String,
    id: String,
    upstream: Upstream,
    own: Own,
    /// The asked peers' answers.
    tally: Tally,
}

impl Collecting {
    /// Everything this hop may report so far.
    fn got(&self) -> Answer {
        let mut a = match &self.own {
            Own::Ready(a) => a.clone(),
            Own::Persisting(_) => Answer::default(),
        };
        a.merge(self.tally.got().clone());
        a
    }
}

/// The votes of one center. Bounded: [`VOTES_COLLECTING_MAX`] collections,
/// [`WINDOWS_MAX`] windows, the claims' own bound.
#[derive(Debug, Clone)]
pub struct Votes {
    me: String,
    rule: Rule,
    timeout_ms: u64,
    claims: Claims,
    windows: HashMap<String, CounterWindow>,
    collecting: HashMap<VoteId, Collecting>,
    last_counter: u64,
}

impl Votes {
    /// Center `me`, granting by `rule`, its own votes lasting `timeout_ms`,
    /// holding `claims` (restored from disk by the runtime).
    pub fn new(me: &str, rule: Rule, timeout_ms: u64, claims: Claims) -> Votes {
        Votes {
            me: me.to_string(),
            rule,
            timeout_ms,
            claims,
            windows: HashMap::new(),
            collecting: HashMap::new(),
            last_counter: 0,
        }
    }

    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// A peer joined at runtime: a member of the rule from now on (see
    /// [`Rule::add_member`]).
    pub fn add_member(&mut self, id: &str) -> bool {
        self.rule.add_member(id)
    }

    /// Grants by `rule` from now on (the simulator's plans choose it).
    pub fn set_rule(&mut self, rule: Rule) {
        self.rule = rule;
    }

    /// Every promise given to other initiators (for compacting the log).
    pub fn promises(&self) -> Vec<Promise> {
        self.claims.promises()
    }

    /// Claims and doubts held.
    pub fn claims_held(&self) -> usize {
        self.claims.len()
    }

    /// Votes being collected here.
    pub fn collecting(&self) -> usize {
        self.collecting.len()
    }

    /// A restart from durable state: promises to others stay, everything
    /// else (own votes, collections, dedup windows) ended with the crash.
    pub fn restarted(&mut self) {
        self.claims.forget_own();
        self.collecting.clear();
        self.windows.clear();
    }

    /// A client asks to create `kind/id` here, which `targets` (the
    /// OPERATIONAL peers) will be asked about. Returns the vote's counter;
    /// its end comes as [`Command::Decided`] with it (perhaps at once).
    pub fn on_create(
        &mut self,
        now_ms: u64,
        (kind, id): (&str, &str),
        replica: &impl Replica,
        targets: &[String],
        out: &mut Vec<Command>,
    ) -> u64 {
        // One per vote, at least the clock in milliseconds: increasing,
        // dense enough for the dedup window, and after a restart above
        // anything issued before unless votes outran the clock.
        self.last_counter = self.last_counter.saturating_add(1).max(now_ms);
        let counter = self.last_counter;
        let decided = |decision| Command::Decided {
            counter,
            kind: kind.to_string(),
            id: id.to_string(),
            decision,
            hlc: None,
        };
        if self.collecting.len() >= VOTES_COLLECTING_MAX {
            out.push(decided(Decision::Undecided(
                "too many votes running at this center".into(),
            )));
            return counter;
        }
        let deadline_ms = now_ms.saturating_add(self.timeout_ms);
        self.prune_if_full(now_ms, replica);
        let owner = replica.live_owner(kind, id);
        let ballot = self.claims.claim_own(
            (kind, id),
            &self.me,
            counter,
            deadline_ms.saturating_add(CLAIM_GRACE_MS),
            owner.as_deref(),
            now_ms,
        );
        match ballot {
            Ballot::Owned(o) => {
                out.push(decided(Decision::Refused(format!("owned by center {o}"))));
                return counter;
            }
            Ballot::No(why) => {
                out.push(decided(Decision::Refused(why)));
                return counter;
            }
            Ballot::Yes { .. } => {}
        }
        let vote = VoteId::new(&self.me, counter);
        let own = Own::Ready(ballot.answer(&self.me).holding(replica.version(kind, id)));
        self.start(vote, (kind, id), Upstream::Client, own, deadline_ms, targets, out);
        counter
    }

    /// A vote request arrived; `accepting` is whether this center accepts
    /// updates (node state), `targets` its OPERATIONAL peers. A deadline
    /// too far ahead is refused and changes nothing (the runtime answers
    /// 400, which the sender counts as naming nobody).
    pub fn on_request(
        &mut self,
        now_ms: u64,
        req: Incoming,
        accepting: bool,
        replica: &impl Replica,
        targets: &[String],
        out: &mut Vec<Command>,
    ) -> Result<(), DeadlineTooFar> {
        let deadline_ms = req
            .request
            .deadline_ms
            .unwrap_or(now_ms.saturating_add(VOTE_DEADLINE_DEFAULT_MS));
        let arrival = vote::arrival(deadline_ms, now_ms)?;
        let abstain = |out: &mut Vec<Command>| {
            out.push(Command::SendAnswer {
                peer: req.from.clone(),
                vote: req.vote.clone(),
                answer: Answer::default(),
            })
        };
        // Too late, inactive, our own vote come back, a copy seen before
        // (or too old to tell), or no room: take no part and name nobody.
        // The first copy carries this center's real answer.
        if arrival == Arrival::Late || !accepting || req.vote.initiator == self.me {
            abstain(out);
            return Ok(());
        }
        if !self.windows.contains_key(&req.vote.initiator) && self.windows.len() >= WINDOWS_MAX {
            abstain(out);
            return Ok(());
        }
        let seen = self
            .windows
            .entry(req.vote.initiator.clone())
            .or_default()
            .observe(req.vote.counter, req.reset);
        if seen != Seen::New || self.collecting.contains_key(&req.vote) || self.collecting.len() >= VOTES_COLLECTING_MAX
        {
            abstain(out);
            return Ok(());
        }
        let (kind, id) = (req.request.kind.as_str(), req.request.id.as_str());
        self.prune_if_full(now_ms, replica);
        let owner = replica.live_owner(kind, id);
        let held = replica.version(kind, id);
        let until_ms = deadline_ms.saturating_add(CLAIM_GRACE_MS);
        let ballot = self.claims.vote(
            (kind, id),
            &req.vote.initiator,
            req.vote.counter,
            until_ms,
            owner.as_deref(),
            now_ms,
        );
        let own = match ballot {
            // The id is taken: no need to ask further.
            Ballot::Owned(_) => {
                out.push(Command::SendAnswer {
                    peer: req.from.clone(),
                    vote: req.vote.clone(),
                    answer: ballot.answer(&self.me).holding(held),
                });
                return Ok(());
            }
            Ballot::Yes { .. } => {
                out.push(Command::Persist {
                    promise: Promise {
                        kind: kind.to_string(),
                        id: id.to_string(),
                        initiator: req.vote.initiator.clone(),
                        counter: req.vote.counter,
                        until_ms,
                    },
                });
                Own::Persisting(ballot.answer(&self.me).holding(held))
            }
            // A no still forwards: the centers behind this one count.
            Ballot::No(_) => Own::Ready(ballot.answer(&self.me).holding(held)),
        };
        let targets: Vec<String> = targets.iter().filter(|t| **t != req.from).cloned().collect();
        let upstream = Upstream::Peer(req.from.clone());
        self.start(req.vote, (kind, id), upstream, own, deadline_ms, &targets, out);
        Ok(())
    }

    /// Starts collecting `vote` from `targets`.
    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        vote: VoteId,
        (kind, id): (&str, &str),
        upstream: Upstream,
        own: Own,
        deadline_ms: u64,
        targets: &[String],
        out: &mut Vec<Command>,
    ) {
        self.collecting.insert(
            vote.clone(),
            Collecting {
                kind: kind.to_string(),
                id: id.to_string(),
                upstream,
                own,
                tally: Tally::new(Answer::default(), targets.iter().cloned()),
            },
        );
        if self.settle(&vote, false, out) {
            return;
        }
        let request = VoteRequest {
            kind: kind.to_string(),
            id: id.to_string(),
            deadline_ms: Some(vote::forwarded_deadline(deadline_ms)),
        };
        for peer in targets {
            out.push(Command::SendRequest {
                peer: peer.clone(),
                vote: vote.clone(),
                request: request.clone(),
            });
        }
        out.push(Command::Schedule {
            at_ms: deadline_ms,
            vote,
        });
    }

    /// Peer `from` answered `vote`. An answer naming too many centers is
    /// refused and changes nothing (the peer is still waited for); one
    /// from a peer not asked, or a second one, is ignored.
    pub fn on_answer(
        &mut self,
        from: &str,
        vote: &VoteId,
        answer: Answer,
        out: &mut Vec<Command>,
    ) -> Result<(), TooManyCenters> {
        let answer = answer.checked()?;
        if let Some(c) = self.collecting.get_mut(vote) {
            if c.tally.answer(from, answer) {
                self.settle(vote, false, out);
            }
        }
        Ok(())
    }

    /// The request of `vote` to `peer` failed (refused, not delivered): it
    /// speaks for nobody; the others may still make a quorum.
    pub fn on_request_failed(&mut self, peer: &str, vote: &VoteId, out: &mut Vec<Command>) {
        if let Some(c) = self.collecting.get_mut(vote) {
            if c.tally.answer(peer, Answer::default()) {
                self.settle(vote, false, out);
            }
        }
    }

    /// `promise` (from [`Command::Persist`]) is on disk (`durable`), or
    /// could not be written: then this center promised nothing and says no.
    pub fn on_persisted(&mut self, promise: &Promise, durable: bool, out: &mut Vec<Command>) {
        let key = (promise.kind.as_str(), promise.id.as_str());
        if !durable {
            self.claims.release(key, &promise.initiator, promise.counter);
        }
        let vote = VoteId::new(&promise.initiator, promise.counter);
        let Some(c) = self.collecting.get_mut(&vote) else {
            return;
        };
        if let Own::Persisting(a) = &c.own {
            c.own = Own::Ready(if durable {
                a.clone()
            } else {
                Answer::no(&self.me, "this center could not record its claim").holding(a.hlc)
            });
            self.settle(&vote, false, out);
        }
    }

    /// The deadline of `vote` passed: it ends here with what was heard.
    pub fn on_deadline(&mut self, vote: &VoteId, out: &mut Vec<Command>) {
        self.settle(vote, true, out);
    }

    /// The write of this center's granted vote `counter` on `kind/id` is
    /// durable (or failed): the record speaks now, the claim goes.
    pub fn on_written(&mut self, (kind, id): (&str, &str), counter: u64) {
        self.claims.release((kind, id), &self.me, counter);
    }

    /// Ends `vote` here if it can (`expired`: its deadline passed): a relay
    /// answers once every asked peer answered and its own vote is durable,
    /// the initiator once the count decides. Returns whether it ended.
    fn settle(&mut self, vote: &VoteId, expired: bool, out: &mut Vec<Command>) -> bool {
        let Some(c) = self.collecting.get(vote) else {
            return false;
        };
        let complete = expired || c.tally.is_complete();
        let end = match &c.upstream {
            Upstream::Peer(_) if !complete => return false,
            Upstream::Peer(_) if matches!(c.own, Own::Persisting(_)) && !expired => return false,
            Upstream::Peer(peer) => End::Answer(peer.clone()),
            Upstream::Client => match self.rule.decide(&c.got(), complete) {
                None => return false,
                Some(d) => End::Decide(d),
            },
        };
        let c = self.collecting.remove(vote).expect("collecting");
        match end {
            End::Answer(peer) => out.push(Command::SendAnswer {
                peer,
                vote: vote.clone(),
                answer: c.got(),
            }),
            End::Decide(d) => {
                let key = (c.kind.as_str(), c.id.as_str());
                let decision = match d {
                    Decision::Granted if self.claims.confirm(key, &self.me, vote.counter) => Decision::Granted,
                    Decision::Granted => {
                        Decision::Refused("gave way to an earlier claim of the id by another center".into())
                    }
                    other => other,
                };
                if decision != Decision::Granted {
                    self.claims.release(key, &self.me, vote.counter);
                }
                let hlc = c.got().hlc;
                out.push(Command::Decided {
                    counter: vote.counter,
                    kind: c.kind,
                    id: c.id,
                    decision,
                    hlc,
                });
            }
        }
        true
    }

    /// At the bound, drops what live records have settled.
    fn prune_if_full(&mut self, now_ms: u64, replica: &impl Replica) {
        if self.claims.is_full() {
            self.claims.prune(now_ms, |kind, id| replica.live_owner(kind, id));
        }
    }
}
