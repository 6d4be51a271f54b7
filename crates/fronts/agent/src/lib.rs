//! The agent registry front: the `agent` kind ([`AgentKind`], document 000's
//! information model) and the client API under `/v1/agents` ([`routes`]).
//! It talks to the node only through its [`NodeHandle`]; the node knows
//! nothing of agents.
//!
//! Configured by `[fronts.agent]` (no keys besides the node's `enabled`);
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
use regmesh_node::front::Front;
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
}

impl AgentFront {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Front for AgentFront {
    fn name(&self) -> &'static str {
        NAME
    }

    fn on_by_default(&self) -> bool {
        true
    }

    fn kinds(&self) -> Vec<Arc<dyn Kind>> {
        vec![Arc::new(AgentKind), Arc::new(alias_kind::AliasKind)]
    }

    fn peer_messages(&self, node: &NodeHandle) -> Vec<PeerMessage> {
        vec![mesh_answer::peer_message(node.clone())]
    }

    fn routes(&self, node: &NodeHandle) -> axum::Router {
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
