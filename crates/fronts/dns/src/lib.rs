//! The DNS provider agent front (document 003, issue 14): a center is one
//! DNS provider's agent. It finds the zone's other agents from DNS (HSYNC →
//! URI → SVCB → TLSA, validated: [`discovery`]), introduces itself to them
//! over the mesh ([`messages`]), keeps its provider's contribution (NS,
//! glue, a signer's DNSKEYs) as a `dns.ns` record ([`kind`]), applies the
//! union of every provider's contribution to its primary with TSIG-signed
//! UPDATE ([`update`], [`tsig`]; NS, glue, CSYNC, and at signers DNSKEY,
//! CDS, CDNSKEY: [`sync`], [`dnssec`]) while every peer of the zone is
//! OPERATIONAL, and, as the elected leader ([`election`]), to the parent.
//! `/v1/dns/zones/...` shows it ([`routes`]).
//!
//! Configured by `[fronts.dns]` ([`config`]); off unless the section is
//! present. Must never: reach into the center, the mesh or the store, or
//! write a kind other than `dns.ns`.

pub mod agent;
pub mod cert;
pub mod config;
pub mod discovery;
pub mod dnssec;
pub mod election;
pub mod kind;
pub mod messages;
pub mod net;
pub mod routes;
pub mod state;
pub mod sync;
pub mod tsig;
pub mod update;
pub mod wire;

use config::DnsConfig;
use messages::Ctx;
use regmesh_core::Kind;
use regmesh_node::front::{Front, FrontError, Section, Task};
use regmesh_node::messages::PeerMessage;
use regmesh_node::NodeHandle;
use std::sync::Arc;

/// The front's name and its `[fronts.dns]` section.
pub const NAME: &str = "dns";

/// The DNS agent front.
#[derive(Default)]
pub struct DnsFront {
    cfg: Option<Arc<DnsConfig>>,
    shared: state::Shared,
}

impl DnsFront {
    pub fn new() -> Self {
        DnsFront::default()
    }

    fn ctx(&self, node: &NodeHandle) -> Result<Ctx, FrontError> {
        Ok(Ctx {
            node: node.clone(),
            cfg: self
                .cfg
                .clone()
                .ok_or_else(|| FrontError::start(NAME, "not configured"))?,
            shared: self.shared.clone(),
        })
    }
}

impl Front for DnsFront {
    fn name(&self) -> &'static str {
        NAME
    }

    fn configure(&mut self, section: &Section) -> Result<(), FrontError> {
        self.cfg = Some(Arc::new(DnsConfig::from_section(NAME, section)?));
        Ok(())
    }

    fn kinds(&self) -> Vec<Arc<dyn Kind>> {
        vec![Arc::new(kind::NsKind)]
    }

    fn peer_messages(&self, node: &NodeHandle) -> Vec<PeerMessage> {
        self.ctx(node).map(messages::all).unwrap_or_default()
    }

    fn routes(&self, node: &NodeHandle) -> axum::Router {
        match self.ctx(node) {
            Ok(c) => routes::router(c),
            Err(_) => axum::Router::new(),
        }
    }

    fn tasks(&self, node: &NodeHandle) -> Result<Vec<Task>, FrontError> {
        let ctx = self.ctx(node)?;
        std::fs::read_to_string(&ctx.cfg.trust_anchor)
            .map_err(|e| FrontError::start(NAME, format!("trust_anchor {}: {e}", ctx.cfg.trust_anchor.display())))?;
        Ok(vec![Box::pin(agent::run(ctx))])
    }
}
