//! Histograms that answer "why did latency rise" (document 000 §2.8.1):
//! per peer and call kind, how long calls to that peer took (and how many
//! failed); per origin, how long its records took from commit at the origin
//! (the record's HLC wall reading) to being applied here. Rendered on
//! `/metrics` in the Prometheus text format by [`Latency::render`].
//!
//! Label sets are bounded: call kinds are a fixed list ([`CallKind`]), peers
//! and origins are configured centers (records of an origin without a
//! configured key are refused before they are applied), and each family
//! holds at most [`SERIES_MAX`] series; past it new keys count under
//! `other`. Must never: take a lock across an await, or grow without bound.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the peer call latency buckets.
pub const CALL_BUCKETS_S: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds (seconds) of the propagation delay buckets: from a few
/// milliseconds (a flood on loopback) to minutes (a catch-up pull).
pub const PROPAGATION_BUCKETS_S: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Most series (label sets) one family holds; more share the `other` label.
pub const SERIES_MAX: usize = 256;
/// The label value of keys past [`SERIES_MAX`].
pub const OTHER: &str = "other";

/// The families this module renders (fronts may not register them).
pub const FAMILIES: [&str; 3] = [
    "regmesh_peer_call_seconds",
    "regmesh_peer_call_failures_total",
    "regmesh_propagation_seconds",
];

/// What a peer call was for, read from its method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CallKind {
    Hello,
    Heartbeat,
    Commit,
    Pull,
    Sync,
    Vote,
    VoteAnswer,
    Notify,
    Rfi,
    Other,
}

impl CallKind {
    /// The kind of a call to `path` on the peer listener.
    pub fn of_path(path: &str) -> CallKind {
        let p = path.split('?').next().unwrap_or(path);
        match p {
            "/mesh/v1/hello" => CallKind::Hello,
            "/mesh/v1/pull" => CallKind::Pull,
            "/mesh/v1/notify" => CallKind::Notify,
            "/mesh/v1/rfi" => CallKind::Rfi,
            "/commit" => CallKind::Commit,
            "/voting" => CallKind::Vote,
            _ if p.starts_with("/heartbeat/") => CallKind::Heartbeat,
            _ if p.starts_with("/sync/") => CallKind::Sync,
            _ if p.contains("/response/") => CallKind::VoteAnswer,
            _ => CallKind::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Hello => "hello",
            CallKind::Heartbeat => "heartbeat",
            CallKind::Commit => "commit",
            CallKind::Pull => "pull",
            CallKind::Sync => "sync",
            CallKind::Vote => "vote",
            CallKind::VoteAnswer => "vote_answer",
            CallKind::Notify => "notify",
            CallKind::Rfi => "rfi",
            CallKind::Other => "other",
        }
    }
}

/// One histogram: cumulative counts are computed at render time.
#[derive(Debug, Clone, Default)]
struct Hist {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    counts: Vec<u64>,
    sum_s: f64,
    count: u64,
}

impl Hist {
    fn observe(&mut self, bounds: &[f64], v_s: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len() + 1];
        }
        let i = bounds.iter().position(|b| v_s <= *b).unwrap_or(bounds.len());
        self.counts[i] += 1;
        self.sum_s += v_s;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let mut cum = 0;
        for (i, b) in bounds.iter().enumerate() {
            cum += self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_s);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// A map capped at [`SERIES_MAX`] keys; later keys fold into `fold(key)`.
fn slot<K: Ord + Clone, V: Default>(map: &mut BTreeMap<K, V>, key: K, fold: impl FnOnce() -> K) -> &mut V {
    let key = if map.len() >= SERIES_MAX && !map.contains_key(&key) {
        fold()
    } else {
        key
    };
    map.entry(key).or_default()
}

/// The per-peer call and per-origin propagation histograms of a center.
#[derive(Debug, Default)]
pub struct Latency {
    calls: Mutex<BTreeMap<(String, CallKind), Hist>>,
    failures: Mutex<BTreeMap<(String, CallKind), u64>>,
    propagation: Mutex<BTreeMap<String, Hist>>,
}

impl Latency {
    /// A call to `peer` of `kind` took `took`; `ok` when it brought an
    /// answer (any status), false when it failed or was abandoned.
    pub fn observe_call(&self, peer: &str, kind: CallKind, took: Duration, ok: bool) {
        let key = (peer.to_string(), kind);
        {
            let mut calls = self.calls.lock().expect("latency lock");
            slot(&mut calls, key.clone(), || (OTHER.into(), kind)).observe(&CALL_BUCKETS_S, took.as_secs_f64());
        }
        if !ok {
            let mut failures = self.failures.lock().expect("latency lock");
            *slot(&mut failures, key, || (OTHER.into(), kind)) += 1;
        }
    }

