//! The link part driven on a fake clock: each protocol step and the
//! commands it emits, deadlines included.

use super::*;
use crate::policy::ExportPolicy;
use PeerState::*;

const I: u64 = 1000;

/// A replica whose marks and digests the test sets.
#[derive(Default)]
struct Fake {
    marks: HashMap<String, u64>,
    digests: HashMap<String, BTreeMap<String, SetDigest>>,
    pulling: bool,
}

impl Replica for Fake {
    fn marks(&self) -> HashMap<String, u64> {
        self.marks.clone()
    }
    fn mark(&self, origin: &str) -> u64 {
        self.marks.get(origin).copied().unwrap_or(0)
    }
    fn class_digests(&self, origin: &str) -> BTreeMap<String, SetDigest> {
        self.digests.get(origin).cloned().unwrap_or_default()
    }
    fn pulls_idle(&self) -> bool {
        !self.pulling
    }
}

/// The machine with its timers, run on a fake clock.
struct Run {
    link: Link,
    now: u64,
    timers: BTreeMap<Timer, u64>,
    replica: Fake,
    /// Whether the peers answer each heartbeat at once (with no beat).
    answering: bool,
}

impl Run {
    fn new(peers: &[&str]) -> Run {
        let link = Link::new("me", I, peers.iter().map(|p| (p.to_string(), ExportPolicy::default())));
        let mut run = Run {
            link,
            now: 0,
            timers: BTreeMap::new(),
            replica: Fake::default(),
            answering: false,
        };
        let mut out = Vec::new();
        run.link.start(0, &mut out);
        run.take(out);
        run
    }

    /// Arms the scheduled timers; returns the other commands.
    fn take(&mut self, out: Vec<Command>) -> Vec<Command> {
        out.into_iter()
            .filter(|c| match c {
                Command::Schedule { timer, at_ms } => {
                    self.timers.insert(*timer, *at_ms);
                    false
                }
                _ => true,
            })
            .collect()
    }

    /// Fires every timer due up to `t`, in order; the commands with their
    /// times. Unless `answering`, the runtime answers nothing and reports
    /// no failure.
    fn until(&mut self, t: u64) -> Vec<(u64, Command)> {
        let mut seen = Vec::new();
        while let Some((&timer, &at)) = self.timers.iter().min_by_key(|(k, at)| (**at, **k)) {
            if at > t {
                break;
            }
            self.timers.remove(&timer);
            self.now = at;
            let mut out = Vec::new();
            self.link.on_timer(at, timer, &self.replica, &mut out);
            let out = self.take(out);
            for c in &out {
                if let (true, Command::SendBeat { peer, call, .. }) = (self.answering, c) {
                    let mut more = Vec::new();
                    self.link
                        .on_beat_answered(at, *peer, *call, None, &self.replica, &mut more);
                    seen.extend(self.take(more).into_iter().map(|c| (at, c)));
                }
            }
            seen.extend(out.into_iter().map(|c| (at, c)));
        }
        self.now = t;
        seen
    }

    fn hello_answered(&mut self, peer: usize, call: u64) -> Vec<Command> {
        let mut out = Vec::new();
        self.link
            .on_hello_answered(self.now, peer, call, &self.replica, &mut out);
        self.take(out)
    }

    fn beat_answered(&mut self, peer: usize, call: u64, answer: Option<Beat>) -> Vec<Command> {
        let mut out = Vec::new();
        self.link
            .on_beat_answered(self.now, peer, call, answer, &self.replica, &mut out);
        self.take(out)
    }

    fn failed(&mut self, peer: usize, call: u64) -> Vec<Command> {
        let mut out = Vec::new();
        self.link.on_call_failed(self.now, peer, call, &self.replica, &mut out);
        self.take(out)
    }

    fn received(&mut self, peer: usize, beat: Beat) -> (Beat, Vec<Command>) {
        let mut out = Vec::new();
        let answer = self
            .link
            .on_beat_received(self.now, peer, beat, &self.replica, &mut out);
        (answer, self.take(out))
    }

    /// Introduces peer 0 at the first beat; returns the first heartbeat.
    fn introduce(&mut self) -> (u64, Beat) {
        let out = self.until(self.now);
        let call = out
            .iter()
            .find_map(|(_, c)| match c {
                Command::SendHello { peer: 0, call, .. } => Some(*call),
                _ => None,
            })
            .expect("a HELLO");
        let out = self.hello_answered(0, call);
        sent_beat(&out, 0).expect("a heartbeat right after introduction")
    }
}

