//! `[fronts.dns]`: the agent's identity, the validating resolver, the trust
//! anchor file, the zones, its provider's primary (and the parent, if this
//! provider may update the delegation), its nameserver contribution per
//! zone with the glue of those inside it, and the beat interval its lifecycle states are judged by.
//!
//! Must never: accept a key it does not know, a name that is not a domain
//! name, or a TSIG secret that is not base64.

use crate::tsig::TsigKey;
use crate::wire::check_name;
use base64::Engine;
use regmesh_node::front::{FrontError, Section};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// Most zones one agent serves for.
pub const ZONES_MAX: usize = 64;
/// Most nameservers in one contribution.
pub const NS_MAX: usize = 32;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    identity: String,
    resolver: SocketAddr,
    trust_anchor: PathBuf,
    zones: Vec<String>,
    primary: RawServer,
    #[serde(default)]
    parent: Option<RawServer>,
    #[serde(default)]
    contributions: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    glue: BTreeMap<String, Vec<Ipv4Addr>>,
    #[serde(default = "default_interval")]
    interval_ms: u64,
    #[serde(default = "default_ttl")]
    ns_ttl_s: u32,
    #[serde(default)]
    vote: Option<u16>,
}

fn default_interval() -> u64 {
    15_000
}
fn default_ttl() -> u32 {
    60
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    addr: SocketAddr,
    /// `hmac-sha256:NAME:BASE64`.
    tsig: String,
}

/// A server the agent updates, with its TSIG key.
#[derive(Debug, Clone)]
pub struct Server {
    pub addr: SocketAddr,
    pub key: TsigKey,
}

/// The front's configuration.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    pub identity: String,
    pub resolver: SocketAddr,
    pub trust_anchor: PathBuf,
    pub zones: Vec<String>,
    pub primary: Server,
    pub parent: Option<Server>,
    /// Zone → this provider's nameservers.
    pub contributions: BTreeMap<String, Vec<String>>,
    /// Nameserver → its addresses, for this provider's nameservers that
    /// are inside a zone they serve (glue).
    pub glue: BTreeMap<String, Vec<Ipv4Addr>>,
    pub interval_ms: u64,
    pub ns_ttl_s: u32,
    /// A fixed election vote (tests force equal votes with it); random when
    /// absent.
    pub vote: Option<u16>,
}

fn server(front: &str, which: &str, r: RawServer) -> Result<Server, FrontError> {
    let bad = |m: &str| FrontError::config(front, format!("{which}.tsig: {m} (want hmac-sha256:NAME:BASE64)"));
    let mut parts = r.tsig.splitn(3, ':');
    let (Some(alg), Some(name), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("three parts"));
    };
    if alg != "hmac-sha256" {
        return Err(bad("only hmac-sha256"));
    }
    let name = check_name(name).map_err(|e| bad(&e.to_string()))?;
    let secret = base64::engine::general_purpose::STANDARD
        .decode(secret)
        .map_err(|e| bad(&e.to_string()))?;
    Ok(Server {
        addr: r.addr,
        key: TsigKey { name, secret },
    })
}

impl DnsConfig {
    pub fn from_section(front: &str, s: &Section) -> Result<Self, FrontError> {
        let raw: Raw = toml::Value::Table(s.table.clone())
            .try_into()
            .map_err(|e| FrontError::config(front, e.to_string()))?;
        let name = |field: &str, n: &str| check_name(n).map_err(|e| FrontError::config(front, format!("{field}: {e}")));
        let identity = name("identity", &raw.identity)?;
        if raw.zones.is_empty() || raw.zones.len() > ZONES_MAX {
            return Err(FrontError::config(front, format!("zones: 1 to {ZONES_MAX}")));
        }
        let zones = raw
            .zones
            .iter()
            .map(|z| name("zones", z))
            .collect::<Result<Vec<_>, _>>()?;
        let mut contributions = BTreeMap::new();
        for (z, ns) in raw.contributions {
            let z = name("contributions", &z)?;
            if !zones.contains(&z) {
                return Err(FrontError::config(front, format!("contributions: {z} is not in zones")));
            }
            if ns.len() > NS_MAX {
                return Err(FrontError::config(
                    front,
                    format!("contributions: at most {NS_MAX} per zone"),
                ));
            }
            let ns = ns
                .iter()
                .map(|n| name("contributions", n))
                .collect::<Result<Vec<_>, _>>()?;
            contributions.insert(z, ns);
        }
        let mut glue = BTreeMap::new();
        for (n, a) in raw.glue {
            glue.insert(name("glue", &n)?.to_ascii_lowercase(), a);
        }
        for (z, ns) in &contributions {
            let c = crate::kind::Contribution {
                zone: z.clone(),
                identity: identity.clone(),
                ns: ns.clone(),
                serial_ms: 0,
                glue: glue_for(&glue, z, ns),
                dnskey: Vec::new(),
            };
            c.checked()
                .map_err(|e| FrontError::config(front, format!("contributions {z}: {e}")))?;
        }
        if !(100..=600_000).contains(&raw.interval_ms) {
            return Err(FrontError::config(front, "interval_ms: 100 to 600000"));
        }
        Ok(DnsConfig {
            identity,
            resolver: raw.resolver,
            trust_anchor: s.path(&raw.trust_anchor),
            zones,
            primary: server(front, "primary", raw.primary)?,
            parent: raw.parent.map(|p| server(front, "parent", p)).transpose()?,
            contributions,
            glue,
            interval_ms: raw.interval_ms,
            ns_ttl_s: raw.ns_ttl_s,
            vote: raw.vote,
        })
    }
}

