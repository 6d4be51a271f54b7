//! The mesh runtime of one center: the I/O around the sans-io decisions of
//! `regmesh_proto` (dedup windows, peer lifecycles, node state, export
//! policy, replay cache, flood targets, anti-entropy, vote tallies). It owns
//! the tasks, the real clock, the TLS connections and the center's change
//! log; every protocol decision is a call into proto, so the simulator
//! (`regmesh-sim`) exercises the same code.
//!
//! Tasks: one link task running the timers of `regmesh_proto::mesh::link`
//! (beats and the lifecycle judge) and executing its commands (HELLO and
//! heartbeat calls, each bounded by the interval, pulls, full syncs); one
//! task per flood call the floods part asks for; one flooder that reads
//! this center's own committed changes from the change log and floods them;
//! pulls, full syncs and vote collections as they are needed.
//!
//! This file holds the types, construction, spawning and the small helpers
//! the parts share (watermarks, ceilings, visibility); each concern lives in
//! a child module with its own `impl Mesh` block: `beats` (the executor of
//! the link part: timers, HELLO and beat calls, received beats), `floods`
//! (the executor of proto's floods part: flooder, calls, receipt), `pulls`
//! (pulls, resyncs, serving pulls, digest
//! repair), `full_sync`, `join` (peers added at runtime, found from DNS),
//! `notify` (NOTIFY/RFI to fronts), `status`
//! (`/v1/peers`) and `votes`. Must never decide protocol rules itself.

use super::client::PeerClient;
use crate::center::Center;
use crate::config::{Config, PeerConfig};
use regmesh_core::Record;
use regmesh_proto::lifecycle::PeerLifecycle;
use regmesh_proto::mesh::floods::Floods;
use regmesh_proto::mesh::link::{self, Link};
use regmesh_proto::mesh::pulls::Pulls;
use regmesh_proto::mesh::votes::Votes;
use regmesh_proto::node_state::NodeState;
use regmesh_proto::policy::ExportPolicy;
use regmesh_proto::replay::ReplayCache;
use regmesh_proto::sync::{Ceilings, Marks};
use regmesh_proto::tally::{Quorum, Rule};
use regmesh_proto::version::{PeerProtocol, Versions};
use regmesh_proto::vote::Claims;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod beats;
mod floods;
mod full_sync;
mod hello;
mod join;
mod notify;
mod pulls;
mod status;
mod votes;
pub use full_sync::SyncError;
pub use join::{AddPeerError, RUNTIME_PEERS_MAX};
pub use pulls::ServePullError;
pub use votes::VoteOutcome;

/// A peer (configured, or added at runtime) and what we know of it.
pub struct Peer {
    pub cfg: PeerConfig,
    policy: ExportPolicy,
    /// Its index in the link part (`Mesh::link`).
    ix: usize,
    /// A copy of its lifecycle in the link part, refreshed at each change
    /// (floods, votes and NOTIFY read it).
    life: Mutex<PeerLifecycle>,
    client: PeerClient,
    /// The protocol version agreed with it, and the last HELLO refusal.
    protocol: Mutex<PeerProtocol>,
}

impl Peer {
    /// What this center exports to it (kinds and visibility groups).
    pub fn policy(&self) -> &ExportPolicy {
        &self.policy
    }
}

