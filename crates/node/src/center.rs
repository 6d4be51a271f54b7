//! A running registry center: identity, store, indexes, the single writer,
//! leases and the change feed.
//!
//! # Writes
//! Every write goes through one bounded queue to one writer thread, which
//! drains up to `store.write_batch_max` queued writes, applies them in order
//! to an overlay (so later writes in a batch see earlier ones), commits them
//! in one durable transaction (group commit), then updates the indexes,
//! publishes change events, and only then answers the callers. A write is
//! acknowledged only after it is on disk, and is visible to reads before it is
//! acknowledged. A full queue is refused at once (503), never waited on.
//!
//! # Reads
//! Reads go to the index (ids, filters, paging) and then to the store. Every
//! record's Ed25519 signature was verified when it entered the center (signed
//! here, or checked on start-up); each read checks the stored bytes against
//! the blake3 digest kept in the index for those verified bytes.
//!
//! # Leases (document 000 §2.4.2, §4.1.1)
//! A record with a lease that is not renewed becomes `offline` when the lease
//! runs out (event `expire`), and is deleted `leases.retention_s` later
//! (event `delete`, reason `retention`). Tombstones are purged after
//! `leases.tombstone_horizon_s`. Only the origin decides expiry.
//!
//! Must never: acknowledge before commit; let a failed batch leave the
//! indexes, counters or clock ahead of the store.

use crate::config::Config;
use crate::metrics::Metrics;
use regmesh_core::codec::{self, canonical_json};
use regmesh_core::sign::{key_hex, verify_record};
use regmesh_core::{Hlc, HlcClock, Identity, Kind, Kinds, Prepared, Record, VerifyingKey};
use regmesh_store::{digest, Digest, Index, IndexEntry, RedbStore, Store, WriteBatch};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// File name of the identity key inside the data directory.
pub const KEY_FILE: &str = "identity.key";
/// File name of the database inside the data directory.
pub const DB_FILE: &str = "regmesh.redb";

/// What a change event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Created, replaced, or renewed by a heartbeat.
    Put,
    /// The lease ran out; the record is now offline.
    Expire,
    /// Deleted (tombstone).
    Delete,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Put => "put",
            EventType::Expire => "expire",
            EventType::Delete => "delete",
        }
    }
}

/// Why a record was deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteReason {
    /// A client asked.
    Client,
    /// Its lease ran out and the retention period passed.
    Retention,
    /// A resync with a peer showed its origin deleted it, and the
    /// tombstone is gone (it was behind the tombstone horizon here).
    Resync,
}

/// One entry of the change feed.
#[derive(Clone, Debug)]
pub struct Event {
    /// Change number: increasing, never reused. Consecutive while the center
    /// runs; a restart may skip ahead (see `CHANGE_RESERVE`).
    pub no: u64,
    pub typ: EventType,
    pub reason: Option<DeleteReason>,
    pub record: Record,
}

fn encode_event(typ: EventType, reason: Option<DeleteReason>, record_bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + record_bytes.len());
    v.push(match typ {
        EventType::Put => 1,
        EventType::Expire => 2,
        EventType::Delete => 3,
    });
    v.push(match reason {
        None => 0,
        Some(DeleteReason::Client) => 1,
        Some(DeleteReason::Retention) => 2,
        Some(DeleteReason::Resync) => 3,
    });
    v.extend_from_slice(record_bytes);
    v
}

fn decode_event(no: u64, b: &[u8]) -> Result<Event, String> {
    if b.len() < 2 {
        return Err(format!("change {no} is truncated"));
    }
    let typ = match b[0] {
        1 => EventType::Put,
        2 => EventType::Expire,
        3 => EventType::Delete,
        t => return Err(format!("change {no} has unknown type {t}")),
    };
    let reason = match b[1] {
        0 => None,
        1 => Some(DeleteReason::Client),
        2 => Some(DeleteReason::Retention),
        3 => Some(DeleteReason::Resync),
        r => return Err(format!("change {no} has unknown reason {r}")),
    };
    let record = codec::decode(&b[2..]).map_err(|e| format!("change {no}: {e}"))?;
    Ok(Event {
        no,
        typ,
        reason,
        record,
    })
}

/// A write a client (or the lease sweeper) asks for.
#[derive(Debug)]
pub enum WriteOp {
    /// Create or replace with a validated body. `if_version`: only if the
    /// current version is this one (HTTP `If-Match`).
    Put {
        prepared: Prepared,
        if_version: Option<Hlc>,
    },
    /// Delete (leave a tombstone).
    Delete { if_version: Option<Hlc> },
    /// Renew the lease and mark online.
    Heartbeat,
    /// Internal: a lease, retention or tombstone deadline may have passed.
    Sweep,
    /// Internal: a version from another center, already verified by
    /// [`Center::apply_remote`] (the only way to submit one).
    #[doc(hidden)]
    Merge(Box<Record>),
    /// Internal: a replacing resync found that `origin` no longer has this
    /// record (deleted, tombstone purged). Drops it if it is still the
    /// version with `seq`, and raises the origin's purge mark; see
    /// [`Center::forget`].
    /// Internal: stop the writer once everything queued before is committed.
    #[doc(hidden)]
    Close,
    #[doc(hidden)]
    Forget {
        origin: String,
        seq: u64,
        purged_through: u64,
    },
}

/// Records from another center whose checks passed ([`Center::verify_remote`]).
#[derive(Debug)]
pub struct Verified(Vec<Record>);

impl Verified {
    pub fn records(&self) -> &[Record] {
        &self.0
    }
}

/// Result of an accepted write.
#[derive(Debug, Clone)]
pub enum Outcome {
    Created(Record),
    Replaced(Record),
    Renewed(Record),
    Deleted(Record),
    /// Nothing to do (sweeps that found nothing due).
    Nothing,
}

/// A write was refused. Unless stated, nothing was changed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("{kind}/{id} does not exist")]
    NotFound { kind: String, id: String },
    #[error("{kind}/{id} is owned by center {owner}; only its origin may change it")]
    NotOwner { kind: String, id: String, owner: String },
    #[error("current version is {current}, not {expected}")]
    VersionMismatch { current: String, expected: String },
    #[error("{0}")]
    Invalid(String),
    #[error("record would be {bytes} bytes; the limit is {max}")]
    TooLarge { bytes: usize, max: usize },
    #[error("write queue is full ({0} waiting); retry shortly")]
    Overloaded(usize),
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("the center is shutting down")]
    ShuttingDown,
    #[error("the center is inactive: none of its peers answers (DRiP §5.7); updates resume when one does")]
    Inactive,
}

/// A read failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error("stored bytes of {kind}/{id} do not match the verified digest")]
    Integrity { kind: String, id: String },
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("{0}")]
    BadQuery(String),
}

/// Start-up failed. Nothing is running.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("data directory {path}: {msg}")]
    DataDir { path: String, msg: String },
    #[error("{0}")]
    Store(#[from] regmesh_store::StoreError),
}

