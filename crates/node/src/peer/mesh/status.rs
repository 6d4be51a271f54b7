//! What the mesh runtime reports of itself: each peer's lifecycle state
//! and the `/v1/peers` document (peers, flood and anti-entropy counters).
//! Read only: must never change mesh state.

use super::beats::NodeReplica;
use super::Mesh;
use regmesh_proto::lifecycle::PeerState;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

impl Mesh {
    /// Each configured peer's id and lifecycle state.
    pub fn peer_states(&self) -> Vec<(String, PeerState)> {
        let link = self.link.lock().expect("link lock");
        link.peers().iter().map(|p| (p.id().to_string(), p.state())).collect()
    }

    /// What `/v1/peers` shows.
    pub fn peers_json(&self) -> Value {
        let link = self.link.lock().expect("link lock");
        let items: Vec<Value> = self
            .peers
            .iter()
            .map(|p| {
                let view = link.peer(p.ix);
                let life = view.lifecycle();
                json!({
                    "id": p.cfg.id,
                    "url": p.cfg.url,
                    "state": life.state().as_str(),
                    "announced_interval_ms": life.their_interval_ms(),
                    "last_heard": life.last_heard_ms().map(regmesh_core::time::rfc3339_ms),
                    "announced_state": view.announced(),
                    "floods_sent": p.sent.load(Ordering::Relaxed),
                    "floods_dropped": p.dropped.load(Ordering::Relaxed),
                    "digest_match": view.digest_match(),
                    "records_behind": link.records_behind(p.ix, &NodeReplica(self)),
                    "export": {"kinds": p.cfg.kinds, "groups": p.cfg.groups},
                })
            })
            .collect();
        drop(link);
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
