//! Unit tests of the floods part: each protocol step driven through its
//! inputs, asserting the exact commands it emits.

use super::*;
use crate::constants::{FLOODS_IN_FLIGHT, FLOOD_BATCH_MAX, PEER_QUEUE};
use crate::wire::flood::FloodHead;
use regmesh_core::Hlc;
use serde_json::json;
use std::collections::{HashMap, HashSet};

/// The rest of the mesh, as a test sets it.
struct Mesh {
    state: NodeState,
    operational: HashSet<String>,
    /// Part visibilities by record id.
    parts: HashMap<String, Vec<Visibility>>,
    /// Ceiling per origin (origins absent are not judged).
    ceilings: HashMap<String, u64>,
}

impl Mesh {
    fn new(operational: &[&str]) -> Self {
        Mesh {
            state: NodeState::Active,
            operational: operational.iter().map(|s| s.to_string()).collect(),
            parts: HashMap::new(),
            ceilings: HashMap::new(),
        }
    }
}

impl View for Mesh {
    fn node_state(&self) -> NodeState {
        self.state
    }
    fn receives_propagation(&self, peer: &str) -> bool {
        self.operational.contains(peer)
    }
    fn parts(&self, r: &Record) -> Vec<Visibility> {
        self.parts.get(&r.id).cloned().unwrap_or_default()
    }
    fn backs(&self, origin: &str, counter: u64) -> bool {
        self.ceilings.get(origin).is_none_or(|c| counter <= *c)
    }
}

fn rec(origin: &str, id: &str, seq: u64, vis: Visibility, deleted: bool) -> Record {
    Record {
        kind: "agent".into(),
        id: id.into(),
        origin: origin.into(),
        version: Hlc::new(seq, 0),
        seq,
        expires_at_ms: None,
        visibility: vis,
        deleted,
        body: if deleted { String::new() } else { "{}".into() },
        sig: [0; 64],
    }
}

fn public(origin: &str, seq: u64) -> Record {
    rec(origin, &format!("a{seq}"), seq, Visibility::Public, false)
}

fn policy(kinds: &[&str], groups: &[&str]) -> ExportPolicy {
    ExportPolicy::new(
        kinds.iter().map(|s| s.to_string()),
        groups.iter().map(|s| s.to_string()),
    )
}

fn head(initiator: &str, counter: u64, reset: bool, seq_from: Option<u64>) -> FloodHead {
    FloodHead {
        initiator: initiator.into(),
        counter,
        reset,
        seq_from,
        reached: Vec::new(),
    }
}

fn send(peer: &str, head: FloodHead, records: Vec<Record>) -> Command {
    Command::SendFlood {
        peer: peer.into(),
        flood: Flood { head, records },
    }
}

/// `cmds` with every flood's `reached` list emptied, for tests about
/// something else (the lists have tests of their own).
fn unreached(cmds: &[Command]) -> Vec<Command> {
    cmds.iter()
        .cloned()
        .map(|mut c| {
            if let Command::SendFlood { flood, .. } = &mut c {
                flood.head.reached.clear();
            }
            c
        })
        .collect()
}

/// Center `me` with peers `c2`, `c3`, `c4`, all receiving everything.
fn three(me: &str) -> Floods {
    let all = ExportPolicy::default();
    Floods::new(
        me,
        ["c2", "c3", "c4"].into_iter().map(|p| (p.to_string(), all.clone())),
        None,
    )
}

/// Receives `flood` from `sender` through every step, as a runtime does
/// when every record verifies and every merge commits.
fn receive(f: &mut Floods, sender: &str, flood: Flood, view: &Mesh) -> (Option<Receipt>, Vec<Command>) {
    let mut out = Vec::new();
    if f.on_flood(0, sender, &flood.head, view) != Arrival::Verify {
        return (None, out);
    }
    let receipt = f.on_verified(0, sender, flood, 0, view, &mut out);
    let mut all = Vec::new();
    for c in out {
        if let Command::Apply { then: Some(done), .. } = &c {
            let done = done.clone();
            all.push(c);
            f.on_applied(0, done, view, &mut all);
        } else {
            all.push(c);
        }
    }
    (Some(receipt), all)
}

