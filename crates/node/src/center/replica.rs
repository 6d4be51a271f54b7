//! What the mesh uses: checks of versions from other centers (each record on
//! its own: kind, id, origin, signature, size, body), their merge, pulls by
//! origin and seq, resync drops, purge marks, class digests and watermarks.
//!
//! Must never: apply or hand on a record that failed a check, or report a
//! call as covering a refused record.

use super::{now_ms, Center, Outcome, ReadError, WriteError, WriteOp};
use regmesh_core::codec::{self, canonical_json};
use regmesh_core::sign::verify_record;
use regmesh_core::{HlcClock, Record};
use regmesh_store::{digest, WriteBatch};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// Records from another center, checked one by one ([`Center::verify_remote`]):
/// those that passed, and those refused with the reason.
#[derive(Debug)]
pub struct Verified {
    passed: Vec<Record>,
    refused: Vec<Refusal>,
}

impl Verified {
    /// The records that passed every check, in the order received.
    pub fn records(&self) -> &[Record] {
        &self.passed
    }

    /// The records that failed a check, with why.
    pub fn refused(&self) -> &[Refusal] {
        &self.refused
    }
}

/// Why one record from another center was refused. The record was neither
/// applied nor relayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusalReason {
    /// No kind of that name is registered here.
    #[error("unknown kind")]
    UnknownKind,
    /// The id is not a valid record id.
    #[error("invalid id: {0}")]
    BadId(String),
    /// No key is configured for the origin.
    #[error("origin is not a known center")]
    UnknownOrigin,
    /// The origin's signature does not verify (altered on the way, or forged).
    #[error("signature does not verify")]
    BadSignature,
    /// The version's clock is further ahead of ours than the HLC drift bound
    /// (`HlcClock::DRIFT_MAX_MS`): taking it would drag this center's clock.
    #[error("version is {ahead_ms} ms ahead of this center's clock; the limit is {limit_ms} ms")]
    ClockAhead { ahead_ms: u64, limit_ms: u64 },
    /// Larger than `limits.max_record_bytes`.
    #[error("record is {bytes} bytes; the limit is {max}")]
    TooLarge { bytes: usize, max: usize },
    /// The body is not what the kind accepts from a client
    /// ([`Kind::prepare`]), or a tombstone carries a body.
    #[error("body is not a valid {kind}: {message}")]
    InvalidBody { kind: String, message: String },
    /// The body passes the kind's checks but is not in the normalized form
    /// the origin's writer stores (so it did not come from one).
    #[error("body is not in the normalized form its kind stores")]
    NotNormalized,
}

impl RefusalReason {
    /// Label for `regmesh_replica_refused_total{reason=...}`.
    pub fn label(&self) -> &'static str {
        match self {
            RefusalReason::UnknownKind => "unknown_kind",
            RefusalReason::BadId(_) => "bad_id",
            RefusalReason::UnknownOrigin => "unknown_origin",
            RefusalReason::BadSignature => "bad_signature",
            RefusalReason::ClockAhead { .. } => "clock_ahead",
            RefusalReason::TooLarge { .. } => "too_large",
            RefusalReason::InvalidBody { .. } => "invalid_body",
            RefusalReason::NotNormalized => "not_normalized",
        }
    }
}

/// One refused record from another center: which, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}/{id} from {origin} (seq {seq}): {reason}")]
pub struct Refusal {
    pub kind: String,
    pub id: String,
    pub origin: String,
    pub seq: u64,
    pub reason: RefusalReason,
}

impl Center {
    /// Checks versions received from a peer, each on its own: known kind,
    /// valid id, known origin, valid signature, size, and a body the kind
    /// accepts from a client, in the form the origin's writer stores it
    /// (tombstones: the empty body). What fails is refused with its reason
    /// and counted in `regmesh_replica_refused_total`; it never refuses the
    /// records beside it.
    pub fn verify_remote(&self, records: Vec<Record>) -> Verified {
        let mut passed = Vec::with_capacity(records.len());
        let mut refused = Vec::new();
        for r in records {
            match self.check_remote(&r) {
                Ok(()) => passed.push(r),
                Err(reason) => {
                    self.shared.metrics.count_replica_refused(reason.label());
                    let refusal = Refusal {
                        kind: r.kind,
                        id: r.id,
                        origin: r.origin,
                        seq: r.seq,
                        reason,
                    };
                    tracing::debug!("record from a peer refused: {refusal}");
                    refused.push(refusal);
                }
            }
        }
        // One line per call, not per record: a hostile batch cannot
        // multiply the log.
        if let Some(first) = refused.first() {
            tracing::warn!(
                refused = refused.len(),
                passed = passed.len(),
                "records from a peer refused; first: {first}"
            );
        }
        Verified { passed, refused }
    }

