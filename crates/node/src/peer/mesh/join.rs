//! Peers added at runtime: a center found from DNS (document 003) that is
//! in no `[[peers]]` and has no certificate from our CA. Owns the checks
//! and the order in which the new peer enters every part of the mesh: its
//! TLS pin and record key first (so its first call can be verified), then
//! floods, ceilings and votes, and last the link part, whose next beat says
//! HELLO to it.
//!
//! Must never change anything for an addition it refuses, remove a peer
//! (indexes into the link part stay valid), or exceed
//! [`RUNTIME_PEERS_MAX`].

use super::{Mesh, Peer};
use crate::config::PeerConfig;
use crate::peer::client::PeerClient;
use crate::peer::pins::Pin;
use regmesh_proto::lifecycle::PeerLifecycle;
use regmesh_proto::policy::ExportPolicy;
use regmesh_proto::version::PeerProtocol;
use std::sync::{Arc, Mutex};

/// Peers a center adds at runtime, at most (configured ones not counted).
pub const RUNTIME_PEERS_MAX: usize = 64;

/// A runtime peer was not added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddPeerError {
    /// A peer of that id is here already (configured or added before).
    /// Nothing changed.
    #[error("{0} is a peer already")]
    Duplicate(String),
    /// The id, url, pin or record key is not valid, the id is this
    /// center, or the id has another record key here. Nothing changed.
    #[error("peer {id}: {why}")]
    Invalid { id: String, why: String },
    /// [`RUNTIME_PEERS_MAX`] peers were added already. Nothing changed.
    #[error("{max} peers were added at runtime already")]
    Full { max: usize },
}

impl Mesh {
    /// Adds center `id`, reachable at `url` (`https://host:port`), as a
    /// peer: its TLS certificate is trusted by its SPKI SHA-256 `pin` (not
    /// by the CA) and its records by `record_key` (Ed25519, hex). It
    /// receives every kind and no group, and is said HELLO at the next
    /// beat. On an error nothing changed.
    pub fn add_peer(&self, id: &str, url: &str, pin: Pin, record_key: &str) -> Result<(), AddPeerError> {
        let invalid = |why: String| AddPeerError::Invalid {
            id: id.to_string(),
            why,
        };
        regmesh_core::validate_center_id(id).map_err(|e| invalid(e.to_string()))?;
        if id == self.me {
            return Err(invalid("this center itself".into()));
        }
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| invalid(format!("url must be https://host:port, not {url:?}")))?;
        if rest.is_empty() || rest.contains('/') {
            return Err(invalid(format!("url must be https://host:port, not {url:?}")));
        }
        let key = regmesh_core::sign::key_from_hex(record_key).map_err(|e| invalid(format!("record key: {e}")))?;
        // One addition at a time: the checks below hold until it is done.
        let mut added = self.runtime_peers.lock().expect("runtime peers lock");
        if self.peer(id).is_some() {
            return Err(AddPeerError::Duplicate(id.to_string()));
        }
        if *added >= RUNTIME_PEERS_MAX {
            return Err(AddPeerError::Full { max: RUNTIME_PEERS_MAX });
        }
        if self.center.key_of(id).is_some_and(|k| k != key) {
            return Err(invalid("another record key is configured for it".into()));
        }
        if self.trust.pin_for(id).is_some_and(|p| p != pin) {
            return Err(invalid("pinned to another certificate".into()));
        }
        // Checked: from here on every step succeeds.
        self.center.add_key(id, key);
        self.trust.pin(id, pin);
        let policy = ExportPolicy::default();
        self.floods.lock().expect("floods lock").add_peer(id, policy.clone());
        self.ceilings.lock().expect("ceilings lock").add_direct(id);
        self.votes.lock().expect("votes lock").add_member(id);
        let cfg = PeerConfig {
            id: id.to_string(),
            url: url.to_string(),
            kinds: Vec::new(),
            groups: Vec::new(),
        };
        {
            let mut link = self.link.lock().expect("link lock");
            let ix = link
                .add_peer(id, policy.clone())
                .expect("not a peer yet: checked above");
            let mut peers = self.peers.write().expect("peers lock");
            debug_assert_eq!(ix, peers.len());
            peers.push(Arc::new(Peer {
                policy,
                ix,
                life: Mutex::new(PeerLifecycle::known(self.interval_ms)),
                client: PeerClient::new_with(id, url, self.tls.clone(), self.transport.clone()),
                protocol: Mutex::new(PeerProtocol::default()),
                cfg,
            }));
        }
        *added += 1;
        tracing::info!(peer = id, url, "peer added at runtime (trusted by its TLSA pin)");
        Ok(())
    }
}
