//! The count of a vote on a new id (DRiP §5.5.1 as DESIGN.md "Claims by
//! majority" settles it): what each hop of the convergecast reports, how a
//! hop merges its peers' reports, and how the initiator decides.
//!
//! Every report ([`Answer`]) names the centers it speaks for: those that
//! said yes (and hold a claim for this vote) and those that said no. A relay
//! reports its own vote plus the union of what its peers reported, so the
//! initiator counts distinct centers, however many paths a center's answer
//! took, and a relay's "yes" counts only the centers that said yes under it.
//!
//! The initiator grants the claim once the yes-voters it has heard of are a
//! quorum ([`Quorum`]) of all configured centers (itself included); it
//! refuses once too many said no for a quorum to be possible, or a center
//! holds the id under another owner; otherwise, at its deadline, nothing is
//! decided. Two quorums of one id always share a center, and a center says
//! yes to at most one pending claim of an id, so two claims of one id are
//! never both granted (see [`crate::vote`] for the claims).
//!
//! Must never: count a center that did not say yes, count one twice, or
//! decide before a quorum said yes.

use crate::constants::VOTE_ANSWER_CENTERS_MAX;
use regmesh_core::Hlc;
use std::collections::{BTreeMap, BTreeSet};

/// How many of all configured centers must say yes to a new id
/// (`[peer] claims`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quorum {
    /// More than half of all configured centers (the default): a minority
    /// side of a split refuses new ids, one center down costs nothing.
    #[default]
    Majority,
    /// Every configured center (DRiP's rule): one silent center stops new
    /// ids everywhere.
    All,
}

impl Quorum {
    pub fn parse(s: &str) -> Option<Quorum> {
        match s {
            "majority" => Some(Quorum::Majority),
            "all" => Some(Quorum::All),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Quorum::Majority => "majority",
            Quorum::All => "all",
        }
    }

    /// Yes-voters needed among `members` configured centers.
    pub fn needed(self, members: usize) -> usize {
        match self {
            Quorum::Majority => members / 2 + 1,
            Quorum::All => members,
        }
    }
}

/// What one hop reports for itself and every center under it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// Centers that said yes (each holds a claim for this vote).
    pub yes: BTreeSet<String>,
    /// Centers that said no, with why.
    pub no: BTreeMap<String, String>,
    /// A center under this answer holds the id as a live record of this
    /// owner: the id is taken, whatever the count.
    pub owner: Option<String>,
    /// Initiators whose earlier claims of the id expired at a yes-voter
    /// under this answer with no record of the id ([`crate::vote`]): a
    /// grant needs each of them to have said yes too.
    pub doubts: BTreeSet<String>,
    /// The highest version of the id held by any center under this answer
    /// (a tombstone included), if one holds any: the initiator stamps its
    /// create above it, so the create wins the merge over every version a
    /// voter held (PROTOCOL.md, "Votes on new ids").
    pub hlc: Option<Hlc>,
}

/// An answer that names too many centers (nothing was counted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a vote answer names {0} centers, more than {VOTE_ANSWER_CENTERS_MAX}")]
pub struct TooManyCenters(pub usize);

impl Answer {
    /// `center` said yes.
    pub fn yes(center: &str) -> Answer {
        Answer {
            yes: BTreeSet::from([center.to_string()]),
            ..Answer::default()
        }
    }

    /// `center` said no, for `why`.
    pub fn no(center: &str, why: &str) -> Answer {
        Answer {
            no: BTreeMap::from([(center.to_string(), why.to_string())]),
            ..Answer::default()
        }
    }

    /// `center` holds the id as a record of `owner`.
    pub fn owned(center: &str, owner: &str) -> Answer {
        Answer {
            owner: Some(owner.to_string()),
            ..Answer::no(center, &format!("owned by center {owner}"))
        }
    }

    /// Checks the size bound of an answer read from the wire.
    pub fn checked(self) -> Result<Answer, TooManyCenters> {
        let n = self.yes.len() + self.no.len() + self.doubts.len();
        if n > VOTE_ANSWER_CENTERS_MAX {
            return Err(TooManyCenters(n));
        }
        Ok(self)
    }

    /// Adds what `other` reports. A center named as no anywhere is no (it
    /// can only have voted twice by losing its memory in a restart).
    pub fn merge(&mut self, other: Answer) {
        self.yes.extend(other.yes);
        self.no.extend(other.no);
        self.yes.retain(|c| !self.no.contains_key(c));
        self.doubts.extend(other.doubts);
        if self.owner.is_none() {
            self.owner = other.owner;
        }
        self.hlc = self.hlc.max(other.hlc);
    }

    /// This answer, naming `hlc` (the version of the id held here) too.
    pub fn holding(mut self, hlc: Option<Hlc>) -> Answer {
        self.hlc = self.hlc.max(hlc);
        self
    }

    /// DRiP's one word for this answer, as hop `me` sends it: yes when it
    /// said yes itself and nobody under it holds the id.
    pub fn word(&self, me: &str) -> &'static str {
        if self.owner.is_none() && self.yes.contains(me) {
            "yes"
        } else {
            "no"
        }
    }
}

/// One hop collecting its peers' answers to one vote.
#[derive(Debug, Clone)]
pub struct Tally {
    waiting: BTreeSet<String>,
    got: Answer,
}

impl Tally {
    /// Starts from this hop's own answer, waiting for the peers `asked`.
    pub fn new(own: Answer, asked: impl IntoIterator<Item = String>) -> Tally {
        Tally {
            waiting: asked.into_iter().collect(),
            got: own,
        }
    }

