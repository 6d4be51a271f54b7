//! Whole-node scenarios on simulated time: each makes one defect of the
//! hardening issue (issue 11) or one claim of the core issue (issue 10)
//! visible with real centers. Budget: each test simulates under two minutes
//! of mesh time; the file runs in well under 60 s of real time.

use hyper::Method;
use regmesh_nodesim::check::{self, Write};
use regmesh_nodesim::{World, WorldConfig};
use serde_json::{json, Value};

fn agent(addr: &str) -> Value {
    json!({
        "addresses": [addr],
        "endpoints": [{"url": "https://agents.example.com/a2a", "protocol": "a2a"}],
        "status": "online",
        "capabilities": [{"name": "translate", "tags": ["en-fr"]}]
    })
}

fn put(w: &mut World, at: &str, id: &str, addr: &str) -> Write {
    let r = w.call(at, Method::PUT, &format!("/v1/agents/{id}"), Some(agent(addr)));
    Write {
        at: at.into(),
        id: id.into(),
        addr: Some(addr.into()),
        status: r.ok().map(|r| r.status.as_u16()),
    }
}

/// Three centers become OPERATIONAL with each other, and a create at one
/// reaches the other two.
#[test]
fn a_create_reaches_every_center() {
    let mut w = World::new(WorldConfig::default());
    assert!(
        w.run_until(10_000, |w| w.peer_state("c1", "c2").as_deref() == Some("OPERATIONAL")
            && w.peer_state("c1", "c3").as_deref() == Some("OPERATIONAL")
            && w.peer_state("c2", "c3").as_deref() == Some("OPERATIONAL"))
    );
    eprintln!("operational at {} ms", w.now_ms());
    let wr = put(&mut w, "c1", "a1", "2001:db8::1");
    eprintln!("created at {} ms: {:?}", w.now_ms(), wr);
    assert_eq!(wr.status, Some(201));
    assert!(w.run_until(10_000, |w| check::converged(w).is_ok()
        && w.records("c3").unwrap().len() == 1));
    check::no_acked_write_lost(&w, &[wr]).unwrap();
}
