//! Unit tests of part `pulls`: each protocol step and the commands it
//! emits, with a small in-memory replica that executes them as a runtime
//! would (marks by `sync::Marks`, records by key).

use super::*;
use crate::sync::{Marks, FULL_SYNC_WINDOW_MS, REPAIR_EVERY_MS};
use crate::wire::pull::{PolicyNames, PullPage};
use regmesh_core::{Hlc, Visibility};
use std::collections::{BTreeMap, HashMap};

fn rec(origin: &str, id: &str, seq: u64) -> Record {
    Record {
        kind: "agent".into(),
        id: id.into(),
        origin: origin.into(),
        version: Hlc::new(seq, 0),
        seq,
        expires_at_ms: None,
        visibility: Visibility::Public,
        deleted: false,
        body: "{}".into(),
        sig: [0; 64],
    }
}

/// A center's replica as the part sees it, executing the part's commands.
#[derive(Default)]
struct Replica1 {
    marks: Marks,
    purged: HashMap<String, u64>,
    held: BTreeMap<(String, String), Record>,
}

impl Replica for Replica1 {
    fn mark(&self, origin: &str) -> u64 {
        self.marks.get(origin)
    }
    fn purged_through(&self, origin: &str) -> u64 {
        self.purged.get(origin).copied().unwrap_or(0)
    }
    fn holds(&self, kind: &str, id: &str) -> bool {
        self.held.contains_key(&(kind.to_string(), id.to_string()))
    }
    fn origin_live(&self, origin: &str) -> Vec<(String, String, u64)> {
        self.held
            .values()
            .filter(|r| r.origin == origin && !r.deleted)
            .map(|r| (r.kind.clone(), r.id.clone(), r.seq))
            .collect()
    }
    fn still_sendable(&self, origin: &str, kind: &str, id: &str, seq: u64, policy: &ExportPolicy) -> bool {
        self.held
            .get(&(kind.to_string(), id.to_string()))
            .is_some_and(|r| r.origin == origin && r.seq == seq && !r.deleted && policy.allows(r, &[]))
    }
    fn knows_origin(&self, origin: &str) -> bool {
        origin.starts_with('c')
    }
}

impl Replica1 {
    /// Executes the storage commands among `cmds` (as the runtime would).
    fn exec(&mut self, cmds: &[Command]) {
        for c in cmds {
            match c {
                Command::Apply {
                    records,
                    advance,
                    origin,
                    ..
                } => {
                    for r in records {
                        self.held.insert((r.kind.clone(), r.id.clone()), r.clone());
                    }
                    if let Some((from, through)) = advance {
                        self.marks.advance(origin, *from, *through);
                    }
                }
                Command::Forget {
                    drops,
                    origin,
                    purged_through,
                    ..
                } => {
                    for (k, i, _) in drops {
                        self.held.remove(&(k.clone(), i.clone()));
                    }
                    let p = self.purged.entry(origin.clone()).or_insert(0);
                    *p = (*p).max(*purged_through);
                }
                Command::RaiseMark { origin, through } => {
                    self.marks.raise(origin, *through);
                }
                _ => {}
            }
        }
    }
}

fn page(records: Vec<Record>, covered: u64, more: bool) -> PullPage<Record> {
    PullPage {
        records,
        covered_through: covered,
        more,
        purged_through: 0,
        policy: Some(PolicyNames::default()),
        held_above: vec![],
        held_above_more: false,
    }
}

fn sent_call(cmds: &[Command]) -> Option<(u64, u64, u64)> {
    cmds.iter().find_map(|c| match c {
        Command::SendPull {
            call,
            request,
            timeout_ms,
            ..
        } => Some((*call, request.after, *timeout_ms)),
        _ => None,
    })
}

fn done(cmds: &[Command]) -> Option<PullEnd> {
    cmds.iter().find_map(|c| match c {
        Command::PullDone { end, .. } => Some(*end),
        _ => None,
    })
}

