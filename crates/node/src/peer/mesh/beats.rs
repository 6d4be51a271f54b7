//! Heartbeats and lifecycles in the mesh runtime: the per-peer beat loop
//! (HELLO until introduced, then heartbeats bounded by the interval), the
//! beat payloads we send and answer with (watermarks, digests, policy), the
//! beats we receive, the judge that re-judges every peer's lifecycle on its
//! own timer, peers' announced states, and the reassessment of this
//! center's node state. The I/O only: lifecycle transitions, node state and
//! which marks to send are `regmesh_proto`'s. Must never apply records or
//! raise a watermark (floods, pulls and full syncs do).

use super::{Beat, Mesh, Peer};
use crate::center::now_ms;
use hyper::{Method, StatusCode};
use regmesh_proto::constants::DIGESTS_PER_BEAT;
use regmesh_proto::lifecycle::{self, PeerState};
use regmesh_proto::sync as ae;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

impl Mesh {
    fn reassess_node_state(self: &Arc<Self>) {
        let reachable = self
            .peers
            .iter()
            .filter(|p| p.reachable.load(Ordering::Relaxed))
            .count();
        // Caught up: in sync for two beat intervals (so every reachable peer
        // has told us its watermarks), no pull running, and nobody ahead.
        let pulls_idle = self.pulls.lock().expect("pulls lock").is_idle();
        let caught_up = ae::caught_up(
            *self.sync_since.lock().expect("sync lock"),
            now_ms(),
            self.interval_ms,
            pulls_idle,
            self.behind_any(),
        );
        let mut st = self.state.lock().expect("state lock");
        let (next, start_sync) = st.next(reachable, caught_up);
        if start_sync {
            *self.sync_since.lock().expect("sync lock") = Some(now_ms());
            // A center that knows nothing of the mesh yet (a new one) asks a
            // peer for a full sync (DRiP §5.6); others catch up by pulls.
            let fresh = self.marks.lock().expect("marks lock").is_empty() && self.center.own_seq() == 0;
            if fresh {
                if let Some(peer) = self.peers.iter().find(|p| p.reachable.load(Ordering::Relaxed)).cloned() {
                    tokio::spawn(self.clone().request_full_sync(peer));
                }
            }
        }
        if next != *st {
            tracing::info!(from = st.as_str(), to = next.as_str(), reachable, "node state");
            *st = next;
            self.center.set_accepting_writes(next.accepts_updates());
        }
    }

