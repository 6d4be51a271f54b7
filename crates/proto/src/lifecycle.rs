//! Per-peer lifecycle (document 003): NEEDED → KNOWN → INTRODUCED →
//! OPERATIONAL ⇄ DEGRADED ⇄ INTERRUPTED.
//!
//! A peer is OPERATIONAL while both directions are fresh: our beats get
//! positive answers within 2× our interval, and its beats arrive within 2× the
//! interval it announced. The worse direction decides: DEGRADED past 2×,
//! INTERRUPTED past 10×. When the failing direction recovers, the peer is
//! OPERATIONAL again. A one-way partition therefore keeps a peer DEGRADED
//! rather than letting it flap.
//!
//! Document 003 says a positive answer to HELLO moves a peer to OPERATIONAL,
//! right after saying that answer moves it to INTRODUCED. We read the second
//! HELLO as BEAT: INTRODUCED becomes OPERATIONAL on the first good beat in
//! either direction.
//!
//! Only OPERATIONAL peers receive propagation (DRiP §5.7). Every state after
//! KNOWN keeps receiving beats.
//!
//! A lifecycle is judged on its deadlines, never on when a call returns: the
//! runtime calls [`PeerLifecycle::tick`] every [`judge_every_ms`] whatever
//! its calls are doing, and gives each beat call at most
//! [`beat_deadline_ms`], so a peer that stops answering (a paused process,
//! a frozen link) is DEGRADED just past 2× and INTERRUPTED just past 10×.

/// State of one peer, as this center sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerState {
    /// Named, but its address and key are not yet located.
    Needed,
    /// Address and key known; HELLO not yet answered.
    Known,
    /// HELLO answered; no beat exchanged yet.
    Introduced,
    /// Beats flowing both ways.
    Operational,
    /// A direction has been silent for more than 2× its interval.
    Degraded,
    /// A direction has been silent for more than 10× its interval.
    Interrupted,
}

impl PeerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Needed => "NEEDED",
            PeerState::Known => "KNOWN",
            PeerState::Introduced => "INTRODUCED",
            PeerState::Operational => "OPERATIONAL",
            PeerState::Degraded => "DEGRADED",
            PeerState::Interrupted => "INTERRUPTED",
        }
    }
}

/// A state change, for logs, metrics and the caller's reactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: PeerState,
    pub to: PeerState,
}

/// Silence past this many intervals degrades a peer.
pub const DEGRADED_AFTER: u64 = 2;
/// Silence past this many intervals interrupts a peer.
pub const INTERRUPTED_AFTER: u64 = 10;

/// How often the runtime re-judges every lifecycle ([`PeerLifecycle::tick`]),
/// on a timer of its own: a quarter of our beat interval, so a state changes
/// at most that late, however long a call to the peer hangs.
pub fn judge_every_ms(our_interval_ms: u64) -> u64 {
    (our_interval_ms / 4).max(1)
}

/// The longest a beat call (HELLO or heartbeat, connecting included) may
/// take: one beat interval. A call still unanswered then counts as
/// unanswered, so the next beat goes on time and a hung call never holds up
/// the judgment.
pub fn beat_deadline_ms(our_interval_ms: u64) -> u64 {
    our_interval_ms
}

/// The lifecycle of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerLifecycle {
    state: PeerState,
    /// How often we beat to this peer, ms.
    our_interval_ms: u64,
    /// How often the peer said it beats to us, ms (from its beats).
    their_interval_ms: Option<u64>,
    /// When we last got a positive answer to one of our beats.
    last_ack_ms: Option<u64>,
    /// When we last received a beat from the peer.
    last_beat_ms: Option<u64>,
    /// When the peer became INTRODUCED (silence counts from here until the
    /// first beat in each direction).
    introduced_ms: Option<u64>,
}

impl PeerLifecycle {
    /// A peer named but not located (DNS discovery pending).
    pub fn needed(our_interval_ms: u64) -> Self {
        assert!(our_interval_ms > 0, "beat interval must be positive");
        PeerLifecycle {
            state: PeerState::Needed,
            our_interval_ms,
            their_interval_ms: None,
            last_ack_ms: None,
            last_beat_ms: None,
            introduced_ms: None,
        }
    }

    /// A peer whose address and key come from configuration.
    pub fn known(our_interval_ms: u64) -> Self {
        let mut p = Self::needed(our_interval_ms);
        p.state = PeerState::Known;
        p
    }

    pub fn state(&self) -> PeerState {
        self.state
    }

    /// The interval the peer announced, if it has beaten yet.
    pub fn their_interval_ms(&self) -> Option<u64> {
        self.their_interval_ms
    }

    /// Last time anything good was heard from the peer.
    pub fn last_heard_ms(&self) -> Option<u64> {
        self.last_ack_ms.max(self.last_beat_ms)
    }

