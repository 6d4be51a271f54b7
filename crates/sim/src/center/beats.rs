//! A simulated center's heartbeats and lifecycles (the node's
//! `peer/mesh/beats.rs`): the beat body it sends, the beat tick, judging
//! peers' lifecycles, reassessing its node state, and the beats it
//! receives. Decisions are `regmesh_proto`'s. Must never apply records or
//! raise a watermark (floods and pulls do).

use super::{Center, Out, Timer};
use crate::msg::{BeatBody, Msg};
use regmesh_proto::lifecycle::PeerState;
use regmesh_proto::sync as ae;
use regmesh_proto::version::Versions;
use regmesh_proto::wire::hello::Hello;
use std::collections::HashMap;

impl Center {
    /// A beat for peer slot `pi`: whole, or what changed since its last
    /// answered beat (proto::sync::beat_marks); with the full map.
    pub(super) fn beat_body(&mut self, pi: usize, full: bool) -> (BeatBody, HashMap<String, u64>) {
        let now = self.all_marks();
        let digests = self.digests_for(pi);
        let acked = &self.peers[pi].acked;
        let full = full || acked.is_empty();
        let body = BeatBody {
            state: self.state,
            interval_ms: self.settings.interval_ms,
            marks: ae::beat_marks(&now, acked, full),
            full,
            digests,
            policy: self.peers[pi].policy.clone(),
        };
        (body, now)
    }

    pub(super) fn beat_tick(&mut self, now: u64, out: &mut Vec<Out>) {
        let local = self.local(now);
        for pi in 0..self.peers.len() {
            if self.peers[pi].life.state() <= PeerState::Known {
                out.push(Out::Send {
                    to: self.peers[pi].idx,
                    msg: Msg::Hello(Hello::new(&self.id, self.settings.interval_ms, Versions::BUILD)),
                });
                self.peers[pi].reachable = false;
            } else {
                let full = self.peers[pi].beats_sent.is_multiple_of(ae::FULL_BEAT_EVERY);
                let (body, sent) = self.beat_body(pi, full);
                self.beat_no += 1;
                let p = &mut self.peers[pi];
                if p.awaiting.is_some() {
                    // The last call had no answer within an interval.
                    p.reachable = false;
                }
                p.beats_sent += 1;
                p.awaiting = Some((self.beat_no, sent));
                out.push(Out::Send {
                    to: p.idx,
                    msg: Msg::Beat { n: self.beat_no, body },
                });
            }
            self.peers[pi].life.tick(local);
        }
        self.reassess(now);
        out.push(Out::Timer {
            at: now + self.settings.interval_ms,
            timer: Timer::Beat,
        });
    }

    /// Re-judges every peer's lifecycle now (the node does it on each beat
    /// tick; the simulator also before checking the invariants).
    pub fn tick_lifecycles(&mut self, now: u64) {
        let local = self.local(now);
        for p in &mut self.peers {
            p.life.tick(local);
        }
    }

    pub(super) fn reassess(&mut self, now: u64) {
        let local = self.local(now);
        let reachable = self.peers.iter().filter(|p| p.reachable).count();
        let behind = self.peers.iter().any(|p| p.marks.ahead_of(|o| self.mark(o)));
        let caught_up = ae::caught_up(
            self.sync_since,
            local,
            self.settings.interval_ms,
            self.pulls.is_idle(),
            behind,
        );
        let (next, start_sync) = self.state.next(reachable, caught_up);
        if start_sync {
            self.sync_since = Some(local);
        }
        self.state = next;
    }

    pub(super) fn beat_from(&mut self, now: u64, pi: usize, body: BeatBody, out: &mut Vec<Out>) {
        let local = self.local(now);
        let interval = body.interval_ms.clamp(50, 3_600_000);
        self.peers[pi].life.beat_received(local, interval);
        let prev = self.peers[pi].marks.beat(body.marks, body.full);
        let latest = self.peers[pi].marks.latest().clone();
        // Digests at equal watermarks: a difference re-pulls from seq 0.
        for (origin, theirs) in &body.digests {
            if latest.get(origin) != Some(&self.mark(origin)) || *origin == self.id {
                continue;
            }
            let ours = self.class_digests(origin);
            let same = ae::digests_agree(theirs.iter().map(|(k, d)| (k.as_str(), d)), &ours, |k| {
                let (kind, class) = ae::split_digest_key(k);
                body.policy.sees_class(kind, class)
            });
            if !same {
                // Paced by the part (one turn per peer and origin).
                self.repair(now, pi, origin, out);
            }
        }
        let origins = ae::origins_to_pull(&self.id, self.state, &latest, &prev, |o| self.mark(o), |_| true);
        for origin in origins {
            self.start_pull(now, pi, &origin, out);
        }
    }
}
