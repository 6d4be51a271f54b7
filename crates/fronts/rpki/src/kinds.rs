//! The front's record kinds, the control plane document 001 §3 describes,
//! carried by the mesh like any record:
//! - `rpki.node` (id: the sync node's center id): its metadata and load
//!   (§3.1.1, §3.2.3), with a lease so a dead node's record expires;
//! - `rpki.repo` (id: [`repo_id`] of the notification URI): a publication
//!   point's RRDP state at the console;
//! - `rpki.task` (id: [`task_id`]): a fetch the console assigned to a node.
//!
//! Each body is a typed struct; `prepare` parses it strictly (unknown
//! fields refused) and writes it back canonical. Pure: no I/O, no clock.
//! Must never: accept a body its struct does not describe.

use regmesh_core::kind::{Kind, Lease, Prepared, ValidationError};
use regmesh_core::Visibility;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::marker::PhantomData;

pub const NODE: &str = "rpki.node";
pub const REPO: &str = "rpki.repo";
pub const TASK: &str = "rpki.task";

/// Longest URI or text field in a body, bytes.
pub const TEXT_BYTES_MAX: usize = 2048;
/// Most repository hosts with a measured speed in a node's body.
pub const SPEEDS_MAX: usize = 4096;
/// Longest lease of a node record, seconds.
pub const NODE_LEASE_S_MAX: u64 = 86_400;

/// A sync node's metadata and load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeBody {
    pub role: crate::config::Role,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    pub cpu_permille: u32,
    pub mem_permille: u32,
    /// Bytes this node fetched per second over the last period.
    pub net_bps: u64,
    pub active: u32,
    pub queued: u32,
    /// Measured download speed per repository host, bytes per second.
    #[serde(default)]
    pub speed_bps: BTreeMap<String, u64>,
    pub lease_s: u64,
    #[serde(default)]
    pub expired: bool,
}

/// A publication point's state at the console (§3.1.1 2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoBody {
    pub notify: String,
    pub session: String,
    pub serial: u64,
    pub last_fetch_ms: u64,
    #[serde(default)]
    pub last_success_ms: Option<u64>,
    #[serde(default)]
    pub last_error: Option<String>,
    pub bytes: u64,
    pub duration_ms: u64,
    /// Which center fetched it last (the console's own id when it did).
    pub by: String,
}

/// A task's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Assigned,
    Done,
    /// The node answered that the task failed (or sent wrong bytes).
    Failed,
    /// The node did not answer within the console's `task_stall_ms`.
    Stalled,
}

/// A fetch the console ordered (§3.1.2–3.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskBody {
    pub node: String,
    pub notify: String,
    /// The session and serial the console holds (the node may send deltas
    /// from there).
    #[serde(default)]
    pub session: Option<String>,
    #[serde(default)]
    pub serial: Option<u64>,
    pub deadline_ms: u64,
    pub state: TaskState,
}

/// Checks the text fields of a body.
pub trait Check {
    fn check(&self) -> Result<(), ValidationError>;
    fn lease_s(&self) -> Option<u64> {
        None
    }
}

fn text(field: &str, s: &str) -> Result<(), ValidationError> {
    if s.len() > TEXT_BYTES_MAX || s.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            format!("at most {TEXT_BYTES_MAX} bytes, no control characters"),
        ));
    }
    Ok(())
}

impl Check for NodeBody {
    fn check(&self) -> Result<(), ValidationError> {
        for (f, v) in [("location", &self.location), ("region", &self.region)] {
            if let Some(v) = v {
                text(f, v)?;
            }
        }
        if self.cpu_permille > 1000 || self.mem_permille > 1000 {
            return Err(ValidationError::new("cpu_permille", "per mille: 0 to 1000"));
        }
        if self.speed_bps.len() > SPEEDS_MAX {
            return Err(ValidationError::new("speed_bps", format!("at most {SPEEDS_MAX} hosts")));
        }
        for h in self.speed_bps.keys() {
            text("speed_bps", h)?;
        }
        if self.lease_s == 0 || self.lease_s > NODE_LEASE_S_MAX {
            return Err(ValidationError::new("lease_s", format!("1 to {NODE_LEASE_S_MAX}")));
        }
        Ok(())
    }
    fn lease_s(&self) -> Option<u64> {
        Some(self.lease_s)
    }
}

impl Check for RepoBody {
    fn check(&self) -> Result<(), ValidationError> {
        text("notify", &self.notify)?;
        text("session", &self.session)?;
        text("by", &self.by)?;
        if let Some(e) = &self.last_error {
            text("last_error", e)?;
        }
        Ok(())
    }
}

