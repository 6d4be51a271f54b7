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

use crate::msg::{BeatBody, Key, Msg};
use regmesh_core::hlc::HlcClock;
use regmesh_core::{Hlc, Record, Visibility};
use regmesh_proto::constants::{CLAIM_GRACE_MS, DIGESTS_PER_BEAT};
use regmesh_proto::dedup::{CounterWindow, Seen};
use regmesh_proto::digest::{element, SetDigest};
use regmesh_proto::flood;
use regmesh_proto::lifecycle::{PeerLifecycle, PeerState};
use regmesh_proto::node_state::NodeState;
use regmesh_proto::policy::class_of;
use regmesh_proto::policy::ExportPolicy;
use regmesh_proto::sync::{self as ae, Marks, PeerMarks, Pulls, Resync};
use regmesh_proto::tally::{Answer, Decision, Quorum, Rule, Tally};
use regmesh_proto::vote::{self, Arrival, Ballot, Claims};
use std::collections::{BTreeMap, BTreeSet, HashMap};

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

/// A pull with no answer for this long is abandoned.
pub const PULL_TIMEOUT_MS: u64 = 3000;
/// Relaxed commits become durable at least this often.
pub const FLUSH_EVERY_MS: u64 = 1000;
/// Watermarks are saved this often.
pub const SAVE_MARKS_EVERY_MS: u64 = 2000;
/// Leases, purges, flushes are looked at this often.
pub const HOUSEKEEP_EVERY_MS: u64 = 250;

#[derive(Debug, Clone)]
pub enum Timer {
    Beat,
    Housekeep,
    VoteDeadline { initiator: String, counter: u64 },
    PullTimeout { run: u64 },
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
    pub life: PeerLifecycle,
    pub marks: PeerMarks,
    /// Its last heartbeat call was answered.
    pub reachable: bool,
    /// (beat number, our full marks it described) awaiting an answer.
    awaiting: Option<(u64, HashMap<String, u64>)>,
    /// Our marks as of the last beat it answered (deltas start there).
    acked: HashMap<String, u64>,
    beats_sent: u64,
    digest_cursor: usize,
}

#[derive(Debug, Clone)]
struct PullRun {
    run: u64,
    peer: usize,
    after: u64,
    resync: Option<Resync>,
    pages: usize,
    /// Started because digests differed (a repair, not a catch-up).
    repair: bool,
}

#[derive(Debug, Clone)]
enum Upstream {
    Client { key: Key, started: u64 },
    Peer(usize),
}

#[derive(Debug, Clone)]
struct Collect {
    tally: Tally,
    upstream: Upstream,
}

/// The store: current versions, the durable ones, and the seq index.
#[derive(Debug, Clone, Default)]
pub struct Store {
    pub current: BTreeMap<Key, Record>,
    durable: BTreeMap<Key, Record>,
    dirty: BTreeSet<Key>,
    by_seq: BTreeMap<(String, u64), Key>,
    /// Deletion time (its version's wall clock) of each held tombstone.
    tomb_at: BTreeMap<Key, u64>,
    pub purged: BTreeMap<String, u64>,
    durable_purged: BTreeMap<String, u64>,
}

impl Store {
    fn put(&mut self, r: Record, durable: bool) {
        let key = (r.kind.clone(), r.id.clone());
        if let Some(old) = self.current.get(&key) {
            self.by_seq.remove(&(old.origin.clone(), old.seq));
        }
        self.by_seq.insert((r.origin.clone(), r.seq), key.clone());
        if r.deleted {
            // As the node: the horizon counts from the deletion's version.
            self.tomb_at.insert(key.clone(), r.version.wall_ms);
        } else {
            self.tomb_at.remove(&key);
        }
        self.current.insert(key.clone(), r);
        self.dirty.insert(key);
        if durable {
            self.flush();
        }
    }

    fn remove(&mut self, key: &Key) -> Option<Record> {
        let old = self.current.remove(key)?;
        self.by_seq.remove(&(old.origin.clone(), old.seq));
        self.tomb_at.remove(key);
        self.dirty.insert(key.clone());
        Some(old)
    }

    /// A durable commit: everything committed before is durable too.
    fn flush(&mut self) {
        for k in std::mem::take(&mut self.dirty) {
            match self.current.get(&k) {
                Some(r) => self.durable.insert(k, r.clone()),
                None => self.durable.remove(&k),
            };
        }
        self.durable_purged = self.purged.clone();
    }

    fn raise_purged(&mut self, origin: &str, seq: u64) {
        let m = self.purged.entry(origin.to_string()).or_insert(0);
        *m = (*m).max(seq);
    }