/// Answers the page in flight with `p`, applies it, and returns every
/// command of that step.
fn answer(part: &mut Pulls, rep: &mut Replica1, call: u64, p: PullPage<Record>) -> Vec<Command> {
    let mut out = Vec::new();
    part.on_page(0, "c2", call, p, rep, &mut out);
    rep.exec(&out);
    let apply_call = out.iter().find_map(|c| match c {
        Command::Apply { call, .. } => Some(*call),
        _ => None,
    });
    if let Some(call) = apply_call {
        let mut next = Vec::new();
        part.on_applied(0, call, true, rep, &mut next);
        rep.exec(&next);
        out.extend(next);
    }
    out
}

#[test]
fn a_pull_of_three_pages_asks_from_each_covered_seq_and_advances_the_mark() {
    let mut part = Pulls::new("c1", 2);
    let mut rep = Replica1::default();
    rep.marks.advance("c3", 1, 4);
    let mut out = Vec::new();
    assert!(part.on_start_pull(0, "c2", "c3", &rep, &mut out));
    assert_eq!(
        out,
        vec![Command::SendPull {
            peer: "c2".into(),
            call: 1,
            request: PullRequest {
                origin: "c3".into(),
                after: 4,
                limit: 2
            },
            timeout_ms: PULL_PAGE_TIMEOUT_MS,
        }]
    );
    let out = answer(
        &mut part,
        &mut rep,
        1,
        page(vec![rec("c3", "a", 5), rec("c3", "b", 6)], 6, true),
    );
    assert!(
        matches!(&out[0], Command::Apply { call: 1, origin, records, origin_said: None, advance: Some((5, 6)) }
        if origin == "c3" && records.len() == 2)
    );
    assert_eq!(sent_call(&out), Some((2, 6, PULL_PAGE_TIMEOUT_MS)));
    assert_eq!(rep.mark("c3"), 6);
    let out = answer(&mut part, &mut rep, 2, page(vec![rec("c3", "c", 8)], 8, true));
    assert_eq!(sent_call(&out), Some((3, 8, PULL_PAGE_TIMEOUT_MS)));
    let out = answer(&mut part, &mut rep, 3, page(vec![rec("c3", "d", 9)], 10, false));
    assert_eq!(sent_call(&out), None);
    assert_eq!(done(&out), Some(PullEnd::Complete));
    assert_eq!(rep.mark("c3"), 10);
    assert!(part.is_idle());
    assert_eq!(part.stats().pulled_records, 4);
    assert_eq!(part.stats().pulls, 1);
}

#[test]
fn the_origin_itself_answering_speaks_for_its_own_reach() {
    let mut part = Pulls::new("c1", 1000);
    let mut rep = Replica1::default();
    let mut out = Vec::new();
    part.on_start_pull(0, "c2", "c2", &rep, &mut out);
    let out = answer(&mut part, &mut rep, 1, page(vec![], 7, false));
    assert!(matches!(
        &out[0],
        Command::Apply {
            origin_said: Some(7),
            advance: Some((1, 7)),
            ..
        }
    ));
}

#[test]
fn a_page_timeout_ends_the_pull_and_a_late_answer_changes_nothing() {
    let mut part = Pulls::new("c1", 1000);
    let mut rep = Replica1::default();
    let mut out = Vec::new();
    part.on_start_pull(0, "c2", "c3", &rep, &mut out);
    let (call, _, timeout) = sent_call(&out).expect("call");
    assert_eq!(timeout, PULL_PAGE_TIMEOUT_MS);
    let mut out = Vec::new();
    part.on_page_timeout(PULL_PAGE_TIMEOUT_MS, call, &rep, &mut out);
    assert_eq!(
        out,
        vec![Command::PullDone {
            peer: "c2".into(),
            origin: "c3".into(),
            end: PullEnd::TimedOut
        }]
    );
    assert!(part.is_idle());
    let out = answer(&mut part, &mut rep, call, page(vec![rec("c3", "a", 1)], 1, false));
    assert!(out.is_empty(), "the late answer is ignored: {out:?}");
    assert_eq!(rep.mark("c3"), 0);
    // A timer of a page already answered touches nothing.
    let mut out = Vec::new();
    part.on_start_pull(0, "c2", "c3", &rep, &mut out);
    let (call, _, _) = sent_call(&out).expect("call");
    let out = answer(&mut part, &mut rep, call, page(vec![rec("c3", "a", 1)], 1, true));
    let mut late = Vec::new();
    part.on_page_timeout(0, call, &rep, &mut late);
    assert!(late.is_empty());
    assert!(sent_call(&out).is_some(), "the pull goes on");
    // A failed call ends it too.
    let mut failed = Vec::new();
    part.on_page_failed(0, call + 1, &rep, &mut failed);
    assert_eq!(done(&failed), Some(PullEnd::Failed));
}