/// Where the writer sends the result of one op.
type ReplyTo = oneshot::Sender<Result<Outcome, WriteError>>;

struct Op {
    kind: String,
    id: String,
    op: WriteOp,
    /// Canonical JSON of a put's body, computed by the caller's task so the
    /// single writer does not spend its time on it.
    canonical: Option<String>,
    reply: Option<ReplyTo>,
}

/// Deadlines of records this center must act on (lease end, retention end,
/// tombstone purge), ordered by time.
#[derive(Default)]
struct Deadlines {
    by_time: BTreeSet<(u64, String, String)>,
    by_key: HashMap<(String, String), u64>,
}

impl Deadlines {
    fn set(&mut self, kind: &str, id: &str, at: Option<u64>) {
        let key = (kind.to_string(), id.to_string());
        if let Some(old) = self.by_key.remove(&key) {
            self.by_time.remove(&(old, key.0.clone(), key.1.clone()));
        }
        if let Some(at) = at {
            self.by_time.insert((at, key.0.clone(), key.1.clone()));
            self.by_key.insert(key, at);
        }
    }

    fn take_due(&mut self, now: u64, max: usize) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(first) = self.by_time.first() else { break };
            if first.0 > now {
                break;
            }
            let (_, k, i) = self.by_time.pop_first().expect("first exists");
            self.by_key.remove(&(k.clone(), i.clone()));
            out.push((k, i));
        }
        out
    }

    fn len(&self) -> usize {
        self.by_key.len()
    }
}

/// The writer's private clock and counters.
#[derive(Clone)]
struct WriterState {
    hlc: HlcClock,
    seq: u64,
    change: u64,
    first_change: u64,
    /// Per origin: the highest seq of a tombstone purged here (or of a
    /// deletion this center can no longer prove, after a resync).
    purged: BTreeMap<String, u64>,
    purged_dirty: bool,
    /// Change numbers up to this are reserved by a durable commit, so a
    /// crash that loses relaxed commits never leads to a number being
    /// reused (the next start resumes above it).
    change_reserved: u64,
    /// When the writer last committed durably.
    last_durable: Instant,
}

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
        }
    }
}

struct Shared {
    id: String,
    identity: Identity,
    keys: HashMap<String, VerifyingKey>,
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
    settings: Settings,
    metrics: Arc<Metrics>,
}

/// A registry center. Cheap to share behind an `Arc`; dropping the last
/// reference stops the writer after it has committed what was queued.
pub struct Center {
    shared: Arc<Shared>,
    /// Set once the center begins to close; long-lived streams end on it.
    closing: tokio::sync::watch::Sender<bool>,
    /// False while the mesh says this center is inactive: client writes are
    /// refused (DRiP §5.7).
    accepting: std::sync::atomic::AtomicBool,
    tx: mpsc::Sender<Op>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    started: Instant,
}

