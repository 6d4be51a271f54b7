//! Shared authority (document 004 §4.1): several processes serve one center
//! from one store. This file owns what keeps a process in step with the
//! others: the fence every batch carries, following the change log others
//! wrote (indexes, deadlines, counters, clock, watch events), and point
//! reads of records another process wrote and this one has not followed yet.
//!
//! The fence: every batch expects the metadata cell `shared.head` to hold
//! what this process last saw there, and sets it anew (the batch's last
//! change number and a nonce). A batch built on stale state therefore fails
//! whole with a conflict; the writer follows and builds it again. So
//! batches of all processes commit one after another, each on the state
//! its predecessor left: sequence numbers, change numbers and clock stamps
//! stay unique and increasing across processes.
//!
//! Must never: index a followed version whose signature does not verify,
//! serve bytes that neither match a verified digest nor verify, or let a
//! batch commit without the fence in shared mode.

use super::events::decode_event;
use super::writer::{WriterState, PURGED_META};
use super::{now_ms, ReadError, Shared};
use regmesh_core::codec;
use regmesh_core::sign::verify_record;
use regmesh_core::Record;
use regmesh_store::{digest, IndexEntry, StoreError, WriteBatch};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The fence cell: 8 bytes of the last change number, 8 of a nonce.
pub(super) const SHARED_HEAD_META: &str = "shared.head";

/// Change-log entries read per round trip while following.
const FOLLOW_PAGE: usize = 1024;

/// A writer's view of the other processes.
#[derive(Clone, Debug, Default)]
pub(super) struct Follower {
    /// The fence cell as this process last saw or wrote it.
    pub(super) fence: Option<Vec<u8>>,
    /// Change-log entries up to this are in this process's state.
    pub(super) followed: u64,
    /// Batches committed by this process (the fence's nonce).
    pub(super) commits: u64,
    /// This process, in the nonce.
    pub(super) process: u64,
}

/// The change number a fence value carries.
pub(super) fn fence_change(v: &[u8]) -> u64 {
    v.get(..8)
        .map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
}

impl Shared {
    /// Adds the fence to a batch about to commit: expect the cell as last
    /// seen, set it to the batch's last change number and a fresh nonce.
    pub(super) fn fence(&self, st: &mut WriterState, batch: &mut WriteBatch) {
        let Some(f) = st.follower.as_mut() else { return };
        f.commits += 1;
        let mut v = st.change.to_be_bytes().to_vec();
        v.extend_from_slice(&(f.process ^ f.commits.rotate_left(40)).to_be_bytes());
        batch.expect_meta = Some((SHARED_HEAD_META.into(), f.fence.clone()));
        batch.meta.push((SHARED_HEAD_META.into(), v));
    }

    /// After this process's fenced batch committed: the cell holds what it
    /// wrote, and the log holds nothing this process has not seen.
    pub(super) fn fenced_commit_done(&self, st: &mut WriterState, batch: &WriteBatch) {
        let change = st.change;
        let Some(f) = st.follower.as_mut() else { return };
        f.fence = batch
            .meta
            .iter()
            .rev()
            .find(|(k, _)| k == SHARED_HEAD_META)
            .map(|(_, v)| v.clone());
        f.followed = f.followed.max(change);
    }

