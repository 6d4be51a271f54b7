//! The end of a batch in the writer: sealing the batch's metadata (clock,
//! seq, purge marks, change reservation, durability), giving up a batch the
//! store refused, and publishing a committed one to the indexes, deadlines,
//! counters and change feed.
//!
//! Must never: publish before the store has committed, or leave anything of
//! a refused batch visible.

use super::events::Event;
use super::writer::{
    Pending, Results, Slot, WriterState, CHANGE_RESERVE, CHANGE_RESERVED_META, PARALLEL_SIGN_MIN, PURGED_META,
    RELAXED_FOR_MS,
};
use super::{Outcome, Shared, WriteError};
use regmesh_store::{IndexEntry, WriteBatch};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Shared {
    /// Signs `pending` in place, on two threads when there are enough.
    pub(super) fn sign_all(&self, pending: &mut [Pending]) {
        let sign = |p: &mut Pending| {
            if !p.signed {
                self.identity.sign_record(&mut p.record);
            }
        };
        if pending.len() < PARALLEL_SIGN_MIN {
            pending.iter_mut().for_each(sign);
            return;
        }
        let (a, b) = pending.split_at_mut(pending.len() / 2);
        std::thread::scope(|s| {
            s.spawn(|| b.iter_mut().for_each(sign));
            a.iter_mut().for_each(sign);
        });
    }

    /// Adds the writer's state to `batch` (clock, seq, purge marks, change
    /// reservation, change-log trim) and decides its durability: `relaxed`
    /// (only other centers' versions) unless a mark or reservation moved or
    /// the last durable commit is `RELAXED_FOR_MS` old.
    pub(super) fn seal(&self, st: &mut WriterState, batch: &mut WriteBatch, mut relaxed: bool) {
        if st.purged_dirty {
            batch
                .meta
                .push((PURGED_META.into(), serde_json::to_vec(&st.purged).expect("json")));
            relaxed = false;
        }
        if st.change > st.change_reserved {
            st.change_reserved = st.change + CHANGE_RESERVE;
            batch
                .meta
                .push((CHANGE_RESERVED_META.into(), st.change_reserved.to_be_bytes().to_vec()));
            relaxed = false;
        }
        if st.last_durable.elapsed().as_millis() >= RELAXED_FOR_MS {
            relaxed = false;
        }
        batch.relaxed = relaxed;
        let h = st.hlc.last();
        let mut hb = h.wall_ms.to_be_bytes().to_vec();
        hb.extend_from_slice(&h.logical.to_be_bytes());
        batch.meta.push(("hlc".into(), hb));
        batch.meta.push(("seq".into(), st.seq.to_be_bytes().to_vec()));
        if st.change >= st.first_change + self.settings.watch_history {
            let keep_from = st.change + 1 - self.settings.watch_history;
            batch.trim_changes_below = Some(keep_from);
            st.first_change = keep_from;
        }
    }

    /// The store refused the batch: nothing of it happened. Every write in
    /// it gets `err`, and every key involved is looked at again in a second.
    pub(super) fn fail<'a>(
        &self,
        now: u64,
        keys: impl Iterator<Item = &'a (String, String)>,
        replies: Results,
        err: &WriteError,
    ) -> Results {
        let mut dl = self.deadlines.lock().expect("deadlines lock");
        for (k, i) in keys {
            dl.set(k, i, Some(now + 1000));
        }
        drop(dl);
        replies
            .into_iter()
            .map(|(at, res)| {
                let res = match res {
                    Ok(Outcome::Nothing) => Ok(Outcome::Nothing),
                    Ok(_) => Err(err.clone()),
                    Err(e) => Err(e),
                };
                (at, res)
            })
            .collect()
    }

    /// A batch is committed: the indexes and deadlines take each touched
    /// key's final state, the counters move, and the events go out.
    pub(super) fn publish(&self, st: &mut WriterState, slots: &HashMap<(String, String), Slot>, events: Vec<Event>) {
        {
            let mut ix = self.index.write().expect("index lock");
            let mut dl = self.deadlines.lock().expect("deadlines lock");
            for ((k, i), slot) in slots {
                if !slot.touched {
                    continue;
                }
                let old_terms = slot.before.as_ref().map(|r| self.terms(r)).unwrap_or_default();
                match (&slot.after, slot.after_digest) {
                    (Some(r), Some(d)) => {
                        let new_terms = self.terms(r);
                        let class = ix.class_id(self.class_of(r).as_deref());
                        ix.upsert(
                            k,
                            i,
                            IndexEntry {
                                digest: d,
                                deleted: r.deleted,
                                origin: std::sync::Arc::from(r.origin.as_str()),
                                seq: r.seq,
                                class,
                            },
                            &old_terms,
                            &new_terms,
                        );
                        dl.set(k, i, self.deadline(r));
                    }
                    _ => {
                        ix.remove(k, i, &old_terms);
                        dl.set(k, i, None);
                    }
                }
            }
        }
        self.head.store(st.change, Ordering::Release);
        self.own_seq.store(st.seq, Ordering::Release);
        if std::mem::take(&mut st.purged_dirty) {
            *self.purged.write().expect("purged lock") = st.purged.clone();
        }
        for ev in events {
            self.metrics.count_event(ev.typ, ev.reason);
            let _ = self.events.send(Arc::new(ev));
        }
    }
}
