//! The mesh runtime of one center: the I/O around the sans-io decisions of
//! `regmesh_proto` (dedup windows, peer lifecycles, node state, export
//! policy, replay cache, flood targets, anti-entropy, vote tallies). It owns
//! the tasks, the real clock, the TLS connections and the center's change
//! log; every protocol decision is a call into proto, so the simulator
//! (`regmesh-sim`) exercises the same code.
//!
//! Tasks: per peer, a beat loop (HELLO until introduced, then heartbeats
//! carrying our interval, watermarks and digests, each call bounded by the
//! interval) and a sender draining a bounded queue of floods; one judge
//! that re-judges every peer's lifecycle on its own timer, whatever calls
//! are in flight; one flooder that reads this center's own committed
//! changes from the change log and floods them; pulls, full syncs and vote
//! collections as they are needed.

use super::client::PeerClient;
use crate::center::{now_ms, Center, Verified, WriteError};
use crate::config::{Config, PeerConfig};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hyper::{Method, StatusCode};
use regmesh_core::codec;
use regmesh_core::Record;
use regmesh_proto::constants::DIGESTS_PER_BEAT;
use regmesh_proto::dedup::{CounterWindow, Seen};
use regmesh_proto::flood;
use regmesh_proto::lifecycle::{self, PeerLifecycle, PeerState};
use regmesh_proto::node_state::NodeState;
use regmesh_proto::policy::ExportPolicy;
use regmesh_proto::replay::ReplayCache;
use regmesh_proto::sync::{self as ae, Ceilings, Marks, PeerMarks, Pulls, Resync, SyncRequests, Unproven};
use regmesh_proto::tally::{Quorum, Rule};
use regmesh_proto::vote::Claims;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

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
    life: Mutex<PeerLifecycle>,
    client: PeerClient,
    queue: mpsc::Sender<Outgoing>,
    /// Whether its last heartbeat call was answered 200 (DRiP §5.7).
    reachable: AtomicBool,
    /// The DRiP state it last announced.
    announced: Mutex<Option<String>>,
    /// Its per-origin watermarks, from its last beat.
    their_marks: Mutex<PeerMarks>,
    /// Whether its digests matched ours at equal watermarks (last compared).
    digest_match: Mutex<Option<bool>>,
    /// Our watermarks as of the last beat it answered (deltas start there).
    acked_marks: Mutex<HashMap<String, u64>>,
    beats_sent: AtomicU64,
    /// Where the next beat's slice of digests starts.
    digest_cursor: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
}

/// A vote collecting answers from peers.
/// One heartbeat's contents (regmesh's JSON body; DRiP's plain state word
/// also parses).
#[derive(Debug, Default)]
pub struct Beat {
    pub state: Option<String>,
    pub interval_ms: Option<u64>,
    pub marks: HashMap<String, u64>,
    /// Whether `marks` is the whole map (else only what changed since the
    /// sender's last answered beat). Beats without the field are whole.
    pub full: bool,
    pub digests: Value,
    /// What the sender sends us (regmesh beats carry it).
    pub policy: Option<ExportPolicy>,
}

impl Beat {
    /// Reads `{"state","interval_ms","watermarks","digests"}`, a bare state
    /// string, or nothing.
    pub fn parse(v: &Value) -> Result<Beat, String> {
        let beat = match v {
            Value::Object(m) => Beat {
                state: m.get("state").and_then(Value::as_str).map(str::to_string),
                interval_ms: m.get("interval_ms").and_then(Value::as_u64),
                marks: m
                    .get("watermarks")
                    .and_then(Value::as_object)
                    .map(|w| {
                        w.iter()
                            .take(4096)
                            .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                            .collect()
                    })
                    .unwrap_or_default(),
                digests: m.get("digests").cloned().unwrap_or(Value::Null),
                full: m.get("full").and_then(Value::as_bool).unwrap_or(true),
                policy: m.get("policy").map(|p| {
                    let names = |f: &str| -> Vec<String> {
                        p.get(f)
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .take(1024)
                                    .filter_map(|v| v.as_str().map(String::from))
                                    .collect()
                            })
                            .unwrap_or_default()
                    };
                    ExportPolicy::new(names("kinds"), names("groups"))
                }),
            },
            Value::String(s) => Beat {
                state: Some(s.clone()),
                full: true,
                ..Beat::default()
            },
            Value::Null => Beat {
                full: true,
                ..Beat::default()
            },
            _ => return Err("a heartbeat body is a JSON object or a state".into()),
        };
        if let Some(s) = &beat.state {
            if !matches!(s.as_str(), "active" | "inactive" | "sync") {
                return Err(format!("state {s:?} is not active, inactive or sync"));
            }
        }
        Ok(beat)
    }
}

impl Peer {
    /// Our next beat to it carries the whole watermark map.
    pub fn forget_acked_marks(&self) {
        self.acked_marks.lock().expect("marks lock").clear();
    }
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
    state: Mutex<NodeState>,
    /// When this center entered `sync` (ms), to judge when it has caught up.
    sync_since: Mutex<Option<u64>>,
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
        for pc in &cfg.peers {
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            queues.push(rx);
            peers.push(Arc::new(Peer {
                policy: ExportPolicy::new(pc.kinds.iter().cloned(), pc.groups.iter().cloned()),
                life: Mutex::new(PeerLifecycle::known(p.beat_interval_ms)),
                client: PeerClient::new(&pc.id, &pc.url, tls.clone()),
                queue: tx,
                reachable: AtomicBool::new(false),
                announced: Mutex::new(None),
                their_marks: Mutex::new(PeerMarks::default()),
                digest_match: Mutex::new(None),
                acked_marks: Mutex::new(HashMap::new()),
                beats_sent: AtomicU64::new(0),
                digest_cursor: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                cfg: pc.clone(),
            }));
        }
        let state = NodeState::initial(!peers.is_empty());
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
            sync_since: Mutex::new(None),
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

