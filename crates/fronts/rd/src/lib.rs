//! The CoAP Resource Directory front (RFC 9176, replicated as document 004
//! asks): the `rd.registration` kind ([`kind`]) and a CoAP/UDP server
//! ([`server`]) serving registration and lookup. A registration is a record
//! owned by the center that accepted it; the mesh carries it to every
//! center, and every center's lookups answer from the union.
//!
//! Configured by `[fronts.rd]`: `listen` (UDP socket address),
//! `upstreams` (third-party RDs whose links this center serves as a lookup
//! proxy, [`proxy`]) and `ack_timeout_ms` (RFC 7252's ACK_TIMEOUT for
//! confirmable notifications, [`confirm`]; 2000 by default).
//! `coaps_listen` (UDP socket address) with `psk_file` ([`psk`]) adds a
//! coaps listener (DTLS 1.2, PSK). Off unless the section is present.
//! Over coap (no DTLS) the RD is open: anyone may register any name not yet
//! bound to a DTLS identity.
//!
//! Must never: reach into the center, the mesh or the store, or write a kind
//! other than `rd.registration`.

pub mod coap;
pub mod confirm;
pub mod exchange;
pub mod fcfr;
pub mod forward;
pub mod handlers;
pub mod kind;
pub mod links;
pub mod lookup;
pub mod matching;
pub mod observe;
pub mod proxy;
pub mod psk;
pub mod server;

pub use kind::{RegistrationKind, REGISTRATION};

use regmesh_core::Kind;
use regmesh_node::front::{Front, FrontError, Section, Task};
use regmesh_node::messages::{PeerMessage, PeerVerb};
use regmesh_node::NodeHandle;
use std::net::SocketAddr;
use std::sync::Arc;

/// The front's name and its `[fronts.rd]` section.
pub const NAME: &str = "rd";

/// The Resource Directory front.
#[derive(Default)]
pub struct RdFront {
    listen: Option<SocketAddr>,
    upstreams: Vec<SocketAddr>,
    /// None: RFC 7252's default.
    ack_timeout_ms: Option<u64>,
    coaps_listen: Option<SocketAddr>,
    psk: Option<Arc<psk::PskTable>>,
}

impl RdFront {
    pub fn new() -> Self {
        RdFront::default()
    }
}

impl Front for RdFront {
    fn name(&self) -> &'static str {
        NAME
    }

    fn configure(&mut self, section: &Section) -> Result<(), FrontError> {
        for (k, v) in &section.table {
            match k.as_str() {
                "listen" => {
                    let s = v
                        .as_str()
                        .ok_or_else(|| FrontError::config(NAME, "listen must be a string"))?;
                    self.listen =
                        Some(s.parse().map_err(|_| {
                            FrontError::config(NAME, format!("listen {s:?} is not a UDP socket address"))
                        })?);
                }
                "upstreams" => {
                    let list = v
                        .as_array()
                        .ok_or_else(|| FrontError::config(NAME, "upstreams must be a list of coap:// URIs"))?;
                    if list.len() > proxy::UPSTREAMS_MAX {
                        return Err(FrontError::config(
                            NAME,
                            format!("at most {} upstreams", proxy::UPSTREAMS_MAX),
                        ));
                    }
                    self.upstreams = list
                        .iter()
                        .map(|u| {
                            u.as_str()
                                .ok_or_else(|| "upstreams must be strings".to_string())
                                .and_then(proxy::parse_upstream)
                        })
                        .collect::<Result<_, _>>()
                        .map_err(|e| FrontError::config(NAME, e))?;
                }
                "ack_timeout_ms" => {
                    let ms = v
                        .as_integer()
                        .filter(|ms| (10..=60_000).contains(ms))
                        .ok_or_else(|| FrontError::config(NAME, "ack_timeout_ms must be an integer in 10..=60000"))?;
                    self.ack_timeout_ms = Some(ms as u64);
                }
                "coaps_listen" => {
                    let s = v
                        .as_str()
                        .ok_or_else(|| FrontError::config(NAME, "coaps_listen must be a string"))?;
                    self.coaps_listen = Some(s.parse().map_err(|_| {
                        FrontError::config(NAME, format!("coaps_listen {s:?} is not a UDP socket address"))
                    })?);
                }
                "psk_file" => {
                    let s = v
                        .as_str()
                        .ok_or_else(|| FrontError::config(NAME, "psk_file must be a path"))?;
                    let table = psk::PskTable::load(std::path::Path::new(s))
                        .map_err(|e| FrontError::config(NAME, e.to_string()))?;
                    self.psk = Some(Arc::new(table));
                }
                other => return Err(FrontError::config(NAME, format!("unknown key {other:?}"))),
            }
        }
        if self.listen.is_none() {
            return Err(FrontError::config(NAME, "listen is required (e.g. \"[::1]:5683\")"));
        }
        if self.coaps_listen.is_some() != self.psk.is_some() {
            return Err(FrontError::config(NAME, "coaps_listen and psk_file go together"));
        }
        Ok(())
    }

    fn kinds(&self) -> Vec<Arc<dyn Kind>> {
        vec![Arc::new(RegistrationKind)]
    }

    fn peer_messages(&self, node: &NodeHandle) -> Vec<PeerMessage> {
        let forwarder = Arc::new(forward::Forwarder::new(node.clone()));
        vec![PeerMessage::new(
            PeerVerb::Rfi,
            forward::FORWARD_TYPE,
            move |from, msg| {
                let f = forwarder.clone();
                async move { f.handle(from, msg).await }
            },
        )]
    }

    fn tasks(&self, node: &NodeHandle) -> Result<Vec<Task>, FrontError> {
        let addr = self.listen.ok_or_else(|| FrontError::start(NAME, "not configured"))?;
        let sock =
            std::net::UdpSocket::bind(addr).map_err(|e| FrontError::start(NAME, format!("binding UDP {addr}: {e}")))?;
        sock.set_nonblocking(true)
            .map_err(|e| FrontError::start(NAME, e.to_string()))?;
        let coaps = match (self.coaps_listen, &self.psk) {
            (Some(a), Some(psk)) => {
                let s = std::net::UdpSocket::bind(a)
                    .map_err(|e| FrontError::start(NAME, format!("binding coaps UDP {a}: {e}")))?;
                s.set_nonblocking(true)
                    .map_err(|e| FrontError::start(NAME, e.to_string()))?;
                Some((s, psk.clone()))
            }
            _ => None,
        };
        let options = server::Options {
            coaps,
            upstreams: self.upstreams.clone(),
            ack_timeout: self
                .ack_timeout_ms
                .map_or(confirm::ACK_TIMEOUT_DEFAULT, std::time::Duration::from_millis),
        };
        Ok(server::tasks(node.clone(), sock, options))
    }
}
