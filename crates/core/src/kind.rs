//! Kinds: what makes a record an agent, a resource-directory registration, and
//! so on. A kind validates and normalizes client input, names the fields it
//! wants indexed, says how a new id is created (claimed by a mesh vote or
//! not), where its lease lives, and what a lease expiry and a heartbeat do to
//! a body.
//!
//! Everything below (codec, store, indexes) and beside (replication) handles
//! records generically. Kinds are defined by fronts (`crates/fronts/*`) and
//! registered in a [`Kinds`] set when a node starts; core defines none.
//!
//! Must never: perform I/O or read a clock (kinds are pure functions of their
//! input).

use crate::record::{Record, Visibility};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use thiserror::Error;

/// Client input was refused. Nothing was changed.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// JSON path of the offending field (`addresses[2]`, `capabilities[0].name`).
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A validated, normalized write, ready for the center to stamp and sign.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Normalized body (a JSON object).
    pub body: Value,
    /// Lease length, if the record has one.
    pub lease_s: Option<u64>,
    pub visibility: Visibility,
}

/// How a new id of a kind comes to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creation {
    /// The origin writes a new id at once (ids that cannot collide across
    /// centers, or where last-writer-wins is acceptable).
    Free,
    /// A new id is first claimed across the mesh by the two-phase vote; the
    /// write happens only once the claim is granted (names that must be
    /// unique mesh-wide).
    Claimed,
}

/// Where a kind keeps the lease length of a record, which a heartbeat renews.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Records of this kind never expire.
    None,
    /// The body field of this name holds the lease length in seconds; a
    /// record without it has no lease.
    BodyField(&'static str),
    /// Every record of this kind has this lease length, in seconds (its
    /// `prepare` must set [`Prepared::lease_s`] to it).
    Fixed(u64),
}

/// A record kind. Implementations must be pure: no I/O, no clock.
///
/// A kind whose records have leases says where the lease length is kept
/// ([`Kind::lease`]); a heartbeat renews the lease for that long.
pub trait Kind: Send + Sync + 'static {
    /// Kind name as it appears in records (`[a-z0-9.]{1,32}`).
    fn name(&self) -> &'static str;

    /// Validates the client's JSON for record `id` and returns the normalized
    /// body. Fields the center assigns (origin, version, seq, timestamps) are
    /// never taken from `input`.
    fn prepare(&self, id: &str, input: Value) -> Result<Prepared, ValidationError>;

    /// Index fields a query on this kind may filter by (besides `origin`,
    /// which every kind has).
    fn index_fields(&self) -> &'static [&'static str];

    /// `(field, value)` pairs to index for a live record with this body.
    fn index_terms(&self, body: &Value) -> Vec<(&'static str, String)>;

    /// Applies "the lease ran out" to a body (agent: status becomes offline).
    fn on_lease_expired(&self, body: &mut Value);

    /// Applies a heartbeat to a body (agent: status becomes online).
    fn on_heartbeat(&self, body: &mut Value);

    /// True if the body already reflects an expired lease.
    fn is_expired_state(&self, body: &Value) -> bool;

    /// Visibilities of parts of the body that have their own (agent:
    /// capabilities). Export policy requires a peer to be allowed every one.
    fn part_visibilities(&self, _body: &Value) -> Vec<crate::Visibility> {
        Vec::new()
    }

    /// How a new id of this kind is created. Default: [`Creation::Free`].
    fn creation(&self) -> Creation {
        Creation::Free
    }

    /// Where the lease length of a record is kept. Default: [`Lease::None`].
    fn lease(&self) -> Lease {
        Lease::None
    }

    /// The lease length (seconds) of a record with this body, as
    /// [`Kind::lease`] says. The writer calls this on heartbeats and when it
    /// judges local renewals; it never reads a lease field by name.
    fn lease_s(&self, body: &Value) -> Option<u64> {
        match self.lease() {
            Lease::None => None,
            Lease::BodyField(f) => body.get(f).and_then(Value::as_u64),
            Lease::Fixed(s) => Some(s),
        }
    }
}

/// The set of kinds a center knows, by name.
#[derive(Clone, Default)]
pub struct Kinds {
    by_name: BTreeMap<&'static str, Arc<dyn Kind>>,
}

