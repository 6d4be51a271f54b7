//! The claims of new ids in the mesh runtime (DRiP §5.5.1 as PROTOCOL.md,
//! "Votes on new ids", settles it): this center's own votes, its part in
//! other centers' votes (the convergecast), and the promises it keeps on
//! disk. The I/O only: what to claim, how answers merge and when a vote is
//! granted are `regmesh_proto::vote` and `regmesh_proto::tally`. Must never
//! decide a vote itself, or send a yes before its promise is on disk.

use super::{Mesh, Peer};
use crate::center::now_ms;
use hyper::{Method, StatusCode};
use regmesh_proto::constants::CLAIM_GRACE_MS;
use regmesh_proto::dedup::Seen;
use regmesh_proto::tally::{Answer, Decision, Tally};
use regmesh_proto::vote::{self, Arrival, Ballot};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// A vote collecting answers from peers, and who waits for its outcome:
/// at the initiator, until the count decides; at a relay, until every
/// asked peer answered.
pub(super) struct Collecting {
    tally: Tally,
    initiator: bool,
    done: Option<tokio::sync::oneshot::Sender<Answer>>,
}

/// How a vote on a new id ended, for the initiator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteOutcome {
    /// A quorum of all configured centers said yes (`[peer] claims`):
    /// write, then [`Mesh::release`] with this counter.
    Granted(u64),
    /// The id is owned or claimed elsewhere (too many said no for a quorum,
    /// or this center gave way to an earlier claim).
    Refused(String),
    /// Not enough centers could be heard in time; nothing was decided.
    Undecided(String),
}

impl Mesh {
    fn next_vote_counter(&self) -> u64 {
        // One per vote, at least the clock in milliseconds: increasing, dense
        // enough for the dedup window, and after a restart above anything
        // issued before (unless votes outran the clock or the clock went
        // back; a repeated counter is then deduplicated and the vote fails
        // safe).
        let mut last = self.last_vote_counter.lock().expect("vote counter lock");
        *last = (*last + 1).max(now_ms());
        *last
    }

    /// Runs the two-phase vote's first phase for a new `(kind, id)` at this
    /// center: claim it here, then ask the whole mesh; granted once a quorum
    /// of all configured centers said yes.
    pub async fn vote_new(self: &Arc<Self>, kind: &str, id: &str) -> VoteOutcome {
        let counter = self.next_vote_counter();
        let deadline = now_ms() + self.vote_timeout_ms;
        let owner = self.center.get(kind, id).ok().flatten().map(|r| r.origin);
        self.prune_claims_if_full();
        let ballot = self.claims.lock().expect("claims lock").claim_own(
            (kind, id),
            &self.me,
            counter,
            deadline + CLAIM_GRACE_MS,
            owner.as_deref(),
            now_ms(),
        );
        match &ballot {
            Ballot::Owned(o) => return VoteOutcome::Refused(format!("owned by center {o}")),
            Ballot::No(why) => return VoteOutcome::Refused(why.clone()),
            Ballot::Yes { .. } => {}
        }
        let own = ballot.answer(&self.me);
        let got = self
            .collect(&self.me.clone(), counter, (kind, id), deadline, None, own)
            .await;
        let decision = self.rule.decide(&got, true).expect("a complete count decides");
        tracing::debug!(%kind, %id, counter, ?got, ?decision, "vote counted");
        match decision {
            Decision::Granted
                if self
                    .claims
                    .lock()
                    .expect("claims lock")
                    .confirm((kind, id), &self.me, counter) =>
            {
                VoteOutcome::Granted(counter)
            }
            Decision::Granted => {
                self.release(kind, id, counter);
                VoteOutcome::Refused("gave way to an earlier claim of the id by another center".into())
            }
            Decision::Refused(why) => {
                self.release(kind, id, counter);
                VoteOutcome::Refused(why)
            }
            Decision::Undecided(why) => {
                self.release(kind, id, counter);
                VoteOutcome::Undecided(why)
            }
        }
    }

