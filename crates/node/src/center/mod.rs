//! A running registry center: the [`Center`] facade, its shared state, and
//! start-up (identity, store, index rebuild, writer thread).
//!
//! One concern per file: `writer` (queue, group commit), `apply` (what one op
//! does to a record), `leases` (deadlines and the sweeper), `reads` (point
//! reads, listings, integrity checks), `rebuild` (start-up verification),
//! `replica` (what the mesh calls: checks and merges of other centers'
//! versions, pulls, purge marks, watermarks), `events` (the change feed),
//! `format` (the format version of metadata and change log), `status`,
//! `identity` and `errors`.
//!
//! Must never: acknowledge before commit; let a failed batch leave the
//! indexes, counters or clock ahead of the store; apply a version from
//! another center that failed its checks.

use crate::config::{Config, StoreBackend};
use crate::metrics::Metrics;
use regmesh_core::sign::key_hex;
use regmesh_core::{Hlc, HlcClock, Identity, Kind, Kinds, Record, VerifyingKey};
use regmesh_store::{Index, PgStore, RedbStore, Store, WriteBatch};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};

mod apply;
mod commit;
mod errors;
mod events;
mod follow;
mod format;
mod identity;
mod leases;
mod owner;
mod reads;
mod rebuild;
mod replica;
mod status;
mod writer;

pub use apply::{Outcome, WriteOp};
pub use errors::{OpenError, ReadError, WriteError};
pub use events::{DeleteReason, Event, EventDecodeError, EventType};
pub use identity::{load_or_create_identity, write_private_file};
pub use replica::{Refusal, RefusalReason, Verified};

use leases::Deadlines;
use writer::{Op, WriterState, CHANGE_RESERVED_META, PURGED_META};

/// Milliseconds since the Unix epoch (see [`crate::clock`]).
pub use crate::clock::now_ms;

/// Where the single writer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterMode {
    /// On a thread of its own (operators; the default).
    Thread,
    /// As a task on the current-thread runtime that opened the center: a
    /// batch runs to its commit without yielding, so nothing else runs and
    /// a paused runtime cannot move time meanwhile (the whole-node
    /// simulation; `spawn_blocking` would hold time too, but on another
    /// thread, so the order of its replies would depend on the OS).
    Task,
}

/// The running writer, to wait for when closing.
enum WriterHandle {
    Thread(std::thread::JoinHandle<()>),
    /// Disconnects when the writer task ends (or is dropped).
    Task(std::sync::mpsc::Receiver<()>),
}

/// File name of the identity key inside the data directory.
pub const KEY_FILE: &str = "identity.key";

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "regmesh.redb";

/// Limits and timings the center applies.
#[derive(Clone, Debug)]
pub struct Settings {
    pub max_record_bytes: usize,
    pub write_batch_max: usize,
    pub write_queue: usize,
    pub watch_history: u64,
    pub retention_ms: u64,
    pub tombstone_horizon_ms: u64,
    pub sweep_interval_ms: u64,
    /// `leases.renewal_extension_s` in ms.
    pub renewal_extension_ms: u64,
    /// Shared authority: `store.follow_interval_ms`, `store.timers_lease_ms`.
    pub follow_interval_ms: u64,
    pub timers_lease_ms: u64,
}

impl Settings {
    pub fn from_config(c: &Config) -> Self {
        Settings {
            max_record_bytes: c.limits.max_record_bytes,
            write_batch_max: c.store.write_batch_max,
            write_queue: c.store.write_queue,
            watch_history: c.store.watch_history,
            retention_ms: c.leases.retention_s.saturating_mul(1000),
            tombstone_horizon_ms: c.leases.tombstone_horizon_s.saturating_mul(1000),
            sweep_interval_ms: c.leases.sweep_interval_ms,
            renewal_extension_ms: c.leases.renewal_extension_s.saturating_mul(1000),
            follow_interval_ms: c.store.follow_interval_ms,
            timers_lease_ms: c.store.timers_lease_ms,
        }
    }
}