impl Kinds {
    /// Adds `kind`. Refused (and nothing changed) if a kind of that name is
    /// already registered.
    pub fn register(&mut self, kind: Arc<dyn Kind>) -> Result<(), DuplicateKind> {
        let name = kind.name();
        if self.by_name.contains_key(name) {
            return Err(DuplicateKind(name));
        }
        self.by_name.insert(name, kind);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Kind>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }
}

/// Two kinds of the same name were registered. The set is unchanged.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[error("kind {0:?} is registered twice")]
pub struct DuplicateKind(pub &'static str);

/// Top-level names the envelope puts into a record's JSON view; a kind's body
/// must not use them (the center refuses such a body).
pub const ENVELOPE_FIELDS: &[&str] = &[
    "id",
    "visibility",
    "origin",
    "version",
    "seq",
    "updated_at",
    "expires_at",
    "stale",
];

/// The JSON text a client sees for a live record: the body's fields plus
/// `id`, `visibility`, and the fields the center assigned. Built by splicing
/// the envelope into the canonical body text, without re-parsing the body.
pub fn view_json(r: &Record, stale: bool) -> String {
    let q = |s: &str| serde_json::to_string(s).expect("strings serialize");
    let mut out = String::with_capacity(r.body.len() + 200);
    out.push_str("{\"id\":");
    out.push_str(&q(&r.id));
    out.push_str(",\"visibility\":");
    out.push_str(&q(&r.visibility.to_string()));
    out.push_str(",\"origin\":");
    out.push_str(&q(&r.origin));
    out.push_str(",\"version\":\"");
    out.push_str(&r.version.to_string());
    out.push_str("\",\"seq\":");
    out.push_str(&r.seq.to_string());
    out.push_str(",\"updated_at\":\"");
    out.push_str(&crate::time::rfc3339_ms(r.version.wall_ms));
    out.push('"');
    if let Some(t) = r.expires_at_ms {
        out.push_str(",\"expires_at\":\"");
        out.push_str(&crate::time::rfc3339_ms(t));
        out.push('"');
    }
    if stale {
        out.push_str(",\"stale\":true");
    }
    let inner = r
        .body
        .trim()
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .unwrap_or("")
        .trim();
    if !inner.is_empty() {
        out.push(',');
        out.push_str(inner);
    }
    out.push('}');
    out
}

/// [`view_json`] as a parsed value. A body that is not a JSON object (only
/// an origin that signed one can put it here) is left out, and the envelope
/// alone is returned: the view never fails on bytes a peer supplied.
pub fn view(r: &Record, stale: bool) -> Value {
    serde_json::from_str(&view_json(r, stale)).unwrap_or_else(|_| {
        let envelope = Record {
            body: String::new(),
            ..r.clone()
        };
        serde_json::from_str(&view_json(&envelope, stale)).expect("the envelope alone is valid JSON")
    })
}

/// Fields of [`view_json`] that the center assigns; accepted in input (so a client
/// can PUT back what it GOT) and ignored.
pub const ASSIGNED_FIELDS: &[&str] = &["origin", "version", "seq", "updated_at", "expires_at", "stale"];

/// Depth of a JSON value (a scalar is 1).
pub fn json_depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(json_depth).max().unwrap_or(0),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Hlc, Visibility};

    #[test]
    fn view_splices_envelope_into_body() {
        let mut r = Record {
            kind: "agent".into(),
            id: "did:web:x\"y".into(),
            origin: "c1".into(),
            version: Hlc::new(1_700_000_000_123, 4),
            seq: 9,
            expires_at_ms: Some(1_700_000_060_123),
            visibility: Visibility::Authorized("g".into()),
            deleted: false,
            body: r#"{"addresses":["::1"],"status":"online"}"#.into(),
            sig: [0; 64],
        };
        let v = view(&r, true);
        assert_eq!(v["id"], "did:web:x\"y");
        assert_eq!(v["visibility"], "authorized:g");
        assert_eq!(v["version"], "1700000000123.4");
        assert_eq!(v["seq"], 9);
        assert_eq!(v["updated_at"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["expires_at"], "2023-11-14T22:14:20.123Z");
        assert_eq!(v["stale"], true);
        assert_eq!(v["addresses"][0], "::1");
        r.body = "{}".into();
        r.expires_at_ms = None;
        let v = view(&r, false);
        assert!(v.get("expires_at").is_none() && v.get("stale").is_none());
        assert_eq!(v.as_object().unwrap().len(), 6);
    }
}