    /// Spawns the beat loops, the senders and the flooder.
    pub fn spawn(self: &Arc<Self>, queues: Vec<mpsc::Receiver<Outgoing>>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for (peer, rx) in self.peers.iter().cloned().zip(queues) {
            tasks.push(tokio::spawn(self.clone().beat_loop(peer.clone())));
            tasks.push(tokio::spawn(self.clone().send_loop(peer, rx)));
        }
        tasks.push(tokio::spawn(self.clone().flood_loop()));
        tasks.push(tokio::spawn(self.clone().save_loop()));
        tasks.push(tokio::spawn(self.clone().judge_loop()));
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

    fn reassess_node_state(self: &Arc<Self>) {
        let reachable = self
            .peers
            .iter()
            .filter(|p| p.reachable.load(Ordering::Relaxed))
            .count();
        // Caught up: in sync for two beat intervals (so every reachable peer
        // has told us its watermarks), no pull running, and nobody ahead.
        let caught_up = ae::caught_up(
            *self.sync_since.lock().expect("sync lock"),
            now_ms(),
            self.interval_ms,
            self.pulling.lock().expect("pulling lock").is_idle(),
            self.behind_any(),
        );
        let mut st = self.state.lock().expect("state lock");
        let (next, start_sync) = st.next(reachable, caught_up);
        if start_sync {
            *self.sync_since.lock().expect("sync lock") = Some(now_ms());
            // A center that knows nothing of the mesh yet (a new one) asks a
            // peer for a full sync (DRiP §5.6); others catch up by pulls.
            let fresh = self.marks.lock().expect("marks lock").is_empty() && self.center.own_seq() == 0;
            if fresh && !self.full_sync_done.load(Ordering::Relaxed) {
                if let Some(peer) = self.peers.iter().find(|p| p.reachable.load(Ordering::Relaxed)).cloned() {
                    tokio::spawn(self.clone().request_full_sync(peer));
                }
            }
        }
        if next != *st {
            tracing::info!(from = st.as_str(), to = next.as_str(), reachable, "node state");
            *st = next;
            self.center.set_accepting_writes(next.accepts_updates());
        }
    }

    /// Records of `origin` its origin signed were seen here: their seqs
    /// are evidence of how far it has reached.
    fn witness_records(&self, records: &[Record]) {
        let mut c = self.ceilings.lock().expect("ceilings lock");
        for r in records {
            c.witness(&r.origin, r.seq);
        }
    }

    /// What `peer` reports holding of each origin, less the claims a pull
    /// from it could not back ([`Unproven`]).
    fn credible_marks(&self, peer: &Peer) -> HashMap<String, u64> {
        let theirs = peer.their_marks.lock().expect("marks lock").latest().clone();
        let unproven = self.unproven.lock().expect("unproven lock");
        theirs
            .into_iter()
            .filter(|(o, w)| unproven.counts(&peer.cfg.id, o, *w))
            .collect()
    }

    /// True if some peer has told us of an origin it holds further than we.
    fn behind_any(&self) -> bool {
        self.peers
            .iter()
            .any(|p| self.credible_marks(p).iter().any(|(o, w)| *w > self.mark(o)))
    }

    fn note(&self, peer: &Peer, t: Option<regmesh_proto::lifecycle::Transition>) {
        if let Some(t) = t {
            tracing::info!(peer = %peer.cfg.id, from = t.from.as_str(), to = t.to.as_str(), "peer state");
        }
    }

    /// Re-judges every peer's lifecycle on a timer of its own
    /// ([`lifecycle::judge_every_ms`]), so a peer that stops answering is
    /// DEGRADED past 2× and INTERRUPTED past 10× whatever calls to it are
    /// doing.
    async fn judge_loop(self: Arc<Self>) {
        let every = Duration::from_millis(lifecycle::judge_every_ms(self.interval_ms));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for peer in &self.peers {
                let t = peer.life.lock().expect("life lock").tick(now_ms());
                self.note(peer, t);
            }
        }
    }

    async fn beat_loop(self: Arc<Self>, peer: Arc<Peer>) {
        // A beat call never outlasts its interval: a hung one counts as
        // unanswered and the next beat goes on time.
        let deadline = Duration::from_millis(lifecycle::beat_deadline_ms(self.interval_ms));
        let mut tick = tokio::time::interval(Duration::from_millis(self.interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let state = peer.life.lock().expect("life lock").state();
            let ok = if state <= PeerState::Known {
                let body = serde_json::to_vec(&json!({"id": self.me, "interval_ms": self.interval_ms})).expect("json");
                match peer
                    .client
                    .call_within(deadline, &self.center, Method::POST, "/mesh/v1/hello", &[], Some(body))
                    .await
                {
                    Ok(a) if a.status == StatusCode::OK => {
                        let t = peer.life.lock().expect("life lock").hello_answered(now_ms());
                        self.note(&peer, t);
                        // A (re)introduced peer gets our whole map next.
                        peer.forget_acked_marks();
                        // Introduced: the first heartbeat goes now, not a
                        // whole interval later.
                        tick.reset_immediately();
                        true
                    }
                    Ok(a) => {
                        tracing::warn!(peer = %peer.cfg.id, status = %a.status, body = %String::from_utf8_lossy(&a.body), "HELLO refused");
                        false
                    }
                    Err(e) => {
                        tracing::debug!(peer = %peer.cfg.id, "HELLO failed: {e}");
                        false
                    }
                }
            } else {
                let n = peer.beats_sent.fetch_add(1, Ordering::Relaxed);
                let full = n.is_multiple_of(ae::FULL_BEAT_EVERY);
                let (payload, sent) = self.beat_for(&peer, full);
                let body = serde_json::to_vec(&payload).expect("json");
                let path = format!("/heartbeat/node/{}", self.me);
                match peer
                    .client
                    .call_within(
                        deadline,
                        &self.center,
                        Method::POST,
                        &path,
                        &[("drip-node-id", self.me.clone())],
                        Some(body),
                    )
                    .await
                {
                    Ok(a) if a.status == StatusCode::OK => {
                        let t = peer.life.lock().expect("life lock").beat_acked(now_ms());
                        self.note(&peer, t);
                        *peer.acked_marks.lock().expect("marks lock") = sent;
                        // The answer is the peer's own beat (regmesh peers
                        // send one; an empty answer carries nothing).
                        if let Ok(v) = serde_json::from_slice::<Value>(&a.body) {
                            if let Ok(b) = Beat::parse(&v) {
                                if b.state.is_some() {
                                    self.beat_from(&peer.cfg.id, b);
                                }
                            }
                        }
                        true
                    }
                    Ok(a) => {
                        tracing::debug!(peer = %peer.cfg.id, status = %a.status, "heartbeat refused");
                        false
                    }
                    Err(e) => {
                        tracing::debug!(peer = %peer.cfg.id, "heartbeat failed: {e}");
                        false
                    }
                }
            };
            peer.reachable.store(ok, Ordering::Relaxed);
            let t = peer.life.lock().expect("life lock").tick(now_ms());
            self.note(&peer, t);
            self.reassess_node_state();
        }
    }

    /// Sends queued floods to one peer, up to [`FLOODS_IN_FLIGHT`] at once
    /// (merging makes their order of arrival irrelevant), leaving the rest of
    /// the peer's connections for votes and beats.
    async fn send_loop(self: Arc<Self>, peer: Arc<Peer>, mut rx: mpsc::Receiver<Outgoing>) {
        let in_flight = Arc::new(tokio::sync::Semaphore::new(FLOODS_IN_FLIGHT));
        while let Some(m) = rx.recv().await {
            let Ok(slot) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let me = self.clone();
            let peer = peer.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let mut headers = vec![
                    ("drip-node-id", m.initiator.clone()),
                    ("drip-node-counter", m.counter.to_string()),
                    ("drip-node-counter-reset", m.reset.to_string()),
                    ("drip-transaction-type", "update".to_string()),
                ];
                if let Some(f) = m.seq_from {
                    headers.push(("regmesh-seq-from", f.to_string()));
                }
                match peer
                    .client
                    .call(&me.center, Method::POST, "/commit", &headers, Some(m.body))
                    .await
                {
                    Ok(a) if a.status == StatusCode::OK => {
                        peer.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(a) => {
                        peer.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(peer = %peer.cfg.id, status = %a.status, body = %String::from_utf8_lossy(&a.body), "flood refused");
                    }
                    Err(e) => {
                        peer.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(peer = %peer.cfg.id, "flood failed: {e}");
                    }
                }
            });
        }
    }

