//! Peer states follow the announced intervals (document 003; DRiP §5.7): a
//! center holds a peer OPERATIONAL while both directions are fresh, DEGRADED
//! once one direction has been silent for more than 2× its interval, and
//! INTERRUPTED after more than 10× — our beats judged by our interval, the
//! peer's beats by the interval it announced.
//!
//! The oracle is what the network really delivered, not the lifecycle's own
//! bookkeeping. A heartbeat's answer carries the peer's own beat, so it
//! counts in both directions.

use super::{Invariant, Step};
use crate::center::Center;
use crate::msg::Msg;
use crate::world::History;
use regmesh_proto::lifecycle::{PeerState, DEGRADED_AFTER, INTERRUPTED_AFTER};
use std::collections::HashMap;

#[derive(Default, Clone)]
struct Facts {
    introduced: Option<u64>,
    last_beat: Option<u64>,
    their_interval: Option<u64>,
    last_ack: Option<u64>,
    /// The beat whose answer is awaited.
    awaiting: Option<u64>,
}

#[derive(Default)]
pub struct PeerStatesFollowIntervals {
    /// (center, peer) → what was delivered.
    facts: HashMap<(usize, usize), Facts>,
}

impl Invariant for PeerStatesFollowIntervals {
    fn name(&self) -> &'static str {
        "peer states follow intervals"
    }

    fn on_deliver(&mut self, now: u64, to: &Center, from: usize, msg: &Msg) {
        let Some(slot) = to.peers.iter().find(|p| p.idx == from) else {
            return;
        };
        let state = slot.life.state();
        let f = self.facts.entry((to.idx, from)).or_default();
        match msg {
            Msg::HelloOk { answer, .. } if answer.accepted && state <= PeerState::Known => {
                *f = Facts {
                    introduced: Some(now),
                    ..Facts::default()
                };
            }
            Msg::Beat { body, .. } if state >= PeerState::Introduced => {
                f.last_beat = Some(now);
                f.their_interval = body.interval_ms;
            }
            Msg::BeatOk { n, body } if f.awaiting == Some(*n) => {
                // The answer carries the peer's own beat, which counts as one
                // (as in the node).
                f.awaiting = None;
                f.last_ack = Some(now);
                f.last_beat = Some(now);
                f.their_interval = body.interval_ms;
            }
            _ => {}
        }
    }

    fn on_crash(&mut self, c: &Center) {
        self.facts.retain(|(i, _), _| *i != c.idx);
    }

    fn after_step(&mut self, centers: &[Center], _: &History, step: &Step) -> Result<(), String> {
        let c = step.center;
        for (from, to, msg) in step.sent {
            if let Msg::Beat { n, .. } = msg {
                self.facts.entry((*from, *to)).or_default().awaiting = Some(*n);
            }
        }
        let center = &centers[c];
        let ours = center.settings.interval_ms;
        for p in &center.peers {
            let state = p.life.state();
            if state <= PeerState::Introduced {
                continue;
            }
            let Some(f) = self.facts.get(&(c, p.idx)) else { continue };
            let Some(since) = f.introduced else { continue };
            let silent = |last: Option<u64>| step.now - last.unwrap_or(since);
            let ack_over = |k: u64| silent(f.last_ack) > k * ours;
            let beat_over = |k: u64| f.their_interval.is_some_and(|i| silent(f.last_beat) > k * i);
            let expected = if ack_over(INTERRUPTED_AFTER) || beat_over(INTERRUPTED_AFTER) {
                PeerState::Interrupted
            } else if ack_over(DEGRADED_AFTER) || beat_over(DEGRADED_AFTER) {
                PeerState::Degraded
            } else {
                PeerState::Operational
            };
            if state != expected {
                return Err(format!(
                    "{} holds {} {} but expected {}: our beats answered {} ms ago (our interval {ours} ms), its beats arrived {} ms ago (its interval {:?} ms)",
                    center.id,
                    p.id,
                    state.as_str(),
                    expected.as_str(),
                    silent(f.last_ack),
                    silent(f.last_beat),
                    f.their_interval
                ));
            }
        }
        Ok(())
    }
}
