//! The mesh runtime of one center: the I/O around the sans-io decisions of
//! `regmesh_proto` (dedup windows, peer lifecycles, node state, export
//! policy, replay cache, flood targets, anti-entropy, vote tallies). It owns
//! the tasks, the real clock, the TLS connections and the center's change
//! log; every protocol decision is a call into proto, so the simulator
//! (`regmesh-sim`) exercises the same code.
//!
//! Tasks: one link task running the timers of `regmesh_proto::mesh::link`
//! (beats and the lifecycle judge) and executing its commands (HELLO and
//! heartbeat calls, each bounded by the interval, pulls, full syncs); per
//! peer, a sender draining a bounded queue of floods; one flooder that
//! reads this center's own committed changes from the change log and
//! floods them; pulls, full syncs and vote collections as they are needed.
//!
//! This file holds the types, construction, spawning and the small helpers
//! the parts share (watermarks, ceilings, visibility); each concern lives in
//! a child module with its own `impl Mesh` block: `beats` (the executor of
//! the link part: timers, beat calls, received beats), `floods` (flooder, senders,
//! fan-out, receipt), `pulls` (pulls, resyncs, serving pulls, digest
//! repair), `full_sync`, `notify` (NOTIFY/RFI to fronts), `status`
//! (`/v1/peers`) and `votes`. Must never decide protocol rules itself.

use super::client::PeerClient;
use crate::center::Center;
use crate::config::{Config, PeerConfig};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use regmesh_core::codec;
use regmesh_core::Record;
use regmesh_proto::dedup::CounterWindow;
use regmesh_proto::lifecycle::PeerLifecycle;
use regmesh_proto::mesh::link::{self, Link};
use regmesh_proto::node_state::NodeState;
use regmesh_proto::policy::ExportPolicy;
use regmesh_proto::replay::ReplayCache;
use regmesh_proto::sync::{Ceilings, Marks, Pulls, SyncRequests, Unproven};
use regmesh_proto::tally::{Quorum, Rule};
use regmesh_proto::vote::Claims;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

mod beats;
mod floods;
mod full_sync;
mod notify;
mod pulls;
mod status;
mod votes;
use votes::Collecting;
pub use votes::VoteOutcome;

/// Floods waiting for one peer; more are dropped (and counted).
pub const PEER_QUEUE: usize = 1024;
/// Records in one flood message.
pub const FLOOD_BATCH_MAX: usize = 256;
/// Flood messages in flight to one peer at once.
pub const FLOODS_IN_FLIGHT: usize = 4;

/// One flood message, already encoded for one peer.
pub struct Outgoing {
    initiator: String,
    counter: u64,
    reset: bool,
    /// First seq of the covered range `seq_from..=counter` (anti-entropy).
    seq_from: Option<u64>,
    body: Vec<u8>,
}

/// A configured peer and what we know of it.
pub struct Peer {
    pub cfg: PeerConfig,
    policy: ExportPolicy,
    /// Its index in the link part (`Mesh::link`).
    ix: usize,
    /// A copy of its lifecycle in the link part, refreshed at each change
    /// (floods, votes and NOTIFY read it).
    life: Mutex<PeerLifecycle>,
    client: PeerClient,
    queue: mpsc::Sender<Outgoing>,
    sent: AtomicU64,
    dropped: AtomicU64,
}

/// A pull page stops growing at this many bytes of encoded records (before
/// compression), whatever `limit` asked: records may be up to 64 KiB each.
pub const PULL_PAGE_BYTES: usize = 2 << 20;

/// Counters for `/v1/peers`.
#[derive(Default)]
pub struct MeshStats {
    pub floods_initiated: AtomicU64,
    pub floods_received: AtomicU64,
    pub duplicates: AtomicU64,
    pub relayed: AtomicU64,
    /// Relayed floods whose counter the origin had not shown (applied, not
    /// relayed, no window marked).
    pub unbacked: AtomicU64,
    pub refused: AtomicU64,
    pub pulls: AtomicU64,
    pub pulled_records: AtomicU64,
    pub resyncs: AtomicU64,
}