    /// Queues `records` (of initiator/counter) to every OPERATIONAL peer but
    /// `except`, each getting only what its policy allows.
    fn fan_out(
        &self,
        initiator: &str,
        (counter, reset, seq_from): (u64, bool, Option<u64>),
        records: &[Record],
        except: Option<&str>,
    ) -> usize {
        let state = self.node_state();
        if !state.propagates() {
            return 0;
        }
        let relayed = initiator != self.me;
        // Computed once per message, then judged per peer.
        let parts: Vec<Vec<regmesh_core::Visibility>> = records.iter().map(|r| self.parts_of(r)).collect();
        let mut queued = 0;
        for peer in &self.peers {
            if !flood::sends_to(
                state,
                &peer.cfg.id,
                &peer.life.lock().expect("life lock"),
                initiator,
                except,
            ) {
                continue;
            }
            let allowed: Vec<&Record> = records
                .iter()
                .zip(&parts)
                .filter(|(r, p)| flood::allowed(&peer.policy, r, p, relayed))
                .map(|(r, _)| r)
                .collect();
            if !flood::worth_sending(allowed.len(), seq_from.is_some()) {
                continue;
            }
            let m = Outgoing {
                initiator: initiator.to_string(),
                counter,
                reset,
                seq_from,
                body: encode_records(allowed.into_iter()),
            };
            match peer.queue.try_send(m) {
                Ok(()) => queued += 1,
                Err(_) => {
                    peer.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        queued
    }

    async fn flood_loop(self: Arc<Self>) {
        let mut rx = self.center.subscribe();
        let mut last = self.center.head();
        loop {
            // Any event (or a lag notice) means: read the log from `last`.
            match rx.recv().await {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
            loop {
                let evs = match self.center.changes_after(last, FLOOD_BATCH_MAX) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!("flooder cannot read the change log: {e}");
                        break;
                    }
                };
                let Some(end) = evs.last().map(|e| e.no) else { break };
                if evs.first().is_some_and(|e| e.no > last + 1) {
                    tracing::warn!(
                        from = last + 1,
                        to = evs[0].no - 1,
                        "changes trimmed before they were flooded"
                    );
                }
                last = end;
                let own: Vec<Record> = evs
                    .into_iter()
                    .map(|e| e.record)
                    .filter(|r| r.origin == self.me)
                    .collect();
                if own.is_empty() {
                    continue;
                }
                // DRiP-Node-Counter: the highest seq in the message. Our seq
                // is persisted with the records, so counters survive restarts.
                let counter = own.iter().map(|r| r.seq).max().expect("not empty");
                // The message covers every own seq from its first to its last:
                // all own changes between them are in it (or filtered out
                // for the peer, which then may not see them anyway).
                let from = own.iter().map(|r| r.seq).min().expect("not empty");
                self.stats.floods_initiated.fetch_add(1, Ordering::Relaxed);
                self.fan_out(&self.me.clone(), (counter, false, Some(from)), &own, None);
            }
        }
    }

    /// A flood arrived from peer `sender`: verify, dedup, apply, relay.
    /// Returns (duplicate, applied).
    pub async fn receive(
        &self,
        sender: &str,
        initiator: &str,
        (counter, reset, seq_from): (u64, bool, Option<u64>),
        records: Vec<Record>,
    ) -> Result<(bool, usize), WriteError> {
        self.stats.floods_received.fetch_add(1, Ordering::Relaxed);
        if !self.node_state().accepts_updates() {
            return Err(WriteError::Inactive);
        }
        // Our own message come back by another path, or a copy already seen:
        // skip it before spending signature checks on it.
        let peeked = if initiator == self.me {
            Seen::Duplicate
        } else {
            self.windows
                .lock()
                .expect("windows lock")
                .get(initiator)
                .map_or(Seen::New, |w| w.peek(counter, reset))
        };
        if peeked == Seen::Duplicate {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return Ok((true, 0));
        }
        let verified: Verified = self.center.verify_remote(records);
        if !verified.refused().is_empty() {
            // What passed is merged (idempotent); the message is not marked
            // seen, relayed, or counted toward the watermark, so a refused
            // record is never skipped silently. `apply_verified` answers
            // `Refused` whenever something was refused.
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return self.center.apply_verified(verified).await.map(|n| (false, n));
        }
        // The records' own signatures raise the origin's ceiling first.
        self.witness_records(verified.records());
        if initiator != sender && !self.ceilings.lock().expect("ceilings lock").backs(initiator, counter) {
            // A relay's counter above anything the origin has shown: what it
            // carried is applied, but it marks no window, moves no
            // watermark and is not relayed (proto `Ceilings::backs`).
            self.stats.unbacked.fetch_add(1, Ordering::Relaxed);
            return self.center.apply_verified(verified).await.map(|n| (false, n));
        }
        // Recorded only now, so an unverifiable message cannot mark a counter
        // as seen and shadow the genuine one.
        let seen = {
            let mut w = self.windows.lock().expect("windows lock");
            w.entry(initiator.to_string()).or_default().observe(counter, reset)
        };
        if seen == Seen::Duplicate {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return Ok((true, 0));
        }
        let records = verified.records().to_vec();
        let applied = self.center.apply_verified(verified).await?;
        if initiator == sender {
            // The origin's own message: its counter is its own word.
            self.ceilings.lock().expect("ceilings lock").witness(initiator, counter);
        }
        if let Some(from) = seq_from {
            self.advance(initiator, from, counter);
        }
        // Too old to tell whether it was seen: applied (idempotent), not relayed.
        let n = if flood::relays(seen) {
            self.fan_out(initiator, (counter, reset, seq_from), &records, Some(sender))
        } else {
            0
        };
        self.stats.relayed.fetch_add(n as u64, Ordering::Relaxed);
        Ok((false, applied))
    }

    /// Our per-(origin, kind, visibility class) digests of live versions,
    /// for a slice of the origins on which `peer` last reported our own
    /// watermark, and only for the kinds and classes its policy receives:
    /// `{origin: {kind or kind@class: hex}}`.
    fn digests_for(&self, peer: &Peer) -> Value {
        let theirs = peer.their_marks.lock().expect("marks lock").latest().clone();
        let cursor = peer.digest_cursor.fetch_add(DIGESTS_PER_BEAT as u64, Ordering::Relaxed) as usize;
        let mut out = serde_json::Map::new();
        for origin in ae::digest_slice(&self.marks(), &theirs, cursor, DIGESTS_PER_BEAT) {
            let kinds: serde_json::Map<String, Value> = self
                .center
                .class_digests(&origin)
                .into_iter()
                .filter(|(k, c, _)| peer.policy.sees_class(k, c))
                .map(|(k, c, d)| (ae::digest_key(&k, &c), Value::String(d.to_hex())))
                .collect();
            out.insert(origin, Value::Object(kinds));
        }
        Value::Object(out)
    }

    /// Compares a peer's digests with ours where both hold the same
    /// watermark; on a difference, re-pulls that origin from the start (at
    /// most every [`ae::REPAIR_EVERY_MS`]).
    fn compare_digests(
        self: &Arc<Self>,
        peer: &Arc<Peer>,
        marks: &HashMap<String, u64>,
        digests: &Value,
        their_policy: Option<&ExportPolicy>,
    ) {
        let Some(origins) = digests.as_object() else { return };
        let mut all_match = None;
        for (origin, kinds) in origins {
            if marks.get(origin) != Some(&self.mark(origin)) {
                continue;
            }
            let ours: std::collections::BTreeMap<String, String> = self
                .center
                .class_digests(origin)
                .into_iter()
                .map(|(k, c, d)| (ae::digest_key(&k, &c), d.to_hex()))
                .collect();
            let Some(kinds) = kinds.as_object() else { continue };
            let theirs: Vec<(&str, String)> = kinds
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("").to_string()))
                .collect();
            // A class it holds nothing of is absent from its beat: compare
            // ours too where its policy (sent along) would send it to us.
            let same = ae::digests_agree(theirs.iter().map(|(k, d)| (*k, d)), &ours, |k| {
                let (kind, class) = ae::split_digest_key(k);
                their_policy.is_some_and(|p| p.sees_class(kind, class))
            });
            all_match = Some(all_match.unwrap_or(true) && same);
            if !same && origin != &self.me {
                let now = now_ms();
                let slot = (peer.cfg.id.clone(), origin.clone());
                let mut last = self.last_repair_ms.lock().expect("repair lock");
                // The peer's turn is spent only on a re-pull that starts (one
                // pull per origin at a time): another peer's useless repair
                // must not keep this one from ever running.
                if ae::repair_due(last.get(&slot).copied(), now)
                    && self.pulling.lock().expect("pulling lock").start(origin)
                {
                    last.insert(slot, now);
                    drop(last);
                    tracing::info!(peer = %peer.cfg.id, %origin, "digests differ at equal watermarks: re-pulling");
                    tokio::spawn(self.clone().pull(peer.clone(), origin.clone(), true));
                }
            }
        }
        if all_match.is_some() {
            *peer.digest_match.lock().expect("digest lock") = all_match;
        }
    }

