//! The mesh runtime of one center: drives the sans-io pieces of
//! `regmesh_proto` (dedup windows, peer lifecycles, node state, export
//! policy, replay cache) with real time, TLS connections and the center's
//! change log.
//!
//! Tasks: per peer, a beat loop (HELLO until introduced, then heartbeats
//! carrying our interval) and a sender draining a bounded queue of floods;
//! and one flooder that reads this center's own committed changes from the
//! change log and floods them to every OPERATIONAL peer its policy allows.
//!
//! Not yet here (the rest of issue 3): two-phase votes on new ids, full
//! sync, anti-entropy by watermarks and digests. Until anti-entropy lands, a
//! peer that was unreachable misses what was flooded meanwhile.

use super::client::PeerClient;
use crate::center::{now_ms, Center, Verified, WriteError};
use crate::config::{Config, PeerConfig};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hyper::{Method, StatusCode};
use regmesh_core::codec;
use regmesh_core::Record;
use regmesh_proto::dedup::{CounterWindow, Seen};
use regmesh_proto::lifecycle::{PeerLifecycle, PeerState};
use regmesh_proto::node_state::NodeState;
use regmesh_proto::policy::ExportPolicy;
use regmesh_proto::replay::ReplayCache;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Floods waiting for one peer; more are dropped (and counted).
pub const PEER_QUEUE: usize = 1024;
/// Records in one flood message.
pub const FLOOD_BATCH_MAX: usize = 256;

/// One flood message, already encoded for one peer.
pub struct Outgoing {
    initiator: String,
    counter: u64,
    reset: bool,
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
    sent: AtomicU64,
    dropped: AtomicU64,
}