    /// True when changes should be propagated to this peer now.
    pub fn receives_propagation(&self) -> bool {
        self.state == PeerState::Operational
    }

    /// True when beats should be sent to this peer.
    pub fn receives_beats(&self) -> bool {
        self.state >= PeerState::Introduced
    }

    fn go(&mut self, to: PeerState) -> Option<Transition> {
        let from = self.state;
        if from == to {
            return None;
        }
        self.state = to;
        Some(Transition { from, to })
    }

    /// Its address and key were located (NEEDED → KNOWN).
    pub fn located(&mut self) -> Option<Transition> {
        if self.state == PeerState::Needed {
            self.go(PeerState::Known)
        } else {
            None
        }
    }

    /// It answered our HELLO positively (KNOWN → INTRODUCED).
    pub fn hello_answered(&mut self, now_ms: u64) -> Option<Transition> {
        if self.state <= PeerState::Known {
            self.introduced_ms = Some(now_ms);
            self.go(PeerState::Introduced)
        } else {
            None
        }
    }

    /// It sent us a beat announcing its interval.
    pub fn beat_received(&mut self, now_ms: u64, their_interval_ms: u64) -> Option<Transition> {
        if self.state < PeerState::Introduced {
            // Beats before introduction do not count (the caller refuses them).
            return None;
        }
        self.their_interval_ms = Some(their_interval_ms.max(1));
        self.last_beat_ms = Some(self.last_beat_ms.map_or(now_ms, |t| t.max(now_ms)));
        self.reassess(now_ms, true)
    }

    /// It answered one of our beats positively.
    pub fn beat_acked(&mut self, now_ms: u64) -> Option<Transition> {
        if self.state < PeerState::Introduced {
            return None;
        }
        self.last_ack_ms = Some(self.last_ack_ms.map_or(now_ms, |t| t.max(now_ms)));
        self.reassess(now_ms, true)
    }

    /// Time passed; re-judge freshness.
    pub fn tick(&mut self, now_ms: u64) -> Option<Transition> {
        if self.state < PeerState::Introduced {
            return None;
        }
        self.reassess(now_ms, false)
    }

    /// Silence of the worse direction, in units of `1/INTERRUPTED_AFTER`
    /// resolution: returns the state it implies.
    fn judged(&self, now_ms: u64) -> PeerState {
        let since = self.introduced_ms.unwrap_or(now_ms);
        let over =
            |last: Option<u64>, interval: u64, k: u64| now_ms.saturating_sub(last.unwrap_or(since)) > k * interval;
        let ack_over = |k| over(self.last_ack_ms, self.our_interval_ms, k);
        // Until the peer has announced an interval, only our direction counts.
        let their = self.their_interval_ms;
        #[cfg(feature = "broken")]
        let their = if crate::broken::is(crate::broken::Variant::LifecycleOwnInterval) {
            their.map(|_| self.our_interval_ms)
        } else {
            their
        };
        let beat_over = |k| their.is_some_and(|i| over(self.last_beat_ms, i, k));
        if ack_over(INTERRUPTED_AFTER) || beat_over(INTERRUPTED_AFTER) {
            PeerState::Interrupted
        } else if ack_over(DEGRADED_AFTER) || beat_over(DEGRADED_AFTER) {
            PeerState::Degraded
        } else {
            PeerState::Operational
        }
    }

    fn reassess(&mut self, now_ms: u64, heard: bool) -> Option<Transition> {
        let judged = self.judged(now_ms);
        if self.state == PeerState::Introduced && !heard && judged == PeerState::Operational {
            // Nothing exchanged yet and nothing overdue: stay INTRODUCED.
            return None;
        }
        self.go(judged)
    }