    /// Records were applied here at `now_ms`: each `(origin, committed_ms)`
    /// is one record's origin and the wall reading of its HLC version. A
    /// stamp ahead of this clock (skew) counts as no delay.
    pub fn observe_propagation<'a>(&self, now_ms: u64, applied: impl IntoIterator<Item = (&'a str, u64)>) {
        let mut prop = self.propagation.lock().expect("latency lock");
        for (origin, committed_ms) in applied {
            let delay_s = now_ms.saturating_sub(committed_ms) as f64 / 1000.0;
            slot(&mut prop, origin.to_string(), || OTHER.into()).observe(&PROPAGATION_BUCKETS_S, delay_s);
        }
    }

    /// Appends the three families to `out`.
    pub fn render(&self, out: &mut String) {
        let calls = self.calls.lock().expect("latency lock").clone();
        let _ = writeln!(
            out,
            "# HELP regmesh_peer_call_seconds Time of calls to each peer (connect, send, answer), by call kind.\n# TYPE regmesh_peer_call_seconds histogram"
        );
        for ((peer, kind), h) in &calls {
            let labels = format!("peer=\"{peer}\",call=\"{}\"", kind.as_str());
            h.render(out, "regmesh_peer_call_seconds", &labels, &CALL_BUCKETS_S);
        }
        let failures = self.failures.lock().expect("latency lock").clone();
        let _ = writeln!(
            out,
            "# HELP regmesh_peer_call_failures_total Calls to each peer that brought no answer (refused, timed out, abandoned).\n# TYPE regmesh_peer_call_failures_total counter"
        );
        for ((peer, kind), n) in &failures {
            let _ = writeln!(
                out,
                "regmesh_peer_call_failures_total{{peer=\"{peer}\",call=\"{}\"}} {n}",
                kind.as_str()
            );
        }
        let prop = self.propagation.lock().expect("latency lock").clone();
        let _ = writeln!(
            out,
            "# HELP regmesh_propagation_seconds Time from a record's commit at its origin (its HLC stamp) to its merge here, by origin.\n# TYPE regmesh_propagation_seconds histogram"
        );
        for (origin, h) in &prop {
            h.render(
                out,
                "regmesh_propagation_seconds",
                &format!("origin=\"{origin}\""),
                &PROPAGATION_BUCKETS_S,
            );
        }
    }
}

/// Times one peer call; on drop (answered, failed, or abandoned by a
/// caller's deadline) it is observed, as a failure unless [`CallTimer::ok`]
/// was called.
pub struct CallTimer<'a> {
    latency: &'a Latency,
    peer: &'a str,
    kind: CallKind,
    start: std::time::Instant,
    ok: bool,
}

impl<'a> CallTimer<'a> {
    pub fn start(latency: &'a Latency, peer: &'a str, kind: CallKind) -> Self {
        CallTimer {
            latency,
            peer,
            kind,
            start: std::time::Instant::now(),
            ok: false,
        }
    }

    /// The call brought an answer.
    pub fn ok(&mut self) {
        self.ok = true;
    }
}

impl Drop for CallTimer<'_> {
    fn drop(&mut self) {
        self.latency
            .observe_call(self.peer, self.kind, self.start.elapsed(), self.ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_series_are_capped() {
        let l = Latency::default();
        l.observe_call("c2", CallKind::Heartbeat, Duration::from_millis(3), true);
        l.observe_call("c2", CallKind::Heartbeat, Duration::from_millis(300), false);
        l.observe_propagation(10_000, [("c2", 9_990), ("c2", 12_000)]);
        let mut out = String::new();
        l.render(&mut out);
        assert!(
            out.contains("regmesh_peer_call_seconds_bucket{peer=\"c2\",call=\"heartbeat\",le=\"0.005\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("regmesh_peer_call_seconds_bucket{peer=\"c2\",call=\"heartbeat\",le=\"0.5\"} 2\n"));
        assert!(out.contains("regmesh_peer_call_seconds_count{peer=\"c2\",call=\"heartbeat\"} 2\n"));
        assert!(out.contains("regmesh_peer_call_failures_total{peer=\"c2\",call=\"heartbeat\"} 1\n"));
        assert!(
            out.contains("regmesh_propagation_seconds_bucket{origin=\"c2\",le=\"0.005\"} 1\n"),
            "skew counts as 0: {out}"
        );
        assert!(out.contains("regmesh_propagation_seconds_bucket{origin=\"c2\",le=\"0.01\"} 2\n"));
        for i in 0..SERIES_MAX + 10 {
            l.observe_propagation(0, [(format!("o{i}").as_str(), 0)]);
        }
        assert_eq!(
            l.propagation.lock().unwrap().len(),
            SERIES_MAX + 1,
            "capped, plus other"
        );
    }

    #[test]
    fn call_kinds_from_paths() {
        assert_eq!(CallKind::of_path("/heartbeat/node/c1"), CallKind::Heartbeat);
        assert_eq!(
            CallKind::of_path("/votingphase/node/c1/response/yes"),
            CallKind::VoteAnswer
        );
        assert_eq!(CallKind::of_path("/sync/node/c1"), CallKind::Sync);
        assert_eq!(CallKind::of_path("/mesh/v1/rfi"), CallKind::Rfi);
        assert_eq!(CallKind::of_path("/whatever"), CallKind::Other);
    }
}