#[test]
fn an_own_change_goes_to_every_peer_whose_policy_receives_it_and_no_other() {
    let g = Visibility::Authorized("g".into());
    let mut f = Floods::new(
        "c1",
        [
            ("all".to_string(), policy(&[], &[])),
            ("group".to_string(), policy(&[], &["g"])),
            ("notes".to_string(), policy(&["note"], &["g"])),
            ("silent".to_string(), policy(&[], &["g"])),
        ],
        None,
    );
    let mut view = Mesh::new(&["all", "group", "notes"]);
    let live = public("c1", 1);
    let hidden_part = rec("c1", "p", 2, Visibility::Public, false);
    view.parts.insert("p".into(), vec![g.clone()]);
    let tomb = rec("c1", "t", 3, g.clone(), true);
    let local = rec("c1", "l", 4, Visibility::Local, true);
    let records = vec![live.clone(), hidden_part.clone(), tomb.clone(), local];
    let mut out = Vec::new();
    f.on_committed(0, &records, &view, &mut out);
    let h = head("c1", 4, false, Some(1));
    assert_eq!(
        unreached(&out),
        vec![
            send("all", h.clone(), vec![live.clone()]),
            send("group", h.clone(), vec![live, hidden_part, tomb]),
            // Nothing it may see, but the range tells its watermark so.
            send("notes", h, vec![]),
        ],
        "`silent` is not OPERATIONAL; `local` never leaves"
    );
    assert_eq!(f.stats().initiated, 1);

    // Inactive: nothing goes anywhere.
    view.state = NodeState::Inactive;
    let mut out = Vec::new();
    f.on_committed(0, &[public("c1", 5)], &view, &mut out);
    assert!(out.is_empty());
    // Not own: skipped.
    view.state = NodeState::Active;
    f.on_committed(0, &[public("c9", 6)], &view, &mut out);
    assert!(out.is_empty());
}

#[test]
fn own_changes_are_batched_at_the_cap() {
    let mut f = Floods::new("c1", [("c2".to_string(), ExportPolicy::default())], Some(0));
    let view = Mesh::new(&["c2"]);
    let n = 2 * FLOOD_BATCH_MAX as u64 + 88;
    let records: Vec<Record> = (1..=n).map(|s| public("c1", s)).collect();
    let mut out = Vec::new();
    f.on_committed(0, &records, &view, &mut out);
    let heads: Vec<(FloodHead, usize)> = out
        .iter()
        .map(|c| match c {
            Command::SendFlood { flood, .. } => {
                assert_eq!(flood.head.reached, vec!["c2".to_string()]);
                (
                    FloodHead {
                        reached: Vec::new(),
                        ..flood.head.clone()
                    },
                    flood.records.len(),
                )
            }
            c => panic!("{c:?}"),
        })
        .collect();
    let cap = FLOOD_BATCH_MAX as u64;
    assert_eq!(
        heads,
        vec![
            (head("c1", cap, false, Some(1)), FLOOD_BATCH_MAX),
            (head("c1", 2 * cap, false, Some(cap + 1)), FLOOD_BATCH_MAX),
            (head("c1", n, false, Some(2 * cap + 1)), 88),
        ]
    );
    assert_eq!(f.stats().initiated, 3);
}

#[test]
fn a_counter_not_above_the_last_one_sent_goes_with_a_reset() {
    let mut f = Floods::new("c1", [("c2".to_string(), ExportPolicy::default())], Some(500));
    let view = Mesh::new(&["c2"]);
    let mut out = Vec::new();
    f.on_committed(0, &[public("c1", 3)], &view, &mut out);
    f.on_committed(0, &[public("c1", 4)], &view, &mut out);
    assert_eq!(
        unreached(&out),
        vec![
            send("c2", head("c1", 3, true, Some(3)), vec![public("c1", 3)]),
            send("c2", head("c1", 4, false, Some(4)), vec![public("c1", 4)]),
        ]
    );
}