fn sent_beat(out: &[Command], peer: usize) -> Option<(u64, Beat)> {
    out.iter().find_map(|c| match c {
        Command::SendBeat {
            peer: p, call, beat, ..
        } if *p == peer => Some((*call, beat.clone())),
        _ => None,
    })
}

fn timed_beat(out: &[(u64, Command)]) -> Option<(u64, Beat)> {
    sent_beat(&out.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(), 0)
}

fn beat_from_peer(marks: &[(&str, u64)], interval_ms: Option<u64>) -> Beat {
    Beat {
        state: Some(NodeState::Active),
        interval_ms,
        watermarks: marks.iter().map(|(o, w)| (o.to_string(), *w)).collect(),
        ..Beat::default()
    }
}

fn marks(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
    pairs.iter().map(|(o, w)| (o.to_string(), *w)).collect()
}

#[test]
fn hello_until_introduced_then_the_first_heartbeat_at_once_and_whole() {
    let mut run = Run::new(&["p"]);
    run.replica.marks = marks(&[("me", 3), ("x", 7)]);
    // Refused, then unanswered: HELLO again at each beat, nothing else.
    let out = run.until(0);
    assert_eq!(
        out,
        vec![(
            0,
            Command::SendHello {
                peer: 0,
                call: 1,
                deadline_ms: I
            }
        )]
    );
    assert!(run.failed(0, 1).is_empty(), "still inactive, nothing changes");
    let out = run.until(2 * I);
    let hellos: Vec<u64> = out
        .iter()
        .filter_map(|(t, c)| matches!(c, Command::SendHello { .. }).then_some(*t))
        .collect();
    assert_eq!(hellos, vec![I, 2 * I]);
    assert!(!out.iter().any(|(_, c)| matches!(c, Command::SendBeat { .. })));
    assert_eq!(run.link.peer(0).state(), Known);
    // The answer to the HELLO of 2I arrives: INTRODUCED, a whole heartbeat
    // at once, and the center goes sync (then asks nothing: it knows
    // something of the mesh already).
    run.now = 2 * I + 10;
    let out = run.hello_answered(0, 3);
    assert_eq!(
        out[0],
        Command::LifecycleChanged {
            peer: 0,
            from: Known,
            to: Introduced
        }
    );
    let (_, beat) = sent_beat(&out, 0).expect("heartbeat");
    assert!(beat.full);
    assert_eq!(beat.watermarks, [("me".to_string(), 3), ("x".to_string(), 7)].into());
    assert_eq!(beat.state, Some(NodeState::Inactive));
    assert_eq!(beat.interval_ms, Some(I));
    assert!(out.contains(&Command::NodeStateChanged {
        from: NodeState::Inactive,
        to: NodeState::Sync,
        reachable: 1
    }));
    assert!(!out.iter().any(|c| matches!(c, Command::RequestFullSync { .. })));
    // A stale answer to an older HELLO changes nothing.
    assert!(run.hello_answered(0, 1).is_empty());
}

#[test]
fn a_fresh_center_asks_a_reachable_peer_for_a_full_sync() {
    let mut run = Run::new(&["p", "q"]);
    run.until(0);
    let out = run.hello_answered(1, 2);
    assert!(out.contains(&Command::RequestFullSync { peer: 1 }), "{out:?}");
}

#[test]
fn beats_carry_deltas_against_the_answered_marks_and_are_whole_every_30() {
    let mut run = Run::new(&["p"]);
    run.replica.marks = marks(&[("me", 1), ("a", 5), ("b", 6)]);
    let (call, first) = run.introduce();
    assert!(first.full);
    run.beat_answered(0, call, None);
    // Our mark of b moves: the next beat carries b alone.
    run.replica.marks.insert("b".into(), 9);
    let out = run.until(I);
    let (call, beat) = timed_beat(&out).expect("beat");
    assert!(!beat.full);
    assert_eq!(beat.watermarks, [("b".to_string(), 9)].into());
    // Unanswered: the next delta is still against what it answered.
    let out = run.until(2 * I);
    let (_, beat) = timed_beat(&out).expect("beat");
    assert_eq!(beat.watermarks, [("b".to_string(), 9)].into());
    assert!(run.beat_answered(0, call, None).is_empty(), "a late answer is ignored");
    // Answered from here on: empty deltas, and a whole map every 30th beat.
    let mut fulls = Vec::new();
    for k in 3..=62 {
        let out = run.until(k * I);
        let (call, beat) = timed_beat(&out).expect("beat");
        if beat.full {
            assert_eq!(beat.watermarks.len(), 3);
            fulls.push(k);
        } else {
            assert!(k < 4 || beat.watermarks.is_empty(), "beat {k}: {beat:?}");
        }
        run.beat_answered(0, call, None);
    }
    // Beats to the peer: #0 at introduction, #1 at I, ... #k at kI.
    assert_eq!(fulls, vec![30, 60]);
    // Its HELLO (a restart there) makes the next beat whole.
    run.link.on_hello_received(0);
    let out = run.until(63 * I);
    assert!(timed_beat(&out).expect("beat").1.full);
}

