//! The front seam, from outside the node: a second, test-only front (`note`)
//! is added through `NodeBuilder` alone, with its own kind (whose lease lives
//! in a body field not called `lease_s`), routes behind the node's auth, a
//! peer message type answered at another center, a task that follows the
//! change feed, and metrics of its own. Nothing in `regmesh-node` names it.
//!
//! Budget: two single-center starts and one two-center mesh on loopback,
//! under 10 s in all.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use hyper::Method;
use regmesh_core::{Creation, Identity, Kind, Lease, Prepared, ValidationError, Visibility};
use regmesh_node::center::{EventType, Outcome};
use regmesh_node::client::Client;
use regmesh_node::config::{CenterKey, PeerConfig, PeerListenConfig, Scope, TokenConfig};
use regmesh_node::error::ApiError;
use regmesh_node::front::{Front, FrontError, Section, Task};
use regmesh_node::handle::Metric;
use regmesh_node::messages::{PeerAnswer, PeerMessage, PeerVerb};
use regmesh_node::{Config, NodeBuilder, NodeHandle, Running, StartError};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Notes: `{"text", "ttl_s"?}`; a heartbeat renews `ttl_s` seconds.
struct NoteKind;

impl Kind for NoteKind {
    fn name(&self) -> &'static str {
        "note"
    }
    fn prepare(&self, _id: &str, input: Value) -> Result<Prepared, ValidationError> {
        let text = input
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| ValidationError::new("text", "required"))?;
        let ttl = input.get("ttl_s").and_then(Value::as_u64);
        let mut body = json!({"text": text});
        if let Some(t) = ttl {
            body["ttl_s"] = json!(t);
        }
        Ok(Prepared {
            body,
            lease_s: ttl,
            visibility: Visibility::Public,
        })
    }
    fn index_fields(&self) -> &'static [&'static str] {
        &[]
    }
    fn index_terms(&self, _: &Value) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    fn on_lease_expired(&self, _: &mut Value) {}
    fn on_heartbeat(&self, _: &mut Value) {}
    fn is_expired_state(&self, _: &Value) -> bool {
        false
    }
    fn creation(&self) -> Creation {
        Creation::Free
    }
    fn lease(&self) -> Lease {
        Lease::BodyField("ttl_s")
    }
}

/// The test front. Its section has one key, `greeting`.
#[derive(Default)]
struct NoteFront {
    greeting: String,
}

impl Front for NoteFront {
    fn name(&self) -> &'static str {
        "note"
    }
    fn configure(&mut self, section: &Section) -> Result<(), FrontError> {
        for (k, v) in &section.table {
            match (k.as_str(), v.as_str()) {
                ("greeting", Some(g)) => self.greeting = g.to_string(),
                _ => return Err(FrontError::config("note", format!("unknown or bad key {k:?}"))),
            }
        }
        Ok(())
    }
    fn kinds(&self) -> Vec<Arc<dyn Kind>> {
        vec![Arc::new(NoteKind)]
    }
    fn peer_messages(&self, node: &NodeHandle) -> Vec<PeerMessage> {
        let pings = node
            .counter("regmesh_note_pings_total", "NOTIFY note.ping received.", &[])
            .unwrap();
        let greeting = self.greeting.clone();
        vec![PeerMessage::new(
            PeerVerb::Notify,
            "note.ping",
            move |from: String, msg: Value| {
                let (pings, greeting) = (pings.clone(), greeting.clone());
                async move {
                    match msg.get("id").and_then(Value::as_str) {
                        Some(id) => {
                            pings.add(1);
                            PeerAnswer::with_data(json!({"from": from, "id": id, "greeting": greeting}))
                        }
                        None => PeerAnswer::rejected("note.ping needs an id"),
                    }
                }
            },
        )]
    }
    fn routes(&self, node: &NodeHandle) -> Router {
        Router::new()
            .route("/v1/notes/{id}", put(put_note).get(get_note))
            .route("/v1/notes/{id}/heartbeat", post(beat_note))
            .route("/v1/notes/{id}/steal", post(steal))
            .route("/v1/notes/{id}/tell/{peer}/{typ}", post(tell))
            .route("/v1/note-peers", get(peers))
            .with_state(node.clone())
    }
    fn tasks(&self, node: &NodeHandle) -> Result<Vec<Task>, FrontError> {
        let seen: Metric = node
            .gauge("regmesh_note_seen", "Note puts seen on the change feed.", &[])
            .unwrap();
        let mut sub = node.subscribe();
        Ok(vec![Box::pin(async move {
            while let Ok(Some(ev)) = sub.next().await {
                if ev.record.kind == "note" && ev.typ == EventType::Put {
                    seen.add(1);
                }
            }
        })])
    }
}

