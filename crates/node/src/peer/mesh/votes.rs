//! The executor of `regmesh_proto::mesh::votes` in the mesh runtime: it
//! reads the clock, the store and the peers' lifecycles, feeds the part
//! its inputs (a client create, a vote request or answer from the peer
//! server, a call that failed, a promise on disk, a deadline) and carries
//! out the commands it emits: HTTP calls to peers, appends to the claims
//! log (`peer/claims_log.rs`) on a blocking thread, timers, and the
//! outcome handed to the waiting create.
//!
//! Must never decide anything about a vote (what to claim, whom to ask,
//! when to answer or grant: all the part's), or hold the part's lock
//! across an await.

use super::Mesh;
use crate::center::{now_ms, Center};
use hyper::{Method, StatusCode};
use regmesh_core::Hlc;
use regmesh_proto::mesh::votes::{Command, Incoming, Replica, VoteId};
use regmesh_proto::tally::{Answer, Decision, TooManyCenters};
use regmesh_proto::vote::{DeadlineTooFar, Promise};
use regmesh_proto::wire::vote::{encode_answer, VoteRequest};
use std::sync::Arc;
use std::time::Duration;

/// How a vote on a new id ended, for the initiator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteOutcome {
    /// A quorum of all configured centers said yes (`[peer] claims`):
    /// write above the version (the highest any counted voter held of the
    /// id, if any), then [`Mesh::release`] with this counter.
    Granted(u64, Option<Hlc>),
    /// The id is owned or claimed elsewhere (too many said no for a quorum,
    /// or this center gave way to an earlier claim).
    Refused(String),
    /// Not enough centers could be heard in time; nothing was decided.
    Undecided(String),
}

/// How a vote ended, as the part decided it, with the highest version of
/// the id a counted voter held.
pub(super) type Counted = (Decision, Option<Hlc>);

/// The store as the part sees it.
struct Held<'a>(&'a Center);

impl Replica for Held<'_> {
    fn live_owner(&self, kind: &str, id: &str) -> Option<String> {
        // `get` serves live records only (not deleted, not lapsed long ago).
        self.0.get(kind, id).ok().flatten().map(|r| r.origin)
    }

    fn version(&self, kind: &str, id: &str) -> Option<Hlc> {
        // Tombstones too: a create must be stamped above a deletion.
        self.0.get_version(kind, id).ok().flatten().map(|r| r.version)
    }
}

impl Mesh {
    /// Peers a vote is forwarded to: DRiP §5.7, peers that do not answer
    /// heartbeats are not used for propagation (OPERATIONAL only).
    fn vote_targets(&self) -> Vec<String> {
        self.peers()
            .iter()
            .filter(|p| p.life.lock().expect("life lock").receives_propagation())
            .map(|p| p.cfg.id.clone())
            .collect()
    }

    /// Runs the vote on a new `(kind, id)` at this center and waits for
    /// its outcome.
    pub async fn vote_new(self: &Arc<Self>, kind: &str, id: &str) -> VoteOutcome {
        let targets = self.vote_targets();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut out = Vec::new();
        let counter = {
            let mut votes = self.votes.lock().expect("votes lock");
            let counter = votes.on_create(now_ms(), (kind, id), &Held(&self.center), &targets, &mut out);
            self.deciding.lock().expect("deciding lock").insert(counter, tx);
            counter
        };
        self.execute_votes(out);
        let decision = rx.await;
        tracing::debug!(%kind, %id, counter, ?decision, "vote counted");
        match decision {
            Ok((Decision::Granted, hlc)) => VoteOutcome::Granted(counter, hlc),
            Ok((Decision::Refused(why), _)) => VoteOutcome::Refused(why),
            Ok((Decision::Undecided(why), _)) => VoteOutcome::Undecided(why),
            Err(_) => VoteOutcome::Undecided("the vote was dropped".into()),
        }
    }

    /// Drops this center's own claim once its write is durable (or failed).
    pub fn release(&self, kind: &str, id: &str, counter: u64) {
        self.votes.lock().expect("votes lock").on_written((kind, id), counter);
    }

    /// A vote request from peer `sender` (authenticated, headers checked).
    /// A deadline too far ahead changes nothing (the server answers 400).
    pub fn vote_request(
        self: &Arc<Self>,
        sender: String,
        vote: VoteId,
        reset: bool,
        request: VoteRequest,
    ) -> Result<(), DeadlineTooFar> {
        let accepting = self.node_state().accepts_updates();
        let targets = self.vote_targets();
        let mut out = Vec::new();
        let req = Incoming {
            from: sender,
            vote,
            reset,
            request,
        };
        self.votes.lock().expect("votes lock").on_request(
            now_ms(),
            req,
            accepting,
            &Held(&self.center),
            &targets,
            &mut out,
        )?;
        self.execute_votes(out);
        Ok(())
    }

    /// An answer from peer `from` to `vote`. One naming too many centers
    /// changes nothing.
    pub fn vote_answer(self: &Arc<Self>, from: &str, vote: &VoteId, answer: Answer) -> Result<(), TooManyCenters> {
        let mut out = Vec::new();
        self.votes
            .lock()
            .expect("votes lock")
            .on_answer(from, vote, answer, &mut out)?;
        self.execute_votes(out);
        Ok(())
    }

