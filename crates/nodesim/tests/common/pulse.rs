//! A test front, `pulse`, whose task writes from inside a center: it
//! creates an id of its own kind, deletes it, waits a little longer each
//! attempt and creates it again, noting what it was told. Its writes are
//! started by a timer of the center's own runtime, as the lease sweeper's
//! are, so a create can be queued in the same tick as a purge and behind
//! it (a client's request, arriving from the network, always runs after
//! the center's timers in a tick).

use regmesh_core::{Creation, Kind, Lease, Prepared, ValidationError, Visibility};
use regmesh_node::center::Outcome;
use regmesh_node::front::{Front, FrontError, Task};
use regmesh_node::{NodeBuilder, NodeHandle};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const KIND: &str = "pulse";

/// Set by the test once the mesh is up: the task starts then, once per
/// process (not again after a restart).
pub static GO: AtomicBool = AtomicBool::new(false);
static STARTED: AtomicBool = AtomicBool::new(false);
/// Set once every attempt is made.
pub static DONE: AtomicBool = AtomicBool::new(false);
/// Each acknowledged second create: (id, version wall ms, logical).
pub static ACKED: Mutex<Vec<(String, u64, u32)>> = Mutex::new(Vec::new());
/// What went wrong inside the task (a refused write, a failed read back).
pub static FAILED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Attempts, and the longest wait between a delete and the create after
/// it (the waits cycle through 0..WAIT_CYCLE_MS).
pub const ATTEMPTS: u64 = 100;
pub const WAIT_CYCLE_MS: u64 = 50;

struct PulseKind;

impl Kind for PulseKind {
    fn name(&self) -> &'static str {
        KIND
    }
    fn prepare(&self, _id: &str, input: Value) -> Result<Prepared, ValidationError> {
        let n = input
            .get("n")
            .and_then(Value::as_u64)
            .ok_or_else(|| ValidationError::new("n", "required"))?;
        Ok(Prepared {
            body: json!({ "n": n }),
            lease_s: None,
            visibility: Visibility::Public,
        })
    }
    fn index_fields(&self) -> &'static [&'static str] {
        &[]
    }
    fn index_terms(&self, _: &Value) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    fn on_lease_expired(&self, _: &mut Value) {}
    fn on_heartbeat(&self, _: &mut Value) {}
    fn is_expired_state(&self, _: &Value) -> bool {
        false
    }
    fn creation(&self) -> Creation {
        Creation::Free
    }
    fn lease(&self) -> Lease {
        Lease::None
    }
}

/// The front; its task writes at `c1` only.
pub struct PulseFront;

impl Front for PulseFront {
    fn name(&self) -> &'static str {
        KIND
    }
    fn on_by_default(&self) -> bool {
        true
    }
    fn kinds(&self) -> Vec<Arc<dyn Kind>> {
        vec![Arc::new(PulseKind)]
    }
    fn tasks(&self, node: &NodeHandle) -> Result<Vec<Task>, FrontError> {
        if node.center_id() != "c1" {
            return Ok(Vec::new());
        }
        Ok(vec![Box::pin(pulse(node.clone()))])
    }
}

/// Adds the front to a center's builder.
pub fn with_pulse(b: NodeBuilder) -> NodeBuilder {
    b.front(PulseFront)
}

fn body(n: u64) -> Prepared {
    PulseKind.prepare("", json!({ "n": n })).expect("valid")
}

fn fail(what: String) {
    FAILED.lock().unwrap().push(what);
}

async fn pulse(node: NodeHandle) {
    while !GO.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    for k in 0..ATTEMPTS {
        let id = format!("p{k}");
        if let Err(e) = node.put(KIND, &id, body(1), None).await {
            fail(format!("{id}: first create: {e}"));
            continue;
        }
        if let Err(e) = node.delete(KIND, &id, None).await {
            fail(format!("{id}: delete: {e}"));
            continue;
        }
        tokio::time::sleep(Duration::from_millis(k % WAIT_CYCLE_MS)).await;
        match node.put(KIND, &id, body(2), None).await {
            Ok(Outcome::Created(r)) => {
                ACKED
                    .lock()
                    .unwrap()
                    .push((id.clone(), r.version.wall_ms, r.version.logical));
                match node.get(KIND, &id) {
                    Ok(Some(back)) if back.version == r.version => {}
                    other => fail(format!("{id}: acknowledged create reads back as {other:?}")),
                }
            }
            other => fail(format!("{id}: second create: {other:?}")),
        }
    }
    DONE.store(true, Ordering::SeqCst);
}
