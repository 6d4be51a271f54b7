//! The executor of the link part (`regmesh_proto::mesh::link`: peer
//! lifecycles, beats, node state) in the mesh runtime: the link task that
//! fires its timers on the real clock, the HELLO and heartbeat calls it
//! asks for (each cut off at its deadline), the heartbeats and state
//! announcements peers send us, and the execution of its other commands
//! (pulls, repairs, full sync requests, ceilings). The I/O only: when to
//! beat, what a beat carries, lifecycle and node state transitions and what
//! a beat makes us pull are the link part's. Must never apply records or
//! raise a watermark (floods, pulls and full syncs do), nor hold the link
//! lock across an await or while executing a command.

use super::{Mesh, Peer};
use crate::center::now_ms;
use hyper::{Method, StatusCode};
use regmesh_proto::digest::SetDigest;
use regmesh_proto::mesh::link::{Command, Link, Replica};
use regmesh_proto::node_state::NodeState;
use regmesh_proto::sync as ae;
use regmesh_proto::wire::beat::Beat;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// What the link part reads of this center: watermarks, digests, pulls.
pub(super) struct NodeReplica<'a>(pub(super) &'a Mesh);

impl Replica for NodeReplica<'_> {
    fn marks(&self) -> HashMap<String, u64> {
        self.0.marks()
    }

    fn mark(&self, origin: &str) -> u64 {
        self.0.mark(origin)
    }

    fn class_digests(&self, origin: &str) -> BTreeMap<String, SetDigest> {
        self.0
            .center
            .class_digests(origin)
            .into_iter()
            .map(|(k, c, d)| (ae::digest_key(&k, &c), d))
            .collect()
    }

    fn pulls_idle(&self) -> bool {
        self.0.pulls.lock().expect("pulls lock").is_idle()
    }

    fn knows(&self, origin: &str) -> bool {
        self.0.center.key_of(origin).is_some()
    }

    fn credible(&self, peer: &str, origin: &str, claimed: u64) -> bool {
        self.0.pulls.lock().expect("pulls lock").credible(peer, origin, claimed)
    }

    fn full_sync_received(&self) -> bool {
        self.0.pulls.lock().expect("pulls lock").full_sync_done()
    }
}