    /// At the bound, drops what live records have settled (proto's rule).
    fn prune_claims_if_full(&self) {
        let mut claims = self.claims.lock().expect("claims lock");
        if claims.is_full() {
            let live = |kind: &str, id: &str| {
                self.center
                    .get(kind, id)
                    .ok()
                    .flatten()
                    .filter(|r| !r.deleted)
                    .map(|r| r.origin)
            };
            claims.prune(now_ms(), live);
        }
    }

    /// Drops this center's own claim once its write is durable (or failed).
    pub fn release(&self, kind: &str, id: &str, counter: u64) {
        self.claims
            .lock()
            .expect("claims lock")
            .release((kind, id), &self.me, counter);
    }

    /// Asks every OPERATIONAL peer but `except` to vote, starting from this
    /// hop's `own` answer, and returns everything heard: when every asked
    /// peer answered (at the initiator: as soon as the count decides), or
    /// at `deadline`.
    async fn collect(
        self: &Arc<Self>,
        initiator: &str,
        counter: u64,
        (kind, id): (&str, &str),
        deadline: u64,
        except: Option<&str>,
        own: Answer,
    ) -> Answer {
        // DRiP §5.7: peers that do not answer heartbeats are not used for
        // propagation, votes included; only OPERATIONAL peers are asked.
        let targets: Vec<Arc<Peer>> = self
            .peers
            .iter()
            .filter(|p| Some(p.cfg.id.as_str()) != except && p.life.lock().expect("life lock").receives_propagation())
            .cloned()
            .collect();
        let is_initiator = initiator == self.me && except.is_none();
        if targets.is_empty() {
            return own;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        match self
            .ballots
            .lock()
            .expect("ballots lock")
            .entry((initiator.to_string(), counter))
        {
            // Already collecting this vote here: this copy is a duplicate
            // and speaks for nobody.
            std::collections::hash_map::Entry::Occupied(_) => return Answer::default(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Collecting {
                    tally: Tally::new(own, targets.iter().map(|p| p.cfg.id.clone())),
                    initiator: is_initiator,
                    done: Some(tx),
                });
            }
        }
        let body =
            serde_json::to_vec(&json!({"kind": kind, "id": id, "deadline_ms": vote::forwarded_deadline(deadline)}))
                .expect("json");
        for p in targets {
            let me = self.clone();
            let body = body.clone();
            let initiator = initiator.to_string();
            tokio::spawn(async move {
                let headers = [
                    ("drip-node-id", initiator.clone()),
                    ("drip-node-counter", counter.to_string()),
                    ("drip-node-counter-reset", "false".to_string()),
                    // DRiP §5.3: a vote is the first phase of an update.
                    ("drip-transaction-type", "update".to_string()),
                ];
                let ok = matches!(
                    p.client.call(&me.center, Method::POST, "/voting", &headers, Some(body)).await,
                    Ok(a) if a.status == StatusCode::OK
                );
                if !ok {
                    // It speaks for nobody; the others may still make a quorum.
                    me.answer(&initiator, counter, &p.cfg.id, Answer::default());
                }
            });
        }
        let wait = Duration::from_millis(deadline.saturating_sub(now_ms()));
        let early = tokio::time::timeout(wait, rx).await.ok().and_then(Result::ok);
        let left = self
            .ballots
            .lock()
            .expect("ballots lock")
            .remove(&(initiator.to_string(), counter));
        match (early, left) {
            (Some(a), _) => a,
            (None, Some(c)) => {
                tracing::debug!(%initiator, counter, missing = ?c.tally.missing(), "vote deadline passed");
                c.tally.got().clone()
            }
            (None, None) => Answer::default(),
        }
    }

    /// An answer from peer `from` to vote (initiator, counter).
    pub fn answer(&self, initiator: &str, counter: u64, from: &str, answer: Answer) {
        let mut ballots = self.ballots.lock().expect("ballots lock");
        let Some(c) = ballots.get_mut(&(initiator.to_string(), counter)) else {
            tracing::debug!(%initiator, counter, %from, "vote answer for no waiting vote");
            return;
        };
        if !c.tally.answer(from, answer) {
            tracing::debug!(%initiator, counter, %from, "vote answer repeated or not asked");
            return;
        }
        let settled = if c.initiator {
            self.rule.decide(c.tally.got(), c.tally.is_complete()).is_some()
        } else {
            c.tally.is_complete()
        };
        if settled {
            if let Some(tx) = c.done.take() {
                let _ = tx.send(c.tally.got().clone());
            }
        }
    }