    /// Brings this process's state up to what the store holds: every change
    /// another process logged since the last follow is indexed, scheduled,
    /// counted and sent to watchers. One query when nothing changed.
    pub(super) fn follow(&self, st: &mut WriterState) -> Result<(), StoreError> {
        let Some(f) = st.follower.clone() else { return Ok(()) };
        let cell = self.store.meta(SHARED_HEAD_META)?;
        if cell == f.fence {
            return Ok(());
        }
        let mut followed = f.followed;
        loop {
            let page = self.store.changes_after(followed, FOLLOW_PAGE)?;
            if page.is_empty() {
                break;
            }
            for (n, bytes) in page {
                followed = n;
                self.take_followed(st, n, &bytes);
            }
        }
        if let Some(c) = &cell {
            st.change = st.change.max(fence_change(c));
        }
        // Purge marks move only with the timer owner's purges.
        if let Some(b) = self.store.meta(PURGED_META)? {
            if let Ok(p) = serde_json::from_slice::<BTreeMap<String, u64>>(&b) {
                for (o, m) in p {
                    let e = st.purged.entry(o).or_insert(0);
                    *e = (*e).max(m);
                }
                *self.purged.write().expect("purged lock") = st.purged.clone();
            }
        }
        let f = st.follower.as_mut().expect("checked above");
        f.fence = cell;
        f.followed = followed;
        self.head.store(st.change, Ordering::Release);
        self.own_seq.store(st.seq, Ordering::Release);
        Ok(())
    }

    /// One change another process logged: the version it carries becomes
    /// this process's (a forgotten record is dropped).
    fn take_followed(&self, st: &mut WriterState, n: u64, bytes: &[u8]) {
        st.change = st.change.max(n);
        let ev = match decode_event(n, bytes) {
            Ok(e) => e,
            Err(e) => {
                self.metrics.integrity_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("following change {n}: {e}");
                return;
            }
        };
        let r = &ev.record;
        if r.origin == self.id {
            st.seq = st.seq.max(r.seq);
        }
        if let Err(e) = st.hlc.observe(r.version, now_ms()) {
            tracing::warn!("following change {n}: {e}");
        }
        if !self.verifies(r) {
            self.metrics.integrity_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                kind = r.kind,
                id = r.id,
                "followed change {n} does not verify; not indexed"
            );
            return;
        }
        let forgotten = ev.reason == Some(super::DeleteReason::Resync);
        {
            let mut ix = self.index.write().expect("index lock");
            let mut dl = self.deadlines.lock().expect("deadlines lock");
            let old_terms = ix.terms_of(&r.kind, &r.id);
            if forgotten {
                ix.remove(&r.kind, &r.id, &old_terms);
                dl.set(&r.kind, &r.id, None);
            } else {
                let class = ix.class_id(self.class_of(r).as_deref());
                ix.upsert(
                    &r.kind,
                    &r.id,
                    IndexEntry {
                        digest: digest(&codec::encode(r)),
                        deleted: r.deleted,
                        origin: Arc::from(r.origin.as_str()),
                        seq: r.seq,
                        class,
                    },
                    &old_terms,
                    &self.terms(r),
                );
                dl.set(&r.kind, &r.id, self.deadline(r));
            }
        }
        self.metrics.count_event(ev.typ, ev.reason);
        let _ = self.events.send(Arc::new(ev));
    }

    /// True if `r` carries a valid signature of its origin.
    fn verifies(&self, r: &Record) -> bool {
        self.keys
            .read()
            .expect("keys lock")
            .get(&r.origin)
            .is_some_and(|k| verify_record(r, k).is_ok())
    }

    /// A point read in shared mode: what the store holds now, whoever wrote
    /// it. Bytes matching the indexed digest are served as is; others (a
    /// version another process committed, not followed yet) only once their
    /// signature verifies. None for absent or tombstone.
    pub(super) fn read_shared(&self, kind: &str, id: &str) -> Result<Option<Record>, ReadError> {
        let Some(b) = self
            .store
            .get(kind, id)
            .map_err(|e| ReadError::Storage(e.to_string()))?
        else {
            return Ok(None);
        };
        let known = self
            .index
            .read()
            .expect("index lock")
            .get(kind, id)
            .is_some_and(|e| e.digest == digest(&b));
        let r = codec::decode(&b).map_err(|e| ReadError::Storage(e.to_string()))?;
        if !known && !self.verifies(&r) {
            self.metrics.integrity_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(kind, id, "stored record neither matches its digest nor verifies");
            return Err(ReadError::Integrity {
                kind: kind.into(),
                id: id.into(),
            });
        }
        Ok((!r.deleted).then_some(r))
    }
}
