//! What the agent knows, per zone, shared by its loop, its peer-message
//! handlers and its API: the HSYNC identities, each remote agent's
//! lifecycle state (and why it is not further), the contributions, the NS
//! sets applied at the primary and the parent, and the last election.
//!
//! Plain data behind one lock; never held across an await. Must never: do
//! I/O.

use crate::election::Election;
use crate::kind::Contribution;
use regmesh_node::handle::PeerState;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Writes a lifecycle state as the document names it (`OPERATIONAL`).
fn state_name<S: serde::Serializer>(s: &PeerState, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

/// One remote agent of a zone.
#[derive(Debug, Clone, Serialize)]
pub struct PeerView {
    /// The remote agent's lifecycle state for this zone: the mesh's own
    /// (document 003's) states, NEEDED and KNOWN set by discovery here.
    #[serde(serialize_with = "state_name")]
    pub state: PeerState,
    /// Why it is not further (a refusal of discovery or of HELLO).
    pub reason: Option<String>,
    /// The center its validated certificate names.
    pub center: Option<String>,
    pub addr: Option<String>,
    /// Its center's record-signing key (Ed25519, hex), from the
    /// certificate its validated TLSA pins.
    pub record_key: Option<String>,
    /// The SPKI pin its validated TLSA gave (what `add_peer` trusts).
    #[serde(skip)]
    pub pin: Option<[u8; 32]>,
    #[serde(skip)]
    pub introduced: bool,
    #[serde(skip)]
    pub discovered_tick: u64,
}

impl PeerView {
    pub fn new() -> Self {
        PeerView {
            state: PeerState::Needed,
            reason: None,
            center: None,
            addr: None,
            record_key: None,
            pin: None,
            introduced: false,
            discovered_tick: 0,
        }
    }
}

impl Default for PeerView {
    fn default() -> Self {
        Self::new()
    }
}

/// An NS set (and the records kept with it) applied at a server, and when
/// or why not.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Applied {
    /// The NS set the server serves, as last read back from it.
    pub ns: Vec<String>,
    /// The other records kept there (`OWNER TYPE` → text RDATA), as last
    /// read back: glue, and DNSKEY, CDS, CDNSKEY, CSYNC at the apex.
    pub records: BTreeMap<String, Vec<String>>,
    pub updated_ms: Option<u64>,
    pub error: Option<String>,
}

/// One zone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ZoneState {
    /// Why the agent does nothing for the zone (not in HSYNC, no validated
    /// HSYNC, wrong trust anchor).
    pub refused: Option<String>,
    /// Identities in the HSYNC RRset, as written there.
    pub hsync: Vec<String>,
    pub peers: BTreeMap<String, PeerView>,
    /// Every provider's contribution known here, by identity.
    pub contributions: BTreeMap<String, Contribution>,
    /// Why the union is not applied now (a peer not OPERATIONAL).
    pub waiting: Option<String>,
    /// The union last computed.
    pub union: Vec<String>,
    pub primary: Applied,
    pub parent: Option<Applied>,
    pub election: Option<Election>,
    /// The winner of the last valid election.
    pub leader: Option<String>,
    /// The union's glue and (of signing providers) DNSKEYs, text form.
    pub union_glue: BTreeMap<String, Vec<std::net::Ipv4Addr>>,
    pub union_dnskey: Vec<String>,
    /// Whether this agent's own HSYNC record says SIGN: its primary signs,
    /// and it contributes its DNSKEYs and serves every signer's.
    pub signer: bool,
    /// This provider's own contribution (config, then the API).
    #[serde(skip)]
    pub own: Vec<String>,
    #[serde(skip)]
    pub own_glue: BTreeMap<String, Vec<std::net::Ipv4Addr>>,
    /// This provider's signing keys, as last read from its primary.
    #[serde(skip)]
    pub own_keys: Vec<String>,
    /// Contributions received by NOTIFY (newest serial wins over records).
    #[serde(skip)]
    pub notified: BTreeMap<String, Contribution>,
}

impl ZoneState {
    /// The identity bound to `center` that is INTRODUCED or further.
    pub fn identity_of(&self, center: &str) -> Option<String> {
        self.peers
            .iter()
            .find(|(_, v)| v.introduced && v.center.as_deref() == Some(center))
            .map(|(i, _)| i.clone())
    }

    /// Every remote peer's center that is INTRODUCED or further.
    pub fn introduced_centers(&self) -> Vec<String> {
        self.peers
            .values()
            .filter(|v| v.introduced)
            .filter_map(|v| v.center.clone())
            .collect()
    }
}

/// The agent's state, shared.
#[derive(Clone, Default)]
pub struct Shared {
    inner: Arc<Mutex<BTreeMap<String, ZoneState>>>,
    pub wake: Arc<Notify>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, BTreeMap<String, ZoneState>> {
        self.inner.lock().expect("dns state lock")
    }
}

/// Now, ms since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
