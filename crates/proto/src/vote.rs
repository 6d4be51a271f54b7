//! Claims for the two-phase vote on new ids (DRiP §5.5.1, as DESIGN.md
//! settles it): which node has promised an id to which initiator, until
//! when, and whether a vote request arrived in time to take part.
//!
//! A node asked to vote for `(kind, id)` by initiator I answers no when it
//! knows the id under another owner, or when it holds an unexpired claim for
//! the id on behalf of someone else. Otherwise it answers yes and claims the
//! id for I until the vote's deadline plus [`CLAIM_GRACE_MS`].
//!
//! Why two racing initiators never both win: each needs a quorum of yes
//! ([`crate::tally`]); two quorums share a center, and a center holds at
//! most one claim of an id at a time. An initiator claims the id for itself
//! first ([`Claims::claim_own`]) and keeps the claim until its write is
//! durable ([`Claims::confirm`], then [`Claims::release`]); from then on its
//! record speaks.
//!
//! Why racing initiators on a healthy mesh leave one winner, not none: an
//! initiator whose own claim is still pending yields to a rival claim that
//! ranks before it — lower `(counter, initiator)`, counters being
//! millisecond clocks — by saying yes to it and giving its own vote up
//! ([`Claims::confirm`] then fails). Other centers keep the first claim they
//! saw. So the rival with the earliest claim gathers every initiator's yes.
//!
//! Why an expired claim cannot let a second owner in: a node cannot tell
//! an initiator that lost from one whose record has not reached it yet (a
//! lost flood, a split). So a claim that expires before a record of the id
//! arrived becomes a *doubt* about its initiator. A later yes of this node
//! names its doubts ([`Answer::doubts`]), and the later initiator is granted
//! only once each doubted initiator said yes to it too — which that
//! initiator does only when it holds neither a record of the id nor a claim
//! it still means to write. A live record of the id clears the doubts.
//!
//! Must never: say yes to two live claims of one id, forget an expired
//! claim without a record of the id, or let an initiator yield once it has
//! confirmed.

pub use crate::constants::{CLAIM_GRACE_MS, VOTE_DEADLINE_MAX_MS, VOTE_MARGIN_MS};
use crate::tally::Answer;
use std::collections::{BTreeSet, HashMap};

/// A node's own vote on a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ballot {
    /// Claimed for this vote; these earlier initiators' claims of the id
    /// expired here with no record of it (doubts, see the module docs).
    Yes { doubts: BTreeSet<String> },
    /// The id is a live record of this owner here.
    Owned(String),
    /// Refused (a live claim for someone else, or no room), with why.
    No(String),
}

impl Ballot {
    /// A yes with no doubts.
    pub fn yes() -> Ballot {
        Ballot::Yes {
            doubts: BTreeSet::new(),
        }
    }

    pub fn is_yes(&self) -> bool {
        matches!(self, Ballot::Yes { .. })
    }

    /// This ballot as node `me` reports it in a vote answer.
    pub fn answer(&self, me: &str) -> Answer {
        match self {
            Ballot::Yes { doubts } => Answer {
                doubts: doubts.clone(),
                ..Answer::yes(me)
            },
            Ballot::Owned(o) => Answer::owned(me, o),
            Ballot::No(why) => Answer::no(me, why),
        }
    }
}

/// When a vote request reached this hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Before its deadline: vote and forward.
    InTime,
    /// At or after its deadline (hop delays, clock skew): take no part —
    /// claim nothing, forward nothing, answer at once naming nobody.
    Late,
}

/// A deadline further ahead than [`VOTE_DEADLINE_MAX_MS`]: the request is
/// malformed; nothing was claimed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("deadline_ms must be within the next {} s", VOTE_DEADLINE_MAX_MS / 1000)]
pub struct DeadlineTooFar;

/// How a request with `deadline_ms` that arrives at `now_ms` is treated
/// (the node and the simulator both ask this).
pub fn arrival(deadline_ms: u64, now_ms: u64) -> Result<Arrival, DeadlineTooFar> {
    if deadline_ms > now_ms.saturating_add(VOTE_DEADLINE_MAX_MS) {
        Err(DeadlineTooFar)
    } else if deadline_ms <= now_ms {
        Ok(Arrival::Late)
    } else {
        Ok(Arrival::InTime)
    }
}