    /// The answer of `from`. Returns whether it was taken (from a peer that
    /// was asked and had not answered yet); others change nothing.
    pub fn answer(&mut self, from: &str, answer: Answer) -> bool {
        if !self.waiting.remove(from) {
            return false;
        }
        self.got.merge(answer);
        true
    }

    /// Whether every asked peer answered.
    pub fn is_complete(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Everything heard so far (this hop's own vote included).
    pub fn got(&self) -> &Answer {
        &self.got
    }

    /// Peers still to answer, sorted.
    pub fn missing(&self) -> Vec<String> {
        self.waiting.iter().cloned().collect()
    }
}

/// How a vote ended, for its initiator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A quorum said yes.
    Granted,
    /// The id is owned, or too many said no for a quorum: a claim elsewhere
    /// (HTTP 409).
    Refused(String),
    /// Neither: not enough centers could be heard (HTTP 503, retry).
    Undecided(String),
}

/// The initiator's rule: a quorum of these configured centers.
#[derive(Debug, Clone)]
pub struct Rule {
    quorum: Quorum,
    members: BTreeSet<String>,
}

impl Rule {
    /// `members` are all configured centers, the initiator included.
    pub fn new(quorum: Quorum, members: impl IntoIterator<Item = String>) -> Rule {
        Rule {
            quorum,
            members: members.into_iter().collect(),
        }
    }

    /// Center `id` joined the mesh at runtime (a peer found from DNS): it
    /// counts toward the quorum of votes started from now on. Returns false
    /// (nothing changed) if it already was a member.
    pub fn add_member(&mut self, id: &str) -> bool {
        self.members.insert(id.to_string())
    }

    pub fn quorum(&self) -> Quorum {
        self.quorum
    }

    pub fn members(&self) -> &BTreeSet<String> {
        &self.members
    }

    /// Yes-voters a grant needs.
    pub fn needed(&self) -> usize {
        let n = self.quorum.needed(self.members.len());
        #[cfg(feature = "broken")]
        if crate::broken::is(crate::broken::Variant::TallyDecidesEarly) {
            return n.saturating_sub(1).max(1);
        }
        n
    }

    /// Distinct configured centers that said yes in `a`.
    pub fn yes_count(&self, a: &Answer) -> usize {
        a.yes.iter().filter(|c| self.members.contains(*c)).count()
    }

    /// The decision `a` allows, if any yet; `complete` once nothing more
    /// will be heard (every peer answered, or the deadline passed).
    pub fn decide(&self, a: &Answer, complete: bool) -> Option<Decision> {
        if let Some(owner) = &a.owner {
            return Some(Decision::Refused(format!("the id is owned by center {owner}")));
        }
        let needed = self.needed();
        let yes = self.yes_count(a);
        let unresolved: Vec<&String> = a.doubts.iter().filter(|d| !a.yes.contains(*d)).collect();
        if yes >= needed && unresolved.is_empty() {
            return Some(Decision::Granted);
        }
        let no: Vec<String> =
            a.no.iter()
                .filter(|(c, _)| self.members.contains(*c))
                .map(|(c, why)| format!("{c}: {why}"))
                .collect();
        if self.members.len() - no.len() < needed {
            return Some(Decision::Refused(no.join("; ")));
        }
        if complete && !unresolved.is_empty() && yes >= needed {
            let names: Vec<&str> = unresolved.iter().map(|s| s.as_str()).collect();
            return Some(Decision::Undecided(format!(
                "earlier claims of the id by {} are unresolved (they did not answer)",
                names.join(", ")
            )));
        }
        if complete {
            return Some(Decision::Undecided(format!(
                "{yes} of {} centers said yes, {needed} needed ({} claims)",
                self.members.len(),
                self.quorum.as_str()
            )));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn majority_and_all() {
        assert_eq!(Quorum::Majority.needed(1), 1);
        assert_eq!(Quorum::Majority.needed(2), 2);
        assert_eq!(Quorum::Majority.needed(3), 2);
        assert_eq!(Quorum::Majority.needed(4), 3);
        assert_eq!(Quorum::All.needed(4), 4);
        assert_eq!(Quorum::parse("all"), Some(Quorum::All));
        assert_eq!(Quorum::parse("most"), None);
    }

    #[test]
    fn a_relay_counts_only_who_said_yes_under_it() {
        let rule = Rule::new(Quorum::Majority, names(&["a", "b", "c", "d", "e"]));
        let mut t = Tally::new(Answer::yes("a"), names(&["b"]));
        // b relays: it said yes, c under it said no, d under it said yes.
        let mut b = Answer::yes("b");
        b.merge(Answer::no("c", "pending claim"));
        b.merge(Answer::yes("d"));
        assert!(t.answer("b", b));
        assert_eq!(rule.yes_count(t.got()), 3);
        assert_eq!(rule.decide(t.got(), false), Some(Decision::Granted));
    }

    #[test]
    fn a_member_added_at_runtime_counts_toward_the_quorum() {
        let mut rule = Rule::new(Quorum::Majority, names(&["a"]));
        assert_eq!(rule.needed(), 1);
        assert!(rule.add_member("b"));
        assert!(!rule.add_member("b"), "duplicate: unchanged");
        assert_eq!(rule.needed(), 2);
        let mut a = Answer::yes("a");
        assert_eq!(rule.decide(&a, false), None, "b must say yes too");
        a.merge(Answer::yes("b"));
        assert_eq!(rule.decide(&a, false), Some(Decision::Granted));
    }
}
