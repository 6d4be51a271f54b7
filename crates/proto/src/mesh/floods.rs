//! Part `floods` of the mesh machine (see the module docs of `mesh`): this
//! center's own committed changes flooded to its peers, the receipt of
//! other centers' floods (dedup, unbacked relays, what is applied and what
//! relayed, and to whom), the bounded per-peer flood queues, and the
//! dispatch of NOTIFY/RFI messages to the node or to the front that
//! registered their type.
//!
//! Inputs: [`Floods::on_committed`] (own changes, in seq order),
//! [`Floods::on_flood`] then [`Floods::on_verified`] (a peer's flood, before
//! and after the runtime checked its signatures), [`Floods::on_applied`]
//! (the runtime merged what [`Command::Apply`] asked), [`Floods::on_sent`]
//! (a [`Command::SendFlood`] call ended) and [`Floods::on_message`] (a
//! NOTIFY or RFI). What it must know of the rest of the mesh (node state, a
//! peer's lifecycle, a record's part visibilities, an origin's ceiling) it
//! asks through [`View`].
//!
//! Rules (PROTOCOL.md, "Flooding" and "Flood deduplication"):
//! - an own change goes to every peer [`flood::sends_to`] names, each
//!   getting the records its export policy allows (parts included), in
//!   batches of at most [`FLOOD_BATCH_MAX`](crate::constants::FLOOD_BATCH_MAX); the counter is the batch's
//!   highest seq, `seq_from` its lowest, and a counter not above the last
//!   one sent goes with `DRiP-Node-Counter-reset`;
//! - a received flood is dropped as a duplicate when its window has the
//!   counter; applied but not relayed when the window is past it
//!   ([`Seen::Old`]) or when it is a relay whose counter the origin has not
//!   shown (unbacked: it marks no window and moves no watermark); applied,
//!   covered and relayed (never back to its sender or initiator, nor to a
//!   center the message says an earlier hop reached) otherwise;
//! - a refused record (bad signature, unknown kind) stops the message from
//!   marking, covering or relaying anything;
//! - at most [`FLOODS_IN_FLIGHT`] calls per peer, [`PEER_QUEUE`] waiting;
//!   more are dropped and counted; a flood that continues the last one
//!   waiting joins it (see `coalesce`).
//!
//! Must never: perform I/O, read a clock, verify or merge records itself,
//! relay what it did not accept, or keep anything without a bound.

use crate::constants::{FLOODS_IN_FLIGHT, FLOOD_BATCH_MAX, FLOOD_INITIATORS_MAX, PEER_QUEUE};
use crate::dedup::CounterWindow;
use crate::flood;
use crate::node_state::NodeState;
use crate::policy::ExportPolicy;
use crate::wire::flood::{Answer, Flood, Message, Verb};
use regmesh_core::{Record, Visibility};
use std::collections::{HashMap, VecDeque};

mod fronts;
mod receive;
mod send;
#[cfg(test)]
mod tests;

pub use fronts::{Fronts, RegisterError, BUILTIN};
pub use receive::{Applied, Arrival, Receipt};

/// What the floods part asks of the rest of the mesh at this center.
pub trait View {
    /// This center's DRiP state (part `link`).
    fn node_state(&self) -> NodeState;
    /// Whether `peer` receives propagation now (its lifecycle, part `link`).
    fn receives_propagation(&self, peer: &str) -> bool;
    /// Visibilities of the parts of `r` (an agent's capabilities); an
    /// unreadable body should answer `[Visibility::Local]`.
    fn parts(&self, r: &Record) -> Vec<Visibility>;
    /// Whether `origin` has shown it reached `counter` (its ceiling, part
    /// `pulls`: `sync::Ceilings::backs`), before this message's records.
    fn backs(&self, origin: &str, counter: u64) -> bool;
}

