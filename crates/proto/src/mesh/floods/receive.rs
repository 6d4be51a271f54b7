//! Receiving a peer's flood, in three steps around the runtime's work:
//! [`Floods::on_flood`] (before its signatures are checked: refuse or skip
//! it cheaply), [`Floods::on_verified`] (what is applied, whether it marks
//! the initiator's window, whether it is relayed) and [`Floods::on_applied`]
//! (after the merge committed: witness, cover, relay). Must never mark a
//! window for a message with a refused record or an unbacked counter, nor
//! relay anything before it is applied.

use super::{Command, Floods, View};
use crate::dedup::Seen;
use crate::flood;
use crate::wire::flood::{Flood, FloodHead};

/// What to do with a flood before its records are verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// This center is `inactive`: refuse it (503), nothing changes.
    Inactive,
    /// A copy already seen (or this center's own, come back): answer
    /// `duplicate`, skip the signature checks.
    Duplicate,
    /// Verify its records, then call [`Floods::on_verified`].
    Verify,
}

/// What became of a verified flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// A record is not the initiator's: nothing applied (400).
    Malformed,
    /// Some records were refused: what passed is applied, nothing marked,
    /// covered or relayed (the runtime answers with the refusals).
    Refused,
    /// A copy already seen: nothing applied.
    Duplicate,
    /// A relay's counter the origin has not shown: applied only.
    Unbacked,
    /// Applied; covered and relayed once applied when `relay`, covered
    /// only when too old to judge (`Seen::Old`).
    Accepted { relay: bool },
}

/// What [`Floods::on_applied`] finishes once a merge committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The peer the flood came from.
    pub sender: String,
    pub flood: Flood,
    /// Relay it (its first copy).
    pub relay: bool,
}

impl Floods {
    /// A flood with `head` arrived from peer `sender`.
    pub fn on_flood(&mut self, _now_ms: u64, _sender: &str, head: &FloodHead, view: &impl View) -> Arrival {
        self.stats.received += 1;
        if !view.node_state().accepts_updates() {
            return Arrival::Inactive;
        }
        let seen = if head.initiator == self.me {
            Seen::Duplicate
        } else {
            self.windows
                .get(&head.initiator)
                .map_or(Seen::New, |w| w.peek(head.counter, head.reset))
        };
        if seen == Seen::Duplicate {
            self.stats.duplicates += 1;
            return Arrival::Duplicate;
        }
        Arrival::Verify
    }

    /// The runtime checked `flood`'s records: `flood.records` passed,
    /// `refused` did not. Emits [`Command::Apply`] (and [`Command::Witness`])
    /// unless nothing is to be applied.
    pub fn on_verified(
        &mut self,
        _now_ms: u64,
        sender: &str,
        flood: Flood,
        refused: usize,
        view: &impl View,
        out: &mut Vec<Command>,
    ) -> Receipt {
        let head = &flood.head;
        if flood.records.iter().any(|r| r.origin != head.initiator) {
            return Receipt::Malformed;
        }
        if refused > 0 {
            // What passed is merged (idempotent); the message is not marked
            // seen, covered or relayed, so a refused record is never
            // skipped silently.
            self.stats.refused += 1;
            out.push(Command::Apply {
                records: flood.records,
                then: None,
            });
            return Receipt::Refused;
        }
        // The records' own signatures show how far the origin has reached.
        let shown = flood.records.iter().map(|r| r.seq).max();
        if let Some(seq) = shown {
            out.push(Command::Witness {
                origin: head.initiator.clone(),
                seq,
            });
        }
        let backed = shown.is_some_and(|s| s >= head.counter) || view.backs(&head.initiator, head.counter);
        if head.initiator != sender && !backed {
            // A relay's counter above anything the origin has shown: what
            // it carried is applied, but it marks no window (that would
            // shadow the origin's genuine flood), covers nothing and is not
            // relayed.
            self.stats.unbacked += 1;
            out.push(Command::Apply {
                records: flood.records,
                then: None,
            });
            return Receipt::Unbacked;
        }
        // Marked only now, so an unverifiable message cannot mark a counter
        // as seen and shadow the genuine one. An initiator beyond the
        // bound is judged too old to tell: applied, not relayed.
        let seen = match self.window(&head.initiator) {
            Some(w) => w.observe(head.counter, head.reset),
            None => Seen::Old,
        };
        if seen == Seen::Duplicate {
            self.stats.duplicates += 1;
            return Receipt::Duplicate;
        }
        let relay = flood::relays(seen);
        out.push(Command::Apply {
            records: flood.records.clone(),
            then: Some(Applied {
                sender: sender.to_string(),
                flood,
                relay,
            }),
        });
        Receipt::Accepted { relay }
    }

    /// The merge of an accepted flood committed: the origin's own counter
    /// is its word, the covered range moves the watermark, and its first
    /// copy is relayed to the other peers that receive it.
    pub fn on_applied(&mut self, _now_ms: u64, done: Applied, view: &impl View, out: &mut Vec<Command>) {
        let Applied { sender, flood, relay } = done;
        let head = flood.head;
        if head.initiator == sender {
            out.push(Command::Witness {
                origin: head.initiator.clone(),
                seq: head.counter,
            });
        }
        if let Some(from) = head.seq_from {
            out.push(Command::Covered {
                origin: head.initiator.clone(),
                from,
                through: head.counter,
            });
        }
        if relay {
            let n = self.fan_out(head, &flood.records, Some(&sender), view, out);
            self.stats.relayed += n as u64;
        }
    }
}
