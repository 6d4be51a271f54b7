//! Start-up: every stored record is decoded and its signature verified on
//! all cores; the indexes and deadlines are rebuilt from those that pass.
//!
//! Must never: index a record that failed verification (it is logged and
//! counted in `regmesh_integrity_errors_total`).

use super::Shared;
use regmesh_core::codec;
use regmesh_core::sign::verify_record;
use regmesh_core::Record;
use regmesh_store::{digest, IndexEntry};
use std::sync::atomic::Ordering;

/// Why a stored record was left out of the index at start-up. The record
/// stays in the store untouched; it is not served.
#[derive(Debug, thiserror::Error)]
pub(super) enum Unverified {
    #[error("cannot decode: {0}")]
    Decode(#[from] regmesh_core::DecodeError),
    #[error("{kind}/{id}: no key for origin {origin:?}")]
    UnknownOrigin { kind: String, id: String, origin: String },
    #[error("{0}")]
    Signature(#[from] regmesh_core::SignatureError),
}

impl Shared {
    /// Start-up: verify every stored record and rebuild the indexes and
    /// deadlines. Records that fail verification are left out and logged.
    pub(super) fn rebuild(&self) -> Result<usize, regmesh_store::StoreError> {
        const CHUNK: usize = 4096;
        let mut chunk: Vec<Vec<u8>> = Vec::with_capacity(CHUNK);
        let mut loaded = 0usize;
        let mut bad = 0usize;
        let mut flush = |chunk: &mut Vec<Vec<u8>>| {
            let verified = self.verify_chunk(chunk);
            let mut ix = self.index.write().expect("index lock");
            let mut dl = self.deadlines.lock().expect("deadlines lock");
            for (bytes, rec) in chunk.drain(..).zip(verified) {
                match rec {
                    Ok(r) => {
                        let terms = self.terms(&r);
                        let class = ix.class_id(self.class_of(&r).as_deref());
                        ix.upsert(
                            &r.kind,
                            &r.id,
                            IndexEntry {
                                digest: digest(&bytes),
                                deleted: r.deleted,
                                origin: std::sync::Arc::from(r.origin.as_str()),
                                seq: r.seq,
                                class,
                            },
                            &[],
                            &terms,
                        );
                        dl.set(&r.kind, &r.id, self.deadline(&r));
                        loaded += 1;
                    }
                    Err(e) => {
                        bad += 1;
                        tracing::error!("left out of the index: {e}");
                    }
                }
            }
        };
        self.store.scan(&mut |_, _, v| {
            chunk.push(v.to_vec());
            if chunk.len() == CHUNK {
                flush(&mut chunk);
            }
            true
        })?;
        flush(&mut chunk);
        if bad > 0 {
            self.metrics.integrity_errors.fetch_add(bad as u64, Ordering::Relaxed);
            tracing::error!(bad, "stored records failed verification and are not served");
        }
        Ok(loaded)
    }

    /// Decodes and verifies a chunk of stored records on all cores.
    pub(super) fn verify_chunk(&self, chunk: &[Vec<u8>]) -> Vec<Result<Record, Unverified>> {
        let one = |b: &Vec<u8>| -> Result<Record, Unverified> {
            let r = codec::decode(b)?;
            let Some(key) = self.keys.read().expect("keys lock").get(&r.origin).copied() else {
                return Err(Unverified::UnknownOrigin {
                    kind: r.kind,
                    id: r.id,
                    origin: r.origin,
                });
            };
            verify_record(&r, &key)?;
            Ok(r)
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        let per = chunk.len().div_ceil(threads).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .chunks(per)
                .map(|part| s.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("verify thread"))
                .collect()
        })
    }
}
