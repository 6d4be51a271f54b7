//! [`NodeHandle`]: the only way a front talks to the node. Writes of the
//! front's own kinds (a claimed kind's new id is first granted by a mesh
//! vote), reads and lists of any kind, the change feed, the peers and their
//! states, peer messages, and metrics of its own.
//!
//! Elections (document 003's ELECTION-START/VOTE/RESULT) are not offered:
//! the DNS front runs them itself over [`NodeHandle::send`].
//!
//! Must never: let a front write a kind it did not declare, skip the vote on
//! a claimed kind's new id, or hand a front the center or mesh themselves.

use crate::center::{Center, Event, Outcome, ReadError, WriteError, WriteOp};
use crate::http::ApiLimits;
use crate::messages::{message_body, PeerAnswer, PeerVerb, PEER_MESSAGE_BYTES_MAX};
use crate::metrics::{MetricError, MetricType};
use crate::peer::mesh::{Mesh, VoteOutcome};
use regmesh_core::{Creation, Hlc, Kind, Prepared, Record};
pub use regmesh_proto::lifecycle::PeerState;
pub use regmesh_proto::policy::ExportPolicy;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Change events read from the log per step when a subscriber catches up.
const REPLAY_PAGE: usize = 256;

/// A handle operation was refused or failed. Unless a variant says so,
/// nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The kind is not one this front declared. Nothing changed.
    #[error("front {front} does not own kind {kind:?}")]
    NotOwnKind { front: String, kind: String },
    /// The mesh refused the claim on a new id (another center holds or
    /// claims it). Nothing changed.
    #[error("{id} cannot be created here: {why}")]
    Claimed { id: String, why: String },
    /// The mesh could not decide on a new id in time. Nothing changed.
    #[error("the mesh could not agree on creating {id}: {why}")]
    Undecided { id: String, why: String },
    /// A list's page size is out of range. Nothing read.
    #[error("limit must be 1 to {max}")]
    BadLimit { max: usize },
    /// A list's cursor was not issued by this center. Nothing read.
    #[error("cursor is not one this center issued")]
    BadCursor,
    /// The write was refused or failed; [`WriteError`] says whether
    /// anything changed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A read failed. Nothing changed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The writer answered with an outcome the operation cannot have (a
    /// node defect); the write may have happened.
    #[error("unexpected outcome {0}")]
    Unexpected(String),
}

/// A peer was not added at runtime ([`NodeHandle::add_peer`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddPeerError {
    /// This center has no mesh (`[peer]` is not configured). Nothing
    /// changed.
    #[error("this center is not in a mesh")]
    NoMesh,
    /// The mesh refused it (duplicate, invalid, full; see its variants).
    /// Nothing changed.
    #[error("{0}")]
    Refused(#[from] crate::peer::mesh::AddPeerError),
}

/// A peer message could not be sent or was not answered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// This center has no mesh (`[peer]` is not configured). Nothing sent.
    #[error("this center is not in a mesh")]
    NoMesh,
    /// `to` is not a configured peer. Nothing sent.
    #[error("{0:?} is not a peer of this center")]
    NotAPeer(String),
    /// The message itself is wrong (type, fields, size). Nothing sent.
    #[error("{0}")]
    Invalid(String),
    /// The call failed; the peer may or may not have handled the message.
    #[error("call to {peer} failed: {why}")]
    Call { peer: String, why: String },
    /// The peer answered, but not with an accepted/rejected answer (a
    /// refusal by its listener, e.g. 401, or a center without this route).
    #[error("{peer} answered {status}: {body}")]
    BadAnswer { peer: String, status: u16, body: String },
}

/// A subscriber cannot go on. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// It fell behind further than the change log reaches: re-list, then
    /// subscribe again.
    #[error("changes after {after} are no longer kept; the oldest kept is {first}")]
    Expired { after: u64, first: u64 },
    /// The change log could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// A peer and the lifecycle state this center holds for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub id: String,
    pub state: PeerState,
}

/// What to list: index filters (`field`, `value`; the kind's fields or
/// `origin`), where to continue (a cursor from an earlier [`Page`]) and how
/// many (default and bound from the config).
#[derive(Debug, Clone, Default)]
pub struct ListQuery<'a> {
    pub filters: Vec<(&'a str, &'a str)>,
    pub cursor: Option<&'a str>,
    pub limit: Option<usize>,
}