pub struct Mesh {
    pub center: Arc<Center>,
    pub me: String,
    interval_ms: u64,
    /// The protocol versions this center speaks (`[peer] protocol_min`,
    /// `protocol_max`).
    versions: Versions,
    pub skew_s: u64,
    pub max_body_bytes: usize,
    /// The configured peers, then those added at runtime (`join`); never
    /// removed, so a peer's index (`Peer::ix`, the link part's) stays valid.
    peers: std::sync::RwLock<Vec<Arc<Peer>>>,
    /// The CA and the pins of runtime peers (both TLS directions).
    trust: Arc<super::pins::Trust>,
    /// The TLS client every peer client uses (verifies by `trust`).
    tls: Arc<rustls::ClientConfig>,
    transport: Arc<dyn crate::transport::Transport>,
    /// Peers added at runtime so far (at most `join::RUNTIME_PEERS_MAX`).
    runtime_peers: Mutex<usize>,
    /// Floods of own changes, receipt, relays, NOTIFY/RFI dispatch (proto).
    floods: Mutex<Floods>,
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
    /// Part `pulls` of the mesh machine: pulls, resyncs, repair pacing,
    /// unproven claims, full syncs asked and pushed.
    pulls: Mutex<Pulls>,
    /// Claims of new ids and the votes collecting here (proto's part).
    votes: Mutex<Votes>,
    /// The promises to other initiators, on disk before each yes leaves.
    claims_log: Arc<super::claims_log::Journal>,
    /// Own votes' creates waiting for their decision, by vote counter.
    deciding: Mutex<HashMap<u64, tokio::sync::oneshot::Sender<votes::Counted>>>,
    /// The progress of a full sync arriving, and from whom.
    sync_progress: Mutex<Option<(String, crate::progress::Progress)>>,
    /// NOTIFY/RFI types registered by fronts (set once, before serving).
    front_messages: std::sync::OnceLock<Arc<crate::messages::PeerMessages>>,
}

fn encode_records<'a>(records: impl Iterator<Item = &'a Record>) -> Vec<u8> {
    regmesh_proto::wire::flood::encode_records(records)
}

/// Decodes a flood body: `{"records": ["<base64url of a signed record>", ...]}`.
pub fn decode_records(body: &[u8]) -> Result<Vec<Record>, String> {
    regmesh_proto::wire::flood::decode_records(body).map_err(|e| e.to_string())
}

