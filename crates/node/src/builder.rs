//! [`NodeBuilder`]: starts a node with a set of fronts. Gathers the enabled
//! fronts' kinds (registered when the center opens), peer message types
//! (handed to the mesh before the peer listener serves), routes (merged into
//! the client API behind its guard) and tasks (spawned once the API serves).
//!
//! Must never: start a node whose fronts clash (two kinds, message types or
//! routes of one name), or one whose config names a front it does not have.

use crate::center::Center;
use crate::clock::Clock;
use crate::front::{Front, FrontError, Task};
use crate::handle::NodeHandle;
use crate::http::ApiLimits;
use crate::messages::PeerMessages;
use crate::peer::mesh::Mesh;
use crate::transport::Transport;
use crate::{Config, Running, StartError};
use axum::Router;
use regmesh_core::Kinds;
use regmesh_store::Store;
use std::sync::Arc;

/// Starts a node with fronts:
/// `NodeBuilder::new(cfg).front(AgentFront::new()).start().await`.
pub struct NodeBuilder {
    cfg: Config,
    fronts: Vec<Box<dyn Front>>,
    store: Option<Arc<dyn Store>>,
    env: Env,
}

/// The clock and network a node runs on (the system's unless set).
pub(crate) struct Env {
    pub(crate) clock: Option<Arc<dyn Clock>>,
    pub(crate) transport: Arc<dyn Transport>,
    /// Every task of the node runs only while this is open.
    pub(crate) gate: Option<Arc<crate::spawn::Gate>>,
}

impl NodeBuilder {
    pub fn new(cfg: Config) -> Self {
        NodeBuilder {
            cfg,
            fronts: Vec::new(),
            store: None,
            env: Env {
                clock: None,
                transport: crate::transport::tcp(),
                gate: None,
            },
        }
    }

    /// Adds a front this node may run. It runs if the config has a
    /// `[fronts.NAME]` section for it (without `enabled = false`), or has
    /// none and the front is on by default.
    pub fn front(mut self, f: impl Front) -> Self {
        self.fronts.push(Box::new(f));
        self
    }

    /// Uses `store` instead of the embedded database in `data_dir`.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Reads wall time from `clock` instead of the system clock (the
    /// whole-node simulation). The node must then run on a current-thread
    /// runtime: the clock is installed on that thread
    /// ([`crate::clock::install`]), and the writer runs as a task on it
    /// rather than on a thread of its own, so that a paused runtime cannot
    /// move time while a batch commits.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.env.clock = Some(clock);
        self
    }

    /// Listens and connects (client API, peer listener, peer calls) over
    /// `transport` instead of the system's TCP.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.env.transport = transport;
        self
    }

    /// Opens the center and serves. Nothing runs if this fails.
    pub async fn start(self) -> Result<Running, StartError> {
        match self.env.gate.clone() {
            Some(gate) => crate::spawn::under(gate, crate::start(&self.cfg, self.fronts, self.store, self.env)).await,
            None => crate::start(&self.cfg, self.fronts, self.store, self.env).await,
        }
    }

    /// Runs every task of the node under `gate` (the whole-node
    /// simulation's pause; see [`crate::spawn`]).
    pub fn gate(mut self, gate: Arc<crate::spawn::Gate>) -> Self {
        self.env.gate = Some(gate);
        self
    }
}

/// Every enabled front's kinds; two of one name are refused.
pub(crate) fn kinds_of(fronts: &[Box<dyn Front>]) -> Result<Kinds, StartError> {
    let mut kinds = Kinds::default();
    for f in fronts {
        for k in f.kinds() {
            kinds
                .register(k)
                .map_err(|e| FrontError::start(f.name(), e.to_string()))?;
        }
    }
    Ok(kinds)
}

fn handle(f: &dyn Front, center: &Arc<Center>, mesh: Option<&Arc<Mesh>>, cfg: &Config) -> NodeHandle {
    let own = f.kinds().iter().map(|k| k.name()).collect();
    NodeHandle::new(
        f.name(),
        own,
        center.clone(),
        mesh.cloned(),
        ApiLimits::from_config(cfg),
    )
}

/// The fronts' NOTIFY/RFI types; a type taken twice is refused.
pub(crate) fn peer_messages(
    fronts: &[Box<dyn Front>],
    center: &Arc<Center>,
    mesh: Option<&Arc<Mesh>>,
    cfg: &Config,
) -> Result<PeerMessages, StartError> {
    let mut reg = PeerMessages::default();
    // The node's own RFI types (diagnostics), before any front's.
    for m in mesh.map(crate::diagnose::peer_messages).unwrap_or_default() {
        reg.register(crate::diagnose::NODE_FRONT, m)
            .map_err(|e| FrontError::start(crate::diagnose::NODE_FRONT, e.to_string()))?;
    }
    for f in fronts {
        for m in f.peer_messages(&handle(f.as_ref(), center, mesh, cfg)) {
            reg.register(f.name(), m)
                .map_err(|e| FrontError::start(f.name(), e.to_string()))?;
        }
    }
    Ok(reg)
}

/// Every method, registered one by one (`any` would merge silently).
fn every_method() -> axum::routing::MethodFilter {
    use axum::routing::MethodFilter as M;
    [
        M::HEAD,
        M::POST,
        M::PUT,
        M::DELETE,
        M::PATCH,
        M::OPTIONS,
        M::TRACE,
        M::CONNECT,
    ]
    .into_iter()
    .fold(M::GET, M::or)
}

/// The fronts' routes, merged, and their tasks. Overlapping routes are
/// refused.
pub(crate) fn routes_and_tasks(
    fronts: &[Box<dyn Front>],
    center: &Arc<Center>,
    mesh: Option<&Arc<Mesh>>,
    cfg: &Config,
) -> Result<(Router, Vec<Task>), StartError> {
    let mut routes = Router::new();
    // The node's paths, so that a front cannot take one of them either.
    let mut check = crate::api::NODE_ROUTES.iter().fold(Router::new(), |r, p| {
        r.route(p, axum::routing::on(every_method(), || async {}))
    });
    let mut tasks = Vec::new();
    for f in fronts {
        let h = handle(f.as_ref(), center, mesh, cfg);
        let r = f.routes(&h);
        // axum refuses overlapping routes by panicking; turn that into an
        // error naming the front.
        let merged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check.clone().merge(r.clone())));
        check = merged.map_err(|p| {
            let why = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "routes overlap".into());
            FrontError::start(
                f.name(),
                format!("its routes clash with the node's or another front's: {why}"),
            )
        })?;
        routes = routes.merge(r);
        tasks.extend(f.tasks(&h)?);
    }
    // The OpenAPI document: the node's routes and every front's.
    let doc = Arc::new(crate::openapi::document(fronts.iter().map(|f| f.openapi_paths())));
    routes = routes.route(
        "/v1/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { axum::Json((*doc).clone()) }
        }),
    );
    Ok((routes, tasks))
}
