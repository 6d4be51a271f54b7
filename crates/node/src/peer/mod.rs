//! The peer side of a center: certificates and TLS ([`pki`]), outgoing calls
//! ([`client`]), the mesh runtime ([`mesh`]), the peer listener ([`server`])
//! and the JSON of vote messages ([`vote_wire`]).
pub mod client;
pub mod encoding;
pub mod mesh;
pub mod pki;
pub mod server;
pub mod vote_wire;