/// The mesh could not be built. Nothing is running and nothing was sent;
/// only [`MeshError::ClaimsLog`] may leave a new `claims.log` created.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The config has no `[peer]` section. Nothing changed.
    #[error("no [peer] section")]
    NoPeerSection,
    /// The protocol versions in `[peer]` are not a range this build speaks.
    /// Nothing changed.
    #[error("[peer] protocol versions: {0}")]
    Versions(#[from] regmesh_proto::version::VersionsError),
    /// The TLS client (certificate, key, CA) could not be set up. Nothing
    /// changed.
    #[error("peer TLS client: {0}")]
    ClientTls(#[source] super::pki::PkiError),
    /// The TLS server (certificate, key, CA) could not be set up. Nothing
    /// changed.
    #[error("peer TLS server: {0}")]
    ServerTls(#[source] super::pki::PkiError),
    /// `data_dir/claims.log` could not be opened or read, or is of a newer
    /// format. A missing one may have been created (holding only its format
    /// line); no promise was read or changed.
    #[error("{0}")]
    ClaimsLog(#[from] super::claims_log::ClaimsLogError),
}

impl Mesh {
    /// Builds the mesh of `center` from its config; starts nothing.
    pub fn new(center: Arc<Center>, cfg: &Config) -> Result<Arc<Mesh>, MeshError> {
        Self::new_with(center, cfg, crate::transport::tcp())
    }

    /// [`Mesh::new`] calling peers over `transport`.
    pub fn new_with(
        center: Arc<Center>,
        cfg: &Config,
        transport: Arc<dyn crate::transport::Transport>,
    ) -> Result<Arc<Mesh>, MeshError> {
        let p = cfg.peer.as_ref().ok_or(MeshError::NoPeerSection)?;
        let versions = Versions::configured(p.protocol_min, p.protocol_max)?;
        let trust = super::pki::trust(&p.ca).map_err(MeshError::ClientTls)?;
        let tls = super::pki::client_config_trusting(&p.cert, &p.key, &trust, true).map_err(MeshError::ClientTls)?;
        let mut peers = Vec::new();
        for (ix, pc) in cfg.peers.iter().enumerate() {
            peers.push(Arc::new(Peer {
                policy: ExportPolicy::new(pc.kinds.iter().cloned(), pc.groups.iter().cloned()),
                ix,
                life: Mutex::new(PeerLifecycle::known(p.beat_interval_ms)),
                client: PeerClient::new_with(&pc.id, &pc.url, tls.clone(), transport.clone()),
                protocol: Mutex::new(PeerProtocol::default()),
                cfg: pc.clone(),
            }));
        }
        let floods = Floods::new(
            &cfg.id,
            peers.iter().map(|p| (p.cfg.id.clone(), p.policy.clone())),
            Some(center.own_seq()),
        );
        let link = Link::new(
            &cfg.id,
            p.beat_interval_ms,
            peers.iter().map(|p| (p.cfg.id.clone(), p.policy.clone())),
        );
        let state = link.node_state();
        center.set_accepting_writes(state.accepts_updates());
        let (claims_log, promises) = super::claims_log::ClaimsLog::open(&cfg.data_dir)?;
        let mut claims = Claims::default();
        claims.restore(promises);
        let mesh = Arc::new(Mesh {
            me: cfg.id.clone(),
            interval_ms: p.beat_interval_ms,
            versions,
            skew_s: p.clock_skew_s,
            max_body_bytes: p.max_body_bytes,
            peers: std::sync::RwLock::new(peers),
            trust,
            tls,
            transport,
            runtime_peers: Mutex::new(0),
            floods: Mutex::new(floods),
            replay: Mutex::new(ReplayCache::default()),
            state: Mutex::new(state),
            link: Mutex::new(link),
            link_timers: Mutex::new(HashMap::new()),
            link_wake: tokio::sync::Notify::new(),
            marks: Mutex::new(Marks::from_pairs(center.load_watermarks())),
            marks_dirty: AtomicBool::new(false),
            ceilings: Mutex::new(Ceilings::for_peers(cfg.peers.iter().map(|p| p.id.clone()))),
            pulls: Mutex::new(Pulls::new(
                cfg.id.clone(),
                regmesh_proto::mesh::pulls::PULL_PAGE_RECORDS_MAX,
            )),
            votes: Mutex::new(Votes::new(
                &cfg.id,
                Rule::new(
                    match p.claims {
                        crate::config::ClaimsRule::Majority => Quorum::Majority,
                        crate::config::ClaimsRule::All => Quorum::All,
                    },
                    std::iter::once(cfg.id.clone())
                        .chain(cfg.centers.iter().map(|c| c.id.clone()))
                        .chain(cfg.peers.iter().map(|p| p.id.clone())),
                ),
                p.vote_timeout_ms,
                claims,
            )),
            claims_log: Arc::new(super::claims_log::Journal::new(claims_log)),
            deciding: Mutex::new(HashMap::new()),
            front_messages: std::sync::OnceLock::new(),
            sync_progress: Mutex::new(None),
            center,
        });
        Ok(mesh)
    }

    /// Spawns the link task, the flooder and the saver.
    pub fn spawn(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            crate::spawn::spawn(self.clone().flood_loop()),
            crate::spawn::spawn(self.clone().save_loop()),
            crate::spawn::spawn(self.clone().link_loop()),
        ]
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

    pub fn peer(&self, id: &str) -> Option<Arc<Peer>> {
        self.peers
            .read()
            .expect("peers lock")
            .iter()
            .find(|p| p.cfg.id == id)
            .cloned()
    }

    /// Every peer, configured and added at runtime, in index order.
    pub fn peers(&self) -> Vec<Arc<Peer>> {
        self.peers.read().expect("peers lock").clone()
    }

    /// The peer at index `ix` of the link part.
    fn peer_at(&self, ix: usize) -> Arc<Peer> {
        self.peers.read().expect("peers lock")[ix].clone()
    }

    /// Trust in peer certificates (the listener's TLS uses it too).
    pub fn trust(&self) -> &Arc<super::pins::Trust> {
        &self.trust
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