/// One page of a list, in id order.
#[derive(Debug, Clone)]
pub struct Page {
    pub records: Vec<Record>,
    /// Where the next page starts; None on the last page.
    pub next_cursor: Option<String>,
}

/// A metric a front registered: a counter (add) or gauge (set, add).
#[derive(Clone)]
pub struct Metric(Arc<AtomicU64>);

impl Metric {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Gauges only (counters must not go down).
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct Core {
    center: Arc<Center>,
    mesh: Option<Arc<Mesh>>,
    limits: ApiLimits,
}

/// The node as one front sees it. Cheap to clone; every clone is the same
/// front.
#[derive(Clone)]
pub struct NodeHandle {
    front: &'static str,
    own: Arc<Vec<&'static str>>,
    core: Arc<Core>,
}

/// A [`NodeHandle`] that does not keep the node alive: what a front's
/// peer-message handler holds (the mesh holds the handler, so a strong
/// handle there would keep the center, its store included, open forever).
#[derive(Clone)]
pub struct WeakNodeHandle {
    front: &'static str,
    own: Arc<Vec<&'static str>>,
    core: std::sync::Weak<Core>,
}

impl WeakNodeHandle {
    /// The handle, while the node runs.
    pub fn upgrade(&self) -> Option<NodeHandle> {
        Some(NodeHandle {
            front: self.front,
            own: self.own.clone(),
            core: self.core.upgrade()?,
        })
    }
}

impl NodeHandle {
    /// A handle that does not keep the node alive ([`WeakNodeHandle`]).
    pub fn downgrade(&self) -> WeakNodeHandle {
        WeakNodeHandle {
            front: self.front,
            own: self.own.clone(),
            core: Arc::downgrade(&self.core),
        }
    }

    pub(crate) fn new(
        front: &'static str,
        own: Vec<&'static str>,
        center: Arc<Center>,
        mesh: Option<Arc<Mesh>>,
        limits: ApiLimits,
    ) -> Self {
        NodeHandle {
            front,
            own: Arc::new(own),
            core: Arc::new(Core { center, mesh, limits }),
        }
    }

    /// This center's id.
    pub fn center_id(&self) -> &str {
        self.core.center.id()
    }

    /// The front this handle belongs to.
    pub fn front(&self) -> &'static str {
        self.front
    }

    /// The client API's limits, for the front's handlers.
    pub fn limits(&self) -> &ApiLimits {
        &self.core.limits
    }

    /// A registered kind (any front's).
    pub fn kind(&self, name: &str) -> Option<Arc<dyn Kind>> {
        self.core.center.kinds().get(name).cloned()
    }

    fn own_kind(&self, kind: &str) -> Result<Arc<dyn Kind>, HandleError> {
        match self.kind(kind) {
            Some(k) if self.own.contains(&kind) => Ok(k),
            _ => Err(HandleError::NotOwnKind {
                front: self.front.into(),
                kind: kind.into(),
            }),
        }
    }

