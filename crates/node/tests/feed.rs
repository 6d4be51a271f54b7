//! The change feed (`/v1/watch`), leases, kinds beyond `agent`, and the
//! integrity checks on stored records.

mod common;

use common::*;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use regmesh_core::{Kind, Kinds, Prepared, ValidationError, Visibility};
use regmesh_node::center::{Center, WriteOp};
use regmesh_node::Config;
use regmesh_store::{MemStore, Store, WriteBatch};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Reads SSE events from a watch stream until `n` have arrived or the
/// deadline passes.
async fn read_events(c: &TestCenter, path: &str, n: usize, deadline: Duration) -> Vec<(u64, String, Value)> {
    let mut conn = c.client.connect().await.unwrap();
    let resp = conn.stream(path).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut buf = String::new();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(deadline, async {
        while out.len() < n {
            let Some(Ok(frame)) = body.frame().await else { break };
            if let Some(d) = frame.data_ref() {
                buf.push_str(std::str::from_utf8(d).unwrap());
            }
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let (mut id, mut ev, mut data) = (0, String::new(), Value::Null);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().unwrap();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        ev = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(v).unwrap();
                    }
                }
                if !ev.is_empty() {
                    out.push((id, ev, data));
                }
            }
        }
    })
    .await;
    out
}

#[tokio::test]
async fn watch_replays_then_follows_and_resumes() {
    let c = start().await;
    c.put("/v1/agents/a1", agent("::1")).await;
    c.put("/v1/agents/a2", agent("::2")).await;
    c.req(Method::DELETE, "/v1/agents/a1", None).await;

    // Replay from the beginning.
    let evs = read_events(&c, "/v1/watch?since=0", 3, Duration::from_secs(5)).await;
    let summary: Vec<(u64, &str, &str)> = evs
        .iter()
        .map(|(n, t, d)| (*n, t.as_str(), d["id"].as_str().unwrap()))
        .collect();
    assert_eq!(summary, vec![(1, "put", "a1"), (2, "put", "a2"), (3, "delete", "a1")]);
    assert_eq!(evs[2].2["reason"], "client");
    assert_eq!(evs[0].2["record"]["addresses"], json!(["::1"]));

    // Resume from change 2; then a live change arrives on the same stream.
    let c2 = c.client.clone();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c2.request(Method::PUT, "/v1/agents/a3", Some(&agent("::3")))
            .await
            .unwrap();
    });
    let evs = read_events(&c, "/v1/watch?since=2", 2, Duration::from_secs(5)).await;
    writer.await.unwrap();
    let ids: Vec<u64> = evs.iter().map(|e| e.0).collect();
    assert_eq!(ids, vec![3, 4]);
    assert_eq!(evs[1].2["id"], "a3");
    c.stop().await;
}

#[tokio::test]
async fn watch_history_is_bounded_and_says_so() {
    let c = start_with(|cfg| cfg.store.watch_history = 3).await;
    for i in 0..6 {
        c.put(&format!("/v1/agents/a{i}"), agent("::1")).await;
    }
    let r = c.get("/v1/watch?since=0").await;
    assert_eq!(r.status, StatusCode::GONE);
    assert_eq!(r.json()["error"]["code"], "cursor_expired");
    let evs = read_events(&c, "/v1/watch?since=3", 3, Duration::from_secs(5)).await;
    assert_eq!(evs.iter().map(|e| e.0).collect::<Vec<_>>(), vec![4, 5, 6]);
    c.stop().await;
}