#[test]
fn a_catch_up_stops_at_the_page_cap_and_a_resync_at_its_own() {
    let mut part = Pulls::new("c1", 1);
    let mut rep = Replica1::default();
    let mut out = Vec::new();
    part.on_start_pull(0, "c2", "c3", &rep, &mut out);
    let mut call = sent_call(&out).expect("call").0;
    for seq in 1..=PULL_PAGES_MAX as u64 {
        let out = answer(
            &mut part,
            &mut rep,
            call,
            page(vec![rec("c3", &format!("k{seq}"), seq)], seq, true),
        );
        if seq < PULL_PAGES_MAX as u64 {
            call = sent_call(&out).expect("next page").0;
        } else {
            assert_eq!(sent_call(&out), None, "no page past the cap");
            assert_eq!(done(&out), Some(PullEnd::PageCap));
        }
    }
    assert_eq!(rep.mark("c3"), PULL_PAGES_MAX as u64, "every page taken moved the mark");
    // A resync is not cut at the catch-up cap.
    let mut part = Pulls::new("c1", 1);
    let mut rep = Replica1::default();
    let mut out = Vec::new();
    part.on_start_pull(0, "c2", "c3", &rep, &mut out);
    let mut call = sent_call(&out).expect("call").0;
    let mut pages = 0;
    loop {
        pages += 1;
        let mut p = page(vec![rec("c3", &format!("k{pages}"), pages)], pages, true);
        p.purged_through = 1;
        let out = answer(&mut part, &mut rep, call, p);
        match sent_call(&out) {
            Some((c, _, _)) => call = c,
            None => {
                assert_eq!(done(&out), Some(PullEnd::PageCap));
                break;
            }
        }
    }
    assert_eq!(pages, RESYNC_PAGES_MAX as u64);
    assert_eq!(rep.mark("c3"), 0, "an incomplete resync moves no mark");
}

