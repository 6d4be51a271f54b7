//! One simulated registry center: the node's mesh runtime (peer/mesh.rs)
//! with its I/O replaced by returned effects, and its store by maps with the
//! same durability rules.
//!
//! Every protocol decision is a call into `regmesh_proto` — dedup windows,
//! peer lifecycles, node state, flood targets and export policy,
//! watermarks, pull and resync decisions, claims and vote tallies — so the
//! simulator tests the code the node runs. What is modelled here instead of
//! shared: HTTP, signatures, the writer's batching, digests and full sync
//! (see the crate docs).
//!
//! Durability as the node has it (ARCHITECTURE.md, "Durability"): a center's
//! own writes are durable before they are acknowledged; other centers'
//! versions may be committed relaxed, durable at the next durable commit or
//! within a second; watermarks are saved (durably) every two seconds;
//! claims and doubts given to other centers' votes are durable when given.
//! A crash keeps only the durable state.
//!
//! This file holds the types, construction, clocks, watermarks and the
//! crash/restart lifecycle; each concern lives in a child module with its
//! own `impl Center` block: `store` (the store model), `client` (own
//! writes), `votes` (claims of new ids), `beats` (the executor of proto's
//! link part: heartbeats, lifecycles, node state), `floods`, `pulls` (anti-entropy), `dispatch` (arriving
//! messages) and `timers` (housekeeping). Must never decide protocol rules
//! itself.

use crate::msg::{Key, Msg};
use regmesh_core::hlc::HlcClock;
use regmesh_core::{Hlc, Record, Visibility};
use regmesh_proto::lifecycle::PeerLifecycle;
use regmesh_proto::mesh::floods::Floods;
use regmesh_proto::mesh::link::{self, Link};
use regmesh_proto::mesh::pulls::Pulls;
use regmesh_proto::mesh::votes::{VoteId, Votes};
use regmesh_proto::node_state::NodeState;
use regmesh_proto::policy::ExportPolicy;
use regmesh_proto::sync::{Ceilings, Marks};
use regmesh_proto::tally::{Quorum, Rule};
use regmesh_proto::vote::Claims;
use std::collections::HashMap;

mod beats;
mod client;
mod dispatch;
mod floods;
mod pulls;
mod store;
mod timers;
mod votes;
pub use store::Store;

/// Timing and limits of one center (the node's `[peer]` and `[leases]`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub interval_ms: u64,
    pub skew_ms: i64,
    pub lease_ms: u64,
    pub tombstone_horizon_ms: u64,
    pub vote_timeout_ms: u64,
    /// Commit other centers' versions without waiting for the disk.
    pub relaxed_replicas: bool,
    pub pull_page: usize,
}

/// Global virtual time 0 on the centers' clocks (2026-11-01T00:00:00Z).
pub const EPOCH_MS: u64 = 1_793_491_200_000;

/// Relaxed commits become durable at least this often.
pub const FLUSH_EVERY_MS: u64 = 1000;
/// Watermarks are saved this often.
pub const SAVE_MARKS_EVERY_MS: u64 = 2000;
/// Leases, purges, flushes are looked at this often.
pub const HOUSEKEEP_EVERY_MS: u64 = 250;

#[derive(Debug, Clone)]
pub enum Timer {
    /// A timer of the link part (beats, the lifecycle judge).
    Link(link::Timer),
    Housekeep,
    VoteDeadline {
        vote: VoteId,
    },
    /// A page call's deadline (`mesh::pulls::PULL_PAGE_TIMEOUT_MS`).
    PullTimeout {
        call: u64,
    },
}

/// What the center asks of the world, and tells the oracle.
#[derive(Debug, Clone)]
pub enum Out {
    Send {
        to: usize,
        msg: Msg,
    },
    /// Fire `timer` at global time `at` (if this incarnation still runs).
    Timer {
        at: u64,
        timer: Timer,
    },
    Note(Note),
}

#[derive(Debug, Clone)]
pub enum Note {
    /// A client write was acknowledged (durable).
    Acked(Record),
    /// A client write was refused.
    Refused { key: Key, why: String },
    /// This center answered yes for itself in vote (initiator, counter).
    VotedYes { initiator: String, counter: u64, key: Key },
    /// A vote of this center was granted and its create written (the
    /// create's acknowledged version is the `Acked` note just before).
    Granted { key: Key, counter: u64, started: u64 },
}