/// The entries of `glue` for the names of `ns` inside `zone`.
pub fn glue_for(glue: &BTreeMap<String, Vec<Ipv4Addr>>, zone: &str, ns: &[String]) -> BTreeMap<String, Vec<Ipv4Addr>> {
    ns.iter()
        .map(|n| n.to_ascii_lowercase())
        .filter(|n| crate::dnssec::in_zone(n, zone))
        .filter_map(|n| glue.get(&n).map(|a| (n, a.clone())))
        .collect()
}

/// The root DS digests (SHA-256, digest type 2) of a trust anchor file in
/// zone-file form (`. TTL IN DS tag alg 2 HEX`).
pub fn read_anchor(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let i = f.iter().position(|w| w.eq_ignore_ascii_case("DS"))?;
            if f.get(i + 3) != Some(&"2") {
                return None;
            }
            let hex: String = f[i + 4..].concat();
            (0..hex.len())
                .step_by(2)
                .map(|k| u8::from_str_radix(hex.get(k..k + 2)?, 16).ok())
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(extra: &str) -> Section {
        let text = format!(
            "identity = \"agent.p1.lab\"\nresolver = \"127.0.0.1:53\"\ntrust_anchor = \"root.ds\"\nzones = [\"example.lab\"]\n{extra}\n[primary]\naddr = \"127.0.0.1:5300\"\ntsig = \"hmac-sha256:p1:AAAA\"\n"
        );
        Section {
            table: toml::from_str(&text).unwrap(),
            base_dir: Some(PathBuf::from("/etc/regmesh")),
        }
    }

    #[test]
    fn reads_a_section_and_refuses_bad_values() {
        let c = DnsConfig::from_section("dns", &section("")).unwrap();
        assert_eq!(c.identity, "agent.p1.lab.");
        assert_eq!(c.zones, vec!["example.lab.".to_string()]);
        assert_eq!(c.trust_anchor, PathBuf::from("/etc/regmesh/root.ds"));
        assert_eq!(c.primary.key.name, "p1.");
        assert!(DnsConfig::from_section("dns", &section("colour = 1")).is_err());
        assert!(DnsConfig::from_section("dns", &section("interval_ms = 5")).is_err());
        let e = DnsConfig::from_section("dns", &section("[contributions]\n\"other.lab.\" = [\"ns1.x.\"]"));
        assert!(e.unwrap_err().to_string().contains("not in zones"));
        let inside = "[contributions]\n\"example.lab.\" = [\"ns1.example.lab.\"]";
        let e = DnsConfig::from_section("dns", &section(inside));
        assert!(e.unwrap_err().to_string().contains("needs glue"));
        let c = DnsConfig::from_section(
            "dns",
            &section(&format!("{inside}\n[glue]\n\"ns1.example.lab\" = [\"127.0.0.9\"]")),
        )
        .unwrap();
        assert_eq!(c.glue["ns1.example.lab."], vec![std::net::Ipv4Addr::new(127, 0, 0, 9)]);
    }

    #[test]
    fn reads_sha256_digests_of_a_trust_anchor() {
        let a = read_anchor(". 2 IN DS 32022 13 2 547F97FB\n. 2 IN DS 1 13 1 abcd\n; comment\n");
        assert_eq!(a, vec![vec![0x54, 0x7f, 0x97, 0xfb]]);
    }
}
