//! Claims for the two-phase vote on new ids (DRiP §5.5.1, as DESIGN.md
//! settles it): which node has promised an id to which initiator, until when.
//!
//! A node asked to vote for `(kind, id)` by initiator I answers no when it
//! knows the id under another owner, or when it holds an unexpired claim for
//! the id on behalf of someone else. Otherwise it answers yes and claims the id
//! for I until the vote's deadline.
//!
//! Why two racing initiators never both win: each must collect a yes from
//! every node, the other initiator included. An initiator claims the id for
//! itself before asking anyone, and keeps the claim until its own write is
//! durable; from then on it knows the id as its own. So each of the two
//! refuses the other.

use std::collections::{HashMap, HashSet};

/// Starts the reason of a "no" that means "could not decide" (a peer on the
/// way did not answer in time): the initiator answers 503, retry, not 409.
pub const UNDECIDED: &str = "undecided: ";

/// A "no" that means nobody could decide.
pub fn undecided(why: &str) -> Ballot {
    Ballot::No(format!("{UNDECIDED}{why}"))
}

/// Whether a "no" reason means "undecided".
pub fn is_undecided(reason: &str) -> bool {
    reason.starts_with(UNDECIDED)
}

/// One node collecting its peers' answers to a vote (the convergecast):
/// decided at the first "no", or when every asked peer said yes.
#[derive(Debug, Clone)]
pub struct Tally {
    waiting: HashSet<String>,
    decided: bool,
}

impl Tally {
    pub fn new(asked: impl IntoIterator<Item = String>) -> Self {
        Tally {
            waiting: asked.into_iter().collect(),
            decided: false,
        }
    }

    /// An answer from `from`. Returns the outcome once it is decided (only
    /// once); answers from peers not asked, or repeated, change nothing.
    pub fn answer(&mut self, from: &str, ballot: Ballot) -> Option<Ballot> {
        if self.decided || !self.waiting.remove(from) {
            return None;
        }
        match ballot {
            Ballot::No(_) => {
                self.decided = true;
                Some(ballot)
            }
            Ballot::Yes if self.waiting.is_empty() => {
                self.decided = true;
                Some(Ballot::Yes)
            }
            Ballot::Yes => None,
        }
    }

    /// Whether nobody needs asking (then the answer is yes at once).
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty() && !self.decided
    }

    /// Peers still to answer, sorted (for the "no answer in time" reason).
    pub fn missing(&self) -> Vec<String> {
        let mut v: Vec<String> = self.waiting.iter().cloned().collect();
        v.sort();
        v
    }
}

/// A node's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ballot {
    Yes,
    No(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Claim {
    initiator: String,
    counter: u64,
    until_ms: u64,
}

/// Claims held by one node. Bounded: at most `max` unexpired claims.
#[derive(Debug, Clone)]
pub struct Claims {
    by_key: HashMap<(String, String), Claim>,
    max: usize,
}

/// Default bound on claims held at once.
pub const CLAIMS_MAX: usize = 100_000;

impl Default for Claims {
    fn default() -> Self {
        Claims {
            by_key: HashMap::new(),
            max: CLAIMS_MAX,
        }
    }
}

impl Claims {
    pub fn with_capacity(max: usize) -> Self {
        Claims {
            by_key: HashMap::new(),
            max: max.max(1),
        }
    }

    fn expire(&mut self, now_ms: u64) {
        self.by_key.retain(|_, c| c.until_ms > now_ms);
    }

    /// Votes on `(kind, id)` for `initiator`'s vote number `counter`.
    /// `owner` is the live record's origin, if this node holds one.
    pub fn vote(
        &mut self,
        (kind, id): (&str, &str),
        initiator: &str,
        counter: u64,
        until_ms: u64,
        owner: Option<&str>,
        now_ms: u64,
    ) -> Ballot {
        if let Some(o) = owner {
            if o != initiator {
                return Ballot::No(format!("{kind}/{id} is owned by center {o}"));
            }
        }
        let key = (kind.to_string(), id.to_string());
        if let Some(c) = self.by_key.get(&key) {
            // A newer vote by the same initiator replaces its older claim
            // (say the older one was undecided and the client retried):
            // two votes of one initiator can never make two owners.
            let same_or_newer = c.initiator == initiator && counter >= c.counter;
            if c.until_ms > now_ms && !same_or_newer {
                return Ballot::No(format!("{kind}/{id} has a pending claim by center {}", c.initiator));
            }
        }
        if self.by_key.len() >= self.max {
            self.expire(now_ms);
            if self.by_key.len() >= self.max {
                return Ballot::No("too many pending claims".into());
            }
        }
        #[cfg(feature = "broken")]
        if crate::broken::is(crate::broken::Variant::VoteWithoutClaim) {
            return Ballot::Yes;
        }
        self.by_key.insert(
            key,
            Claim {
                initiator: initiator.to_string(),
                counter,
                until_ms,
            },
        );
        Ballot::Yes
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

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_vote_by_the_same_initiator_replaces_its_claim() {
        let mut c = Claims::default();
        assert_eq!(c.vote(("agent", "x"), "A", 5, 1000, None, 0), Ballot::Yes);
        assert_eq!(c.vote(("agent", "x"), "A", 9, 1000, None, 10), Ballot::Yes);
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
        assert_eq!(a.vote(("agent", "x"), "A", 1, 1000, None, 0), Ballot::Yes);
        assert_eq!(b.vote(("agent", "x"), "B", 7, 1000, None, 0), Ballot::Yes);
        assert!(matches!(b.vote(("agent", "x"), "A", 1, 1000, None, 10), Ballot::No(_)));
        assert!(matches!(a.vote(("agent", "x"), "B", 7, 1000, None, 10), Ballot::No(_)));
    }

    #[test]
    fn owner_votes_no_and_claims_expire() {
        let mut c = Claims::default();
        assert!(
            matches!(c.vote(("agent", "x"), "A", 1, 1000, Some("B"), 0), Ballot::No(r) if r.contains("owned by center B"))
        );
        assert_eq!(
            c.vote(("agent", "x"), "A", 1, 1000, Some("A"), 0),
            Ballot::Yes,
            "its own record"
        );
        assert!(matches!(c.vote(("agent", "x"), "C", 2, 2000, None, 500), Ballot::No(_)));
        assert_eq!(
            c.vote(("agent", "x"), "C", 2, 2000, None, 1000),
            Ballot::Yes,
            "A's claim expired"
        );
        assert_eq!(
            c.vote(("agent", "x"), "C", 2, 2000, None, 1001),
            Ballot::Yes,
            "the same vote again"
        );
        c.release(("agent", "x"), "C", 2);
        assert!(c.is_empty());
    }

    #[test]
    fn bounded() {
        let mut c = Claims::with_capacity(2);
        assert_eq!(c.vote(("k", "1"), "A", 1, 100, None, 0), Ballot::Yes);
        assert_eq!(c.vote(("k", "2"), "A", 2, 100, None, 0), Ballot::Yes);
        assert!(matches!(c.vote(("k", "3"), "A", 3, 100, None, 0), Ballot::No(_)));
        assert_eq!(
            c.vote(("k", "3"), "A", 3, 200, None, 100),
            Ballot::Yes,
            "expired claims make room"
        );
    }
}