/// A peer that answers nothing and whose calls never fail either (a frozen
/// link): DEGRADED just past 2× the interval, INTERRUPTED just past 10×, on
/// the judge timer alone; and the center goes inactive at the first beat
/// whose predecessor went unanswered.
#[test]
fn a_silent_peer_is_degraded_at_2x_and_interrupted_at_10x_whatever_the_transport() {
    let mut run = Run::new(&["p"]);
    run.replica.marks = marks(&[("me", 1)]);
    let (call, _) = run.introduce();
    run.beat_answered(0, call, None);
    run.received(0, beat_from_peer(&[("p", 0)], Some(I)));
    assert_eq!(run.link.peer(0).state(), Operational);
    let t0 = run.now;
    let out = run.until(t0 + 12 * I);
    let changes: Vec<(u64, PeerState)> = out
        .iter()
        .filter_map(|(t, c)| match c {
            Command::LifecycleChanged { to, .. } => Some((*t, *to)),
            _ => None,
        })
        .collect();
    let step = lifecycle::judge_every_ms(I);
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0].1, Degraded);
    assert!(
        changes[0].0 > t0 + 2 * I && changes[0].0 <= t0 + 2 * I + step,
        "{changes:?}"
    );
    assert_eq!(changes[1].1, Interrupted);
    assert!(
        changes[1].0 > t0 + 10 * I && changes[1].0 <= t0 + 10 * I + step,
        "{changes:?}"
    );
    // Beats still go to it, every interval.
    let beats = out
        .iter()
        .filter(|(_, c)| matches!(c, Command::SendBeat { .. }))
        .count();
    assert_eq!(beats, 12);
    // The beat at I went unanswered: at 2I it counts failed, and with no
    // peer answering the center is inactive.
    let inactive = out
        .iter()
        .find_map(|(t, c)| match c {
            Command::NodeStateChanged {
                to: NodeState::Inactive,
                ..
            } => Some(*t),
            _ => None,
        })
        .expect("inactive");
    assert_eq!(inactive, 2 * I);
}

#[test]
fn a_peer_answering_again_recovers_and_the_center_syncs_back_to_active() {
    let mut run = Run::new(&["p"]);
    run.replica.marks = marks(&[("me", 1), ("p", 4)]);
    let (call, _) = run.introduce();
    run.beat_answered(0, call, None);
    run.received(0, beat_from_peer(&[("p", 4)], Some(I)));
    // sync → active two intervals later, nobody ahead, no pull running.
    let mut active = None;
    for k in 1..=3 {
        let out = run.until(k * I);
        if out.iter().any(|(_, c)| {
            *c == Command::NodeStateChanged {
                from: NodeState::Sync,
                to: NodeState::Active,
                reachable: 1,
            }
        }) {
            active = Some(k * I);
        }
        let (call, _) = timed_beat(&out).expect("beat");
        run.beat_answered(0, call, None);
    }
    assert_eq!(active, Some(2 * I));
    // Calls now fail (refused): inactive at once, then DEGRADED, ....
    let out = run.until(4 * I);
    let (call, _) = timed_beat(&out).expect("beat");
    run.now += 5;
    let out = run.failed(0, call);
    assert!(out.contains(&Command::NodeStateChanged {
        from: NodeState::Active,
        to: NodeState::Inactive,
        reachable: 0
    }));
    let out = run.until(15 * I + 1);
    assert!(out
        .iter()
        .any(|(_, c)| matches!(c, Command::LifecycleChanged { to: Interrupted, .. })));
    let call = out
        .iter()
        .rev()
        .find_map(|(_, c)| match c {
            Command::SendBeat { call, .. } => Some(*call),
            _ => None,
        })
        .unwrap();
    // ... until it answers and beats again: OPERATIONAL, sync; in sync a
    // peer ahead is pulled at its first beat; active once caught up.
    run.now = 15 * I + 100;
    let out = run.beat_answered(0, call, Some(beat_from_peer(&[("p", 9)], Some(I))));
    assert!(out.contains(&Command::LifecycleChanged {
        peer: 0,
        from: Interrupted,
        to: Operational
    }));
    assert!(out.contains(&Command::NodeStateChanged {
        from: NodeState::Inactive,
        to: NodeState::Sync,
        reachable: 1
    }));
    let (_, out) = run.received(0, beat_from_peer(&[("p", 9)], Some(I)));
    assert!(out.contains(&Command::StartPull {
        peer: 0,
        origin: "p".into()
    }));
    run.replica.pulling = true;
    run.answering = true;
    let out = run.until(18 * I);
    assert!(
        !out.iter().any(|(_, c)| matches!(c, Command::NodeStateChanged { .. })),
        "still pulling"
    );
    run.replica.pulling = false;
    run.replica.marks.insert("p".into(), 9);
    let out = run.until(18 * I + lifecycle::judge_every_ms(I));
    assert!(out.iter().any(|(_, c)| *c
        == Command::NodeStateChanged {
            from: NodeState::Sync,
            to: NodeState::Active,
            reachable: 1
        }));
}

