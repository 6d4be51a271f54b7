//! NOTIFY/RFI dispatch (document 003): which (verb, type) the node answers
//! itself ([`BUILTIN`]), which front registered which type, and what a
//! received message becomes. Must never let two fronts, or a front and the
//! node, hold one (verb, type), nor answer a type nobody registered with
//! anything but a rejection that says why.

use super::{Command, Floods};
use crate::node_state::NodeState;
use crate::wire::flood::{valid_type, Answer, Message, StateNotice, Verb, TYPE_BYTES_MAX};
use std::collections::HashMap;

/// Types the node answers itself: NOTIFY `state`, RFI `sync-state`.
pub const BUILTIN: &[(Verb, &str)] = &[(Verb::Notify, "state"), (Verb::Rfi, "sync-state")];

/// Types one center's fronts may register, at most.
pub const FRONT_TYPES_MAX: usize = 1024;

/// A message type could not be registered. Nothing was registered.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RegisterError {
    #[error("{verb} type {typ:?} must be 1 to {TYPE_BYTES_MAX} of a-z 0-9 . -")]
    BadType { verb: &'static str, typ: String },
    #[error("{verb} type {typ:?} is already handled by {by}")]
    Taken {
        verb: &'static str,
        typ: String,
        by: String,
    },
    #[error("more than {FRONT_TYPES_MAX} peer message types")]
    TooMany,
}

/// Which front handles which (verb, type) at this center.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fronts {
    by_type: HashMap<(Verb, String), String>,
}

impl Fronts {
    /// Registers (`verb`, `typ`) for front `front`.
    pub fn register(&mut self, front: &str, verb: Verb, typ: &str) -> Result<(), RegisterError> {
        let name = verb.name();
        if !valid_type(typ) {
            return Err(RegisterError::BadType {
                verb: name,
                typ: typ.into(),
            });
        }
        if BUILTIN.contains(&(verb, typ)) {
            return Err(RegisterError::Taken {
                verb: name,
                typ: typ.into(),
                by: "the node".into(),
            });
        }
        if let Some(by) = self.by_type.get(&(verb, typ.to_string())) {
            return Err(RegisterError::Taken {
                verb: name,
                typ: typ.into(),
                by: format!("front {by}"),
            });
        }
        if self.by_type.len() >= FRONT_TYPES_MAX {
            return Err(RegisterError::TooMany);
        }
        self.by_type.insert((verb, typ.to_string()), front.to_string());
        Ok(())
    }

    /// The front that registered (`verb`, `typ`).
    pub fn front_of(&self, verb: Verb, typ: &str) -> Option<&str> {
        self.by_type.get(&(verb, typ.to_string())).map(String::as_str)
    }
}

fn parse_state(s: &str) -> Option<NodeState> {
    [NodeState::Active, NodeState::Inactive, NodeState::Sync]
        .into_iter()
        .find(|n| n.as_str() == s)
}

impl Floods {
    /// A NOTIFY or RFI from peer `sender`: emits exactly one of
    /// [`Command::Answer`], [`Command::Announce`],
    /// [`Command::AnswerSyncState`] or [`Command::DeliverToFront`].
    pub fn on_message(&mut self, _now_ms: u64, sender: &str, verb: Verb, message: Message, out: &mut Vec<Command>) {
        let typ = message.typ.clone();
        let cmd = match (verb, typ.as_str()) {
            (_, "") => Command::Answer(Answer::rejected(format!("a {} needs a type", verb.name()))),
            (Verb::Notify, "state") => {
                let state = serde_json::from_value::<StateNotice>(message.body)
                    .ok()
                    .and_then(|n| parse_state(&n.state));
                match state {
                    Some(state) => Command::Announce {
                        peer: sender.to_string(),
                        state,
                    },
                    None => Command::Answer(Answer::rejected("state must be active, inactive or sync")),
                }
            }
            (Verb::Rfi, "sync-state") => Command::AnswerSyncState,
            (verb, typ) => match self.fronts.front_of(verb, typ) {
                Some(front) => Command::DeliverToFront {
                    front: front.to_string(),
                    verb,
                    sender: sender.to_string(),
                    message,
                },
                None => {
                    let does = match verb {
                        Verb::Notify => "handle NOTIFY",
                        Verb::Rfi => "answer RFI",
                    };
                    Command::Answer(Answer::rejected(format!("{} does not {does} type {typ:?}", self.me)))
                }
            },
        };
        out.push(cmd);
    }
}
