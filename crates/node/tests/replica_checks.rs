//! Versions from other centers are checked against their kind exactly as the
//! origin's client input is (issue 11 item 5): a record its origin signed
//! with a body that is not an agent is refused, with a reason per record,
//! counted in `regmesh_replica_refused_total`, and never refuses the good
//! records beside it. Budget: well under a second.

mod common;

use regmesh_core::codec::canonical_json;
use regmesh_core::sign::key_hex;
use regmesh_core::{Hlc, Identity, Kind, Record, Visibility};
use regmesh_front_agent::AgentKind;
use regmesh_node::center::{Center, RefusalReason, WriteError};
use regmesh_node::config::CenterKey;
use regmesh_node::Config;

/// A version of `c1`'s, signed with `key`.
fn signed(key: &Identity, seq: u64, id: &str, body: &str, deleted: bool) -> Record {
    let mut r = Record {
        kind: "agent".into(),
        id: id.into(),
        origin: "c1".into(),
        version: Hlc::new(1_700_000_000_000 + seq, 0),
        seq,
        expires_at_ms: None,
        visibility: Visibility::Public,
        deleted,
        body: body.into(),
        sig: [0; 64],
    };
    key.sign_record(&mut r);
    r
}

fn good_body(addr: &str) -> String {
    canonical_json(&AgentKind.prepare("x", common::agent(addr)).unwrap().body)
}

#[tokio::test]
async fn records_that_their_kind_refuses_are_refused_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let c1 = Identity::from_seed([1; 32]);
    let mut cfg = Config::for_test("c2", dir.path());
    cfg.centers.push(CenterKey {
        id: "c1".into(),
        public_key: key_hex(&c1.verifying_key()),
    });
    let c2 = Center::open_with(&cfg, regmesh_front_agent::kinds(), None).unwrap();

    // A version a day ahead of our clock (the HLC drift bound is minutes).
    let mut ahead = signed(&c1, 10, "ahead", &good_body("2001:db8::10"), false);
    ahead.version = Hlc::new(regmesh_node::center::now_ms() + 24 * 3600 * 1000, 0);
    c1.sign_record(&mut ahead);
    let mut note = signed(&c1, 7, "n1", "{}", false);
    note.kind = "note".into();
    c1.sign_record(&mut note);
    let batch = vec![
        signed(&c1, 1, "good1", &good_body("2001:db8::1"), false),
        signed(&c1, 2, "junk", "this is not an agent", false),
        signed(
            &c1,
            3,
            "linklocal",
            &good_body("2001:db8::3").replace("2001:db8::3", "fe80::1"),
            false,
        ),
        signed(&c1, 4, "raw", r#"{"addresses":["2001:db8::4"]}"#, false),
        signed(&c1, 5, "tomb", r#"{"addresses":["2001:db8::5"]}"#, true),
        signed(&c1, 6, "good2", &good_body("2001:db8::6"), false),
        note,
        ahead,
    ];
    let head = c2.head();
    let e = c2.apply_remote(batch).await.unwrap_err();
    let WriteError::Refused { applied, refused } = &e else {
        panic!("expected Refused, got {e}");
    };
    assert_eq!(*applied, 2, "the good records beside the bad ones are applied: {e}");
    let why: Vec<(&str, &str)> = refused.iter().map(|r| (r.id.as_str(), r.reason.label())).collect();
    assert_eq!(
        why,
        vec![
            ("junk", "invalid_body"),
            ("linklocal", "invalid_body"),
            ("raw", "not_normalized"),
            ("tomb", "invalid_body"),
            ("n1", "unknown_kind"),
            ("ahead", "clock_ahead"),
        ]
    );
    assert!(matches!(refused[0].reason, RefusalReason::InvalidBody { .. }));
    assert!(e.to_string().contains("agent/junk from c1 (seq 2)"), "{e}");
    assert_eq!(c2.head(), head + 2, "only the two good versions were written");
    for id in ["junk", "linklocal", "raw", "tomb", "ahead"] {
        assert!(c2.get_held("agent", id).unwrap().is_none(), "{id} was applied");
    }
    assert!(c2.get("agent", "good1").unwrap().is_some());
    assert!(c2.get("agent", "good2").unwrap().is_some());
    // Nothing of c1's refused records is in what this center serves a peer.
    let served: Vec<String> = c2
        .origin_after("c1", 0, 100)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(served, vec!["good1", "good2"]);

    let text = c2.metrics().render(&[]);
    assert!(
        text.contains("regmesh_replica_refused_total{reason=\"invalid_body\"} 3"),
        "{text}"
    );
    assert!(text.contains("regmesh_replica_refused_total{reason=\"not_normalized\"} 1"));
    assert!(text.contains("regmesh_replica_refused_total{reason=\"unknown_kind\"} 1"));

    // A batch with nothing refused applies as before.
    let ok = c2
        .apply_remote(vec![signed(&c1, 8, "good3", &good_body("2001:db8::8"), false)])
        .await
        .unwrap();
    assert_eq!(ok, 1);
    // A tombstone as its origin writes it passes.
    assert_eq!(
        c2.apply_remote(vec![signed(&c1, 9, "good3", "{}", true)])
            .await
            .unwrap(),
        1
    );
    c2.close();
}
