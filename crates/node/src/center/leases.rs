//! Leases (document 000 §2.4.2, §4.1.1): the ordered deadlines this center
//! acts on, and the sweeper that queues due keys to the writer.
//!
//! A record whose lease is not renewed becomes `offline` when it runs out
//! (event `expire`) and is deleted `leases.retention_s` later (reason
//! `retention`); tombstones are purged after `leases.tombstone_horizon_s`.
//! Only the origin decides expiry; while the center is `inactive` expiry and
//! retention wait. Must never: expire another center's record.

use super::writer::Op;
use super::{now_ms, Center, Shared, WriteOp};
use regmesh_core::Record;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Deadlines of records this center must act on (lease end, retention end,
/// tombstone purge), ordered by time.
#[derive(Default)]
pub(super) struct Deadlines {
    by_time: BTreeSet<(u64, String, String)>,
    by_key: HashMap<(String, String), u64>,
}

impl Deadlines {
    pub(super) fn set(&mut self, kind: &str, id: &str, at: Option<u64>) {
        let key = (kind.to_string(), id.to_string());
        if let Some(old) = self.by_key.remove(&key) {
            self.by_time.remove(&(old, key.0.clone(), key.1.clone()));
        }
        if let Some(at) = at {
            self.by_time.insert((at, key.0.clone(), key.1.clone()));
            self.by_key.insert(key, at);
        }
    }

    pub(super) fn take_due(&mut self, now: u64, max: usize) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(first) = self.by_time.first() else { break };
            if first.0 > now {
                break;
            }
            let (_, k, i) = self.by_time.pop_first().expect("first exists");
            self.by_key.remove(&(k.clone(), i.clone()));
            out.push((k, i));
        }
        out
    }

    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }
}

impl Center {
    /// Queues sweeps for deadlines that have passed, at most
    /// `store.write_batch_max` per call. Returns how many.
    pub async fn sweep_due(&self) -> usize {
        // Shared authority: only the process holding the timers lease.
        if !self.runs_timers() {
            return 0;
        }
        let due = self
            .shared
            .deadlines
            .lock()
            .expect("deadlines lock")
            .take_due(now_ms(), self.shared.settings.write_batch_max);
        let n = due.len();
        for (kind, id) in due {
            let op = Op {
                kind,
                id,
                op: WriteOp::Sweep,
                canonical: None,
                reply: None,
            };
            if self.tx.send(op).await.is_err() {
                break;
            }
        }
        n
    }

    /// Runs [`Center::sweep_due`] forever at the configured interval.
    pub async fn run_sweeper(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.shared.settings.sweep_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sweep_due().await;
        }
    }

    /// True if `r` belongs to another center and its lease has run out
    /// without word from its origin: served, but marked stale.
    pub fn is_stale(&self, r: &Record) -> bool {
        r.origin != self.shared.id && r.expires_at_ms.is_some_and(|t| t < now_ms())
    }
}

impl Shared {
    /// When the lease of own live `r` (whose replicated expiry is `exp`)
    /// really runs out: its last local renewal; else the lease its version
    /// granted, but not before one lease after this center started (local
    /// renewals are not persisted).
    pub(super) fn lease_end(&self, r: &Record, exp: u64) -> u64 {
        let ext = self.settings.renewal_extension_ms;
        if ext == 0 {
            return exp;
        }
        if let Some(t) = self
            .renewed
            .lock()
            .expect("renewed lock")
            .get(&(r.kind.clone(), r.id.clone()))
        {
            return *t;
        }
        let lease_ms = r
            .body_value()
            .ok()
            .and_then(|b| self.kind(&r.kind)?.lease_s(&b))
            .unwrap_or(0)
            .saturating_mul(1000);
        exp.saturating_sub(ext)
            .max(self.started_ms.saturating_add(lease_ms))
            .min(exp)
    }

    /// When this center must next look at `r`, if ever.
    pub(super) fn deadline(&self, r: &Record) -> Option<u64> {
        if r.deleted {
            return Some(r.version.wall_ms.saturating_add(self.settings.tombstone_horizon_ms));
        }
        if r.origin != self.id {
            return None;
        }
        let exp = r.expires_at_ms?;
        let expired = match (self.kind(&r.kind), r.body_value()) {
            (Some(k), Ok(b)) => k.is_expired_state(&b),
            _ => false,
        };
        Some(if expired {
            exp.saturating_add(self.settings.retention_ms)
        } else {
            self.lease_end(r, exp)
        })
    }
}
