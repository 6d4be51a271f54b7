//! An `inactive` center (DRiP §5.7: none of its peers answers) refuses every
//! client write with 503 `inactive` and changes nothing; reads go on. Its
//! sweeper puts off lease expiry of its own agents until it is active again.
//! Budget: about 3 s (one lease of 1 s, one deferral of 1 s).

mod common;

use common::*;
use hyper::{Method, StatusCode};
use regmesh_core::Kind;
use regmesh_front_agent::AgentKind;
use regmesh_node::center::{Center, Outcome, WriteError, WriteOp};
use regmesh_node::Config;
use serde_json::Value;
use std::time::Duration;

/// Issue 11 item 2 (write side): the flag was set by the mesh and never read,
/// so an inactive center answered 200/201.
#[tokio::test]
async fn client_writes_are_refused_with_503_while_inactive_and_change_nothing() {
    let c = start().await;
    let r = c.put("/v1/agents/a1", agent("2001:db8::1")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    let before = (c.center().head(), c.get("/v1/agents").await.json());

    c.center().set_accepting_writes(false);
    let refused = [
        c.put("/v1/agents/a2", agent("2001:db8::2")).await,
        c.put("/v1/agents/a1", agent("2001:db8::3")).await,
        c.req(Method::DELETE, "/v1/agents/a1", None).await,
        c.req(Method::POST, "/v1/agents/a1/heartbeat", None).await,
    ];
    for r in &refused {
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.json());
        assert_eq!(r.json()["error"]["code"], "inactive", "{:?}", r.json());
        assert_eq!(r.headers["retry-after"], "1");
    }
    let after = (c.center().head(), c.get("/v1/agents").await.json());
    assert_eq!(before, after, "a refused write changed something");
    assert_eq!(c.get("/v1/agents/a1").await.status, StatusCode::OK, "reads go on");

    c.center().set_accepting_writes(true);
    let r = c.put("/v1/agents/a2", agent("2001:db8::2")).await;
    assert_eq!(r.status, StatusCode::CREATED, "active again: {:?}", r.json());
    c.stop().await;
}

fn status_of(c: &Center, id: &str) -> Value {
    let r = c.get("agent", id).unwrap().expect("held");
    r.body_value().unwrap()["status"].clone()
}

/// While inactive the sweeper neither expires nor deletes this center's own
/// agents (their heartbeats are refused too); once active it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_defers_own_expiry_while_inactive() {
    let dir = tempfile::tempdir().unwrap();
    let center = Center::open_with(&Config::for_test("c1", dir.path()), regmesh_front_agent::kinds(), None).unwrap();
    let mut body = agent("::1");
    body["lease_s"] = 1.into();
    let p = AgentKind.prepare("a1", body).unwrap();
    let put = WriteOp::Put {
        prepared: p,
        if_version: None,
        above: None,
    };
    assert!(matches!(
        center.write("agent", "a1", put).await,
        Ok(Outcome::Created(_))
    ));

    center.set_accepting_writes(false);
    let e = center.write("agent", "a1", WriteOp::Heartbeat).await.unwrap_err();
    assert!(matches!(e, WriteError::Inactive), "{e}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let head = center.head();
    assert_eq!(center.sweep_due().await, 1, "the lease is due");
    // Taking it due removed its deadline; the writer sets one again once it
    // has handled the sweep (deferred, or expired with a retention deadline).
    let t0 = std::time::Instant::now();
    while center.status()["deadlines"] != 1 {
        assert!(t0.elapsed() < Duration::from_secs(5), "the sweep was never handled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(center.head(), head, "an inactive center wrote an expiry");
    assert_eq!(status_of(&center, "a1"), "online");

    center.set_accepting_writes(true);
    let t0 = std::time::Instant::now();
    while status_of(&center, "a1") != "offline" {
        assert!(t0.elapsed() < Duration::from_secs(5), "never expired once active");
        center.sweep_due().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    center.close();
}
