//! A simulated center's receipt of peer messages: each arriving message
//! (HELLO, beats, floods, pull requests and answers, vote requests and
//! answers) handed to the concern that owns it, and small answers given in
//! place. Must never keep protocol state of its own; a message from an
//! unknown peer is ignored.

use super::{Center, Out};
use crate::msg::Msg;
use regmesh_core::Record;
use regmesh_proto::dedup::Seen;
use regmesh_proto::flood;
use regmesh_proto::sync as ae;

impl Center {
    pub fn on_msg(&mut self, now: u64, from: usize, msg: Msg, out: &mut Vec<Out>) {
        let Some(pi) = self.peer_pos(from) else { return };
        match msg {
            Msg::Hello { .. } | Msg::HelloOk { .. } | Msg::Beat { .. } | Msg::BeatOk { .. } => {
                self.on_link_msg(now, pi, msg, out)
            }
            Msg::Flood {
                initiator,
                counter,
                seq_from,
                records,
            } => {
                if !self.state.accepts_updates() {
                    return;
                }
                let seen = if initiator == self.id {
                    Seen::Duplicate
                } else {
                    self.windows
                        .entry(initiator.clone())
                        .or_default()
                        .observe(counter, false)
                };
                if seen == Seen::Duplicate {
                    return;
                }
                if records.iter().any(|r| r.origin != initiator) {
                    return;
                }
                self.apply_remote(now, records.clone());
                self.marks.advance(&initiator, seq_from, counter);
                if flood::relays(seen) {
                    self.fan_out(&initiator, (seq_from, counter), &records, Some(from), out);
                }
            }
            Msg::PullReq {
                run,
                origin,
                after,
                limit,
            } => {
                let policy = self.peers[pi].policy.clone();
                let limit = limit.clamp(1, 1000);
                let mut records = self.store.origin_after(&origin, after, limit);
                let mut more = records.len() == limit;
                let mark = self.mark(&origin);
                if let Some(cut) = records.iter().position(|r| !ae::page_carries(r.seq, mark)) {
                    records.truncate(cut);
                    more = false;
                }
                let last = records.last().map_or(after, |r| r.seq);
                let covered = ae::page_covers(after, last, more, mark);
                let sent: Vec<Record> = records.into_iter().filter(|r| policy.allows(r, &[])).collect();
                out.push(Out::Send {
                    to: from,
                    msg: Msg::PullAnswer {
                        run,
                        origin: origin.clone(),
                        records: sent,
                        covered,
                        more,
                        purged_through: self.store.purged.get(&origin).copied().unwrap_or(0),
                        policy,
                    },
                });
            }
            Msg::PullAnswer {
                run,
                origin,
                records,
                covered,
                more,
                purged_through,
                policy,
            } => self.on_pull_answer(
                now,
                from,
                run,
                origin,
                (records, covered, more, purged_through, policy),
                out,
            ),
            Msg::VoteReq {
                initiator,
                counter,
                key,
                deadline_ms,
            } => {
                if !self.state.accepts_updates() {
                    return;
                }
                self.on_vote_req(now, from, (initiator, counter), key, deadline_ms, out)
            }
            Msg::VoteAnswer {
                initiator,
                counter,
                answer,
            } => {
                let id = self.peers[pi].id.clone();
                let vote_id = (initiator, counter);
                if let Some(c) = self.collecting.get_mut(&vote_id) {
                    if c.tally.answer(&id, answer) {
                        self.settle(now, &vote_id, false, out);
                    }
                }
            }
        }
    }
}