/// Counters for `/v1/peers`.
#[derive(Default)]
pub struct MeshStats {
    pub floods_initiated: AtomicU64,
    pub floods_received: AtomicU64,
    pub duplicates: AtomicU64,
    pub relayed: AtomicU64,
    pub refused: AtomicU64,
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
    pub stats: MeshStats,
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
                sent: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                cfg: pc.clone(),
            }));
        }
        let state = NodeState::initial(!peers.is_empty());
        center.set_accepting_writes(state.accepts_updates());
        let mesh = Arc::new(Mesh {
            me: cfg.id.clone(),
            interval_ms: p.beat_interval_ms,
            skew_s: p.clock_skew_s,
            max_body_bytes: p.max_body_bytes,
            peers,
            windows: Mutex::new(HashMap::new()),
            replay: Mutex::new(ReplayCache::default()),
            state: Mutex::new(state),
            stats: MeshStats::default(),
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
        tasks
    }

    pub fn peer(&self, id: &str) -> Option<&Arc<Peer>> {
        self.peers.iter().find(|p| p.cfg.id == id)
    }

    pub fn node_state(&self) -> NodeState {
        *self.state.lock().expect("state lock")
    }

    fn reassess_node_state(&self) {
        let reachable = self
            .peers
            .iter()
            .filter(|p| p.reachable.load(Ordering::Relaxed))
            .count();
        let mut st = self.state.lock().expect("state lock");
        let (mut next, start_sync) = st.next(reachable, false);
        if start_sync {
            // The catch-up (full sync / anti-entropy) is not built yet; the
            // center goes straight on to active.
            next = next.next(reachable, true).0;
        }
        if next != *st {
            tracing::info!(from = st.as_str(), to = next.as_str(), reachable, "node state");
            *st = next;
            self.center.set_accepting_writes(next.accepts_updates());
        }
    }

    fn note(&self, peer: &Peer, t: Option<regmesh_proto::lifecycle::Transition>) {
        if let Some(t) = t {
            tracing::info!(peer = %peer.cfg.id, from = t.from.as_str(), to = t.to.as_str(), "peer state");
        }
    }

    async fn beat_loop(self: Arc<Self>, peer: Arc<Peer>) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let state = peer.life.lock().expect("life lock").state();
            let ok = if state <= PeerState::Known {
                let body = serde_json::to_vec(&json!({"id": self.me, "interval_ms": self.interval_ms})).expect("json");
                match peer
                    .client
                    .call(&self.center, Method::POST, "/mesh/v1/hello", &[], Some(body))
                    .await
                {
                    Ok(a) if a.status == StatusCode::OK => {
                        let t = peer.life.lock().expect("life lock").hello_answered(now_ms());
                        self.note(&peer, t);
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
                let body =
                    serde_json::to_vec(&json!({"state": self.node_state().as_str(), "interval_ms": self.interval_ms}))
                        .expect("json");
                let path = format!("/heartbeat/node/{}", self.me);
                match peer
                    .client
                    .call(
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

    async fn send_loop(self: Arc<Self>, peer: Arc<Peer>, mut rx: mpsc::Receiver<Outgoing>) {
        while let Some(m) = rx.recv().await {
            let headers = [
                ("drip-node-id", m.initiator.clone()),
                ("drip-node-counter", m.counter.to_string()),
                ("drip-node-counter-reset", m.reset.to_string()),
                ("drip-transaction-type", "update".to_string()),
            ];
            match peer
                .client
                .call(&self.center, Method::POST, "/commit", &headers, Some(m.body))
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
        }
    }

    /// Queues `records` (of initiator/counter) to every OPERATIONAL peer but
    /// `except`, each getting only what its policy allows.
    fn fan_out(&self, initiator: &str, counter: u64, reset: bool, records: &[Record], except: Option<&str>) -> usize {
        if !self.node_state().propagates() {
            return 0;
        }
        let parts: Vec<Vec<regmesh_core::Visibility>> = records
            .iter()
            .map(|r| match (self.center.kinds().get(&r.kind), r.body_value()) {
                (Some(k), Ok(b)) => k.part_visibilities(&b),
                // Unparseable body: treat as hidden everywhere.
                _ => vec![regmesh_core::Visibility::Local],
            })
            .collect();
        let mut queued = 0;
        for peer in &self.peers {
            if Some(peer.cfg.id.as_str()) == except || !peer.life.lock().expect("life lock").receives_propagation() {
                continue;
            }
            let allowed: Vec<&Record> = records
                .iter()
                .zip(&parts)
                .filter(|(r, p)| peer.policy.allows(r, p))
                .map(|(r, _)| r)
                .collect();
            if allowed.is_empty() {
                continue;
            }
            let m = Outgoing {
                initiator: initiator.to_string(),
                counter,
                reset,
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
                self.stats.floods_initiated.fetch_add(1, Ordering::Relaxed);
                self.fan_out(&self.me.clone(), counter, false, &own, None);
            }
        }
    }

    /// A flood arrived from peer `sender`: verify, dedup, apply, relay.
    /// Returns (duplicate, applied).
    pub async fn receive(
        &self,
        sender: &str,
        initiator: &str,
        counter: u64,
        reset: bool,
        records: Vec<Record>,
    ) -> Result<(bool, usize), WriteError> {
        self.stats.floods_received.fetch_add(1, Ordering::Relaxed);
        if !self.node_state().accepts_updates() {
            return Err(WriteError::Inactive);
        }
        let verified: Verified = self.center.verify_remote(records).inspect_err(|_| {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
        })?;
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
        let n = self.fan_out(initiator, counter, reset, &records, Some(sender));
        self.stats.relayed.fetch_add(n as u64, Ordering::Relaxed);
        Ok((false, applied))
    }

    /// A heartbeat from peer `sender`, with its announced state and interval.
    pub fn beat_from(&self, sender: &str, state: Option<String>, interval_ms: u64) {
        if let Some(peer) = self.peer(sender) {
            let t = peer
                .life
                .lock()
                .expect("life lock")
                .beat_received(now_ms(), interval_ms);
            self.note(peer, t);
            if state.is_some() {
                *peer.announced.lock().expect("announced lock") = state;
            }
        }
    }

    /// A peer announced its DRiP state (`POST /node/:id/active|inactive`).
    pub fn announce(&self, sender: &str, state: &str) {
        if let Some(peer) = self.peer(sender) {
            *peer.announced.lock().expect("announced lock") = Some(state.to_string());
        }
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
            }
        })
    }
}