async fn put_note(
    State(node): State<NodeHandle>,
    Path(id): Path<String>,
    Json(v): Json<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let p = NoteKind
        .prepare(&id, v)
        .map_err(|e| ApiError::bad("invalid", e.to_string()))?;
    let (status, r) = match node.put("note", &id, p, None).await? {
        Outcome::Created(r) => (StatusCode::CREATED, r),
        Outcome::Replaced(r) => (StatusCode::OK, r),
        other => panic!("{other:?}"),
    };
    Ok((status, Json(regmesh_core::kind::view(&r, false))))
}

async fn get_note(State(node): State<NodeHandle>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let r = node.get("note", &id)?.ok_or_else(|| ApiError::not_found("no note"))?;
    Ok(Json(regmesh_core::kind::view(&r, node.is_stale(&r))))
}

async fn beat_note(State(node): State<NodeHandle>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let r = node.heartbeat("note", &id).await?;
    Ok(Json(regmesh_core::kind::view(&r, false)))
}

/// Tries to delete an agent: the note front does not own that kind.
async fn steal(State(node): State<NodeHandle>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    node.delete("agent", &id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn tell(
    State(node): State<NodeHandle>,
    Path((id, peer, typ)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let a = node
        .send(&peer, PeerVerb::Notify, &typ, json!({"id": id}))
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "peer", e.to_string()))?;
    Ok(Json(a.to_json()))
}

async fn peers(State(node): State<NodeHandle>) -> Json<Value> {
    let list: Vec<Value> = node
        .peers()
        .into_iter()
        .map(|p| json!({"id": p.id, "state": p.state.as_str()}))
        .collect();
    Json(json!(list))
}

/// A front whose routes take a path another front or the node serves.
struct Squatter(&'static str);

impl Front for Squatter {
    fn name(&self) -> &'static str {
        "squatter"
    }
    fn on_by_default(&self) -> bool {
        true
    }
    fn kinds(&self) -> Vec<Arc<dyn Kind>> {
        Vec::new()
    }
    fn routes(&self, _: &NodeHandle) -> Router {
        Router::new().route(self.0, get(|| async { "mine" }))
    }
}

/// A front whose set-up fails (say, its UDP port is taken).
struct Failing;

impl Front for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }
    fn on_by_default(&self) -> bool {
        true
    }
    fn kinds(&self) -> Vec<Arc<dyn Kind>> {
        Vec::new()
    }
    fn tasks(&self, _: &NodeHandle) -> Result<Vec<Task>, FrontError> {
        Err(FrontError::start("failing", "cannot bind [::1]:5683"))
    }
}

const TOKEN: &str = "note-test-token-0123456789";

fn test_config(id: &str, dir: &std::path::Path, fronts: &str) -> Config {
    let mut cfg = Config::for_test(id, dir);
    cfg.fronts = toml::from_str(fronts).unwrap();
    cfg.api.tokens.push(TokenConfig {
        name: "t".into(),
        token: TOKEN.into(),
        scopes: vec![Scope::Admin],
    });
    cfg
}

async fn start(cfg: Config) -> Result<Running, StartError> {
    NodeBuilder::new(cfg)
        .front(regmesh_front_agent::AgentFront::new())
        .front(NoteFront::default())
        .start()
        .await
}

fn client(r: &Running) -> Client {
    Client::new(&format!("http://{}", r.addr), Some(TOKEN.into())).unwrap()
}

