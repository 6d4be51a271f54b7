//! Sending floods: own committed changes batched and counted, the fan-out
//! of a message to the peers that receive it, and the per-peer call slots.
//! Must never send a peer a record its policy hides, or let a queue grow
//! past [`PEER_QUEUE`](crate::constants::PEER_QUEUE).

use super::{for_peer, Command, Floods, View};
use crate::constants::FLOOD_BATCH_MAX;
use crate::flood;
use crate::wire::flood::{Flood, FloodHead, REACHED_MAX};
use regmesh_core::{Record, Visibility};

impl Floods {
    /// This center committed `records` (its own, in seq order; others'
    /// are skipped): flood them in batches of at most [`FLOOD_BATCH_MAX`].
    /// Each batch's counter is its highest seq and covers every own seq
    /// from its lowest; a counter not above the last one sent (the seq went
    /// back, a store restored from a backup) is sent with a reset.
    pub fn on_committed(&mut self, _now_ms: u64, records: &[Record], view: &impl View, out: &mut Vec<Command>) {
        let own: Vec<&Record> = records.iter().filter(|r| r.origin == self.me).collect();
        for batch in own.chunks(FLOOD_BATCH_MAX) {
            let counter = batch.iter().map(|r| r.seq).max().expect("chunks are not empty");
            let from = batch.iter().map(|r| r.seq).min().expect("chunks are not empty");
            let reset = self.last_counter.is_some_and(|last| counter <= last);
            self.last_counter = Some(counter);
            self.stats.initiated += 1;
            let head = FloodHead {
                initiator: self.me.clone(),
                counter,
                reset,
                seq_from: Some(from),
                reached: Vec::new(),
            };
            let records: Vec<Record> = batch.iter().map(|r| (*r).clone()).collect();
            self.fan_out(head, &records, None, view, out);
        }
    }

    /// Queues `records` under `head` to every peer [`flood::sends_to`]
    /// names but `except` and those `head.reached` names, each getting what
    /// its policy allows; returns how many peers got a copy. The copies say
    /// in `reached` which centers this hop (or an earlier one) sends every
    /// record to, so their relays skip them.
    pub(super) fn fan_out(
        &mut self,
        head: FloodHead,
        records: &[Record],
        except: Option<&str>,
        view: &impl View,
        out: &mut Vec<Command>,
    ) -> usize {
        let state = view.node_state();
        if !state.propagates() {
            return 0;
        }
        let relayed = head.initiator != self.me;
        // Computed once per message, then judged per peer.
        let parts: Vec<Vec<Visibility>> = records.iter().map(|r| view.parts(r)).collect();
        let mut copies = Vec::new();
        let mut reached = head.reached.clone();
        for pi in 0..self.peers.len() {
            let id = &self.peers[pi].id;
            if !flood::sends_to(state, id, view.receives_propagation(id), &head.initiator, except)
                || head.reached.binary_search(id).is_ok()
            {
                continue;
            }
            let allowed = for_peer(&self.peers[pi].policy, records, &parts, relayed);
            if !flood::worth_sending(allowed.len(), head.seq_from.is_some()) {
                continue;
            }
            // Reached: it gets every record, and its slot or queue takes the
            // copy for sure.
            if allowed.len() == records.len() && self.has_room(pi) && reached.len() < REACHED_MAX {
                reached.push(id.clone());
            }
            copies.push((pi, allowed));
        }
        reached.sort();
        let mut queued = 0;
        for (pi, allowed) in copies {
            let head = FloodHead {
                reached: reached.clone(),
                ..head.clone()
            };
            if self.enqueue(pi, Flood { head, records: allowed }, out) {
                queued += 1;
            }
        }
        queued
    }

    /// A [`Command::SendFlood`] call to `peer` ended (`ok`: answered 200):
    /// its slot goes to the next flood waiting.
    pub fn on_sent(&mut self, _now_ms: u64, peer: &str, ok: bool, out: &mut Vec<Command>) {
        let Some(p) = self.peers.iter_mut().find(|p| p.id == peer) else {
            return;
        };
        p.in_flight = p.in_flight.saturating_sub(1);
        if ok {
            p.stats.sent += 1;
        } else {
            p.stats.failed += 1;
        }
        if let Some(flood) = p.queue.pop_front() {
            p.in_flight += 1;
            out.push(Command::SendFlood {
                peer: p.id.clone(),
                flood,
            });
        }
    }
}