    /// The checks of [`Center::verify_remote`] for one record.
    pub(super) fn check_remote(&self, r: &Record) -> Result<(), RefusalReason> {
        let kind = self.shared.kinds.get(&r.kind).ok_or(RefusalReason::UnknownKind)?;
        regmesh_core::validate_record_id(&r.id).map_err(|e| RefusalReason::BadId(e.to_string()))?;
        let key = self.key_of(&r.origin).ok_or(RefusalReason::UnknownOrigin)?;
        verify_record(r, &key).map_err(|_| RefusalReason::BadSignature)?;
        let (now, limit_ms) = (now_ms(), HlcClock::DRIFT_MAX_MS);
        if r.version.wall_ms > now.saturating_add(limit_ms) {
            return Err(RefusalReason::ClockAhead {
                ahead_ms: r.version.wall_ms - now,
                limit_ms,
            });
        }
        let size = codec::encode(r).len();
        let max = self.shared.settings.max_record_bytes;
        if size > max {
            return Err(RefusalReason::TooLarge { bytes: size, max });
        }
        let invalid = |message: String| RefusalReason::InvalidBody {
            kind: r.kind.clone(),
            message,
        };
        if r.deleted {
            // The origin's writer gives every tombstone the empty body.
            return match r.body.as_str() {
                "{}" => Ok(()),
                _ => Err(invalid("a tombstone's body must be {}".into())),
            };
        }
        let body = r.body_value().map_err(|e| invalid(format!("not JSON: {e}")))?;
        let prepared = kind.prepare(&r.id, body).map_err(|e| invalid(e.to_string()))?;
        if canonical_json(&prepared.body) != r.body {
            return Err(RefusalReason::NotNormalized);
        }
        Ok(())
    }