#[tokio::test]
async fn a_test_front_runs_beside_the_agent_front_through_the_builder_alone() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(test_config("c1", dir.path(), "[note]\ngreeting = \"hi\""))
        .await
        .unwrap();
    let c = client(&r);

    // Its kind and routes, behind the node's auth.
    let created = c
        .request(Method::PUT, "/v1/notes/n1", Some(&json!({"text": "x", "ttl_s": 600})))
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{:?}", created.body);
    let anonymous = Client::new(&format!("http://{}", r.addr), None).unwrap();
    let refused = anonymous.request(Method::GET, "/v1/notes/n1", None).await.unwrap();
    assert_eq!(refused.status, 401);

    // The writer renews the lease from the kind's own field (`ttl_s`).
    let first = created.json()["expires_at"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let beat = c.request(Method::POST, "/v1/notes/n1/heartbeat", None).await.unwrap();
    assert_eq!(beat.status, 200, "{:?}", beat.body);
    let renewed = beat.json()["expires_at"].as_str().unwrap().to_string();
    assert!(renewed > first, "{first} -> {renewed}");

    // The agent front is unaffected, and the note front cannot touch agents.
    let a = c
        .request(
            Method::PUT,
            "/v1/agents/a1",
            Some(&json!({"addresses": ["2001:db8::1"]})),
        )
        .await
        .unwrap();
    assert_eq!(a.status, 201);
    let steal = c.request(Method::POST, "/v1/notes/a1/steal", None).await.unwrap();
    assert_eq!(steal.status, 500);
    assert!(steal.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("does not own kind"));
    assert_eq!(c.request(Method::GET, "/v1/agents/a1", None).await.unwrap().status, 200);

    // Its task follows the change feed; its metric shows on /metrics.
    let mut seen = false;
    for _ in 0..50 {
        let m = c.request(Method::GET, "/metrics", None).await.unwrap();
        let text = String::from_utf8_lossy(&m.body).to_string();
        if text.contains("# TYPE regmesh_note_seen gauge\nregmesh_note_seen 2\n") {
            assert!(text.contains("regmesh_note_pings_total 0"), "{text}");
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen, "the note task never counted the put and the heartbeat");

    // Standalone, a message goes nowhere.
    let told = c
        .request(Method::POST, "/v1/notes/n1/tell/c2/note.ping", None)
        .await
        .unwrap();
    assert_eq!(told.status, 502);
    assert!(told.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not in a mesh"));
    r.shutdown().await;
}

#[tokio::test]
async fn front_sections_and_clashes_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let err = |r: Result<Running, StartError>| r.err().expect("must not start").to_string();

    let e = err(start(test_config("c1", dir.path(), "[nope]")).await);
    assert!(
        e.contains("fronts.nope: no such front in this build (it has: agent, note)"),
        "{e}"
    );
    let e = err(start(test_config("c1", dir.path(), "[note]\ncolour = \"red\"")).await);
    assert!(e.contains("fronts.note: unknown or bad key \"colour\""), "{e}");
    let e = err(start(test_config("c1", dir.path(), "[agent]\nx = 1")).await);
    assert!(e.contains("fronts.agent: unknown key \"x\""), "{e}");

    // A front off by default runs only with its section; `enabled = false`
    // turns any front off.
    let r = start(test_config("c1", dir.path(), "[agent]\nenabled = false"))
        .await
        .unwrap();
    let c = client(&r);
    assert_eq!(c.request(Method::GET, "/v1/agents", None).await.unwrap().status, 404);
    assert_eq!(c.request(Method::GET, "/v1/notes/n1", None).await.unwrap().status, 404);
    r.shutdown().await;

    for path in ["/v1/agents", "/v1/status"] {
        let cfg = test_config("c1", &dir.path().join(&path[4..]), "");
        let e = err(NodeBuilder::new(cfg)
            .front(regmesh_front_agent::AgentFront::new())
            .front(Squatter(path))
            .start()
            .await);
        assert!(e.contains("front squatter: its routes clash"), "{path}: {e}");
    }
    let cfg = test_config("c1", &dir.path().join("failing"), "");
    let e = err(NodeBuilder::new(cfg).front(Failing).start().await);
    assert_eq!(e, "front failing: cannot bind [::1]:5683");
}

/// Two centers in one process, peered over mutual TLS on loopback.
fn mesh_configs(dir: &std::path::Path) -> Vec<Config> {
    let ca = regmesh_node::peer::pki::Ca::generate("test CA").unwrap();
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem).unwrap();
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        })
        .collect();
    let ids = ["c1", "c2"];
    let mut keys = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let identity = Identity::from_seed([i as u8 + 1; 32]);
        let pem = identity.to_pkcs8_pem().unwrap();
        std::fs::write(dir.join(format!("{id}.key")), &pem).unwrap();
        std::fs::write(dir.join(format!("{id}.crt")), ca.issue(id, &pem).unwrap()).unwrap();
        keys.push(regmesh_core::sign::key_hex(&identity.verifying_key()));
    }
    (0..2)
        .map(|i| {
            let other = 1 - i;
            let mut cfg = test_config(ids[i], &dir.join(ids[i]), "[note]\ngreeting = \"hello\"");
            cfg.peer = Some(PeerListenConfig {
                listen: format!("127.0.0.1:{}", ports[i]).parse().unwrap(),
                cert: dir.join(format!("{}.crt", ids[i])),
                key: dir.join(format!("{}.key", ids[i])),
                ca: dir.join("ca.pem"),
                beat_interval_ms: 200,
                clock_skew_s: 30,
                max_body_bytes: 1 << 20,
                vote_timeout_ms: 2000,
                claims: Default::default(),
                protocol_min: regmesh_node::config::default_protocol_min(),
                protocol_max: regmesh_node::config::default_protocol_max(),
            });
            cfg.peers = vec![PeerConfig {
                id: ids[other].into(),
                url: format!("https://127.0.0.1:{}", ports[other]),
                kinds: Vec::new(),
                groups: Vec::new(),
            }];
            cfg.centers = vec![CenterKey {
                id: ids[other].into(),
                public_key: keys[other].clone(),
            }];
            cfg
        })
        .collect()
}