impl Check for TaskBody {
    fn check(&self) -> Result<(), ValidationError> {
        text("node", &self.node)?;
        text("notify", &self.notify)?;
        if let Some(s) = &self.session {
            text("session", s)?;
        }
        Ok(())
    }
}

/// One kind over a typed body `B`.
pub struct TypedKind<B> {
    name: &'static str,
    fields: &'static [&'static str],
    _b: PhantomData<fn() -> B>,
}

impl<B> TypedKind<B> {
    const fn new(name: &'static str, fields: &'static [&'static str]) -> Self {
        TypedKind {
            name,
            fields,
            _b: PhantomData,
        }
    }
}

/// The three kinds, in registration order.
pub fn all() -> Vec<std::sync::Arc<dyn Kind>> {
    vec![
        std::sync::Arc::new(TypedKind::<NodeBody>::new(NODE, &["region"])),
        std::sync::Arc::new(TypedKind::<RepoBody>::new(REPO, &["by"])),
        std::sync::Arc::new(TypedKind::<TaskBody>::new(TASK, &["node", "state"])),
    ]
}

impl<B> Kind for TypedKind<B>
where
    B: Serialize + DeserializeOwned + Check + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn prepare(&self, _id: &str, input: Value) -> Result<Prepared, ValidationError> {
        let body: B = serde_json::from_value(input).map_err(|e| ValidationError::new("body", e.to_string()))?;
        body.check()?;
        Ok(Prepared {
            lease_s: body.lease_s(),
            body: serde_json::to_value(&body).expect("a typed body serializes"),
            visibility: Visibility::Public,
        })
    }

    fn index_fields(&self) -> &'static [&'static str] {
        self.fields
    }

    fn index_terms(&self, body: &Value) -> Vec<(&'static str, String)> {
        self.fields
            .iter()
            .filter_map(|f| match body.get(*f)? {
                Value::String(s) => Some((*f, s.clone())),
                _ => None,
            })
            .collect()
    }

    fn on_lease_expired(&self, body: &mut Value) {
        if self.name == NODE {
            body["expired"] = Value::Bool(true);
        }
    }

    fn on_heartbeat(&self, body: &mut Value) {
        if self.name == NODE {
            body["expired"] = Value::Bool(false);
        }
    }

    fn is_expired_state(&self, body: &Value) -> bool {
        body.get("expired").and_then(Value::as_bool).unwrap_or(false)
    }

    fn lease(&self) -> Lease {
        if self.name == NODE {
            Lease::BodyField("lease_s")
        } else {
            Lease::None
        }
    }
}

/// Record id of the repository whose notification file is `notify`:
/// `r` and 24 hex digits of its BLAKE3.
pub fn repo_id(notify: &str) -> String {
    format!("r{}", &blake3::hash(notify.as_bytes()).to_hex()[..24])
}

/// Record id of a task: the repository's id, the node, and the console's
/// task counter.
pub fn task_id(notify: &str, node: &str, n: u64) -> String {
    format!(
        "t{}-{n}",
        &blake3::hash(format!("{notify}\n{node}").as_bytes()).to_hex()[..16]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_are_strict_and_node_records_have_leases() {
        let kinds = all();
        let node = &kinds[0];
        let ok = json!({"role":"sync","region":"ripe","cpu_permille":10,"mem_permille":20,
            "net_bps":0,"active":0,"queued":0,"speed_bps":{"rrdp.example":1000},"lease_s":30});
        let p = node.prepare("c2", ok.clone()).unwrap();
        assert_eq!(p.lease_s, Some(30));
        assert_eq!(node.index_terms(&p.body), vec![("region", "ripe".to_string())]);
        let mut body = p.body.clone();
        node.on_lease_expired(&mut body);
        assert!(node.is_expired_state(&body));
        let mut extra = ok.clone();
        extra["surprise"] = json!(1);
        assert!(node.prepare("c2", extra).is_err());
        let mut bad = ok;
        bad["cpu_permille"] = json!(1001);
        assert!(node.prepare("c2", bad).is_err());
        let task = &kinds[2];
        let t = json!({"node":"c2","notify":"https://h/n.xml","deadline_ms":5,"state":"assigned"});
        assert_eq!(task.prepare("t1", t).unwrap().lease_s, None);
        assert!(task.prepare("t1", json!({"node":"c2"})).is_err());
        assert_ne!(repo_id("https://a/n.xml"), repo_id("https://b/n.xml"));
        assert!(regmesh_core::validate_record_id(&repo_id("x")).is_ok());
        assert!(regmesh_core::validate_record_id(&task_id("x", "c2", 7)).is_ok());
    }
}
