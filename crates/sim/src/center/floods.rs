//! A simulated center's floods (the node's `peer/mesh/floods.rs`): the
//! fan-out of records to the peers proto says they go to, and merging other
//! centers' versions into the store. Must never relay to a peer what its
//! export policy hides.

use super::{Center, Change, Out};
use crate::msg::Msg;
use regmesh_core::Record;
use regmesh_proto::flood;

impl Center {
    /// Sends `records` of `initiator` (covering seqs `seq_from..=counter`)
    /// to every peer proto says it goes to, each getting what its policy
    /// allows.
    pub(super) fn fan_out(
        &mut self,
        initiator: &str,
        (seq_from, counter): (u64, u64),
        records: &[Record],
        from: Option<usize>,
        out: &mut Vec<Out>,
    ) {
        let relayed = initiator != self.id;
        let from_id = from.and_then(|i| self.peer_pos(i)).map(|p| self.peers[p].id.clone());
        for p in &self.peers {
            if !flood::sends_to(self.state, &p.id, &p.life, initiator, from_id.as_deref()) {
                continue;
            }
            let allowed: Vec<Record> = records
                .iter()
                .filter(|r| flood::allowed(&p.policy, r, &[], relayed))
                .cloned()
                .collect();
            if !flood::worth_sending(allowed.len(), true) {
                continue;
            }
            out.push(Out::Send {
                to: p.idx,
                msg: Msg::Flood {
                    initiator: initiator.to_string(),
                    counter,
                    seq_from,
                    records: allowed,
                },
            });
        }
    }

    /// Merges other centers' versions (relaxed if so configured).
    pub(super) fn apply_remote(&mut self, now: u64, records: Vec<Record>) {
        let local = self.local(now);
        let durable = !self.settings.relaxed_replicas;
        for r in records {
            if r.origin == self.id {
                // Only this center issues its own versions; a copy coming
                // back is older or equal.
                continue;
            }
            let key = (r.kind.clone(), r.id.clone());
            if self.store.get(&key).is_none_or(|c| r.supersedes(c)) {
                let _ = self.hlc.observe(r.version, local);
                self.store.put(r.clone(), durable);
                self.changes.push((key, Change::Put(r)));
            }
        }
    }
}
