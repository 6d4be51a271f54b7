//! A simulated center's floods: the executor of proto's floods part
//! (`regmesh_proto::mesh::floods`), as the node's `peer/mesh/floods.rs` is.
//! It hands the part this center's own writes and the floods that arrive,
//! merges what the part says to, and turns `SendFlood` into messages on the
//! simulated links. The links take every message at once, so each call
//! slot is free again as soon as its message is on the wire. Must never
//! decide what is flooded, applied or relayed, nor to whom.

use super::{Center, Change, Out};
use crate::msg::Msg;
use regmesh_core::{Record, Visibility};
use regmesh_proto::mesh::floods::{Arrival, Command, Floods, View};
use regmesh_proto::node_state::NodeState;
use regmesh_proto::sync::Ceilings;
use regmesh_proto::wire::flood::Flood;

/// What the floods part sees of a simulated center.
struct SimView<'a> {
    state: NodeState,
    peers: &'a [super::PeerSlot],
    ceilings: &'a Ceilings,
}

impl View for SimView<'_> {
    fn node_state(&self) -> NodeState {
        self.state
    }

    fn receives_propagation(&self, peer: &str) -> bool {
        self.peers.iter().any(|p| p.id == peer && p.life.receives_propagation())
    }

    /// Simulated bodies have no parts.
    fn parts(&self, _: &Record) -> Vec<Visibility> {
        Vec::new()
    }

    fn backs(&self, origin: &str, counter: u64) -> bool {
        self.ceilings.backs(origin, counter)
    }
}

impl Center {
    /// The floods part of a center with these peers, as the node builds it
    /// at start: its last counter is its last own seq.
    pub(super) fn new_floods(id: &str, peers: &[super::PeerSlot], own_seq: u64) -> Floods {
        Floods::new(
            id,
            peers.iter().map(|p| (p.id.clone(), p.policy.clone())),
            Some(own_seq),
        )
    }

    /// Own records just committed: flooded as the part batches them.
    pub(super) fn flood_own(&mut self, now: u64, records: &[Record], out: &mut Vec<Out>) {
        let mut cmds = Vec::new();
        let view = SimView {
            state: self.state,
            peers: &self.peers,
            ceilings: &self.ceilings,
        };
        self.floods.on_committed(self.local(now), records, &view, &mut cmds);
        self.run_floods(now, cmds, out);
    }

    /// A flood arrived from center `from` (a peer).
    pub(super) fn on_flood(&mut self, now: u64, from: usize, flood: Flood, out: &mut Vec<Out>) {
        let Some(pi) = self.peer_pos(from) else { return };
        let sender = self.peers[pi].id.clone();
        let local = self.local(now);
        let view = SimView {
            state: self.state,
            peers: &self.peers,
            ceilings: &self.ceilings,
        };
        let mut cmds = Vec::new();
        if self.floods.on_flood(local, &sender, &flood.head, &view) == Arrival::Verify {
            // Simulated records carry no signatures to check: all pass.
            self.floods.on_verified(local, &sender, flood, 0, &view, &mut cmds);
        }
        self.run_floods(now, cmds, out);
    }

    /// Executes the part's commands; results go back to it at once.
    fn run_floods(&mut self, now: u64, mut cmds: Vec<Command>, out: &mut Vec<Out>) {
        let local = self.local(now);
        let mut i = 0;
        while i < cmds.len() {
            match cmds[i].clone() {
                Command::SendFlood { peer, flood } => {
                    if let Some(p) = self.peers.iter().find(|p| p.id == peer) {
                        out.push(Out::Send {
                            to: p.idx,
                            msg: Msg::Flood(flood),
                        });
                    }
                    let mut more = Vec::new();
                    self.floods.on_sent(local, &peer, true, &mut more);
                    cmds.extend(more);
                }
                Command::Apply { records, then } => {
                    self.apply_remote(now, records);
                    if let Some(done) = then {
                        let mut more = Vec::new();
                        let view = SimView {
                            state: self.state,
                            peers: &self.peers,
                            ceilings: &self.ceilings,
                        };
                        self.floods.on_applied(local, done, &view, &mut more);
                        cmds.extend(more);
                    }
                }
                Command::Witness { origin, seq } => self.ceilings.witness(&origin, seq),
                Command::Covered { origin, from, through } => self.advance(&origin, from, through),
                // NOTIFY/RFI are not simulated.
                Command::Answer(_)
                | Command::Announce { .. }
                | Command::AnswerSyncState
                | Command::DeliverToFront { .. } => {}
            }
            i += 1;
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