/// State shared by the [`Center`] handle, the writer thread and readers.
/// Only the writer changes the store, the index, the deadlines and the
/// counters below; readers take the locks briefly.
struct Shared {
    id: String,
    identity: Identity,
    /// Record keys: `[[centers]]`, this center's, and those of peers added
    /// at runtime ([`Center::add_key`]).
    keys: RwLock<HashMap<String, VerifyingKey>>,
    kinds: Kinds,
    store: Arc<dyn Store>,
    index: RwLock<Index>,
    deadlines: Mutex<Deadlines>,
    /// Lease ends of own agents renewed here without a new version (with
    /// `renewal_extension_ms`); not persisted: after a restart every lease
    /// runs at least one lease from the start.
    renewed: Mutex<HashMap<(String, String), u64>>,
    /// When this center started (ms).
    started_ms: u64,
    events: broadcast::Sender<Arc<Event>>,
    head: AtomicU64,
    /// The writer's last own sequence number (committed).
    own_seq: AtomicU64,
    /// The writer's purge marks (committed); see [`Center::purged_through`].
    purged: RwLock<BTreeMap<String, u64>>,
    /// The watermarks last saved ([`Center::save_watermarks`]): a tombstone
    /// is purged only once they cover it (`proto::sync::purge_allowed`).
    saved_marks: RwLock<BTreeMap<String, u64>>,
    /// False while the mesh says this center is `inactive` (DRiP §5.7):
    /// client writes are refused and the sweeper defers own expiries.
    accepting: AtomicBool,
    /// Several processes serve this center from one store (`[store] backend
    /// = "postgres"`): see `follow` and `owner`.
    shared_authority: bool,
    /// Shared authority: this process runs the center's timers until this
    /// time (ms; the lease it holds). Always `u64::MAX` otherwise.
    timers_until_ms: AtomicU64,
    /// A random number naming this process among those sharing the store.
    process: u64,
    settings: Settings,
    metrics: Arc<Metrics>,
}

/// A registry center. Cheap to share behind an `Arc`. Dropping the last
/// reference stops the writer after it has committed what was queued;
/// [`Center::close`] also waits for it and makes relaxed commits durable.
pub struct Center {
    shared: Arc<Shared>,
    /// Set once the center begins to close; long-lived streams end on it.
    closing: tokio::sync::watch::Sender<bool>,
    tx: mpsc::Sender<Op>,
    writer: Mutex<Option<WriterHandle>>,
    started: Instant,
}

impl Center {
    /// Opens the center described by `cfg` with no kinds (fronts bring
    /// them: see [`Center::open_with`]) and the embedded store in
    /// `cfg.data_dir`.
    pub fn open(cfg: &Config) -> Result<Arc<Center>, OpenError> {
        Self::open_with(cfg, Kinds::default(), None)
    }

    /// Opens with the given kinds, and a given store instead of the embedded
    /// one if `store` is set.
    pub fn open_with(cfg: &Config, kinds: Kinds, store: Option<Arc<dyn Store>>) -> Result<Arc<Center>, OpenError> {
        Self::open_in(cfg, kinds, store, WriterMode::Thread)
    }

    /// [`Center::open_with`], with the writer run as `writer` says
    /// ([`WriterMode::Task`] needs to be called within a tokio runtime).
    pub fn open_in(
        cfg: &Config,
        kinds: Kinds,
        store: Option<Arc<dyn Store>>,
        writer: WriterMode,
    ) -> Result<Arc<Center>, OpenError> {
        cfg.validate()?;
        let identity = match &cfg.peer {
            // In a mesh the identity is the key the center's certificate holds.
            Some(p) => {
                let pem = std::fs::read_to_string(&p.key).map_err(|e| OpenError::DataDir {
                    path: p.key.display().to_string(),
                    msg: e.to_string(),
                })?;
                Identity::from_pkcs8_pem(&pem).map_err(|e| OpenError::DataDir {
                    path: p.key.display().to_string(),
                    msg: e.to_string(),
                })?
            }
            None => load_or_create_identity(&cfg.data_dir)?,
        };
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| OpenError::DataDir {
            path: cfg.data_dir.display().to_string(),
            msg: e.to_string(),
        })?;
        let store: Arc<dyn Store> = match store {
            Some(s) => s,
            None => match cfg.store.backend {
                StoreBackend::Redb => {
                    Arc::new(RedbStore::open(&cfg.data_dir.join(DB_FILE), cfg.store.cache_mib << 20)?)
                }
                StoreBackend::Postgres => Arc::new(PgStore::open(&cfg.store.url, cfg.store.pool)?),
            },
        };
        // Refuses a newer format before anything is written.
        let format = format::stored_format(&*store)?;
        let mut first_cells: Vec<(String, Vec<u8>)> = format::upgrade_cell(format).into_iter().collect();
        match store.meta("center.id")? {
            Some(v) if v != cfg.id.as_bytes() => {
                return Err(OpenError::DataDir {
                    path: cfg.data_dir.display().to_string(),
                    msg: format!(
                        "belongs to center {:?}, not {:?}; use that id or another data directory",
                        String::from_utf8_lossy(&v),
                        cfg.id
                    ),
                })
            }
            Some(_) => {}
            None => first_cells.push(("center.id".into(), cfg.id.as_bytes().to_vec())),
        }
        if !first_cells.is_empty() {
            store.apply(&WriteBatch {
                meta: first_cells,
                ..Default::default()
            })?;
        }
        let settings = Settings::from_config(cfg);
        let metrics = Arc::new(Metrics::default());
        let mut keys = HashMap::new();
        for c in &cfg.centers {
            let k = regmesh_core::sign::key_from_hex(&c.public_key).map_err(|e| OpenError::DataDir {
                path: format!("centers {:?}", c.id),
                msg: e.to_string(),
            })?;
            keys.insert(c.id.clone(), k);
        }
        keys.insert(cfg.id.clone(), identity.verifying_key());