#[test]
fn a_received_reset_starts_the_window_over_once() {
    let mut f = three("c2");
    let view = Mesh::new(&["c1", "c3"]);
    for c in 1..=1000 {
        let (r, _) = receive(
            &mut f,
            "c1",
            Flood {
                head: head("c1", c, false, None),
                records: vec![],
            },
            &view,
        );
        assert_eq!(r, Some(Receipt::Accepted { relay: true }));
    }
    let reset = Flood {
        head: head("c1", 3, true, Some(3)),
        records: vec![public("c1", 3)],
    };
    let (r, out) = receive(&mut f, "c1", reset.clone(), &view);
    assert_eq!(r, Some(Receipt::Accepted { relay: true }));
    assert_eq!(
        unreached(&out),
        vec![
            Command::Witness {
                origin: "c1".into(),
                seq: 3
            },
            Command::Apply {
                records: reset.records.clone(),
                then: Some(Applied {
                    sender: "c1".into(),
                    flood: reset.clone(),
                    relay: true
                })
            },
            Command::Witness {
                origin: "c1".into(),
                seq: 3
            },
            Command::Covered {
                origin: "c1".into(),
                from: 3,
                through: 3
            },
            send("c3", reset.head.clone(), reset.records.clone()),
        ]
    );
    assert_eq!(receive(&mut f, "c3", reset, &view).0, None, "its copy by another path");
    let next = Flood {
        head: head("c1", 4, false, None),
        records: vec![],
    };
    assert_eq!(
        receive(&mut f, "c1", next, &view).0,
        Some(Receipt::Accepted { relay: true })
    );
}

#[test]
fn a_duplicate_flood_is_ignored() {
    let mut f = three("c2");
    let view = Mesh::new(&["c1", "c3", "c4"]);
    let m = Flood {
        head: head("c1", 7, false, Some(7)),
        records: vec![public("c1", 7)],
    };
    let (r, out) = receive(&mut f, "c1", m.clone(), &view);
    assert_eq!(r, Some(Receipt::Accepted { relay: true }));
    assert_eq!(
        out.iter().filter(|c| matches!(c, Command::SendFlood { .. })).count(),
        2,
        "c3 and c4"
    );
    // The copy by another path is skipped before its signatures are checked.
    assert_eq!(f.on_flood(0, "c3", &m.head, &view), Arrival::Duplicate);
    // Two copies racing through verification: the second marks nothing.
    let mut out = Vec::new();
    assert_eq!(
        f.on_verified(0, "c4", m.clone(), 0, &view, &mut out),
        Receipt::Duplicate
    );
    assert_eq!(
        unreached(&out),
        vec![Command::Witness {
            origin: "c1".into(),
            seq: 7
        }]
    );
    // Our own flood come back.
    let own = Flood {
        head: head("c2", 1, false, Some(1)),
        records: vec![public("c2", 1)],
    };
    assert_eq!(f.on_flood(0, "c1", &own.head, &view), Arrival::Duplicate);
    assert_eq!(f.stats().duplicates, 3);
    assert_eq!(f.stats().received, 3);
}

#[test]
fn an_out_of_order_counter_inside_the_window_is_accepted_once() {
    let mut f = three("c2");
    let view = Mesh::new(&["c1", "c3"]);
    let late = Flood {
        head: head("c1", 7, false, Some(7)),
        records: vec![public("c1", 7)],
    };
    let early = Flood {
        head: head("c1", 10, false, Some(8)),
        records: vec![public("c1", 10)],
    };
    assert_eq!(
        receive(&mut f, "c1", early, &view).0,
        Some(Receipt::Accepted { relay: true })
    );
    let (r, out) = receive(&mut f, "c1", late.clone(), &view);
    assert_eq!(r, Some(Receipt::Accepted { relay: true }));
    assert!(unreached(&out).contains(&send("c3", late.head.clone(), late.records.clone())));
    assert!(out.contains(&Command::Covered {
        origin: "c1".into(),
        from: 7,
        through: 7
    }));
    assert_eq!(receive(&mut f, "c3", late, &view).0, None);
}