/// What the runtime does for the floods part.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `POST /commit` `flood` to `peer`; report the end with
    /// [`Floods::on_sent`].
    SendFlood { peer: String, flood: Flood },
    /// Merge these verified records of other centers (idempotent); if
    /// `then` is set and the merge committed, call [`Floods::on_applied`]
    /// with it.
    Apply {
        records: Vec<Record>,
        then: Option<Applied>,
    },
    /// `origin` has shown it reached `seq` (raise its ceiling).
    Witness { origin: String, seq: u64 },
    /// Every seq of `origin` in `from..=through` is covered here: advance
    /// its watermark (no further than its ceiling).
    Covered { origin: String, from: u64, through: u64 },
    /// Answer the NOTIFY/RFI being handled.
    Answer(Answer),
    /// Built-in NOTIFY `state`: `peer` announced its DRiP state; answer
    /// accepted.
    Announce { peer: String, state: NodeState },
    /// Built-in RFI `sync-state`: answer with this center's DRiP state,
    /// watermarks and peers' states (the runtime's to read).
    AnswerSyncState,
    /// Hand the message to the handler `front` registered for its type;
    /// its answer is the answer.
    DeliverToFront {
        front: String,
        verb: Verb,
        sender: String,
        message: Message,
    },
}

/// Counters for `/v1/peers`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FloodStats {
    /// Flood messages of own changes (before fan-out).
    pub initiated: u64,
    /// Flood messages received.
    pub received: u64,
    pub duplicates: u64,
    /// Relayed copies queued (one per peer).
    pub relayed: u64,
    /// Messages with a refused record.
    pub refused: u64,
    /// Relays whose counter the origin had not shown (applied, not
    /// relayed, no window marked).
    pub unbacked: u64,
}

/// Flow counters of one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerFlowStats {
    /// Calls answered 200.
    pub sent: u64,
    /// Floods dropped because its queue was full.
    pub dropped: u64,
    /// Calls that failed or were refused.
    pub failed: u64,
}

/// One peer's flow: what it may receive and its bounded queue.
#[derive(Debug, Clone)]
struct PeerFlow {
    id: String,
    policy: ExportPolicy,
    /// Waiting for a call slot; at most [`PEER_QUEUE`].
    queue: VecDeque<Flood>,
    /// Calls under way; at most [`FLOODS_IN_FLIGHT`].
    in_flight: usize,
    stats: PeerFlowStats,
}

/// The floods of one center.
#[derive(Debug, Clone)]
pub struct Floods {
    me: String,
    /// The last own counter sent (a later one not above it is a reset).
    last_counter: Option<u64>,
    /// Seen counters per initiator, at most [`FLOOD_INITIATORS_MAX`].
    windows: HashMap<String, CounterWindow>,
    peers: Vec<PeerFlow>,
    fronts: Fronts,
    stats: FloodStats,
}

impl Floods {
    /// The floods of center `me` with `peers` (id and what it may receive).
    /// `last_counter` is the last own counter this center may have sent
    /// before (its persisted own seq), so a restart never needs a reset.
    pub fn new(me: &str, peers: impl IntoIterator<Item = (String, ExportPolicy)>, last_counter: Option<u64>) -> Self {
        Floods {
            me: me.to_string(),
            last_counter,
            windows: HashMap::new(),
            peers: peers
                .into_iter()
                .map(|(id, policy)| PeerFlow {
                    id,
                    policy,
                    queue: VecDeque::new(),
                    in_flight: 0,
                    stats: PeerFlowStats::default(),
                })
                .collect(),
            fronts: Fronts::default(),
            stats: FloodStats::default(),
        }
    }

    /// Adds peer `id` (what it may receive: `policy`) at runtime, with an
    /// empty queue; it receives floods from the next own change on.
    /// Returns false (nothing changed) if it is already here.
    pub fn add_peer(&mut self, id: &str, policy: ExportPolicy) -> bool {
        if self.peers.iter().any(|p| p.id == id) {
            return false;
        }
        self.peers.push(PeerFlow {
            id: id.to_string(),
            policy,
            queue: VecDeque::new(),
            in_flight: 0,
            stats: PeerFlowStats::default(),
        });
        true
    }

