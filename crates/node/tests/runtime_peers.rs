//! Peers added at runtime (`Mesh::add_peer`, what the dns front does for a
//! peer found from DNS): two centers with no `[[peers]]`, no `[[centers]]`
//! and separate CAs trust each other only by SPKI pin and record key,
//! become OPERATIONAL and replicate a record (its new id voted by both);
//! a wrong pin keeps a peer from being introduced; bad additions are
//! refused with a typed error and change nothing.
//!
//! Budget: three centers on loopback, beats every 200 ms, every wait
//! bounded at 15 s; under 5 s when it passes.

use hyper::Method;
use regmesh_core::Identity;
use regmesh_node::client::Client;
use regmesh_node::config::{PeerListenConfig, Scope, TokenConfig};
use regmesh_node::handle::PeerState;
use regmesh_node::peer::mesh::{AddPeerError, RUNTIME_PEERS_MAX};
use regmesh_node::peer::pins::pin_of;
use regmesh_node::{Config, NodeBuilder, Running};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const TOKEN: &str = "runtime-peers-token";

/// A center `id` with a CA of its own and no peers; its pin and key.
fn lone(dir: &Path, id: &str, seed: u8) -> (Config, [u8; 32], String) {
    let ca = regmesh_node::peer::pki::Ca::generate(&format!("{id} CA")).unwrap();
    let identity = Identity::from_seed([seed; 32]);
    let pem = identity.to_pkcs8_pem().unwrap();
    let cert = ca.issue(id, &pem).unwrap();
    std::fs::write(dir.join(format!("{id}-ca.pem")), &ca.cert_pem).unwrap();
    std::fs::write(dir.join(format!("{id}.key")), &pem).unwrap();
    std::fs::write(dir.join(format!("{id}.crt")), &cert).unwrap();
    let der = CertificateDer::pem_slice_iter(cert.as_bytes()).next().unwrap().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = Config::for_test(id, &dir.join(id));
    cfg.api.tokens.push(TokenConfig {
        name: "t".into(),
        token: TOKEN.into(),
        scopes: vec![Scope::Admin],
    });
    cfg.peer = Some(PeerListenConfig {
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        cert: dir.join(format!("{id}.crt")),
        key: dir.join(format!("{id}.key")),
        ca: dir.join(format!("{id}-ca.pem")),
        beat_interval_ms: 200,
        clock_skew_s: 30,
        max_body_bytes: 1 << 20,
        vote_timeout_ms: 2000,
        claims: Default::default(),
        protocol_min: regmesh_node::config::default_protocol_min(),
        protocol_max: regmesh_node::config::default_protocol_max(),
    });
    let key = regmesh_core::sign::key_hex(&identity.verifying_key());
    (cfg, pin_of(&der).unwrap(), key)
}

async fn start(cfg: Config) -> Running {
    NodeBuilder::new(cfg)
        .front(regmesh_front_agent::AgentFront::new())
        .start()
        .await
        .unwrap()
}

fn url(r: &Running) -> String {
    format!("https://{}", r.peer_addr.unwrap())
}

fn state(r: &Running, peer: &str) -> Option<PeerState> {
    let m = r.mesh.as_ref().unwrap();
    m.peer_states().into_iter().find(|(id, _)| id == peer).map(|(_, s)| s)
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(15);
    while !ok() {
        assert!(Instant::now() < end, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn centers_with_separate_cas_peer_by_pin_and_replicate() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg1, pin1, key1) = lone(dir.path(), "c1", 1);
    let (cfg2, pin2, key2) = lone(dir.path(), "c2", 2);
    let (cfg3, _, key3) = lone(dir.path(), "c3", 3);
    let (c1, c2, c3) = (start(cfg1).await, start(cfg2).await, start(cfg3).await);
    let (m1, m2, m3) = (
        c1.mesh.clone().unwrap(),
        c2.mesh.clone().unwrap(),
        c3.mesh.clone().unwrap(),
    );

    // Refused, nothing changed.
    let bad = |r: Result<(), AddPeerError>| match r {
        Err(AddPeerError::Invalid { .. }) => {}
        other => panic!("{other:?}"),
    };
    bad(m1.add_peer("c1", &url(&c2), pin2, &key2));
    bad(m1.add_peer("c2", "http://127.0.0.1:1", pin2, &key2));
    bad(m1.add_peer("c2", &url(&c2), pin2, "00"));
    bad(m1.add_peer("bad id!", &url(&c2), pin2, &key2));
    assert!(m1.peer_states().is_empty());
    assert!(c1.center.key_of("c2").is_none());

    m1.add_peer("c2", &url(&c2), pin2, &key2).unwrap();
    m2.add_peer("c1", &url(&c1), pin1, &key1).unwrap();
    assert_eq!(
        m1.add_peer("c2", &url(&c2), pin2, &key2),
        Err(AddPeerError::Duplicate("c2".into()))
    );
    // c3 is pinned at c1 to c2's certificate: its TLS never passes.
    m1.add_peer("c3", &url(&c3), pin2, &key3).unwrap();
    m3.add_peer("c1", &url(&c1), pin1, &key1).unwrap();

    until("c1 and c2 OPERATIONAL with each other", || {
        state(&c1, "c2") == Some(PeerState::Operational) && state(&c2, "c1") == Some(PeerState::Operational)
    })
    .await;
    assert!(
        state(&c1, "c3").unwrap() <= PeerState::Known,
        "a wrong pin is never introduced"
    );
    assert!(state(&c3, "c1").unwrap() <= PeerState::Known, "nor trusted back");

    // A new id, voted by c1 and c2 (c3 is no member at c2's side): it
    // reaches c2.
    let a = Client::new(&format!("http://{}", c1.addr), Some(TOKEN.into())).unwrap();
    let body = json!({"addresses": ["2001:db8::7"], "endpoints": [], "status": "online", "capabilities": []});
    // c1 accepts writes once it has caught up (node state active).
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let put = a
            .request(Method::PUT, "/v1/agents/did:web:example.com:rt1", Some(&body))
            .await
            .unwrap();
        if put.status.is_success() {
            break;
        }
        assert!(Instant::now() < end, "PUT at c1: {:?} {:?}", put.status, put.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let center2 = c2.center.clone();
    until("the record at c2", || {
        center2.get("agent", "did:web:example.com:rt1").ok().flatten().is_some()
    })
    .await;
    for r in [c1, c2, c3] {
        r.shutdown().await;
    }
}

#[tokio::test]
async fn runtime_peers_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cfg, pin, key) = lone(dir.path(), "c1", 1);
    cfg.peer.as_mut().unwrap().beat_interval_ms = 60_000;
    let c1 = start(cfg).await;
    let m = c1.mesh.clone().unwrap();
    for i in 0..RUNTIME_PEERS_MAX {
        m.add_peer(&format!("p{i}"), "https://127.0.0.1:1", pin, &key).unwrap();
    }
    assert_eq!(
        m.add_peer("one-more", "https://127.0.0.1:1", pin, &key),
        Err(AddPeerError::Full { max: RUNTIME_PEERS_MAX })
    );
    assert_eq!(m.peer_states().len(), RUNTIME_PEERS_MAX);
    assert!(c1.center.key_of("one-more").is_none(), "nothing changed");
    c1.shutdown().await;
}