#[test]
fn a_flood_below_the_window_is_applied_and_covered_not_relayed() {
    let mut f = three("c2");
    let view = Mesh::new(&["c1", "c3"]);
    let far = crate::dedup::WINDOW + 100;
    let (r, _) = receive(
        &mut f,
        "c1",
        Flood {
            head: head("c1", far, false, None),
            records: vec![],
        },
        &view,
    );
    assert_eq!(r, Some(Receipt::Accepted { relay: true }));
    let old = Flood {
        head: head("c1", 5, false, Some(5)),
        records: vec![public("c1", 5)],
    };
    let (r, out) = receive(&mut f, "c1", old, &view);
    assert_eq!(r, Some(Receipt::Accepted { relay: false }));
    assert!(!out.iter().any(|c| matches!(c, Command::SendFlood { .. })));
    assert!(out.contains(&Command::Covered {
        origin: "c1".into(),
        from: 5,
        through: 5
    }));
}

#[test]
fn an_unbacked_relay_is_applied_not_relayed_and_marks_nothing() {
    let mut f = three("c2");
    let mut view = Mesh::new(&["c1", "c3", "c4"]);
    view.ceilings.insert("c1".into(), 40);
    // c3 relays c1's counter 50 carrying only seq 45: the origin has shown 45.
    let relayed = Flood {
        head: head("c1", 50, false, Some(41)),
        records: vec![public("c1", 45)],
    };
    let (r, out) = receive(&mut f, "c3", relayed.clone(), &view);
    assert_eq!(r, Some(Receipt::Unbacked));
    assert_eq!(
        unreached(&out),
        vec![
            Command::Witness {
                origin: "c1".into(),
                seq: 45
            },
            Command::Apply {
                records: relayed.records.clone(),
                then: None
            },
        ],
        "applied only: no window, no watermark, no relay"
    );
    assert_eq!(f.stats().unbacked, 1);
    // The origin's own copy is new, covers and is relayed.
    let (r, out) = receive(&mut f, "c1", relayed.clone(), &view);
    assert_eq!(r, Some(Receipt::Accepted { relay: true }));
    assert!(out.contains(&Command::Covered {
        origin: "c1".into(),
        from: 41,
        through: 50
    }));
    assert!(unreached(&out).contains(&send("c4", relayed.head.clone(), relayed.records.clone())));
    assert!(!out
        .iter()
        .any(|c| matches!(c, Command::SendFlood { peer, .. } if peer == "c1")));
    // A relay whose records show the counter is backed.
    let shown = Flood {
        head: head("c1", 60, false, Some(51)),
        records: vec![public("c1", 60)],
    };
    assert_eq!(
        receive(&mut f, "c3", shown, &view).0,
        Some(Receipt::Accepted { relay: true })
    );
}

#[test]
fn a_refused_record_marks_covers_and_relays_nothing() {
    let mut f = three("c2");
    let view = Mesh::new(&["c1", "c3"]);
    let m = Flood {
        head: head("c1", 9, false, Some(9)),
        records: vec![public("c1", 8)],
    };
    let mut out = Vec::new();
    assert_eq!(f.on_flood(0, "c1", &m.head, &view), Arrival::Verify);
    assert_eq!(f.on_verified(0, "c1", m.clone(), 1, &view, &mut out), Receipt::Refused);
    assert_eq!(
        unreached(&out),
        vec![Command::Apply {
            records: m.records.clone(),
            then: None
        }]
    );
    assert_eq!(f.on_flood(0, "c1", &m.head, &view), Arrival::Verify, "not marked seen");
    let foreign = Flood {
        head: head("c1", 9, false, None),
        records: vec![public("c5", 9)],
    };
    let mut out = Vec::new();
    assert_eq!(f.on_verified(0, "c1", foreign, 0, &view, &mut out), Receipt::Malformed);
    assert!(out.is_empty());
}

#[test]
fn an_inactive_center_refuses_floods() {
    let mut f = three("c2");
    let mut view = Mesh::new(&["c1"]);
    view.state = NodeState::Inactive;
    assert_eq!(
        f.on_flood(0, "c1", &head("c1", 1, false, None), &view),
        Arrival::Inactive
    );
}