pub struct Mesh {
    pub center: Arc<Center>,
    pub me: String,
    interval_ms: u64,
    pub skew_s: u64,
    pub max_body_bytes: usize,
    pub peers: Vec<Arc<Peer>>,
    windows: Mutex<HashMap<String, CounterWindow>>,
    pub replay: Mutex<ReplayCache>,
    /// A copy of the link part's node state, refreshed at each change.
    state: Mutex<NodeState>,
    /// Peer lifecycles, beats and node state (`regmesh_proto::mesh::link`).
    /// Taken alone or before the replica's locks, never while holding one.
    link: Mutex<Link>,
    /// When each of the link part's timers fires next (ms).
    link_timers: Mutex<HashMap<link::Timer, u64>>,
    /// Wakes the link task when a timer is armed.
    link_wake: tokio::sync::Notify,
    /// Per origin: every seq up to this is applied here or was covered.
    marks: Mutex<Marks>,
    marks_dirty: AtomicBool,
    /// Per origin, the highest seq it has shown: no mark passes it.
    ceilings: Mutex<Ceilings>,
    /// Peers' claims about origins that their pulls could not back.
    unproven: Mutex<Unproven>,
    /// Full syncs we asked for: the only sync messages we take.
    sync_requests: Mutex<SyncRequests>,
    /// Peers we are pushing a full sync to right now (one at a time each).
    syncing_to: Mutex<std::collections::HashSet<String>>,
    /// Set when a requested full sync arrived complete.
    full_sync_done: AtomicBool,
    /// When each origin was last re-pulled because digests differed.
    last_repair_ms: Mutex<HashMap<(String, String), u64>>,
    /// Origins being pulled right now (one pull per origin at a time).
    pulling: Mutex<Pulls>,
    /// Ids this center has promised to initiators (two-phase vote).
    claims: Mutex<Claims>,
    /// The promises to other initiators, on disk before each yes leaves.
    claims_log: Arc<Mutex<super::claims_log::ClaimsLog>>,
    /// Votes waiting for peers' answers, by (initiator, vote counter).
    ballots: Mutex<HashMap<(String, u64), Collecting>>,
    /// Dedup of vote requests (their counters are separate from floods').
    vote_windows: Mutex<HashMap<String, CounterWindow>>,
    last_vote_counter: Mutex<u64>,
    vote_timeout_ms: u64,
    /// Whose yes our claims need: a quorum of all configured centers.
    rule: Rule,
    pub stats: MeshStats,
    /// NOTIFY/RFI types registered by fronts (set once, before serving).
    front_messages: std::sync::OnceLock<Arc<crate::messages::PeerMessages>>,
}

fn encode_records<'a>(records: impl Iterator<Item = &'a Record>) -> Vec<u8> {
    let items: Vec<String> = records.map(|r| B64.encode(codec::encode(r))).collect();
    serde_json::to_vec(&json!({ "records": items })).expect("json")
}

/// Decodes a flood body: `{"records": ["<base64url of a signed record>", ...]}`.
pub fn decode_records(body: &[u8]) -> Result<Vec<Record>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let items = v
        .get("records")
        .and_then(Value::as_array)
        .ok_or("body has no \"records\" array")?;
    if items.len() > FLOOD_BATCH_MAX * 4 {
        return Err(format!("more than {} records in one message", FLOOD_BATCH_MAX * 4));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let s = it.as_str().ok_or(format!("records[{i}] is not a string"))?;
            let b = B64.decode(s).map_err(|_| format!("records[{i}] is not base64url"))?;
            codec::decode(&b).map_err(|e| format!("records[{i}]: {e}"))
        })
        .collect()
}

impl Mesh {
    /// Builds the mesh of `center` from its config; starts nothing.
    pub fn new(center: Arc<Center>, cfg: &Config) -> Result<(Arc<Mesh>, Vec<mpsc::Receiver<Outgoing>>), String> {
        let p = cfg.peer.as_ref().ok_or("no [peer] section")?;
        let tls = super::pki::client_config(&p.cert, &p.key, &p.ca, true).map_err(|e| e.to_string())?;
        let mut peers = Vec::new();
        let mut queues = Vec::new();
        for (ix, pc) in cfg.peers.iter().enumerate() {
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            queues.push(rx);
            peers.push(Arc::new(Peer {
                policy: ExportPolicy::new(pc.kinds.iter().cloned(), pc.groups.iter().cloned()),
                ix,
                life: Mutex::new(PeerLifecycle::known(p.beat_interval_ms)),
                client: PeerClient::new(&pc.id, &pc.url, tls.clone()),
                queue: tx,
                sent: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                cfg: pc.clone(),
            }));
        }
        let link = Link::new(
            &cfg.id,
            p.beat_interval_ms,
            peers.iter().map(|p| (p.cfg.id.clone(), p.policy.clone())),
        );
        let state = link.node_state();
        center.set_accepting_writes(state.accepts_updates());
        let (claims_log, promises) = super::claims_log::ClaimsLog::open(&cfg.data_dir).map_err(|e| e.to_string())?;
        let mut claims = Claims::default();
        claims.restore(promises);
        let mesh = Arc::new(Mesh {
            me: cfg.id.clone(),
            interval_ms: p.beat_interval_ms,
            skew_s: p.clock_skew_s,
            max_body_bytes: p.max_body_bytes,
            peers,
            windows: Mutex::new(HashMap::new()),
            replay: Mutex::new(ReplayCache::default()),
            state: Mutex::new(state),
            link: Mutex::new(link),
            link_timers: Mutex::new(HashMap::new()),
            link_wake: tokio::sync::Notify::new(),
            marks: Mutex::new(Marks::from_pairs(center.load_watermarks())),
            marks_dirty: AtomicBool::new(false),
            ceilings: Mutex::new(Ceilings::for_peers(cfg.peers.iter().map(|p| p.id.clone()))),
            unproven: Mutex::new(Unproven::default()),
            sync_requests: Mutex::new(SyncRequests::default()),
            pulling: Mutex::new(Default::default()),
            last_repair_ms: Mutex::new(HashMap::new()),
            syncing_to: Mutex::new(Default::default()),
            full_sync_done: AtomicBool::new(false),
            claims: Mutex::new(claims),
            claims_log: Arc::new(Mutex::new(claims_log)),
            ballots: Mutex::new(HashMap::new()),
            vote_windows: Mutex::new(HashMap::new()),
            last_vote_counter: Mutex::new(0),
            vote_timeout_ms: p.vote_timeout_ms,
            rule: Rule::new(
                match p.claims {
                    crate::config::ClaimsRule::Majority => Quorum::Majority,
                    crate::config::ClaimsRule::All => Quorum::All,
                },
                std::iter::once(cfg.id.clone())
                    .chain(cfg.centers.iter().map(|c| c.id.clone()))
                    .chain(cfg.peers.iter().map(|p| p.id.clone())),
            ),
            stats: MeshStats::default(),
            front_messages: std::sync::OnceLock::new(),
            center,
        });
        Ok((mesh, queues))
    }

