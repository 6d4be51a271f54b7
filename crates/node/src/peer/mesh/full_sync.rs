//! Full syncs in the mesh runtime (DRiP §5.6): an executor of the full-sync
//! steps of part `regmesh_proto::mesh::pulls`. It asks a peer for a full
//! sync, pushes one to a peer that asked (reading the store, each message
//! bounded in bytes), and takes `sync` messages the part admits. Must never
//! take a sync message the part did not admit, nor decide on its own who
//! may sync or when (the part does).

use super::pulls::{decode_items, DecodeError, View};
use super::{encode_records, Mesh, Peer};
use crate::center::{now_ms, WriteError};
use hyper::{Method, StatusCode};
use regmesh_core::Record;
use regmesh_proto::mesh::pulls::{SyncRefused, SYNC_MARKS_MAX};
use regmesh_proto::wire::pull::SyncBody;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A `sync` message refused.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// We asked the sender for no full sync (409 `unsolicited_sync`).
    /// Nothing changed.
    #[error(transparent)]
    Unsolicited(#[from] SyncRefused),
    /// The body is not a sync message (400). Nothing changed.
    #[error("{0}")]
    Malformed(String),
    /// Merging its records failed ([`WriteError`] says what changed).
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl From<DecodeError> for SyncError {
    fn from(e: DecodeError) -> Self {
        SyncError::Malformed(e.to_string())
    }
}

impl Mesh {
    /// Beats decided this center should ask `peer` for a full sync; the
    /// part says whether it does.
    pub(super) async fn request_full_sync(self: Arc<Self>, peer: Arc<Peer>) {
        self.with_pulls(|p, _, out| p.on_full_sync_requested(now_ms(), &peer.cfg.id, out));
    }

    /// Peer `peer` asked us for a full sync (`PUT /sync/node/:peer`): the
    /// part starts a push unless one to it runs.
    pub fn full_sync_asked(self: &Arc<Self>, peer: &Peer) {
        self.with_pulls(|p, _, out| p.on_full_sync_asked(now_ms(), &peer.cfg.id, out));
    }

    /// Whether a full sync we asked for has arrived complete.
    pub fn full_sync_done(&self) -> bool {
        self.pulls.lock().expect("pulls lock").full_sync_done()
    }

    /// Sends `PUT /sync/node/:me` to `peer_id`; feeds the answer back.
    pub(super) async fn ask_full_sync(&self, peer_id: &str) {
        let accepted = match self.peer(peer_id) {
            None => false,
            Some(peer) => {
                let path = format!("/sync/node/{}", self.me);
                let headers = [("drip-node-id", self.me.clone())];
                match peer.client.call(&self.center, Method::PUT, &path, &headers, None).await {
                    Ok(a) if a.status == StatusCode::OK => {
                        tracing::info!(peer = %peer_id, "full sync requested");
                        true
                    }
                    Ok(a) => {
                        tracing::warn!(peer = %peer_id, status = %a.status, "full sync refused");
                        false
                    }
                    Err(e) => {
                        tracing::warn!(peer = %peer_id, "full sync request failed: {e}");
                        false
                    }
                }
            }
        };
        self.pulls
            .lock()
            .expect("pulls lock")
            .on_full_sync_answer(now_ms(), peer_id, accepted);
    }

    /// Pushes a full sync to `peer` (DRiP §5.6): every record its policy
    /// allows, origin by origin, `page_records` read at a time, in `sync`
    /// messages of about `bytes_max` at most, then one with
    /// `DRiP-Sync-Complete: true` carrying our watermarks.
    pub(super) async fn push_full_sync(&self, peer: &Peer, page_records: usize, bytes_max: usize) {
        let marks = self.marks();
        let mut progress = crate::progress::Progress::log(
            &format!("full sync to {}", peer.cfg.id),
            Some(self.center.entries_total()),
        );
        let mut sent = 0usize;
        let mut ok = true;
        'origins: for origin in self.center.known_centers() {
            let mut after = 0;
            loop {
                let records = match self.center.origin_after(&origin, after, page_records) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!("full sync read failed: {e}");
                        ok = false;
                        break 'origins;
                    }
                };
                let Some(last) = records.last().map(|r| r.seq) else {
                    break;
                };
                after = last;
                progress.add(records.len() as u64);
                let allowed: Vec<&Record> = records.iter().filter(|r| self.visible_to(&peer.policy, r)).collect();
                // Messages stay far below the peer's body limit, however
                // large the records (up to 64 KiB each).
                let mut rest = &allowed[..];
                while !rest.is_empty() {
                    let mut n = 0;
                    let mut size = 0;
                    while n < rest.len() && (n == 0 || size < bytes_max) {
                        size += rest[n].body.len() + 256;
                        n += 1;
                    }
                    sent += n;
                    if !self
                        .send_sync(peer, encode_records(rest[..n].iter().copied()), false)
                        .await
                    {
                        ok = false;
                        break 'origins;
                    }
                    rest = &rest[n..];
                }
                if records.len() < page_records {
                    break;
                }
            }
        }
        if ok {
            let body = SyncBody::<String> {
                records: Vec::new(),
                watermarks: Some(marks),
            };
            ok = self
                .send_sync(peer, serde_json::to_vec(&body).expect("json"), true)
                .await;
        }
        progress.finish();
        tracing::info!(peer = %peer.cfg.id, records = sent, complete = ok, "full sync pushed");
    }

    async fn send_sync(&self, peer: &Peer, body: Vec<u8>, complete: bool) -> bool {
        let mut headers = vec![
            ("drip-node-id", self.me.clone()),
            ("drip-node-counter", "0".to_string()),
            ("drip-node-counter-reset", "false".to_string()),
            ("drip-transaction-type", "sync".to_string()),
            ("drip-sync-complete", complete.to_string()),
        ];
        headers.extend(self.record_format_header(peer));
        matches!(
            peer.client.call(&self.center, Method::POST, "/commit", &headers, Some(body)).await,
            Ok(a) if a.status == StatusCode::OK
        )
    }

    /// Whether a `sync` message from `sender` answers a full sync we asked
    /// it for; anything else is refused before its body is read.
    pub fn admit_sync(&self, sender: &str) -> Result<(), SyncRefused> {
        self.pulls.lock().expect("pulls lock").on_sync_message(now_ms(), sender)
    }

    /// A `sync` message `raw` from peer `sender`: admitted by the part,
    /// verified and merged (no dedup, no relay); the complete one brings
    /// the sender's watermarks, which the part adopts. Returns the records
    /// applied.
    pub async fn receive_sync(self: &Arc<Self>, sender: &str, raw: &[u8], complete: bool) -> Result<usize, SyncError> {
        self.admit_sync(sender)?;
        let body: SyncBody<String> =
            serde_json::from_slice(raw).map_err(|e| SyncError::Malformed(format!("not a sync message: {e}")))?;
        let marks: HashMap<String, u64> = body.watermarks.unwrap_or_default();
        if marks.len() > SYNC_MARKS_MAX {
            return Err(SyncError::Malformed(format!("more than {SYNC_MARKS_MAX} watermarks")));
        }
        let records = decode_items(body.records)?;
        let seen = records.clone();
        let applied = self.center.apply_remote(records).await?;
        self.witness_records(&seen);
        {
            // The sender knows the total, not we: records so far and rate.
            let mut p = self.sync_progress.lock().expect("progress lock");
            if p.as_ref().is_none_or(|(from, _)| from != sender) {
                let what = format!("full sync from {sender}");
                *p = Some((sender.to_string(), crate::progress::Progress::log(&what, None)));
            }
            if let Some((_, progress)) = p.as_mut() {
                progress.add(seen.len() as u64);
            }
            if complete {
                if let Some((_, progress)) = p.take() {
                    progress.finish();
                }
            }
        }
        if complete {
            // Adopted before the answer goes back.
            let mut cmds = Vec::new();
            self.pulls
                .lock()
                .expect("pulls lock")
                .on_sync_complete(now_ms(), sender, marks, &View(self), &mut cmds)?;
            self.clone().execute_pulls(cmds).await;
        }
        Ok(applied)
    }

    /// A complete full sync from `peer`: its word on its own origin, then
    /// each mark raised only as far as its origin has shown
    /// ([`Ceilings`](regmesh_proto::sync::Ceilings)).
    pub(super) fn adopt_marks(&self, peer: &str, own: Option<u64>, marks: Vec<(String, u64)>) {
        let ceilings = {
            let mut c = self.ceilings.lock().expect("ceilings lock");
            if let Some(own) = own {
                c.witness(peer, own);
            }
            c.clone()
        };
        let mut m = self.marks.lock().expect("marks lock");
        for (origin, w) in marks {
            m.raise(&origin, ceilings.bound(&origin, w));
        }
        drop(m);
        self.marks_dirty.store(true, Ordering::Relaxed);
    }
}