/// Loads the identity key from `dir`, creating it (mode 0600) on first start.
pub fn load_or_create_identity(dir: &Path) -> Result<Identity, OpenError> {
    let err = |msg: String| OpenError::DataDir {
        path: dir.display().to_string(),
        msg,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let path = dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(pem) => Identity::from_pkcs8_pem(&pem).map_err(|e| err(format!("{KEY_FILE}: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| err(format!("no OS randomness: {e}")))?;
            let id = Identity::from_seed(seed);
            let pem = id.to_pkcs8_pem().map_err(|e| err(e.to_string()))?;
            write_private_file(&path, pem.as_bytes()).map_err(|e| err(format!("{KEY_FILE}: {e}")))?;
            tracing::info!(key = %key_hex(&id.verifying_key()), "created identity key {}", path.display());
            Ok(id)
        }
        Err(e) => Err(err(format!("{KEY_FILE}: {e}"))),
    }
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync dir),
/// readable by the owner only.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
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
            None => Arc::new(RedbStore::open(&cfg.data_dir.join(DB_FILE), cfg.store.cache_mib << 20)?),
        };
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
            None => store.apply(&WriteBatch {
                meta: vec![("center.id".into(), cfg.id.as_bytes().to_vec())],
                ..Default::default()
            })?,
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
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            id: cfg.id.clone(),
            identity,
            keys,
            kinds,
            store,
            index: RwLock::new(Index::new()),
            deadlines: Mutex::new(Deadlines::default()),
            renewed: Mutex::new(HashMap::new()),
            started_ms: now_ms(),
            events,
            head: AtomicU64::new(change),
            own_seq: AtomicU64::new(seq),
            purged: RwLock::new(purged.clone()),
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
            last_durable: Instant::now(),
        };
        let (tx, rx) = mpsc::channel(shared.settings.write_queue);
        let w = shared.clone();
        let writer = std::thread::Builder::new()
            .name("regmesh-writer".into())
            .spawn(move || w.writer_loop(rx, state))
            .map_err(|e| OpenError::DataDir {
                path: "writer thread".into(),
                msg: e.to_string(),
            })?;
        Ok(Arc::new(Center {
            shared,
            closing: tokio::sync::watch::Sender::new(false),
            accepting: std::sync::atomic::AtomicBool::new(true),
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

    /// Queues a write and waits for it to be durable. Refuses at once when
    /// the queue is full.
    pub async fn write(&self, kind: &str, id: &str, op: WriteOp) -> Result<Outcome, WriteError> {
        if matches!(op, WriteOp::Merge(_) | WriteOp::Forget { .. } | WriteOp::Close) {
            return Err(WriteError::Invalid(
                "versions from other centers go through apply_remote and forget".into(),
            ));
        }
        if let WriteOp::Put { prepared, .. } = &op {
            let Some(obj) = prepared.body.as_object() else {
                return Err(WriteError::Invalid(format!("a {kind} body must be a JSON object")));
            };
            if let Some(f) = regmesh_core::kind::ENVELOPE_FIELDS
                .iter()
                .find(|f| obj.contains_key(**f))
            {
                return Err(WriteError::Invalid(format!(
                    "a {kind} body must not carry the envelope field {f:?}"
                )));
            }
        }
        let canonical = match &op {
            WriteOp::Put { prepared, .. } => Some(canonical_json(&prepared.body)),
            _ => None,
        };
        let (reply, rx) = oneshot::channel();
        let op = Op {
            kind: kind.to_string(),
            id: id.to_string(),
            op,
            canonical,
            reply: Some(reply),
        };
        match self.tx.try_send(op) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.metrics.shed.fetch_add(1, Ordering::Relaxed);
                return Err(WriteError::Overloaded(self.shared.settings.write_queue));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(WriteError::ShuttingDown),
        }
        rx.await.unwrap_or(Err(WriteError::ShuttingDown))
    }

    /// Checks versions received from a peer: known kind, valid id, known
    /// origin, valid signature, size. All or nothing.
    pub fn verify_remote(&self, records: Vec<Record>) -> Result<Verified, WriteError> {
        for r in &records {
            if self.shared.kinds.get(&r.kind).is_none() {
                return Err(WriteError::Invalid(format!(
                    "unknown kind {:?} in {}/{}",
                    r.kind, r.kind, r.id
                )));
            }
            regmesh_core::validate_record_id(&r.id).map_err(|e| WriteError::Invalid(format!("{}: {e}", r.kind)))?;
            let key = self.shared.keys.get(&r.origin).ok_or_else(|| {
                WriteError::Invalid(format!(
                    "{}/{}: origin {:?} is not a known center",
                    r.kind, r.id, r.origin
                ))
            })?;
            verify_record(r, key).map_err(|e| WriteError::Invalid(e.to_string()))?;
            let size = codec::encode(r).len();
            if size > self.shared.settings.max_record_bytes {
                return Err(WriteError::TooLarge {
                    bytes: size,
                    max: self.shared.settings.max_record_bytes,
                });
            }
        }
        Ok(Verified(records))
    }

    /// Merges verified versions. Each merges under the lattice order, so
    /// older or duplicate versions change nothing. Returns how many were newer
    /// than what this center held.
    pub async fn apply_verified(&self, records: Verified) -> Result<usize, WriteError> {
        let ops = records
            .0
            .into_iter()
            .map(|r| (r.kind.clone(), r.id.clone(), WriteOp::Merge(Box::new(r))));
        let outcomes = self.submit_all(ops).await?;
        Ok(outcomes.iter().filter(|o| !matches!(o, Outcome::Nothing)).count())
    }

    /// Queues internal ops (all of them, waiting for room) and collects
    /// their outcomes in order; the first refusal is returned.
    async fn submit_all(
        &self,
        ops: impl Iterator<Item = (String, String, WriteOp)>,
    ) -> Result<Vec<Outcome>, WriteError> {
        let mut waits = Vec::new();
        for (kind, id, op) in ops {
            let (reply, rx) = oneshot::channel();
            let op = Op {
                kind,
                id,
                op,
                canonical: None,
                reply: Some(reply),
            };
            self.tx.send(op).await.map_err(|_| WriteError::ShuttingDown)?;
            waits.push(rx);
        }
        let mut out = Vec::with_capacity(waits.len());
        for w in waits {
            out.push(w.await.unwrap_or(Err(WriteError::ShuttingDown))?);
        }
        Ok(out)
    }

    /// Per origin, the highest seq of a deletion this center can no longer
    /// show a peer: tombstones purged after the horizon, or deletions learnt
    /// only by a resync. A peer whose watermark is below it may hold records
    /// deleted since, and must resync that origin (PROTOCOL.md).
    pub fn purged_through(&self, origin: &str) -> u64 {
        self.shared
            .purged
            .read()
            .expect("purged lock")
            .get(origin)
            .copied()
            .unwrap_or(0)
    }

    /// Every origin's purge mark ([`Center::purged_through`]).
    pub fn purge_marks(&self) -> BTreeMap<String, u64> {
        self.shared.purged.read().expect("purged lock").clone()
    }

    /// Live records of `origin` held here: `(kind, id, seq)`.
    pub fn origin_live(&self, origin: &str) -> Vec<(String, String, u64)> {
        let ix = self.shared.index.read().expect("index lock");
        ix.by_origin_after(origin, 0, usize::MAX)
            .into_iter()
            .filter(|(_, k, i)| ix.get(k, i).is_some_and(|e| !e.deleted))
            .map(|(seq, k, i)| (k, i, seq))
            .collect()
    }

    /// Ends a replacing resync of `origin`: drops each `(kind, id, seq)`
    /// that is still that live version (a `delete` change with reason
    /// `resync`), and raises the origin's purge mark to `purged_through`.
    /// Never drops this center's own records.
    pub async fn forget(
        &self,
        origin: &str,
        drops: Vec<(String, String, u64)>,
        purged_through: u64,
    ) -> Result<usize, WriteError> {
        // With nothing to drop, one op on no key still raises the mark.
        let keys = if drops.is_empty() {
            vec![(String::new(), String::new(), 0)]
        } else {
            drops
        };
        let ops = keys.into_iter().map(|(kind, id, seq)| {
            let op = WriteOp::Forget {
                origin: origin.to_string(),
                seq,
                purged_through,
            };
            (kind, id, op)
        });
        let outcomes = self.submit_all(ops).await?;
        Ok(outcomes.iter().filter(|o| matches!(o, Outcome::Deleted(_))).count())
    }

    /// [`Center::verify_remote`] then [`Center::apply_verified`]: if any record
    /// fails its checks, nothing is applied.
    pub async fn apply_remote(&self, records: Vec<Record>) -> Result<usize, WriteError> {
        let v = self.verify_remote(records)?;
        self.apply_verified(v).await
    }

    /// True if `r` belongs to another center and its lease has run out
    /// without word from its origin: served, but marked stale.
    pub fn is_stale(&self, r: &Record) -> bool {
        r.origin != self.shared.id && r.expires_at_ms.is_some_and(|t| t < now_ms())
    }

    /// Digests of `origin`'s live versions, per (kind, visibility class).
    pub fn class_digests(&self, origin: &str) -> Vec<(String, String, regmesh_proto::digest::SetDigest)> {
        self.shared.index.read().expect("index lock").class_digests(origin)
    }

    /// Every center whose records this center accepts, itself included.
    pub fn known_centers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.shared.keys.keys().cloned().collect();
        v.sort();
        v
    }

    /// Known public key of center `id`.
    pub fn key_of(&self, id: &str) -> Option<VerifyingKey> {
        self.shared.keys.get(id).copied()
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

    /// The live record `(kind, id)`, or None if absent, deleted, or another
    /// center's record whose lease ran out more than the grace ago.
    pub fn get(&self, kind: &str, id: &str) -> Result<Option<Record>, ReadError> {
        Ok(self.get_held(kind, id)?.filter(|r| !self.past_grace(r)))
    }

    /// The live version held here, even one [`Center::get`] hides because
    /// its origin let the lease lapse long ago.
    pub fn get_held(&self, kind: &str, id: &str) -> Result<Option<Record>, ReadError> {
        self.shared.read_verified(kind, id)
    }

    /// True for another center's record whose lease ended more than
    /// `leases.retention_s` ago without word from its origin. Such records
    /// are no longer served, but not deleted: expiry is the origin's call,
    /// and a center cut off from many origins never mass-expires.
    fn past_grace(&self, r: &Record) -> bool {
        r.origin != self.shared.id
            && r.expires_at_ms
                .is_some_and(|t| t.saturating_add(self.shared.settings.retention_ms) < now_ms())
    }

    /// A page of live records of `kind` matching all `filters`, in id order
    /// after `after`. Returns the records and whether more follow.
    pub fn list(
        &self,
        kind: &str,
        filters: &[(&str, &str)],
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Record>, bool), ReadError> {
        let k = self
            .shared
            .kinds
            .get(kind)
            .ok_or_else(|| ReadError::BadQuery(format!("unknown kind {kind:?}")))?;
        for (f, _) in filters {
            if *f != "origin" && !k.index_fields().contains(f) {
                return Err(ReadError::BadQuery(format!(
                    "{kind} records cannot be filtered by {f:?}"
                )));
            }
        }
        let page = self
            .shared
            .index
            .read()
            .expect("index lock")
            .query(kind, filters, after, limit);
        let ids: Vec<&str> = page.ids.iter().map(String::as_str).collect();
        let got = self
            .shared
            .store
            .get_many(kind, &ids)
            .map_err(|e| ReadError::Storage(e.to_string()))?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, bytes) in ids.iter().zip(got) {
            let ok = {
                let ix = self.shared.index.read().expect("index lock");
                match (ix.get(kind, id), &bytes) {
                    (Some(e), Some(b)) if !e.deleted && e.digest == digest(b) => Some(b),
                    _ => None,
                }
            };
            // A write may have landed between the index and the store read:
            // fall back to the careful single read.
            let rec = match ok {
                Some(b) => Some(codec::decode(b).map_err(|e| ReadError::Storage(e.to_string()))?),
                None => self.shared.read_verified(kind, id)?,
            };
            out.extend(rec.filter(|r| !self.past_grace(r)));
        }
        Ok((out, page.more))
    }

    /// Stored versions (tombstones included) of `origin` with seq above
    /// `after`, in seq order, at most `limit`; for anti-entropy pulls.
    pub fn origin_after(&self, origin: &str, after: u64, limit: usize) -> Result<Vec<Record>, ReadError> {
        let keys = self
            .shared
            .index
            .read()
            .expect("index lock")
            .by_origin_after(origin, after, limit);
        let mut out = Vec::with_capacity(keys.len());
        for (_, kind, id) in keys {
            let entry = self.shared.index.read().expect("index lock").get(&kind, &id).cloned();
            let Some(entry) = entry else { continue };
            let Some(bytes) = self
                .shared
                .store
                .get(&kind, &id)
                .map_err(|e| ReadError::Storage(e.to_string()))?
            else {
                continue;
            };
            if digest(&bytes) != entry.digest {
                // Replaced since the index read; the newer version has a
                // higher seq and is sent in its turn.
                continue;
            }
            out.push(codec::decode(&bytes).map_err(|e| ReadError::Storage(e.to_string()))?);
        }
        Ok(out)
    }

    /// The last sequence number this center issued (committed). Every own
    /// write up to it is durable here, or superseded.
    pub fn own_seq(&self) -> u64 {
        self.shared.own_seq.load(Ordering::Acquire)
    }

    /// Persists per-origin watermarks (anti-entropy) as one metadata cell.
    pub fn save_watermarks(&self, w: &[(String, u64)]) -> Result<(), WriteError> {
        let text = serde_json::to_vec(&w.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()).expect("json");
        self.shared
            .store
            .apply(&WriteBatch {
                meta: vec![("watermarks".into(), text)],
                ..Default::default()
            })
            .map_err(|e| WriteError::Storage(e.to_string()))
    }

    /// Watermarks saved by [`Center::save_watermarks`].
    pub fn load_watermarks(&self) -> Vec<(String, u64)> {
        self.shared
            .store
            .meta("watermarks")
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice::<std::collections::BTreeMap<String, u64>>(&b).ok())
            .map(|m| m.into_iter().collect())
            .unwrap_or_default()
    }

    /// Subscribes to change events committed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.shared.events.subscribe()
    }

    /// Oldest and newest change numbers still in the change log.
    pub fn change_bounds(&self) -> Result<Option<(u64, u64)>, ReadError> {
        self.shared
            .store
            .change_bounds()
            .map_err(|e| ReadError::Storage(e.to_string()))
    }

    /// Logged changes numbered above `after`, at most `limit`.
    pub fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, ReadError> {
        let raw = self
            .shared
            .store
            .changes_after(after, limit)
            .map_err(|e| ReadError::Storage(e.to_string()))?;
        raw.into_iter()
            .map(|(n, b)| decode_event(n, &b).map_err(ReadError::Storage))
            .collect()
    }

    /// Summary for `GET /v1/status`.
    pub fn status(&self) -> Value {
        let ix = self.shared.index.read().expect("index lock");
        let mut records = serde_json::Map::new();
        let mut tombstones = 0;
        for k in self.shared.kinds.names() {
            records.insert(k.into(), Value::from(ix.live(k)));
            tombstones += ix.entries(k) - ix.live(k);
        }
        drop(ix);
        serde_json::json!({
            "id": self.shared.id,
            "public_key": self.public_key_hex(),
            "software": concat!("regmesh ", env!("CARGO_PKG_VERSION")),
            "store": self.shared.store.backend(),
            "uptime_s": self.started.elapsed().as_secs(),
            "records": records,
            "tombstones": tombstones,
            "change": self.head(),
            "write_queue": {
                "waiting": self.shared.settings.write_queue - self.tx.capacity(),
                "capacity": self.shared.settings.write_queue,
            },
            "deadlines": self.shared.deadlines.lock().expect("deadlines lock").len(),
        })
    }

    /// Numbers for `/metrics` that are read, not counted.
    pub fn gauges(&self) -> Vec<(&'static str, &'static str, String, u64)> {
        let ix = self.shared.index.read().expect("index lock");
        let mut out = Vec::new();
        for k in self.shared.kinds.names() {
            out.push((
                "regmesh_records",
                "Live records by kind.",
                format!("kind=\"{k}\""),
                ix.live(k) as u64,
            ));
            out.push((
                "regmesh_tombstones",
                "Tombstones kept by kind.",
                format!("kind=\"{k}\""),
                (ix.entries(k) - ix.live(k)) as u64,
            ));
        }
        drop(ix);
        out.push((
            "regmesh_write_queue_waiting",
            "Writes waiting for the writer.",
            String::new(),
            (self.shared.settings.write_queue - self.tx.capacity()) as u64,
        ));
        out.push((
            "regmesh_change_head",
            "Last committed change number.",
            String::new(),
            self.head(),
        ));
        out.push((
            "regmesh_lease_deadlines",
            "Records with a pending lease, retention or purge deadline.",
            String::new(),
            self.shared.deadlines.lock().expect("deadlines lock").len() as u64,
        ));
        out
    }

    /// Queues sweeps for every deadline that has passed. Returns how many.
    pub async fn sweep_due(&self) -> usize {
        let due = self
            .shared
            .deadlines
            .lock()
            .expect("deadlines lock")
            .take_due(now_ms(), self.shared.settings.write_batch_max);
        let n = due.len();
        for (kind, id) in due {
            let op = Op {
                kind,
                id,
                op: WriteOp::Sweep,
                canonical: None,
                reply: None,
            };
            if self.tx.send(op).await.is_err() {
                break;
            }
        }
        n
    }

    /// Runs [`Center::sweep_due`] forever at the configured interval.
    pub async fn run_sweeper(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.shared.settings.sweep_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sweep_due().await;
        }
    }

    /// Whether client writes are accepted (false while the center is
    /// inactive in its mesh).
    pub fn set_accepting_writes(&self, yes: bool) {
        self.accepting.store(yes, Ordering::Relaxed);
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
    /// `ShuttingDown` for any write after this.
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
        let _ = handle.join();
    }
}

