//! The peer side of a center: certificates and TLS ([`pki`], [`pins`] for
//! peers trusted by an SPKI pin), outgoing calls
//! ([`client`]), the mesh runtime ([`mesh`]), the peer listener ([`accept`]
//! for connections, [`server`] for requests) and the durable promises
//! given to other centers' votes ([`claims_log`]).
pub mod accept;
pub mod claims_log;
pub mod client;
pub mod encoding;
pub mod mesh;
pub mod pins;
pub mod pki;
pub mod server;