#[test]
fn a_full_peer_queue_drops_and_counts() {
    let mut f = Floods::new("c1", [("c2".to_string(), ExportPolicy::default())], None);
    let view = Mesh::new(&["c2"]);
    let total = (FLOODS_IN_FLIGHT + PEER_QUEUE + 2) as u64;
    let mut out = Vec::new();
    // Odd seqs only: no flood continues the one before, none coalesce.
    for s in 1..=total {
        f.on_committed(0, &[public("c1", 2 * s - 1)], &view, &mut out);
    }
    assert_eq!(out.len(), FLOODS_IN_FLIGHT, "only the call slots go at once");
    assert_eq!(f.backlog("c2"), (PEER_QUEUE, FLOODS_IN_FLIGHT));
    assert_eq!(f.peer_stats("c2").dropped, 2);
    // A slot freed: the oldest waiting goes.
    let mut out = Vec::new();
    f.on_sent(0, "c2", false, &mut out);
    let next = 2 * (FLOODS_IN_FLIGHT as u64 + 1) - 1;
    assert_eq!(
        unreached(&out),
        vec![send(
            "c2",
            head("c1", next, false, Some(next)),
            vec![public("c1", next)]
        )]
    );
    assert_eq!(
        f.peer_stats("c2"),
        PeerFlowStats {
            sent: 0,
            dropped: 2,
            failed: 1
        }
    );
    assert_eq!(f.backlog("c2"), (PEER_QUEUE - 1, FLOODS_IN_FLIGHT));
}

#[test]
fn floods_waiting_for_a_peer_join_when_they_continue_each_other() {
    let mut f = Floods::new("c1", [("c2".to_string(), ExportPolicy::default())], None);
    let view = Mesh::new(&["c2"]);
    let mut out = Vec::new();
    for s in 1..=FLOODS_IN_FLIGHT as u64 {
        f.on_committed(0, &[public("c1", s)], &view, &mut out);
    }
    assert_eq!(out.len(), FLOODS_IN_FLIGHT);
    // Seqs 5, 6, 7 meet end to end: one waiting flood; 9 leaves a gap.
    let first = FLOODS_IN_FLIGHT as u64 + 1;
    for s in [first, first + 1, first + 2, first + 4] {
        f.on_committed(0, &[public("c1", s)], &view, &mut out);
    }
    assert_eq!(f.backlog("c2"), (2, FLOODS_IN_FLIGHT));
    let mut out = Vec::new();
    f.on_sent(0, "c2", true, &mut out);
    f.on_sent(0, "c2", true, &mut out);
    assert_eq!(
        unreached(&out),
        vec![
            send(
                "c2",
                head("c1", first + 2, false, Some(first)),
                (first..=first + 2).map(|s| public("c1", s)).collect()
            ),
            send(
                "c2",
                head("c1", first + 4, false, Some(first + 4)),
                vec![public("c1", first + 4)]
            ),
        ]
    );
}

#[test]
fn waiting_floods_join_only_up_to_a_batch_and_never_across_initiators_or_resets() {
    let mut f = Floods::new("c1", [("c2".to_string(), ExportPolicy::default())], None);
    let view = Mesh::new(&["c2"]);
    let mut out = Vec::new();
    for s in 1..=FLOODS_IN_FLIGHT as u64 {
        f.on_committed(0, &[public("c1", s)], &view, &mut out);
    }
    // A full batch, then one more record: they stay two messages.
    let from = FLOODS_IN_FLIGHT as u64 + 1;
    let batch: Vec<Record> = (from..from + FLOOD_BATCH_MAX as u64).map(|s| public("c1", s)).collect();
    f.on_committed(0, &batch, &view, &mut out);
    let next = from + FLOOD_BATCH_MAX as u64;
    f.on_committed(0, &[public("c1", next)], &view, &mut out);
    assert_eq!(f.backlog("c2").0, 2, "a batch is never exceeded");
    // A counter that went back (reset) never joins.
    f.on_committed(0, &[public("c1", 1)], &view, &mut out);
    assert_eq!(f.backlog("c2").0, 3, "a reset starts its own message");
    // A relay of another initiator never joins an own flood.
    let mut a = Flood {
        head: head("c1", 5, false, Some(5)),
        records: vec![public("c1", 5)],
    };
    let b = Flood {
        head: head("c3", 6, false, Some(6)),
        records: vec![public("c3", 6)],
    };
    assert!(!coalesce(&mut a, &b));
    assert_eq!(a.records.len(), 1, "a refused join leaves the flood as it was");
}