#[test]
fn an_origin_purged_past_our_mark_turns_the_pull_into_a_replacing_resync() {
    let mut part = Pulls::new("c1", 1000);
    let mut rep = Replica1::default();
    rep.marks.advance("c3", 1, 5);
    // Held: x (deleted at c3 since), y (still there, re-sent), w (withheld
    // by the responder's policy: not ours to drop), z (above what it
    // covers), and one of our own.
    for r in [
        rec("c3", "x", 2),
        rec("c3", "y", 3),
        rec("c3", "z", 30),
        rec("c1", "mine", 1),
    ] {
        rep.held.insert((r.kind.clone(), r.id.clone()), r);
    }
    let mut w = rec("c3", "w", 4);
    w.kind = "secret".into();
    rep.held.insert((w.kind.clone(), w.id.clone()), w);
    let mut out = Vec::new();
    part.on_start_pull(0, "c2", "c3", &rep, &mut out);
    assert_eq!(sent_call(&out).map(|s| s.1), Some(5));
    // The answer says c2 purged deletions of c3 through 9 (> our 5).
    let mut p = page(vec![rec("c3", "v", 6)], 12, true);
    p.purged_through = 9;
    let out = answer(&mut part, &mut rep, 1, p);
    assert_eq!(
        out[0],
        Command::ResyncStarted {
            peer: "c2".into(),
            origin: "c3".into(),
            purged_through: 9,
            mark: 5
        }
    );
    assert!(
        matches!(&out[1], Command::Apply { advance: None, .. }),
        "merged, but no mark moves"
    );
    assert_eq!(sent_call(&out).map(|s| s.1), Some(0), "starts again from seq 0");
    assert_eq!(rep.mark("c3"), 5);
    let mut p = page(vec![rec("c3", "y", 3), rec("c3", "v", 6)], 12, false);
    p.purged_through = 9;
    p.policy = Some(PolicyNames {
        kinds: vec!["agent".into()],
        groups: vec![],
    });
    let mut out = Vec::new();
    part.on_page(0, "c2", 2, p, &rep, &mut out);
    assert!(matches!(&out[0], Command::Apply { advance: None, .. }));
    rep.exec(&out);
    let mut out = Vec::new();
    part.on_applied(0, 2, true, &rep, &mut out);
    assert_eq!(
        out,
        vec![Command::Forget {
            call: 2,
            origin: "c3".into(),
            drops: vec![("agent".into(), "x".into(), 2)],
            purged_through: 9,
        }]
    );
    rep.exec(&out);
    let mut out = Vec::new();
    part.on_forgot(0, 2, Some(1), &rep, &mut out);
    assert_eq!(
        out,
        vec![
            Command::RaiseMark {
                origin: "c3".into(),
                through: 12
            },
            Command::PullDone {
                peer: "c2".into(),
                origin: "c3".into(),
                end: PullEnd::Complete
            }
        ]
    );
    rep.exec(&out);
    assert_eq!(rep.mark("c3"), 12);
    assert_eq!(rep.purged_through("c3"), 9);
    assert!(rep.holds("agent", "z") && rep.holds("secret", "w") && rep.holds("agent", "mine"));
    assert!(!rep.holds("agent", "x"));
    assert_eq!(part.stats().resyncs, 1);
    assert_eq!(part.stats().forgot, 1);
    // A complete resync's claim is no unproven one, though the mark was
    // raised only after the pull ended.
    assert!(part.credible("c2", "c3", 12));
}

#[test]
fn idle_and_running_name_the_pulls_that_run() {
    let mut part = Pulls::new("c1", 1000);
    let rep = Replica1::default();
    assert!(part.is_idle() && !part.is_running("c3"));
    let mut out = Vec::new();
    part.on_start_pull(0, "c2", "c3", &rep, &mut out);
    assert!(!part.is_idle(), "a pull runs");
    assert!(part.is_running("c3") && !part.is_running("c4"));
}

#[test]
fn a_resync_whose_drops_fail_or_lack_a_policy_raises_no_mark() {
    for failing_drop in [true, false] {
        let mut part = Pulls::new("c1", 1000);
        let rep = Replica1::default();
        let mut out = Vec::new();
        part.on_start_pull(0, "c2", "c3", &rep, &mut out);
        let mut p = page(vec![], 4, false);
        p.purged_through = 3;
        if !failing_drop {
            p.policy = None;
        }
        let mut out = Vec::new();
        part.on_page(0, "c2", 1, p, &rep, &mut out);
        let mut out = Vec::new();
        part.on_applied(0, 1, true, &rep, &mut out);
        if failing_drop {
            assert!(matches!(out[0], Command::Forget { .. }));
            out.clear();
            part.on_forgot(0, 1, None, &rep, &mut out);
        }
        assert_eq!(done(&out), Some(PullEnd::ResyncUnfinished));
        assert!(!out.iter().any(|c| matches!(c, Command::RaiseMark { .. })));
        assert!(part.is_idle());
    }
}

#[test]
fn never_resyncs_our_own_origin() {
    let mut part = Pulls::new("c1", 1000);
    let rep = Replica1::default();
    let mut out = Vec::new();
    part.on_start_pull(0, "c2", "c1", &rep, &mut out);
    let mut p = page(vec![], 4, false);
    p.purged_through = 3;
    let mut out = Vec::new();
    part.on_page(0, "c2", 1, p, &rep, &mut out);
    assert!(matches!(
        out[0],
        Command::Apply {
            advance: Some((1, 4)),
            ..
        }
    ));
}

