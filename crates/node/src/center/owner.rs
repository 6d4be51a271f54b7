//! Shared authority: which of the processes serving one center runs its
//! timers (lease expiry, retention, tombstone purges), and the task that
//! keeps every process following the others while it has nothing to write.
//!
//! The timers lease is one metadata cell, `timers.owner` = "<process>
//! <until_ms>", taken or renewed by a fenced compare-and-set every third of
//! `store.timers_lease_ms`; a process that finds it expired takes it over.
//! The lease saves work, it is not what keeps state right: every sweep is
//! re-checked by the writer against the current version, in a fenced batch,
//! so two processes sweeping at once (clocks apart) do no harm.
//!
//! Must never: run the sweeper in a process whose lease has run out by its
//! own clock, or renew a lease another process holds.

use super::writer::Op;
use super::{now_ms, Center, Shared, WriteOp};
use regmesh_store::{StoreError, WriteBatch};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The lease cell.
pub(super) const TIMERS_OWNER_META: &str = "timers.owner";

/// A random number naming this process (in the fence nonce and the lease).
pub(super) fn process_nonce() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("system randomness");
    u64::from_be_bytes(b)
}

/// `(holder, until_ms)` of a lease cell; None if absent or unreadable.
fn parse(cell: Option<&[u8]>) -> Option<(u64, u64)> {
    let t = std::str::from_utf8(cell?).ok()?;
    let (h, u) = t.split_once(' ')?;
    Some((u64::from_str_radix(h, 16).ok()?, u.parse().ok()?))
}

impl Center {
    /// True while this process runs the center's timers (always, unless in
    /// shared authority mode).
    pub fn runs_timers(&self) -> bool {
        self.shared.timers_until_ms.load(Ordering::Acquire) > now_ms()
    }

    /// Shared authority: wakes the writer to follow the other processes
    /// every `store.follow_interval_ms`, and takes or renews the timers
    /// lease every third of `store.timers_lease_ms`. Returns at once
    /// otherwise.
    pub async fn run_shared(self: Arc<Self>) {
        if !self.shared.shared_authority {
            return;
        }
        let s = &self.shared.settings;
        let mut tick = tokio::time::interval(Duration::from_millis(s.follow_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let renew_every = Duration::from_millis((s.timers_lease_ms / 3).max(1));
        let mut renewed: Option<Instant> = None;
        loop {
            tick.tick().await;
            // A full queue means the writer is busy, and it follows anyway.
            let _ = self.tx.try_send(Op {
                kind: String::new(),
                id: String::new(),
                op: WriteOp::Follow,
                canonical: None,
                reply: None,
            });
            if renewed.is_none_or(|t| t.elapsed() >= renew_every) {
                renewed = Some(Instant::now());
                let sh = self.shared.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || sh.hold_timers()).await {
                    tracing::warn!("timers lease: {e}");
                }
            }
        }
    }
}

impl Shared {
    /// Takes the timers lease if it is free or expired, renews it if held.
    fn hold_timers(&self) -> Result<(), StoreError> {
        let now = now_ms();
        let cell = self.store.meta(TIMERS_OWNER_META)?;
        let held = parse(cell.as_deref());
        let mine = held.is_some_and(|(h, _)| h == self.process);
        if let Some((_, until)) = held.filter(|_| !mine) {
            if until > now {
                self.timers_until_ms.store(0, Ordering::Release);
                return Ok(());
            }
        }
        let until = now + self.settings.timers_lease_ms;
        let b = WriteBatch {
            expect_meta: Some((TIMERS_OWNER_META.into(), cell)),
            meta: vec![(
                TIMERS_OWNER_META.into(),
                format!("{:016x} {until}", self.process).into_bytes(),
            )],
            ..Default::default()
        };
        match self.store.apply(&b) {
            Ok(()) => {
                if !mine {
                    tracing::info!("this process now runs the center's timers");
                }
                self.timers_until_ms.store(until, Ordering::Release);
                Ok(())
            }
            Err(StoreError::Conflict(_)) => {
                self.timers_until_ms.store(0, Ordering::Release);
                Ok(())
            }
            // What was held stays held until it runs out.
            Err(e) => Err(e),
        }
    }
}
