//! The RPKI relying-party front (document 001, issue 13): a center is the
//! console (RCN) or a sync node (RSN) of one relying party. The console
//! fetches repositories by RRDP ([`rrdp`], [`fetch`]), validates from its
//! TALs ([`validate`]), serves VRPs on `/v1/rpki/vrps` ([`routes`]) and to
//! routers over RTR ([`rtr`]), and records each repository's state
//! ([`kinds`]); a sync node publishes its metadata and load ([`sync`]).
//! The six task-assignment algorithms are in [`schedule`]. rsync is out of
//! scope: a CA without an RRDP notification URI is counted, not fetched.
//!
//! Configured by `[fronts.rpki]` ([`config`]); off unless the section is
//! present. Must never: reach into the center, the mesh or the store, or
//! write a kind other than its own three.

pub mod aspas;
pub mod config;
pub mod console;
pub mod fetch;
pub mod kinds;
pub mod metrics;
pub mod persist;
pub mod remote;
pub mod routes;
pub mod rrdp;
pub mod rsn;
pub mod rtr;
pub mod schedule;
pub mod sync;
pub mod validate;
pub mod vrps;
pub mod wire;

use config::{Role, RpkiConfig};
use regmesh_core::Kind;
use regmesh_node::front::{Front, FrontError, Section, Task};
use regmesh_node::NodeHandle;
use std::sync::Arc;

/// The front's name and its `[fronts.rpki]` section.
pub const NAME: &str = "rpki";

/// The RPKI front.
#[derive(Default)]
pub struct RpkiFront {
    cfg: Option<RpkiConfig>,
    shared: console::Shared,
    /// A sync node's task state (its handlers and its load loop share it).
    rsn: Option<rsn::Rsn>,
}

impl RpkiFront {
    pub fn new() -> Self {
        RpkiFront::default()
    }
}

impl Front for RpkiFront {
    fn name(&self) -> &'static str {
        NAME
    }

    fn configure(&mut self, section: &Section) -> Result<(), FrontError> {
        let cfg = RpkiConfig::from_section(section)?;
        if cfg.role == Role::Sync {
            let client = fetch::Client::new(&cfg.ca_certs, cfg.allow_local_hosts)
                .map_err(|e| FrontError::config(NAME, e.to_string()))?;
            let console = cfg.console.as_deref().unwrap_or_default();
            self.rsn = Some(rsn::Rsn::new(client, console));
        }
        self.cfg = Some(cfg);
        Ok(())
    }

    fn peer_messages(&self, _node: &NodeHandle) -> Vec<regmesh_node::messages::PeerMessage> {
        self.rsn.as_ref().map(rsn::Rsn::messages).unwrap_or_default()
    }

    fn kinds(&self) -> Vec<Arc<dyn Kind>> {
        kinds::all()
    }

    fn routes(&self, node: &NodeHandle) -> axum::Router {
        match &self.cfg {
            Some(c) if c.role == Role::Console => routes::router(node.clone(), self.shared.clone()),
            _ => axum::Router::new(),
        }
    }

    fn tasks(&self, node: &NodeHandle) -> Result<Vec<Task>, FrontError> {
        let cfg = self
            .cfg
            .clone()
            .ok_or_else(|| FrontError::start(NAME, "not configured"))?;
        if cfg.role == Role::Sync {
            let rsn = self
                .rsn
                .clone()
                .ok_or_else(|| FrontError::start(NAME, "not configured"))?;
            return Ok(vec![Box::pin(sync::run(node.clone(), cfg, rsn))]);
        }
        let client = fetch::Client::new(&cfg.ca_certs, cfg.allow_local_hosts)
            .map_err(|e| FrontError::start(NAME, e.to_string()))?;
        let tals = console::read_tals(&cfg.tals).map_err(|e| FrontError::start(NAME, e.to_string()))?;
        let rtr = rtr::RtrSource::new(cfg.refresh_s.min(u32::MAX as u64) as u32);
        let mut tasks: Vec<Task> = Vec::new();
        if let Some(addr) = cfg.rtr_listen {
            let l = std::net::TcpListener::bind(addr)
                .map_err(|e| FrontError::start(NAME, format!("binding RTR {addr}: {e}")))?;
            l.set_nonblocking(true)
                .map_err(|e| FrontError::start(NAME, e.to_string()))?;
            let src = rtr.clone();
            tasks.push(Box::pin(async move {
                match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => src.serve(l).await,
                    Err(e) => tracing::error!(error = %e, "RTR listener"),
                }
            }));
        }
        let seed = u64::from_le_bytes(
            blake3::hash(node.center_id().as_bytes()).as_bytes()[..8]
                .try_into()
                .expect("8 bytes"),
        );
        let scheduler = schedule::Scheduler::new(cfg.algorithm, seed, &cfg.designated);
        let mut console = console::Console::with_scheduler(
            tals,
            client,
            rrdp::RrdpLimits::default(),
            rtr,
            node.center_id(),
            scheduler,
        );
        console.task_stall_ms = cfg.task_stall_ms;
        if let Some(dir) = &cfg.state_dir {
            console
                .restore(dir)
                .map_err(|e| FrontError::start(NAME, e.to_string()))?;
        }
        console.shared = self.shared.clone();
        console.metrics =
            Some(metrics::ConsoleMetrics::register(node).map_err(|e| FrontError::start(NAME, e.to_string()))?);
        let node = node.clone();
        tasks.push(Box::pin(async move {
            let mut closing = node.closing();
            loop {
                console.cycle(Some(&node)).await;
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(cfg.refresh_s)) => {}
                    _ = closing.changed() => return,
                }
            }
        }));
        Ok(tasks)
    }
}
