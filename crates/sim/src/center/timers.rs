//! A simulated center's timers (the node's periodic tasks): dispatching
//! each timer that fires, and housekeeping — flushing relaxed commits,
//! saving watermarks, expiring leases, purging tombstones, timing out pulls
//! and handing votes their deadlines. Must never act on a message; timers
//! only re-arm themselves and return effects.

use super::{body, body_n, Center, Change, Out, Timer};
use super::{FLUSH_EVERY_MS, HOUSEKEEP_EVERY_MS, SAVE_MARKS_EVERY_MS};
use crate::msg::Key;
use regmesh_core::Record;

impl Center {
    pub fn on_timer(&mut self, now: u64, timer: Timer, out: &mut Vec<Out>) {
        match timer {
            Timer::Link(t) => {
                let local = self.local(now);
                self.with_link(now, out, |link, r, cmds| link.on_timer(local, t, r, cmds));
            }
            Timer::Housekeep => self.housekeep(now, out),
            Timer::VoteDeadline { vote } => self.on_vote_deadline(now, vote, out),
            Timer::PullTimeout { call } => self.on_pull_timeout(now, call, out),
        }
    }

    fn housekeep(&mut self, now: u64, out: &mut Vec<Out>) {
        let local = self.local(now);
        // Leases: the origin alone judges its records' leases.
        let lapsed: Vec<Record> = self
            .store
            .current
            .values()
            .filter(|r| {
                r.origin == self.id
                    && !r.deleted
                    && r.body.contains("online")
                    && r.expires_at_ms.is_some_and(|e| e < local)
            })
            .cloned()
            .collect();
        for r in lapsed {
            let b = body(body_n(&r.body) + 1, false);
            self.write_own(
                now,
                &r.kind,
                &r.id,
                b,
                r.expires_at_ms,
                r.visibility.clone(),
                false,
                out,
            );
        }
        // Tombstones past the horizon are purged; the origin's purge mark
        // rises to their seq.
        let horizon = self.settings.tombstone_horizon_ms;
        let due: Vec<Key> = self
            .store
            .tomb_at
            .iter()
            .filter(|(_, at)| **at + horizon <= local)
            .filter(|(k, _)| {
                // As the node: only once the saved watermark covers it.
                self.store.get(k).is_some_and(|t| {
                    regmesh_proto::sync::purge_allowed(&self.id, &t.origin, t.seq, self.saved_marks.get(&t.origin))
                })
            })
            .map(|(k, _)| k.clone())
            .collect();
        if !due.is_empty() {
            for k in due {
                if let Some(t) = self.store.remove(&k) {
                    self.store.raise_purged(&t.origin, t.seq);
                    self.stats.purged += 1;
                    self.changes.push((k, Change::Purged(t)));
                }
            }
            self.store.flush();
            self.last_flush = now;
        }
        if now >= self.last_flush + FLUSH_EVERY_MS {
            self.store.flush();
            self.last_flush = now;
        }
        if now >= self.last_save + SAVE_MARKS_EVERY_MS {
            // Saved in a durable commit, so never ahead of what is durable.
            self.store.flush();
            self.saved_marks = self.marks.clone();
            self.last_save = now;
        }
        out.push(Out::Timer {
            at: now + HOUSEKEEP_EVERY_MS,
            timer: Timer::Housekeep,
        });
    }
}
