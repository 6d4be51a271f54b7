//! Full syncs in the mesh runtime (DRiP §5.6): asking a peer for
//! everything we may see, pushing a full sync to a peer that asked, and
//! receiving one. Must never take a sync message it did not ask for, nor
//! push more than one full sync to a peer at a time.

use super::{encode_records, Mesh, Peer, PULL_PAGE_BYTES};
use crate::center::{now_ms, WriteError};
use hyper::{Method, StatusCode};
use regmesh_core::Record;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Mesh {
    /// Asks `peer` for a full sync of everything we may see.
    pub(super) async fn request_full_sync(self: Arc<Self>, peer: Arc<Peer>) {
        let path = format!("/sync/node/{}", self.me);
        // Noted before asking: the first sync message may beat the answer.
        self.sync_requests
            .lock()
            .expect("sync requests lock")
            .asked(&peer.cfg.id, now_ms());
        let ok = match peer
            .client
            .call(
                &self.center,
                Method::PUT,
                &path,
                &[("drip-node-id", self.me.clone())],
                None,
            )
            .await
        {
            Ok(a) if a.status == StatusCode::OK => {
                tracing::info!(peer = %peer.cfg.id, "full sync requested");
                true
            }
            Ok(a) => {
                tracing::warn!(peer = %peer.cfg.id, status = %a.status, "full sync refused");
                false
            }
            Err(e) => {
                tracing::warn!(peer = %peer.cfg.id, "full sync request failed: {e}");
                false
            }
        };
        if !ok {
            self.sync_requests
                .lock()
                .expect("sync requests lock")
                .done(&peer.cfg.id);
        }
    }

    /// Whether a `sync` message from `sender` answers a full sync we asked
    /// it for (anything else is refused, and changes nothing).
    pub fn sync_expected_from(&self, sender: &str) -> bool {
        self.sync_requests
            .lock()
            .expect("sync requests lock")
            .admits(sender, now_ms())
    }

    /// Serves a full sync to `peer` (DRiP §5.6): every record its policy
    /// allows, origin by origin, in `sync` messages, then one with
    /// `DRiP-Sync-Complete: true` carrying our watermarks.
    pub async fn push_full_sync(self: Arc<Self>, peer: Arc<Peer>) {
        if !self.syncing_to.lock().expect("sync lock").insert(peer.cfg.id.clone()) {
            return;
        }
        const PAGE: usize = 500;
        let marks = self.marks();
        let origins = self.center.known_centers();
        let mut sent = 0usize;
        let mut ok = true;
        'origins: for origin in origins {
            let mut after = 0;
            loop {
                let records = match self.center.origin_after(&origin, after, PAGE) {
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
                let allowed: Vec<&Record> = records.iter().filter(|r| self.visible_to(&peer.policy, r)).collect();
                // Messages stay far below the peer's body limit, however
                // large the records (up to 64 KiB each).
                let mut rest = &allowed[..];
                while !rest.is_empty() {
                    let mut n = 0;
                    let mut size = 0;
                    while n < rest.len() && (n == 0 || size < PULL_PAGE_BYTES) {
                        size += rest[n].body.len() + 256;
                        n += 1;
                    }
                    sent += n;
                    if !self
                        .send_sync(&peer, encode_records(rest[..n].iter().copied()), false)
                        .await
                    {
                        ok = false;
                        break 'origins;
                    }
                    rest = &rest[n..];
                }
                if records.len() < PAGE {
                    break;
                }
            }
        }
        if ok {
            let body = serde_json::to_vec(&json!({"records": [], "watermarks": marks})).expect("json");
            ok = self.send_sync(&peer, body, true).await;
        }
        tracing::info!(peer = %peer.cfg.id, records = sent, complete = ok, "full sync pushed");
        self.syncing_to.lock().expect("sync lock").remove(&peer.cfg.id);
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

    /// A `sync` message from peer `sender`, which we asked for a full sync
    /// ([`Mesh::sync_expected_from`]): verify and merge (no dedup, no
    /// relay); the last one brings the sender's watermarks, which we adopt
    /// only as far as each origin has shown
    /// ([`Ceilings`](regmesh_proto::sync::Ceilings)).
    pub async fn receive_sync(
        &self,
        sender: &str,
        records: Vec<Record>,
        complete: bool,
        marks: HashMap<String, u64>,
    ) -> Result<usize, WriteError> {
        let seen = records.clone();
        let applied = self.center.apply_remote(records).await?;
        self.witness_records(&seen);
        if complete {
            let ceilings = {
                let mut c = self.ceilings.lock().expect("ceilings lock");
                if let Some(&own) = marks.get(sender) {
                    c.witness(sender, own);
                }
                c.clone()
            };
            let mut m = self.marks.lock().expect("marks lock");
            for (origin, w) in marks {
                if origin != self.me && (self.center.key_of(&origin).is_some()) {
                    m.raise(&origin, ceilings.bound(&origin, w));
                }
            }
            drop(m);
            self.marks_dirty.store(true, Ordering::Relaxed);
            self.full_sync_done.store(true, Ordering::Relaxed);
            self.sync_requests.lock().expect("sync requests lock").done(sender);
        }
        Ok(applied)
    }
}