#[test]
fn an_active_center_pulls_only_a_lead_that_outlived_one_beat() {
    let mut run = Run::new(&["p"]);
    run.link.bootstrap(0);
    run.replica.marks = marks(&[("me", 1), ("x", 2)]);
    let (_, out) = run.received(0, beat_from_peer(&[("x", 5), ("p", 3)], Some(I)));
    assert!(!out.iter().any(|c| matches!(c, Command::StartPull { .. })), "{out:?}");
    assert!(out.contains(&Command::OriginSpoke { peer: 0, seq: 3 }));
    let (_, out) = run.received(0, beat_from_peer(&[("x", 5)], Some(I)));
    assert!(out.contains(&Command::StartPull {
        peer: 0,
        origin: "x".into()
    }));
}

#[test]
fn announced_intervals_are_clamped() {
    let mut run = Run::new(&["p"]);
    run.link.bootstrap(0);
    for (announced, judged) in [
        (Some(1), BEAT_INTERVAL_MIN_MS),
        (Some(u64::MAX), BEAT_INTERVAL_MAX_MS),
        (None, BEAT_INTERVAL_DEFAULT_MS),
        (Some(700), 700),
    ] {
        run.received(0, beat_from_peer(&[], announced));
        assert_eq!(run.link.peer(0).lifecycle().their_interval_ms(), Some(judged));
    }
    assert_eq!(clamp_interval_ms(Some(0)), BEAT_INTERVAL_MIN_MS);
}

#[test]
fn digest_slices_rotate_over_the_origins_at_equal_marks_and_the_classes_it_sees() {
    let mut run = Run::new(&["p"]);
    let origins: Vec<String> = (0..20).map(|i| format!("o{i:02}")).collect();
    let mut d = SetDigest::default();
    d.add(&crate::digest::element("agent", "a", "o", 1, 0, false));
    for o in &origins {
        run.replica.marks.insert(o.clone(), 3);
        run.replica.digests.insert(
            o.clone(),
            [("agent".to_string(), d), ("agent@authorized:g".to_string(), d)].into(),
        );
    }
    // One origin where it stands elsewhere: never in a slice.
    run.replica.marks.insert("behind".into(), 9);
    let (call, _) = run.introduce();
    run.beat_answered(0, call, None);
    let theirs: Vec<(&str, u64)> = origins.iter().map(|o| (o.as_str(), 3)).chain([("behind", 2)]).collect();
    run.received(0, beat_from_peer(&theirs, Some(I)));
    let mut seen: Vec<Vec<String>> = Vec::new();
    for k in 1..=3 {
        let out = run.until(k * I);
        let (call, beat) = timed_beat(&out).expect("beat");
        run.beat_answered(0, call, None);
        for digests in beat.digests.values() {
            assert_eq!(digests.keys().collect::<Vec<_>>(), vec!["agent"], "it is in no group");
        }
        seen.push(beat.digests.keys().cloned().collect());
    }
    assert_eq!(seen[0].len(), DIGESTS_PER_BEAT);
    assert_ne!(seen[0], seen[1]);
    let all: std::collections::BTreeSet<&String> = seen.iter().flatten().collect();
    assert_eq!(all.len(), 20, "three beats of 8 cover all 20: {seen:?}");
    assert!(!all.contains(&"behind".to_string()));
}

