//! Peer messages of part `vote` (see the module docs of `wire`): the body
//! of `POST /voting` ([`VoteRequest`]) and the body of a vote answer,
//! `POST /votingphase/node/:id/response/:r` ([`AnswerBody`]), which names
//! the centers the answer speaks for (PROTOCOL.md, "Votes on new ids").
//! The vote itself is named by the `DRiP-Node-ID` and `DRiP-Node-Counter`
//! headers, which the runtimes carry beside these bodies.
//!
//! Owns the shape of these messages and their bounds only. Must never
//! decide a vote (that is `mesh::votes`, `vote` and `tally`).

use crate::tally::{Answer, TooManyCenters};
use regmesh_core::Hlc;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Bytes of a `POST /voting` body read, at most.
pub const VOTE_REQUEST_BYTES_MAX: usize = 4096;

/// Bytes of a vote answer body read, at most (it names up to
/// [`crate::constants::VOTE_ANSWER_CENTERS_MAX`] centers).
pub const VOTE_ANSWER_BYTES_MAX: usize = 512 << 10;

/// `POST /voting`: claim `kind/id` for the vote the headers name, and
/// answer by `deadline_ms` (this center's clock, ms since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRequest {
    /// Missing reads as empty, which the receiver refuses as invalid.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub id: String,
    /// Missing (a plain DRiP node): [`crate::constants::VOTE_DEADLINE_DEFAULT_MS`]
    /// from the request's arrival.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

/// A vote request body that cannot be read. Nothing was claimed.
#[derive(Debug, thiserror::Error)]
#[error("a vote request body is {{\"kind\",\"id\",\"deadline_ms\"}}: {0}")]
pub struct RequestError(#[from] serde_json::Error);

impl VoteRequest {
    pub fn decode(body: &[u8]) -> Result<VoteRequest, RequestError> {
        Ok(serde_json::from_slice(body)?)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a vote request encodes")
    }
}

/// The word in a vote answer's path (`:r`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Word {
    Yes,
    No,
}

impl Word {
    pub fn parse(s: &str) -> Option<Word> {
        match s {
            "yes" => Some(Word::Yes),
            "no" => Some(Word::No),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Word::Yes => "yes",
            Word::No => "no",
        }
    }

    /// DRiP's one word for `answer` as hop `me` sends it.
    pub fn of(answer: &Answer, me: &str) -> Word {
        match answer.word(me) {
            "yes" => Word::Yes,
            _ => Word::No,
        }
    }
}

/// The body of a vote answer: `{"reason", "yes": [ids], "no": {id: why},
/// "owner", "doubts": [ids], "hlc"}`. A body without `"yes"` (a plain DRiP node,
/// or no body at all) speaks for its sender alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerBody {
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub yes: Option<BTreeSet<String>>,
    #[serde(default)]
    pub no: Option<BTreeMap<String, NoReason>>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub doubts: Option<BTreeSet<String>>,
    /// The highest version of the id the centers under this answer hold
    /// (`"<wall_ms>.<logical>"`), absent when none holds one. Optional: an
    /// older center neither sends nor reads it (no version bump).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hlc: Option<Hlc>,
}

/// Why a center said no; a reason that is not a string reads as none given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NoReason {
    Text(String),
    Other(serde_json::Value),
}

impl NoReason {
    fn text(self) -> String {
        match self {
            NoReason::Text(s) => s,
            NoReason::Other(_) => "no reason given".into(),
        }
    }
}

/// An answer body that cannot be read. Nothing was counted.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// `:r` is neither `yes` nor `no`.
    #[error("vote {0:?} is not yes or no")]
    Word(String),
    /// A field has the wrong shape.
    #[error(
        "a vote answer body is {{\"reason\",\"yes\":[ids],\"no\":{{id:why}},\"owner\",\"doubts\":[ids],\"hlc\"}}: {0}"
    )]
    Shape(serde_json::Error),
    /// More centers named than [`crate::constants::VOTE_ANSWER_CENTERS_MAX`].
    #[error(transparent)]
    TooMany(#[from] TooManyCenters),
}

