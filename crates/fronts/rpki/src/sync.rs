//! The sync node (RSN) side of the control plane: it publishes its
//! metadata and load as its `rpki.node` record (document 001 §3.2.3) every
//! `refresh_s`, with a lease (`lease_s`, three periods by default) so the
//! console stops scheduling on a node that died. Also reads those records back for the
//! console's status.
//!
//! Must never: write another node's record, or report load it did not
//! measure (unreadable /proc files give zeros, said in the log once).

use crate::config::{Role, RpkiConfig};
use crate::kinds::{NodeBody, NODE};
use regmesh_node::handle::ListQuery;
use regmesh_node::NodeHandle;
use serde_json::Value;

/// Node records listed for status, at most.
pub const NODES_LISTED_MAX: usize = 1000;

/// CPU use per mille from the one-minute load average and the CPU count.
fn cpu_permille() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let load: f64 = text.split_whitespace().next()?.parse().ok()?;
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    Some(((load / cpus) * 1000.0).clamp(0.0, 1000.0) as u32)
}

/// Memory use per mille from /proc/meminfo.
fn mem_permille() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    let (total, avail) = (field("MemTotal:")?, field("MemAvailable:")?);
    Some((1000 - avail.min(total) * 1000 / total.max(1)) as u32)
}

/// This node's body now.
pub fn measure(cfg: &RpkiConfig, active: u32, queued: u32) -> NodeBody {
    NodeBody {
        role: cfg.role,
        location: cfg.location.clone(),
        region: cfg.region.clone(),
        cpu_permille: cpu_permille().unwrap_or(0),
        mem_permille: mem_permille().unwrap_or(0),
        net_bps: 0,
        active,
        queued,
        speed_bps: Default::default(),
        lease_s: cfg.node_lease_s(),
        expired: false,
    }
}

/// Retry period after a record write failed (the center may not be in its
/// mesh yet), seconds.
pub const RETRY_S: u64 = 2;

/// Writes this node's record; false if it was not written.
pub async fn publish(node: &NodeHandle, body: &NodeBody) -> bool {
    let Some(kind) = node.kind(NODE) else { return false };
    let id = node.center_id().to_string();
    let value = serde_json::to_value(body).expect("a body serializes");
    match kind.prepare(&id, value) {
        Ok(p) => match node.put(NODE, &id, p, None).await {
            Ok(_) => true,
            Err(e) => {
                tracing::info!(error = %e, "sync node record not written; retrying soon");
                false
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "sync node record refused");
            false
        }
    }
}

/// The sync node's loop: its record now and every `refresh_s`, with its
/// task counts, download rate and measured speeds.
pub async fn run(node: NodeHandle, cfg: RpkiConfig, rsn: crate::rsn::Rsn) {
    debug_assert_eq!(cfg.role, Role::Sync);
    let mut closing = node.closing();
    let mut last = (std::time::Instant::now(), rsn.bytes_total());
    loop {
        let (active, queued) = rsn.load();
        let mut body = measure(&cfg, active, queued);
        body.speed_bps = rsn.speeds();
        let (t, b) = (std::time::Instant::now(), rsn.bytes_total());
        body.net_bps = (b - last.1) * 1000 / (t - last.0).as_millis().max(1) as u64;
        last = (t, b);
        let wait_s = if publish(&node, &body).await {
            cfg.refresh_s
        } else {
            RETRY_S.min(cfg.refresh_s)
        };
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(wait_s)) => {}
            _ = closing.changed() => return,
        }
    }
}

/// Every sync node's record as JSON (id, stale flag, body), for status.
pub fn node_views(node: &NodeHandle) -> Value {
    let q = ListQuery {
        limit: Some(NODES_LISTED_MAX.min(node.limits().list_limit_max)),
        ..Default::default()
    };
    match node.list(NODE, &q) {
        Ok(page) => Value::Array(
            page.records
                .iter()
                .map(|r| {
                    let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                    serde_json::json!({"id": r.id, "stale": node.is_stale(r), "body": body})
                })
                .collect(),
        ),
        Err(e) => serde_json::json!({"error": e.to_string()}),
    }
}
