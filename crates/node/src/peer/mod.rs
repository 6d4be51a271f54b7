//! The peer side of a center: certificates and TLS ([`pki`]), outgoing calls
//! ([`client`]), the mesh runtime ([`mesh`]) and the peer listener
//! ([`accept`] for connections, [`server`] for requests).
pub mod accept;
pub mod client;
pub mod encoding;
pub mod mesh;
pub mod pki;
pub mod server;