impl AnswerBody {
    /// The body hop `me` sends with `answer`.
    pub fn of(me: &str, answer: &Answer) -> AnswerBody {
        let reason = answer
            .no
            .get(me)
            .cloned()
            .or_else(|| answer.owner.as_ref().map(|o| format!("owned by center {o}")));
        AnswerBody {
            reason,
            yes: Some(answer.yes.clone()),
            no: Some(
                answer
                    .no
                    .iter()
                    .map(|(c, why)| (c.clone(), NoReason::Text(why.clone())))
                    .collect(),
            ),
            owner: answer.owner.clone(),
            doubts: Some(answer.doubts.clone()),
            hlc: answer.hlc,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a vote answer encodes")
    }

    /// What `sender` reports with word `word` (`yes`/`no`) and this body.
    pub fn into_answer(self, sender: &str, word: Word) -> Result<Answer, TooManyCenters> {
        let Some(yes) = self.yes else {
            let reason = self.reason.unwrap_or_else(|| format!("center {sender} voted no"));
            let answer = match word {
                Word::Yes => Answer::yes(sender),
                Word::No => Answer::no(sender, &reason),
            };
            return Ok(answer.holding(self.hlc));
        };
        Answer {
            yes,
            no: self
                .no
                .unwrap_or_default()
                .into_iter()
                .map(|(c, why)| (c, why.text()))
                .collect(),
            owner: self.owner,
            doubts: self.doubts.unwrap_or_default(),
            hlc: self.hlc,
        }
        .checked()
    }
}

/// Reads the answer `sender` sent with word `word` and `body` (empty or
/// not JSON: a plain DRiP answer speaking for the sender alone).
pub fn decode_answer(sender: &str, word: &str, body: &[u8]) -> Result<Answer, AnswerError> {
    let word = Word::parse(word).ok_or_else(|| AnswerError::Word(word.to_string()))?;
    let body = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) => {
            serde_json::from_value::<AnswerBody>(serde_json::Value::Object(m)).map_err(AnswerError::Shape)?
        }
        _ => AnswerBody::default(),
    };
    Ok(body.into_answer(sender, word)?)
}

/// The body hop `me` sends with `answer`, and its word.
pub fn encode_answer(me: &str, answer: &Answer) -> (Word, Vec<u8>) {
    (Word::of(answer, me), AnswerBody::of(me, answer).encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::VOTE_ANSWER_CENTERS_MAX;

    #[test]
    fn round_trip_and_plain_drip() {
        let mut a = Answer::yes("c1");
        a.merge(Answer::no("c3", "pending claim by center c9"));
        a.doubts.insert("c7".into());
        let (word, body) = encode_answer("c1", &a);
        assert_eq!(word, Word::Yes);
        assert_eq!(decode_answer("c1", word.as_str(), &body).unwrap(), a);
        assert_eq!(decode_answer("c2", "yes", b"").unwrap(), Answer::yes("c2"));
        assert_eq!(
            decode_answer("c2", "no", br#"{"reason":"mine"}"#).unwrap(),
            Answer::no("c2", "mine")
        );
        assert!(decode_answer("c2", "maybe", b"").is_err());
        assert!(decode_answer("c2", "yes", br#"{"yes":"c2"}"#).is_err());
        assert!(decode_answer("c2", "yes", br#"{"yes":[],"no":[]}"#).is_err());
        let odd = decode_answer("c2", "no", br#"{"yes":[],"no":{"c2":7}}"#).unwrap();
        assert_eq!(odd, Answer::no("c2", "no reason given"));
    }

    #[test]
    fn an_answer_carries_the_voter_s_version_and_an_old_one_parses() {
        let a = Answer::yes("c1").holding(Some(Hlc::new(1008, 2)));
        let (word, body) = encode_answer("c1", &a);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["hlc"], "1008.2");
        assert_eq!(decode_answer("c1", word.as_str(), &body).unwrap(), a);
        // A plain DRiP body with a version, and an older center's body
        // without one (it gives the initiator no clock).
        let plain = decode_answer("c2", "yes", br#"{"hlc":"7.1"}"#).unwrap();
        assert_eq!(plain.hlc, Some(Hlc::new(7, 1)));
        let old = decode_answer("c2", "yes", br#"{"yes":["c2"],"no":{}}"#).unwrap();
        assert_eq!(old, Answer::yes("c2"));
        assert!(decode_answer("c2", "yes", br#"{"yes":["c2"],"hlc":7}"#).is_err());
    }

    #[test]
    fn the_json_is_today_s() {
        let (_, body) = encode_answer("c1", &Answer::owned("c1", "c4"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"reason": "owned by center c4", "yes": [], "no": {"c1": "owned by center c4"},
                "owner": "c4", "doubts": []})
        );
        let r = VoteRequest {
            kind: "agent".into(),
            id: "x".into(),
            deadline_ms: Some(5),
        };
        assert_eq!(r.encode(), br#"{"kind":"agent","id":"x","deadline_ms":5}"#);
        assert_eq!(VoteRequest::decode(br#"{"id":"x"}"#).unwrap().deadline_ms, None);
        assert!(VoteRequest::decode(b"[1]").is_err());
    }

    #[test]
    fn an_answer_naming_too_many_centers_is_refused() {
        let yes: Vec<String> = (0..=VOTE_ANSWER_CENTERS_MAX).map(|i| format!("c{i}")).collect();
        let body = serde_json::to_vec(&serde_json::json!({ "yes": yes })).unwrap();
        assert!(matches!(
            decode_answer("c1", "yes", &body),
            Err(AnswerError::TooMany(TooManyCenters(n))) if n == VOTE_ANSWER_CENTERS_MAX + 1
        ));
    }
}