    /// Re-judges every peer's lifecycle on a timer of its own
    /// ([`lifecycle::judge_every_ms`]), so a peer that stops answering is
    /// DEGRADED past 2× and INTERRUPTED past 10× whatever calls to it are
    /// doing.
    pub(super) async fn judge_loop(self: Arc<Self>) {
        let every = Duration::from_millis(lifecycle::judge_every_ms(self.interval_ms));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for peer in &self.peers {
                let t = peer.life.lock().expect("life lock").tick(now_ms());
                self.note(peer, t);
            }
        }
    }

    pub(super) async fn beat_loop(self: Arc<Self>, peer: Arc<Peer>) {
        // A beat call never outlasts its interval: a hung one counts as
        // unanswered and the next beat goes on time.
        let deadline = Duration::from_millis(lifecycle::beat_deadline_ms(self.interval_ms));
        let mut tick = tokio::time::interval(Duration::from_millis(self.interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let state = peer.life.lock().expect("life lock").state();
            let ok = if state <= PeerState::Known {
                let body = self.hello_body();
                match peer
                    .client
                    .call_within(deadline, &self.center, Method::POST, "/mesh/v1/hello", &[], Some(body))
                    .await
                    .map(|a| (self.hello_answered(&peer, a.status.as_u16(), &a.body), a))
                {
                    Ok((Ok(_version), _)) => {
                        let t = peer.life.lock().expect("life lock").hello_answered(now_ms());
                        self.note(&peer, t);
                        // A (re)introduced peer gets our whole map next.
                        peer.forget_acked_marks();
                        // Introduced: the first heartbeat goes now, not a
                        // whole interval later.
                        tick.reset_immediately();
                        true
                    }
                    Ok((Err(why), a)) => {
                        tracing::warn!(peer = %peer.cfg.id, status = %a.status, "HELLO refused: {why}");
                        false
                    }
                    Err(e) => {
                        tracing::debug!(peer = %peer.cfg.id, "HELLO failed: {e}");
                        false
                    }
                }
            } else {
                let n = peer.beats_sent.fetch_add(1, Ordering::Relaxed);
                let full = n.is_multiple_of(ae::FULL_BEAT_EVERY);
                let (payload, sent) = self.beat_for(&peer, full);
                let body = serde_json::to_vec(&payload).expect("json");
                let path = format!("/heartbeat/node/{}", self.me);
                match peer
                    .client
                    .call_within(
                        deadline,
                        &self.center,
                        Method::POST,
                        &path,
                        &[("drip-node-id", self.me.clone())],
                        Some(body),
                    )
                    .await
                {
                    Ok(a) if a.status == StatusCode::OK => {
                        let t = peer.life.lock().expect("life lock").beat_acked(now_ms());
                        self.note(&peer, t);
                        *peer.acked_marks.lock().expect("marks lock") = sent;
                        // The answer is the peer's own beat (regmesh peers
                        // send one; an empty answer carries nothing).
                        if let Ok(v) = serde_json::from_slice::<Value>(&a.body) {
                            if let Ok(b) = Beat::parse(&v) {
                                if b.state.is_some() {
                                    self.beat_from(&peer.cfg.id, b);
                                }
                            }
                        }
                        true
                    }
                    Ok(a) => {
                        tracing::debug!(peer = %peer.cfg.id, status = %a.status, "heartbeat refused");
                        false
                    }
                    Err(e) => {
                        tracing::debug!(peer = %peer.cfg.id, "heartbeat failed: {e}");
                        false
                    }
                }
            };
            peer.reachable.store(ok, Ordering::Relaxed);
            let t = peer.life.lock().expect("life lock").tick(now_ms());
            self.note(&peer, t);
            self.reassess_node_state();
        }
    }

    /// Our per-(origin, kind, visibility class) digests of live versions,
    /// for a slice of the origins on which `peer` last reported our own
    /// watermark, and only for the kinds and classes its policy receives:
    /// `{origin: {kind or kind@class: hex}}`.
    fn digests_for(&self, peer: &Peer) -> Value {
        let theirs = peer.their_marks.lock().expect("marks lock").latest().clone();
        let cursor = peer.digest_cursor.fetch_add(DIGESTS_PER_BEAT as u64, Ordering::Relaxed) as usize;
        let mut out = serde_json::Map::new();
        for origin in ae::digest_slice(&self.marks(), &theirs, cursor, DIGESTS_PER_BEAT) {
            let kinds: serde_json::Map<String, Value> = self
                .center
                .class_digests(&origin)
                .into_iter()
                .filter(|(k, c, _)| peer.policy.sees_class(k, c))
                .map(|(k, c, d)| (ae::digest_key(&k, &c), Value::String(d.to_hex())))
                .collect();
            out.insert(origin, Value::Object(kinds));
        }
        Value::Object(out)
    }

    /// What this center tells `peer` in its answer to the peer's heartbeat:
    /// the watermarks changed since the peer last answered one of ours.
    pub fn beat_payload(&self, peer: &Peer) -> Value {
        self.beat_for(peer, false).0
    }

    /// A beat for `peer`: whole, or only the watermarks changed since the
    /// last beat it answered; with the full map it describes.
    fn beat_for(&self, peer: &Peer, full: bool) -> (Value, HashMap<String, u64>) {
        let now = self.marks();
        let acked = peer.acked_marks.lock().expect("marks lock").clone();
        let full = full || acked.is_empty();
        let marks = ae::beat_marks(&now, &acked, full);
        let v = json!({
            "state": self.node_state().as_str(),
            "interval_ms": self.interval_ms,
            "watermarks": marks,
            "full": full,
            "digests": self.digests_for(peer),
            // What we send it, so it can compare classes we hold none of.
            "policy": {"kinds": peer.policy.kinds, "groups": peer.policy.groups},
        });
        (v, now)
    }

    /// Peer `peer` said in its own beat that it has reached seq `own` of its
    /// own origin. That raises its ceiling; a mark of ours ahead of it can
    /// only come from a false claim, hides whatever we are missing of it from
    /// pulls and digests alike, and is reset: the digests are reported as
    /// differing and the origin is pulled again from its start.
    fn origin_spoke(self: &Arc<Self>, peer: &Arc<Peer>, own: u64) {
        let origin = &peer.cfg.id;
        let exceeded = {
            let mut c = self.ceilings.lock().expect("ceilings lock");
            c.witness(origin, own);
            c.exceeded_by(origin, self.mark(origin))
        };
        if !exceeded {
            return;
        }
        tracing::warn!(
            peer = %origin, mark = self.mark(origin), own,
            "our watermark of this origin is ahead of anything it has shown: resetting it and pulling again"
        );
        if self.marks.lock().expect("marks lock").reset(origin) {
            self.marks_dirty.store(true, Ordering::Relaxed);
        }
        *peer.digest_match.lock().expect("digest lock") = Some(false);
        self.start_pull(peer, origin);
    }

    /// A heartbeat from peer `sender`, with its announced state, interval
    /// and watermarks. Starts a pull for every origin it holds further.
    pub fn beat_from(self: &Arc<Self>, sender: &str, beat: Beat) {
        let Beat {
            state,
            interval_ms,
            marks,
            full,
            digests,
            policy,
        } = beat;
        let interval_ms = interval_ms.unwrap_or(1000).clamp(50, 3_600_000);
        let Some(peer) = self.peer(sender).cloned() else { return };
        // Floods in flight arrive within milliseconds: pull only on a lead
        // that outlived one beat (or at once while catching up, `sync`).
        let (prev, marks) = {
            let mut view = peer.their_marks.lock().expect("marks lock");
            let prev = view.beat(marks, full);
            (prev, view.latest().clone())
        };
        if let Some(&own) = marks.get(sender) {
            self.origin_spoke(&peer, own);
        }
        self.compare_digests(&peer, &marks, &digests, policy.as_ref());
        let t = peer
            .life
            .lock()
            .expect("life lock")
            .beat_received(now_ms(), interval_ms);
        self.note(&peer, t);
        if state.is_some() {
            *peer.announced.lock().expect("announced lock") = state;
        }
        // A claim a pull from this peer could not back starts no more pulls.
        let credible = |m: &HashMap<String, u64>| -> HashMap<String, u64> {
            let pulls = self.pulls.lock().expect("pulls lock");
            m.iter()
                .filter(|(o, w)| pulls.credible(sender, o, **w))
                .map(|(o, w)| (o.clone(), *w))
                .collect()
        };
        let origins = ae::origins_to_pull(
            &self.me,
            self.node_state(),
            &credible(&marks),
            &credible(&prev),
            |o| self.mark(o),
            |o| self.center.key_of(o).is_some(),
        );
        for origin in origins {
            self.start_pull(&peer, &origin);
        }
    }

    /// A peer announced its DRiP state (`POST /node/:id/active|inactive`).
    pub fn announce(&self, sender: &str, state: &str) {
        if let Some(peer) = self.peer(sender) {
            *peer.announced.lock().expect("announced lock") = Some(state.to_string());
        }
    }
}