#[tokio::test]
async fn lease_expiry_marks_offline_then_retention_removes() {
    let c = start_with(|cfg| cfg.leases.retention_s = 1).await;
    let mut a = agent("::1");
    a["lease_s"] = json!(1);
    let v = c.put("/v1/agents/leased", a).await.json();
    assert!(v["expires_at"].is_string());
    c.put("/v1/agents/forever", agent("::2")).await;

    // Heartbeats keep it online past its first lease.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = c.req(Method::POST, "/v1/agents/leased/heartbeat", None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["status"], "online");
    }
    assert_eq!(c.get("/v1/agents/leased").await.json()["status"], "online");

    // Then it stops beating: offline after ~1 s, gone ~1 s later.
    let evs = read_events(
        &c,
        &format!("/v1/watch?since={}", c.center().head()),
        2,
        Duration::from_secs(6),
    )
    .await;
    let kinds: Vec<(&str, &str)> = evs
        .iter()
        .map(|e| (e.1.as_str(), e.2["id"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, vec![("expire", "leased"), ("delete", "leased")]);
    assert_eq!(evs[0].2["record"]["status"], "offline");
    assert_eq!(evs[1].2["reason"], "retention");
    assert_eq!(c.get("/v1/agents/leased").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        c.get("/v1/agents/forever").await.status,
        StatusCode::OK,
        "records without a lease stay"
    );
    c.stop().await;
}

#[tokio::test]
async fn with_a_renewal_extension_heartbeats_renew_here_only() {
    // Leases of 1 s, promised 60 s longer to other centers: heartbeats write
    // nothing while the replicated version covers a whole lease, and the
    // agent still goes offline on time when they stop.
    let c = start_with(|cfg| {
        cfg.leases.renewal_extension_s = 60;
        cfg.leases.retention_s = 60;
    })
    .await;
    let mut a = agent("::1");
    a["lease_s"] = json!(1);
    let v = c.put("/v1/agents/r1", a).await.json();
    let head = c.center().head();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = c.req(Method::POST, "/v1/agents/r1/heartbeat", None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["version"], v["version"], "renewed without a new version");
    }
    assert_eq!(c.center().head(), head, "no change was written");
    assert_eq!(
        c.get("/v1/agents/r1").await.json()["status"],
        "online",
        "renewed past its first lease"
    );
    let evs = read_events(&c, &format!("/v1/watch?since={head}"), 1, Duration::from_secs(5)).await;
    assert_eq!(evs[0].1, "expire");
    assert_eq!(evs[0].2["record"]["status"], "offline");
    // The offline version says when the lease really ran out, not the
    // replicated promise.
    let promised = v["expires_at"].as_str().unwrap().to_string();
    let lapsed = evs[0].2["record"]["expires_at"].as_str().unwrap().to_string();
    assert!(lapsed < promised, "lapsed {lapsed}, promised {promised}");
    c.stop().await;
}

#[tokio::test]
async fn offline_agent_comes_back_with_a_heartbeat() {
    let c = start_with(|cfg| cfg.leases.retention_s = 60).await;
    let mut a = agent("::1");
    a["lease_s"] = json!(1);
    c.put("/v1/agents/b1", a).await;
    let mut offline = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if c.get("/v1/agents/b1").await.json()["status"] == "offline" {
            offline = true;
            break;
        }
    }
    assert!(offline, "lease expiry never marked the agent offline");
    assert_eq!(c.get("/v1/agents?status=offline").await.json()["items"][0]["id"], "b1");
    let r = c.req(Method::POST, "/v1/agents/b1/heartbeat", None).await;
    assert_eq!(r.json()["status"], "online");
    assert!(c.get("/v1/agents?status=offline").await.json()["items"]
        .as_array()
        .unwrap()
        .is_empty());
    c.stop().await;
}

#[tokio::test]
async fn tombstones_are_purged_after_the_horizon() {
    let c = start_with(|cfg| cfg.leases.tombstone_horizon_s = 1).await;
    c.put("/v1/agents/t1", agent("::1")).await;
    c.req(Method::DELETE, "/v1/agents/t1", None).await;
    assert_eq!(c.get("/v1/status").await.json()["tombstones"], 1);
    let mut purged = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if c.get("/v1/status").await.json()["tombstones"] == 0 {
            purged = true;
            break;
        }
    }
    assert!(purged, "tombstone was never purged");
    c.stop().await;
}

/// A second kind, defined here: adding it touches neither the store nor the
/// center's write, read, index or lease code.
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
        let topic = input.get("topic").and_then(Value::as_str).unwrap_or("general");
        Ok(Prepared {
            body: json!({"text": text, "topic": topic}),
            lease_s: None,
            visibility: Visibility::Local,
        })
    }
    fn index_fields(&self) -> &'static [&'static str] {
        &["topic"]
    }
    fn index_terms(&self, body: &Value) -> Vec<(&'static str, String)> {
        vec![("topic", body["topic"].as_str().unwrap_or_default().to_string())]
    }
    fn on_lease_expired(&self, _: &mut Value) {}
    fn on_heartbeat(&self, _: &mut Value) {}
    fn is_expired_state(&self, _: &Value) -> bool {
        false
    }
}

fn kinds_with_note() -> Kinds {
    let mut k = regmesh_front_agent::kinds();
    k.register(Arc::new(NoteKind)).unwrap();
    k
}

