//! The `dns.ns` kind: one provider's complete NS contribution for one zone
//! (id `ZONE~CENTER`, zone without its final dot), owned by the provider's
//! agent center and replicated by the mesh like any record. A new body
//! replaces the old one whole (document 003: full replacement, no deltas).
//!
//! Besides the nameservers, a contribution carries the glue of those inside
//! the zone and, from a signing provider, its DNSKEYs.
//!
//! Pure: no I/O. Must never: accept a name that is not a domain name, more
//! than [`NS_MAX`] nameservers, a nameserver inside the zone without glue,
//! glue for any other name, or a malformed DNSKEY.

use crate::config::NS_MAX;
use crate::dnssec::{dnskey_from_text, dnskey_to_text, in_zone};
use crate::wire::check_name;
use regmesh_core::kind::{Kind, Prepared, ValidationError};
use regmesh_core::Visibility;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

pub const NS_KIND: &str = "dns.ns";
/// Most DNSKEYs one signer contributes.
pub const DNSKEY_MAX: usize = 16;
/// Most glue addresses of one nameserver.
pub const GLUE_ADDRS_MAX: usize = 8;

/// A contribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contribution {
    pub zone: String,
    /// The contributing agent's identity (as in HSYNC).
    pub identity: String,
    /// Its nameservers, absolute names, sorted, no duplicates.
    pub ns: Vec<String>,
    /// When the provider set it, ms since the epoch (newest wins).
    pub serial_ms: u64,
    /// Addresses of its nameservers inside the zone (each needs glue),
    /// sorted, unique. Absent in records written before glue.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub glue: BTreeMap<String, Vec<Ipv4Addr>>,
    /// Its signer's DNSKEYs (`FLAGS 3 ALG BASE64`), when its HSYNC record
    /// says SIGN: every signing provider serves all of them (RFC 8901).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dnskey: Vec<String>,
}

impl Contribution {
    /// Checks and normalises: names absolute, lower case, sorted, unique.
    pub fn checked(mut self) -> Result<Contribution, ValidationError> {
        let bad = |f: &str, e: crate::wire::WireError| ValidationError::new(f, e.to_string());
        self.zone = check_name(&self.zone).map_err(|e| bad("zone", e))?;
        self.identity = check_name(&self.identity).map_err(|e| bad("identity", e))?;
        if self.ns.len() > NS_MAX {
            return Err(ValidationError::new("ns", format!("at most {NS_MAX}")));
        }
        let mut ns = self
            .ns
            .iter()
            .map(|n| check_name(n).map(|n| n.to_ascii_lowercase()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("ns", e))?;
        ns.sort();
        ns.dedup();
        self.ns = ns;
        let mut glue = BTreeMap::new();
        for (n, mut addrs) in std::mem::take(&mut self.glue) {
            let n = check_name(&n).map_err(|e| bad("glue", e))?.to_ascii_lowercase();
            if !self.ns.contains(&n) || !in_zone(&n, &self.zone) {
                return Err(ValidationError::new(
                    "glue",
                    format!("{n} is not one of the nameservers inside {}", self.zone),
                ));
            }
            addrs.sort();
            addrs.dedup();
            if addrs.is_empty() || addrs.len() > GLUE_ADDRS_MAX {
                return Err(ValidationError::new(
                    "glue",
                    format!("{n}: 1 to {GLUE_ADDRS_MAX} addresses"),
                ));
            }
            glue.insert(n, addrs);
        }
        if let Some(n) = self
            .ns
            .iter()
            .find(|n| in_zone(n, &self.zone) && !glue.contains_key(*n))
        {
            return Err(ValidationError::new(
                "glue",
                format!("{n} is inside {} and needs glue", self.zone),
            ));
        }
        self.glue = glue;
        if self.dnskey.len() > DNSKEY_MAX {
            return Err(ValidationError::new("dnskey", format!("at most {DNSKEY_MAX}")));
        }
        let mut keys = self
            .dnskey
            .iter()
            .map(|k| dnskey_from_text(k).map(|w| dnskey_to_text(&w)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("dnskey", e))?;
        keys.sort();
        keys.dedup();
        self.dnskey = keys;
        Ok(self)
    }
}

/// The record id of `center`'s contribution to `zone`.
pub fn record_id(zone: &str, center: &str) -> String {
    format!("{}~{center}", zone.trim_end_matches('.').to_ascii_lowercase())
}

/// The `dns.ns` kind.
pub struct NsKind;

impl Kind for NsKind {
    fn name(&self) -> &'static str {
        NS_KIND
    }

    fn prepare(&self, _id: &str, input: Value) -> Result<Prepared, ValidationError> {
        let c: Contribution = serde_json::from_value(input).map_err(|e| ValidationError::new("body", e.to_string()))?;
        let c = c.checked()?;
        Ok(Prepared {
            body: serde_json::to_value(&c).expect("a contribution serializes"),
            lease_s: None,
            visibility: Visibility::Public,
        })
    }

    fn index_fields(&self) -> &'static [&'static str] {
        &["zone"]
    }

    fn index_terms(&self, body: &Value) -> Vec<(&'static str, String)> {
        match body.get("zone") {
            Some(Value::String(z)) => vec![("zone", z.clone())],
            _ => Vec::new(),
        }
    }

    fn on_lease_expired(&self, _: &mut Value) {}
    fn on_heartbeat(&self, _: &mut Value) {}
    fn is_expired_state(&self, _: &Value) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_contribution_is_normalised_and_bounded() {
        let p = NsKind
            .prepare(
                "example.lab~c1",
                json!({"zone": "example.lab", "identity": "Agent.p1.lab.", "ns": ["NS2.p1.lab", "ns1.p1.lab.", "ns2.p1.lab."], "serial_ms": 5}),
            )
            .unwrap();
        assert_eq!(p.body["ns"], json!(["ns1.p1.lab.", "ns2.p1.lab."]));
        assert_eq!(p.body["identity"], json!("Agent.p1.lab."));
        assert!(NsKind
            .prepare("x", json!({"zone": "a..b", "identity": "a.", "ns": [], "serial_ms": 1}))
            .is_err());
        let many: Vec<String> = (0..=NS_MAX).map(|i| format!("ns{i}.x.")).collect();
        assert!(NsKind
            .prepare("x", json!({"zone": "a.", "identity": "a.", "ns": many, "serial_ms": 1}))
            .is_err());
        assert_eq!(record_id("Example.lab.", "c1"), "example.lab~c1");
        // Glue: required for, and only for, nameservers inside the zone.
        let c = |ns: Value, glue: Value| {
            NsKind.prepare(
                "x",
                json!({"zone": "example.lab.", "identity": "a.", "ns": ns, "glue": glue, "serial_ms": 1}),
            )
        };
        let p = c(
            json!(["NS1.example.lab.", "ns.p1.lab."]),
            json!({"ns1.example.lab": ["127.0.0.9", "127.0.0.9"]}),
        )
        .unwrap();
        assert_eq!(p.body["glue"], json!({"ns1.example.lab.": ["127.0.0.9"]}));
        assert!(c(json!(["ns1.example.lab."]), json!({})).is_err());
        assert!(c(json!(["ns.p1.lab."]), json!({"ns.p1.lab.": ["127.0.0.9"]})).is_err());
        assert!(c(json!(["ns1.example.lab."]), json!({"ns1.example.lab.": []})).is_err());
    }
}