    /// A vote request from peer `sender`: vote here, forward to the other
    /// peers, and answer `sender` with everything heard (convergecast).
    pub async fn vote_request(
        self: Arc<Self>,
        sender: String,
        initiator: String,
        (counter, reset): (u64, bool),
        (kind, id): (String, String),
        deadline: u64,
    ) {
        let answer = match vote::arrival(deadline, now_ms()) {
            // Too late to take part: claim nothing, speak for nobody.
            Ok(Arrival::Late) | Err(_) => Answer::default(),
            Ok(Arrival::InTime) => {
                self.vote_here(&sender, &initiator, (counter, reset), (&kind, &id), deadline)
                    .await
            }
        };
        tracing::debug!(%initiator, counter, %sender, ?answer, "vote answered");
        if let Some(peer) = self.peer(&sender).cloned() {
            let headers = [
                ("drip-node-id", initiator.clone()),
                ("drip-node-counter", counter.to_string()),
            ];
            let path = format!("/votingphase/node/{}/response/{}", self.me, answer.word(&self.me));
            let body = crate::peer::vote_wire::encode_answer(&self.me, &answer);
            if let Err(e) = peer
                .client
                .call(&self.center, Method::POST, &path, &headers, Some(body))
                .await
            {
                tracing::debug!(peer = %sender, "vote answer not delivered: {e}");
            }
        }
    }

    /// This hop's part of a vote that arrived in time: its own vote, then
    /// (unless the id is owned here) its other peers'.
    async fn vote_here(
        self: &Arc<Self>,
        sender: &str,
        initiator: &str,
        (counter, reset): (u64, bool),
        (kind, id): (&str, &str),
        deadline: u64,
    ) -> Answer {
        let seen = if initiator == self.me {
            // Our own vote, come back by another path.
            Seen::Duplicate
        } else {
            self.vote_windows
                .lock()
                .expect("vote windows lock")
                .entry(initiator.to_string())
                .or_default()
                .observe(counter, reset)
        };
        if seen == Seen::Duplicate {
            // Another path already brought this vote here; the first copy
            // carries this node's real answer.
            return Answer::default();
        }
        let owner = self.center.get(kind, id).ok().flatten().map(|r| r.origin);
        self.prune_claims_if_full();
        let ballot = self.claims.lock().expect("claims lock").vote(
            (kind, id),
            initiator,
            counter,
            deadline + CLAIM_GRACE_MS,
            owner.as_deref(),
            now_ms(),
        );
        if let Ballot::Owned(_) = ballot {
            // The id is taken: no need to ask further.
            return ballot.answer(&self.me);
        }
        let ballot = match ballot {
            Ballot::Yes { .. } => {
                let promise = vote::Promise {
                    kind: kind.to_string(),
                    id: id.to_string(),
                    initiator: initiator.to_string(),
                    counter,
                    until_ms: deadline + CLAIM_GRACE_MS,
                };
                match self.persist_promise(promise).await {
                    Ok(()) => ballot,
                    Err(e) => {
                        tracing::warn!("{e}");
                        Ballot::No("this center could not record its claim".into())
                    }
                }
            }
            other => other,
        };
        // A no still forwards: the centers behind this one count.
        self.collect(
            initiator,
            counter,
            (kind, id),
            deadline,
            Some(sender),
            ballot.answer(&self.me),
        )
        .await
    }

    /// Puts `promise` on disk (and compacts the log when it has grown).
    /// The promise is already held in memory, so a compaction (from the
    /// promises held, under the log's lock) keeps every line appended.
    async fn persist_promise(
        self: &Arc<Self>,
        promise: vote::Promise,
    ) -> Result<(), crate::peer::claims_log::ClaimsLogError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut log = me.claims_log.lock().expect("claims log lock");
            log.append(&promise)?;
            let held = me.claims.lock().expect("claims lock").len();
            if log.wants_compaction(held) {
                let live = me.claims.lock().expect("claims lock").promises();
                log.compact(&live)?;
            }
            Ok(())
        })
        .await
        .expect("claims log task")
    }
}