/// The deadline a hop gives the peers it forwards a vote to.
pub fn forwarded_deadline(deadline_ms: u64) -> u64 {
    deadline_ms.saturating_sub(VOTE_MARGIN_MS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Own {
    /// Another initiator's claim.
    No,
    /// This node's own vote, still running: it may yield.
    Pending,
    /// This node's own vote, granted: it writes; held until released.
    Confirmed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Claim {
    initiator: String,
    counter: u64,
    until_ms: u64,
    own: Own,
}

/// Claims held by one node. Bounded: at most `max` unexpired claims.
#[derive(Debug, Clone)]
pub struct Claims {
    by_key: HashMap<(String, String), Claim>,
    /// Initiators whose claims of an id expired here with no record of it.
    doubts: HashMap<(String, String), BTreeSet<String>>,
    max: usize,
}

/// A promise given to another initiator's vote: a claim until `until_ms`,
/// or (`until_ms == 0`) a doubt about an expired one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promise {
    pub kind: String,
    pub id: String,
    pub initiator: String,
    pub counter: u64,
    pub until_ms: u64,
}

/// Default bound on claims held at once.
pub const CLAIMS_MAX: usize = 100_000;

impl Default for Claims {
    fn default() -> Self {
        Claims {
            by_key: HashMap::new(),
            doubts: HashMap::new(),
            max: CLAIMS_MAX,
        }
    }
}

impl Claims {
    pub fn with_capacity(max: usize) -> Self {
        Claims {
            by_key: HashMap::new(),
            doubts: HashMap::new(),
            max: max.max(1),
        }
    }

    /// Drops expired claims; another initiator's becomes a doubt.
    fn expire(&mut self, now_ms: u64) {
        let doubts = &mut self.doubts;
        self.by_key.retain(|k, c| {
            let keep = c.until_ms > now_ms;
            if !keep && c.own == Own::No {
                doubts.entry(k.clone()).or_default().insert(c.initiator.clone());
            }
            keep
        });
    }

    /// Whether the bound is reached: the caller should [`Claims::prune`]
    /// before voting.
    pub fn is_full(&self) -> bool {
        self.held() >= self.max
    }

    /// Makes room: expired claims of ids this node now holds a live record
    /// of are dropped (the record speaks), other expired claims become
    /// doubts, and doubts about ids with a live record are dropped.
    /// `owner_of(kind, id)` is the live record's origin, if any.
    pub fn prune(&mut self, now_ms: u64, owner_of: impl Fn(&str, &str) -> Option<String>) {
        let doubts = &mut self.doubts;
        self.by_key.retain(|k, c| {
            if c.until_ms > now_ms {
                return true;
            }
            if c.own == Own::No && owner_of(&k.0, &k.1).is_none() {
                doubts.entry(k.clone()).or_default().insert(c.initiator.clone());
            }
            false
        });
        self.doubts.retain(|k, _| owner_of(&k.0, &k.1).is_none());
    }

    /// Claims and doubts held (the bound counts both).
    fn held(&self) -> usize {
        self.by_key.len() + self.doubts.values().map(BTreeSet::len).sum::<usize>()
    }

    /// Votes on `(kind, id)` for another initiator's vote number `counter`.
    /// `owner` is the live record's origin, if this node holds one.
    pub fn vote(
        &mut self,
        key: (&str, &str),
        initiator: &str,
        counter: u64,
        until_ms: u64,
        owner: Option<&str>,
        now_ms: u64,
    ) -> Ballot {
        self.decide(key, (initiator, counter), until_ms, owner, now_ms, Own::No)
    }

    /// Claims `(kind, id)` for this node's own vote `counter` (before asking
    /// anyone). The claim is pending until [`Claims::confirm`].
    pub fn claim_own(
        &mut self,
        key: (&str, &str),
        me: &str,
        counter: u64,
        until_ms: u64,
        owner: Option<&str>,
        now_ms: u64,
    ) -> Ballot {
        self.decide(key, (me, counter), until_ms, owner, now_ms, Own::Pending)
    }

    fn decide(
        &mut self,
        (kind, id): (&str, &str),
        (initiator, counter): (&str, u64),
        until_ms: u64,
        owner: Option<&str>,
        now_ms: u64,
        own: Own,
    ) -> Ballot {
        let key = (kind.to_string(), id.to_string());
        if let Some(o) = owner {
            // The record speaks: whatever was in doubt is settled.
            self.doubts.remove(&key);
            if o != initiator {
                return Ballot::Owned(o.to_string());
            }
        }
        if let Some(c) = self.by_key.get(&key) {
            // A newer vote by the same initiator replaces its older claim
            // (say the older one was undecided and the client retried):
            // two votes of one initiator can never make two owners.
            let same_or_newer = c.initiator == initiator && counter >= c.counter && c.own != Own::Confirmed;
            // Our own pending vote yields to a rival that ranks before it.
            let yields =
                c.own == Own::Pending && own == Own::No && (counter, initiator) < (c.counter, c.initiator.as_str());
            if c.until_ms > now_ms && !same_or_newer && !yields {
                return Ballot::No(format!("{kind}/{id} has a pending claim by center {}", c.initiator));
            }
            if c.until_ms <= now_ms && c.own == Own::No && c.initiator != initiator {
                let old = c.initiator.clone();
                self.doubts.entry(key.clone()).or_default().insert(old);
            }
        }
        if self.held() >= self.max {
            self.expire(now_ms);
            if self.held() >= self.max {
                return Ballot::No("too many pending claims".into());
            }
        }
        let doubts = self.doubts.get(&key).cloned().unwrap_or_default();
        #[cfg(feature = "broken")]
        if crate::broken::is(crate::broken::Variant::VoteWithoutClaim) && own == Own::No {
            return Ballot::Yes { doubts };
        }
        self.by_key.insert(
            key,
            Claim {
                initiator: initiator.to_string(),
                counter,
                until_ms,
                own,
            },
        );
        Ballot::Yes { doubts }
    }

    /// This node's own vote `counter` on `(kind, id)` was granted: returns
    /// whether it may write (its claim is still its own — it did not yield
    /// to an earlier rival). From then on the claim never yields nor
    /// expires until [`Claims::release`].
    pub fn confirm(&mut self, (kind, id): (&str, &str), me: &str, counter: u64) -> bool {
        let key = (kind.to_string(), id.to_string());
        match self.by_key.get_mut(&key) {
            Some(c) if c.initiator == me && c.counter == counter && c.own == Own::Pending => {
                c.own = Own::Confirmed;
                c.until_ms = u64::MAX;
                true
            }
            _ => false,
        }
    }

    /// Drops the claim of `initiator`'s vote `counter` on `(kind, id)` (its
    /// vote failed, or its write is durable and the record now speaks).
    pub fn release(&mut self, (kind, id): (&str, &str), initiator: &str, counter: u64) {
        let key = (kind.to_string(), id.to_string());
        if self
            .by_key
            .get(&key)
            .is_some_and(|c| c.initiator == initiator && c.counter == counter)
        {
            self.by_key.remove(&key);
        }
    }

    /// Every promise this node gave other initiators (live claims, and
    /// doubts as `until_ms == 0`), for persisting: a node must keep them
    /// across a restart, or it may say yes twice.
    pub fn promises(&self) -> Vec<Promise> {
        let mut v: Vec<Promise> = self
            .by_key
            .iter()
            .filter(|(_, c)| c.own == Own::No)
            .map(|((kind, id), c)| Promise {
                kind: kind.clone(),
                id: id.clone(),
                initiator: c.initiator.clone(),
                counter: c.counter,
                until_ms: c.until_ms,
            })
            .collect();
        for ((kind, id), who) in &self.doubts {
            v.extend(who.iter().map(|initiator| Promise {
                kind: kind.clone(),
                id: id.clone(),
                initiator: initiator.clone(),
                counter: 0,
                until_ms: 0,
            }));
        }
        v
    }

    /// Takes back promises saved before a restart (later ones of one id
    /// replace earlier ones, as they did when given).
    pub fn restore(&mut self, promises: impl IntoIterator<Item = Promise>) {
        for p in promises {
            let key = (p.kind, p.id);
            if p.until_ms == 0 {
                self.doubts.entry(key).or_default().insert(p.initiator);
                continue;
            }
            if let Some(old) = self.by_key.get(&key) {
                if old.initiator != p.initiator {
                    self.doubts
                        .entry(key.clone())
                        .or_default()
                        .insert(old.initiator.clone());
                }
            }
            self.by_key.insert(
                key,
                Claim {
                    initiator: p.initiator,
                    counter: p.counter,
                    until_ms: p.until_ms,
                    own: Own::No,
                },
            );
        }
    }

    /// Drops this node's own claims (after a restart its own votes are
    /// over: a granted one wrote its record, or was never acknowledged).
    pub fn forget_own(&mut self) {
        self.by_key.retain(|_, c| c.own == Own::No);
    }

    /// Claims and doubts held.
    pub fn len(&self) -> usize {
        self.held()
    }

    pub fn is_empty(&self) -> bool {
        self.held() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_vote_by_the_same_initiator_replaces_its_claim() {
        let mut c = Claims::default();
        assert_eq!(c.vote(("agent", "x"), "A", 5, 1000, None, 0), Ballot::yes());
        assert_eq!(c.vote(("agent", "x"), "A", 9, 1000, None, 10), Ballot::yes());
        assert!(
            matches!(c.vote(("agent", "x"), "A", 5, 1000, None, 20), Ballot::No(_)),
            "older vote"
        );
        assert!(matches!(c.vote(("agent", "x"), "B", 10, 1000, None, 20), Ballot::No(_)));
    }

    #[test]
    fn two_initiators_cannot_both_collect_yes() {
        // Each initiator claims first, then asks the other.
        let mut a = Claims::default();
        let mut b = Claims::default();
        assert_eq!(a.claim_own(("agent", "x"), "A", 1, 1000, None, 0), Ballot::yes());
        assert_eq!(b.claim_own(("agent", "x"), "B", 7, 1000, None, 0), Ballot::yes());
        assert!(a.confirm(("agent", "x"), "A", 1), "A was granted first");
        // B yields to A's earlier claim; A, confirmed, never yields.
        assert_eq!(b.vote(("agent", "x"), "A", 1, 1000, None, 10), Ballot::yes());
        assert!(matches!(a.vote(("agent", "x"), "B", 7, 1000, None, 10), Ballot::No(_)));
        assert!(!b.confirm(("agent", "x"), "B", 7), "B gave its vote up");
    }

    #[test]
    fn owner_votes_no_and_claims_expire() {
        let mut c = Claims::default();
        assert!(c.vote(("agent", "x"), "A", 1, 1000, Some("B"), 0) == Ballot::Owned("B".into()));
        assert_eq!(
            c.vote(("agent", "x"), "A", 1, 1000, Some("A"), 0),
            Ballot::yes(),
            "its own record"
        );
        assert!(matches!(c.vote(("agent", "x"), "C", 2, 2000, None, 500), Ballot::No(_)));
        assert_eq!(
            c.vote(("agent", "x"), "C", 2, 2000, None, 1000),
            Ballot::Yes {
                doubts: BTreeSet::from(["A".to_string()])
            },
            "A's claim expired with no record of it: a doubt"
        );
        assert!(
            c.vote(("agent", "x"), "C", 2, 2000, None, 1001).is_yes(),
            "the same vote again"
        );
        c.release(("agent", "x"), "C", 2);
        assert_eq!(c.len(), 1, "the doubt about A stays");
        assert_eq!(
            c.vote(("agent", "x"), "C", 3, 2000, Some("A"), 1001),
            Ballot::Owned("A".into())
        );
        assert!(c.is_empty(), "A's record settled it");
    }

    #[test]
    fn bounded() {
        let mut c = Claims::with_capacity(2);
        assert_eq!(c.vote(("k", "1"), "A", 1, 100, None, 0), Ballot::yes());
        assert_eq!(c.vote(("k", "2"), "A", 2, 100, None, 0), Ballot::yes());
        assert!(matches!(c.vote(("k", "3"), "A", 3, 100, None, 0), Ballot::No(_)));
        assert!(c.is_full());
        c.prune(100, |_, _| None);
        assert!(c.is_full(), "expired claims with no record are doubts");
        c.prune(100, |_, id| (id == "1").then(|| "A".to_string()));
        assert!(!c.is_full(), "a record settles one");
        assert!(c.vote(("k", "3"), "A", 3, 200, None, 100).is_yes());
    }
}
