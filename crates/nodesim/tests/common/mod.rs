//! What every scenario file shares: an agent body, a client PUT recorded as
//! a [`Write`], a three-center mesh brought up OPERATIONAL both ways, and a
//! bounded wait for convergence.

#![allow(dead_code)]

use hyper::Method;
use regmesh_nodesim::check::{self, Write};
use regmesh_nodesim::{World, WorldConfig};
use serde_json::{json, Value};

pub const BEAT_MS: u64 = 1000;

pub fn agent(addr: &str) -> Value {
    json!({
        "addresses": [addr],
        "endpoints": [{"url": "https://agents.example.com/a2a", "protocol": "a2a"}],
        "status": "online",
        "capabilities": [{"name": "translate", "tags": ["en-fr"]}]
    })
}

pub fn put(w: &mut World, at: &str, id: &str, addr: &str) -> Write {
    let r = w.call(at, Method::PUT, &format!("/v1/agents/{id}"), Some(agent(addr)));
    written(at, id, Some(addr), r)
}

pub fn delete(w: &mut World, at: &str, id: &str) -> Write {
    let r = w.call(at, Method::DELETE, &format!("/v1/agents/{id}"), None);
    written(at, id, None, r)
}

pub fn written(at: &str, id: &str, addr: Option<&str>, r: Result<regmesh_node::client::Reply, String>) -> Write {
    Write {
        at: at.into(),
        id: id.into(),
        addr: addr.map(str::to_string),
        status: r.ok().map(|r| r.status.as_u16()),
    }
}

/// Three centers, every link OPERATIONAL both ways.
pub fn operational_mesh() -> World {
    operational_mesh_with(WorldConfig {
        beat_interval_ms: BEAT_MS,
        ..WorldConfig::default()
    })
}

/// A mesh of `wc`, every link OPERATIONAL both ways.
pub fn operational_mesh_with(wc: WorldConfig) -> World {
    let interval_ms = wc.beat_interval_ms;
    let mut w = World::new(wc);
    let ids = w.ids.clone();
    assert!(
        w.run_until(10 * interval_ms, |w| ids.iter().all(|a| ids
            .iter()
            .all(|b| a == b || w.peer_state(a, b).as_deref() == Some("OPERATIONAL")))),
        "the mesh comes up"
    );
    w
}

/// Runs until every center stores the same versions (at most `max_ms`).
pub fn converge(w: &mut World, max_ms: u64) {
    let ok = w.run_until(max_ms, |w| check::converged(w).is_ok());
    assert!(ok, "no convergence within {max_ms} ms: {:?}", check::converged(w));
}
