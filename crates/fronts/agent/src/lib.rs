//! The agent registry front: the `agent` kind ([`AgentKind`], document 000's
//! information model) and the client API under `/v1/agents` ([`routes`]).
//! It talks to the node only through its [`NodeHandle`]; the node knows
//! nothing of agents.
//!
//! Configured by `[fronts.agent]`: `mesh_cache_ttl_s` and
//! `mesh_cache_entries_max` (the `?scope=mesh` fetch cache, `fetch_cache.rs`);
//! on by default, so a config without the section runs it.
//!
//! Must never: reach into the center, the mesh or the store, or write a kind
//! other than `agent` and `agent.alias`.

pub mod alias;
pub mod alias_kind;
pub mod duplicates;
pub mod fetch_cache;
pub mod kind;
pub mod limits;
pub mod mesh_answer;
pub mod mesh_query;
pub mod mesh_routes;
pub mod openapi;
pub mod routes;

pub use kind::{AgentKind, AGENT};

use regmesh_core::{Kind, Kinds};
use regmesh_node::front::{Front, FrontError, Section};
use regmesh_node::messages::PeerMessage;
use regmesh_node::NodeHandle;
use std::sync::Arc;

/// The front's name and its `[fronts.agent]` section.
pub const NAME: &str = "agent";

/// The agent registry front.
#[derive(Default)]
pub struct AgentFront {
    /// Agents fetched from other centers by `?scope=mesh`.
    cache: Arc<fetch_cache::FetchCache>,
    /// The routes' handle, weakly, for the `agent.query` handler.
    node: Arc<std::sync::OnceLock<regmesh_node::handle::WeakNodeHandle>>,
}

impl AgentFront {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Longest `mesh_cache_ttl_s` accepted, seconds.
pub const MESH_CACHE_TTL_S_MAX: u64 = 3600;
/// Largest `mesh_cache_entries_max` accepted.
pub const MESH_CACHE_ENTRIES_MAX: u64 = 1_000_000;

/// Reads `key` of `section` as an integer in `0..=max`, if present.
fn bounded(section: &Section, key: &str, max: u64) -> Result<Option<u64>, FrontError> {
    let Some(v) = section.table.get(key) else {
        return Ok(None);
    };
    match v.as_integer() {
        Some(n) if (0..=max as i64).contains(&n) => Ok(Some(n as u64)),
        _ => Err(FrontError::config(
            NAME,
            format!("{key} must be an integer from 0 to {max}"),
        )),
    }
}

impl Front for AgentFront {
    fn name(&self) -> &'static str {
        NAME
    }

    fn configure(&mut self, section: &Section) -> Result<(), FrontError> {
        if let Some(k) = section
            .table
            .keys()
            .find(|k| !["mesh_cache_ttl_s", "mesh_cache_entries_max"].contains(&k.as_str()))
        {
            return Err(FrontError::config(NAME, format!("unknown key {k:?}")));
        }
        let ttl_s = bounded(section, "mesh_cache_ttl_s", MESH_CACHE_TTL_S_MAX)?;
        let entries = bounded(section, "mesh_cache_entries_max", MESH_CACHE_ENTRIES_MAX)?;
        self.cache = Arc::new(fetch_cache::FetchCache::new(
            ttl_s.map_or(fetch_cache::TTL, std::time::Duration::from_secs),
            entries.map_or(fetch_cache::ENTRIES_MAX, |n| n as usize),
            fetch_cache::BYTES_MAX,
        ));
        Ok(())
    }

    fn on_by_default(&self) -> bool {
        true
    }

    fn kinds(&self) -> Vec<Arc<dyn Kind>> {
        vec![Arc::new(AgentKind), Arc::new(alias_kind::AliasKind)]
    }

    fn peer_messages(&self, _node: &NodeHandle) -> Vec<PeerMessage> {
        vec![mesh_answer::peer_message(self.node.clone())]
    }

    fn routes(&self, node: &NodeHandle) -> axum::Router {
        // Called once per node; a second call would keep the first handle.
        let _ = self.node.set(node.downgrade());
        routes::router(node.clone(), self.cache.clone())
    }

    fn openapi_paths(&self) -> serde_json::Map<String, serde_json::Value> {
        openapi::paths()
    }
}

/// A kind set holding the front's kinds (agents and their aliases), for tools that open a center
/// without starting a node (`regmesh import`, tests, benchmarks).
pub fn kinds() -> Kinds {
    let mut k = Kinds::default();
    k.register(Arc::new(AgentKind)).expect("one kind");
    k.register(Arc::new(alias_kind::AliasKind)).expect("a second kind");
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> Section {
        Section {
            table: text.parse().unwrap(),
            base_dir: None,
        }
    }

    #[test]
    fn cache_settings_are_read_and_bounded() {
        let mut f = AgentFront::new();
        f.configure(&section("mesh_cache_ttl_s = 0\nmesh_cache_entries_max = 10"))
            .unwrap();
        f.cache.put("a", serde_json::json!({}), std::time::Instant::now());
        assert!(
            f.cache.get("a", std::time::Instant::now()).is_none(),
            "ttl 0 caches nothing"
        );
        for bad in [
            "mesh_cache_ttl_s = -1",
            "mesh_cache_ttl_s = 3601",
            "mesh_cache_ttl_s = \"30\"",
            "mesh_cache_entries_max = 1000001",
            "other = 1",
        ] {
            let e = AgentFront::new().configure(&section(bad)).unwrap_err();
            assert!(e.to_string().contains("agent"), "{bad}: {e}");
        }
    }
}