    /// Creates or replaces `kind/id` with a body the kind prepared. A new id
    /// of a [`Creation::Claimed`] kind is claimed across the mesh first; the
    /// claim is released once the write is durable or failed. Returns
    /// [`Outcome::Created`] or [`Outcome::Replaced`].
    pub async fn put(
        &self,
        kind: &str,
        id: &str,
        prepared: Prepared,
        if_version: Option<Hlc>,
    ) -> Result<Outcome, HandleError> {
        let k = self.own_kind(kind)?;
        if !self.core.center.accepting_writes() {
            // Refused before any vote goes out: an inactive center claims
            // nothing (the writer would refuse the write anyway).
            return Err(WriteError::Inactive.into());
        }
        let (mut granted, mut above) = (None, None);
        if let (Creation::Claimed, Some(mesh)) = (k.creation(), &self.core.mesh) {
            if self.core.center.get(kind, id)?.is_none() {
                match mesh.vote_new(kind, id).await {
                    VoteOutcome::Granted(c, h) => (granted, above) = (Some(c), h),
                    VoteOutcome::Refused(why) => return Err(HandleError::Claimed { id: id.into(), why }),
                    VoteOutcome::Undecided(why) => return Err(HandleError::Undecided { id: id.into(), why }),
                }
            }
        }
        let result = self
            .core
            .center
            .write(
                kind,
                id,
                WriteOp::Put {
                    prepared,
                    if_version,
                    above,
                },
            )
            .await;
        if let (Some(mesh), Some(c)) = (&self.core.mesh, granted) {
            mesh.release(kind, id, c);
        }
        match result? {
            o @ (Outcome::Created(_) | Outcome::Replaced(_)) => Ok(o),
            other => Err(HandleError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Deletes `kind/id` (a tombstone), if its version is `if_version` when
    /// given.
    pub async fn delete(&self, kind: &str, id: &str, if_version: Option<Hlc>) -> Result<(), HandleError> {
        self.own_kind(kind)?;
        self.core.center.write(kind, id, WriteOp::Delete { if_version }).await?;
        Ok(())
    }

    /// Renews the lease of `kind/id` (the kind says where the lease length
    /// lives) and applies the kind's heartbeat to its body. Returns the
    /// record as it now is.
    pub async fn heartbeat(&self, kind: &str, id: &str) -> Result<Record, HandleError> {
        self.own_kind(kind)?;
        match self.core.center.write(kind, id, WriteOp::Heartbeat).await? {
            Outcome::Renewed(r) => Ok(r),
            other => Err(HandleError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The live record `kind/id` (any origin), verified against its digest.
    pub fn get(&self, kind: &str, id: &str) -> Result<Option<Record>, HandleError> {
        Ok(self.core.center.get(kind, id)?)
    }

    /// Whether another center's record is past its lease plus grace here.
    pub fn is_stale(&self, r: &Record) -> bool {
        self.core.center.is_stale(r)
    }

    /// A page of live records of `kind` matching every filter, in id order.
    pub fn list(&self, kind: &str, q: &ListQuery<'_>) -> Result<Page, HandleError> {
        let limits = &self.core.limits;
        let limit = q.limit.unwrap_or(limits.list_limit_default);
        if limit == 0 || limit > limits.list_limit_max {
            return Err(HandleError::BadLimit {
                max: limits.list_limit_max,
            });
        }
        let after = q.cursor.map(decode_cursor).transpose()?;
        let (records, more) = self.core.center.list(kind, &q.filters, after.as_deref(), limit)?;
        let next_cursor = if more {
            records.last().map(|r| encode_cursor(&r.id))
        } else {
            None
        };
        Ok(Page { records, next_cursor })
    }

    /// Change events from now on, every kind, in change order and without
    /// gaps (a subscriber that falls behind the live channel reads the log).
    pub fn subscribe(&self) -> Subscription {
        let center = self.core.center.clone();
        let rx = center.subscribe();
        let sent = center.head();
        Subscription {
            closing: center.closing(),
            center,
            rx,
            sent,
            replay: false,
            buf: VecDeque::new(),
        }
    }

    /// The peers (configured and added at runtime) and their lifecycle
    /// states (none outside a mesh).
    pub fn peers(&self) -> Vec<PeerInfo> {
        match &self.core.mesh {
            None => Vec::new(),
            Some(m) => m
                .peer_states()
                .into_iter()
                .map(|(id, state)| PeerInfo { id, state })
                .collect(),
        }
    }

    /// Adds center `id` at `url` (`https://host:port`) as a peer at
    /// runtime, trusted without the mesh's CA: its TLS certificate by the
    /// SHA-256 of its SPKI (`spki_pin`, e.g. from a DNSSEC-validated TLSA
    /// 3 1 1) and its records by `record_key` (Ed25519, hex). At most
    /// [`crate::peer::mesh::RUNTIME_PEERS_MAX`]; on an error nothing
    /// changed.
    pub fn add_peer(&self, id: &str, url: &str, spki_pin: [u8; 32], record_key: &str) -> Result<(), AddPeerError> {
        let mesh = self.core.mesh.as_ref().ok_or(AddPeerError::NoMesh)?;
        Ok(mesh.add_peer(id, url, spki_pin, record_key)?)
    }

    /// What this center exports to peer `peer` (kinds and visibility
    /// groups); None if it is not a configured peer. Fronts answering a
    /// peer's RFI with records must answer only what this policy allows.
    pub fn export_policy(&self, peer: &str) -> Option<ExportPolicy> {
        let mesh = self.core.mesh.as_ref()?;
        mesh.peer(peer).map(|p| p.policy().clone())
    }

    /// Sends a NOTIFY or RFI of type `typ` with `fields` (a JSON object) to
    /// peer `to`, where the front that registered `typ` answers it.
    pub async fn send(&self, to: &str, verb: PeerVerb, typ: &str, fields: Value) -> Result<PeerAnswer, SendError> {
        let mesh = self.core.mesh.as_ref().ok_or(SendError::NoMesh)?;
        if !crate::messages::valid_type(typ) {
            return Err(SendError::Invalid(format!(
                "{} type {typ:?} is not a valid type name",
                verb.name()
            )));
        }
        let body = message_body(typ, fields).map_err(SendError::Invalid)?;
        let bytes = serde_json::to_vec(&body).expect("JSON serializes");
        if bytes.len() > PEER_MESSAGE_BYTES_MAX {
            return Err(SendError::Invalid(format!(
                "message is {} bytes, more than {PEER_MESSAGE_BYTES_MAX}",
                bytes.len()
            )));
        }
        mesh.send_message(to, verb, bytes).await
    }

    /// Pulls part of blob `key` of type `typ` from peer `to` over the peer
    /// listener: raw bytes from `offset`, at most
    /// [`crate::messages::PEER_BLOB_BYTES_MAX`], and the blob's total length.
    pub async fn fetch_blob(
        &self,
        to: &str,
        typ: &str,
        key: &str,
        offset: u64,
    ) -> Result<crate::messages::PeerBlob, SendError> {
        let mesh = self.core.mesh.as_ref().ok_or(SendError::NoMesh)?;
        mesh.fetch_blob(to, typ, key, offset).await
    }

    /// Registers a counter `name{labels}`; `name` must start with
    /// `regmesh_<front>_` (the front's name, `-` as `_`).
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Result<Metric, MetricError> {
        self.metric(name, help, MetricType::Counter, labels)
    }

    /// Registers a gauge `name{labels}`, named like a counter.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Result<Metric, MetricError> {
        self.metric(name, help, MetricType::Gauge, labels)
    }

    fn metric(&self, name: &str, help: &str, typ: MetricType, labels: &[(&str, &str)]) -> Result<Metric, MetricError> {
        let prefix = format!("regmesh_{}_", self.front.replace('-', "_"));
        let gauges = self.core.center.gauges();
        let taken: Vec<&str> = gauges.iter().map(|g| g.0).collect();
        let cell = self
            .core
            .center
            .metrics()
            .register(&prefix, name, help, typ, labels, &taken)?;
        Ok(Metric(cell))
    }

    /// Becomes true when the node begins to shut down.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.core.center.closing()
    }
}

/// Cursor: `"c1."` + hex of the last id returned.
fn encode_cursor(id: &str) -> String {
    let mut s = String::from("c1.");
    for b in id.as_bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn decode_cursor(c: &str) -> Result<String, HandleError> {
    let bad = || HandleError::BadCursor;
    let hex = c.strip_prefix("c1.").ok_or_else(bad)?;
    if hex.is_empty() || hex.len() % 2 != 0 || hex.len() > 2 * regmesh_core::id::RECORD_ID_BYTES_MAX {
        return Err(bad());
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    let id = String::from_utf8(bytes.ok_or_else(bad)?).map_err(|_| bad())?;
    regmesh_core::validate_record_id(&id).map_err(|_| bad())?;
    Ok(id)
}

/// Change events for a front, from where it subscribed.
pub struct Subscription {
    center: Arc<Center>,
    rx: broadcast::Receiver<Arc<Event>>,
    closing: tokio::sync::watch::Receiver<bool>,
    sent: u64,
    replay: bool,
    buf: VecDeque<Event>,
}

impl Subscription {
    /// The next change; Ok(None) once the node closes. An error means the
    /// log no longer holds the changes this subscriber missed (re-list,
    /// then subscribe again) or could not be read.
    pub async fn next(&mut self) -> Result<Option<Event>, SubscribeError> {
        loop {
            if let Some(ev) = self.buf.pop_front() {
                self.sent = ev.no;
                return Ok(Some(ev));
            }
            if self.replay {
                if let Some((first, _)) = self.center.change_bounds()? {
                    if self.sent + 1 < first {
                        return Err(SubscribeError::Expired {
                            after: self.sent,
                            first,
                        });
                    }
                }
                let evs = self.center.changes_after(self.sent, REPLAY_PAGE)?;
                if evs.is_empty() {
                    self.replay = false;
                } else {
                    self.buf.extend(evs);
                    continue;
                }
            }
            if *self.closing.borrow() {
                return Ok(None);
            }
            // `biased`: a fixed order, so a simulated run replays.
            let received = tokio::select! {
                biased;
                r = self.rx.recv() => r,
                _ = self.closing.changed() => return Ok(None),
            };
            match received {
                Ok(ev) if ev.no <= self.sent => continue,
                Ok(ev) if ev.no == self.sent + 1 => self.buf.push_back((*ev).clone()),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => self.replay = true,
                Err(broadcast::error::RecvError::Closed) => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use regmesh_core::{Kinds, ValidationError, Visibility};
    use serde_json::json;

    /// A bare kind, so that this test needs no front crate.
    struct Plain;

    impl Kind for Plain {
        fn name(&self) -> &'static str {
            "plain"
        }
        fn prepare(&self, _: &str, input: Value) -> Result<Prepared, ValidationError> {
            Ok(Prepared {
                body: input,
                lease_s: None,
                visibility: Visibility::Public,
            })
        }
        fn index_fields(&self) -> &'static [&'static str] {
            &[]
        }
        fn index_terms(&self, _: &Value) -> Vec<(&'static str, String)> {
            Vec::new()
        }
        fn on_lease_expired(&self, _: &mut Value) {}
        fn on_heartbeat(&self, _: &mut Value) {}
        fn is_expired_state(&self, _: &Value) -> bool {
            false
        }
    }

    fn handle(dir: &std::path::Path, watch_history: u64) -> NodeHandle {
        let mut cfg = Config::for_test("c1", dir);
        cfg.store.watch_history = watch_history;
        let mut kinds = Kinds::default();
        kinds.register(Arc::new(Plain)).unwrap();
        let store = Arc::new(regmesh_store::MemStore::new());
        let center = Center::open_with(&cfg, kinds, Some(store)).unwrap();
        NodeHandle::new("plain", vec!["plain"], center, None, ApiLimits::from_config(&cfg))
    }

    /// Writes `n` records, 1000 at a time in flight.
    async fn write(node: &NodeHandle, from: usize, n: usize) {
        for chunk in (from..from + n).collect::<Vec<_>>().chunks(1000) {
            let puts = chunk.iter().map(|i| {
                let id = format!("p{i:05}");
                async move {
                    let p = Plain.prepare(&id, json!({"i": i})).unwrap();
                    node.put("plain", &id, p, None).await.unwrap();
                }
            });
            futures_util::future::join_all(puts).await;
        }
    }

    /// Budget: 5,000 in-memory writes, well under a second.
    #[tokio::test]
    async fn a_subscriber_behind_the_live_channel_reads_the_log_without_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let node = handle(dir.path(), 100_000);
        let mut sub = node.subscribe();
        // More than the live channel holds (4096), none read meanwhile.
        write(&node, 0, 5000).await;
        let mut last = 0;
        for _ in 0..5000 {
            let ev = sub.next().await.unwrap().unwrap();
            assert_eq!(ev.no, last + 1, "no gap, no repeat");
            last = ev.no;
        }
        assert_eq!(last, 5000);
        // The handle refuses kinds its front did not declare.
        assert!(matches!(
            node.delete("agent", "p00001", None).await,
            Err(HandleError::NotOwnKind { .. })
        ));
    }

    #[tokio::test]
    async fn a_subscriber_behind_the_log_is_told_to_relist() {
        let dir = tempfile::tempdir().unwrap();
        let node = handle(dir.path(), 100);
        let mut sub = node.subscribe();
        write(&node, 0, 4500).await;
        match sub.next().await {
            Err(SubscribeError::Expired { after: 0, first }) => assert!(first > 1),
            other => panic!("{other:?}"),
        }
    }
}