fn msg(v: serde_json::Value) -> Message {
    Message::from_value(v).unwrap()
}

#[test]
fn notify_goes_to_the_registered_front_and_unknown_types_are_rejected() {
    let mut f = three("c1");
    let mut fronts = Fronts::default();
    fronts.register("rd", Verb::Notify, "rd.moved").unwrap();
    assert!(matches!(
        fronts.register("dns", Verb::Notify, "rd.moved"),
        Err(RegisterError::Taken { .. })
    ));
    assert!(matches!(
        fronts.register("dns", Verb::Notify, "state"),
        Err(RegisterError::Taken { .. })
    ));
    assert!(matches!(
        fronts.register("dns", Verb::Rfi, "Zone Transfer"),
        Err(RegisterError::BadType { .. })
    ));
    f.set_fronts(fronts);
    let mut out = Vec::new();
    let m = msg(json!({"type": "rd.moved", "n": 3}));
    f.on_message(0, "c2", Verb::Notify, m.clone(), &mut out);
    assert_eq!(
        unreached(&out),
        vec![Command::DeliverToFront {
            front: "rd".into(),
            verb: Verb::Notify,
            sender: "c2".into(),
            message: m
        }]
    );
    let mut out = Vec::new();
    f.on_message(0, "c2", Verb::Rfi, msg(json!({"type": "rd.moved"})), &mut out);
    f.on_message(0, "c2", Verb::Notify, msg(json!({"type": "dns.ns"})), &mut out);
    f.on_message(0, "c2", Verb::Notify, msg(json!({"n": 1})), &mut out);
    assert_eq!(
        unreached(&out),
        vec![
            Command::Answer(Answer::rejected("c1 does not answer RFI type \"rd.moved\"")),
            Command::Answer(Answer::rejected("c1 does not handle NOTIFY type \"dns.ns\"")),
            Command::Answer(Answer::rejected("a NOTIFY needs a type")),
        ]
    );
}

#[test]
fn built_in_messages_are_the_nodes() {
    let mut f = three("c1");
    let mut out = Vec::new();
    f.on_message(
        0,
        "c2",
        Verb::Notify,
        msg(json!({"type": "state", "state": "sync"})),
        &mut out,
    );
    f.on_message(
        0,
        "c2",
        Verb::Notify,
        msg(json!({"type": "state", "state": "asleep"})),
        &mut out,
    );
    f.on_message(0, "c2", Verb::Rfi, msg(json!({"type": "sync-state"})), &mut out);
    assert_eq!(
        unreached(&out),
        vec![
            Command::Announce {
                peer: "c2".into(),
                state: NodeState::Sync
            },
            Command::Answer(Answer::rejected("state must be active, inactive or sync")),
            Command::AnswerSyncState,
        ]
    );
}

#[test]
fn a_relay_goes_to_the_other_operational_peers_each_with_what_its_policy_allows() {
    let g = Visibility::Authorized("g".into());
    let mut f = Floods::new(
        "c2",
        [
            ("c1".to_string(), policy(&[], &["g"])),
            ("c3".to_string(), policy(&[], &["g"])),
            ("c4".to_string(), policy(&[], &[])),
            ("c5".to_string(), policy(&[], &["g"])),
            ("c6".to_string(), policy(&[], &["g"])),
        ],
        None,
    );
    let view = Mesh::new(&["c1", "c3", "c4", "c5"]);
    let open = public("c1", 4);
    let grouped = rec("c1", "g", 5, g, true);
    let m = Flood {
        head: head("c1", 5, false, Some(4)),
        records: vec![open.clone(), grouped.clone()],
    };
    let (r, out) = receive(&mut f, "c3", m.clone(), &view);
    assert_eq!(r, Some(Receipt::Accepted { relay: true }));
    let sends: Vec<Command> = out
        .iter()
        .filter(|c| matches!(c, Command::SendFlood { .. }))
        .cloned()
        .collect();
    // c5 gets every record, c4 not the grouped one: only c5 is reached.
    let relayed = FloodHead {
        reached: vec!["c5".into()],
        ..m.head.clone()
    };
    assert_eq!(
        sends,
        vec![
            send("c4", relayed.clone(), vec![open.clone()]),
            send("c5", relayed, vec![open, grouped]),
        ],
        "not back to c3 (sender) or c1 (initiator); c6 is not OPERATIONAL"
    );
    assert_eq!(f.stats().relayed, 2);
}

