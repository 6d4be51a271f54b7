//! Counters for `/metrics` (Prometheus text format 0.0.4). Plain atomics;
//! gauges that are read from state are added by the center at scrape time.
//! Fronts add series of their own through [`Metrics::register`] (called by
//! `NodeHandle::counter` and `NodeHandle::gauge`); those are rendered after
//! the node's. Must never: let a front's series replace or shadow a node
//! family, or grow without bound ([`FRONT_SERIES_MAX`]).

use crate::center::{DeleteReason, EventType};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most series all fronts together may register.
pub const FRONT_SERIES_MAX: usize = 1024;

/// Families the node renders itself (besides the center's gauges, which
/// [`Metrics::register`] is also given).
pub const NODE_FAMILIES: &[&str] = &[
    "regmesh_http_responses_total",
    "regmesh_load_shed_total",
    "regmesh_commits_total",
    "regmesh_committed_writes_total",
    "regmesh_commit_seconds_total",
    "regmesh_changes_total",
    "regmesh_integrity_errors_total",
    "regmesh_watchers",
    "regmesh_peer_call_seconds",
    "regmesh_peer_call_failures_total",
    "regmesh_propagation_seconds",
];

/// Whether a front's series only goes up or may go both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
        }
    }
}

/// A series could not be registered. Nothing was registered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetricError {
    /// The name is not `[a-z_][a-z0-9_]*` under the required prefix.
    #[error("metric name {name:?} must match [a-z0-9_]+ and start with {prefix:?}")]
    BadName { name: String, prefix: String },
    /// A label name or value cannot be rendered.
    #[error("metric {name}: label {label:?} must be [a-z_][a-z0-9_]* with a value free of \\, \" and newlines")]
    BadLabel { name: String, label: String },
    /// The name is a node family, or was registered with another type or help.
    #[error("metric {0} is already a different family")]
    Clash(String),
    /// This exact series (name and labels) exists already.
    #[error("metric {0} with these labels is already registered")]
    Duplicate(String),
    /// [`FRONT_SERIES_MAX`] series are registered.
    #[error("at most {FRONT_SERIES_MAX} front metric series")]
    TooMany,
}

/// One series a front registered.
struct FrontSeries {
    name: String,
    help: String,
    typ: MetricType,
    labels: String,
    value: Arc<AtomicU64>,
}

#[derive(Default)]
pub struct Metrics {
    /// Series registered by fronts, in registration order.
    fronts: Mutex<Vec<FrontSeries>>,
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
    /// Per-peer call latency and per-origin propagation delay.
    pub latency: crate::latency::Latency,
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

    /// Registers a front's series `name{labels}` under `prefix` and returns
    /// its value cell. `taken` lists further names the node renders (the
    /// center's gauges). Series of one name share one type and help.
    pub fn register(
        &self,
        prefix: &str,
        name: &str,
        help: &str,
        typ: MetricType,
        labels: &[(&str, &str)],
        taken: &[&str],
    ) -> Result<Arc<AtomicU64>, MetricError> {
        let word = |s: &str| {
            s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if !word(name) || !name.starts_with(prefix) || name.len() == prefix.len() {
            return Err(MetricError::BadName {
                name: name.into(),
                prefix: prefix.into(),
            });
        }
        if NODE_FAMILIES.contains(&name) || taken.contains(&name) {
            return Err(MetricError::Clash(name.into()));
        }
        let mut rendered = String::new();
        for (i, (k, v)) in labels.iter().enumerate() {
            if !word(k) || v.contains(['\\', '"', '\n']) {
                return Err(MetricError::BadLabel {
                    name: name.into(),
                    label: (*k).into(),
                });
            }
            if i > 0 {
                rendered.push(',');
            }
            let _ = write!(rendered, "{k}=\"{v}\"");
        }
        let help: String = help.chars().map(|c| if c == '\n' { ' ' } else { c }).collect();
        let mut series = self.fronts.lock().expect("metrics lock");
        if series.len() >= FRONT_SERIES_MAX {
            return Err(MetricError::TooMany);
        }
        for s in series.iter().filter(|s| s.name == name) {
            if s.typ != typ || s.help != help {
                return Err(MetricError::Clash(name.into()));
            }
            if s.labels == rendered {
                return Err(MetricError::Duplicate(name.into()));
            }
        }
        let value = Arc::new(AtomicU64::new(0));
        series.push(FrontSeries {
            name: name.into(),
            help,
            typ,
            labels: rendered,
            value: value.clone(),
        });
        Ok(value)
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
        self.latency.render(&mut out);
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
        let series = self.fronts.lock().expect("metrics lock");
        let mut done: Vec<&str> = Vec::new();
        for first in series.iter() {
            if done.contains(&first.name.as_str()) {
                continue;
            }
            done.push(&first.name);
            let (name, typ) = (&first.name, first.typ.as_str());
            let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {typ}", first.help);
            for s in series.iter().filter(|s| s.name == first.name) {
                let v = s.value.load(Ordering::Relaxed);
                if s.labels.is_empty() {
                    let _ = writeln!(out, "{name} {v}");
                } else {
                    let _ = writeln!(out, "{name}{{{}}} {v}", s.labels);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_series_render_after_the_node_and_are_checked() {
        let m = Metrics::default();
        let a = m
            .register(
                "regmesh_rd_",
                "regmesh_rd_lookups_total",
                "Lookups.",
                MetricType::Counter,
                &[("kind", "ep")],
                &[],
            )
            .unwrap();
        let b = m
            .register(
                "regmesh_rd_",
                "regmesh_rd_lookups_total",
                "Lookups.",
                MetricType::Counter,
                &[("kind", "res")],
                &[],
            )
            .unwrap();
        a.fetch_add(3, Ordering::Relaxed);
        b.fetch_add(1, Ordering::Relaxed);
        let text = m.render(&[]);
        assert!(text.contains("# TYPE regmesh_rd_lookups_total counter\nregmesh_rd_lookups_total{kind=\"ep\"} 3\nregmesh_rd_lookups_total{kind=\"res\"} 1\n"), "{text}");
        assert_eq!(text.matches("# HELP regmesh_rd_lookups_total").count(), 1);
        let reg = |name: &str, typ, labels: &[(&str, &str)]| {
            m.register("regmesh_rd_", name, "Lookups.", typ, labels, &["regmesh_rd_taken"])
        };
        assert!(matches!(
            reg("regmesh_http_responses_total", MetricType::Counter, &[]),
            Err(MetricError::BadName { .. })
        ));
        assert!(matches!(
            reg("regmesh_rd_", MetricType::Counter, &[]),
            Err(MetricError::BadName { .. })
        ));
        assert!(matches!(
            reg("regmesh_rd_X", MetricType::Counter, &[]),
            Err(MetricError::BadName { .. })
        ));
        assert_eq!(
            reg("regmesh_rd_taken", MetricType::Gauge, &[]).err(),
            Some(MetricError::Clash("regmesh_rd_taken".into()))
        );
        assert_eq!(
            reg("regmesh_rd_lookups_total", MetricType::Gauge, &[]).err(),
            Some(MetricError::Clash("regmesh_rd_lookups_total".into()))
        );
        assert_eq!(
            reg("regmesh_rd_lookups_total", MetricType::Counter, &[("kind", "ep")]).err(),
            Some(MetricError::Duplicate("regmesh_rd_lookups_total".into()))
        );
        assert!(matches!(
            reg("regmesh_rd_x", MetricType::Counter, &[("kind", "a\"b")]),
            Err(MetricError::BadLabel { .. })
        ));
    }
}
