//! The console's metrics (`regmesh_rpki_*` on the node's `/metrics`):
//! VRPs, cycles and their duration, repositories by outcome, bytes
//! fetched, tasks sent to sync nodes by outcome and those reassigned, and
//! marked sync nodes.
//! Registered once at start; set after each cycle.
//!
//! Must never: register a series per repository or per node (the status
//! API has those; metrics stay bounded).

use regmesh_node::handle::Metric;
use regmesh_node::metrics::MetricError;
use regmesh_node::NodeHandle;

/// The console's metric cells.
#[derive(Clone)]
pub struct ConsoleMetrics {
    pub vrps: Metric,
    pub cycles: Metric,
    pub cycle_duration_ms: Metric,
    pub repos_ok: Metric,
    pub repos_failed: Metric,
    pub fetched_bytes: Metric,
    pub tasks_done: Metric,
    pub tasks_failed: Metric,
    pub tasks_stalled: Metric,
    pub tasks_reassigned: Metric,
    pub nodes_marked: Metric,
}

impl ConsoleMetrics {
    pub fn register(node: &NodeHandle) -> Result<ConsoleMetrics, MetricError> {
        let g = |n: &str, h: &str| node.gauge(n, h, &[]);
        let c = |n: &str, h: &str| node.counter(n, h, &[]);
        let tasks = |outcome: &str| {
            node.counter(
                "regmesh_rpki_tasks_total",
                "Fetch tasks sent to sync nodes, by outcome.",
                &[("outcome", outcome)],
            )
        };
        Ok(ConsoleMetrics {
            vrps: g("regmesh_rpki_vrps", "VRPs in the last published set.")?,
            cycles: c("regmesh_rpki_cycles_total", "Validation cycles finished.")?,
            cycle_duration_ms: g("regmesh_rpki_cycle_duration_ms", "Duration of the last cycle, ms.")?,
            repos_ok: g(
                "regmesh_rpki_repositories_ok",
                "Repositories whose last fetch succeeded.",
            )?,
            repos_failed: g(
                "regmesh_rpki_repositories_failed",
                "Repositories whose last fetch failed.",
            )?,
            fetched_bytes: c(
                "regmesh_rpki_fetched_bytes_total",
                "RRDP bytes fetched (directly or via sync nodes).",
            )?,
            tasks_done: tasks("done")?,
            tasks_failed: tasks("failed")?,
            tasks_stalled: tasks("stalled")?,
            tasks_reassigned: c(
                "regmesh_rpki_tasks_reassigned_total",
                "Tasks given to another sync node (or the console) after one failed or stalled.",
            )?,
            nodes_marked: g(
                "regmesh_rpki_sync_nodes_marked",
                "Sync nodes marked for returning wrong hashes.",
            )?,
        })
    }
}
