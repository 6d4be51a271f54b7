//! Counters for `/metrics` (Prometheus text format 0.0.4). Plain atomics;
//! gauges that are read from state are added by the center at scrape time.

use crate::center::{DeleteReason, EventType};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Default)]
pub struct Metrics {
    pub http_2xx: AtomicU64,
    pub http_4xx: AtomicU64,
    pub http_5xx: AtomicU64,
    pub shed: AtomicU64,
    pub commits: AtomicU64,
    pub committed_writes: AtomicU64,
    pub commit_micros: AtomicU64,
    pub events_put: AtomicU64,
    pub events_expire: AtomicU64,
    pub events_delete_client: AtomicU64,
    pub events_delete_retention: AtomicU64,
    pub events_delete_resync: AtomicU64,
    pub integrity_errors: AtomicU64,
    pub watchers: AtomicU64,
    /// Records from peers refused by `Center::verify_remote`, by reason label.
    pub replica_refused: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl Metrics {
    pub fn observe_commit(&self, writes: usize, took: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.committed_writes.fetch_add(writes as u64, Ordering::Relaxed);
        self.commit_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn count_event(&self, typ: EventType, reason: Option<DeleteReason>) {
        let c = match (typ, reason) {
            (EventType::Put, _) => &self.events_put,
            (EventType::Expire, _) => &self.events_expire,
            (EventType::Delete, Some(DeleteReason::Retention)) => &self.events_delete_retention,
            (EventType::Delete, Some(DeleteReason::Resync)) => &self.events_delete_resync,
            (EventType::Delete, _) => &self.events_delete_client,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_replica_refused(&self, reason: &'static str) {
        *self
            .replica_refused
            .lock()
            .expect("metrics lock")
            .entry(reason)
            .or_default() += 1;
    }

    pub fn count_status(&self, status: u16) {
        let c = match status {
            200..=399 => &self.http_2xx,
            400..=499 => &self.http_4xx,
            _ => &self.http_5xx,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders counters plus the given gauges `(name, help, labels, value)`.
    pub fn render(&self, gauges: &[(&'static str, &'static str, String, u64)]) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        let mut out = String::new();
        let mut family = |name: &str, typ: &str, help: &str, rows: &[(&str, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {typ}");
            for (labels, v) in rows {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {v}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {v}");
                }
            }
        };
        family(
            "regmesh_http_responses_total",
            "counter",
            "Client API responses by status class.",
            &[
                ("class=\"2xx\"", g(&self.http_2xx)),
                ("class=\"4xx\"", g(&self.http_4xx)),
                ("class=\"5xx\"", g(&self.http_5xx)),
            ],
        );
        family(
            "regmesh_load_shed_total",
            "counter",
            "Requests refused with 503 because a limit was reached.",
            &[("", g(&self.shed))],
        );
        family(
            "regmesh_commits_total",
            "counter",
            "Storage transactions committed.",
            &[("", g(&self.commits))],
        );
        family(
            "regmesh_committed_writes_total",
            "counter",
            "Record writes committed.",
            &[("", g(&self.committed_writes))],
        );
        family(
            "regmesh_commit_seconds_total",
            "counter",
            "Time spent committing transactions.",
            &[("", g(&self.commit_micros) / 1e6)],
        );
        family(
            "regmesh_changes_total",
            "counter",
            "Change events by type.",
            &[
                ("type=\"put\"", g(&self.events_put)),
                ("type=\"expire\"", g(&self.events_expire)),
                ("type=\"delete\",reason=\"client\"", g(&self.events_delete_client)),
                ("type=\"delete\",reason=\"retention\"", g(&self.events_delete_retention)),
                ("type=\"delete\",reason=\"resync\"", g(&self.events_delete_resync)),
            ],
        );
        family(
            "regmesh_integrity_errors_total",
            "counter",
            "Stored records that failed signature or digest checks.",
            &[("", g(&self.integrity_errors))],
        );
        let refused: Vec<(String, f64)> = self
            .replica_refused
            .lock()
            .expect("metrics lock")
            .iter()
            .map(|(r, n)| (format!("reason=\"{r}\""), *n as f64))
            .collect();
        let refused: Vec<(&str, f64)> = refused.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        family(
            "regmesh_replica_refused_total",
            "counter",
            "Records from peers refused (not applied, not relayed), by reason.",
            &refused,
        );
        family(
            "regmesh_watchers",
            "gauge",
            "Open watch streams.",
            &[("", g(&self.watchers))],
        );
        let mut last = "";
        for (name, help, labels, v) in gauges {
            if *name != last {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
                last = name;
            }
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {v}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        }
        out
    }
}