        let last_hlc = match store.meta("hlc")? {
            Some(b) if b.len() == 12 => Hlc::new(
                u64::from_be_bytes(b[..8].try_into().unwrap()),
                u32::from_be_bytes(b[8..].try_into().unwrap()),
            ),
            _ => Hlc::ZERO,
        };
        let seq = match store.meta("seq")? {
            Some(b) if b.len() == 8 => u64::from_be_bytes(b.try_into().unwrap()),
            _ => 0,
        };
        let (first_change, change) = store.change_bounds()?.unwrap_or((1, 0));
        let log_end = change;
        let change_reserved = match store.meta(CHANGE_RESERVED_META)? {
            Some(b) if b.len() == 8 => u64::from_be_bytes(b.try_into().unwrap()),
            _ => 0,
        };
        // Numbers a crash may have taken with relaxed commits are skipped.
        let change = change.max(change_reserved);
        let purged: BTreeMap<String, u64> = store
            .meta(PURGED_META)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let saved_marks: BTreeMap<String, u64> = store
            .meta("watermarks")?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let shared_authority = cfg.store.backend == StoreBackend::Postgres;
        let fence = if shared_authority {
            store.meta(follow::SHARED_HEAD_META)?
        } else {
            None
        };
        // Another process may have numbered changes above this log's end.
        let change = change.max(fence.as_deref().map_or(0, follow::fence_change));
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            id: cfg.id.clone(),
            identity,
            keys: RwLock::new(keys),
            kinds,
            store,
            index: RwLock::new(if shared_authority {
                Index::track_terms()
            } else {
                Index::new()
            }),
            deadlines: Mutex::new(Deadlines::default()),
            renewed: Mutex::new(HashMap::new()),
            started_ms: now_ms(),
            events,
            head: AtomicU64::new(change),
            own_seq: AtomicU64::new(seq),
            purged: RwLock::new(purged.clone()),
            saved_marks: RwLock::new(saved_marks),
            accepting: AtomicBool::new(true),
            shared_authority,
            timers_until_ms: AtomicU64::new(if shared_authority { 0 } else { u64::MAX }),
            process: owner::process_nonce(),
            settings,
            metrics,
        });
        let t0 = Instant::now();
        let loaded = shared.rebuild()?;
        tracing::info!(
            records = loaded,
            elapsed_ms = t0.elapsed().as_millis() as u64,
            "indexes rebuilt and signatures verified"
        );
        let state = WriterState {
            hlc: HlcClock::resume(last_hlc),
            seq,
            change,
            first_change,
            purged,
            purged_dirty: false,
            change_reserved,
            last_durable: tokio::time::Instant::now(),
            follower: shared_authority.then(|| follow::Follower {
                fence,
                followed: log_end,
                commits: 0,
                process: shared.process,
            }),
        };
        let (tx, rx) = mpsc::channel(shared.settings.write_queue);
        let w = shared.clone();
        let writer = match writer {
            WriterMode::Thread => WriterHandle::Thread(
                std::thread::Builder::new()
                    .name("regmesh-writer".into())
                    .spawn(move || w.writer_loop(rx, state))
                    .map_err(|e| OpenError::DataDir {
                        path: "writer thread".into(),
                        msg: e.to_string(),
                    })?,
            ),
            WriterMode::Task => {
                let (done, ended) = std::sync::mpsc::channel::<()>();
                crate::spawn::spawn(async move {
                    let _done = done;
                    w.writer_task(rx, state).await;
                });
                WriterHandle::Task(ended)
            }
        };
        Ok(Arc::new(Center {
            shared,
            closing: tokio::sync::watch::Sender::new(false),
            tx,
            writer: Mutex::new(Some(writer)),
            started: Instant::now(),
        }))
    }

    pub fn id(&self) -> &str {
        &self.shared.id
    }

    pub fn public_key_hex(&self) -> String {
        key_hex(&self.shared.identity.verifying_key())
    }

    pub fn kinds(&self) -> &Kinds {
        &self.shared.kinds
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// Last committed change number.
    pub fn head(&self) -> u64 {
        self.shared.head.load(Ordering::Acquire)
    }

    /// Whether client writes are accepted: false while the center is
    /// `inactive` in its mesh. Then client writes get [`WriteError::Inactive`]
    /// (503 `inactive`) and change nothing, and the sweeper defers lease
    /// expiry and retention of own records (tombstone purges go on); see
    /// PROTOCOL.md, "Node state".
    pub fn set_accepting_writes(&self, yes: bool) {
        self.shared.accepting.store(yes, Ordering::Release);
    }

    /// See [`Center::set_accepting_writes`].
    pub fn accepting_writes(&self) -> bool {
        self.shared.accepting.load(Ordering::Acquire)
    }

    /// Every center whose records this center accepts, itself included.
    pub fn known_centers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.shared.keys.read().expect("keys lock").keys().cloned().collect();
        v.sort();
        v
    }

    /// Known public key of center `id`.
    pub fn key_of(&self, id: &str) -> Option<VerifyingKey> {
        self.shared.keys.read().expect("keys lock").get(id).copied()
    }

    /// Accepts records of center `id` signed with `key` from now on (a peer
    /// found from DNS: its key is the one its validated TLSA pins). Returns
    /// false, changing nothing, if `id` already has a key.
    pub fn add_key(&self, id: &str, key: VerifyingKey) -> bool {
        let mut keys = self.shared.keys.write().expect("keys lock");
        if keys.contains_key(id) {
            return false;
        }
        keys.insert(id.to_string(), key);
        true
    }

    /// Signs a peer-call token for `aud`.
    pub fn token_for(&self, aud: &str, now_s: u64, jti: [u8; 16]) -> String {
        regmesh_core::jwt::issue(
            &self.shared.identity,
            &self.shared.id,
            aud,
            now_s,
            regmesh_core::jwt::TTL_S_DEFAULT,
            jti,
        )
    }

    /// Tells long-lived readers (watch streams) to finish.
    pub fn begin_close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Center::begin_close`] has been called.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Stops accepting writes and waits until everything queued is committed.
    /// Other holders of the center (tasks still winding down) get
    /// `ShuttingDown` for any write after this. With [`WriterMode::Task`]
    /// it must be called off the runtime's thread (`spawn_blocking`, as
    /// [`crate::Running::shutdown`] does), or it waits for itself.
    pub fn close(self: Arc<Self>) {
        let Some(handle) = self.writer.lock().expect("writer lock").take() else {
            return;
        };
        let op = Op {
            kind: String::new(),
            id: String::new(),
            op: WriteOp::Close,
            canonical: None,
            reply: None,
        };
        // Not `blocking_send`: close may be called from async code.
        let mut op = op;
        loop {
            match self.tx.try_send(op) {
                Ok(()) => break,
                Err(mpsc::error::TrySendError::Full(back)) => {
                    op = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        match handle {
            WriterHandle::Thread(h) => {
                let _ = h.join();
            }
            // Returns when the task has ended (its sender dropped).
            WriterHandle::Task(ended) => {
                let _ = ended.recv();
            }
        }
    }
}

impl Shared {
    fn kind(&self, name: &str) -> Option<&Arc<dyn Kind>> {
        self.kinds.get(name)
    }

    fn terms(&self, r: &Record) -> Vec<(&'static str, String)> {
        if r.deleted {
            return Vec::new();
        }
        let mut t = vec![("origin", r.origin.clone())];
        if let (Some(k), Ok(body)) = (self.kind(&r.kind), r.body_value()) {
            t.extend(k.index_terms(&body));
        }
        t
    }

    /// The visibility class of `r` (record and parts; a tombstone's own
    /// visibility), which peers compare digests of; `None` for anything
    /// `local`.
    fn class_of(&self, r: &Record) -> Option<String> {
        if r.deleted {
            // A tombstone travels by the record's own visibility.
            return regmesh_proto::policy::class_of([&r.visibility]);
        }
        let parts = match (self.kind(&r.kind), r.body_value()) {
            (Some(k), Ok(b)) => k.part_visibilities(&b),
            _ => return None,
        };
        regmesh_proto::policy::class_of(std::iter::once(&r.visibility).chain(parts.iter()))
    }
}