#[tokio::test]
async fn a_second_kind_needs_no_store_or_center_changes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::for_test("c1", dir.path());
    let center = Center::open_with(&cfg, kinds_with_note(), None).unwrap();
    for (id, topic) in [("n1", "ops"), ("n2", "dev"), ("n3", "ops")] {
        let p = NoteKind.prepare(id, json!({"text": "hello", "topic": topic})).unwrap();
        center
            .write(
                "note",
                id,
                WriteOp::Put {
                    prepared: p,
                    if_version: None,
                    above: None,
                },
            )
            .await
            .unwrap();
    }
    // Same id in two kinds does not collide.
    let p = regmesh_front_agent::AgentKind.prepare("n1", agent("::1")).unwrap();
    center
        .write(
            "agent",
            "n1",
            WriteOp::Put {
                prepared: p,
                if_version: None,
                above: None,
            },
        )
        .await
        .unwrap();
    let (ops, _) = center.list("note", &[("topic", "ops")], None, 10).unwrap();
    assert_eq!(ops.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec!["n1", "n3"]);
    assert!(
        center.list("note", &[("capability", "x")], None, 10).is_err(),
        "agent fields are not note fields"
    );
    assert_eq!(center.get("note", "n2").unwrap().unwrap().visibility, Visibility::Local);
    // A body may not shadow the envelope's fields in the JSON view.
    let bad = Prepared {
        body: json!({"text": "x", "origin": "forged"}),
        lease_s: None,
        visibility: Visibility::Public,
    };
    let e = center
        .write(
            "note",
            "n9",
            WriteOp::Put {
                prepared: bad,
                if_version: None,
                above: None,
            },
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("origin"), "{e}");
    center.close();
    // And it all comes back, verified, after a restart.
    let center = Center::open_with(&cfg, kinds_with_note(), None).unwrap();
    assert_eq!(center.list("note", &[], None, 10).unwrap().0.len(), 3);
    assert_eq!(center.get("agent", "n1").unwrap().unwrap().kind, "agent");
    center.close();
}

#[tokio::test]
async fn tampered_bytes_are_caught_on_read_and_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::for_test("c1", dir.path());
    let store = Arc::new(MemStore::new());
    let center = Center::open_with(
        &cfg,
        regmesh_front_agent::kinds(),
        Some(store.clone() as Arc<dyn Store>),
    )
    .unwrap();
    for id in ["good", "victim"] {
        let p = regmesh_front_agent::AgentKind.prepare(id, agent("::1")).unwrap();
        center
            .write(
                "agent",
                id,
                WriteOp::Put {
                    prepared: p,
                    if_version: None,
                    above: None,
                },
            )
            .await
            .unwrap();
    }
    // Someone edits the stored bytes: the address becomes 2001:db8::bad.
    let bytes = store.get("agent", "victim").unwrap().unwrap();
    let mut rec = regmesh_core::codec::decode(&bytes).unwrap();
    rec.body = rec.body.replace("::1", "2001:db8::bad");
    let mut edit = WriteBatch::default();
    edit.put("agent", "victim", regmesh_core::codec::encode(&rec));
    store.apply(&edit).unwrap();
    let err = center.get("agent", "victim").unwrap_err();
    assert!(err.to_string().contains("verified digest"), "{err}");
    assert!(center.get("agent", "good").unwrap().is_some());
    center.close();
    // On restart the signature check leaves it out; the rest is served.
    let center = Center::open_with(
        &cfg,
        regmesh_front_agent::kinds(),
        Some(store.clone() as Arc<dyn Store>),
    )
    .unwrap();
    assert!(center.get("agent", "victim").unwrap().is_none());
    assert!(center.get("agent", "good").unwrap().is_some());
    assert!(center.status()["records"]["agent"] == 1);
    center.close();
}

#[tokio::test]
async fn data_dir_of_another_center_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Center::open(&Config::for_test("c1", dir.path())).unwrap().close();
    let e = Center::open(&Config::for_test("c2", dir.path()))
        .err()
        .expect("must refuse");
    assert!(e.to_string().contains("belongs to center \"c1\""), "{e}");
}

#[tokio::test]
async fn identity_key_is_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let a = Center::open(&Config::for_test("c1", dir.path())).unwrap();
    let k1 = a.public_key_hex();
    a.close();
    let b = Center::open(&Config::for_test("c1", dir.path())).unwrap();
    assert_eq!(b.public_key_hex(), k1);
    b.close();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("identity.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "identity key readable by others");
}
