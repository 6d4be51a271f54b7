//! The `agent` kind: document 000 §3.3's information model.
//!
//! - must: `id` (1–256 chars, a DID works), and at least one of `addresses`
//!   (IPv6/IPv4 literals) or `endpoints` (`{url, protocol}`);
//! - should: `status` (`online`/`offline`/`unknown`, default `unknown`);
//!   origin, version and timestamps are assigned by the center;
//! - may: `capabilities` (`{name, description?, tags[], visibility}`),
//!   `metadata` (object), `card` (A2A agent card, stored as given), `lease_s`,
//!   and the record-level `visibility` (default `public`).
//!
//! Addresses that cannot be used across domains (link-local, unspecified,
//! multicast; document 000 §2.6.1) are refused, also inside endpoint URLs.
//!
//! New ids are claimed by a mesh vote ([`Creation::Claimed`]); the lease
//! length is the body field `lease_s` ([`Lease::BodyField`]). Pure: no I/O,
//! no clock.

use crate::limits::*;
use regmesh_core::kind::{json_depth, Creation, Kind, Lease, Prepared, ValidationError, ASSIGNED_FIELDS};
use regmesh_core::Visibility;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::net::IpAddr;

/// The `agent` kind.
pub struct AgentKind;

/// Name of the kind in records.
pub const AGENT: &str = "agent";

/// The body field holding an agent's lease length, seconds.
pub const LEASE_FIELD: &str = "lease_s";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    id: Option<String>,
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    endpoints: Vec<Endpoint>,
    status: Option<Status>,
    #[serde(default)]
    capabilities: Vec<CapabilityIn>,
    metadata: Option<Value>,
    card: Option<Value>,
    lease_s: Option<u64>,
    visibility: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
struct Endpoint {
    url: String,
    protocol: String,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Status {
    Online,
    Offline,
    Unknown,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapabilityIn {
    name: String,
    description: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    visibility: Option<String>,
}

fn err(field: impl Into<String>, msg: impl Into<String>) -> ValidationError {
    ValidationError::new(field, msg)
}

/// True for addresses that are meaningless outside one link or host group.
fn unusable_across_domains(ip: &IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V6(a) => {
            if a.is_unspecified() {
                Some("unspecified")
            } else if a.is_multicast() {
                Some("multicast")
            } else if (a.segments()[0] & 0xffc0) == 0xfe80 {
                Some("link-local (fe80::/10)")
            } else {
                None
            }
        }
        IpAddr::V4(a) => {
            if a.is_unspecified() {
                Some("unspecified")
            } else if a.is_multicast() || a.is_broadcast() {
                Some("multicast or broadcast")
            } else if a.is_link_local() {
                Some("link-local (169.254.0.0/16)")
            } else {
                None
            }
        }
    }
}

fn check_token(field: &str, s: &str, max: usize) -> Result<(), ValidationError> {
    if s.is_empty() || s.len() > max {
        return Err(err(field, format!("must be 1 to {max} characters")));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err(field, "must not contain white space or control characters"));
    }
    Ok(())
}

/// Checks `scheme://authority[...]` and refuses link-local IP literal hosts.
fn check_url(field: &str, url: &str) -> Result<(), ValidationError> {
    if url.is_empty() || url.len() > URL_BYTES_MAX {
        return Err(err(field, format!("must be 1 to {URL_BYTES_MAX} characters")));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err(field, "must not contain white space"));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| err(field, "must be an absolute URL (scheme://host...)"))?;
    let scheme_ok = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(err(field, format!("has an invalid scheme {scheme:?}")));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        hostport.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return Err(err(field, "has no host"));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        if let Some(why) = unusable_across_domains(&ip) {
            return Err(err(field, format!("host {host} is {why}")));
        }
    }
    Ok(())
}

