//! Floods in the mesh runtime: the executor of proto's floods part
//! (`regmesh_proto::mesh::floods`). It reads this center's own committed
//! changes from the change log, verifies and merges what peers flood, makes
//! the `/commit` calls the part asks for and feeds every result back.
//! Batching, counters, targets, policy, dedup, relays and the per-peer
//! queue bounds are the part's. Must never decide any of those itself,
//! block on a slow peer, or hold the part's lock across an await.

use super::{Mesh, Peer};
use crate::center::{now_ms, WriteError};
use hyper::{Method, StatusCode};
use regmesh_core::{Record, Visibility};
use regmesh_proto::constants::FLOOD_BATCH_MAX;
use regmesh_proto::mesh::floods::{Arrival, Command, Floods, Receipt, View};
use regmesh_proto::node_state::NodeState;
use regmesh_proto::wire::flood::{Flood, FloodAnswer, FloodHead};
use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

/// What the floods part sees of this center's mesh. Part visibilities of
/// the records at hand are read before the part's lock is taken (they parse
/// bodies), so receipts on other connections do not wait for them.
pub(super) struct NodeView<'a> {
    mesh: &'a Mesh,
    /// By seq: the records at hand are all one origin's.
    parts: HashMap<u64, Vec<Visibility>>,
}

impl<'a> NodeView<'a> {
    pub(super) fn new(mesh: &'a Mesh) -> Self {
        NodeView {
            mesh,
            parts: HashMap::new(),
        }
    }

    /// A view that knows the part visibilities of `records` (one origin's)
    /// already.
    fn with_parts(mesh: &'a Mesh, records: &[Record]) -> Self {
        NodeView {
            mesh,
            parts: records.iter().map(|r| (r.seq, mesh.parts_of(r))).collect(),
        }
    }
}

impl View for NodeView<'_> {
    fn node_state(&self) -> NodeState {
        self.mesh.node_state()
    }

    fn receives_propagation(&self, peer: &str) -> bool {
        self.mesh
            .peer(peer)
            .is_some_and(|p| p.life.lock().expect("life lock").receives_propagation())
    }

    fn parts(&self, r: &Record) -> Vec<Visibility> {
        match self.parts.get(&r.seq) {
            Some(p) => p.clone(),
            None => self.mesh.parts_of(r),
        }
    }

    fn backs(&self, origin: &str, counter: u64) -> bool {
        self.mesh.ceilings.lock().expect("ceilings lock").backs(origin, counter)
    }
}

impl Mesh {
    pub(super) fn floods(&self) -> MutexGuard<'_, Floods> {
        self.floods.lock().expect("floods lock")
    }

    /// Executes the part's commands that need no answer to a caller:
    /// sends, witnesses, covered ranges. `Apply` and the message answers
    /// belong to [`Mesh::receive`] and `notify.rs`, which run them in place.
    pub(super) fn run_floods(self: &Arc<Self>, commands: Vec<Command>) {
        for c in commands {
            match c {
                Command::SendFlood { peer, flood } => match self.peer(&peer) {
                    Some(p) => self.send_flood(p, flood),
                    None => tracing::warn!(peer, "floods part named an unknown peer"),
                },
                Command::Witness { origin, seq } => {
                    self.ceilings.lock().expect("ceilings lock").witness(&origin, seq);
                }
                Command::Covered { origin, from, through } => self.advance(&origin, from, through),
                other => tracing::warn!(?other, "floods command out of place; not executed"),
            }
        }
    }

    /// One `/commit` call; its end is reported to the part, which may hand
    /// the slot to the next flood waiting for this peer.
    fn send_flood(self: &Arc<Self>, peer: Arc<Peer>, flood: Flood) {
        let me = self.clone();
        crate::spawn::spawn(async move {
            let mut headers = flood.head.headers();
            headers.extend(me.record_format_header(&peer));
            let ok = match peer
                .client
                .call(&me.center, Method::POST, "/commit", &headers, Some(flood.body()))
                .await
            {
                Ok(a) if a.status == StatusCode::OK => true,
                Ok(a) => {
                    tracing::warn!(peer = %peer.cfg.id, status = %a.status, body = %String::from_utf8_lossy(&a.body), "flood refused");
                    false
                }
                Err(e) => {
                    tracing::debug!(peer = %peer.cfg.id, "flood failed: {e}");
                    false
                }
            };
            let mut out = Vec::new();
            me.floods().on_sent(now_ms(), &peer.cfg.id, ok, &mut out);
            me.run_floods(out);
        });
    }

    /// Reads this center's own committed changes from the change log and
    /// hands them to the part, a page of at most [`FLOOD_BATCH_MAX`] changes
    /// at a time.
    pub(super) async fn flood_loop(self: Arc<Self>) {
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
                let mut out = Vec::new();
                let view = NodeView::with_parts(&self, &own);
                self.floods().on_committed(now_ms(), &own, &view, &mut out);
                self.run_floods(out);
            }
        }
    }

    /// A flood with `head` arrived from peer `sender`, its body not yet
    /// decoded: the part judges it first. `Some` is the whole answer (a
    /// copy seen before); `None`: decode it and call [`Mesh::receive`].
    pub fn arrive(&self, sender: &str, head: &FloodHead) -> Result<Option<FloodAnswer>, WriteError> {
        match self.floods().on_flood(now_ms(), sender, head, &NodeView::new(self)) {
            Arrival::Inactive => Err(WriteError::Inactive),
            Arrival::Duplicate => Ok(Some(answer(true, 0))),
            Arrival::Verify => Ok(None),
        }
    }

    /// A flood [`Mesh::arrive`] let through: this verifies its signatures
    /// and merges what the part says to.
    pub async fn receive(self: &Arc<Self>, sender: &str, flood: Flood) -> Result<FloodAnswer, WriteError> {
        let Flood { head, records } = flood;
        let verified = self.center.verify_remote(records);
        let passed = Flood {
            head,
            records: verified.records().to_vec(),
        };
        let refused = verified.refused().len();
        let mut out = Vec::new();
        let receipt = self
            .floods()
            .on_verified(now_ms(), sender, passed, refused, &NodeView::new(self), &mut out);
        let mut verified = Some(verified);
        let mut applied = 0;
        for c in out {
            match c {
                Command::Apply { records, then } => {
                    let v = verified.take().expect("one merge per flood");
                    debug_assert_eq!(records.len(), v.records().len());
                    // A refused record makes this `WriteError::Refused`
                    // after merging what passed.
                    applied = self.center.apply_verified(v).await?;
                    if let Some(done) = then {
                        let mut more = Vec::new();
                        let view = NodeView::with_parts(self, &done.flood.records);
                        self.floods().on_applied(now_ms(), done, &view, &mut more);
                        self.run_floods(more);
                    }
                }
                c => self.run_floods(vec![c]),
            }
        }
        match receipt {
            Receipt::Malformed => Err(WriteError::Invalid(format!(
                "a record of this flood is not its initiator's ({sender} sent it)"
            ))),
            Receipt::Duplicate => Ok(answer(true, 0)),
            Receipt::Refused | Receipt::Unbacked | Receipt::Accepted { .. } => Ok(answer(false, applied)),
        }
    }
}

fn answer(duplicate: bool, applied: usize) -> FloodAnswer {
    FloodAnswer {
        accepted: true,
        duplicate,
        applied,
    }
}