/// A change of what this center holds for one key (for the invariants).
#[derive(Debug, Clone)]
pub enum Change {
    Put(Record),
    /// A tombstone purged after the horizon.
    Purged(Record),
    /// A record dropped by a replacing resync.
    Forgot(Record),
}

#[derive(Debug, Clone)]
pub struct PeerSlot {
    pub idx: usize,
    pub id: String,
    /// What we send this peer.
    pub policy: ExportPolicy,
    /// A copy of its lifecycle in the link part, refreshed at each change.
    pub life: PeerLifecycle,
}

/// A create of this center's waiting for its vote.
#[derive(Debug, Clone)]
struct OwnCreate {
    key: Key,
    visibility: Visibility,
    started: u64,
}

/// A client operation at a center.
#[derive(Debug, Clone)]
pub enum ClientOp {
    Create { key: Key, visibility: Visibility },
    Update { key: Key },
    Delete { key: Key },
    Heartbeat { key: Key },
}

pub struct Center {
    pub idx: usize,
    pub id: String,
    pub up: bool,
    /// Bumped at every crash; timers of an older incarnation are void.
    pub epoch: u64,
    pub settings: Settings,
    pub store: Store,
    pub peers: Vec<PeerSlot>,
    /// Peer lifecycles, beats and node state (`regmesh_proto::mesh::link`;
    /// peers by their slot in `peers`).
    link: Link,
    /// A copy of the link part's node state, refreshed at each change.
    pub state: NodeState,
    pub marks: Marks,
    saved_marks: Marks,
    /// How far each peer origin has shown it reached (`sync::Ceilings`, in
    /// memory as in the node): no relay's claim moves a mark past it.
    ceilings: Ceilings,
    /// A faulty center (plan fault `Lie`): its pull pages to a peer (by
    /// index) claim to cover these origins far past its own mark. Only
    /// origins the puller hears directly: for others the protocol trusts
    /// relays (PROTOCOL.md, "Anti-entropy").
    pub lies_to: HashMap<usize, Vec<String>>,
    own_seq: u64,
    hlc: HlcClock,
    /// Floods of own changes, receipt and relays (proto's floods part).
    floods: Floods,
    sync_since: Option<u64>,
    /// Part `pulls` of the mesh machine: pulls, resyncs, repair pacing.
    pulls: Pulls,
    /// Claims of new ids and the votes collecting here (proto's part).
    votes: Votes,
    /// Own creates waiting for their votes, by vote counter.
    own_creates: HashMap<u64, OwnCreate>,
    last_flush: u64,
    last_save: u64,
    /// Changes of held records since the world last looked.
    pub changes: Vec<(Key, Change)>,
    pub stats: Stats,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub pulls: u64,
    pub resyncs: u64,
    pub forgot: u64,
    pub purged: u64,
    /// Re-pulls from seq 0 because digests differed.
    pub repairs: u64,
}

fn body(n: u64, online: bool) -> String {
    format!(
        "{{\"n\":{n},\"status\":\"{}\"}}",
        if online { "online" } else { "offline" }
    )
}