    /// Merges the versions that passed [`Center::verify_remote`]. Each merges
    /// under the lattice order, so older or duplicate versions change
    /// nothing. Each that was newer counts in `regmesh_propagation_seconds`
    /// (its HLC stamp to now). Returns how many were newer than what this center held; if
    /// any record was refused, [`WriteError::Refused`] (after the others
    /// were merged), so a caller never takes the call as covering them.
    pub async fn apply_verified(&self, records: Verified) -> Result<usize, WriteError> {
        let Verified { passed, refused } = records;
        let stamps: Vec<(String, u64)> = passed.iter().map(|r| (r.origin.clone(), r.version.wall_ms)).collect();
        let ops = passed
            .into_iter()
            .map(|r| (r.kind.clone(), r.id.clone(), WriteOp::Merge(Box::new(r))));
        let outcomes = self.submit_all(ops).await?;
        let applied = outcomes.iter().filter(|o| !matches!(o, Outcome::Nothing)).count();
        // Propagation delay of each version that was new here.
        self.metrics().latency.observe_propagation(
            now_ms(),
            stamps
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| !matches!(o, Outcome::Nothing))
                .map(|((origin, at), _)| (origin.as_str(), *at)),
        );
        if refused.is_empty() {
            Ok(applied)
        } else {
            Err(WriteError::Refused { applied, refused })
        }
    }

    /// [`Center::verify_remote`] then [`Center::apply_verified`]: the records
    /// that pass are merged; any refused make it [`WriteError::Refused`].
    pub async fn apply_remote(&self, records: Vec<Record>) -> Result<usize, WriteError> {
        self.apply_verified(self.verify_remote(records)).await
    }

    /// Ends a replacing resync of `origin`: drops each `(kind, id, seq)`
    /// that is still that live version (a `delete` change with reason
    /// `resync`), and raises the origin's purge mark to `purged_through`.
    /// Never drops this center's own records.
    pub async fn forget(
        &self,
        origin: &str,
        drops: Vec<(String, String, u64)>,
        purged_through: u64,
    ) -> Result<usize, WriteError> {
        // With nothing to drop, one op on no key still raises the mark.
        let keys = if drops.is_empty() {
            vec![(String::new(), String::new(), 0)]
        } else {
            drops
        };
        let ops = keys.into_iter().map(|(kind, id, seq)| {
            let op = WriteOp::Forget {
                origin: origin.to_string(),
                seq,
                purged_through,
            };
            (kind, id, op)
        });
        let outcomes = self.submit_all(ops).await?;
        Ok(outcomes.iter().filter(|o| matches!(o, Outcome::Deleted(_))).count())
    }

    /// Live records of `origin` held here: `(kind, id, seq)`.
    pub fn origin_live(&self, origin: &str) -> Vec<(String, String, u64)> {
        let ix = self.shared.index.read().expect("index lock");
        ix.by_origin_after(origin, 0, usize::MAX)
            .into_iter()
            .filter(|(_, k, i)| ix.get(k, i).is_some_and(|e| !e.deleted))
            .map(|(seq, k, i)| (k, i, seq))
            .collect()
    }

    /// Stored versions (tombstones included) of `origin` with seq above
    /// `after`, in seq order, at most `limit`; for anti-entropy pulls.
    pub fn origin_after(&self, origin: &str, after: u64, limit: usize) -> Result<Vec<Record>, ReadError> {
        let keys = self
            .shared
            .index
            .read()
            .expect("index lock")
            .by_origin_after(origin, after, limit);
        let mut out = Vec::with_capacity(keys.len());
        for (_, kind, id) in keys {
            let entry = self.shared.index.read().expect("index lock").get(&kind, &id).cloned();
            let Some(entry) = entry else { continue };
            let Some(bytes) = self
                .shared
                .store
                .get(&kind, &id)
                .map_err(|e| ReadError::Storage(e.to_string()))?
            else {
                continue;
            };
            if digest(&bytes) != entry.digest {
                // Replaced since the index read; the newer version has a
                // higher seq and is sent in its turn.
                continue;
            }
            out.push(codec::decode(&bytes).map_err(|e| ReadError::Storage(e.to_string()))?);
        }
        Ok(out)
    }

    /// Per origin, the highest seq of a deletion this center can no longer
    /// show a peer: tombstones purged after the horizon, or deletions learnt
    /// only by a resync. A peer whose watermark is below it may hold records
    /// deleted since, and must resync that origin (PROTOCOL.md).
    pub fn purged_through(&self, origin: &str) -> u64 {
        self.shared
            .purged
            .read()
            .expect("purged lock")
            .get(origin)
            .copied()
            .unwrap_or(0)
    }

    /// Every origin's purge mark ([`Center::purged_through`]).
    pub fn purge_marks(&self) -> BTreeMap<String, u64> {
        self.shared.purged.read().expect("purged lock").clone()
    }

    /// Digests of `origin`'s live versions, per (kind, visibility class).
    pub fn class_digests(&self, origin: &str) -> Vec<(String, String, regmesh_proto::digest::SetDigest)> {
        self.shared.index.read().expect("index lock").class_digests(origin)
    }

    /// The last sequence number this center issued (committed). Every own
    /// write up to it is durable here, or superseded.
    pub fn own_seq(&self) -> u64 {
        self.shared.own_seq.load(Ordering::Acquire)
    }

    /// Persists per-origin watermarks (anti-entropy) as one metadata cell.
    pub fn save_watermarks(&self, w: &[(String, u64)]) -> Result<(), WriteError> {
        let text = serde_json::to_vec(&w.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()).expect("json");
        self.shared
            .store
            .apply(&WriteBatch {
                meta: vec![("watermarks".into(), text)],
                ..Default::default()
            })
            .map_err(|e| WriteError::Storage(e.to_string()))?;
        *self.shared.saved_marks.write().expect("marks lock") = w.iter().cloned().collect();
        Ok(())
    }

    /// Watermarks saved by [`Center::save_watermarks`].
    pub fn load_watermarks(&self) -> Vec<(String, u64)> {
        self.shared
            .store
            .meta("watermarks")
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice::<std::collections::BTreeMap<String, u64>>(&b).ok())
            .map(|m| m.into_iter().collect())
            .unwrap_or_default()
    }
}
