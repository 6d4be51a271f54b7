//! What the mesh runtime reports of itself: each peer's lifecycle state
//! and the `/v1/peers` document (peers, flood and anti-entropy counters).
//! Read only: must never change mesh state.

use super::beats::NodeReplica;
use super::Mesh;
use regmesh_proto::lifecycle::PeerState;
use serde_json::{json, Value};

impl Mesh {
    /// Each configured peer's id and lifecycle state.
    pub fn peer_states(&self) -> Vec<(String, PeerState)> {
        let link = self.link.lock().expect("link lock");
        link.peers().iter().map(|p| (p.id().to_string(), p.state())).collect()
    }

    /// What `/v1/peers` shows.
    pub fn peers_json(&self) -> Value {
        let floods = self.floods().stats();
        let pulls = self.pulls.lock().expect("pulls lock").stats();
        let link = self.link.lock().expect("link lock");
        let items: Vec<Value> = self
            .peers()
            .iter()
            .map(|p| {
                let view = link.peer(p.ix);
                let life = view.lifecycle();
                let flow = self.floods().peer_stats(&p.cfg.id);
                let protocol = p.protocol.lock().expect("protocol lock").clone();
                json!({
                    "id": p.cfg.id,
                    "url": p.cfg.url,
                    "state": life.state().as_str(),
                    "announced_interval_ms": life.their_interval_ms(),
                    "last_heard": life.last_heard_ms().map(regmesh_core::time::rfc3339_ms),
                    "announced_state": view.announced(),
                    "floods_sent": flow.sent,
                    "floods_dropped": flow.dropped + flow.failed,
                    "digest_match": view.digest_match(),
                    "records_behind": link.records_behind(p.ix, &NodeReplica(self)),
                    "export": {"kinds": p.cfg.kinds, "groups": p.cfg.groups},
                    // The version agreed in HELLO, and why the last HELLO was refused.
                    "protocol": protocol.agreed_version(),
                    "hello_refused": protocol.refusal().map(|r| json!({"code": r.code(), "reason": r.to_string()})),
                })
            })
            .collect();
        drop(link);
        json!({
            "id": self.me,
            "state": self.node_state().as_str(),
            "protocol": {"min": self.versions.min, "max": self.versions.max},
            "peers": items,
            "floods": {
                "initiated": floods.initiated,
                "received": floods.received,
                "duplicates": floods.duplicates,
                "relayed": floods.relayed,
                "refused": floods.refused,
                "unbacked": floods.unbacked,
            },
            "anti_entropy": {
                "pulls": pulls.pulls,
                "pulled_records": pulls.pulled_records,
                "resyncs": pulls.resyncs,
                "purged_through": self.center.purge_marks(),
                "full_sync_received": self.full_sync_done(),
                "watermarks": self.marks(),
            }
        })
    }
}
