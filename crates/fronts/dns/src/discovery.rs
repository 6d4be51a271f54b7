//! Discovery from DNS through the validating resolver (document 003,
//! "Establishing Secure Communication"): the configured trust anchor is
//! checked against the root keys the resolver validated; a zone's HSYNC
//! RRset; for each identity URI → SVCB (SVCB's port wins over the URI's) →
//! TLSA 3 1 1, and the certificate served at that address compared with
//! the TLSA. Every answer must carry the AD bit.
//!
//! What is trusted: the resolver (on loopback, configured) for its AD bit,
//! and only after its validated root DNSKEY matches the configured anchor.
//! Must never: use an answer without the AD bit, or bind an identity to a
//! center whose certificate does not match the identity's TLSA.

use crate::net::{self, exchange, new_id};
use crate::wire::{self, Hsync, Response, Svcb};
use std::net::{IpAddr, SocketAddr};

/// Why a lookup or a peer was refused (shown on the zone's API).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("wrong trust anchor: the resolver's validated root keys match no DS in {0}")]
    TrustAnchor(String),
    #[error("unsigned answer: {0} is not DNSSEC-validated (AD bit clear)")]
    Unsigned(String),
    #[error("no validated answer for {name}: {why}")]
    Lookup { name: String, why: String },
    #[error("TLSA mismatch: the certificate at {addr} does not match TLSA 3 1 1 of {name}")]
    TlsaMismatch { name: String, addr: SocketAddr },
    #[error("identity {0} is not in the zone's HSYNC RRset")]
    NotInHsync(String),
    /// The peer port did not present a certificate (down, unreachable):
    /// an agent already KNOWN keeps its binding.
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Other(String),
}

/// A validated lookup of `name`/`qtype`: the answer records of that type.
pub async fn lookup(resolver: SocketAddr, name: &str, qtype: u16) -> Result<(Response, Vec<wire::Rr>), Refusal> {
    let what = format!("{name} {}", type_name(qtype));
    let r = exchange(resolver, &wire::query(new_id(), name, qtype, true))
        .await
        .map_err(|e| Refusal::Lookup {
            name: what.clone(),
            why: e.to_string(),
        })?;
    if r.rcode != 0 {
        return Err(Refusal::Lookup {
            name: what,
            why: format!(
                "rcode {}{}",
                r.rcode,
                if r.rcode == 2 {
                    " (SERVFAIL: bogus or unreachable)"
                } else {
                    ""
                }
            ),
        });
    }
    if !r.ad {
        return Err(Refusal::Unsigned(what));
    }
    let rrs: Vec<wire::Rr> = r.answers.iter().filter(|a| a.rtype == qtype).cloned().collect();
    if rrs.is_empty() {
        return Err(Refusal::Lookup {
            name: what,
            why: "no such record".into(),
        });
    }
    Ok((r, rrs))
}

fn type_name(t: u16) -> String {
    match t {
        wire::TYPE_NS => "NS".into(),
        wire::TYPE_DNSKEY => "DNSKEY".into(),
        wire::TYPE_TLSA => "TLSA".into(),
        wire::TYPE_SVCB => "SVCB".into(),
        wire::TYPE_URI => "URI".into(),
        wire::TYPE_HSYNC => "HSYNC".into(),
        t => format!("TYPE{t}"),
    }
}

/// Checks that some root DNSKEY the resolver validated has a SHA-256 DS
/// digest among `anchors` (the configured trust anchor file's).
pub async fn check_anchor(resolver: SocketAddr, anchors: &[Vec<u8>], file: &str) -> Result<(), Refusal> {
    let (_, keys) = lookup(resolver, ".", wire::TYPE_DNSKEY).await?;
    if keys.iter().any(|k| anchors.contains(&wire::ds_sha256(".", &k.rdata))) {
        Ok(())
    } else {
        Err(Refusal::TrustAnchor(file.to_string()))
    }
}

/// The zone's HSYNC RRset, validated. An empty or absent set is an error
/// (nothing to do for the zone).
pub async fn hsync(resolver: SocketAddr, zone: &str) -> Result<Vec<Hsync>, Refusal> {
    let (_, rrs) = lookup(resolver, zone, wire::TYPE_HSYNC).await?;
    rrs.iter()
        .map(|r| Hsync::parse(&r.rdata).map_err(|e| Refusal::Other(format!("HSYNC of {zone}: {e}"))))
        .collect()
}