    /// Carries out the part's commands (never under its lock).
    fn execute_votes(self: &Arc<Self>, out: Vec<Command>) {
        for c in out {
            match c {
                Command::SendRequest { peer, vote, request } => {
                    crate::spawn::spawn(self.clone().send_vote_request(peer, vote, request));
                }
                Command::SendAnswer { peer, vote, answer } => {
                    crate::spawn::spawn(self.clone().send_vote_answer(peer, vote, answer));
                }
                Command::Persist { promise } => {
                    crate::spawn::spawn(self.clone().persist_promise(promise));
                }
                Command::Schedule { at_ms, vote } => {
                    let me = self.clone();
                    crate::spawn::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(at_ms.saturating_sub(now_ms()))).await;
                        let mut out = Vec::new();
                        me.votes.lock().expect("votes lock").on_deadline(&vote, &mut out);
                        me.execute_votes(out);
                    });
                }
                Command::Decided {
                    counter,
                    kind,
                    id,
                    decision,
                    hlc,
                } => {
                    let waiting = self.deciding.lock().expect("deciding lock").remove(&counter);
                    let granted = decision == Decision::Granted;
                    let delivered = waiting.is_some_and(|tx| tx.send((decision, hlc)).is_ok());
                    if granted && !delivered {
                        // Its create went away: nothing will be written.
                        self.release(&kind, &id, counter);
                    }
                }
            }
        }
    }

    /// `POST /voting` to `peer`, within the time the vote has left; a call
    /// that fails speaks for nobody.
    async fn send_vote_request(self: Arc<Self>, peer: String, vote: VoteId, request: VoteRequest) {
        let Some(p) = self.peer(&peer) else {
            return;
        };
        let headers = [
            ("drip-node-id", vote.initiator.clone()),
            ("drip-node-counter", vote.counter.to_string()),
            ("drip-node-counter-reset", "false".to_string()),
            // DRiP §5.3: a vote is the first phase of an update.
            ("drip-transaction-type", "update".to_string()),
        ];
        let left_ms = request.deadline_ms.unwrap_or(0).saturating_sub(now_ms()).max(1);
        let call = p.client.call_within(
            Duration::from_millis(left_ms),
            &self.center,
            Method::POST,
            "/voting",
            &headers,
            Some(request.encode()),
        );
        if !matches!(call.await, Ok(a) if a.status == StatusCode::OK) {
            let mut out = Vec::new();
            self.votes
                .lock()
                .expect("votes lock")
                .on_request_failed(&peer, &vote, &mut out);
            self.execute_votes(out);
        }
    }

    /// The answer to `vote` for `peer`, which asked us.
    async fn send_vote_answer(self: Arc<Self>, peer: String, vote: VoteId, answer: Answer) {
        tracing::debug!(initiator = %vote.initiator, counter = vote.counter, %peer, ?answer, "vote answered");
        let Some(p) = self.peer(&peer) else {
            return;
        };
        let headers = [
            ("drip-node-id", vote.initiator.clone()),
            ("drip-node-counter", vote.counter.to_string()),
        ];
        let (word, body) = encode_answer(&self.me, &answer);
        let path = format!("/votingphase/node/{}/response/{}", self.me, word.as_str());
        if let Err(e) = p
            .client
            .call(&self.center, Method::POST, &path, &headers, Some(body))
            .await
        {
            tracing::debug!(%peer, "vote answer not delivered: {e}");
        }
    }

    /// Puts `promise` on disk (and compacts the log when it has grown),
    /// then tells the part. Group commit: a promise queued while another
    /// task flushes is written by that task's next fsync, with every other
    /// promise queued meanwhile, and each is reported only after the fsync
    /// that covers it. The promise is already held in memory, so a
    /// compaction from the promises held keeps every line appended.
    async fn persist_promise(self: Arc<Self>, promise: Promise) {
        if !self.claims_log.enqueue(promise) {
            return;
        }
        loop {
            let me = self.clone();
            let flush = move || {
                me.claims_log.flush_queued(|log| {
                    let held = me.votes.lock().expect("votes lock").claims_held();
                    if log.wants_compaction(held) {
                        let live = me.votes.lock().expect("votes lock").promises();
                        if let Err(e) = log.compact(&live) {
                            // The promises are appended; the log stays as it was.
                            tracing::warn!("{e}");
                        }
                    }
                })
            };
            // Under simulation inline: a blocking thread's real finishing
            // time would decide when this task wakes (`clock::installed`).
            let flushed = if crate::clock::installed() {
                Ok(flush())
            } else {
                tokio::task::spawn_blocking(flush).await
            };
            let (batch, durable) = match flushed {
                Ok(Some((batch, written))) => {
                    if let Err(e) = &written {
                        tracing::warn!("{e}");
                    }
                    (batch, written.is_ok())
                }
                Ok(None) => return,
                Err(e) => {
                    // The flush panicked: what it took is not known to be
                    // on disk, so it is never reported durable (those votes
                    // end at their deadlines naming nobody here). The
                    // turn goes on with what is queued.
                    tracing::warn!("claims log task: {e}");
                    continue;
                }
            };
            let mut out = Vec::new();
            {
                let mut votes = self.votes.lock().expect("votes lock");
                for p in &batch {
                    votes.on_persisted(p, durable, &mut out);
                }
            }
            self.execute_votes(out);
        }
    }
}
