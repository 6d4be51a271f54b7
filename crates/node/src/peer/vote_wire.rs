//! The JSON of vote messages on the peer wire: the request body of
//! `POST /voting` and the answer body of `POST /votingphase/node/:id/
//! response/:r`, which names the centers the answer speaks for
//! (PROTOCOL.md, "Votes on new ids"). Owns encoding and decoding only; the
//! count is `regmesh_proto::tally`'s, and nothing here decides a vote.

use regmesh_proto::tally::{Answer, TooManyCenters};
use serde_json::{json, Map, Value};

/// An answer body that cannot be read. Nothing was counted.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// `:r` is neither `yes` nor `no`.
    #[error("vote {0:?} is not yes or no")]
    Word(String),
    /// A field has the wrong shape.
    #[error("{0}")]
    Shape(&'static str),
    #[error(transparent)]
    TooMany(#[from] TooManyCenters),
}

/// The body hop `me` sends with `answer`: `{"reason", "yes": [ids],
/// "no": {id: why}, "owner", "doubts": [ids]}`.
pub fn encode_answer(me: &str, answer: &Answer) -> Vec<u8> {
    let reason = answer
        .no
        .get(me)
        .cloned()
        .or_else(|| answer.owner.as_ref().map(|o| format!("owned by center {o}")));
    let body = json!({
        "reason": reason,
        "yes": answer.yes,
        "no": answer.no,
        "owner": answer.owner,
        "doubts": answer.doubts,
    });
    serde_json::to_vec(&body).expect("json")
}

fn names(v: Option<&Value>) -> Result<Vec<String>, AnswerError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or(AnswerError::Shape("center ids are strings"))
            })
            .collect(),
        Some(_) => Err(AnswerError::Shape("\"yes\" and \"doubts\" are arrays of center ids")),
    }
}

/// Reads the answer `sender` sent with word `word` (`yes`/`no`) and `body`.
/// A body without a `"yes"` list is a plain DRiP answer: it speaks for the
/// sender alone.
pub fn decode_answer(sender: &str, word: &str, body: &[u8]) -> Result<Answer, AnswerError> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let reason = v
        .get("reason")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("center {sender} voted no"));
    if !matches!(word, "yes" | "no") {
        return Err(AnswerError::Word(word.to_string()));
    }
    let Some(yes) = v.get("yes") else {
        return Ok(match word {
            "yes" => Answer::yes(sender),
            _ => Answer::no(sender, &reason),
        });
    };
    let no: Map<String, Value> = match v.get("no") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(AnswerError::Shape("\"no\" is an object of center id to reason")),
    };
    let answer = Answer {
        yes: names(Some(yes))?.into_iter().collect(),
        no: no
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap_or("no reason given").to_string()))
            .collect(),
        owner: v.get("owner").and_then(Value::as_str).map(str::to_string),
        doubts: names(v.get("doubts"))?.into_iter().collect(),
    };
    Ok(answer.checked()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_plain_drip() {
        let mut a = Answer::yes("c1");
        a.merge(Answer::no("c3", "pending claim by center c9"));
        a.doubts.insert("c7".into());
        let back = decode_answer("c1", "yes", &encode_answer("c1", &a)).unwrap();
        assert_eq!(back, a);
        assert_eq!(decode_answer("c2", "yes", b"").unwrap(), Answer::yes("c2"));
        assert_eq!(
            decode_answer("c2", "no", br#"{"reason":"mine"}"#).unwrap(),
            Answer::no("c2", "mine")
        );
        assert!(decode_answer("c2", "maybe", b"").is_err());
        assert!(decode_answer("c2", "yes", br#"{"yes":"c2"}"#).is_err());
    }
}