    /// The next time at which [`PeerLifecycle::tick`] could change the state
    /// if nothing else happens (for the caller's timer).
    pub fn next_deadline_ms(&self) -> Option<u64> {
        if self.state < PeerState::Introduced {
            return None;
        }
        let since = self.introduced_ms?;
        let mut out: Option<u64> = None;
        let mut consider = |last: Option<u64>, interval: u64| {
            let base = last.unwrap_or(since);
            for k in [DEGRADED_AFTER, INTERRUPTED_AFTER] {
                let at = base + k * interval + 1;
                out = Some(out.map_or(at, |o| o.min(at)));
            }
        };
        consider(self.last_ack_ms, self.our_interval_ms);
        if let Some(i) = self.their_interval_ms {
            consider(self.last_beat_ms, i);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PeerState::*;

    #[test]
    fn the_document_003_story() {
        let mut p = PeerLifecycle::needed(1000);
        assert_eq!(p.located().unwrap().to, Known);
        assert_eq!(p.hello_answered(0).unwrap().to, Introduced);
        assert!(p.receives_beats() && !p.receives_propagation());
        assert_eq!(p.beat_received(500, 1000).unwrap().to, Operational);
        p.beat_acked(600);
        assert!(p.receives_propagation());
        // Silence: 2x interval is still fine, just past it is DEGRADED.
        assert_eq!(p.tick(2500), None);
        assert_eq!(
            p.tick(2501).unwrap(),
            Transition {
                from: Operational,
                to: Degraded
            }
        );
        assert!(!p.receives_propagation() && p.receives_beats());
        assert_eq!(p.tick(10_500), None);
        assert_eq!(p.tick(10_501).unwrap().to, Interrupted);
        // Both directions answer again: OPERATIONAL.
        assert_eq!(p.beat_acked(20_000), None, "its beats are still more than 10x overdue");
        assert_eq!(p.state(), Interrupted);
        assert_eq!(p.beat_received(20_001, 1000).unwrap().to, Operational);
    }

    /// A peer that goes silent in both directions (a paused process), with
    /// nothing but the judging timer running: DEGRADED within a quarter
    /// interval past 2×, INTERRUPTED within a quarter interval past 10×,
    /// and never skipping DEGRADED.
    #[test]
    fn silence_is_judged_on_the_timer_at_2x_and_10x() {
        let interval = 400;
        let mut p = PeerLifecycle::known(interval);
        p.hello_answered(0);
        p.beat_received(1000, interval);
        p.beat_acked(1000);
        assert_eq!(p.state(), Operational);
        let step = judge_every_ms(interval);
        assert_eq!(step, 100);
        let mut seen = vec![(1000, Operational)];
        let mut now = 1000;
        while now < 1000 + 12 * interval {
            now += step;
            if let Some(t) = p.tick(now) {
                seen.push((now, t.to));
            }
        }
        let degraded = seen.iter().find(|(_, s)| *s == Degraded).expect("DEGRADED").0;
        let interrupted = seen.iter().find(|(_, s)| *s == Interrupted).expect("INTERRUPTED").0;
        assert!(
            degraded > 1000 + 2 * interval && degraded <= 1000 + 2 * interval + step,
            "{seen:?}"
        );
        assert!(
            interrupted > 1000 + 10 * interval && interrupted <= 1000 + 10 * interval + step,
            "{seen:?}"
        );
        assert_eq!(
            seen.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
            [Operational, Degraded, Interrupted]
        );
        // A beat call never outlasts the interval, so it cannot hold the
        // next beat (or the judgment) back.
        assert!(beat_deadline_ms(interval) <= interval);
    }

    #[test]
    fn each_direction_is_judged_by_its_own_interval() {
        let mut p = PeerLifecycle::known(1000);
        p.hello_answered(0);
        p.beat_received(0, 10_000); // it beats every 10 s
        p.beat_acked(0);
        // Its beats are not overdue at 15 s, but our beats went unanswered.
        assert_eq!(p.tick(2001).unwrap().to, Degraded);
        p.beat_acked(2002);
        assert_eq!(p.state(), Operational);
        p.beat_acked(19_000);
        assert_eq!(p.tick(20_000), None, "its beats are due every 10 s: 2x is 20 s");
        assert_eq!(p.tick(20_001).unwrap().to, Degraded);
    }

    #[test]
    fn one_way_partition_stays_degraded() {
        let mut p = PeerLifecycle::known(1000);
        p.hello_answered(0);
        p.beat_received(0, 1000);
        p.beat_acked(0);
        // We keep receiving its beats, but ours are never answered.
        for t in (1000..30_000).step_by(1000) {
            p.beat_received(t, 1000);
            if t > 2000 {
                assert_ne!(p.state(), Operational, "at {t}");
            }
        }
        assert_eq!(p.state(), Interrupted);
    }

    #[test]
    fn introduced_peer_that_never_beats_degrades() {
        let mut p = PeerLifecycle::known(1000);
        p.hello_answered(0);
        assert_eq!(p.tick(1500), None);
        assert_eq!(p.state(), Introduced);
        assert_eq!(p.tick(2001).unwrap().to, Degraded);
    }

    #[test]
    fn deadlines_point_at_the_next_change() {
        let mut p = PeerLifecycle::known(1000);
        assert_eq!(p.next_deadline_ms(), None);
        p.hello_answered(0);
        p.beat_received(0, 1000);
        p.beat_acked(0);
        let d = p.next_deadline_ms().unwrap();
        assert_eq!(d, 2001);
        assert_eq!(p.tick(d - 1), None);
        assert!(p.tick(d).is_some());
    }

    #[test]
    fn beats_before_introduction_do_not_count() {
        let mut p = PeerLifecycle::known(1000);
        assert_eq!(p.beat_received(0, 1000), None);
        assert_eq!(p.beat_acked(0), None);
        assert_eq!(p.state(), Known);
    }
}
