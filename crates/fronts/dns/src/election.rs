//! One election (document 003 §3): START names an election id; every
//! participant sends a VOTE (a random u16) to all others; once it holds
//! every participant's vote, it sends RESULT (the highest vote's identity)
//! or INVALID when two votes are equal; a RESULT naming another winner
//! than its own is answered with INVALID.
//!
//! Pure: the messages go out through the caller. Must never: decide before
//! every participant voted, or pick a winner among equal votes.

use serde::Serialize;
use std::collections::BTreeMap;

/// Where an election stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Voting,
    Decided,
    Invalid,
}

/// An election of one zone, as this agent saw it.
#[derive(Debug, Clone, Serialize)]
pub struct Election {
    pub id: String,
    pub initiator: String,
    /// The identities that vote (the zone's HSYNC identities).
    pub participants: Vec<String>,
    /// Identity → vote.
    pub votes: BTreeMap<String, u16>,
    pub phase: Phase,
    pub winner: Option<String>,
    /// Why it is invalid.
    pub reason: Option<String>,
    /// Results received: identity → the winner it named.
    pub results: BTreeMap<String, String>,
    pub started_ms: u64,
}

/// What the caller must send after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Send {
    Nothing,
    Result(String),
    Invalid(String),
}

impl Election {
    pub fn new(id: String, initiator: String, participants: Vec<String>, now_ms: u64) -> Self {
        Election {
            id,
            initiator,
            participants,
            votes: BTreeMap::new(),
            phase: Phase::Voting,
            winner: None,
            reason: None,
            results: BTreeMap::new(),
            started_ms: now_ms,
        }
    }

    /// Records `identity`'s vote; decides once every participant voted.
    pub fn vote(&mut self, identity: &str, vote: u16) -> Send {
        if self.phase != Phase::Voting || !self.participants.iter().any(|p| p == identity) {
            return Send::Nothing;
        }
        self.votes.insert(identity.to_string(), vote);
        if self.votes.len() < self.participants.len() {
            return Send::Nothing;
        }
        match decide(&self.votes) {
            Ok(w) => {
                self.phase = Phase::Decided;
                self.winner = Some(w.clone());
                // Results that arrived before our own decision.
                if let Some((who, other)) = self.results.iter().find(|(_, r)| **r != w) {
                    return self.invalidate(format!("{who} named {other} the winner, but {w} won here"));
                }
                Send::Result(w)
            }
            Err(why) => self.invalidate(why),
        }
    }

    /// Records `from`'s RESULT.
    pub fn result(&mut self, from: &str, winner: &str) -> Send {
        self.results.insert(from.to_string(), winner.to_string());
        match (&self.phase, &self.winner) {
            (Phase::Decided, Some(w)) if w != winner => {
                let why = format!("{from} named {winner} the winner, but {w} won here");
                self.invalidate(why)
            }
            _ => Send::Nothing,
        }
    }

    /// Marks it invalid.
    pub fn invalidate(&mut self, why: String) -> Send {
        self.phase = Phase::Invalid;
        self.winner = None;
        self.reason = Some(why.clone());
        Send::Invalid(why)
    }
}

/// The winner (the highest vote), or why there is none (equal votes).
pub fn decide(votes: &BTreeMap<String, u16>) -> Result<String, String> {
    let mut seen: BTreeMap<u16, &str> = BTreeMap::new();
    for (who, v) in votes {
        if let Some(other) = seen.insert(*v, who) {
            return Err(format!("equal votes: {other} and {who} both voted {v}"));
        }
    }
    seen.last_key_value()
        .map(|(_, w)| w.to_string())
        .ok_or_else(|| "no votes".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e() -> Election {
        Election::new("e1".into(), "a.".into(), vec!["a.".into(), "b.".into(), "c.".into()], 0)
    }

    #[test]
    fn the_highest_vote_wins_once_all_voted() {
        let mut x = e();
        assert_eq!(x.vote("a.", 5), Send::Nothing);
        assert_eq!(x.vote("z.", 9), Send::Nothing, "not a participant");
        assert_eq!(x.vote("b.", 7), Send::Nothing);
        assert_eq!(x.vote("c.", 1), Send::Result("b.".into()));
        assert_eq!(x.result("c.", "b."), Send::Nothing);
        assert!(matches!(x.result("a.", "c."), Send::Invalid(_)));
        assert_eq!(x.phase, Phase::Invalid);
    }

    #[test]
    fn equal_votes_and_early_disagreeing_results_invalidate() {
        let mut x = e();
        x.vote("a.", 7);
        x.vote("b.", 7);
        match x.vote("c.", 1) {
            Send::Invalid(why) => assert!(why.contains("equal votes"), "{why}"),
            other => panic!("{other:?}"),
        }
        let mut y = e();
        y.result("c.", "a.");
        y.vote("a.", 1);
        y.vote("b.", 2);
        assert!(matches!(y.vote("c.", 3), Send::Invalid(_)));
    }
}
