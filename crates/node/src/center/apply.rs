//! What one queued op does to the current version of its key: new versions
//! originated here (stamped, signed later with their batch), merges of other
//! centers' versions, lease expiry, retention, purges and resync drops.
//!
//! Must never: write to another origin's live record on a client's behalf,
//! or touch the store (the writer commits what this decides).

use super::events::{DeleteReason, EventType};
use super::writer::{Done, WriterState};
use super::{Shared, WriteError};
use regmesh_core::codec::{self, canonical_json};
use regmesh_core::{Hlc, Prepared, Record};
use std::sync::atomic::Ordering;

/// An op for the writer. Clients submit `Put`, `Delete` and `Heartbeat`
/// through [`Center::write`](super::Center::write); the rest are internal.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Create or replace with a validated body. `if_version`: only if the
    /// current version is this one (HTTP `If-Match`).
    Put {
        prepared: Prepared,
        if_version: Option<Hlc>,
        /// Stamp the version above this one (a granted vote's: the highest
        /// version of the id a voter held); one beyond the clock's drift
        /// bound refuses the write.
        above: Option<Hlc>,
    },
    /// Delete (leave a tombstone).
    Delete { if_version: Option<Hlc> },
    /// Renew the lease and mark online.
    Heartbeat,
    /// Internal (the sweeper): a lease, retention or tombstone deadline may
    /// have passed; the writer re-checks it against the current version.
    Sweep,
    /// Internal: a version from another center that passed
    /// [`Center::verify_remote`](super::Center::verify_remote), submitted only
    /// by [`Center::apply_verified`](super::Center::apply_verified).
    #[doc(hidden)]
    Merge(Box<Record>),
    /// Internal: a replacing resync found that `origin` no longer has this
    /// record (deleted, tombstone purged). Drops it if it is still the
    /// version with `seq`, and raises the origin's purge mark; see
    /// [`Center::forget`](super::Center::forget).
    #[doc(hidden)]
    Forget {
        origin: String,
        seq: u64,
        purged_through: u64,
    },
    /// Internal: stop the writer once everything queued before is committed.
    #[doc(hidden)]
    Close,
    /// Internal (shared authority): take up what other processes committed.
    /// The writer follows before every batch; this op only wakes it.
    #[doc(hidden)]
    Follow,
}

/// Result of an accepted write.
#[derive(Debug, Clone)]
pub enum Outcome {
    Created(Record),
    Replaced(Record),
    Renewed(Record),
    Deleted(Record),
    /// Nothing to do (sweeps that found nothing due).
    Nothing,
}

/// What one op does, decided before the batch commits. Short-lived.
#[allow(clippy::large_enum_variant)]
pub(super) enum Applied {
    /// A new version, stamped but not yet signed.
    Write {
        record: Record,
        typ: EventType,
        reason: Option<DeleteReason>,
        outcome: Done,
        /// Already signed by its origin (a merged remote version).
        signed: bool,
    },
    /// Remove a tombstone past the horizon (raises its origin's purge mark).
    Purge,
    /// Drop a foreign record the origin no longer has (resync).
    Forget(Record),
    /// A lease renewed here only (no new version).
    Renewed(Record),
    /// A due sweep put off (the center is inactive): look again later.
    Deferred,
    /// No change (an older or equal merge, a sweep found nothing due).
    Nothing,
}