fn check_json_blob(field: &str, v: &Value, max: usize) -> Result<(), ValidationError> {
    if !v.is_object() {
        return Err(err(field, "must be a JSON object"));
    }
    if json_depth(v) > JSON_DEPTH_MAX {
        return Err(err(field, format!("is nested deeper than {JSON_DEPTH_MAX}")));
    }
    let n = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
    if n > max {
        return Err(err(field, format!("is {n} bytes, more than {max}")));
    }
    Ok(())
}

impl Kind for AgentKind {
    fn name(&self) -> &'static str {
        AGENT
    }

    fn prepare(&self, id: &str, input: Value) -> Result<Prepared, ValidationError> {
        let Value::Object(mut obj) = input else {
            return Err(err("", "body must be a JSON object"));
        };
        for f in ASSIGNED_FIELDS {
            obj.remove(*f);
        }
        let inp: Input = serde_json::from_value(Value::Object(obj)).map_err(|e| err("", e.to_string()))?;
        if let Some(body_id) = &inp.id {
            if body_id != id {
                return Err(err("id", format!("{body_id:?} does not match the URL's id {id:?}")));
            }
        }
        regmesh_core::validate_record_id(id).map_err(|e| err("id", e.0))?;

        if inp.addresses.is_empty() && inp.endpoints.is_empty() {
            return Err(err("addresses", "an agent needs at least one address or endpoint"));
        }
        if inp.addresses.len() > ADDRESSES_MAX {
            return Err(err("addresses", format!("at most {ADDRESSES_MAX}")));
        }
        let mut addresses = Vec::with_capacity(inp.addresses.len());
        for (i, a) in inp.addresses.iter().enumerate() {
            let f = format!("addresses[{i}]");
            let ip: IpAddr = a
                .parse()
                .map_err(|_| err(&f, format!("{a:?} is not an IPv6 or IPv4 address")))?;
            if let Some(why) = unusable_across_domains(&ip) {
                return Err(err(&f, format!("{a} is {why}")));
            }
            let norm = ip.to_string();
            if !addresses.contains(&norm) {
                addresses.push(norm);
            }
        }
        if inp.endpoints.len() > ENDPOINTS_MAX {
            return Err(err("endpoints", format!("at most {ENDPOINTS_MAX}")));
        }
        for (i, e) in inp.endpoints.iter().enumerate() {
            check_url(&format!("endpoints[{i}].url"), &e.url)?;
            let f = format!("endpoints[{i}].protocol");
            let p = &e.protocol;
            let ok = !p.is_empty()
                && p.len() <= 32
                && p.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '+'));
            if !ok {
                return Err(err(
                    f,
                    "must be a short lowercase label such as a2a, mcp, http (1-32 of a-z 0-9 . _ - +)",
                ));
            }
        }
        if inp.capabilities.len() > CAPABILITIES_MAX {
            return Err(err("capabilities", format!("at most {CAPABILITIES_MAX}")));
        }
        let mut caps = Vec::with_capacity(inp.capabilities.len());
        for (i, c) in inp.capabilities.into_iter().enumerate() {
            check_token(&format!("capabilities[{i}].name"), &c.name, NAME_BYTES_MAX)?;
            if caps.iter().any(|m: &Map<String, Value>| m["name"] == c.name.as_str()) {
                return Err(err(
                    format!("capabilities[{i}].name"),
                    format!("{:?} appears twice", c.name),
                ));
            }
            if c.tags.len() > TAGS_MAX {
                return Err(err(format!("capabilities[{i}].tags"), format!("at most {TAGS_MAX}")));
            }
            let mut tags: Vec<String> = Vec::with_capacity(c.tags.len());
            for (j, t) in c.tags.into_iter().enumerate() {
                check_token(&format!("capabilities[{i}].tags[{j}]"), &t, NAME_BYTES_MAX)?;
                if !tags.contains(&t) {
                    tags.push(t);
                }
            }
            let mut m = Map::new();
            m.insert("name".into(), Value::String(c.name));
            if let Some(d) = c.description {
                if d.len() > DESCRIPTION_BYTES_MAX {
                    return Err(err(
                        format!("capabilities[{i}].description"),
                        format!("at most {DESCRIPTION_BYTES_MAX} bytes"),
                    ));
                }
                m.insert("description".into(), Value::String(d));
            }
            m.insert("tags".into(), tags.into_iter().map(Value::String).collect());
            let vis = match &c.visibility {
                Some(v) => Visibility::parse(v).map_err(|e| err(format!("capabilities[{i}].visibility"), e))?,
                None => Visibility::Public,
            };
            m.insert("visibility".into(), Value::String(vis.to_string()));
            caps.push(m);
        }
        if let Some(m) = &inp.metadata {
            check_json_blob("metadata", m, METADATA_BYTES_MAX)?;
        }
        if let Some(c) = &inp.card {
            check_json_blob("card", c, CARD_BYTES_MAX)?;
        }
        if let Some(l) = inp.lease_s {
            if !(LEASE_S_MIN..=LEASE_S_MAX).contains(&l) {
                return Err(err(
                    "lease_s",
                    format!("must be {LEASE_S_MIN} to {LEASE_S_MAX} seconds"),
                ));
            }
        }
        let visibility = match &inp.visibility {
            Some(v) => Visibility::parse(v).map_err(|e| err("visibility", e))?,
            None => Visibility::Public,
        };

        let mut body = Map::new();
        body.insert("addresses".into(), addresses.into_iter().map(Value::String).collect());
        body.insert(
            "endpoints".into(),
            serde_json::to_value(&inp.endpoints).expect("endpoints serialize"),
        );
        body.insert(
            "status".into(),
            serde_json::to_value(inp.status.unwrap_or(Status::Unknown)).expect("status serializes"),
        );
        body.insert("capabilities".into(), caps.into_iter().map(Value::Object).collect());
        if let Some(m) = inp.metadata {
            body.insert("metadata".into(), m);
        }
        if let Some(c) = inp.card {
            body.insert("card".into(), c);
        }
        if let Some(l) = inp.lease_s {
            body.insert("lease_s".into(), Value::from(l));
        }
        Ok(Prepared {
            body: Value::Object(body),
            lease_s: inp.lease_s,
            visibility,
        })
    }

    fn index_fields(&self) -> &'static [&'static str] {
        &["status", "capability", "tag"]
    }

    fn index_terms(&self, body: &Value) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(s) = body.get("status").and_then(Value::as_str) {
            out.push(("status", s.to_string()));
        }
        if let Some(caps) = body.get("capabilities").and_then(Value::as_array) {
            for c in caps {
                if let Some(n) = c.get("name").and_then(Value::as_str) {
                    out.push(("capability", n.to_string()));
                }
                for t in c.get("tags").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(t) = t.as_str() {
                        let term = ("tag", t.to_string());
                        if !out.contains(&term) {
                            out.push(term);
                        }
                    }
                }
            }
        }
        out
    }

    fn on_lease_expired(&self, body: &mut Value) {
        body["status"] = Value::String("offline".into());
    }

    fn on_heartbeat(&self, body: &mut Value) {
        body["status"] = Value::String("online".into());
    }

    fn is_expired_state(&self, body: &Value) -> bool {
        body.get("status").and_then(Value::as_str) == Some("offline")
    }

    fn creation(&self) -> Creation {
        Creation::Claimed
    }

    fn lease(&self) -> Lease {
        Lease::BodyField(LEASE_FIELD)
    }

    fn part_visibilities(&self, body: &Value) -> Vec<Visibility> {
        body.get("capabilities")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                c.get("visibility")
                    .and_then(Value::as_str)
                    .map_or(Visibility::Local, |v| Visibility::parse(v).unwrap_or(Visibility::Local))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prep(v: Value) -> Result<Prepared, ValidationError> {
        AgentKind.prepare("did:web:example.com:a1", v)
    }

    #[test]
    fn minimal_and_full_agents() {
        let p = prep(json!({"addresses": ["2001:db8::1"]})).unwrap();
        assert_eq!(p.body["status"], "unknown");
        assert_eq!(p.visibility, Visibility::Public);
        let p = prep(json!({
            "id": "did:web:example.com:a1",
            "endpoints": [{"url": "https://a1.example.com/a2a", "protocol": "a2a"}],
            "status": "online",
            "capabilities": [{"name": "translate", "tags": ["en-fr", "en-fr"], "visibility": "authorized:partners"}],
            "metadata": {"team": "x"},
            "card": {"name": "A1", "skills": []},
            "lease_s": 30,
            "origin": "ignored", "version": "1.0", "seq": 5
        }))
        .unwrap();
        assert_eq!(p.lease_s, Some(30));
        assert_eq!(p.body["capabilities"][0]["tags"], json!(["en-fr"]));
        assert_eq!(p.body["capabilities"][0]["visibility"], "authorized:partners");
        assert!(p.body.get("origin").is_none());
        let terms = AgentKind.index_terms(&p.body);
        assert!(terms.contains(&("capability", "translate".into())));
        assert!(terms.contains(&("tag", "en-fr".into())));
        assert!(terms.contains(&("status", "online".into())));
        assert_eq!(AgentKind.lease_s(&p.body), Some(30));
        assert_eq!(AgentKind.creation(), Creation::Claimed);
    }

    #[test]
    fn address_normalized() {
        let p = prep(json!({"addresses": ["2001:DB8:0:0::1", "2001:db8::1"]})).unwrap();
        assert_eq!(p.body["addresses"], json!(["2001:db8::1"]));
    }

    #[test]
    fn refusals() {
        let bad = [
            (json!({}), "addresses"),
            (json!({"addresses": ["fe80::1"]}), "addresses[0]"),
            (json!({"addresses": ["169.254.1.1"]}), "addresses[0]"),
            (json!({"addresses": ["not-an-ip"]}), "addresses[0]"),
            (
                json!({"endpoints": [{"url": "http://[fe80::1]:80/", "protocol": "http"}]}),
                "endpoints[0].url",
            ),
            (
                json!({"endpoints": [{"url": "nope", "protocol": "http"}]}),
                "endpoints[0].url",
            ),
            (
                json!({"endpoints": [{"url": "http://x", "protocol": "HTTP Proto"}]}),
                "endpoints[0].protocol",
            ),
            (json!({"addresses": ["::2"], "bogus": 1}), ""),
            (json!({"addresses": ["::2"], "status": "sleepy"}), ""),
            (json!({"addresses": ["::2"], "lease_s": 0}), "lease_s"),
            (json!({"addresses": ["::2"], "metadata": [1]}), "metadata"),
            (json!({"addresses": ["::2"], "card": "x"}), "card"),
            (json!({"addresses": ["::2"], "visibility": "secret"}), "visibility"),
            (json!({"addresses": ["::2"], "id": "other"}), "id"),
            (
                json!({"addresses": ["::2"], "capabilities": [{"name": "a b"}]}),
                "capabilities[0].name",
            ),
            (
                json!({"addresses": ["::2"], "capabilities": [{"name": "a"}, {"name": "a"}]}),
                "capabilities[1].name",
            ),
            (json!([1]), ""),
        ];
        for (v, field) in bad {
            let e = prep(v.clone()).expect_err(&v.to_string());
            assert_eq!(e.field, field, "{v}: {e}");
        }
        let deep = (0..20).fold(json!(1), |acc, _| json!({ "a": acc }));
        assert_eq!(
            prep(json!({"addresses": ["::2"], "metadata": deep})).unwrap_err().field,
            "metadata"
        );
        assert!(AgentKind.prepare("bad id", json!({"addresses": ["::2"]})).is_err());
    }
}
