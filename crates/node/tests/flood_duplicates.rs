//! A flood copy whose counter the initiator's window already holds is
//! answered `duplicate` before its body is decoded (issue 16: check the
//! dedup window before decoding a duplicate). Budget: one in-process
//! center, three calls, well under a second.

mod random;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use random::*;
use regmesh_core::Visibility;
use serde_json::{json, Value};

#[test]
fn a_copy_seen_before_is_answered_duplicate_unread() {
    let rt = runtime("dup-unread");
    let rig = rt.block_on(rig());
    let spec = RecSpec {
        origin: "c2",
        signer: "c2",
        kind: "agent",
        id: "d1".into(),
        wall_ms: None,
        seq: 12,
        deleted: false,
        body: json!({"addresses": ["2001:db8::1"], "capabilities": [], "endpoints": [], "status": "online"}),
        visibility: Visibility::Public,
        expires_at_ms: None,
        damage: Vec::new(),
    };
    let flood = |body: Vec<u8>| {
        Request::post("/commit")
            .header("authorization", rig.token("c2", "c1", 0))
            .header("drip-node-id", "c2")
            .header("drip-node-counter", "12")
            .body(Body::from(body))
            .unwrap()
    };
    let good = json!({"records": [make_record(&rig.keys, &spec)]})
        .to_string()
        .into_bytes();
    let first = rt.block_on(call(&rig.peer, flood(good)));
    // The same counter again, with a body that does not even parse: the
    // window answers for it.
    let again = rt.block_on(call(&rig.peer, flood(b"{not json".to_vec())));
    // A new counter with that body is still read, and refused.
    let garbage = Request::post("/commit")
        .header("authorization", rig.token("c2", "c1", 0))
        .header("drip-node-id", "c2")
        .header("drip-node-counter", "13")
        .body(Body::from(b"{not json".to_vec()))
        .unwrap();
    let fresh = rt.block_on(call(&rig.peer, garbage));
    let held = rig.c1.center.get("agent", "d1").unwrap();
    rt.block_on(rig.shutdown());
    assert_eq!(first.status, StatusCode::OK, "{}", String::from_utf8_lossy(&first.body));
    assert!(held.is_some(), "the first copy was not applied");
    assert_eq!(again.status, StatusCode::OK, "{}", String::from_utf8_lossy(&again.body));
    let v: Value = serde_json::from_slice(&again.body).unwrap();
    assert_eq!(v["duplicate"], true, "{v}");
    assert_eq!(
        fresh.status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&fresh.body)
    );
}
