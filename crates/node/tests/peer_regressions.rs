//! Inputs the random endpoint tests found, kept as regressions, one test each
//! (see `random/mod.rs` for the rig).

mod random;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use random::*;
use regmesh_core::codec::encode;
use regmesh_core::{Hlc, Record, Visibility};
use serde_json::{json, Value};
use std::time::Duration;

/// A record its origin signed whose body is not an agent is applied and
/// then served as one (issue 11, item 5). Kept here as the fuzz regression.
#[test]
fn a_signed_record_that_is_not_an_agent_is_refused() {
    let rt = runtime("signed-garbage");
    let rig = rt.block_on(rig());
    let mut bad = Record {
        kind: "agent".into(),
        id: "not-an-agent".into(),
        origin: "c2".into(),
        version: Hlc::new(now_ms(), 0),
        seq: 7,
        expires_at_ms: None,
        visibility: Visibility::Public,
        deleted: false,
        body: "this is not an agent".into(),
        sig: [0; 64],
    };
    rig.keys.c2.sign_record(&mut bad);
    let body = serde_json::to_vec(&json!({"records": [B64.encode(encode(&bad))]})).unwrap();
    let req = Request::post("/commit")
        .header("authorization", rig.token("c2", "c1", 0))
        .header("drip-node-id", "c2")
        .header("drip-node-counter", "7")
        .body(Body::from(body))
        .unwrap();
    let a = rt.block_on(call(&rig.peer, req));
    let held = rig.c1.center.get("agent", "not-an-agent").unwrap();
    rt.block_on(rig.shutdown());
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    assert!(held.is_none());
}

/// The peer router has no method-not-allowed fallback: `GET /commit`
/// answers 405 with an empty body, where every other refusal is a JSON
/// error (the client API router has one).
#[test]
fn peer_wrong_method_gets_a_json_error() {
    let rt = runtime("wrong-method");
    let rig = rt.block_on(rig());
    let req = Request::get("/commit")
        .header("authorization", rig.token("c2", "c1", 0))
        .header("drip-node-id", "c2")
        .body(Body::empty())
        .unwrap();
    let a = rt.block_on(call(&rig.peer, req));
    rt.block_on(rig.shutdown());
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    let v: Value = serde_json::from_slice(&a.body).expect("a JSON error body");
    assert!(v.pointer("/error/code").is_some());
}

/// `DRiP-Node-Counter: 18446744073709551615` on `/voting` (or `/commit`):
/// `CounterWindow::observe` computes `counter + 1 - WINDOW` and overflows
/// (crates/proto/src/dedup.rs:136, also `mark` and `compact`). In a debug
/// build the task panics holding the vote-window lock, which poisons it:
/// every later vote at this center panics too (mesh.rs:1261 "vote windows
/// lock: PoisonError"), and on `/commit` the flood windows (mesh.rs:690).
/// In release it wraps silently. The same counter also arrives without any
/// odd header: an origin-signed record with seq `u64::MAX` makes that
/// origin's next flood carry it (the random test found it that way, and the
/// poisoned locks then failed at mesh.rs:337, 370, 375 and 690).
#[test]
fn counter_at_the_top_of_u64_is_refused() {
    let mut w = regmesh_proto::dedup::CounterWindow::default();
    let _ = w.observe(u64::MAX, false);
    let mut w = regmesh_proto::dedup::CounterWindow::default();
    let _ = w.observe(u64::MAX, true);
    let _ = w.observe(u64::MAX - 1, false);

    let rt = runtime("top-counter");
    let rig = rt.block_on(rig());
    let vote = |counter: &str, id: &str| {
        Request::post("/voting")
            .header("authorization", rig.token("c2", "c1", 0))
            .header("drip-node-id", "c2")
            .header("drip-node-counter", counter)
            .body(Body::from(
                json!({"kind": "agent", "id": id, "deadline_ms": now_ms() + 500}).to_string(),
            ))
            .unwrap()
    };
    let a = rt.block_on(call(&rig.peer, vote("18446744073709551615", "v1")));
    let b = rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        call(&rig.peer, vote("5", "v2")).await
    });
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(700)).await });
    rt.block_on(rig.shutdown());
    assert!(a.status.is_client_error() || a.status.is_success());
    assert!(b.status.is_success());
    assert_eq!(panics_on("top-counter"), 0, "the vote task panicked");
}

