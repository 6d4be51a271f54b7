//! Kinds: what makes a record an agent, a resource-directory registration, and
//! so on. A kind validates and normalizes client input, names the fields it
//! wants indexed, and says what a lease expiry and a heartbeat do to a body.
//!
//! Everything below (codec, store, indexes) and beside (replication) handles
//! records generically; adding a kind touches only this registry.

use crate::record::{Record, Visibility};
use serde_json::{Map, Value};
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

/// A record kind. Implementations must be pure: no I/O, no clock.
///
/// A kind whose records have leases keeps the lease length in the body field
/// `lease_s` (seconds); a heartbeat renews the lease for that long.
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
}

/// The set of kinds a center knows, by name.
#[derive(Clone, Default)]
pub struct Kinds {
    by_name: BTreeMap<&'static str, Arc<dyn Kind>>,
}

impl Kinds {
    /// The built-in kinds.
    pub fn builtin() -> Self {
        let mut k = Kinds::default();
        k.register(Arc::new(crate::agent::AgentKind));
        k
    }

    pub fn register(&mut self, kind: Arc<dyn Kind>) {
        self.by_name.insert(kind.name(), kind);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Kind>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }
}

/// The JSON a client sees for a live record: the body's fields plus `id`,
/// `visibility`, and the fields the center assigned.
pub fn view(r: &Record, stale: bool) -> Value {
    let mut m = match r.body_value() {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    m.insert("id".into(), Value::String(r.id.clone()));
    m.insert("visibility".into(), Value::String(r.visibility.to_string()));
    m.insert("origin".into(), Value::String(r.origin.clone()));
    m.insert("version".into(), Value::String(r.version.to_string()));
    m.insert("seq".into(), Value::from(r.seq));
    m.insert(
        "updated_at".into(),
        Value::String(crate::time::rfc3339_ms(r.version.wall_ms)),
    );
    if let Some(t) = r.expires_at_ms {
        m.insert("expires_at".into(), Value::String(crate::time::rfc3339_ms(t)));
    }
    if stale {
        m.insert("stale".into(), Value::Bool(true));
    }
    Value::Object(m)
}

/// Fields of [`view`] that the center assigns; accepted in input (so a client
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