#[test]
fn digest_repairs_are_paced_per_peer_and_origin_and_start_from_zero() {
    let mut part = Pulls::new("c1", 1000);
    let mut rep = Replica1::default();
    rep.marks.advance("c3", 1, 8);
    let mut out = Vec::new();
    assert!(part.on_repair(1000, "c2", "c3", &mut out));
    assert_eq!(sent_call(&out).map(|s| s.1), Some(0), "from seq 0");
    assert!(
        !part.on_repair(1000, "c4", "c3", &mut Vec::new()),
        "one pull per origin"
    );
    // The repair brings back nothing below our purge mark for a key we do
    // not hold (its deletion may have been purged here).
    rep.purged.insert("c3".into(), 5);
    rep.held.insert(("agent".into(), "held".into()), rec("c3", "held", 2));
    let p = page(
        vec![rec("c3", "gone", 3), rec("c3", "held", 4), rec("c3", "new", 6)],
        8,
        false,
    );
    let out = answer(&mut part, &mut rep, 1, p);
    let Command::Apply { records, .. } = &out[0] else {
        panic!("{out:?}")
    };
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["held", "new"]);
    assert_eq!(done(&out), Some(PullEnd::Complete));
    // c4's turn was not spent by the refused start.
    assert!(part.on_repair(1001, "c4", "c3", &mut Vec::new()));
    part.on_page_failed(1001, 2, &rep, &mut Vec::new());
    // c2's turn was: again only after REPAIR_EVERY_MS.
    assert!(!part.on_repair(1000 + REPAIR_EVERY_MS - 1, "c2", "c3", &mut Vec::new()));
    assert!(part.on_repair(1000 + REPAIR_EVERY_MS, "c2", "c3", &mut Vec::new()));
    assert!(!part.on_repair(0, "c2", "c1", &mut Vec::new()), "never our own origin");
    assert_eq!(part.stats().repairs, 3);
}

#[test]
fn a_pull_already_running_is_not_started_twice() {
    let mut part = Pulls::new("c1", 1000);
    let rep = Replica1::default();
    let mut out = Vec::new();
    assert!(part.on_start_pull(0, "c2", "c3", &rep, &mut out));
    assert_eq!(out.len(), 1);
    let mut again = Vec::new();
    assert!(!part.on_start_pull(0, "c2", "c3", &rep, &mut again));
    assert!(!part.on_start_pull(0, "c4", "c3", &rep, &mut again));
    assert!(again.is_empty());
    assert!(part.is_running("c3"));
    assert!(
        part.on_start_pull(0, "c2", "c5", &rep, &mut again),
        "another origin may"
    );
    // An answer from a peer the call did not go to is ignored.
    let mut stray = Vec::new();
    part.on_page(0, "c4", 1, page(vec![], 9, false), &rep, &mut stray);
    assert!(stray.is_empty());
    // A page holding another origin's records ends the pull.
    let mut bad = Vec::new();
    part.on_page(0, "c2", 1, page(vec![rec("c5", "a", 1)], 9, false), &rep, &mut bad);
    assert_eq!(done(&bad), Some(PullEnd::BadAnswer));
    let mut again = Vec::new();
    assert!(
        part.on_start_pull(0, "c2", "c3", &rep, &mut again),
        "done: may start again"
    );
    let call = sent_call(&again).expect("call").0;
    let huge: Vec<Record> = (1..=PULL_PAGE_RECORDS_MAX as u64 + 1)
        .map(|s| rec("c3", "k", s))
        .collect();
    let mut bad = Vec::new();
    part.on_page(0, "c2", call, page(huge, 2000, true), &rep, &mut bad);
    assert_eq!(
        done(&bad),
        Some(PullEnd::BadAnswer),
        "a page is at most PULL_PAGE_RECORDS_MAX"
    );
}

#[test]
fn a_claim_the_mark_could_not_take_is_unproven_until_it_grows() {
    let mut part = Pulls::new("c1", 1000);
    let mut rep = Replica1::default();
    let mut out = Vec::new();
    part.on_start_pull(0, "c2", "c3", &rep, &mut out);
    let mut out = Vec::new();
    part.on_page(0, "c2", 1, page(vec![], 50, false), &rep, &mut out);
    // The runtime bounded the advance by what c3 has shown: say 20.
    rep.marks.advance("c3", 1, 20);
    let mut out = Vec::new();
    part.on_applied(0, 1, true, &rep, &mut out);
    assert_eq!(done(&out), Some(PullEnd::Complete));
    assert!(!part.credible("c2", "c3", 50));
    assert!(part.credible("c2", "c3", 51));
    assert!(part.credible("c4", "c3", 50));
}