    /// What survives a crash.
    fn recover(&mut self) {
        self.dirty.clear();
        self.current = self.durable.clone();
        self.purged = self.durable_purged.clone();
        self.by_seq = self
            .current
            .iter()
            .map(|(k, r)| ((r.origin.clone(), r.seq), k.clone()))
            .collect();
        self.tomb_at = self
            .current
            .iter()
            .filter(|(_, r)| r.deleted)
            .map(|(k, r)| (k.clone(), r.version.wall_ms))
            .collect();
    }

    pub fn durable(&self) -> &BTreeMap<Key, Record> {
        &self.durable
    }

    pub fn get(&self, key: &Key) -> Option<&Record> {
        self.current.get(key)
    }

    fn origin_after(&self, origin: &str, after: u64, limit: usize) -> Vec<Record> {
        self.by_seq
            .range((origin.to_string(), after + 1)..)
            .take_while(|((o, _), _)| o == origin)
            .take(limit)
            .filter_map(|(_, k)| self.current.get(k).cloned())
            .collect()
    }

    fn origin_live(&self, origin: &str) -> Vec<(String, String, u64)> {
        self.by_seq
            .range((origin.to_string(), 0)..)
            .take_while(|((o, _), _)| o == origin)
            .filter_map(|(_, k)| self.current.get(k))
            .filter(|r| !r.deleted)
            .map(|r| (r.kind.clone(), r.id.clone(), r.seq))
            .collect()
    }
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
    pub state: NodeState,
    pub marks: Marks,
    saved_marks: Marks,
    own_seq: u64,
    hlc: HlcClock,
    windows: HashMap<String, CounterWindow>,
    vote_windows: HashMap<String, CounterWindow>,
    sync_since: Option<u64>,
    pulls: Pulls,
    pulling: HashMap<String, PullRun>,
    /// When each (peer, origin) was last re-pulled because digests differed.
    last_repair: HashMap<(usize, String), u64>,
    next_run: u64,
    beat_no: u64,
    claims: Claims,
    /// Whose yes a claim of this center's own needs (`[peer] claims`).
    rule: Rule,
    collecting: HashMap<(String, u64), Collect>,
    /// Visibility of the record our own pending votes would create.
    pending_vis: HashMap<(String, u64), Visibility>,
    last_vote_counter: u64,
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
        let rule = Rule::new(
            Quorum::Majority,
            std::iter::once(id.clone()).chain(peers.iter().map(|(_, p, _)| p.clone())),
        );
        Center {
            rule,
            idx,
            id,
            up: true,
            epoch: 0,
            store: Store::default(),
            state: NodeState::initial(!peers.is_empty()),
            peers: peers
                .into_iter()
                .map(|(idx, id, policy)| PeerSlot {
                    idx,
                    id,
                    policy,
                    life: PeerLifecycle::known(interval),
                    marks: PeerMarks::default(),
                    reachable: false,
                    awaiting: None,
                    acked: HashMap::new(),
                    beats_sent: 0,
                    digest_cursor: 0,
                })
                .collect(),
            settings,
            marks: Marks::default(),
            saved_marks: Marks::default(),
            own_seq: 0,
            hlc: HlcClock::resume(Hlc::new(0, 0)),
            windows: HashMap::new(),
            vote_windows: HashMap::new(),
            sync_since: None,
            pulls: Pulls::default(),
            pulling: HashMap::new(),
            last_repair: HashMap::new(),
            next_run: 0,
            beat_no: 0,
            claims: Claims::default(),
            collecting: HashMap::new(),
            pending_vis: HashMap::new(),
            last_vote_counter: 0,
            last_flush: 0,
            last_save: 0,
            changes: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// Whose yes this center's claims need: a `quorum` of `members` (all
    /// configured centers, itself included).
    pub fn set_rule(&mut self, quorum: Quorum, members: impl IntoIterator<Item = String>) {
        self.rule = Rule::new(quorum, members);
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

    /// A beat for peer slot `pi`: whole, or what changed since its last
    /// answered beat (proto::sync::beat_marks); with the full map.
    fn beat_body(&mut self, pi: usize, full: bool) -> (BeatBody, HashMap<String, u64>) {
        let now = self.all_marks();
        let digests = self.digests_for(pi);
        let acked = &self.peers[pi].acked;
        let full = full || acked.is_empty();
        let body = BeatBody {
            state: self.state,
            interval_ms: self.settings.interval_ms,
            marks: ae::beat_marks(&now, acked, full),
            full,
            digests,
            policy: self.peers[pi].policy.clone(),
        };
        (body, now)
    }

    fn peer_pos(&self, idx: usize) -> Option<usize> {
        self.peers.iter().position(|p| p.idx == idx)
    }

    /// For the scale study: every peer already introduced and beating, this
    /// center active (the mesh has been up a while).
    pub fn bootstrap(&mut self, now: u64) {
        let local = self.local(now);
        for p in &mut self.peers {
            p.life.hello_answered(local);
            p.life.beat_received(local, self.settings.interval_ms);
            p.life.beat_acked(local);
            p.reachable = true;
        }
        self.state = NodeState::Active;
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
        out.push(Out::Timer {
            at: now,
            timer: Timer::Beat,
        });
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
        for p in &mut self.peers {
            p.life = PeerLifecycle::known(interval);
            p.marks = PeerMarks::default();
            p.reachable = false;
            p.awaiting = None;
            p.acked.clear();
            p.beats_sent = 0;
        }
        self.state = NodeState::initial(!self.peers.is_empty());
        let last = self
            .store
            .current
            .values()
            .map(|r| r.version)
            .max()
            .unwrap_or(Hlc::new(0, 0));
        self.hlc = HlcClock::resume(last);
        self.windows.clear();
        self.vote_windows.clear();
        self.sync_since = None;
        self.pulls = Pulls::default();
        self.pulling.clear();
        self.last_repair.clear();
        // Claims and doubts are promises to other centers: they survive the
        // crash (the node persists them). Our own votes ended with it.
        self.claims.forget_own();
        self.collecting.clear();
        self.pending_vis.clear();
        self.start(now, out);
    }

    // ---- timers ------------------------------------------------------

    pub fn on_timer(&mut self, now: u64, timer: Timer, out: &mut Vec<Out>) {
        match timer {
            Timer::Beat => self.beat_tick(now, out),
            Timer::Housekeep => self.housekeep(now, out),
            Timer::VoteDeadline { initiator, counter } => {
                self.settle(now, &(initiator, counter), true, out);
            }
            Timer::PullTimeout { run } => {
                if let Some(origin) = self.pulling.iter().find(|(_, p)| p.run == run).map(|(o, _)| o.clone()) {
                    self.pulling.remove(&origin);
                    self.pulls.done(&origin);
                }
            }
        }
    }

    fn beat_tick(&mut self, now: u64, out: &mut Vec<Out>) {
        let local = self.local(now);
        for pi in 0..self.peers.len() {
            if self.peers[pi].life.state() <= PeerState::Known {
                out.push(Out::Send {
                    to: self.peers[pi].idx,
                    msg: Msg::Hello,
                });
                self.peers[pi].reachable = false;
            } else {
                let full = self.peers[pi].beats_sent.is_multiple_of(ae::FULL_BEAT_EVERY);
                let (body, sent) = self.beat_body(pi, full);
                self.beat_no += 1;
                let p = &mut self.peers[pi];
                if p.awaiting.is_some() {
                    // The last call had no answer within an interval.
                    p.reachable = false;
                }
                p.beats_sent += 1;
                p.awaiting = Some((self.beat_no, sent));
                out.push(Out::Send {
                    to: p.idx,
                    msg: Msg::Beat { n: self.beat_no, body },
                });
            }
            self.peers[pi].life.tick(local);
        }
        self.reassess(now);
        out.push(Out::Timer {
            at: now + self.settings.interval_ms,
            timer: Timer::Beat,
        });
    }

    /// Re-judges every peer's lifecycle now (the node does it on each beat
    /// tick; the simulator also before checking the invariants).
    pub fn tick_lifecycles(&mut self, now: u64) {
        let local = self.local(now);
        for p in &mut self.peers {
            p.life.tick(local);
        }
    }

    fn reassess(&mut self, now: u64) {
        let local = self.local(now);
        let reachable = self.peers.iter().filter(|p| p.reachable).count();
        let behind = self.peers.iter().any(|p| p.marks.ahead_of(|o| self.mark(o)));
        let caught_up = ae::caught_up(
            self.sync_since,
            local,
            self.settings.interval_ms,
            self.pulls.is_idle(),
            behind,
        );
        let (next, start_sync) = self.state.next(reachable, caught_up);
        if start_sync {
            self.sync_since = Some(local);
        }
        self.state = next;
    }

    fn housekeep(&mut self, now: u64, out: &mut Vec<Out>) {
        let local = self.local(now);
        // Leases: the origin alone judges its records' leases.
        let lapsed: Vec<Record> = self
            .store
            .current
            .values()
            .filter(|r| {
                r.origin == self.id
                    && !r.deleted
                    && r.body.contains("online")
                    && r.expires_at_ms.is_some_and(|e| e < local)
            })
            .cloned()
            .collect();
        for r in lapsed {
            let b = body(body_n(&r.body) + 1, false);
            self.write_own(
                now,
                &r.kind,
                &r.id,
                b,
                r.expires_at_ms,
                r.visibility.clone(),
                false,
                out,
            );
        }
        // Tombstones past the horizon are purged; the origin's purge mark
        // rises to their seq.
        let horizon = self.settings.tombstone_horizon_ms;
        let due: Vec<Key> = self
            .store
            .tomb_at
            .iter()
            .filter(|(_, at)| **at + horizon <= local)
            .map(|(k, _)| k.clone())
            .collect();
        if !due.is_empty() {
            for k in due {
                if let Some(t) = self.store.remove(&k) {
                    self.store.raise_purged(&t.origin, t.seq);
                    self.stats.purged += 1;
                    self.changes.push((k, Change::Purged(t)));
                }
            }
            self.store.flush();
            self.last_flush = now;
        }
        if now >= self.last_flush + FLUSH_EVERY_MS {
            self.store.flush();
            self.last_flush = now;
        }
        if now >= self.last_save + SAVE_MARKS_EVERY_MS {
            // Saved in a durable commit, so never ahead of what is durable.
            self.store.flush();
            self.saved_marks = self.marks.clone();
            self.last_save = now;
        }
        out.push(Out::Timer {
            at: now + HOUSEKEEP_EVERY_MS,
            timer: Timer::Housekeep,
        });
    }

    // ---- writes ------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn write_own(
        &mut self,
        now: u64,
        kind: &str,
        id: &str,
        body: String,
        expires_at_ms: Option<u64>,
        visibility: Visibility,
        deleted: bool,
        out: &mut Vec<Out>,
    ) -> Record {
        let local = self.local(now);
        self.own_seq += 1;
        let r = Record {
            kind: kind.to_string(),
            id: id.to_string(),
            origin: self.id.clone(),
            version: self.hlc.tick(local),
            seq: self.own_seq,
            expires_at_ms,
            visibility,
            deleted,
            body,
            sig: [0; 64],
        };
        // Own writes are durable before they are acknowledged.
        self.store.put(r.clone(), true);
        self.last_flush = now;
        self.changes
            .push(((r.kind.clone(), r.id.clone()), Change::Put(r.clone())));
        out.push(Out::Note(Note::Acked(r.clone())));
        self.fan_out(&self.id.clone(), (r.seq, r.seq), std::slice::from_ref(&r), None, out);
        r
    }

    pub fn client(&mut self, now: u64, op: ClientOp, out: &mut Vec<Out>) {
        let refuse = |out: &mut Vec<Out>, key: &Key, why: &str| {
            out.push(Out::Note(Note::Refused {
                key: key.clone(),
                why: why.to_string(),
            }))
        };
        if !self.up {
            return;
        }
        let local = self.local(now);
        let lease = self.settings.lease_ms;
        if !self.state.accepts_updates() {
            let key = match &op {
                ClientOp::Create { key, .. }
                | ClientOp::Update { key }
                | ClientOp::Delete { key }
                | ClientOp::Heartbeat { key } => key.clone(),
            };
            return refuse(out, &key, "inactive");
        }
        match op {
            ClientOp::Create { key, visibility } => self.create(now, key, visibility, out),
            ClientOp::Update { key } | ClientOp::Heartbeat { key } | ClientOp::Delete { key }
                if !self.owns_live(&key) =>
            {
                refuse(out, &key, "not a live record of this center")
            }
            ClientOp::Update { key } => {
                let r = self.store.get(&key).cloned().expect("owned");
                let b = body(body_n(&r.body) + 1, r.body.contains("online"));
                self.write_own(now, &key.0, &key.1, b, r.expires_at_ms, r.visibility, false, out);
            }
            ClientOp::Heartbeat { key } => {
                let r = self.store.get(&key).cloned().expect("owned");
                let b = body(body_n(&r.body) + 1, true);
                self.write_own(now, &key.0, &key.1, b, Some(local + lease), r.visibility, false, out);
            }
            ClientOp::Delete { key } => {
                let r = self.store.get(&key).cloned().expect("owned");
                self.write_own(now, &key.0, &key.1, "{}".into(), None, r.visibility, true, out);
            }
        }
    }

    fn owns_live(&self, key: &Key) -> bool {
        self.store.get(key).is_some_and(|r| r.origin == self.id && !r.deleted)
    }

    fn live_owner(&self, key: &Key) -> Option<String> {
        self.store.get(key).filter(|r| !r.deleted).map(|r| r.origin.clone())
    }

    // ---- votes ---------------------------------------------------------

    fn create(&mut self, now: u64, key: Key, visibility: Visibility, out: &mut Vec<Out>) {
        let local = self.local(now);
        if self.live_owner(&key).is_some() {
            out.push(Out::Note(Note::Refused {
                key,
                why: "exists".into(),
            }));
            return;
        }
        self.last_vote_counter = (self.last_vote_counter + 1).max(local);
        let counter = self.last_vote_counter;
        let deadline = local + self.settings.vote_timeout_ms;
        self.prune_claims_if_full(local);
        let ballot = self.claims.claim_own(
            (&key.0, &key.1),
            &self.id,
            counter,
            deadline + CLAIM_GRACE_MS,
            None,
            local,
        );
        if !ballot.is_yes() {
            let why = format!("{:?}", ballot);
            out.push(Out::Note(Note::Refused { key, why }));
            return;
        }
        out.push(Out::Note(Note::VotedYes {
            initiator: self.id.clone(),
            counter,
            key: key.clone(),
        }));
        let upstream = Upstream::Client {
            key: key.clone(),
            started: now,
        };
        // Remember the visibility of the create in the key's collect entry.
        self.pending_vis.insert((self.id.clone(), counter), visibility);
        let own = ballot.answer(&self.id);
        self.collect(
            now,
            (self.id.clone(), counter),
            key,
            deadline,
            None,
            (upstream, own),
            out,
        );
    }

    /// Asks every OPERATIONAL peer but `except` to vote; answers `upstream`
    /// when every asked peer answered (or, at the initiator, the count
    /// decides) or the deadline passes.
    #[allow(clippy::too_many_arguments)]
    fn collect(
        &mut self,
        now: u64,
        vote_id: (String, u64),
        key: Key,
        deadline: u64,
        except: Option<usize>,
        (upstream, own): (Upstream, Answer),
        out: &mut Vec<Out>,
    ) {
        let targets: Vec<(usize, String)> = self
            .peers
            .iter()
            .filter(|p| Some(p.idx) != except && p.life.receives_propagation())
            .map(|p| (p.idx, p.id.clone()))
            .collect();
        if self.collecting.contains_key(&vote_id) {
            // Already collecting this vote here: this copy is a duplicate,
            // answered naming nobody.
            if let Upstream::Peer(to) = upstream {
                out.push(Out::Send {
                    to,
                    msg: Msg::VoteAnswer {
                        initiator: vote_id.0,
                        counter: vote_id.1,
                        answer: Answer::default(),
                    },
                });
            }
            return;
        }
        self.collecting.insert(
            vote_id.clone(),
            Collect {
                tally: Tally::new(own, targets.iter().map(|(_, id)| id.clone())),
                upstream,
            },
        );
        if self.settle(now, &vote_id, false, out) {
            return;
        }
        for (to, _) in targets {
            out.push(Out::Send {
                to,
                msg: Msg::VoteReq {
                    initiator: vote_id.0.clone(),
                    counter: vote_id.1,
                    key: key.clone(),
                    deadline_ms: vote::forwarded_deadline(deadline),
                },
            });
        }
        out.push(Out::Timer {
            at: self.global(deadline).max(now + 1),
            timer: Timer::VoteDeadline {
                initiator: vote_id.0,
                counter: vote_id.1,
            },
        });
    }

    /// Ends vote `vote_id` here if it can end (`expired`: its deadline
    /// passed): a relay answers upstream once every asked peer answered, the
    /// initiator once the count decides. Returns whether it ended.
    fn settle(&mut self, now: u64, vote_id: &(String, u64), expired: bool, out: &mut Vec<Out>) -> bool {
        let Some(c) = self.collecting.get(vote_id) else {
            return false;
        };
        let complete = expired || c.tally.is_complete();
        match &c.upstream {
            Upstream::Peer(_) if !complete => false,
            Upstream::Peer(to) => {
                let to = *to;
                let c = self.collecting.remove(vote_id).expect("collecting");
                out.push(Out::Send {
                    to,
                    msg: Msg::VoteAnswer {
                        initiator: vote_id.0.clone(),
                        counter: vote_id.1,
                        answer: c.tally.got().clone(),
                    },
                });
                true
            }
            Upstream::Client { .. } => match self.rule.decide(c.tally.got(), complete) {
                Some(d) => {
                    self.vote_decided(now, vote_id.clone(), d, out);
                    true
                }
                None => false,
            },
        }
    }

    /// At the bound, drops what live records have settled (proto's rule).
    fn prune_claims_if_full(&mut self, local: u64) {
        if self.claims.is_full() {
            let store = &self.store;
            self.claims.prune(local, |kind, id| {
                store
                    .get(&(kind.to_string(), id.to_string()))
                    .filter(|r| !r.deleted)
                    .map(|r| r.origin.clone())
            });
        }
    }

    fn vote_decided(&mut self, now: u64, vote_id: (String, u64), decision: Decision, out: &mut Vec<Out>) {
        let Some(c) = self.collecting.remove(&vote_id) else {
            return;
        };
        let Upstream::Client { key, started } = c.upstream else {
            return;
        };
        let vis = self.pending_vis.remove(&vote_id).unwrap_or(Visibility::Public);
        let refuse = |out: &mut Vec<Out>, why: String| out.push(Out::Note(Note::Refused { key: key.clone(), why }));
        match decision {
            Decision::Granted if !self.claims.confirm((&key.0, &key.1), &self.id, vote_id.1) => {
                refuse(out, "gave way to an earlier claim".into())
            }
            Decision::Granted if self.state.accepts_updates() && self.live_owner(&key).is_none() => {
                let exp = Some(self.local(now) + self.settings.lease_ms);
                self.write_own(now, &key.0, &key.1, body(1, true), exp, vis, false, out);
                out.push(Out::Note(Note::Granted {
                    key: key.clone(),
                    counter: vote_id.1,
                    started,
                }));
            }
            Decision::Granted => refuse(
                out,
                "granted, but the id arrived meanwhile or the center went inactive".into(),
            ),
            Decision::Refused(why) | Decision::Undecided(why) => refuse(out, why),
        }
        // The write is durable (or failed): the record speaks now.
        self.claims.release((&key.0, &key.1), &self.id, vote_id.1);
    }

    fn on_vote_req(
        &mut self,
        now: u64,
        from: usize,
        (initiator, counter): (String, u64),
        key: Key,
        deadline: u64,
        out: &mut Vec<Out>,
    ) {
        let local = self.local(now);
        let answer = |out: &mut Vec<Out>, answer: Answer| {
            out.push(Out::Send {
                to: from,
                msg: Msg::VoteAnswer {
                    initiator: initiator.clone(),
                    counter,
                    answer,
                },
            })
        };
        match vote::arrival(deadline, local) {
            // Malformed: a node refuses the call; nothing is answered.
            Err(_) => return,
            Ok(Arrival::Late) => return answer(out, Answer::default()),
            Ok(Arrival::InTime) => {}
        }
        let seen = if initiator == self.id {
            Seen::Duplicate
        } else {
            self.vote_windows
                .entry(initiator.clone())
                .or_default()
                .observe(counter, false)
        };
        if seen == Seen::Duplicate {
            // The first copy carries this node's real answer.
            return answer(out, Answer::default());
        }
        let owner = self.live_owner(&key);
        self.prune_claims_if_full(local);
        let ballot = self.claims.vote(
            (&key.0, &key.1),
            &initiator,
            counter,
            deadline + CLAIM_GRACE_MS,
            owner.as_deref(),
            local,
        );
        match &ballot {
            // The id is taken: no need to ask further.
            Ballot::Owned(_) => return answer(out, ballot.answer(&self.id)),
            Ballot::Yes { .. } => out.push(Out::Note(Note::VotedYes {
                initiator: initiator.clone(),
                counter,
                key: key.clone(),
            })),
            // A no still forwards: the centers behind this one count.
            Ballot::No(_) => {}
        }
        let own = ballot.answer(&self.id);
        self.collect(
            now,
            (initiator, counter),
            key,
            deadline,
            Some(from),
            (Upstream::Peer(from), own),
            out,
        );
    }

    // ---- flooding ----------------------------------------------------

    /// Sends `records` of `initiator` (covering seqs `seq_from..=counter`)
    /// to every peer proto says it goes to, each getting what its policy
    /// allows.
    fn fan_out(
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
    fn apply_remote(&mut self, now: u64, records: Vec<Record>) {
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

    // ---- messages ----------------------------------------------------

    pub fn on_msg(&mut self, now: u64, from: usize, msg: Msg, out: &mut Vec<Out>) {
        let Some(pi) = self.peer_pos(from) else { return };
        let local = self.local(now);
        match msg {
            Msg::Hello => {
                // It may have lost its view of our marks: whole map next.
                self.peers[pi].acked.clear();
                out.push(Out::Send {
                    to: from,
                    msg: Msg::HelloOk,
                })
            }
            Msg::HelloOk => {
                if self.peers[pi].life.state() <= PeerState::Known {
                    self.peers[pi].life.hello_answered(local);
                    self.peers[pi].reachable = true;
                    self.peers[pi].acked.clear();
                    // The first heartbeat goes at once, whole.
                    let (body, sent) = self.beat_body(pi, true);
                    self.beat_no += 1;
                    self.peers[pi].beats_sent += 1;
                    self.peers[pi].awaiting = Some((self.beat_no, sent));
                    out.push(Out::Send {
                        to: from,
                        msg: Msg::Beat { n: self.beat_no, body },
                    });
                    self.reassess(now);
                }
            }
            Msg::Beat { n, body } => {
                let (answer, _) = self.beat_body(pi, false);
                out.push(Out::Send {
                    to: from,
                    msg: Msg::BeatOk { n, body: answer },
                });
                self.beat_from(now, pi, body, out);
            }
            Msg::BeatOk { n, body } => {
                let p = &mut self.peers[pi];
                if p.awaiting.as_ref().is_some_and(|(a, _)| *a == n) {
                    let (_, sent) = p.awaiting.take().expect("awaiting");
                    p.acked = sent;
                    p.reachable = true;
                    p.life.beat_acked(local);
                    self.beat_from(now, pi, body, out);
                    self.reassess(now);
                }
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

    fn beat_from(&mut self, now: u64, pi: usize, body: BeatBody, out: &mut Vec<Out>) {
        let local = self.local(now);
        let interval = body.interval_ms.clamp(50, 3_600_000);
        self.peers[pi].life.beat_received(local, interval);
        let prev = self.peers[pi].marks.beat(body.marks, body.full);
        let latest = self.peers[pi].marks.latest().clone();
        // Digests at equal watermarks: a difference re-pulls from seq 0.
        for (origin, theirs) in &body.digests {
            if latest.get(origin) != Some(&self.mark(origin)) || *origin == self.id {
                continue;
            }
            let ours = self.class_digests(origin);
            let same = ae::digests_agree(theirs.iter().map(|(k, d)| (k.as_str(), d)), &ours, |k| {
                let (kind, class) = ae::split_digest_key(k);
                body.policy.sees_class(kind, class)
            });
            let slot = (self.peers[pi].idx, origin.clone());
            // The peer's turn is spent only on a re-pull that starts.
            if !same
                && ae::repair_due(self.last_repair.get(&slot).copied(), local)
                && self.start_pull(now, pi, origin, true, out)
            {
                self.last_repair.insert(slot, local);
                self.stats.repairs += 1;
            }
        }
        let origins = ae::origins_to_pull(&self.id, self.state, &latest, &prev, |o| self.mark(o), |_| true);
        for origin in origins {
            self.start_pull(now, pi, &origin, false, out);
        }
    }

    /// Starts a pull of `origin` from peer slot `pi` unless one runs.
    fn start_pull(&mut self, now: u64, pi: usize, origin: &str, from_zero: bool, out: &mut Vec<Out>) -> bool {
        if !self.pulls.start(origin) {
            return false;
        }
        self.next_run += 1;
        let run = self.next_run;
        let after = if from_zero { 0 } else { self.mark(origin) };
        self.stats.pulls += 1;
        self.pulling.insert(
            origin.to_string(),
            PullRun {
                run,
                peer: self.peers[pi].idx,
                after,
                resync: None,
                pages: 0,
                repair: from_zero,
            },
        );
        self.send_pull(now, run, self.peers[pi].idx, origin, after, out);
        true
    }

    /// Digests of `origin`'s versions, tombstones included, per (kind,
    /// visibility class), as the node's index keeps them.
    fn class_digests(&self, origin: &str) -> BTreeMap<String, SetDigest> {
        let mut out: BTreeMap<String, SetDigest> = BTreeMap::new();
        for (_, key) in self
            .store
            .by_seq
            .range((origin.to_string(), 0)..)
            .take_while(|((o, _), _)| o == origin)
        {
            let Some(r) = self.store.get(key) else { continue };
            let Some(class) = class_of([&r.visibility]) else {
                continue;
            };
            let k = ae::digest_key(&r.kind, &class);
            let e = element(
                &r.kind,
                &r.id,
                &r.origin,
                r.version.wall_ms,
                r.version.logical,
                r.deleted,
            );
            out.entry(k).or_default().add(&e);
        }
        out
    }

    /// A slice of digests for peer `pi`: origins on which it last reported
    /// our watermark, round robin, the classes its policy receives.
    fn digests_for(&mut self, pi: usize) -> Vec<(String, Vec<(String, SetDigest)>)> {
        let cursor = self.peers[pi].digest_cursor;
        self.peers[pi].digest_cursor += DIGESTS_PER_BEAT;
        let slice = ae::digest_slice(
            &self.all_marks(),
            self.peers[pi].marks.latest(),
            cursor,
            DIGESTS_PER_BEAT,
        );
        let policy = self.peers[pi].policy.clone();
        slice
            .iter()
            .map(|o| {
                let d = self
                    .class_digests(o)
                    .into_iter()
                    .filter(|(k, _)| {
                        let (kind, class) = ae::split_digest_key(k);
                        policy.sees_class(kind, class)
                    })
                    .collect();
                (o.clone(), d)
            })
            .collect()
    }

    fn send_pull(&self, now: u64, run: u64, to: usize, origin: &str, after: u64, out: &mut Vec<Out>) {
        out.push(Out::Send {
            to,
            msg: Msg::PullReq {
                run,
                origin: origin.to_string(),
                after,
                limit: self.settings.pull_page,
            },
        });
        out.push(Out::Timer {
            at: now + PULL_TIMEOUT_MS,
            timer: Timer::PullTimeout { run },
        });
    }

    #[allow(clippy::type_complexity)]
    fn on_pull_answer(
        &mut self,
        now: u64,
        from: usize,
        run: u64,
        origin: String,
        (records, covered, more, purged, policy): (Vec<Record>, u64, bool, u64, ExportPolicy),
        out: &mut Vec<Out>,
    ) {
        let Some(mut pr) = self.pulling.remove(&origin) else {
            return;
        };
        if pr.run != run || pr.peer != from || records.iter().any(|r| r.origin != origin) {
            self.pulling.insert(origin, pr);
            return;
        }
        pr.pages += 1;
        let start_resync = pr.resync.is_none() && ae::resync_needed(&self.id, &origin, purged, self.mark(&origin));
        if start_resync {
            self.stats.resyncs += 1;
            pr.resync = Some(Resync::begin(self.store.origin_live(&origin), purged));
        }
        if let Some(rs) = pr.resync.as_mut() {
            for r in &records {
                rs.sent(&r.kind, &r.id);
            }
        }
        let records = if pr.repair {
            // A repair fills what a peer has and we lack; it never brings
            // back what a purged deletion may have removed here.
            let purged = self.store.purged.get(&origin).copied().unwrap_or(0);
            records
                .into_iter()
                .filter(|r| {
                    ae::repair_may_apply(r.seq, purged, self.store.get(&(r.kind.clone(), r.id.clone())).is_some())
                })
                .collect()
        } else {
            records
        };
        self.apply_remote(now, records);
        if start_resync && pr.after > 0 {
            pr.after = 0;
            self.next_run += 1;
            pr.run = self.next_run;
            self.send_pull(now, pr.run, from, &origin, 0, out);
            self.pulling.insert(origin, pr);
            return;
        }
        // A resync moves the watermark only once complete.
        if pr.resync.is_none() {
            self.marks.advance(&origin, pr.after + 1, covered);
        }
        if !more || covered <= pr.after || pr.pages >= 10_000 {
            if let (Some(rs), false) = (pr.resync, more) {
                let purged = rs.purged;
                let drops = rs.drops(covered, |k, i, s| {
                    self.store
                        .get(&(k.to_string(), i.to_string()))
                        .is_some_and(|r| r.seq == s && !r.deleted && r.origin == origin && policy.allows(r, &[]))
                });
                for (k, i, _) in drops {
                    let key = (k, i);
                    if let Some(r) = self.store.remove(&key) {
                        self.stats.forgot += 1;
                        self.changes.push((key, Change::Forgot(r)));
                    }
                }
                self.store.raise_purged(&origin, purged);
                self.marks.raise(&origin, covered);
                self.store.flush();
                self.last_flush = now;
            }
            self.pulls.done(&origin);
            return;
        }
        pr.after = covered;
        self.next_run += 1;
        pr.run = self.next_run;
        self.send_pull(now, pr.run, from, &origin, covered, out);
        self.pulling.insert(origin, pr);
    }
}