#[test]
fn a_relay_skips_the_centers_an_earlier_hop_reached_and_adds_its_own() {
    let mut f = three("c2");
    let view = Mesh::new(&["c1", "c3", "c4"]);
    // c1 sent this to c2 and c3 itself: c2 relays to c4 only.
    let m = Flood {
        head: FloodHead {
            reached: vec!["c2".into(), "c3".into()],
            ..head("c1", 7, false, Some(7))
        },
        records: vec![public("c1", 7)],
    };
    let (r, out) = receive(&mut f, "c1", m.clone(), &view);
    assert_eq!(r, Some(Receipt::Accepted { relay: true }));
    let sends: Vec<Command> = out
        .into_iter()
        .filter(|c| matches!(c, Command::SendFlood { .. }))
        .collect();
    let onward = FloodHead {
        reached: vec!["c2".into(), "c3".into(), "c4".into()],
        ..m.head.clone()
    };
    assert_eq!(sends, vec![send("c4", onward, m.records.clone())]);
    // Own floods name every peer that gets the whole message.
    let mut out = Vec::new();
    f.on_committed(0, &[public("c2", 1)], &view, &mut out);
    let reached: Vec<Vec<String>> = out
        .iter()
        .map(|c| match c {
            Command::SendFlood { flood, .. } => flood.head.reached.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(reached, vec![vec!["c3".to_string(), "c4".to_string()]; 2]);
}

#[test]
fn a_peer_whose_queue_is_full_is_not_claimed_reached() {
    let mut f = Floods::new(
        "c1",
        ["c2", "c3"].map(|p| (p.to_string(), ExportPolicy::default())),
        None,
    );
    // Odd seqs: nothing joins; c2 fills up while c3 is not OPERATIONAL.
    let mut out = Vec::new();
    let fill = (FLOODS_IN_FLIGHT + PEER_QUEUE) as u64;
    for s in 1..=fill {
        f.on_committed(0, &[public("c1", 2 * s - 1)], &Mesh::new(&["c2"]), &mut out);
    }
    let mut out = Vec::new();
    f.on_committed(0, &[public("c1", 2 * fill + 1)], &Mesh::new(&["c2", "c3"]), &mut out);
    assert_eq!(f.peer_stats("c2").dropped, 1);
    let Some(Command::SendFlood { peer, flood }) = out.last() else {
        panic!("no flood to c3: {out:?}");
    };
    assert_eq!(peer, "c3");
    assert_eq!(
        flood.head.reached,
        vec!["c3".to_string()],
        "c2 dropped its copy: not reached"
    );
}

#[test]
fn a_peer_added_at_runtime_receives_the_next_own_change() {
    let mut f = Floods::new("c1", [], Some(0));
    let view = Mesh::new(&["c2"]);
    let mut out = Vec::new();
    f.on_committed(0, &[public("c1", 1)], &view, &mut out);
    assert!(out.is_empty(), "no peers yet");
    assert!(f.add_peer("c2", ExportPolicy::default()));
    assert!(!f.add_peer("c2", policy(&["note"], &[])), "duplicate: unchanged");
    f.on_committed(0, &[public("c1", 2)], &view, &mut out);
    assert_eq!(
        unreached(&out),
        vec![send("c2", head("c1", 2, false, Some(2)), vec![public("c1", 2)])]
    );
}
