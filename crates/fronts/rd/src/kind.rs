//! The `rd.registration` kind: one RFC 9176 registration as a record.
//!
//! Body (canonical JSON, every field normalized by [`RegistrationKind::prepare`]):
//! - `ep` (1–63 bytes, no control characters), `d` (sector, same rules, "" when
//!   absent), `base` (`coap[s]://authority`, no zone identifier), `lt`
//!   (lifetime, seconds, 1..=2^32-1; also the lease length), `attrs` (extra
//!   registration attributes such as `et`, as `[name, value|null]` pairs),
//!   `links` (the Limited Link Format payload parsed: `{href, attrs}`),
//!   `expired` (set when the lease runs out), `auth` (the DTLS PSK identity
//!   that registered it over coaps; absent for coap: see [`crate::fcfr`]).
//!
//! The record id is `r` + 20 hex digits of BLAKE3(origin, ep, d): stable per
//! (ep, d) at its origin, so a re-registration replaces the same record and
//! keeps its location. New ids are written at once (no mesh vote): two
//! centers never pick the same id. Pure: no I/O, no clock.

use crate::links::{self, Link};
use regmesh_core::kind::{Creation, Kind, Lease, Prepared, ValidationError};
use regmesh_core::Visibility;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Name of the kind in records.
pub const REGISTRATION: &str = "rd.registration";
/// Default lifetime (RFC 9176 §5.3), seconds.
pub const LT_DEFAULT_S: u64 = 90_000;
/// Longest lifetime, seconds (RFC 9176: 1 to 2^32-1... we keep the upper bound).
pub const LT_MAX_S: u64 = u32::MAX as u64;
/// Longest `ep` or `d`, bytes (RFC 9176 §5.3).
pub const NAME_BYTES_MAX: usize = 63;
/// Most extra registration attributes.
pub const EXTRA_ATTRS_MAX: usize = 16;
/// Longest prefix indexed for `*` lookups, characters: a value's prefixes of
/// 1 to this many characters are index terms of `<field>_prefix`.
pub const PREFIX_CHARS_MAX: usize = 12;
/// The prefix-indexed fields, each with its prefix index field.
pub const PREFIXED: &[(&str, &str)] = &[
    ("ep", "ep_prefix"),
    ("d", "d_prefix"),
    ("et", "et_prefix"),
    ("rt", "rt_prefix"),
    ("if", "if_prefix"),
];

/// The prefixes of `v` a `<field>_prefix` index holds: 1 to
/// [`PREFIX_CHARS_MAX`] characters.
pub fn prefixes(v: &str) -> impl Iterator<Item = &str> {
    v.char_indices()
        .skip(1)
        .map(|(i, _)| i)
        .chain(std::iter::once(v.len()))
        .take(PREFIX_CHARS_MAX)
        .filter(|&i| i > 0)
        .map(move |i| &v[..i])
}

/// One registration, as stored in the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub ep: String,
    pub d: String,
    pub base: String,
    pub lt: u64,
    #[serde(default)]
    pub attrs: Vec<(String, Option<String>)>,
    #[serde(default)]
    pub links: Vec<Link>,
    #[serde(default)]
    pub expired: bool,
    /// The DTLS identity bound to the name (first come, first remembered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
}

impl Registration {
    /// The value for the `epd` index: `d` and `ep` joined unambiguously.
    pub fn epd(ep: &str, d: &str) -> String {
        format!("{}:{d}/{ep}", d.len())
    }

    /// From a record body; None if it is not one.
    pub fn from_body(body: &str) -> Option<Registration> {
        serde_json::from_str(body).ok()
    }
}

