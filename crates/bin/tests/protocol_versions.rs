//! Two protocol versions side by side (document 000 §2.8.2), with real
//! `regmesh` processes: a center pinned to `protocol_max = 1` in a mesh
//! whose others speak 2 gets version 1 from them and everything replicates
//! both ways; a center whose lowest version is above a peer's highest is
//! refused with the reason, and the peer stays KNOWN. Budget: about 10 s
//! on two cores.

mod peer_harness;

use peer_harness::*;
use serde_json::{json, Value};
use std::time::Duration;

const INTERVAL_MS: &str = "250";

async fn put(c: &regmesh_node::client::Client, id: &str, addr: &str) -> u16 {
    c.request(
        hyper::Method::PUT,
        &format!("/v1/agents/{id}"),
        Some(&json!({"addresses": [addr]})),
    )
    .await
    .unwrap()
    .status
    .as_u16()
}

/// Waits until `c` holds agent `id` with `addr` as its address.
async fn wait_for(c: &regmesh_node::client::Client, id: &str, addr: &str) {
    wait_until(&format!("{id} = {addr}"), Duration::from_secs(5), || async {
        let (s, v) = get(c, &format!("/v1/agents/{id}")).await;
        s == 200 && v["addresses"] == json!([addr])
    })
    .await;
}