/// `n` of a simulated body.
pub fn body_n(b: &str) -> u64 {
    b.split("\"n\":")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Center {
    pub fn new(idx: usize, id: String, settings: Settings, peers: Vec<(usize, String, ExportPolicy)>) -> Self {
        let interval = settings.interval_ms;
        let pulls = Pulls::new(id.clone(), settings.pull_page);
        let rule = Rule::new(
            Quorum::Majority,
            std::iter::once(id.clone()).chain(peers.iter().map(|(_, p, _)| p.clone())),
        );
        let link = Link::new(
            &id,
            interval,
            peers.iter().map(|(_, p, policy)| (p.clone(), policy.clone())),
        );
        let mut c = Center {
            votes: Votes::new(&id, rule, settings.vote_timeout_ms, Claims::default()),
            own_creates: HashMap::new(),
            idx,
            id,
            up: true,
            epoch: 0,
            store: Store::default(),
            state: link.node_state(),
            link,
            peers: peers
                .into_iter()
                .map(|(idx, id, policy)| PeerSlot {
                    idx,
                    id,
                    policy,
                    life: PeerLifecycle::known(interval),
                })
                .collect(),
            settings,
            marks: Marks::default(),
            saved_marks: Marks::default(),
            ceilings: Ceilings::default(),
            lies_to: HashMap::new(),
            own_seq: 0,
            hlc: HlcClock::resume(Hlc::new(0, 0)),
            floods: Floods::new("", [], None),
            sync_since: None,
            pulls,
            last_flush: 0,
            last_save: 0,
            changes: Vec::new(),
            stats: Stats::default(),
        };
        c.floods = Center::new_floods(&c.id, &c.peers, c.own_seq);
        c.ceilings = c.new_ceilings();
        c
    }

    fn new_ceilings(&self) -> Ceilings {
        Ceilings::for_peers(self.peers.iter().map(|p| p.id.clone()))
    }

    /// `from..=through` of `origin` was covered by a message or page: the
    /// mark moves, never past what `origin` has shown (as the node's).
    fn advance(&mut self, origin: &str, from: u64, through: u64) {
        let through = self.ceilings.bound(origin, through);
        self.marks.advance(origin, from, through);
    }

    /// Whose yes this center's claims need: a `quorum` of `members` (all
    /// configured centers, itself included).
    pub fn set_rule(&mut self, quorum: Quorum, members: impl IntoIterator<Item = String>) {
        self.votes.set_rule(Rule::new(quorum, members));
    }

    /// This center's clock (ms since the Unix epoch) at global time `now`.
    pub fn local(&self, now: u64) -> u64 {
        (EPOCH_MS as i64 + now as i64 + self.settings.skew_ms) as u64
    }

    fn global(&self, local: u64) -> u64 {
        (local as i64 - self.settings.skew_ms - EPOCH_MS as i64).max(0) as u64
    }

    /// Our watermark for `origin`; our own is the last seq we issued.
    pub fn mark(&self, origin: &str) -> u64 {
        if origin == self.id {
            self.own_seq
        } else {
            self.marks.get(origin)
        }
    }

    fn all_marks(&self) -> HashMap<String, u64> {
        let mut m = self.marks.to_map();
        m.insert(self.id.clone(), self.own_seq);
        m
    }

    fn peer_pos(&self, idx: usize) -> Option<usize> {
        self.peers.iter().position(|p| p.idx == idx)
    }

    /// For the scale study: every peer already introduced and beating, this
    /// center active (the mesh has been up a while).
    pub fn bootstrap(&mut self, now: u64) {
        let local = self.local(now);
        self.link.bootstrap(local);
        for (i, p) in self.peers.iter_mut().enumerate() {
            p.life = self.link.peer(i).lifecycle().clone();
        }
        self.state = self.link.node_state();
    }

    /// For the scale study: a new version of `key` written here (as an
    /// update or a lease renewal), flooded.
    pub fn publish(&mut self, now: u64, key: Key, out: &mut Vec<Out>) -> Record {
        let n = self.store.get(&key).map_or(0, |r| body_n(&r.body));
        self.write_own(
            now,
            &key.0,
            &key.1,
            body(n + 1, true),
            None,
            Visibility::Public,
            false,
            out,
        )
    }

    /// Starts (or restarts) this incarnation's timers.
    pub fn start(&mut self, now: u64, out: &mut Vec<Out>) {
        let local = self.local(now);
        self.with_link(now, out, |link, _, cmds| link.start(local, cmds));
        out.push(Out::Timer {
            at: now + HOUSEKEEP_EVERY_MS,
            timer: Timer::Housekeep,
        });
    }

    /// A crash: everything not durable is gone.
    pub fn crash(&mut self) {
        self.up = false;
        self.epoch += 1;
    }

    /// Restarts from the durable state.
    pub fn restart(&mut self, now: u64, out: &mut Vec<Out>) {
        self.up = true;
        self.store.recover();
        self.marks = self.saved_marks.clone();
        let interval = self.settings.interval_ms;
        // Answers to the calls before the crash may still arrive.
        self.link = Link::new(
            &self.id,
            interval,
            self.peers.iter().map(|p| (p.id.clone(), p.policy.clone())),
        )
        .calls_after(self.link.last_call());
        for p in &mut self.peers {
            p.life = PeerLifecycle::known(interval);
        }
        self.state = self.link.node_state();
        let last = self
            .store
            .current
            .values()
            .map(|r| r.version)
            .max()
            .unwrap_or(Hlc::new(0, 0));
        self.hlc = HlcClock::resume(last);
        // Windows and queues live in memory, as in the node.
        self.floods = Center::new_floods(&self.id, &self.peers, self.own_seq);
        self.sync_since = None;
        self.ceilings = self.new_ceilings();
        self.pulls.reset();
        // Claims and doubts are promises to other centers: they survive the
        // crash (the node persists them). Our own votes ended with it.
        self.votes.restarted();
        self.own_creates.clear();
        self.start(now, out);
    }
}