/// The record id of (ep, d) registered at `origin`.
pub fn record_id(origin: &str, ep: &str, d: &str) -> String {
    let mut h = blake3::Hasher::new();
    for part in [origin, ep, d] {
        h.update(&(part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let hex = h.finalize().to_hex();
    format!("r{}", &hex[..20])
}

/// Checks `ep` or `d` (RFC 9176 §5.3: at most 63 bytes, no control characters).
pub fn check_name(field: &str, v: &str, allow_empty: bool) -> Result<(), ValidationError> {
    if (v.is_empty() && !allow_empty) || v.len() > NAME_BYTES_MAX {
        return Err(ValidationError::new(
            field,
            format!("must be 1 to {NAME_BYTES_MAX} bytes"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(ValidationError::new(field, "must not contain control characters"));
    }
    Ok(())
}

/// Checks a base URI: `coap://` or `coaps://` (or `+tcp`), an authority,
/// no path beyond `/`, no zone identifier in an IP literal.
pub fn check_base(base: &str) -> Result<(), ValidationError> {
    let e = |m: &str| ValidationError::new("base", m.to_string());
    let rest = ["coap://", "coaps://", "coap+tcp://", "coaps+tcp://"]
        .iter()
        .find_map(|s| base.strip_prefix(s))
        .ok_or_else(|| e("must be a coap:// or coaps:// URI"))?;
    if base.len() > links::VALUE_BYTES_MAX || base.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(e("too long or with white space"));
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() || rest[authority.len()..].len() > 1 || rest.contains(['?', '#']) {
        return Err(e("must be scheme://authority with no path, query or fragment"));
    }
    if authority.contains('%') {
        return Err(e("must not carry a zone identifier"));
    }
    Ok(())
}

/// The `rd.registration` kind.
pub struct RegistrationKind;

impl Kind for RegistrationKind {
    fn name(&self) -> &'static str {
        REGISTRATION
    }

    fn prepare(&self, id: &str, input: Value) -> Result<Prepared, ValidationError> {
        regmesh_core::validate_record_id(id).map_err(|e| ValidationError::new("id", e.0))?;
        let reg: Registration = serde_json::from_value(input).map_err(|e| ValidationError::new("", e.to_string()))?;
        check_name("ep", &reg.ep, false)?;
        check_name("d", &reg.d, true)?;
        check_base(&reg.base)?;
        if reg.lt == 0 || reg.lt > LT_MAX_S {
            return Err(ValidationError::new("lt", format!("must be 1 to {LT_MAX_S}")));
        }
        if reg.attrs.len() > EXTRA_ATTRS_MAX {
            return Err(ValidationError::new("attrs", format!("at most {EXTRA_ATTRS_MAX}")));
        }
        if reg.auth.as_deref().is_some_and(|a| {
            a.is_empty() || a.len() > crate::psk::IDENTITY_BYTES_MAX || a.chars().any(char::is_control)
        }) {
            return Err(ValidationError::new("auth", "must be a PSK identity"));
        }
        if reg.links.len() > links::LINKS_MAX {
            return Err(ValidationError::new("links", format!("at most {}", links::LINKS_MAX)));
        }
        let lt = reg.lt;
        // `expired` is kept as given: a replica re-prepares stored bodies,
        // expired ones included, and must get the same body back.
        let body = serde_json::to_value(reg).expect("serializes");
        Ok(Prepared {
            body,
            lease_s: Some(lt),
            visibility: Visibility::Public,
        })
    }

    fn index_fields(&self) -> &'static [&'static str] {
        &[
            "epd",
            "ep",
            "d",
            "rt",
            "if",
            "et",
            "ep_prefix",
            "d_prefix",
            "rt_prefix",
            "if_prefix",
            "et_prefix",
        ]
    }

    /// Nothing is indexed once expired: index lookups skip expired ones.
    /// Besides each value (word, for `rt`, `if`, `et`), its first 1 to
    /// [`PREFIX_CHARS_MAX`] characters under `<field>_prefix`, so that `rt=temp*`
    /// is answered from the index and not by a scan.
    fn index_terms(&self, body: &Value) -> Vec<(&'static str, String)> {
        let Ok(r) = serde_json::from_value::<Registration>(body.clone()) else {
            return Vec::new();
        };
        if r.expired {
            return Vec::new();
        }
        let mut out = vec![("epd", Registration::epd(&r.ep, &r.d)), ("ep", r.ep.clone())];
        if !r.d.is_empty() {
            out.push(("d", r.d.clone()));
        }
        let mut push = |f: &'static str, v: &str| {
            for word in v.split_ascii_whitespace() {
                let t = (f, word.to_string());
                if !out.contains(&t) {
                    out.push(t);
                }
            }
        };
        for (n, v) in &r.attrs {
            if n == "et" {
                push("et", v.as_deref().unwrap_or(""));
            }
        }
        for l in &r.links {
            for (n, v) in &l.attrs {
                match n.as_str() {
                    "rt" => push("rt", v.as_deref().unwrap_or("")),
                    "if" => push("if", v.as_deref().unwrap_or("")),
                    _ => {}
                }
            }
        }
        let mut prefixed = std::collections::BTreeSet::new();
        for (f, v) in &out {
            if let Some((_, pf)) = PREFIXED.iter().find(|(n, _)| n == f) {
                prefixed.extend(prefixes(v).map(|p| (*pf, p.to_string())));
            }
        }
        out.extend(prefixed);
        out
    }

    fn on_lease_expired(&self, body: &mut Value) {
        body["expired"] = Value::Bool(true);
    }

    fn on_heartbeat(&self, body: &mut Value) {
        body["expired"] = Value::Bool(false);
    }

    fn is_expired_state(&self, body: &Value) -> bool {
        body.get("expired").and_then(Value::as_bool) == Some(true)
    }

    fn creation(&self) -> Creation {
        Creation::Free
    }

    fn lease(&self) -> Lease {
        Lease::BodyField("lt")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layout_and_refusals() {
        let id = record_id("c1", "node1", "");
        assert_eq!(id, record_id("c1", "node1", ""));
        assert_ne!(id, record_id("c2", "node1", ""));
        assert_ne!(id, record_id("c1", "node1", "x"));
        let body = json!({"ep": "node1", "d": "", "base": "coap://[2001:db8::1]:5683", "lt": 60,
            "attrs": [["et", "oic.d.sensor"]], "links": [{"href": "/t", "attrs": [["rt", "temp x"]]}]});
        let p = RegistrationKind.prepare(&id, body.clone()).unwrap();
        assert_eq!(p.lease_s, Some(60));
        let terms = RegistrationKind.index_terms(&p.body);
        assert!(terms.contains(&("rt", "x".into())) && terms.contains(&("et", "oic.d.sensor".into())));
        // Prefixes of 1 to PREFIX_CHARS_MAX characters, per word.
        for t in ["t", "te", "tem", "temp", "x"] {
            assert!(terms.contains(&("rt_prefix", t.into())), "{t}");
        }
        assert!(terms.contains(&("ep_prefix", "node".into())));
        assert!(terms.contains(&("et_prefix", "oic.d.senso".into())));
        assert_eq!(prefixes("abcdefghijklmnop").last(), Some("abcdefghijkl"));
        assert!(!terms.iter().any(|(f, v)| f.ends_with("_prefix") && v.is_empty()));
        assert_eq!(prefixes("é1").collect::<Vec<_>>(), ["é", "é1"]);
        let mut b = p.body.clone();
        RegistrationKind.on_lease_expired(&mut b);
        assert!(RegistrationKind.is_expired_state(&b) && RegistrationKind.index_terms(&b).is_empty());
        // Stored bodies (expired ones too) are already normalized: replicas check that.
        for stored in [p.body.clone(), b] {
            assert_eq!(RegistrationKind.prepare(&id, stored.clone()).unwrap().body, stored);
        }
        for (patch, field) in [
            (json!({"ep": "x".repeat(64)}), "ep"),
            (json!({"ep": "a\u{1}"}), "ep"),
            (json!({"base": "coap://[fe80::1%25eth0]"}), "base"),
            (json!({"base": "http://h"}), "base"),
            (json!({"base": "coap://h/p"}), "base"),
            (json!({"lt": 0}), "lt"),
        ] {
            let mut b = body.clone();
            for (k, v) in patch.as_object().unwrap() {
                b[k] = v.clone();
            }
            assert_eq!(RegistrationKind.prepare(&id, b).unwrap_err().field, field);
        }
    }
}
