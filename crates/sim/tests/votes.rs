//! Votes in a simulated center end as they end in the node: a vote request
//! the node refuses (a deadline too far ahead: 400) or one an inactive
//! center takes no part in is counted by the initiator at once, as naming
//! nobody, instead of being waited for until the deadline. Two centers
//! driven by hand, well under a second.

use regmesh_core::Visibility;
use regmesh_proto::policy::ExportPolicy;
use regmesh_sim::center::{Center, ClientOp, Note, Out, Settings};

fn settings(skew_ms: i64) -> Settings {
    Settings {
        interval_ms: 1000,
        skew_ms,
        lease_ms: 30_000,
        tombstone_horizon_ms: 60_000,
        vote_timeout_ms: 1000,
        relaxed_replicas: false,
        pull_page: 100,
    }
}

fn pair(b_skew_ms: i64, b_active: bool) -> (Center, Center) {
    let all = || ExportPolicy::new(["agent".to_string()], Vec::<String>::new());
    let mut a = Center::new(0, "a".into(), settings(0), vec![(1, "b".into(), all())]);
    let mut b = Center::new(1, "b".into(), settings(b_skew_ms), vec![(0, "a".into(), all())]);
    a.bootstrap(0);
    if b_active {
        b.bootstrap(0);
    }
    (a, b)
}

/// Creates `agent/x` at `a`, hands `b` what `a` sent, and `a` what `b`
/// answered, all before the vote's deadline; returns `a`'s notes.
fn create_and_exchange(mut a: Center, mut b: Center) -> Vec<Note> {
    let key = ("agent".to_string(), "x".to_string());
    let mut out = Vec::new();
    a.client(
        0,
        ClientOp::Create {
            key,
            visibility: Visibility::Public,
        },
        &mut out,
    );
    let mut notes = Vec::new();
    let mut to_b = Vec::new();
    for o in out {
        match o {
            Out::Send { to: 1, msg } => to_b.push(msg),
            Out::Note(n) => notes.push(n),
            _ => {}
        }
    }
    assert!(!to_b.is_empty(), "a asked b");
    let mut from_b = Vec::new();
    for m in to_b {
        b.on_msg(10, 0, m, &mut from_b);
    }
    let mut out = Vec::new();
    for o in from_b {
        if let Out::Send { to: 0, msg } = o {
            a.on_msg(20, 1, msg, &mut out);
        }
    }
    notes.extend(out.into_iter().filter_map(|o| match o {
        Out::Note(n) => Some(n),
        _ => None,
    }));
    notes
}

fn decided_at_once(notes: &[Note]) -> bool {
    notes
        .iter()
        .any(|n| matches!(n, Note::Refused { .. } | Note::Granted { .. }))
}

#[test]
fn a_deadline_too_far_ahead_is_refused_and_counted_at_once() {
    // b's clock is 61 s behind: a's deadline lies more than 60 s ahead of it.
    let (a, b) = pair(-61_000, true);
    let notes = create_and_exchange(a, b);
    assert!(decided_at_once(&notes), "a waited for its deadline: {notes:?}");
}

#[test]
fn an_inactive_center_answers_naming_nobody() {
    let (a, b) = pair(0, false);
    let notes = create_and_exchange(a, b);
    assert!(decided_at_once(&notes), "a waited for its deadline: {notes:?}");
}

#[test]
fn an_active_center_in_time_lets_the_vote_be_granted() {
    let (a, b) = pair(0, true);
    let notes = create_and_exchange(a, b);
    assert!(notes.iter().any(|n| matches!(n, Note::Granted { .. })), "{notes:?}");
}