/// The per-key state of one batch: the record before the batch and after the
/// ops applied so far.
struct Slot {
    before: Option<Record>,
    after: Option<Record>,
    after_digest: Option<Digest>,
    touched: bool,
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

    /// When the lease of own live `r` (whose replicated expiry is `exp`)
    /// really runs out: its last local renewal; else the lease its version
    /// granted, but not before one lease after this center started (local
    /// renewals are not persisted).
    fn lease_end(&self, r: &Record, exp: u64) -> u64 {
        let ext = self.settings.renewal_extension_ms;
        if ext == 0 {
            return exp;
        }
        if let Some(t) = self
            .renewed
            .lock()
            .expect("renewed lock")
            .get(&(r.kind.clone(), r.id.clone()))
        {
            return *t;
        }
        let lease_ms = r
            .body_value()
            .ok()
            .and_then(|b| self.kind(&r.kind)?.lease_s(&b))
            .unwrap_or(0)
            .saturating_mul(1000);
        exp.saturating_sub(ext)
            .max(self.started_ms.saturating_add(lease_ms))
            .min(exp)
    }

    /// When this center must next look at `r`, if ever.
    fn deadline(&self, r: &Record) -> Option<u64> {
        if r.deleted {
            return Some(r.version.wall_ms.saturating_add(self.settings.tombstone_horizon_ms));
        }
        if r.origin != self.id {
            return None;
        }
        let exp = r.expires_at_ms?;
        let expired = match (self.kind(&r.kind), r.body_value()) {
            (Some(k), Ok(b)) => k.is_expired_state(&b),
            _ => false,
        };
        Some(if expired {
            exp.saturating_add(self.settings.retention_ms)
        } else {
            self.lease_end(r, exp)
        })
    }

