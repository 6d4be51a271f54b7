//! The pull route reads and writes `regmesh_proto::wire::pull` types: a
//! request whose fields have the wrong type is refused with a clear 400
//! (it was read as `after: 0` or `limit: 1000` and answered), and an answer
//! keeps its JSON shape. Budget: one center pair, a few calls, about 1 s.

mod random;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use random::*;
use serde_json::{json, Value};

fn pull(rig: &Rig, body: Value, iat_off_s: i64) -> Request<Body> {
    Request::post("/mesh/v1/pull")
        .header("authorization", rig.token("c2", "c1", iat_off_s))
        .header("drip-node-id", "c2")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

#[test]
fn a_pull_with_fields_of_the_wrong_type_is_refused() {
    let rt = runtime("pull-wire-bad");
    let rig = rt.block_on(rig());
    let mut answers = Vec::new();
    for body in [
        json!({"origin": "c1", "after": "seven"}),
        json!({"origin": "c1", "limit": -1}),
        json!({"origin": 7}),
        json!({"after": 3}),
    ] {
        let a = rt.block_on(call(&rig.peer, pull(&rig, body.clone(), 0)));
        answers.push((body, a));
    }
    rt.block_on(rig.shutdown());
    for (body, a) in answers {
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            String::from_utf8_lossy(&a.body)
        );
        let v: Value = serde_json::from_slice(&a.body).expect("a JSON error");
        assert_eq!(v.pointer("/error/code").and_then(Value::as_str), Some("invalid"), "{v}");
    }
}

#[test]
fn a_pull_answer_keeps_its_shape() {
    let rt = runtime("pull-wire-shape");
    let rig = rt.block_on(rig());
    let a = rt.block_on(call(
        &rig.peer,
        pull(&rig, json!({"origin": "c1", "after": 0, "limit": 5}), 0),
    ));
    rt.block_on(rig.shutdown());
    assert_eq!(a.status, StatusCode::OK, "{}", String::from_utf8_lossy(&a.body));
    let v: Value = serde_json::from_slice(&a.body).expect("JSON");
    assert!(v["records"].is_array(), "{v}");
    assert!(v["covered_through"].is_u64(), "{v}");
    assert!(v["more"].is_boolean(), "{v}");
    assert!(v["purged_through"].is_u64(), "{v}");
    assert!(
        v["policy"]["kinds"].is_array() && v["policy"]["groups"].is_array(),
        "{v}"
    );
}