impl Shared {
    /// Decides what one op does to the current version `cur`.
    pub(super) fn apply_op(
        &self,
        st: &mut WriterState,
        now: u64,
        (kind_name, id): (&str, &str),
        op: WriteOp,
        canonical: Option<String>,
        cur: Option<&Record>,
    ) -> Result<Applied, WriteError> {
        let not_found = || WriteError::NotFound {
            kind: kind_name.into(),
            id: id.into(),
        };
        let live = cur.filter(|r| !r.deleted);
        if let WriteOp::Forget {
            origin,
            seq,
            purged_through,
        } = &op
        {
            let mark = st.purged.entry(origin.clone()).or_insert(0);
            if *purged_through > *mark {
                *mark = *purged_through;
                st.purged_dirty = true;
            }
            return Ok(match live {
                Some(r) if r.origin == *origin && r.origin != self.id && r.seq == *seq => Applied::Forget(r.clone()),
                _ => Applied::Nothing,
            });
        }
        if let Some(r) = live {
            if r.origin != self.id && !matches!(op, WriteOp::Sweep | WriteOp::Merge(_)) {
                return Err(WriteError::NotOwner {
                    kind: kind_name.into(),
                    id: id.into(),
                    owner: r.origin.clone(),
                });
            }
        }
        let check_version = |want: Option<Hlc>| -> Result<(), WriteError> {
            match (want, live) {
                (Some(w), Some(r)) if r.version != w => Err(WriteError::VersionMismatch {
                    current: r.version.to_string(),
                    expected: w.to_string(),
                }),
                (Some(w), None) => Err(WriteError::VersionMismatch {
                    current: "none".into(),
                    expected: w.to_string(),
                }),
                _ => Ok(()),
            }
        };
        let kind = self.kind(kind_name).ok_or_else(not_found)?;
        match op {
            WriteOp::Forget { .. } | WriteOp::Close | WriteOp::Follow => Ok(Applied::Nothing),
            WriteOp::Put {
                prepared,
                if_version,
                above,
            } => {
                check_version(if_version)?;
                if let Some(h) = above {
                    st.hlc.observe(h, now).map_err(|e| WriteError::Invalid(e.to_string()))?;
                }
                let ext = self.settings.renewal_extension_ms;
                let rec_lease = prepared.lease_s;
                let rec = self.stamp(
                    st,
                    now,
                    kind_name,
                    id,
                    canonical.unwrap_or_else(|| canonical_json(&prepared.body)),
                    prepared
                        .lease_s
                        .map(|l| now.saturating_add(l.saturating_mul(1000)).saturating_add(ext)),
                    prepared.visibility,
                    false,
                )?;
                {
                    let mut renewed = self.renewed.lock().expect("renewed lock");
                    let key = (kind_name.to_string(), id.to_string());
                    match rec_lease {
                        Some(l) if ext > 0 => renewed.insert(key, now.saturating_add(l.saturating_mul(1000))),
                        _ => renewed.remove(&key),
                    };
                }
                let outcome = if live.is_some() { Done::Replaced } else { Done::Created };
                Ok(Applied::Write {
                    record: rec,
                    typ: EventType::Put,
                    reason: None,
                    outcome,
                    signed: false,
                })
            }
            WriteOp::Delete { if_version } => {
                let r = live.ok_or_else(not_found)?;
                check_version(if_version)?;
                self.renewed
                    .lock()
                    .expect("renewed lock")
                    .remove(&(kind_name.to_string(), id.to_string()));
                let rec = self.stamp(st, now, kind_name, id, "{}".into(), None, r.visibility.clone(), true)?;
                Ok(Applied::Write {
                    outcome: Done::Deleted,
                    record: rec,
                    typ: EventType::Delete,
                    reason: Some(DeleteReason::Client),
                    signed: false,
                })
            }
            WriteOp::Heartbeat => {
                let r = live.ok_or_else(not_found)?;
                let mut body = r.body_value().map_err(|e| WriteError::Storage(e.to_string()))?;
                let before = body.clone();
                kind.on_heartbeat(&mut body);
                let lease = kind.lease_s(&body);
                let ext = self.settings.renewal_extension_ms;
                let key = (kind_name.to_string(), id.to_string());
                if let (true, Some(l), Some(exp)) = (ext > 0, lease, r.expires_at_ms) {
                    let end = now.saturating_add(l.saturating_mul(1000));
                    if body == before && exp >= end {
                        // The replicated version still covers a whole lease:
                        // renew here only (`leases.renewal_extension_s`).
                        self.renewed.lock().expect("renewed lock").insert(key, end);
                        return Ok(Applied::Renewed(r.clone()));
                    }
                }
                if let (true, Some(l)) = (ext > 0, lease) {
                    let end = now.saturating_add(l.saturating_mul(1000));
                    self.renewed.lock().expect("renewed lock").insert(key, end);
                }
                let rec = self.stamp(
                    st,
                    now,
                    kind_name,
                    id,
                    canonical_json(&body),
                    lease.map(|l| now.saturating_add(l.saturating_mul(1000)).saturating_add(ext)),
                    r.visibility.clone(),
                    false,
                )?;
                Ok(Applied::Write {
                    outcome: Done::Renewed,
                    record: rec,
                    typ: EventType::Put,
                    reason: None,
                    signed: false,
                })
            }
            WriteOp::Merge(rec) => {
                let rec = *rec;
                if cur.is_some_and(|c| !rec.supersedes(c)) {
                    return Ok(Applied::Nothing);
                }
                st.hlc
                    .observe(rec.version, now)
                    .map_err(|e| WriteError::Invalid(e.to_string()))?;
                if rec.origin == self.id {
                    // Our own version back from a peer (after we lost data):
                    // never reuse its sequence number.
                    st.seq = st.seq.max(rec.seq);
                }
                let (typ, outcome) = match (rec.deleted, live.is_some()) {
                    (true, _) => (EventType::Delete, Done::Deleted),
                    (false, true) => (EventType::Put, Done::Replaced),
                    (false, false) => (EventType::Put, Done::Created),
                };
                Ok(Applied::Write {
                    record: rec,
                    typ,
                    reason: None,
                    outcome,
                    signed: true,
                })
            }
            WriteOp::Sweep => {
                let Some(r) = cur else { return Ok(Applied::Nothing) };
                match self.deadline(r) {
                    Some(at) if at <= now => {}
                    _ => return Ok(Applied::Nothing),
                }
                if r.deleted {
                    let mark = self
                        .saved_marks
                        .read()
                        .expect("marks lock")
                        .get(&r.origin)
                        .copied()
                        .unwrap_or(0);
                    if !regmesh_proto::sync::purge_allowed(&self.id, &r.origin, r.seq, mark) {
                        // Not caught up with its origin through it yet.
                        return Ok(Applied::Deferred);
                    }
                    return Ok(Applied::Purge);
                }
                if !self.accepting.load(Ordering::Acquire) {
                    // Inactive: expiry and retention are updates this center
                    // may not make now (its agents' heartbeats are refused
                    // too). Judged again once it is active.
                    return Ok(Applied::Deferred);
                }
                let mut body = r.body_value().map_err(|e| WriteError::Storage(e.to_string()))?;
                if !kind.is_expired_state(&body) {
                    kind.on_lease_expired(&mut body);
                    // `expires_at` stays when the lease ran out (with a
                    // renewal extension, earlier than the replicated one).
                    let lapsed = r.expires_at_ms.map(|e| self.lease_end(r, e));
                    self.renewed
                        .lock()
                        .expect("renewed lock")
                        .remove(&(kind_name.to_string(), id.to_string()));
                    let rec = self.stamp(
                        st,
                        now,
                        kind_name,
                        id,
                        canonical_json(&body),
                        lapsed,
                        r.visibility.clone(),
                        false,
                    )?;
                    Ok(Applied::Write {
                        outcome: Done::Nothing,
                        record: rec,
                        typ: EventType::Expire,
                        reason: None,
                        signed: false,
                    })
                } else {
                    let rec = self.stamp(st, now, kind_name, id, "{}".into(), None, r.visibility.clone(), true)?;
                    Ok(Applied::Write {
                        outcome: Done::Nothing,
                        record: rec,
                        typ: EventType::Delete,
                        reason: Some(DeleteReason::Retention),
                        signed: false,
                    })
                }
            }
        }
    }

    /// Builds and size-checks a new version originated here (signed later,
    /// with the rest of its batch).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn stamp(
        &self,
        st: &mut WriterState,
        now: u64,
        kind: &str,
        id: &str,
        body: String,
        expires_at_ms: Option<u64>,
        visibility: regmesh_core::Visibility,
        deleted: bool,
    ) -> Result<Record, WriteError> {
        let mut rec = Record {
            kind: kind.into(),
            id: id.into(),
            origin: self.id.clone(),
            version: Hlc::ZERO,
            seq: 0,
            expires_at_ms,
            visibility,
            deleted,
            body,
            sig: [0; 64],
        };
        let size = codec::encode(&rec).len();
        if size > self.settings.max_record_bytes {
            return Err(WriteError::TooLarge {
                bytes: size,
                max: self.settings.max_record_bytes,
            });
        }
        rec.version = st.hlc.tick(now);
        st.seq += 1;
        rec.seq = st.seq;
        Ok(rec)
    }
}