    /// Reads `(kind, id)` from the store and checks it against the index
    /// digest. None for absent or tombstone.
    fn read_verified(&self, kind: &str, id: &str) -> Result<Option<Record>, ReadError> {
        let mut last_digest = None;
        for attempt in 0..5 {
            let entry = self.index.read().expect("index lock").get(kind, id).cloned();
            let Some(entry) = entry else { return Ok(None) };
            if entry.deleted {
                return Ok(None);
            }
            let bytes = self
                .store
                .get(kind, id)
                .map_err(|e| ReadError::Storage(e.to_string()))?;
            if let Some(b) = bytes {
                let d = digest(&b);
                if d == entry.digest {
                    return codec::decode(&b)
                        .map(Some)
                        .map_err(|e| ReadError::Storage(e.to_string()));
                }
                last_digest = Some(d);
            }
            // Raced with a commit (store ahead of index), or the bytes changed
            // under us. Give the writer a moment to publish, then look again.
            std::thread::sleep(Duration::from_millis(1 << attempt));
        }
        self.metrics.integrity_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            kind,
            id,
            ?last_digest,
            "stored record does not match its verified digest"
        );
        Err(ReadError::Integrity {
            kind: kind.into(),
            id: id.into(),
        })
    }

    /// Reads the current version (tombstones included) for the writer.
    fn load_for_write(&self, kind: &str, id: &str) -> Result<Option<Record>, WriteError> {
        let Some(entry) = self.index.read().expect("index lock").get(kind, id).cloned() else {
            return Ok(None);
        };
        let bytes = self
            .store
            .get(kind, id)
            .map_err(|e| WriteError::Storage(e.to_string()))?;
        match bytes {
            Some(b) if digest(&b) == entry.digest => codec::decode(&b)
                .map(Some)
                .map_err(|e| WriteError::Storage(e.to_string())),
            _ => {
                self.metrics.integrity_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    kind,
                    id,
                    "stored record does not match its verified digest; refusing to write over it"
                );
                Err(WriteError::Storage(format!("integrity check failed for {kind}/{id}")))
            }
        }
    }

    /// Start-up: verify every stored record and rebuild the indexes and
    /// deadlines. Records that fail verification are left out and logged.
    fn rebuild(&self) -> Result<usize, regmesh_store::StoreError> {
        const CHUNK: usize = 4096;
        let mut chunk: Vec<Vec<u8>> = Vec::with_capacity(CHUNK);
        let mut loaded = 0usize;
        let mut bad = 0usize;
        let mut flush = |chunk: &mut Vec<Vec<u8>>| {
            let verified = self.verify_chunk(chunk);
            let mut ix = self.index.write().expect("index lock");
            let mut dl = self.deadlines.lock().expect("deadlines lock");
            for (bytes, rec) in chunk.drain(..).zip(verified) {
                match rec {
                    Ok(r) => {
                        let terms = self.terms(&r);
                        let class = ix.class_id(self.class_of(&r).as_deref());
                        ix.upsert(
                            &r.kind,
                            &r.id,
                            IndexEntry {
                                digest: digest(&bytes),
                                deleted: r.deleted,
                                origin: std::sync::Arc::from(r.origin.as_str()),
                                seq: r.seq,
                                class,
                            },
                            &[],
                            &terms,
                        );
                        dl.set(&r.kind, &r.id, self.deadline(&r));
                        loaded += 1;
                    }
                    Err(e) => {
                        bad += 1;
                        tracing::error!("left out of the index: {e}");
                    }
                }
            }
        };
        self.store.scan(&mut |_, _, v| {
            chunk.push(v.to_vec());
            if chunk.len() == CHUNK {
                flush(&mut chunk);
            }
            true
        })?;
        flush(&mut chunk);
        if bad > 0 {
            self.metrics.integrity_errors.fetch_add(bad as u64, Ordering::Relaxed);
            tracing::error!(bad, "stored records failed verification and are not served");
        }
        Ok(loaded)
    }

    /// Decodes and verifies a chunk of stored records on all cores.
    fn verify_chunk(&self, chunk: &[Vec<u8>]) -> Vec<Result<Record, String>> {
        let one = |b: &Vec<u8>| -> Result<Record, String> {
            let r = codec::decode(b).map_err(|e| e.to_string())?;
            let key = self
                .keys
                .get(&r.origin)
                .ok_or_else(|| format!("{}/{}: no key for origin {:?}", r.kind, r.id, r.origin))?;
            verify_record(&r, key).map_err(|e| e.to_string())?;
            Ok(r)
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        let per = chunk.len().div_ceil(threads).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .chunks(per)
                .map(|part| s.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("verify thread"))
                .collect()
        })
    }

    fn writer_loop(self: Arc<Self>, mut rx: mpsc::Receiver<Op>, mut st: WriterState) {
        while let Some(first) = rx.blocking_recv() {
            let mut ops = vec![first];
            while ops.len() < self.settings.write_batch_max {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            // Everything queued before a close is committed; nothing after.
            let close = ops.iter().position(|o| matches!(o.op, WriteOp::Close));
            if let Some(at) = close {
                ops.truncate(at);
            }
            self.commit_batch(&mut st, ops);
            if close.is_some() {
                // Make any relaxed commits durable before stopping.
                let flush = WriteBatch {
                    meta: vec![(CHANGE_RESERVED_META.into(), st.change_reserved.to_be_bytes().to_vec())],
                    ..Default::default()
                };
                if let Err(e) = self.store.apply(&flush) {
                    tracing::error!("final flush failed: {e}");
                }
                rx.close();
                while let Ok(op) = rx.try_recv() {
                    if let Some(r) = op.reply {
                        let _ = r.send(Err(WriteError::ShuttingDown));
                    }
                }
                break;
            }
        }
        tracing::debug!("writer stopped");
    }

    /// Applies `ops` in order, commits once, then publishes and answers.
    fn commit_batch(&self, st: &mut WriterState, ops: Vec<Op>) {
        let now = now_ms();
        let before_state = st.clone();
        let mut slots: HashMap<(String, String), Slot> = HashMap::new();
        let mut batch = WriteBatch::default();
        let mut events: Vec<Event> = Vec::new();
        let mut replies: Vec<(Option<ReplyTo>, Result<Outcome, WriteError>)> = Vec::with_capacity(ops.len());
        // Sweeps that found nothing due (re-arm from the record) and sweeps
        // that could not load the record (look again in a second).
        let mut resweep: Vec<(String, String)> = Vec::new();
        let mut retry: Vec<(String, String)> = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();

        // Only other centers' versions (copies a peer can send again): the
        // commit need not wait for the disk (see RELAXED_FOR_MS).
        let mut relaxed = ops.iter().all(|o| match &o.op {
            WriteOp::Merge(r) => r.origin != self.id,
            WriteOp::Forget { .. } => true,
            _ => false,
        });
        for op in ops {
            let key = (op.kind.clone(), op.id.clone());
            if !slots.contains_key(&key) {
                match self.load_for_write(&op.kind, &op.id) {
                    Ok(r) => {
                        slots.insert(
                            key.clone(),
                            Slot {
                                before: r.clone(),
                                after: r,
                                after_digest: None,
                                touched: false,
                            },
                        );
                    }
                    Err(e) => {
                        if matches!(op.op, WriteOp::Sweep) {
                            retry.push(key);
                        }
                        replies.push((op.reply, Err(e)));
                        continue;
                    }
                }
            }
            let slot = slots.get_mut(&key).expect("slot present");
            let is_sweep = matches!(op.op, WriteOp::Sweep);
            match self.apply_op(st, now, (&op.kind, &op.id), op.op, op.canonical, slot.after.as_ref()) {
                Ok(Applied::Write {
                    record,
                    typ,
                    reason,
                    outcome,
                    signed,
                }) => {
                    // Later ops in this batch see this version (unsigned as yet).
                    slot.after = Some(record.clone());
                    slot.touched = true;
                    pending.push(Pending {
                        key,
                        record,
                        signed,
                        typ,
                        reason,
                        done: outcome,
                        reply: op.reply,
                    });
                }
                Ok(Applied::Purge) => {
                    if let Some(t) = slot.after.as_ref() {
                        let mark = st.purged.entry(t.origin.clone()).or_insert(0);
                        if t.seq > *mark {
                            *mark = t.seq;
                            st.purged_dirty = true;
                        }
                    }
                    batch.removes.push((op.kind.clone(), op.id.clone()));
                    slot.after = None;
                    slot.after_digest = None;
                    slot.touched = true;
                    replies.push((op.reply, Ok(Outcome::Nothing)));
                }
                Ok(Applied::Forget(record)) => {
                    batch.removes.push((op.kind.clone(), op.id.clone()));
                    slot.after = None;
                    slot.after_digest = None;
                    slot.touched = true;
                    st.change += 1;
                    let typ = EventType::Delete;
                    let reason = Some(DeleteReason::Resync);
                    batch
                        .changes
                        .push((st.change, encode_event(typ, reason, &codec::encode(&record))));
                    replies.push((op.reply, Ok(Outcome::Deleted(record.clone()))));
                    events.push(Event {
                        no: st.change,
                        typ,
                        reason,
                        record,
                    });
                }
                Ok(Applied::Nothing) => {
                    if is_sweep {
                        resweep.push(key);
                    }
                    replies.push((op.reply, Ok(Outcome::Nothing)));
                }
                Ok(Applied::Renewed(record)) => {
                    // The lease deadline moves; nothing is written.
                    resweep.push(key);
                    replies.push((op.reply, Ok(Outcome::Renewed(record))));
                }
                Err(e) => replies.push((op.reply, Err(e))),
            }
        }

        // Sign every new version of the batch; the versions and sequence
        // numbers were assigned in order above, signatures are independent.
        self.sign_all(&mut pending);
        for p in pending {
            let bytes = codec::encode(&p.record);
            st.change += 1;
            batch.changes.push((st.change, encode_event(p.typ, p.reason, &bytes)));
            let slot = slots.get_mut(&p.key).expect("slot present");
            // Versions are signed in op order, so the last one of a key wins.
            slot.after_digest = Some(digest(&bytes));
            slot.after = Some(p.record.clone());
            batch.puts.push((p.key.0, p.key.1, bytes));
            replies.push((p.reply, Ok(p.done.with(&p.record))));
            events.push(Event {
                no: st.change,
                typ: p.typ,
                reason: p.reason,
                record: p.record,
            });
        }

        if !batch.puts.is_empty() || !batch.removes.is_empty() || st.purged_dirty {
            if st.purged_dirty {
                batch
                    .meta
                    .push((PURGED_META.into(), serde_json::to_vec(&st.purged).expect("json")));
                relaxed = false;
            }
            if st.change > st.change_reserved {
                st.change_reserved = st.change + CHANGE_RESERVE;
                batch
                    .meta
                    .push((CHANGE_RESERVED_META.into(), st.change_reserved.to_be_bytes().to_vec()));
                relaxed = false;
            }
            if st.last_durable.elapsed().as_millis() >= RELAXED_FOR_MS {
                relaxed = false;
            }
            batch.relaxed = relaxed;
            let h = st.hlc.last();
            let mut hb = h.wall_ms.to_be_bytes().to_vec();
            hb.extend_from_slice(&h.logical.to_be_bytes());
            batch.meta.push(("hlc".into(), hb));
            batch.meta.push(("seq".into(), st.seq.to_be_bytes().to_vec()));
            if st.change >= st.first_change + self.settings.watch_history {
                let keep_from = st.change + 1 - self.settings.watch_history;
                batch.trim_changes_below = Some(keep_from);
                st.first_change = keep_from;
            }
            let t0 = Instant::now();
            if let Err(e) = self.store.apply(&batch) {
                tracing::error!(
                    "commit of {} writes failed: {e}",
                    batch.puts.len() + batch.removes.len()
                );
                *st = before_state;
                let err = WriteError::Storage(e.to_string());
                let mut dl = self.deadlines.lock().expect("deadlines lock");
                for (k, i) in slots.keys().chain(retry.iter()) {
                    // Nothing changed: look at every record involved again in a second.
                    dl.set(k, i, Some(now + 1000));
                }
                drop(dl);
                for (reply, res) in replies {
                    let res = match res {
                        Ok(Outcome::Nothing) => Ok(Outcome::Nothing),
                        Ok(_) => Err(err.clone()),
                        Err(e) => Err(e),
                    };
                    if let Some(r) = reply {
                        let _ = r.send(res);
                    }
                }
                return;
            }
            self.metrics
                .observe_commit(batch.puts.len() + batch.removes.len(), t0.elapsed());
            if !batch.relaxed {
                st.last_durable = Instant::now();
            }
            {
                let mut ix = self.index.write().expect("index lock");
                let mut dl = self.deadlines.lock().expect("deadlines lock");
                for ((k, i), slot) in &slots {
                    if !slot.touched {
                        continue;
                    }
                    let old_terms = slot.before.as_ref().map(|r| self.terms(r)).unwrap_or_default();
                    match (&slot.after, slot.after_digest) {
                        (Some(r), Some(d)) => {
                            let new_terms = self.terms(r);
                            let class = ix.class_id(self.class_of(r).as_deref());
                            ix.upsert(
                                k,
                                i,
                                IndexEntry {
                                    digest: d,
                                    deleted: r.deleted,
                                    origin: std::sync::Arc::from(r.origin.as_str()),
                                    seq: r.seq,
                                    class,
                                },
                                &old_terms,
                                &new_terms,
                            );
                            dl.set(k, i, self.deadline(r));
                        }
                        _ => {
                            ix.remove(k, i, &old_terms);
                            dl.set(k, i, None);
                        }
                    }
                }
            }
            self.head.store(st.change, Ordering::Release);
            self.own_seq.store(st.seq, Ordering::Release);
            if std::mem::take(&mut st.purged_dirty) {
                *self.purged.write().expect("purged lock") = st.purged.clone();
            }
            for ev in events {
                self.metrics.count_event(ev.typ, ev.reason);
                let _ = self.events.send(Arc::new(ev));
            }
        }
        if !resweep.is_empty() || !retry.is_empty() {
            let mut dl = self.deadlines.lock().expect("deadlines lock");
            for key in resweep {
                let at = slots
                    .get(&key)
                    .and_then(|s| s.after.as_ref())
                    .and_then(|r| self.deadline(r));
                dl.set(&key.0, &key.1, at);
            }
            for (k, i) in retry {
                dl.set(&k, &i, Some(now + 1000));
            }
        }
        for (reply, res) in replies {
            if let Some(r) = reply {
                let _ = r.send(res);
            }
        }
    }

    /// Decides what one op does to the current version `cur`.
    fn apply_op(
        &self,
        st: &mut WriterState,
        now: u64,
        (kind_name, id): (&str, &str),
        op: WriteOp,
        canonical: Option<String>,
        cur: Option<&Record>,
    ) -> Result<Applied, WriteError> {
        let not_found = || WriteError::NotFound {
            kind: kind_name.into(),
            id: id.into(),
        };
        let live = cur.filter(|r| !r.deleted);
        if let WriteOp::Forget {
            origin,
            seq,
            purged_through,
        } = &op
        {
            let mark = st.purged.entry(origin.clone()).or_insert(0);
            if *purged_through > *mark {
                *mark = *purged_through;
                st.purged_dirty = true;
            }
            return Ok(match live {
                Some(r) if r.origin == *origin && r.origin != self.id && r.seq == *seq => Applied::Forget(r.clone()),
                _ => Applied::Nothing,
            });
        }
        if let Some(r) = live {
            if r.origin != self.id && !matches!(op, WriteOp::Sweep | WriteOp::Merge(_)) {
                return Err(WriteError::NotOwner {
                    kind: kind_name.into(),
                    id: id.into(),
                    owner: r.origin.clone(),
                });
            }
        }
        let check_version = |want: Option<Hlc>| -> Result<(), WriteError> {
            match (want, live) {
                (Some(w), Some(r)) if r.version != w => Err(WriteError::VersionMismatch {
                    current: r.version.to_string(),
                    expected: w.to_string(),
                }),
                (Some(w), None) => Err(WriteError::VersionMismatch {
                    current: "none".into(),
                    expected: w.to_string(),
                }),
                _ => Ok(()),
            }
        };
        let kind = self.kind(kind_name).ok_or_else(not_found)?;
        match op {
            WriteOp::Forget { .. } | WriteOp::Close => Ok(Applied::Nothing),
            WriteOp::Put { prepared, if_version } => {
                check_version(if_version)?;
                let ext = self.settings.renewal_extension_ms;
                let rec_lease = prepared.lease_s;
                let rec = self.stamp(
                    st,
                    now,
                    kind_name,
                    id,
                    canonical.unwrap_or_else(|| canonical_json(&prepared.body)),
                    prepared
                        .lease_s
                        .map(|l| now.saturating_add(l.saturating_mul(1000)).saturating_add(ext)),
                    prepared.visibility,
                    false,
                )?;
                {
                    let mut renewed = self.renewed.lock().expect("renewed lock");
                    let key = (kind_name.to_string(), id.to_string());
                    match rec_lease {
                        Some(l) if ext > 0 => renewed.insert(key, now.saturating_add(l.saturating_mul(1000))),
                        _ => renewed.remove(&key),
                    };
                }
                let outcome = if live.is_some() { Done::Replaced } else { Done::Created };
                Ok(Applied::Write {
                    record: rec,
                    typ: EventType::Put,
                    reason: None,
                    outcome,
                    signed: false,
                })
            }
            WriteOp::Delete { if_version } => {
                let r = live.ok_or_else(not_found)?;
                check_version(if_version)?;
                self.renewed
                    .lock()
                    .expect("renewed lock")
                    .remove(&(kind_name.to_string(), id.to_string()));
                let rec = self.stamp(st, now, kind_name, id, "{}".into(), None, r.visibility.clone(), true)?;
                Ok(Applied::Write {
                    outcome: Done::Deleted,
                    record: rec,
                    typ: EventType::Delete,
                    reason: Some(DeleteReason::Client),
                    signed: false,
                })
            }
            WriteOp::Heartbeat => {
                let r = live.ok_or_else(not_found)?;
                let mut body = r.body_value().map_err(|e| WriteError::Storage(e.to_string()))?;
                let before = body.clone();
                kind.on_heartbeat(&mut body);
                let lease = kind.lease_s(&body);
                let ext = self.settings.renewal_extension_ms;
                let key = (kind_name.to_string(), id.to_string());
                if let (true, Some(l), Some(exp)) = (ext > 0, lease, r.expires_at_ms) {
                    let end = now.saturating_add(l.saturating_mul(1000));
                    if body == before && exp >= end {
                        // The replicated version still covers a whole lease:
                        // renew here only (`leases.renewal_extension_s`).
                        self.renewed.lock().expect("renewed lock").insert(key, end);
                        return Ok(Applied::Renewed(r.clone()));
                    }
                }
                if let (true, Some(l)) = (ext > 0, lease) {
                    let end = now.saturating_add(l.saturating_mul(1000));
                    self.renewed.lock().expect("renewed lock").insert(key, end);
                }
                let rec = self.stamp(
                    st,
                    now,
                    kind_name,
                    id,
                    canonical_json(&body),
                    lease.map(|l| now.saturating_add(l.saturating_mul(1000)).saturating_add(ext)),
                    r.visibility.clone(),
                    false,
                )?;
                Ok(Applied::Write {
                    outcome: Done::Renewed,
                    record: rec,
                    typ: EventType::Put,
                    reason: None,
                    signed: false,
                })
            }
            WriteOp::Merge(rec) => {
                let rec = *rec;
                if cur.is_some_and(|c| !rec.supersedes(c)) {
                    return Ok(Applied::Nothing);
                }
                st.hlc
                    .observe(rec.version, now)
                    .map_err(|e| WriteError::Invalid(e.to_string()))?;
                if rec.origin == self.id {
                    // Our own version back from a peer (after we lost data):
                    // never reuse its sequence number.
                    st.seq = st.seq.max(rec.seq);
                }
                let (typ, outcome) = match (rec.deleted, live.is_some()) {
                    (true, _) => (EventType::Delete, Done::Deleted),
                    (false, true) => (EventType::Put, Done::Replaced),
                    (false, false) => (EventType::Put, Done::Created),
                };
                Ok(Applied::Write {
                    record: rec,
                    typ,
                    reason: None,
                    outcome,
                    signed: true,
                })
            }
            WriteOp::Sweep => {
                let Some(r) = cur else { return Ok(Applied::Nothing) };
                match self.deadline(r) {
                    Some(at) if at <= now => {}
                    _ => return Ok(Applied::Nothing),
                }
                if r.deleted {
                    return Ok(Applied::Purge);
                }
                let mut body = r.body_value().map_err(|e| WriteError::Storage(e.to_string()))?;
                if !kind.is_expired_state(&body) {
                    kind.on_lease_expired(&mut body);
                    // `expires_at` stays when the lease ran out (with a
                    // renewal extension, earlier than the replicated one).
                    let lapsed = r.expires_at_ms.map(|e| self.lease_end(r, e));
                    self.renewed
                        .lock()
                        .expect("renewed lock")
                        .remove(&(kind_name.to_string(), id.to_string()));
                    let rec = self.stamp(
                        st,
                        now,
                        kind_name,
                        id,
                        canonical_json(&body),
                        lapsed,
                        r.visibility.clone(),
                        false,
                    )?;
                    Ok(Applied::Write {
                        outcome: Done::Nothing,
                        record: rec,
                        typ: EventType::Expire,
                        reason: None,
                        signed: false,
                    })
                } else {
                    let rec = self.stamp(st, now, kind_name, id, "{}".into(), None, r.visibility.clone(), true)?;
                    Ok(Applied::Write {
                        outcome: Done::Nothing,
                        record: rec,
                        typ: EventType::Delete,
                        reason: Some(DeleteReason::Retention),
                        signed: false,
                    })
                }
            }
        }
    }

    /// Signs `pending` in place, on two threads when there are enough.
    fn sign_all(&self, pending: &mut [Pending]) {
        let sign = |p: &mut Pending| {
            if !p.signed {
                self.identity.sign_record(&mut p.record);
            }
        };
        if pending.len() < PARALLEL_SIGN_MIN {
            pending.iter_mut().for_each(sign);
            return;
        }
        let (a, b) = pending.split_at_mut(pending.len() / 2);
        std::thread::scope(|s| {
            s.spawn(|| b.iter_mut().for_each(sign));
            a.iter_mut().for_each(sign);
        });
    }

    /// Builds and size-checks a new version originated here (signed later,
    /// with the rest of its batch).
    #[allow(clippy::too_many_arguments)]
    fn stamp(
        &self,
        st: &mut WriterState,
        now: u64,
        kind: &str,
        id: &str,
        body: String,
        expires_at_ms: Option<u64>,
        visibility: regmesh_core::Visibility,
        deleted: bool,
    ) -> Result<Record, WriteError> {
        let mut rec = Record {
            kind: kind.into(),
            id: id.into(),
            origin: self.id.clone(),
            version: Hlc::ZERO,
            seq: 0,
            expires_at_ms,
            visibility,
            deleted,
            body,
            sig: [0; 64],
        };
        let size = codec::encode(&rec).len();
        if size > self.settings.max_record_bytes {
            return Err(WriteError::TooLarge {
                bytes: size,
                max: self.settings.max_record_bytes,
            });
        }
        rec.version = st.hlc.tick(now);
        st.seq += 1;
        rec.seq = st.seq;
        Ok(rec)
    }
}