#[tokio::test]
async fn a_front_message_type_is_answered_by_that_front_at_the_other_center() {
    let dir = tempfile::tempdir().unwrap();
    let cfgs = mesh_configs(dir.path());
    let c1 = start(cfgs[0].clone()).await.unwrap();
    let c2 = start(cfgs[1].clone()).await.unwrap();
    let (a, b) = (client(&c1), client(&c2));

    // The handle shows the peer and its lifecycle state.
    let mut operational = false;
    for _ in 0..100 {
        let p = a.request(Method::GET, "/v1/note-peers", None).await.unwrap().json();
        assert_eq!(p[0]["id"], "c2", "{p}");
        if p[0]["state"] == "OPERATIONAL" {
            operational = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(operational, "c2 never became operational at c1");

    // NOTIFY note.ping from c1's note front reaches c2's note front.
    let told = a
        .request(Method::POST, "/v1/notes/n7/tell/c2/note.ping", None)
        .await
        .unwrap();
    assert_eq!(told.status, 200, "{:?}", told.body);
    assert_eq!(
        told.json(),
        json!({"accepted": true, "data": {"from": "c1", "id": "n7", "greeting": "hello"}})
    );
    let m = b.request(Method::GET, "/metrics", None).await.unwrap();
    assert!(String::from_utf8_lossy(&m.body).contains("regmesh_note_pings_total 1\n"));

    // A type no front registered is rejected with a reason; built-ins stay.
    let told = a
        .request(Method::POST, "/v1/notes/n7/tell/c2/note.nobody", None)
        .await
        .unwrap();
    let v = told.json();
    assert_eq!(v["accepted"], false, "{v}");
    assert_eq!(v["reason"], "c2 does not handle NOTIFY type \"note.nobody\"");
    let told = a
        .request(Method::POST, "/v1/notes/n7/tell/c3/note.ping", None)
        .await
        .unwrap();
    assert!(told.json()["error"]["message"].as_str().unwrap().contains("not a peer"));

    c1.shutdown().await;
    c2.shutdown().await;
}
