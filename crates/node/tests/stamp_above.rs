//! A granted create is stamped above the highest version of its id a voter
//! held (`WriteOp::Put { above }`, PROTOCOL.md "Votes on new ids"): a voter
//! whose clock runs ahead may hold a deletion newer than this center's
//! clock, and the create must win the merge over it. One beyond the clock's
//! drift bound refuses the write and changes nothing. Budget: well under a
//! second.

mod common;

use regmesh_core::{Hlc, HlcClock, Kind};
use regmesh_front_agent::AgentKind;
use regmesh_node::center::{now_ms, Center, Outcome, WriteError, WriteOp};
use regmesh_node::Config;

fn put(id: &str, above: Option<Hlc>) -> WriteOp {
    WriteOp::Put {
        prepared: AgentKind.prepare(id, common::agent("::1")).unwrap(),
        if_version: None,
        above,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_is_stamped_above_a_voter_s_version() {
    let dir = tempfile::tempdir().unwrap();
    let center = Center::open_with(&Config::for_test("c1", dir.path()), regmesh_front_agent::kinds(), None).unwrap();
    // A voter's tombstone 60 s ahead of this center's clock.
    let ahead = Hlc::new(now_ms() + 60_000, 4);
    let created = match center.write("agent", "a1", put("a1", Some(ahead))).await {
        Ok(Outcome::Created(r)) => r,
        other => panic!("created: {other:?}"),
    };
    assert!(created.version > ahead, "{} must be above {ahead}", created.version);

    // Beyond the drift bound: refused, nothing written.
    let head = center.head();
    let far = Hlc::new(now_ms() + HlcClock::DRIFT_MAX_MS + 60_000, 0);
    let e = center.write("agent", "a2", put("a2", Some(far))).await.unwrap_err();
    assert!(matches!(e, WriteError::Invalid(_)), "{e}");
    assert_eq!(center.head(), head, "a refused create changed something");
    assert!(center.get("agent", "a2").unwrap().is_none());
    center.close();
}