/// Which [`Outcome`] a write produces once its version is signed.
#[derive(Clone, Copy)]
enum Done {
    Created,
    Replaced,
    Renewed,
    Deleted,
    Nothing,
}

impl Done {
    fn with(self, r: &Record) -> Outcome {
        match self {
            Done::Created => Outcome::Created(r.clone()),
            Done::Replaced => Outcome::Replaced(r.clone()),
            Done::Renewed => Outcome::Renewed(r.clone()),
            Done::Deleted => Outcome::Deleted(r.clone()),
            Done::Nothing => Outcome::Nothing,
        }
    }
}

/// A version waiting for its signature within one batch.
struct Pending {
    key: (String, String),
    record: Record,
    /// Already signed (by its origin); skip signing.
    signed: bool,
    typ: EventType,
    reason: Option<DeleteReason>,
    done: Done,
    reply: Option<ReplyTo>,
}

/// Below this many versions a batch is signed on the writer thread alone.
const PARALLEL_SIGN_MIN: usize = 32;

/// Metadata cell holding the per-origin purge marks (JSON object).
const PURGED_META: &str = "purged";

/// Metadata cell holding the highest change number reserved (u64 BE).
const CHANGE_RESERVED_META: &str = "change.reserved";
/// Change numbers reserved per durable reservation.
const CHANGE_RESERVE: u64 = 4096;
/// A relaxed commit (only other centers' versions) is made durable by the
/// next durable one, at the latest this long after the previous.
const RELAXED_FOR_MS: u128 = 1000;

/// What one op does, decided before the batch commits. Short-lived.
#[allow(clippy::large_enum_variant)]
enum Applied {
    /// A new version, stamped but not yet signed.
    Write {
        record: Record,
        typ: EventType,
        reason: Option<DeleteReason>,
        outcome: Done,
        /// Already signed by its origin (a merged remote version).
        signed: bool,
    },
    Purge,
    /// Drop a foreign record the origin no longer has (resync).
    Forget(Record),
    /// A lease renewed here only (no new version).
    Renewed(Record),
    Nothing,
}