impl Mesh {
    /// Runs `f` on the link part, keeps the copies of its states and its
    /// timers current (under its lock, so they change in its order), then
    /// executes the rest of what it emitted.
    pub(super) fn with_link<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Link, &NodeReplica<'_>, &mut Vec<Command>) -> R,
    ) -> R {
        let mut out = Vec::new();
        let r = {
            let mut link = self.link.lock().expect("link lock");
            let r = f(&mut link, &NodeReplica(self), &mut out);
            let mut woke = false;
            out.retain(|c| match c {
                Command::Schedule { timer, at_ms } => {
                    self.link_timers.lock().expect("timers lock").insert(*timer, *at_ms);
                    woke = true;
                    false
                }
                Command::LifecycleChanged { peer, .. } => {
                    *self.peer_at(*peer).life.lock().expect("life lock") = link.peer(*peer).lifecycle().clone();
                    true
                }
                Command::NodeStateChanged { to, .. } => {
                    *self.state.lock().expect("state lock") = *to;
                    self.center.set_accepting_writes(to.accepts_updates());
                    true
                }
                _ => true,
            });
            if woke {
                self.link_wake.notify_one();
            }
            r
        };
        for c in out {
            self.execute(c);
        }
        r
    }

    fn execute(self: &Arc<Self>, c: Command) {
        match c {
            Command::SendHello {
                peer,
                call,
                deadline_ms,
            } => {
                crate::spawn::spawn(self.clone().hello(peer, call, deadline_ms));
            }
            Command::SendBeat {
                peer,
                call,
                beat,
                deadline_ms,
            } => {
                crate::spawn::spawn(self.clone().heartbeat(peer, call, beat, deadline_ms));
            }
            Command::Schedule { .. } => {}
            Command::LifecycleChanged { peer, from, to } => {
                tracing::info!(peer = %self.peer_at(peer).cfg.id, from = from.as_str(), to = to.as_str(), "peer state");
            }
            Command::NodeStateChanged { from, to, reachable } => {
                tracing::info!(from = from.as_str(), to = to.as_str(), reachable, "node state");
            }
            Command::StartPull { peer, origin } => self.start_pull(&self.peer_at(peer), &origin),
            Command::Repair { peer, origin } => self.repair(&self.peer_at(peer), &origin),
            Command::RequestFullSync { peer } => {
                crate::spawn::spawn(self.clone().request_full_sync(self.peer_at(peer)));
            }
            Command::OriginSpoke { peer, seq } => self.origin_spoke(&self.peer_at(peer), seq),
        }
    }

    /// Fires the link part's timers on the real clock, whatever its calls
    /// are doing.
    pub(super) async fn link_loop(self: Arc<Self>) {
        self.with_link(|link, _, out| link.start(now_ms(), out));
        loop {
            let next = {
                let timers = self.link_timers.lock().expect("timers lock");
                // Ties go by timer, not by the map's order, so a seed replays.
                timers.iter().min_by_key(|(t, at)| (**at, **t)).map(|(t, at)| (*t, *at))
            };
            let Some((timer, at)) = next else {
                self.link_wake.notified().await;
                continue;
            };
            let now = now_ms();
            if at > now {
                // `biased`: a fixed order, so a seed replays (tokio draws
                // the order from an unseeded source otherwise).
                tokio::select! {
                    biased;
                    _ = tokio::time::sleep(Duration::from_millis(at - now)) => {}
                    _ = self.link_wake.notified() => {}
                }
                continue;
            }
            self.link_timers.lock().expect("timers lock").remove(&timer);
            self.with_link(|link, r, out| link.on_timer(now, timer, r, out));
        }
    }

    /// HELLO to peer `ix` (document 003: our id, interval and protocol
    /// versions), cut off at `deadline_ms`; its answer sets the version we
    /// speak with it (`hello.rs`).
    async fn hello(self: Arc<Self>, ix: usize, call: u64, deadline_ms: u64) {
        let peer = self.peer_at(ix);
        let deadline = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
        let body = self.hello_body();
        let ok = match peer
            .client
            .call_within(deadline, &self.center, Method::POST, "/mesh/v1/hello", &[], Some(body))
            .await
            .map(|a| (self.hello_answered(&peer, a.status.as_u16(), &a.body), a))
        {
            Ok((Ok(_version), _)) => true,
            Ok((Err(why), a)) => {
                tracing::warn!(peer = %peer.cfg.id, status = %a.status, "HELLO refused: {why}");
                false
            }
            Err(e) => {
                tracing::debug!(peer = %peer.cfg.id, "HELLO failed: {e}");
                false
            }
        };
        self.with_link(|link, r, out| {
            if ok {
                link.on_hello_answered(now_ms(), ix, call, r, out)
            } else {
                link.on_call_failed(now_ms(), ix, call, r, out)
            }
        });
    }

    /// A heartbeat to peer `ix`, cut off at `deadline_ms`; its answer is
    /// the peer's own beat (regmesh peers send one).
    async fn heartbeat(self: Arc<Self>, ix: usize, call: u64, beat: Beat, deadline_ms: u64) {
        let peer = self.peer_at(ix);
        let deadline = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
        let path = format!("/heartbeat/node/{}", self.me);
        let answer = match peer
            .client
            .call_within(
                deadline,
                &self.center,
                Method::POST,
                &path,
                &[("drip-node-id", self.me.clone())],
                Some(beat.to_body()),
            )
            .await
        {
            Ok(a) if a.status == StatusCode::OK => Some(Beat::from_body(&a.body).ok()),
            Ok(a) => {
                tracing::debug!(peer = %peer.cfg.id, status = %a.status, "heartbeat refused");
                None
            }
            Err(e) => {
                tracing::debug!(peer = %peer.cfg.id, "heartbeat failed: {e}");
                None
            }
        };
        self.with_link(|link, r, out| match answer {
            Some(beat) => link.on_beat_answered(now_ms(), ix, call, beat, r, out),
            None => link.on_call_failed(now_ms(), ix, call, r, out),
        });
    }

    /// A heartbeat from peer `sender`; returns our answer (our own beat
    /// for it), or `None` if it is not a peer.
    pub fn beat_received(self: &Arc<Self>, sender: &str, beat: Beat) -> Option<Beat> {
        let ix = self.peer(sender)?.ix;
        Some(self.with_link(|link, r, out| link.on_beat_received(now_ms(), ix, beat, r, out)))
    }

    /// `peer` introduced itself (its HELLO): our next beat to it is whole.
    pub fn hello_received(&self, peer: &Peer) {
        self.link.lock().expect("link lock").on_hello_received(peer.ix);
    }

    /// A peer announced its DRiP state (`POST /node/:id/active|inactive`,
    /// or a `state` NOTIFY); a word other than a state is ignored.
    pub fn announce(&self, sender: &str, state: &str) {
        let Ok(state) = serde_json::from_value::<NodeState>(json!(state)) else {
            return;
        };
        if let Some(peer) = self.peer(sender) {
            self.link.lock().expect("link lock").on_announce(peer.ix, state);
        }
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
        self.link.lock().expect("link lock").on_mark_reset(peer.ix);
        self.start_pull(peer, origin);
    }
}