    /// The NOTIFY/RFI types fronts registered (set before serving).
    pub fn set_fronts(&mut self, fronts: Fronts) {
        self.fronts = fronts;
    }

    pub fn stats(&self) -> FloodStats {
        self.stats
    }

    /// `peer`'s flow counters (zero for an unknown peer).
    pub fn peer_stats(&self, peer: &str) -> PeerFlowStats {
        self.peers
            .iter()
            .find(|p| p.id == peer)
            .map(|p| p.stats)
            .unwrap_or_default()
    }

    /// Floods waiting for `peer` and calls under way to it.
    pub fn backlog(&self, peer: &str) -> (usize, usize) {
        self.peers
            .iter()
            .find(|p| p.id == peer)
            .map_or((0, 0), |p| (p.queue.len(), p.in_flight))
    }

    fn window(&mut self, initiator: &str) -> Option<&mut CounterWindow> {
        if !self.windows.contains_key(initiator) && self.windows.len() >= FLOOD_INITIATORS_MAX {
            return None;
        }
        Some(self.windows.entry(initiator.to_string()).or_default())
    }

    /// Whether peer `pi` takes one more flood without dropping it (a free
    /// call slot or room in its queue).
    fn has_room(&self, pi: usize) -> bool {
        let p = &self.peers[pi];
        p.in_flight < FLOODS_IN_FLIGHT || p.queue.len() < PEER_QUEUE
    }

    /// Sends or queues `flood` to peer `pi`, or drops it if its queue is
    /// full.
    fn enqueue(&mut self, pi: usize, flood: Flood, out: &mut Vec<Command>) -> bool {
        let p = &mut self.peers[pi];
        if p.in_flight < FLOODS_IN_FLIGHT {
            p.in_flight += 1;
            out.push(Command::SendFlood {
                peer: p.id.clone(),
                flood,
            });
            true
        } else if p.queue.back_mut().is_some_and(|last| coalesce(last, &flood)) {
            true
        } else if p.queue.len() < PEER_QUEUE {
            p.queue.push_back(flood);
            true
        } else {
            p.stats.dropped += 1;
            false
        }
    }
}

/// Appends `next` to `last` (both waiting for the same peer) when one
/// message can say what the two said: the same initiator, no reset, a higher
/// counter, and covered ranges that are both absent or meet end to end, at
/// most [`FLOOD_BATCH_MAX`] records together. Under load this turns a queue
/// of small floods into few large ones (one call, one token, one signature
/// check pass per batch at the peer). Returns whether it did; `last` is
/// unchanged when not.
fn coalesce(last: &mut Flood, next: &Flood) -> bool {
    let (a, b) = (&last.head, &next.head);
    let ranges_meet = match (a.seq_from, b.seq_from) {
        (None, None) => true,
        (Some(_), Some(from)) => from == a.counter + 1,
        _ => false,
    };
    if a.initiator != b.initiator
        || a.reset
        || b.reset
        || b.counter <= a.counter
        || !ranges_meet
        || last.records.len() + next.records.len() > FLOOD_BATCH_MAX
    {
        return false;
    }
    // Reached by the joined message: reached by both.
    let both: Vec<String> = a
        .reached
        .iter()
        .filter(|id| b.reached.binary_search(id).is_ok())
        .cloned()
        .collect();
    last.head.counter = b.counter;
    last.head.reached = both;
    last.records.extend(next.records.iter().cloned());
    true
}

/// Whether `flood` is worth a message to a peer with `policy` (see
/// [`flood::worth_sending`]); the records it may have.
fn for_peer(policy: &ExportPolicy, records: &[Record], parts: &[Vec<Visibility>], relayed: bool) -> Vec<Record> {
    records
        .iter()
        .zip(parts)
        .filter(|(r, p)| flood::allowed(policy, r, p, relayed))
        .map(|(r, _)| r.clone())
        .collect()
}
