//! `GET /v1/status` and the gauges of `/metrics`: numbers read from state.
//!
//! Must never: change state.

use super::Center;
use serde_json::Value;

impl Center {
    /// Summary for `GET /v1/status`.
    pub fn status(&self) -> Value {
        let ix = self.shared.index.read().expect("index lock");
        let mut records = serde_json::Map::new();
        let mut tombstones = 0;
        for k in self.shared.kinds.names() {
            records.insert(k.into(), Value::from(ix.live(k)));
            tombstones += ix.entries(k) - ix.live(k);
        }
        drop(ix);
        serde_json::json!({
            "id": self.shared.id,
            "public_key": self.public_key_hex(),
            "software": concat!("regmesh ", env!("CARGO_PKG_VERSION")),
            "store": self.shared.store.backend(),
            "uptime_s": self.started.elapsed().as_secs(),
            "records": records,
            "tombstones": tombstones,
            "change": self.head(),
            "write_queue": {
                "waiting": self.shared.settings.write_queue - self.tx.capacity(),
                "capacity": self.shared.settings.write_queue,
            },
            "deadlines": self.shared.deadlines.lock().expect("deadlines lock").len(),
        })
    }

    /// Records held (live and tombstones) over all kinds.
    pub fn entries_total(&self) -> u64 {
        let ix = self.shared.index.read().expect("index lock");
        self.shared.kinds.names().map(|k| ix.entries(k) as u64).sum()
    }

    /// Live records per kind and origin (of `origins`), each count capped
    /// at `cap`, for `diagnose mesh` and the dashboard.
    pub fn live_by_origin(
        &self,
        origins: &[String],
        cap: usize,
    ) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, usize>> {
        let ix = self.shared.index.read().expect("index lock");
        let mut out = std::collections::BTreeMap::new();
        for k in self.shared.kinds.names() {
            let row: std::collections::BTreeMap<String, usize> = origins
                .iter()
                .map(|o| (o.clone(), ix.query(k, &[("origin", o)], None, cap).ids.len()))
                .filter(|(_, n)| *n > 0)
                .collect();
            out.insert(k.to_string(), row);
        }
        out
    }

    /// Numbers for `/metrics` that are read, not counted.
    pub fn gauges(&self) -> Vec<(&'static str, &'static str, String, u64)> {
        let ix = self.shared.index.read().expect("index lock");
        let mut out = Vec::new();
        for k in self.shared.kinds.names() {
            out.push((
                "regmesh_records",
                "Live records by kind.",
                format!("kind=\"{k}\""),
                ix.live(k) as u64,
            ));
            out.push((
                "regmesh_tombstones",
                "Tombstones kept by kind.",
                format!("kind=\"{k}\""),
                (ix.entries(k) - ix.live(k)) as u64,
            ));
        }
        drop(ix);
        out.push((
            "regmesh_write_queue_waiting",
            "Writes waiting for the writer.",
            String::new(),
            (self.shared.settings.write_queue - self.tx.capacity()) as u64,
        ));
        out.push((
            "regmesh_change_head",
            "Last committed change number.",
            String::new(),
            self.head(),
        ));
        out.push((
            "regmesh_lease_deadlines",
            "Records with a pending lease, retention or purge deadline.",
            String::new(),
            self.shared.deadlines.lock().expect("deadlines lock").len() as u64,
        ));
        out
    }
}
