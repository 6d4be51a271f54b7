//! Anti-entropy pulls in the mesh runtime: pulling an origin's records
//! from a peer page by page, resyncs when a peer has purged what we ask
//! for, serving peers' pulls, and comparing digests to repair differences.
//! The I/O only: what to pull, when a resync is due and how digests are
//! keyed are `regmesh_proto::sync`'s. Must never move a watermark past what
//! an answer covered, nor serve a record the asking peer's policy hides.

use super::{decode_records, Mesh, Peer, PULL_PAGE_BYTES};
use crate::center::now_ms;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hyper::{Method, StatusCode};
use regmesh_core::codec;
use regmesh_core::Record;
use regmesh_proto::policy::ExportPolicy;
use regmesh_proto::sync::{self as ae, Resync};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Mesh {
    /// The link part found `peer` ahead on `origin`: a pull starts unless
    /// one of `origin` runs.
    pub(super) fn start_pull(self: &Arc<Self>, peer: &Arc<Peer>, origin: &str) {
        if self.pulling.lock().expect("pulling lock").start(origin) {
            tokio::spawn(self.clone().pull(peer.clone(), origin.to_string(), false));
        }
    }

    /// The link part found `peer`'s digests of `origin` differing from
    /// ours at equal watermarks: re-pulls that origin from the start (at
    /// most every [`ae::REPAIR_EVERY_MS`] per peer and origin).
    pub(super) fn repair(self: &Arc<Self>, peer: &Arc<Peer>, origin: &str) {
        let now = now_ms();
        let slot = (peer.cfg.id.clone(), origin.to_string());
        let mut last = self.last_repair_ms.lock().expect("repair lock");
        // The peer's turn is spent only on a re-pull that starts (one pull
        // per origin at a time): another peer's useless repair must not
        // keep this one from ever running.
        if ae::repair_due(last.get(&slot).copied(), now) && self.pulling.lock().expect("pulling lock").start(origin) {
            last.insert(slot, now);
            drop(last);
            tracing::info!(peer = %peer.cfg.id, %origin, "digests differ at equal watermarks: re-pulling");
            tokio::spawn(self.clone().pull(peer.clone(), origin.to_string(), true));
        }
    }

    /// Pulls `origin`'s versions after our watermark from `peer`, page by
    /// page, and advances the watermark to what the peer covered.
    ///
    /// If the peer answers that it purged deletions of `origin` above our
    /// watermark, we may hold records deleted since: the pull becomes a
    /// *replacing resync* of that origin. It starts again from seq 0, and
    /// when the peer has sent everything, drops each live record of
    /// `origin` we held when it began, that the peer did not send, that the
    /// peer's policy would have let it send, and that the peer has covered.
    pub(super) async fn pull(self: Arc<Self>, peer: Arc<Peer>, origin: String, from_zero: bool) {
        const PAGE: usize = 1000;
        const PAGES_MAX: usize = 100;
        const RESYNC_PAGES_MAX: usize = 10_000;
        self.stats.pulls.fetch_add(1, Ordering::Relaxed);
        let mut after = if from_zero { 0 } else { self.mark(&origin) };
        let mut resync: Option<Resync> = None;
        let mut complete = false;
        let mut last_answer = Value::Null;
        let mut last_covered = 0;
        let mut page_no = 0;
        while page_no < if resync.is_some() { RESYNC_PAGES_MAX } else { PAGES_MAX } {
            page_no += 1;
            let body = serde_json::to_vec(&json!({"origin": origin, "after": after, "limit": PAGE})).expect("json");
            let page = match peer
                .client
                .call(&self.center, Method::POST, "/mesh/v1/pull", &[], Some(body))
                .await
            {
                Ok(a) if a.status == StatusCode::OK => a.body,
                Ok(a) => {
                    tracing::warn!(peer = %peer.cfg.id, %origin, status = %a.status, "pull refused");
                    break;
                }
                Err(e) => {
                    tracing::debug!(peer = %peer.cfg.id, %origin, "pull failed: {e}");
                    break;
                }
            };
            let parsed: Result<(Vec<Record>, u64, bool, Value), String> = (|| {
                let v: Value = serde_json::from_slice(&page).map_err(|e| e.to_string())?;
                let covered = v
                    .get("covered_through")
                    .and_then(Value::as_u64)
                    .ok_or("no covered_through")?;
                let more = v.get("more").and_then(Value::as_bool).unwrap_or(false);
                Ok((decode_records(&page)?, covered, more, v))
            })();
            let (records, covered, more, answer) = match parsed {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(peer = %peer.cfg.id, %origin, "bad pull answer: {e}");
                    break;
                }
            };
            if records.iter().any(|r| r.origin != origin) {
                tracing::warn!(peer = %peer.cfg.id, %origin, "pull answer holds another origin's records");
                break;
            }
            let purged = answer.get("purged_through").and_then(Value::as_u64).unwrap_or(0);
            let start_resync = resync.is_none() && ae::resync_needed(&self.me, &origin, purged, self.mark(&origin));
            if start_resync {
                tracing::info!(
                    peer = %peer.cfg.id, %origin, purged, mark = self.mark(&origin),
                    "behind the peer's tombstone horizon: resyncing this origin"
                );
                self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                resync = Some(Resync::begin(self.center.origin_live(&origin), purged));
            }
            if let Some(rs) = resync.as_mut() {
                for r in &records {
                    rs.sent(&r.kind, &r.id);
                }
            }
            let records = if from_zero {
                // A digest repair fills what the peer has and we lack; it
                // never brings back what a purged deletion removed here.
                let purged = self.center.purged_through(&origin);
                records
                    .into_iter()
                    .filter(|r| {
                        let held = matches!(self.center.get_held(&r.kind, &r.id), Ok(Some(_)));
                        ae::repair_may_apply(r.seq, purged, held)
                    })
                    .collect()
            } else {
                records
            };
            let n = records.len() as u64;
            let max_seq = records.iter().map(|r| r.seq).max();
            if let Err(e) = self.center.apply_remote(records).await {
                tracing::warn!(peer = %peer.cfg.id, %origin, "pulled records refused: {e}");
                break;
            }
            {
                // Applied, so verified: their seqs are the origin's word, and
                // so is what the origin itself says it covered.
                let mut c = self.ceilings.lock().expect("ceilings lock");
                if let Some(m) = max_seq {
                    c.witness(&origin, m);
                }
                if peer.cfg.id == origin {
                    c.witness(&origin, covered);
                }
            }
            last_covered = covered;
            self.stats.pulled_records.fetch_add(n, Ordering::Relaxed);
            if start_resync && after > 0 {
                // Start again from the beginning; this page was merged.
                after = 0;
                continue;
            }
            // A resync moves the watermark only once complete: one broken
            // off half way must start again, not leave deleted records
            // behind a watermark that no longer asks for them.
            if resync.is_none() {
                self.advance(&origin, after + 1, covered);
            }
            if !more || covered <= after {
                complete = !more;
                last_answer = answer;
                break;
            }
            after = covered;
        }
        let resyncing = resync.is_some();
        if let (Some(rs), true) = (resync, complete) {
            let covered = last_answer.get("covered_through").and_then(Value::as_u64).unwrap_or(0);
            let covered = self.ceilings.lock().expect("ceilings lock").bound(&origin, covered);
            if self.finish_resync(&peer, &origin, rs, &last_answer).await
                && self.marks.lock().expect("marks lock").raise(&origin, covered)
            {
                self.marks_dirty.store(true, Ordering::Relaxed);
            }
        }
        if !resyncing && last_covered > self.mark(&origin) && origin != self.me {
            // The peer claims more than the origin has shown us: do not
            // pull on that claim again until it grows.
            tracing::debug!(peer = %peer.cfg.id, %origin, claimed = last_covered, "pull answer covers more than its origin has shown");
            self.unproven
                .lock()
                .expect("unproven lock")
                .note(&peer.cfg.id, &origin, last_covered);
        }
        self.pulling.lock().expect("pulling lock").done(&origin);
    }

    /// Drops what a complete replacing resync of `origin` from `peer` showed
    /// gone: records held when it began that the peer neither sent nor
    /// withholds from us by policy, at seqs the peer covered.
    /// Returns whether the drops are done (the watermark may then move).
    async fn finish_resync(&self, peer: &Peer, origin: &str, rs: Resync, answer: &Value) -> bool {
        let covered = answer.get("covered_through").and_then(Value::as_u64).unwrap_or(0);
        let names = |f: &str| -> Vec<String> {
            answer
                .pointer(&format!("/policy/{f}"))
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                .unwrap_or_default()
        };
        if answer.pointer("/policy/kinds").and_then(Value::as_array).is_none() {
            tracing::warn!(peer = %peer.cfg.id, %origin, "resync answer has no policy; dropping nothing");
            return false;
        }
        let theirs = ExportPolicy::new(names("kinds"), names("groups"));
        let purged = rs.purged;
        let drops = rs.drops(covered, |kind, id, seq| {
            matches!(self.center.get_held(kind, id), Ok(Some(r)) if r.seq == seq && self.visible_to(&theirs, &r))
        });
        let candidates = drops.len();
        match self.center.forget(origin, drops, purged).await {
            Ok(dropped) => {
                tracing::info!(
                    peer = %peer.cfg.id, %origin, candidates, dropped,
                    "resync complete: dropped records deleted at their origin"
                );
                true
            }
            Err(e) => {
                tracing::warn!(peer = %peer.cfg.id, %origin, "resync could not drop records: {e}");
                false
            }
        }
    }

    /// Serves a pull from peer `sender`: `origin`'s versions after `after`
    /// that its policy allows, and the seq through which they cover.
    pub fn serve_pull(&self, sender: &str, origin: &str, after: u64, limit: usize) -> Result<Vec<u8>, String> {
        let peer = self.peer(sender).ok_or("not a peer")?;
        let limit = limit.clamp(1, 1000);
        let records = self
            .center
            .origin_after(origin, after, limit)
            .map_err(|e| e.to_string())?;
        let mut more = records.len() == limit;
        let mut items: Vec<String> = Vec::new();
        let mut bytes = 0usize;
        // The last seq this page speaks for (sent, or withheld by policy).
        let mut last = after;
        let mark = self.mark(origin);
        for r in &records {
            if !ae::page_carries(r.seq, mark) {
                more = false;
                break;
            }
            if bytes >= PULL_PAGE_BYTES {
                more = true;
                break;
            }
            if self.visible_to(&peer.policy, r) {
                let item = B64.encode(codec::encode(r));
                bytes += item.len() + 3;
                items.push(item);
            }
            last = r.seq;
        }
        let covered = ae::page_covers(after, last, more, mark);
        Ok(serde_json::to_vec(&json!({
            "records": items,
            "covered_through": covered,
            "more": more,
            // Deletions of `origin` up to here can no longer be shown: a
            // puller below it resyncs (PROTOCOL.md, "Tombstone horizon").
            "purged_through": self.center.purged_through(origin),
            // What we send the puller, so it can tell "withheld" from "gone".
            "policy": {"kinds": peer.policy.kinds, "groups": peer.policy.groups},
        }))
        .expect("json"))
    }
}