#[test]
fn a_full_sync_is_taken_only_from_a_peer_we_asked() {
    let mut part = Pulls::new("c1", 1000);
    let rep = Replica1::default();
    assert_eq!(
        part.on_sync_message(0, "c2"),
        Err(SyncRefused::Unsolicited { peer: "c2".into() })
    );
    let mut out = Vec::new();
    assert!(part
        .on_sync_complete(0, "c2", [("c3".to_string(), 9)].into(), &rep, &mut out)
        .is_err());
    assert!(out.is_empty(), "nothing adopted");
    assert!(part.on_full_sync_requested(1000, "c2", &mut out));
    assert_eq!(out, vec![Command::AskFullSync { peer: "c2".into() }]);
    assert!(
        !part.on_full_sync_requested(1001, "c2", &mut Vec::new()),
        "asked already"
    );
    assert_eq!(part.on_sync_message(1001, "c2"), Ok(()));
    assert!(part.on_sync_message(1001, "c4").is_err(), "another peer was not asked");
    assert!(
        part.on_sync_message(1000 + FULL_SYNC_WINDOW_MS + 1, "c2").is_err(),
        "too late"
    );
    let mut out = Vec::new();
    let marks = [
        ("c3".to_string(), 9),
        ("c1".to_string(), 99),
        ("x9".to_string(), 4),
        ("c2".to_string(), 7),
    ];
    part.on_sync_complete(2000, "c2", marks.into(), &rep, &mut out)
        .expect("asked");
    assert_eq!(
        out,
        vec![Command::AdoptMarks {
            peer: "c2".into(),
            own: Some(7),
            marks: vec![("c2".into(), 7), ("c3".into(), 9)],
        }],
        "never our own mark, nor an origin we do not know"
    );
    assert!(part.full_sync_done());
    assert!(part.on_sync_message(2001, "c2").is_err(), "the request is spent");
    assert!(
        !part.on_full_sync_requested(3000, "c4", &mut Vec::new()),
        "done: no more asking"
    );
    // A refused request is spent at once.
    let mut part = Pulls::new("c1", 1000);
    part.on_full_sync_requested(0, "c2", &mut Vec::new());
    part.on_full_sync_answer(1, "c2", false);
    assert!(part.on_sync_message(2, "c2").is_err());
}

#[test]
fn one_full_sync_push_per_peer_at_a_time() {
    let mut part = Pulls::new("c1", 1000);
    let mut out = Vec::new();
    assert!(part.on_full_sync_asked(0, "c2", &mut out));
    assert_eq!(
        out,
        vec![Command::PushFullSync {
            peer: "c2".into(),
            page_records: FULL_SYNC_PAGE_RECORDS,
            message_bytes_max: PULL_PAGE_BYTES_MAX
        }]
    );
    assert!(!part.on_full_sync_asked(0, "c2", &mut Vec::new()));
    assert!(part.on_full_sync_asked(0, "c4", &mut Vec::new()));
    part.on_full_sync_pushed(1, "c2");
    assert!(part.on_full_sync_asked(2, "c2", &mut Vec::new()));
}