    /// What this center tells `peer` in its answer to the peer's heartbeat:
    /// the watermarks changed since the peer last answered one of ours.
    pub fn beat_payload(&self, peer: &Peer) -> Value {
        self.beat_for(peer, false).0
    }

    /// A beat for `peer`: whole, or only the watermarks changed since the
    /// last beat it answered; with the full map it describes.
    fn beat_for(&self, peer: &Peer, full: bool) -> (Value, HashMap<String, u64>) {
        let now = self.marks();
        let acked = peer.acked_marks.lock().expect("marks lock").clone();
        let full = full || acked.is_empty();
        let marks = ae::beat_marks(&now, &acked, full);
        let v = json!({
            "state": self.node_state().as_str(),
            "interval_ms": self.interval_ms,
            "watermarks": marks,
            "full": full,
            "digests": self.digests_for(peer),
            // What we send it, so it can compare classes we hold none of.
            "policy": {"kinds": peer.policy.kinds, "groups": peer.policy.groups},
        });
        (v, now)
    }

    /// Peer `peer` said in its own beat that it has reached seq `own` of its
    /// own origin. That raises its ceiling; a mark of ours ahead of it can
    /// only come from a false claim, hides whatever we are missing of it from
    /// pulls and digests alike, and is reset: the digests are reported as
    /// differing and the origin is pulled again from its start.
    fn origin_spoke(self: &Arc<Self>, peer: &Arc<Peer>, own: u64) {
        let origin = &peer.cfg.id;
        let exceeded = {
            let mut c = self.ceilings.lock().expect("ceilings lock");
            c.witness(origin, own);
            c.exceeded_by(origin, self.mark(origin))
        };
        if !exceeded {
            return;
        }
        tracing::warn!(
            peer = %origin, mark = self.mark(origin), own,
            "our watermark of this origin is ahead of anything it has shown: resetting it and pulling again"
        );
        if self.marks.lock().expect("marks lock").reset(origin) {
            self.marks_dirty.store(true, Ordering::Relaxed);
        }
        *peer.digest_match.lock().expect("digest lock") = Some(false);
        if self.pulling.lock().expect("pulling lock").start(origin) {
            tokio::spawn(self.clone().pull(peer.clone(), origin.clone(), false));
        }
    }