/// What discovery found for one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub addr: SocketAddr,
    /// The center id its certificate names (its dNSName).
    pub center: String,
    /// The center's record-signing key (Ed25519, hex) from the
    /// certificate whose SPKI matched the validated TLSA: learned from
    /// DNSSEC-validated data, not from the certificate's issuer.
    pub record_key: Option<String>,
    /// SHA-256 of the certificate's SPKI: the validated TLSA 3 1 1 data
    /// it matched (the mesh trusts the peer's TLS by it).
    pub pin: [u8; 32],
}

/// `https://host[:port]/...` → (host, port).
fn split_uri(uri: &str) -> Option<(String, Option<u16>)> {
    let rest = uri.strip_prefix("https://")?;
    let hostport = rest.split('/').next()?;
    match hostport.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), Some(p.parse().ok()?))),
        None => Some((hostport.to_string(), None)),
    }
}

/// URI → SVCB → TLSA → certificate, for `identity`.
pub async fn discover(resolver: SocketAddr, identity: &str) -> Result<Found, Refusal> {
    let uri_name = format!("_https._tcp.{identity}");
    let (_, uris) = lookup(resolver, &uri_name, wire::TYPE_URI).await?;
    let target = wire::uri_target(&uris[0].rdata).ok_or_else(|| Refusal::Other(format!("{uri_name}: bad URI")))?;
    let (host, uri_port) =
        split_uri(&target).ok_or_else(|| Refusal::Other(format!("{uri_name}: not an https URI: {target}")))?;
    let host = wire::check_name(&host).map_err(|e| Refusal::Other(e.to_string()))?;
    let (_, svcbs) = lookup(resolver, &host, wire::TYPE_SVCB).await?;
    let svcb = svcbs
        .iter()
        .filter_map(|r| Svcb::parse(&r.rdata).ok())
        .filter(|s| s.priority > 0)
        .min_by_key(|s| s.priority)
        .ok_or_else(|| Refusal::Other(format!("{host}: no usable SVCB")))?;
    let port = svcb
        .port
        .or(uri_port)
        .ok_or_else(|| Refusal::Other(format!("{host}: no port in SVCB or URI")))?;
    let ip = svcb
        .ipv4
        .first()
        .copied()
        .ok_or_else(|| Refusal::Other(format!("{host}: SVCB has no ipv4hint")))?;
    let addr = SocketAddr::new(IpAddr::V4(ip), port);
    let tlsa_name = format!("_{port}._tcp.{host}");
    let (_, tlsas) = lookup(resolver, &tlsa_name, wire::TYPE_TLSA).await?;
    let cert = net::probe_certificate(addr)
        .await
        .map_err(|e| Refusal::Unreachable(format!("certificate of {identity}: {e}")))?;
    let hash =
        crate::cert::spki_sha256(&cert).ok_or_else(|| Refusal::Other(format!("{addr}: unreadable certificate")))?;
    let ok = tlsas
        .iter()
        .filter_map(|r| wire::tlsa(&r.rdata))
        .any(|(u, s, m, d)| u == 3 && s == 1 && m == 1 && d == hash);
    if !ok {
        return Err(Refusal::TlsaMismatch { name: tlsa_name, addr });
    }
    let center = crate::cert::dns_names(&cert)
        .into_iter()
        .next()
        .ok_or_else(|| Refusal::Other(format!("{addr}: certificate names no center")))?;
    let record_key = crate::cert::ed25519_key_hex(&cert);
    let pin = hash
        .as_slice()
        .try_into()
        .map_err(|_| Refusal::Other(format!("{addr}: SPKI digest is not 32 bytes")))?;
    Ok(Found {
        addr,
        center,
        record_key,
        pin,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn uris() {
        assert_eq!(
            super::split_uri("https://api.a.lab:443/x"),
            Some(("api.a.lab".into(), Some(443)))
        );
        assert_eq!(super::split_uri("https://api.a.lab/"), Some(("api.a.lab".into(), None)));
        assert_eq!(super::split_uri("http://x/"), None);
    }
}