    /// Spawns the link task, the senders and the flooder.
    pub fn spawn(self: &Arc<Self>, queues: Vec<mpsc::Receiver<Outgoing>>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for (peer, rx) in self.peers.iter().cloned().zip(queues) {
            tasks.push(tokio::spawn(self.clone().send_loop(peer, rx)));
        }
        tasks.push(tokio::spawn(self.clone().flood_loop()));
        tasks.push(tokio::spawn(self.clone().save_loop()));
        tasks.push(tokio::spawn(self.clone().link_loop()));
        tasks
    }

    /// Persists watermarks every few seconds when they changed. A crash loses
    /// at most the last few seconds of advances, which only causes a
    /// redundant (idempotent) pull.
    async fn save_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            if self.marks_dirty.swap(false, Ordering::Relaxed) {
                let marks: Vec<(String, u64)> = self
                    .marks
                    .lock()
                    .expect("marks lock")
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                if let Err(e) = self.center.save_watermarks(&marks) {
                    tracing::warn!("saving watermarks failed: {e}");
                    self.marks_dirty.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    /// Visibilities of the parts of `r` (e.g. an agent's capabilities); an
    /// unreadable body counts as hidden everywhere.
    fn parts_of(&self, r: &Record) -> Vec<regmesh_core::Visibility> {
        match (self.center.kinds().get(&r.kind), r.body_value()) {
            (Some(k), Ok(b)) => k.part_visibilities(&b),
            _ => vec![regmesh_core::Visibility::Local],
        }
    }

    /// May `r` be sent to a peer with `policy`?
    fn visible_to(&self, policy: &ExportPolicy, r: &Record) -> bool {
        policy.allows(r, &self.parts_of(r))
    }

    /// Our watermark for `origin`: for ourselves, the last seq we issued.
    pub fn mark(&self, origin: &str) -> u64 {
        if origin == self.me {
            // The last seq we issued: every own write up to it is here, or
            // was superseded (by a newer own write, or a rival's version).
            return self.center.own_seq();
        }
        self.marks.lock().expect("marks lock").get(origin)
    }

    /// All our watermarks, ours included.
    pub fn marks(&self) -> HashMap<String, u64> {
        let mut m = self.marks.lock().expect("marks lock").to_map();
        m.insert(self.me.clone(), self.mark(&self.me));
        m
    }

    /// `from..=through` of `origin` was covered by a message or pull answer:
    /// the mark moves, but never past what `origin` has shown
    /// ([`Ceilings`]).
    fn advance(&self, origin: &str, from: u64, through: u64) {
        if origin == self.me {
            return;
        }
        let through = self.ceilings.lock().expect("ceilings lock").bound(origin, through);
        if self.marks.lock().expect("marks lock").advance(origin, from, through) {
            self.marks_dirty.store(true, Ordering::Relaxed);
        }
    }

    pub fn peer(&self, id: &str) -> Option<&Arc<Peer>> {
        self.peers.iter().find(|p| p.cfg.id == id)
    }

    pub fn node_state(&self) -> NodeState {
        *self.state.lock().expect("state lock")
    }

    /// Records of `origin` its origin signed were seen here: their seqs
    /// are evidence of how far it has reached.
    fn witness_records(&self, records: &[Record]) {
        let mut c = self.ceilings.lock().expect("ceilings lock");
        for r in records {
            c.witness(&r.origin, r.seq);
        }
    }
}