#[test]
fn a_served_page_stops_at_our_mark_and_the_byte_budget() {
    let all = ExportPolicy::default();
    let held: Vec<Record> = [3, 4, 7, 9].iter().map(|s| rec("c3", &format!("k{s}"), *s)).collect();
    let read = |after: u64, n: usize| -> Result<Vec<Record>, ()> {
        Ok(held.iter().filter(|r| r.seq > after).take(n).cloned().collect())
    };
    // Held 9 arrived early: our mark of c3 is 7. The page names it.
    let p = serve_page(2, 4, read, 7, |r| Some((r.seq, 10)), 1, &all).expect("page");
    assert_eq!(p.records, vec![3, 4, 7]);
    assert!(!p.more);
    assert_eq!(p.covered_through, 7);
    assert_eq!(p.purged_through, 1);
    assert_eq!(p.held_above.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), ["k9"]);
    assert!(!p.held_above_more);
    // Withheld records are covered, not sent; a full page covers to its last.
    let p = serve_page(2, 4, read, 20, |r| (r.seq != 4).then_some((r.seq, 10)), 0, &all).expect("page");
    assert_eq!(p.records, vec![3, 7, 9]);
    assert!(p.more);
    assert_eq!(p.covered_through, 9);
    assert!(p.held_above.is_empty(), "nothing above the mark");
    // The byte budget ends a page early, covering only what it carried.
    let big = PULL_PAGE_BYTES_MAX / 2;
    let p = serve_page(2, 1000, read, 20, |r| Some((r.seq, big)), 0, &all).expect("page");
    assert_eq!(p.records, vec![3, 4]);
    assert!(p.more);
    assert_eq!(p.covered_through, 4);
    assert_eq!(page_limit(0), 1);
    assert_eq!(page_limit(5000), PULL_PAGE_RECORDS_MAX);
    // A failed read fails the page.
    assert_eq!(
        serve_page(2, 4, |_, _| Err::<Vec<Record>, _>(7), 7, |r| Some((r.seq, 10)), 1, &all),
        Err(7)
    );
}

#[test]
fn a_page_names_only_what_the_puller_may_see_and_at_most_its_cap_above_the_mark() {
    let all = ExportPolicy::default();
    let mut held = vec![rec("c3", "k1", 1)];
    held.extend((0..=HELD_ABOVE_NAMES_MAX as u64).map(|i| rec("c3", &format!("a{i}"), 10 + i)));
    let read = |after: u64, n: usize| -> Result<Vec<Record>, ()> {
        Ok(held.iter().filter(|r| r.seq > after).take(n).cloned().collect())
    };
    // Our mark is 1; a10 (seq 10) is withheld from this puller.
    let p = serve_page(0, 5, read, 1, |r| (r.id != "a0").then_some((r.seq, 10)), 0, &all).expect("page");
    assert_eq!(p.records, vec![1]);
    assert!(!p.more);
    assert_eq!(
        p.held_above.len(),
        HELD_ABOVE_NAMES_MAX - 1,
        "a0 withheld, a1000 past the cap"
    );
    assert!(!p.held_above.iter().any(|k| k.id == "a0"));
    assert!(p.held_above_more, "more above than named");
    // A resync ending on such a page drops nothing.
    let mut part = Pulls::new("c1", 1000);
    let mut rep = Replica1::default();
    rep.held.insert(("agent".into(), "x".into()), rec("c3", "x", 1));
    let mut out = Vec::new();
    part.on_start_pull(0, "c2", "c3", &rep, &mut out);
    let mut q = page(vec![], 1, false);
    q.purged_through = 1;
    q.held_above_more = true;
    let out = answer(&mut part, &mut rep, 1, q);
    assert_eq!(done(&out), Some(PullEnd::ResyncUnfinished));
    assert!(!out
        .iter()
        .any(|c| matches!(c, Command::Forget { .. } | Command::RaiseMark { .. })));
    assert!(rep.holds("agent", "x"));
    // A page naming more than the cap is a bad answer.
    let mut out = Vec::new();
    part.on_start_pull(0, "c2", "c3", &rep, &mut out);
    let call = sent_call(&out).expect("call").0;
    let mut q = page(vec![], 1, false);
    q.held_above = (0..=HELD_ABOVE_NAMES_MAX)
        .map(|i| crate::wire::pull::KeyName {
            kind: "agent".into(),
            id: format!("n{i}"),
        })
        .collect();
    let mut out = Vec::new();
    part.on_page(0, "c2", call, q.clone(), &rep, &mut out);
    assert_eq!(done(&out), Some(PullEnd::BadAnswer));
    // At the caps exactly, records and names are taken.
    let mut out = Vec::new();
    part.on_start_pull(0, "c2", "c3", &rep, &mut out);
    let call = sent_call(&out).expect("call").0;
    q.held_above.pop();
    q.records = (1..=PULL_PAGE_RECORDS_MAX as u64)
        .map(|s| rec("c3", &format!("r{s}"), s))
        .collect();
    let mut out = Vec::new();
    part.on_page(0, "c2", call, q, &rep, &mut out);
    assert_eq!(done(&out), None, "{:?}", done(&out));
    assert!(matches!(&out[0], Command::Apply { records, .. } if records.len() == PULL_PAGE_RECORDS_MAX));
}