#[test]
fn digests_differing_at_equal_marks_ask_for_a_repair() {
    let mut run = Run::new(&["p"]);
    run.link.bootstrap(0);
    let mut a = SetDigest::default();
    a.add(&crate::digest::element("agent", "a", "x", 1, 0, false));
    run.replica.marks = marks(&[("me", 2), ("x", 4), ("y", 4)]);
    run.replica
        .digests
        .insert("x".into(), [("agent".to_string(), a)].into());
    run.replica
        .digests
        .insert("me".into(), [("agent".to_string(), a)].into());
    let mut beat = beat_from_peer(&[("x", 4), ("y", 5), ("me", 2)], Some(I));
    beat.policy = Some(BeatPolicy::default());
    // Equal: nothing to do.
    beat.digests
        .insert("x".into(), [("agent".to_string(), Digest(a))].into());
    let (_, out) = run.received(0, beat.clone());
    assert!(!out.iter().any(|c| matches!(c, Command::Repair { .. })));
    assert_eq!(run.link.peer(0).digest_match(), Some(true));
    // It holds nothing of a class its policy sends us: differs.
    beat.digests.insert("x".into(), BTreeMap::new());
    // At unequal marks (y), and of our own origin, no repair.
    beat.digests.insert("y".into(), BTreeMap::new());
    beat.digests.insert("me".into(), BTreeMap::new());
    let (_, out) = run.received(0, beat);
    let repairs: Vec<&Command> = out.iter().filter(|c| matches!(c, Command::Repair { .. })).collect();
    assert_eq!(
        repairs,
        vec![&Command::Repair {
            peer: 0,
            origin: "x".into()
        }]
    );
    assert_eq!(run.link.peer(0).digest_match(), Some(false));
}

#[test]
fn a_received_heartbeat_is_answered_with_our_own_beat() {
    let mut run = Run::new(&["p"]);
    run.replica.marks = marks(&[("me", 5)]);
    let (answer, out) = run.received(0, beat_from_peer(&[("p", 1)], Some(I)));
    assert!(
        out.is_empty() || out.iter().all(|c| matches!(c, Command::OriginSpoke { .. })),
        "not introduced: {out:?}"
    );
    assert_eq!(answer.state, Some(NodeState::Inactive));
    assert!(answer.full);
    assert_eq!(answer.watermarks.get("me"), Some(&5));
    run.link.on_announce(0, NodeState::Sync);
    assert_eq!(run.link.peer(0).announced(), Some(NodeState::Sync));
}

#[test]
fn behind_only_while_a_peer_reports_more_than_we_hold() {
    // Mutation testing found `behind` unchecked (`>` for `<` survived).
    let mut run = Run::new(&["p"]);
    run.link.bootstrap(0);
    run.replica.marks = marks(&[("me", 1), ("x", 5)]);
    run.received(0, beat_from_peer(&[("x", 5)], Some(I)));
    assert!(!run.link.behind(&run.replica), "equal marks");
    run.received(0, beat_from_peer(&[("x", 7)], Some(I)));
    assert!(run.link.behind(&run.replica), "the peer holds x through 7, we 5");
    run.replica.marks.insert("x".into(), 9);
    assert!(!run.link.behind(&run.replica), "we are ahead");
}

#[test]
fn a_peer_added_at_runtime_is_said_hello_at_the_next_beat_and_gets_no_duplicate() {
    let mut run = Run::new(&[]);
    assert_eq!(run.link.node_state(), NodeState::Active, "no peers: standalone");
    let out = run.until(0);
    assert!(
        !out.iter().any(|(_, c)| matches!(c, Command::SendHello { .. })),
        "{out:?}"
    );
    assert_eq!(run.link.add_peer("p", ExportPolicy::default()), Some(0));
    assert_eq!(run.link.add_peer("p", ExportPolicy::default()), None, "duplicate");
    assert_eq!(run.link.peers().len(), 1);
    assert_eq!(run.link.peer(0).state(), Known);
    let out = run.until(I);
    let call = out
        .iter()
        .find_map(|(_, c)| match c {
            Command::SendHello { peer: 0, call, .. } => Some(*call),
            _ => None,
        })
        .expect("a HELLO to the new peer");
    // Unreachable so far: the center is no longer standalone.
    assert_eq!(run.link.node_state(), NodeState::Inactive);
    let out = run.hello_answered(0, call);
    assert!(sent_beat(&out, 0).is_some(), "introduced: a heartbeat at once");
    assert_eq!(run.link.peer(0).state(), Introduced);
    assert_eq!(run.link.node_state(), NodeState::Sync);
}