    /// A heartbeat from peer `sender`, with its announced state, interval
    /// and watermarks. Starts a pull for every origin it holds further.
    pub fn beat_from(self: &Arc<Self>, sender: &str, beat: Beat) {
        let Beat {
            state,
            interval_ms,
            marks,
            full,
            digests,
            policy,
        } = beat;
        let interval_ms = interval_ms.unwrap_or(1000).clamp(50, 3_600_000);
        let Some(peer) = self.peer(sender).cloned() else { return };
        // Floods in flight arrive within milliseconds: pull only on a lead
        // that outlived one beat (or at once while catching up, `sync`).
        let (prev, marks) = {
            let mut view = peer.their_marks.lock().expect("marks lock");
            let prev = view.beat(marks, full);
            (prev, view.latest().clone())
        };
        if let Some(&own) = marks.get(sender) {
            self.origin_spoke(&peer, own);
        }
        self.compare_digests(&peer, &marks, &digests, policy.as_ref());
        let t = peer
            .life
            .lock()
            .expect("life lock")
            .beat_received(now_ms(), interval_ms);
        self.note(&peer, t);
        if state.is_some() {
            *peer.announced.lock().expect("announced lock") = state;
        }
        // A claim a pull from this peer could not back starts no more pulls.
        let credible = |m: &HashMap<String, u64>| -> HashMap<String, u64> {
            let unproven = self.unproven.lock().expect("unproven lock");
            m.iter()
                .filter(|(o, w)| unproven.counts(sender, o, **w))
                .map(|(o, w)| (o.clone(), *w))
                .collect()
        };
        let origins = ae::origins_to_pull(
            &self.me,
            self.node_state(),
            &credible(&marks),
            &credible(&prev),
            |o| self.mark(o),
            |o| self.center.key_of(o).is_some(),
        );
        for origin in origins {
            if self.pulling.lock().expect("pulling lock").start(&origin) {
                tokio::spawn(self.clone().pull(peer.clone(), origin, false));
            }
        }
    }