#[test]
fn a_resync_keeps_a_record_the_responder_holds_only_above_its_mark() {
    // c1 holds c3's y at seq 3 and its mark of c3 is 5. c2 purged deletions
    // of c3 through 9, so the pull turns into a resync. c2's mark of c3 is
    // 8, but it holds y only in a newer version, seq 10, that arrived early
    // (above its mark): its page stops at 8 and cannot carry y. y was never
    // deleted, so c1 must not drop it (sim seeds 7 and 123 with the judge
    // timer armed).
    let all = ExportPolicy::default();
    let mut part = Pulls::new("c1", 1000);
    let mut rep = Replica1::default();
    rep.marks.advance("c3", 1, 5);
    for r in [rec("c3", "x", 2), rec("c3", "y", 3)] {
        rep.held.insert((r.kind.clone(), r.id.clone()), r);
    }
    let mut out = Vec::new();
    part.on_start_pull(0, "c2", "c3", &rep, &mut out);
    let responder = |after: u64| {
        // c2 holds v@6 and y@10 of c3 (x was deleted and purged there).
        let held = [rec("c3", "v", 6), rec("c3", "y", 10)];
        let read = |a: u64, n: usize| -> Result<Vec<Record>, ()> {
            Ok(held.iter().filter(|r| r.seq > a).take(n).cloned().collect())
        };
        serve_page(after, 1000, read, 8, |r| Some((r.clone(), 10)), 9, &all).expect("page")
    };
    let out = answer(&mut part, &mut rep, 1, responder(5));
    assert!(matches!(out[0], Command::ResyncStarted { .. }));
    assert_eq!(sent_call(&out).map(|s| s.1), Some(0), "starts again from seq 0");
    let out = answer(&mut part, &mut rep, 2, responder(0));
    let drops = out.iter().find_map(|c| match c {
        Command::Forget { drops, .. } => Some(drops.clone()),
        _ => None,
    });
    assert_eq!(
        drops,
        Some(vec![("agent".to_string(), "x".to_string(), 2)]),
        "only x, deleted at c2, is dropped; y is held there above its mark"
    );
    assert!(rep.holds("agent", "y"));
}

#[test]
fn a_full_table_of_repair_turns_forgets_only_the_turns_already_due() {
    // Mutation testing found the table's bound unchecked (eight mutants of
    // its eviction survived). Budget: 65,536 map entries, well under 1 s.
    let rep = Replica1::default();
    let mut part = Pulls::new("c1", 1000);
    let base = 10 * REPAIR_EVERY_MS;
    for i in 0..REPAIR_TURNS_MAX - 1 {
        part.last_repair_ms.insert(("p".into(), format!("o{i}")), base);
    }
    // x's turn is taken just before the others fall due; y's fills the
    // table once they have.
    let mut out = Vec::new();
    assert!(part.on_repair(base + REPAIR_EVERY_MS - 1, "c2", "x", &mut out));
    assert_eq!(part.last_repair_ms.len(), REPAIR_TURNS_MAX);
    let call = sent_call(&out).expect("x's page call").0;
    part.on_page_failed(0, call, &rep, &mut Vec::new());
    assert!(part.on_repair(base + REPAIR_EVERY_MS, "c2", "y", &mut Vec::new()));
    assert_eq!(part.last_repair_ms.len(), 2, "the due turns went, x's and y's stay");
    assert!(
        !part.on_repair(base + REPAIR_EVERY_MS, "c2", "x", &mut Vec::new()),
        "x's turn is still remembered"
    );
}