/// A sync message that ends with `{"watermarks": {"c2": 18446744073709551615}}`
/// is accepted (issue 11, item 4) and sets c1's watermark for c2 to
/// `u64::MAX`. The next flood from c2 that carries `RegMesh-Seq-From` makes
/// `Marks::advance` compute `*w + 1` and overflow
/// (crates/proto/src/sync.rs:35): the handler panics holding the marks
/// lock, which poisons it for every later call.
#[test]
fn watermark_at_the_top_of_u64_does_not_panic() {
    let rt = runtime("top-watermark");
    let rig = rt.block_on(rig());
    let sync = Request::post("/commit")
        .header("authorization", rig.token("c2", "c1", 0))
        .header("drip-node-id", "c2")
        .header("drip-node-counter", "1")
        .header("drip-transaction-type", "sync")
        .header("drip-sync-complete", "true")
        .body(Body::from(
            json!({"records": [], "watermarks": {"c2": u64::MAX}}).to_string(),
        ))
        .unwrap();
    let a = rt.block_on(call(&rig.peer, sync));
    let flood = RecSpec {
        origin: "c2",
        signer: "c2",
        kind: "agent",
        id: "w1".into(),
        wall_ms: None,
        seq: 5,
        deleted: false,
        body: json!({"addresses": ["2001:db8::1"], "capabilities": [], "endpoints": [], "status": "online"}),
        visibility: Visibility::Public,
        expires_at_ms: None,
        damage: Vec::new(),
    };
    let body = json!({"records": [make_record(&rig.keys, &flood)]}).to_string();
    let req = Request::post("/commit")
        .header("authorization", rig.token("c2", "c1", 0))
        .header("drip-node-id", "c2")
        .header("drip-node-counter", "5")
        .header("regmesh-seq-from", "1")
        .body(Body::from(body))
        .unwrap();
    let router = rig.peer.clone();
    let b = rt.block_on(async { tokio::spawn(async move { call(&router, req).await }).await });
    rt.block_on(rig.shutdown());
    assert!(a.status.is_success() || a.status.is_client_error());
    let b = b.expect("the flood handler panicked");
    assert_ne!(b.status, StatusCode::INTERNAL_SERVER_ERROR);
}

/// A flood whose second record's version is far ahead of the receiver's
/// clock: that record is refused alone (PROTOCOL.md, "Flooding"), the
/// message gets 400 `refused` naming it, and nothing of the refused record
/// is stored. The record that passed is merged (merging is idempotent), but
/// the message is not marked seen, so its counter stays open.
#[test]
fn a_record_refused_in_a_batch_is_refused_alone() {
    let rt = runtime("partial-batch");
    let rig = rt.block_on(rig());
    let spec = |id: &str, wall_ms: Option<u64>, seq: u64| RecSpec {
        origin: "c2",
        signer: "c2",
        kind: "agent",
        id: id.into(),
        wall_ms,
        seq,
        deleted: false,
        body: json!({"addresses": ["2001:db8::1"], "capabilities": [], "endpoints": [], "status": "online"}),
        visibility: Visibility::Public,
        expires_at_ms: None,
        damage: Vec::new(),
    };
    let body = json!({"records": [
        make_record(&rig.keys, &spec("p1", None, 11)),
        make_record(&rig.keys, &spec("p2", Some(u64::MAX / 4), 12)),
    ]})
    .to_string();
    let req = Request::post("/commit")
        .header("authorization", rig.token("c2", "c1", 0))
        .header("drip-node-id", "c2")
        .header("drip-node-counter", "12")
        .body(Body::from(body))
        .unwrap();
    let a = rt.block_on(call(&rig.peer, req));
    let p1 = rig.c1.center.get("agent", "p1").unwrap();
    let p2 = rig.c1.center.get("agent", "p2").unwrap();
    rt.block_on(rig.shutdown());
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    let v: Value = serde_json::from_slice(&a.body).expect("a JSON error body");
    assert_eq!(v.pointer("/error/code").and_then(Value::as_str), Some("refused"), "{v}");
    assert!(v.to_string().contains("p2"), "the refusal names the record: {v}");
    assert!(p2.is_none(), "the refused record was stored");
    assert!(p1.is_some(), "the record that passed was not merged");
}
