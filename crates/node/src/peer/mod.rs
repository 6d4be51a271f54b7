//! The peer side of a center: certificates and TLS ([`pki`]).
pub mod pki;
