//! Reads: point lookups and filtered, paged listings from the index, each
//! record checked against the digest of the bytes verified when it entered.
//!
//! Must never: serve bytes that do not match their verified digest, or a
//! record of another center whose lease ran out more than the grace ago.

use super::{now_ms, Center, ReadError, Shared};
use regmesh_core::{codec, Record};
use regmesh_store::digest;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Center {
    /// The live record `(kind, id)`, or None if absent, deleted, or another
    /// center's record whose lease ran out more than the grace ago.
    pub fn get(&self, kind: &str, id: &str) -> Result<Option<Record>, ReadError> {
        Ok(self.get_held(kind, id)?.filter(|r| !self.past_grace(r)))
    }

    /// The live version held here, even one [`Center::get`] hides because
    /// its origin let the lease lapse long ago.
    pub fn get_held(&self, kind: &str, id: &str) -> Result<Option<Record>, ReadError> {
        self.shared.read_verified(kind, id)
    }

    /// The version held here, a tombstone included (for diagnostics),
    /// checked against its verified digest like [`Center::get_held`].
    pub fn get_version(&self, kind: &str, id: &str) -> Result<Option<Record>, ReadError> {
        let entry = self.shared.index.read().expect("index lock").get(kind, id).cloned();
        match entry {
            Some(e) if e.deleted => {
                let bytes = self
                    .shared
                    .store
                    .get(kind, id)
                    .map_err(|e| ReadError::Storage(e.to_string()))?;
                match bytes {
                    Some(b) if digest(&b) == e.digest => codec::decode(&b)
                        .map(Some)
                        .map_err(|e| ReadError::Storage(e.to_string())),
                    // Raced with a commit: read the live version instead.
                    _ => self.get_held(kind, id),
                }
            }
            _ => self.get_held(kind, id),
        }
    }

    /// True for another center's record whose lease ended more than
    /// `leases.retention_s` ago without word from its origin. Such records
    /// are no longer served, but not deleted: expiry is the origin's call,
    /// and a center cut off from many origins never mass-expires.
    pub(super) fn past_grace(&self, r: &Record) -> bool {
        r.origin != self.shared.id
            && r.expires_at_ms
                .is_some_and(|t| t.saturating_add(self.shared.settings.retention_ms) < now_ms())
    }

    /// A page of live records of `kind` matching all `filters`, in id order
    /// after `after`. Returns the records and whether more follow.
    pub fn list(
        &self,
        kind: &str,
        filters: &[(&str, &str)],
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Record>, bool), ReadError> {
        let k = self
            .shared
            .kinds
            .get(kind)
            .ok_or_else(|| ReadError::BadQuery(format!("unknown kind {kind:?}")))?;
        for (f, _) in filters {
            if *f != "origin" && !k.index_fields().contains(f) {
                return Err(ReadError::BadQuery(format!(
                    "{kind} records cannot be filtered by {f:?}"
                )));
            }
        }
        let page = self
            .shared
            .index
            .read()
            .expect("index lock")
            .query(kind, filters, after, limit);
        let ids: Vec<&str> = page.ids.iter().map(String::as_str).collect();
        let got = self
            .shared
            .store
            .get_many(kind, &ids)
            .map_err(|e| ReadError::Storage(e.to_string()))?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, bytes) in ids.iter().zip(got) {
            let ok = {
                let ix = self.shared.index.read().expect("index lock");
                match (ix.get(kind, id), &bytes) {
                    (Some(e), Some(b)) if !e.deleted && e.digest == digest(b) => Some(b),
                    _ => None,
                }
            };
            // A write may have landed between the index and the store read:
            // fall back to the careful single read.
            let rec = match ok {
                Some(b) => Some(codec::decode(b).map_err(|e| ReadError::Storage(e.to_string()))?),
                None => self.shared.read_verified(kind, id)?,
            };
            out.extend(rec.filter(|r| !self.past_grace(r)));
        }
        Ok((out, page.more))
    }
}

impl Shared {
    /// Reads `(kind, id)` from the store and checks it against the index
    /// digest. None for absent or tombstone.
    pub(super) fn read_verified(&self, kind: &str, id: &str) -> Result<Option<Record>, ReadError> {
        if self.shared_authority {
            return self.read_shared(kind, id);
        }
        let mut last_digest = None;
        for attempt in 0..5 {
            let entry = self.index.read().expect("index lock").get(kind, id).cloned();
            let Some(entry) = entry else { return Ok(None) };
            if entry.deleted {
                return Ok(None);
            }
            let bytes = self
                .store
                .get(kind, id)
                .map_err(|e| ReadError::Storage(e.to_string()))?;
            if let Some(b) = bytes {
                let d = digest(&b);
                if d == entry.digest {
                    return codec::decode(&b)
                        .map(Some)
                        .map_err(|e| ReadError::Storage(e.to_string()));
                }
                last_digest = Some(d);
            }
            // Raced with a commit (store ahead of index), or the bytes changed
            // under us. Give the writer a moment to publish, then look again.
            std::thread::sleep(Duration::from_millis(1 << attempt));
        }
        self.metrics.integrity_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            kind,
            id,
            ?last_digest,
            "stored record does not match its verified digest"
        );
        Err(ReadError::Integrity {
            kind: kind.into(),
            id: id.into(),
        })
    }
}