    /// Pulls `origin`'s versions after our watermark from `peer`, page by
    /// page, and advances the watermark to what the peer covered.
    ///
    /// If the peer answers that it purged deletions of `origin` above our
    /// watermark, we may hold records deleted since: the pull becomes a
    /// *replacing resync* of that origin. It starts again from seq 0, and
    /// when the peer has sent everything, drops each live record of
    /// `origin` we held when it began, that the peer did not send, that the
    /// peer's policy would have let it send, and that the peer has covered.
    async fn pull(self: Arc<Self>, peer: Arc<Peer>, origin: String, from_zero: bool) {
        const PAGE: usize = 1000;
        const PAGES_MAX: usize = 100;
        const RESYNC_PAGES_MAX: usize = 10_000;
        self.stats.pulls.fetch_add(1, Ordering::Relaxed);
        let mut after = if from_zero { 0 } else { self.mark(&origin) };
        let mut resync: Option<Resync> = None;
        let mut complete = false;
        let mut last_answer = Value::Null;
        let mut last_covered = 0;
        let mut page_no = 0;
        while page_no < if resync.is_some() { RESYNC_PAGES_MAX } else { PAGES_MAX } {
            page_no += 1;
            let body = serde_json::to_vec(&json!({"origin": origin, "after": after, "limit": PAGE})).expect("json");
            let page = match peer
                .client
                .call(&self.center, Method::POST, "/mesh/v1/pull", &[], Some(body))
                .await
            {
                Ok(a) if a.status == StatusCode::OK => a.body,
                Ok(a) => {
                    tracing::warn!(peer = %peer.cfg.id, %origin, status = %a.status, "pull refused");
                    break;
                }
                Err(e) => {
                    tracing::debug!(peer = %peer.cfg.id, %origin, "pull failed: {e}");
                    break;
                }
            };
            let parsed: Result<(Vec<Record>, u64, bool, Value), String> = (|| {
                let v: Value = serde_json::from_slice(&page).map_err(|e| e.to_string())?;
                let covered = v
                    .get("covered_through")
                    .and_then(Value::as_u64)
                    .ok_or("no covered_through")?;
                let more = v.get("more").and_then(Value::as_bool).unwrap_or(false);
                Ok((decode_records(&page)?, covered, more, v))
            })();
            let (records, covered, more, answer) = match parsed {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(peer = %peer.cfg.id, %origin, "bad pull answer: {e}");
                    break;
                }
            };
            if records.iter().any(|r| r.origin != origin) {
                tracing::warn!(peer = %peer.cfg.id, %origin, "pull answer holds another origin's records");
                break;
            }
            let purged = answer.get("purged_through").and_then(Value::as_u64).unwrap_or(0);
            let start_resync = resync.is_none() && ae::resync_needed(&self.me, &origin, purged, self.mark(&origin));
            if start_resync {
                tracing::info!(
                    peer = %peer.cfg.id, %origin, purged, mark = self.mark(&origin),
                    "behind the peer's tombstone horizon: resyncing this origin"
                );
                self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                resync = Some(Resync::begin(self.center.origin_live(&origin), purged));
            }
            if let Some(rs) = resync.as_mut() {
                for r in &records {
                    rs.sent(&r.kind, &r.id);
                }
            }
            let records = if from_zero {
                // A digest repair fills what the peer has and we lack; it
                // never brings back what a purged deletion removed here.
                let purged = self.center.purged_through(&origin);
                records
                    .into_iter()
                    .filter(|r| {
                        let held = matches!(self.center.get_held(&r.kind, &r.id), Ok(Some(_)));
                        ae::repair_may_apply(r.seq, purged, held)
                    })
                    .collect()
            } else {
                records
            };
            let n = records.len() as u64;
            let max_seq = records.iter().map(|r| r.seq).max();
            if let Err(e) = self.center.apply_remote(records).await {
                tracing::warn!(peer = %peer.cfg.id, %origin, "pulled records refused: {e}");
                break;
            }
            {
                // Applied, so verified: their seqs are the origin's word, and
                // so is what the origin itself says it covered.
                let mut c = self.ceilings.lock().expect("ceilings lock");
                if let Some(m) = max_seq {
                    c.witness(&origin, m);
                }
                if peer.cfg.id == origin {
                    c.witness(&origin, covered);
                }
            }
            last_covered = covered;
            self.stats.pulled_records.fetch_add(n, Ordering::Relaxed);
            if start_resync && after > 0 {
                // Start again from the beginning; this page was merged.
                after = 0;
                continue;
            }
            // A resync moves the watermark only once complete: one broken
            // off half way must start again, not leave deleted records
            // behind a watermark that no longer asks for them.
            if resync.is_none() {
                self.advance(&origin, after + 1, covered);
            }
            if !more || covered <= after {
                complete = !more;
                last_answer = answer;
                break;
            }
            after = covered;
        }
        let resyncing = resync.is_some();
        if let (Some(rs), true) = (resync, complete) {
            let covered = last_answer.get("covered_through").and_then(Value::as_u64).unwrap_or(0);
            let covered = self.ceilings.lock().expect("ceilings lock").bound(&origin, covered);
            if self.finish_resync(&peer, &origin, rs, &last_answer).await
                && self.marks.lock().expect("marks lock").raise(&origin, covered)
            {
                self.marks_dirty.store(true, Ordering::Relaxed);
            }
        }
        if !resyncing && last_covered > self.mark(&origin) && origin != self.me {
            // The peer claims more than the origin has shown us: do not
            // pull on that claim again until it grows.
            tracing::debug!(peer = %peer.cfg.id, %origin, claimed = last_covered, "pull answer covers more than its origin has shown");
            self.unproven
                .lock()
                .expect("unproven lock")
                .note(&peer.cfg.id, &origin, last_covered);
        }
        self.pulling.lock().expect("pulling lock").done(&origin);
    }

    /// Drops what a complete replacing resync of `origin` from `peer` showed
    /// gone: records held when it began that the peer neither sent nor
    /// withholds from us by policy, at seqs the peer covered.
    /// Returns whether the drops are done (the watermark may then move).
    async fn finish_resync(&self, peer: &Peer, origin: &str, rs: Resync, answer: &Value) -> bool {
        let covered = answer.get("covered_through").and_then(Value::as_u64).unwrap_or(0);
        let names = |f: &str| -> Vec<String> {
            answer
                .pointer(&format!("/policy/{f}"))
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                .unwrap_or_default()
        };
        if answer.pointer("/policy/kinds").and_then(Value::as_array).is_none() {
            tracing::warn!(peer = %peer.cfg.id, %origin, "resync answer has no policy; dropping nothing");
            return false;
        }
        let theirs = ExportPolicy::new(names("kinds"), names("groups"));
        let purged = rs.purged;
        let drops = rs.drops(covered, |kind, id, seq| {
            matches!(self.center.get_held(kind, id), Ok(Some(r)) if r.seq == seq && self.visible_to(&theirs, &r))
        });
        let candidates = drops.len();
        match self.center.forget(origin, drops, purged).await {
            Ok(dropped) => {
                tracing::info!(
                    peer = %peer.cfg.id, %origin, candidates, dropped,
                    "resync complete: dropped records deleted at their origin"
                );
                true
            }
            Err(e) => {
                tracing::warn!(peer = %peer.cfg.id, %origin, "resync could not drop records: {e}");
                false
            }
        }
    }

    /// Serves a pull from peer `sender`: `origin`'s versions after `after`
    /// that its policy allows, and the seq through which they cover.
    pub fn serve_pull(&self, sender: &str, origin: &str, after: u64, limit: usize) -> Result<Vec<u8>, String> {
        let peer = self.peer(sender).ok_or("not a peer")?;
        let limit = limit.clamp(1, 1000);
        let records = self
            .center
            .origin_after(origin, after, limit)
            .map_err(|e| e.to_string())?;
        let mut more = records.len() == limit;
        let mut items: Vec<String> = Vec::new();
        let mut bytes = 0usize;
        // The last seq this page speaks for (sent, or withheld by policy).
        let mut last = after;
        let mark = self.mark(origin);
        for r in &records {
            if !ae::page_carries(r.seq, mark) {
                more = false;
                break;
            }
            if bytes >= PULL_PAGE_BYTES {
                more = true;
                break;
            }
            if self.visible_to(&peer.policy, r) {
                let item = B64.encode(codec::encode(r));
                bytes += item.len() + 3;
                items.push(item);
            }
            last = r.seq;
        }
        let covered = ae::page_covers(after, last, more, mark);
        Ok(serde_json::to_vec(&json!({
            "records": items,
            "covered_through": covered,
            "more": more,
            // Deletions of `origin` up to here can no longer be shown: a
            // puller below it resyncs (PROTOCOL.md, "Tombstone horizon").
            "purged_through": self.center.purged_through(origin),
            // What we send the puller, so it can tell "withheld" from "gone".
            "policy": {"kinds": peer.policy.kinds, "groups": peer.policy.groups},
        }))
        .expect("json"))
    }

    /// A peer announced its DRiP state (`POST /node/:id/active|inactive`).
    pub fn announce(&self, sender: &str, state: &str) {
        if let Some(peer) = self.peer(sender) {
            *peer.announced.lock().expect("announced lock") = Some(state.to_string());
        }
    }

    /// Asks `peer` for a full sync of everything we may see.
    async fn request_full_sync(self: Arc<Self>, peer: Arc<Peer>) {
        let path = format!("/sync/node/{}", self.me);
        // Noted before asking: the first sync message may beat the answer.
        self.sync_requests
            .lock()
            .expect("sync requests lock")
            .asked(&peer.cfg.id, now_ms());
        let ok = match peer
            .client
            .call(
                &self.center,
                Method::PUT,
                &path,
                &[("drip-node-id", self.me.clone())],
                None,
            )
            .await
        {
            Ok(a) if a.status == StatusCode::OK => {
                tracing::info!(peer = %peer.cfg.id, "full sync requested");
                true
            }
            Ok(a) => {
                tracing::warn!(peer = %peer.cfg.id, status = %a.status, "full sync refused");
                false
            }
            Err(e) => {
                tracing::warn!(peer = %peer.cfg.id, "full sync request failed: {e}");
                false
            }
        };
        if !ok {
            self.sync_requests
                .lock()
                .expect("sync requests lock")
                .done(&peer.cfg.id);
        }
    }

    /// Whether a `sync` message from `sender` answers a full sync we asked
    /// it for (anything else is refused, and changes nothing).
    pub fn sync_expected_from(&self, sender: &str) -> bool {
        self.sync_requests
            .lock()
            .expect("sync requests lock")
            .admits(sender, now_ms())
    }

    /// Serves a full sync to `peer` (DRiP §5.6): every record its policy
    /// allows, origin by origin, in `sync` messages, then one with
    /// `DRiP-Sync-Complete: true` carrying our watermarks.
    pub async fn push_full_sync(self: Arc<Self>, peer: Arc<Peer>) {
        if !self.syncing_to.lock().expect("sync lock").insert(peer.cfg.id.clone()) {
            return;
        }
        const PAGE: usize = 500;
        let marks = self.marks();
        let origins = self.center.known_centers();
        let mut sent = 0usize;
        let mut ok = true;
        'origins: for origin in origins {
            let mut after = 0;
            loop {
                let records = match self.center.origin_after(&origin, after, PAGE) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!("full sync read failed: {e}");
                        ok = false;
                        break 'origins;
                    }
                };
                let Some(last) = records.last().map(|r| r.seq) else {
                    break;
                };
                after = last;
                let allowed: Vec<&Record> = records.iter().filter(|r| self.visible_to(&peer.policy, r)).collect();
                // Messages stay far below the peer's body limit, however
                // large the records (up to 64 KiB each).
                let mut rest = &allowed[..];
                while !rest.is_empty() {
                    let mut n = 0;
                    let mut size = 0;
                    while n < rest.len() && (n == 0 || size < PULL_PAGE_BYTES) {
                        size += rest[n].body.len() + 256;
                        n += 1;
                    }
                    sent += n;
                    if !self
                        .send_sync(&peer, encode_records(rest[..n].iter().copied()), false)
                        .await
                    {
                        ok = false;
                        break 'origins;
                    }
                    rest = &rest[n..];
                }
                if records.len() < PAGE {
                    break;
                }
            }
        }
        if ok {
            let body = serde_json::to_vec(&json!({"records": [], "watermarks": marks})).expect("json");
            ok = self.send_sync(&peer, body, true).await;
        }
        tracing::info!(peer = %peer.cfg.id, records = sent, complete = ok, "full sync pushed");
        self.syncing_to.lock().expect("sync lock").remove(&peer.cfg.id);
    }

    async fn send_sync(&self, peer: &Peer, body: Vec<u8>, complete: bool) -> bool {
        let headers = [
            ("drip-node-id", self.me.clone()),
            ("drip-node-counter", "0".to_string()),
            ("drip-node-counter-reset", "false".to_string()),
            ("drip-transaction-type", "sync".to_string()),
            ("drip-sync-complete", complete.to_string()),
        ];
        matches!(
            peer.client.call(&self.center, Method::POST, "/commit", &headers, Some(body)).await,
            Ok(a) if a.status == StatusCode::OK
        )
    }

    /// A `sync` message from peer `sender`, which we asked for a full sync
    /// ([`Mesh::sync_expected_from`]): verify and merge (no dedup, no
    /// relay); the last one brings the sender's watermarks, which we adopt
    /// only as far as each origin has shown ([`Ceilings`]).
    pub async fn receive_sync(
        &self,
        sender: &str,
        records: Vec<Record>,
        complete: bool,
        marks: HashMap<String, u64>,
    ) -> Result<usize, WriteError> {
        let seen = records.clone();
        let applied = self.center.apply_remote(records).await?;
        self.witness_records(&seen);
        if complete {
            let ceilings = {
                let mut c = self.ceilings.lock().expect("ceilings lock");
                if let Some(&own) = marks.get(sender) {
                    c.witness(sender, own);
                }
                c.clone()
            };
            let mut m = self.marks.lock().expect("marks lock");
            for (origin, w) in marks {
                if origin != self.me && (self.center.key_of(&origin).is_some()) {
                    m.raise(&origin, ceilings.bound(&origin, w));
                }
            }
            drop(m);
            self.marks_dirty.store(true, Ordering::Relaxed);
            self.full_sync_done.store(true, Ordering::Relaxed);
            self.sync_requests.lock().expect("sync requests lock").done(sender);
        }
        Ok(applied)
    }

    /// Hands the mesh the fronts' NOTIFY/RFI types; called once, before the
    /// peer listener serves (later calls are ignored).
    pub fn set_front_messages(&self, m: Arc<crate::messages::PeerMessages>) {
        let _ = self.front_messages.set(m);
    }

    /// A message of a type the node does not answer itself: the front that
    /// registered it answers, else it is rejected with a reason.
    async fn to_front(&self, verb: crate::messages::PeerVerb, sender: &str, typ: &str, msg: Value) -> Value {
        let answer = match self.front_messages.get() {
            Some(reg) => reg.dispatch(verb, typ, sender, msg).await,
            None => None,
        };
        match answer {
            Some(a) => a.to_json(),
            None => {
                let does = match verb {
                    crate::messages::PeerVerb::Notify => "handle NOTIFY",
                    crate::messages::PeerVerb::Rfi => "answer RFI",
                };
                json!({"accepted": false, "reason": format!("{} does not {does} type {typ:?}", self.me)})
            }
        }
    }

    /// A NOTIFY from peer `sender` (document 003): `{"type", ...}`. Built in:
    /// `state` (`{"state": "active|inactive|sync"}`). Other types go to the
    /// front that registered them, else are rejected with a reason.
    pub async fn notify(&self, sender: &str, msg: Value) -> Value {
        let typ = msg.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        match typ.as_str() {
            "state" => match msg.get("state").and_then(Value::as_str) {
                Some(st @ ("active" | "inactive" | "sync")) => {
                    self.announce(sender, st);
                    json!({"accepted": true})
                }
                _ => json!({"accepted": false, "reason": "state must be active, inactive or sync"}),
            },
            "" => json!({"accepted": false, "reason": "a NOTIFY needs a type"}),
            other => {
                self.to_front(crate::messages::PeerVerb::Notify, sender, other, msg)
                    .await
            }
        }
    }

    /// An RFI (request for information) from peer `sender`. Built in:
    /// `sync-state` (our DRiP state, watermarks and peers' states), for the
    /// operator question "what is the synchronization state between centers"
    /// (document 000 §2.8.1). Other types go to the front that registered
    /// them, else are rejected with a reason.
    pub async fn rfi(&self, sender: &str, msg: Value) -> Value {
        let typ = msg.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        match typ.as_str() {
            "sync-state" => {
                let peers: Vec<Value> = self
                    .peers
                    .iter()
                    .map(|p| json!({"id": p.cfg.id, "state": p.life.lock().expect("life lock").state().as_str()}))
                    .collect();
                json!({
                    "accepted": true,
                    "data": {"id": self.me, "state": self.node_state().as_str(), "watermarks": self.marks(), "peers": peers}
                })
            }
            "" => json!({"accepted": false, "reason": "an RFI needs a type"}),
            other => self.to_front(crate::messages::PeerVerb::Rfi, sender, other, msg).await,
        }
    }

    /// Sends a NOTIFY or RFI (`body`: a JSON object with its `type`) to peer
    /// `to` and reads its answer.
    pub async fn send_message(
        &self,
        to: &str,
        verb: crate::messages::PeerVerb,
        body: Vec<u8>,
    ) -> Result<crate::messages::PeerAnswer, crate::handle::SendError> {
        use crate::handle::SendError;
        let peer = self.peer(to).ok_or_else(|| SendError::NotAPeer(to.into()))?;
        let path = format!("/mesh/v1/{}", verb.segment());
        let headers = [("drip-node-id", self.me.clone())];
        let a = peer
            .client
            .call(&self.center, Method::POST, &path, &headers, Some(body))
            .await
            .map_err(|why| SendError::Call { peer: to.into(), why })?;
        let parsed = serde_json::from_slice::<Value>(&a.body).ok();
        match parsed.as_ref().and_then(crate::messages::PeerAnswer::from_json) {
            Some(answer) if a.status == StatusCode::OK => Ok(answer),
            _ => Err(SendError::BadAnswer {
                peer: to.into(),
                status: a.status.as_u16(),
                body: String::from_utf8_lossy(&a.body[..a.body.len().min(512)]).into_owned(),
            }),
        }
    }

    /// Each configured peer's id and lifecycle state.
    pub fn peer_states(&self) -> Vec<(String, PeerState)> {
        self.peers
            .iter()
            .map(|p| (p.cfg.id.clone(), p.life.lock().expect("life lock").state()))
            .collect()
    }

    /// What `/v1/peers` shows.
    pub fn peers_json(&self) -> Value {
        let items: Vec<Value> = self
            .peers
            .iter()
            .map(|p| {
                let life = p.life.lock().expect("life lock");
                json!({
                    "id": p.cfg.id,
                    "url": p.cfg.url,
                    "state": life.state().as_str(),
                    "announced_interval_ms": life.their_interval_ms(),
                    "last_heard": life.last_heard_ms().map(regmesh_core::time::rfc3339_ms),
                    "announced_state": *p.announced.lock().expect("announced lock"),
                    "floods_sent": p.sent.load(Ordering::Relaxed),
                    "floods_dropped": p.dropped.load(Ordering::Relaxed),
                    "digest_match": *p.digest_match.lock().expect("digest lock"),
                    "records_behind": self.credible_marks(p).iter()
                        .map(|(o, w)| w.saturating_sub(self.mark(o))).sum::<u64>(),
                    "export": {"kinds": p.cfg.kinds, "groups": p.cfg.groups},
                })
            })
            .collect();
        json!({
            "id": self.me,
            "state": self.node_state().as_str(),
            "peers": items,
            "floods": {
                "initiated": self.stats.floods_initiated.load(Ordering::Relaxed),
                "received": self.stats.floods_received.load(Ordering::Relaxed),
                "duplicates": self.stats.duplicates.load(Ordering::Relaxed),
                "relayed": self.stats.relayed.load(Ordering::Relaxed),
                "refused": self.stats.refused.load(Ordering::Relaxed),
                "unbacked": self.stats.unbacked.load(Ordering::Relaxed),
            },
            "anti_entropy": {
                "pulls": self.stats.pulls.load(Ordering::Relaxed),
                "pulled_records": self.stats.pulled_records.load(Ordering::Relaxed),
                "resyncs": self.stats.resyncs.load(Ordering::Relaxed),
                "purged_through": self.center.purge_marks(),
                "full_sync_received": self.full_sync_done.load(Ordering::Relaxed),
                "watermarks": self.marks(),
            }
        })
    }
}