/// A flood from c1 to `to` carrying `RegMesh-Record-Format: format`.
fn flood_with_format(d: &std::path::Path, base: u16, to: &str, format: &str) -> (String, String) {
    PeerCall {
        dir: d,
        base,
        to,
        cert: "c1",
        token_from: "c1",
        method: "POST",
        path: "/commit",
        headers: vec![
            "DRiP-Node-ID: c1".into(),
            "DRiP-Node-Counter: 1".into(),
            format!("RegMesh-Record-Format: {format}"),
        ],
        body: Some(r#"{"records": []}"#.into()),
    }
    .send()
}

/// A HELLO to `to` without a client certificate: (status, body).
fn anonymous_hello(d: &std::path::Path, base: u16, to: &str, body: &str) -> (String, String) {
    let k: u16 = to.trim_start_matches('c').parse().unwrap();
    let port = base + 10 * (k - 1) + 1;
    let out = std::process::Command::new("curl")
        .current_dir(d)
        .args(["-s", "-w", "\n%{http_code}", "--cacert", "ca.pem", "--resolve"])
        .arg(format!("{to}:{port}:127.0.0.1"))
        .args(["-H", "Content-Type: application/json", "-d", body])
        .arg(format!("https://{to}:{port}/mesh/v1/hello"))
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_center_pinned_to_version_1_replicates_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = init(d, 3, "full");
    for c in ["c1", "c2", "c3"] {
        set_peer_setting(d, c, "beat_interval_ms", INTERVAL_MS);
    }
    set_peer_setting(d, "c3", "protocol_max", "1");
    let (_p1, c1) = serve(d, "c1");
    let (_p2, c2) = serve(d, "c2");
    let (_p3, c3) = serve(d, "c3");
    wait_mesh_up(&[&c1, &c2, &c3]).await;

    // Each pair speaks the highest version both speak, and says so.
    for (c, peer, v) in [
        (&c1, "c2", 2),
        (&c2, "c1", 2),
        (&c1, "c3", 1),
        (&c2, "c3", 1),
        (&c3, "c1", 1),
        (&c3, "c2", 1),
    ] {
        let e = peer_entry(c, peer).await;
        assert_eq!(e["protocol"], json!(v), "{peer}: {e}");
        assert_eq!(e["hello_refused"], Value::Null, "{peer}: {e}");
    }
    assert_eq!(get(&c3, "/v1/peers").await.1["protocol"], json!({"min": 1, "max": 1}));
    assert_eq!(get(&c1, "/v1/peers").await.1["protocol"], json!({"min": 1, "max": 2}));

    // Creates and updates, from each version to the other.
    assert_eq!(put(&c1, "from-v2", "2001:db8::1").await, 201);
    assert_eq!(put(&c3, "from-v1", "2001:db8::3").await, 201);
    wait_for(&c3, "from-v2", "2001:db8::1").await;
    wait_for(&c1, "from-v1", "2001:db8::3").await;
    wait_for(&c2, "from-v1", "2001:db8::3").await;
    assert_eq!(put(&c1, "from-v2", "2001:db8::11").await, 200);
    assert_eq!(put(&c3, "from-v1", "2001:db8::33").await, 200);
    wait_for(&c3, "from-v2", "2001:db8::11").await;
    wait_for(&c1, "from-v1", "2001:db8::33").await;
    wait_for(&c2, "from-v1", "2001:db8::33").await;
    // c2 writes too: in a full mesh nobody relays (RegMesh-Reached), so
    // only its own writes make c2 flood c3.
    assert_eq!(put(&c2, "from-v2-at-c2", "2001:db8::2").await, 201);
    wait_for(&c3, "from-v2-at-c2", "2001:db8::2").await;

    // The version 2 centers flooded c3 in version 1: it took every flood
    // (it refuses version 2's header, see below), and the floods between
    // them were version 2.
    for c in [&c1, &c2] {
        let e = peer_entry(c, "c3").await;
        assert!(e["floods_sent"].as_u64().unwrap() > 0, "{e}");
        assert_eq!(e["floods_dropped"], json!(0), "{e}");
    }
    let (status, body) = flood_with_format(d, base, "c3", "1");
    assert_eq!(status, "400", "{body}");
    assert!(
        body.contains("record_format") && body.contains("at most version 1"),
        "{body}"
    );
    // A HELLO without a client certificate is answered but changes no
    // version: here one claiming to be c3 with only version 2, then with
    // none in common.
    for (body, code) in [
        (r#"{"id":"c3","protocol_min":2,"protocol_max":2}"#, "200"),
        (r#"{"id":"c3","protocol_min":3,"protocol_max":3}"#, "409"),
    ] {
        let (status, answer) = anonymous_hello(d, base, "c1", body);
        assert_eq!(status, code, "{answer}");
        let e = peer_entry(&c1, "c3").await;
        assert_eq!((&e["protocol"], &e["hello_refused"]), (&json!(1), &Value::Null), "{e}");
    }
    // A version 2 center reads the header, and refuses a format it cannot decode.
    let (status, body) = flood_with_format(d, base, "c2", "9");
    assert_eq!(status, "400", "{body}");
    assert!(body.contains("record format 9 is unknown"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_version_in_common_refuses_hello_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init(d, 2, "full");
    for c in ["c1", "c2"] {
        set_peer_setting(d, c, "beat_interval_ms", INTERVAL_MS);
    }
    set_peer_setting(d, "c1", "protocol_min", "2");
    set_peer_setting(d, "c2", "protocol_max", "1");
    let (_p1, c1) = serve(d, "c1");
    let (_p2, c2) = serve(d, "c2");
    for (c, peer) in [(&c1, "c2"), (&c2, "c1")] {
        wait_until(&format!("{peer} refused"), Duration::from_secs(5), || async {
            peer_entry(c, peer).await["hello_refused"] != Value::Null
        })
        .await;
    }
    // A few more beats: still refused, still KNOWN, no version agreed.
    tokio::time::sleep(Duration::from_millis(750)).await;
    for (c, peer, reason) in [
        (
            &c1,
            "c2",
            "no protocol version in common: we speak version 2, the peer speaks version 1",
        ),
        (
            &c2,
            "c1",
            "no protocol version in common: we speak version 1, the peer speaks version 2",
        ),
    ] {
        let e = peer_entry(c, peer).await;
        assert_eq!(e["state"], "KNOWN", "{e}");
        assert_eq!(e["protocol"], Value::Null, "{e}");
        assert_eq!(e["hello_refused"]["code"], "no_common_version", "{e}");
        assert_eq!(e["hello_refused"]["reason"], reason, "{e}");
    }
}
