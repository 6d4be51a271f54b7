//! Real meshes of `regmesh` processes on loopback, set up with `regmesh init`
//! exactly as an operator would, and probed with the client API and with curl
//! (the DRiP draft's requests).

use regmesh_node::client::Client;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_regmesh");

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A base port with every port a mesh of `n` needs free right now.
fn free_base(n: usize) -> u16 {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let seed = std::process::id() as usize + 977 * CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for k in 0..500 {
        let base = 20_000 + ((seed * 7 + k * 131) % 3500) * 10;
        let ok = (0..n)
            .all(|i| (0..2).all(|d| std::net::TcpListener::bind(("127.0.0.1", (base + 10 * i + d) as u16)).is_ok()));
        if ok {
            return base as u16;
        }
    }
    panic!("no free ports");
}

fn init(dir: &Path, n: usize, topology: &str) -> u16 {
    let base = free_base(n);
    let out = Command::new(BIN)
        .args([
            "init",
            "--centers",
            &n.to_string(),
            "--topology",
            topology,
            "--base-port",
            &base.to_string(),
            "--out",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    base
}

fn serve(dir: &Path, id: &str) -> (Proc, Client) {
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(dir.join(format!("{id}.toml")))
        .env("REGMESH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{id}: {line:?}"))
        .to_string();
    (Proc(child), Client::new(&url, None).unwrap())
}

async fn get(c: &Client, path: &str) -> (u16, Value) {
    let r = c.request(hyper::Method::GET, path, None).await.unwrap();
    (r.status.as_u16(), r.json())
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < limit, "timed out after {limit:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many items a list call answers.
async fn count(c: &Client, path: &str) -> usize {
    get(c, path).await.1["items"].as_array().map_or(0, Vec::len)
}

async fn peer_states(c: &Client) -> Vec<(String, String)> {
    let (_, v) = get(c, "/v1/peers").await;
    v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Waits until every center is active with every peer OPERATIONAL.
async fn wait_mesh_up(clients: &[&Client]) {
    for c in clients {
        wait_until("mesh active", Duration::from_secs(15), || async {
            let (_, v) = get(c, "/v1/peers").await;
            v["state"] == "active"
                && v["peers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|p| p["state"] == "OPERATIONAL")
        })
        .await;
    }
}

fn agent(i: usize) -> Value {
    json!({"addresses": [format!("2001:db8::{i:x}")], "capabilities": [{"name": "translate"}]})
}

/// Creates agents `{prefix}{i}` (i zero-padded to two digits if `pad`) for
/// i in 0..n at `c`, each a 201.
async fn create_agents(c: &Client, prefix: &str, n: usize, pad: bool) {
    for i in 0..n {
        let id = if pad {
            format!("{prefix}{i:02}")
        } else {
            format!("{prefix}{i}")
        };
        let r = c
            .request(hyper::Method::PUT, &format!("/v1/agents/{id}"), Some(&agent(i)))
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), 201, "{id}: {:?}", r.json());
    }
}

fn curl(dir: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .current_dir(dir)
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.to_string(), body.to_string())
}

fn token(dir: &Path, from: &str, to: &str) -> String {
    let out = Command::new(BIN)
        .args(["token", "--to", to, "--config"])
        .arg(dir.join(format!("{from}.toml")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_mesh_replicates_refuses_and_detects_failures() {
    let dir = tempfile::tempdir().unwrap();
    let base = init(dir.path(), 3, "line");
    let (_p1, c1) = serve(dir.path(), "c1");
    let (_p2, c2) = serve(dir.path(), "c2");
    let (p3, c3) = serve(dir.path(), "c3");
    wait_until("c2 sees c1 and c3 OPERATIONAL", Duration::from_secs(15), || async {
        peer_states(&c2).await.iter().all(|(_, s)| s == "OPERATIONAL")
    })
    .await;

    // A write at one end arrives at the other, through c2.
    create_agents(&c1, "a", 20, true).await;
    wait_until("all 20 agents at c3", Duration::from_secs(10), || async {
        count(&c3, "/v1/agents?origin=c1&limit=100").await == 20
    })
    .await;
    let (_, a) = get(&c3, "/v1/agents/a07").await;
    assert_eq!(a["origin"], "c1");
    assert_eq!(a["addresses"], json!(["2001:db8::7"]));

    // Only the origin may change its records.
    let r = c3
        .request(hyper::Method::PUT, "/v1/agents/a07", Some(&agent(99)))
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 409);
    assert_eq!(r.json()["error"]["code"], "not_owner");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("c1"));

    // Delete propagates and is not resurrected.
    assert_eq!(
        c1.request(hyper::Method::DELETE, "/v1/agents/a03", None)
            .await
            .unwrap()
            .status
            .as_u16(),
        204
    );
    wait_until("a03 deleted at c3", Duration::from_secs(10), || async {
        get(&c3, "/v1/agents/a03").await.0 == 404
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(get(&c3, "/v1/agents/a03").await.0, 404, "resurrected");
    assert_eq!(get(&c2, "/v1/agents/a03").await.0, 404, "resurrected");

    // The draft's curl requests, against c2 with c1's certificate.
    let d = dir.path();
    let c2_addr = format!("c2:{}:127.0.0.1", base + 11);
    let url = |p: &str| format!("https://c2:{}{p}", base + 11);
    let with_cert = [
        "--cacert",
        "ca.pem",
        "--resolve",
        &c2_addr,
        "--cert",
        "c1.crt",
        "--key",
        "c1.key",
    ];
    let t = token(d, "c1", "c2");
    let auth = format!("Authorization: {t}");
    let mut args: Vec<&str> = with_cert.to_vec();
    args.extend(["-H", "DRiP-Node-ID: c1", "-H", &auth]);
    let state_url = url("/state");
    let (code, body) = curl(d, &[args.as_slice(), &[state_url.as_str()]].concat());
    assert_eq!((code.as_str(), body.as_str()), ("200", r#"{"state":"active"}"#));
    let (code, body) = curl(d, &[args.as_slice(), &[state_url.as_str()]].concat());
    assert_eq!(code, "401", "a replayed token: {body}");
    assert!(body.contains("replayed_token"));
    let t = token(d, "c1", "c2");
    let auth = format!("Authorization: Bearer {t}");
    let active_url = url("/node/c1/active");
    let (code, _) = curl(
        d,
        &[
            &with_cert[..],
            &["-H", "DRiP-Node-ID: c1", "-H", &auth, "-X", "POST", &active_url],
        ]
        .concat(),
    );
    assert_eq!(code, "200", "POST /node/c1/active");
    // The vote phase, as the draft sends it (a JSON body naming the id).
    let t = token(d, "c1", "c2");
    let auth = format!("Authorization: {t}");
    let voting_url = url("/voting");
    let (code, body) = curl(
        d,
        &[
            &with_cert[..],
            &[
                "-H",
                "Content-Type: application/json",
                "-H",
                "DRiP-Node-ID: c1",
                "-H",
                "DRiP-Node-Counter: 1234",
                "-H",
                "DRiP-Node-Counter-reset: false",
                "-H",
                &auth,
                "-X",
                "POST",
                "-d",
                r#"{"kind":"agent","id":"curl-vote"}"#,
                &voting_url,
            ],
        ]
        .concat(),
    );
    assert_eq!(code, "200", "POST /voting: {body}");
    for spelling in [
        "/votingphase/node/c1/response/yes",
        "/voting/peernode/c1/response/yes",
        "/node/c1/response/no",
    ] {
        let t = token(d, "c1", "c2");
        let auth = format!("Authorization: {t}");
        let u = url(spelling);
        let (code, body) = curl(
            d,
            &[
                &with_cert[..],
                &[
                    "-H",
                    "DRiP-Node-ID: c1",
                    "-H",
                    "DRiP-Node-Counter: 1234",
                    "-H",
                    &auth,
                    "-X",
                    "POST",
                    &u,
                ],
            ]
            .concat(),
        );
        assert_eq!(code, "200", "{spelling}: {body}");
    }
    // No client certificate.
    let t = token(d, "c1", "c2");
    let auth = format!("Authorization: {t}");
    let (code, body) = curl(
        d,
        &[
            "--cacert",
            "ca.pem",
            "--resolve",
            &c2_addr,
            "-H",
            "DRiP-Node-ID: c1",
            "-H",
            &auth,
            &state_url,
        ],
    );
    assert_eq!(code, "401", "{body}");
    assert!(body.contains("certificate_required"));
    // A forged token (signed by c3's key, claiming c1) with c1's certificate.
    let forged = {
        let t = token(d, "c3", "c2");
        let parts: Vec<&str> = t.split('.').collect();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        claims["iss"] = json!("c1");
        format!("{}.{}.{}", parts[0], b64.encode(claims.to_string()), parts[2])
    };
    let auth = format!("Authorization: {forged}");
    let (code, body) = curl(
        d,
        &[&with_cert[..], &["-H", "DRiP-Node-ID: c1", "-H", &auth, &state_url]].concat(),
    );
    assert_eq!(code, "401", "{body}");
    assert!(body.contains("signature"), "{body}");
    // A center that is not c1's peer (line: c3 is not).
    let c1_addr = format!("c1:{}:127.0.0.1", base + 1);
    let t = token(d, "c3", "c2");
    let auth = format!("Authorization: {t}");
    let c1_state = format!("https://c1:{}/state", base + 1);
    let (code, body) = curl(
        d,
        &[
            "--cacert",
            "ca.pem",
            "--resolve",
            &c1_addr,
            "--cert",
            "c3.crt",
            "--key",
            "c3.key",
            "-H",
            "DRiP-Node-ID: c3",
            "-H",
            &auth,
            &c1_state,
        ],
    );
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("not_a_peer"));
    // Tampered records in a flood are refused and change nothing.
    let before = get(&c2, "/v1/status").await.1["change"].as_u64().unwrap();
    let rec = {
        use base64::Engine;
        let mut r = regmesh_core::codec::decode(&regmesh_core::codec::encode(&regmesh_core::Record {
            kind: "agent".into(),
            id: "evil".into(),
            origin: "c1".into(),
            version: regmesh_core::Hlc::new(u64::MAX / 2, 0),
            seq: 1,
            expires_at_ms: None,
            visibility: regmesh_core::Visibility::Public,
            deleted: false,
            body: r#"{"addresses":["2001:db8::bad"]}"#.into(),
            sig: [7; 64],
        }))
        .unwrap();
        r.seq = 2;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(regmesh_core::codec::encode(&r))
    };
    let t = token(d, "c1", "c2");
    let auth = format!("Authorization: {t}");
    let body = json!({"records": [rec]}).to_string();
    let commit_url = url("/commit");
    let (code, resp) = curl(
        d,
        &[
            &with_cert[..],
            &[
                "-H",
                "Content-Type: application/json",
                "-H",
                "DRiP-Node-ID: c1",
                "-H",
                "DRiP-Node-Counter: 999999",
                "-H",
                "DRiP-Node-Counter-reset: false",
                "-H",
                &auth,
                "-X",
                "POST",
                "-d",
                &body,
                &commit_url,
            ],
        ]
        .concat(),
    );
    assert_eq!(code, "400", "{resp}");
    assert!(resp.contains("does not verify"), "{resp}");
    assert_eq!(
        get(&c2, "/v1/status").await.1["change"].as_u64().unwrap(),
        before,
        "a refused flood changed state"
    );
    // The same message deflated (the content coding peers use for large
    // bodies) is inflated first, then refused just the same; an unknown
    // coding is refused with 415 and the coding to use.
    std::fs::write(d.join("evil.z"), regmesh_node::peer::encoding::deflate(body.as_bytes())).unwrap();
    for (coding, want, says) in [
        ("deflate", "400", "does not verify"),
        ("br", "415", "unsupported_encoding"),
    ] {
        let t = token(d, "c1", "c2");
        let auth = format!("Authorization: {t}");
        let enc = format!("Content-Encoding: {coding}");
        let (code, resp) = curl(
            d,
            &[
                &with_cert[..],
                &[
                    "-H",
                    "Content-Type: application/json",
                    "-H",
                    &enc,
                    "-H",
                    "DRiP-Node-ID: c1",
                    "-H",
                    "DRiP-Node-Counter: 999998",
                    "-H",
                    &auth,
                    "--data-binary",
                    "@evil.z",
                    &commit_url,
                ],
            ]
            .concat(),
        );
        assert_eq!(code, want, "{coding}: {resp}");
        assert!(resp.contains(says), "{coding}: {resp}");
    }
    assert_eq!(get(&c2, "/v1/agents/evil").await.0, 404);
    assert_eq!(get(&c2, "/v1/agents/evil").await.0, 404);

    // A killed center is DEGRADED past 2x its interval, INTERRUPTED past 10x.
    let killed = Instant::now();
    drop(p3);
    wait_until("c3 DEGRADED at c2", Duration::from_secs(6), || async {
        peer_states(&c2)
            .await
            .iter()
            .any(|(id, s)| id == "c3" && s == "DEGRADED")
    })
    .await;
    // Silence counts from the last beat heard, up to one interval (1 s)
    // before the kill, so 2x the interval is at least 1 s after it.
    assert!(
        killed.elapsed() >= Duration::from_millis(1000),
        "degraded too early: {:?}",
        killed.elapsed()
    );
    wait_until("c3 INTERRUPTED at c2", Duration::from_secs(16), || async {
        peer_states(&c2)
            .await
            .iter()
            .any(|(id, s)| id == "c3" && s == "INTERRUPTED")
    })
    .await;
    assert!(
        killed.elapsed() >= Duration::from_secs(9),
        "interrupted too early: {:?}",
        killed.elapsed()
    );
    // c1 is still fine, and c2 still takes writes from it.
    assert!(peer_states(&c2)
        .await
        .iter()
        .any(|(id, s)| id == "c1" && s == "OPERATIONAL"));
    create_agents(&c1, "missed", 15, true).await;
    assert_eq!(
        c1.request(hyper::Method::DELETE, "/v1/agents/a05", None)
            .await
            .unwrap()
            .status
            .as_u16(),
        204
    );
    wait_until("writes reach c2 with c3 down", Duration::from_secs(10), || async {
        get(&c2, "/v1/agents/missed14").await.0 == 200
    })
    .await;

    // c3 comes back: anti-entropy brings it everything it missed, deletes too.
    let (_p3, c3) = serve(dir.path(), "c3");
    wait_until("c3 caught up", Duration::from_secs(20), || async {
        count(&c3, "/v1/agents?origin=c1&limit=100").await == 33
    })
    .await;
    assert_eq!(
        get(&c3, "/v1/agents/a05").await.0,
        404,
        "a delete made while c3 was down"
    );
    assert_eq!(get(&c3, "/v1/agents/a03").await.0, 404);
    assert_eq!(
        get(&c3, "/v1/agents/missed07").await.1["addresses"],
        json!(["2001:db8::7"])
    );
    wait_until("c3 active again", Duration::from_secs(10), || async {
        get(&c3, "/v1/peers").await.1["state"] == "active"
    })
    .await;
    let (_, peers) = get(&c3, "/v1/peers").await;
    assert!(
        peers["anti_entropy"]["pulled_records"].as_u64().unwrap() >= 16,
        "{peers}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mesh_every_write_reaches_every_center_once() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), 3, "full");
    let mut procs = Vec::new();
    let mut clients = Vec::new();
    for id in ["c1", "c2", "c3"] {
        let (p, c) = serve(dir.path(), id);
        procs.push(p);
        clients.push(c);
    }
    wait_mesh_up(&clients.iter().collect::<Vec<_>>()).await;
    for (k, c) in clients.iter().enumerate() {
        for i in 0..10 {
            let r = c
                .request(hyper::Method::PUT, &format!("/v1/agents/k{k}-{i}"), Some(&agent(i)))
                .await
                .unwrap();
            assert_eq!(r.status.as_u16(), 201);
        }
    }
    for c in &clients {
        wait_until("30 agents everywhere", Duration::from_secs(10), || async {
            get(c, "/v1/agents?limit=100").await.1["items"]
                .as_array()
                .map_or(0, Vec::len)
                == 30
        })
        .await;
    }
    // In a full mesh every flood also arrives relayed: each center saw some
    // copies twice and applied them once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut dups = 0;
    for c in &clients {
        wait_until("active", Duration::from_secs(10), || async {
            get(c, "/v1/peers").await.1["state"] == "active"
        })
        .await;
        let (_, v) = get(c, "/v1/peers").await;
        dups += v["floods"]["duplicates"].as_u64().unwrap();
    }
    assert!(dups > 0, "relayed copies were expected in a full mesh");
    for c in &clients {
        let (_, st) = get(c, "/v1/status").await;
        assert_eq!(st["records"]["agent"], 30);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creates_of_one_id_never_both_win() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), 3, "line");
    let (_p1, c1) = serve(dir.path(), "c1");
    let (_p2, c2) = serve(dir.path(), "c2");
    let (_p3, c3) = serve(dir.path(), "c3");
    wait_mesh_up(&[&c1, &c2, &c3]).await;
    let mut wins_c1 = 0;
    let mut wins_c3 = 0;
    for i in 0..25 {
        let path = format!("/v1/agents/race{i:02}");
        let (da, db) = (agent(i), agent(100 + i));
        let (a, b) = tokio::join!(
            c1.request(hyper::Method::PUT, &path, Some(&da)),
            c3.request(hyper::Method::PUT, &path, Some(&db))
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let (sa, sb) = (a.status.as_u16(), b.status.as_u16());
        assert!(!(sa == 201 && sb == 201), "both centers created {path}");
        for (s, r) in [(sa, &a), (sb, &b)] {
            assert!(matches!(s, 201 | 409 | 503), "{path}: {s} {:?}", r.json());
        }
        wins_c1 += (sa == 201) as usize;
        wins_c3 += (sb == 201) as usize;
    }
    // Whoever won, every center ends with the same owner for every id.
    for i in 0..25 {
        let path = format!("/v1/agents/race{i:02}");
        wait_until("owners agree", Duration::from_secs(10), || async {
            let o: Vec<Value> = [&c1, &c2, &c3]
                .into_iter()
                .map(|c| async { get(c, &path).await.1["origin"].clone() })
                .collect::<futures_util::future::JoinAll<_>>()
                .await;
            o[0] == o[1] && o[1] == o[2]
        })
        .await;
    }
    // Without a race, creating works from both ends.
    assert_eq!(
        c1.request(hyper::Method::PUT, "/v1/agents/solo1", Some(&agent(1)))
            .await
            .unwrap()
            .status
            .as_u16(),
        201
    );
    assert_eq!(
        c3.request(hyper::Method::PUT, "/v1/agents/solo3", Some(&agent(3)))
            .await
            .unwrap()
            .status
            .as_u16(),
        201
    );
    eprintln!(
        "race results: c1 won {wins_c1}, c3 won {wins_c3}, neither {}",
        25 - wins_c1 - wins_c3
    );
}

#[test]
fn demo_shows_agents_arriving_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base(3);
    let out = Command::new(BIN)
        .args(["demo", "--base-port", &base.to_string(), "--dir"])
        .arg(dir.path().join("demo"))
        .env("REGMESH_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("every agent arrived at every center"), "{text}");
    assert_eq!(text.matches("holds 6 agents").count(), 3, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_center_gets_a_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let base = init(dir.path(), 3, "line");
    let (_p1, c1) = serve(dir.path(), "c1");
    let (_p2, c2) = serve(dir.path(), "c2");
    wait_until("c1-c2 up", Duration::from_secs(15), || async {
        get(&c2, "/v1/peers").await.1["state"] == "active"
    })
    .await;
    create_agents(&c1, "early", 30, true).await;
    assert_eq!(
        c1.request(hyper::Method::DELETE, "/v1/agents/early00", None)
            .await
            .unwrap()
            .status
            .as_u16(),
        204
    );
    wait_until("c2 has them", Duration::from_secs(10), || async {
        get(&c2, "/v1/agents/early29").await.0 == 200
    })
    .await;
    // c3 joins empty: it asks c2 for a full sync (DRiP §5.6).
    let (_p3, c3) = serve(dir.path(), "c3");
    wait_until("c3 synced", Duration::from_secs(20), || async {
        count(&c3, "/v1/agents?limit=100").await == 29
    })
    .await;
    assert_eq!(
        get(&c3, "/v1/agents/early00").await.0,
        404,
        "the tombstone came with the sync"
    );
    let (_, v) = get(&c3, "/v1/peers").await;
    assert_eq!(v["anti_entropy"]["full_sync_received"], true, "{v}");
    wait_until("c3 active", Duration::from_secs(10), || async {
        get(&c3, "/v1/peers").await.1["state"] == "active"
    })
    .await;
    // The draft's request, by hand: PUT /sync/node/c1 at c2 with c1's certificate.
    let d = dir.path();
    let c2_addr = format!("c2:{}:127.0.0.1", base + 11);
    let t = token(d, "c1", "c2");
    let auth = format!("Authorization: {t}");
    let u = format!("https://c2:{}/sync/node/c1", base + 11);
    let (code, body) = curl(
        d,
        &[
            "--cacert",
            "ca.pem",
            "--resolve",
            &c2_addr,
            "--cert",
            "c1.crt",
            "--key",
            "c1.key",
            "-H",
            "DRiP-Node-ID: c1",
            "-H",
            &auth,
            "-X",
            "PUT",
            &u,
        ],
    );
    assert_eq!(code, "200", "{body}");
    // NOTIFY and RFI answer accepted or rejected, with a reason.
    let post = |path: &str, json_body: &str| {
        let t = token(d, "c1", "c2");
        let auth = format!("Authorization: {t}");
        let u = format!("https://c2:{}{path}", base + 11);
        curl(
            d,
            &[
                "--cacert",
                "ca.pem",
                "--resolve",
                &c2_addr,
                "--cert",
                "c1.crt",
                "--key",
                "c1.key",
                "-H",
                "Content-Type: application/json",
                "-H",
                &auth,
                "-X",
                "POST",
                "-d",
                json_body,
                &u,
            ],
        )
    };
    let (code, body) = post("/mesh/v1/rfi", r#"{"type":"sync-state"}"#);
    assert_eq!(code, "200");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["accepted"], true);
    assert_eq!(v["data"]["id"], "c2");
    assert!(v["data"]["watermarks"]["c1"].as_u64().unwrap() >= 31, "{v}");
    let (_, body) = post("/mesh/v1/rfi", r#"{"type":"zone-transfer"}"#);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["accepted"], false);
    assert!(v["reason"].as_str().unwrap().contains("zone-transfer"));
    let (_, body) = post("/mesh/v1/notify", r#"{"type":"state","state":"sync"}"#);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["accepted"], true);
    let (_, body) = post("/mesh/v1/notify", r#"{"type":"state","state":"asleep"}"#);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["accepted"], false);
    assert!(v["reason"].as_str().is_some());
}

/// Sets the exported kinds of `peer` in `center`'s config (empty: all).
fn set_export_kinds(dir: &Path, center: &str, peer: &str, kinds: &str) {
    set_peer_field(dir, center, peer, "kinds", kinds);
}

/// Sets (or, with "", removes) one field of a center's `[[peers]]` entry for
/// `peer`, on the line after its `url`.
fn set_peer_field(dir: &Path, center: &str, peer: &str, field: &str, value: &str) {
    let path = dir.join(format!("{center}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let marker = format!("[[peers]]\nid = \"{peer}\"\n");
    let i = text.find(&marker).expect("peer entry");
    let url_end = i + marker.len() + text[i + marker.len()..].find('\n').unwrap() + 1;
    let rest = &text[url_end..];
    let rest = if rest.starts_with(&format!("{field} = ")) {
        &rest[rest.find('\n').unwrap() + 1..]
    } else {
        rest
    };
    let line = if value.is_empty() {
        String::new()
    } else {
        format!("{field} = {value}\n")
    };
    std::fs::write(&path, format!("{}{line}{rest}", &text[..url_end])).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_a_filtering_path_covered_is_repaired_from_the_path_that_carries_it() {
    // A triangle: c1 sends its partners' records to c2, and c2 to c3, but
    // not c1 to c3. The direct flood reaches c3 first, filtered, and covers
    // the seq; the copy relayed by c2 then arrives as a duplicate. Only the
    // per-class digests from c2 can show c3 what it lacks.
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), 3, "full");
    set_peer_field(dir.path(), "c1", "c2", "groups", r#"["partners"]"#);
    set_peer_field(dir.path(), "c2", "c3", "groups", r#"["partners"]"#);
    set_peer_field(dir.path(), "c3", "c2", "groups", r#"["partners"]"#);
    let (_p1, c1) = serve(dir.path(), "c1");
    let (_p2, c2) = serve(dir.path(), "c2");
    let (_p3, c3) = serve(dir.path(), "c3");
    wait_mesh_up(&[&c1, &c2, &c3]).await;
    for i in 0..5 {
        let mut a = agent(i);
        a["visibility"] = json!("authorized:partners");
        let r = c1
            .request(hyper::Method::PUT, &format!("/v1/agents/p{i}"), Some(&a))
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), 201, "{:?}", r.json());
    }
    wait_until(
        "c3 has every partners' record of c1",
        Duration::from_secs(30),
        || async { count(&c3, "/v1/agents?origin=c1&limit=100").await == 5 },
    )
    .await;
    let _ = c2;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_find_divergence_that_watermarks_cannot_see() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), 3, "line");
    // c2 first exports only `note` records to c3: c3's watermark for c1 still
    // advances (the floods cover the agents it may not see).
    set_export_kinds(dir.path(), "c2", "c3", r#"["note"]"#);
    let (_p1, c1) = serve(dir.path(), "c1");
    let (p2, c2) = serve(dir.path(), "c2");
    let (_p3, c3) = serve(dir.path(), "c3");
    wait_mesh_up(&[&c1, &c2, &c3]).await;
    create_agents(&c1, "hidden", 10, false).await;
    wait_until("c2 has them", Duration::from_secs(10), || async {
        get(&c2, "/v1/agents/hidden9").await.0 == 200
    })
    .await;
    wait_until("c3's watermark for c1 caught up", Duration::from_secs(10), || async {
        let (_, a) = get(&c2, "/v1/peers").await;
        let (_, b) = get(&c3, "/v1/peers").await;
        a["anti_entropy"]["watermarks"]["c1"] == b["anti_entropy"]["watermarks"]["c1"]
    })
    .await;
    assert_eq!(get(&c3, "/v1/agents/hidden3").await.0, 404, "not exported to c3 yet");

    // The operator widens c2's export policy and restarts c2. Watermarks are
    // equal, so only the digest comparison can tell c3 what it lacks.
    drop(p2);
    set_export_kinds(dir.path(), "c2", "c3", "");
    let (_p2, c2) = serve(dir.path(), "c2");
    wait_until("c3 repaired by digest", Duration::from_secs(30), || async {
        count(&c3, "/v1/agents?origin=c1&limit=100").await == 10
    })
    .await;
    wait_until("digests match", Duration::from_secs(15), || async {
        let (_, v) = get(&c3, "/v1/peers").await;
        v["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "c2" && p["digest_match"] == true)
    })
    .await;
    let _ = c2;
}

/// Sets `[leases] tombstone_horizon_s` in a center's config.
fn set_tombstone_horizon(dir: &Path, center: &str, secs: u64) {
    let path = dir.join(format!("{center}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let i = text.find("tombstone_horizon_s = ").expect("leases section");
    let end = i + text[i..].find('\n').unwrap();
    std::fs::write(
        &path,
        format!("{}tombstone_horizon_s = {secs}{}", &text[..i], &text[end..]),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_center_behind_the_tombstone_horizon_resyncs_and_drops_what_was_deleted() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), 3, "full");
    for c in ["c1", "c2", "c3"] {
        set_tombstone_horizon(dir.path(), c, 1);
    }
    let (_p1, c1) = serve(dir.path(), "c1");
    let (_p2, c2) = serve(dir.path(), "c2");
    let (p3, c3) = serve(dir.path(), "c3");
    wait_mesh_up(&[&c1, &c2, &c3]).await;
    for name in ["gone0", "gone1", "gone2", "keep0", "keep1"] {
        let r = c1
            .request(hyper::Method::PUT, &format!("/v1/agents/{name}"), Some(&agent(1)))
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), 201, "{:?}", r.json());
    }
    let r = c2
        .request(hyper::Method::PUT, "/v1/agents/other", Some(&agent(2)))
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 201);
    wait_until("c3 holds them all", Duration::from_secs(10), || async {
        get(&c3, "/v1/agents/keep1").await.0 == 200 && get(&c3, "/v1/agents/other").await.0 == 200
    })
    .await;

    // c3 goes away; c1 deletes three agents, and every tombstone is purged
    // (horizon 1 s) before c3 returns.
    drop(p3);
    for name in ["gone0", "gone1", "gone2"] {
        let r = c1
            .request(hyper::Method::DELETE, &format!("/v1/agents/{name}"), None)
            .await
            .unwrap();
        assert!(r.status.is_success(), "{:?}", r.json());
    }
    // An update needs no vote, so c1 takes it while c3 is still OPERATIONAL.
    let r = c1
        .request(hyper::Method::PUT, "/v1/agents/keep0", Some(&agent(3)))
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 200, "{:?}", r.json());
    for c in [&c1, &c2] {
        wait_until("tombstones purged", Duration::from_secs(15), || async {
            let (_, v) = get(c, "/v1/peers").await;
            v["anti_entropy"]["purged_through"]["c1"].as_u64().unwrap_or(0) > 0
        })
        .await;
    }

    // Back: no tombstone is left to show c3 the deletions. The peers' pull
    // answers say so, and c3 resyncs c1's records instead of merging.
    let (_p3, c3) = serve(dir.path(), "c3");
    wait_until("c3 caught up with c1", Duration::from_secs(30), || async {
        get(&c3, "/v1/agents/keep0").await.1["addresses"][0] == "2001:db8::3"
    })
    .await;
    wait_until("deleted agents gone from c3", Duration::from_secs(30), || async {
        let mut gone = true;
        for name in ["gone0", "gone1", "gone2"] {
            gone &= get(&c3, &format!("/v1/agents/{name}")).await.0 == 404;
        }
        gone
    })
    .await;
    for name in ["keep0", "keep1", "other"] {
        assert_eq!(get(&c3, &format!("/v1/agents/{name}")).await.0, 200, "{name} kept");
    }
    let (_, v) = get(&c3, "/v1/peers").await;
    assert!(v["anti_entropy"]["resyncs"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["anti_entropy"]["purged_through"]["c1"].as_u64().unwrap() > 0, "{v}");
    // It stays gone: c3 does not hand the dropped records back to anyone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for c in [&c1, &c2, &c3] {
        assert_eq!(get(c, "/v1/agents/gone1").await.0, 404);
    }
}

/// A switch that cuts a proxied link: open connections drop, new ones are
/// closed at once.
#[derive(Default)]
struct Cut {
    on: std::sync::atomic::AtomicBool,
    now: tokio::sync::Notify,
}

impl Cut {
    fn set(&self, on: bool) {
        self.on.store(on, std::sync::atomic::Ordering::SeqCst);
        if on {
            self.now.notify_waiters();
        }
    }
}

/// Forwards every connection to `target` unless the link is cut.
async fn cuttable_proxy(listen: tokio::net::TcpListener, target: String, cut: std::sync::Arc<Cut>) {
    loop {
        let Ok((mut a, _)) = listen.accept().await else { return };
        if cut.on.load(std::sync::atomic::Ordering::SeqCst) {
            continue;
        }
        let (target, cut) = (target.clone(), cut.clone());
        tokio::spawn(async move {
            let Ok(mut b) = tokio::net::TcpStream::connect(&target).await else {
                return;
            };
            let cutting = cut.now.notified();
            if cut.on.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                _ = cutting => {}
            }
        });
    }
}

/// Points `center`'s peer entry for `peer` at 127.0.0.1:`port`; returns the
/// address it pointed at.
fn route_peer(dir: &Path, center: &str, peer: &str, port: u16) -> String {
    let path = dir.join(format!("{center}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let marker = format!("id = \"{peer}\"\nurl = \"https://");
    let i = text.find(&marker).expect("peer entry") + marker.len();
    let end = i + text[i..].find('"').unwrap();
    let old = text[i..end].to_string();
    std::fs::write(&path, format!("{}127.0.0.1:{port}{}", &text[..i], &text[end..])).unwrap();
    old
}

async fn state_of(c: &Client, peer: &str) -> String {
    peer_states(c)
        .await
        .into_iter()
        .find(|(p, _)| p == peer)
        .expect("peer")
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_degrades_floods_route_around_it_and_it_heals() {
    // A full mesh of three whose c1–c3 link runs through two proxies (one
    // per direction of calls), which the test cuts and restores: the real
    // nodes, TLS and storage under a partitioned network.
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), 3, "full");
    let (l13, l31) = (
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let to3 = route_peer(dir.path(), "c1", "c3", l13.local_addr().unwrap().port());
    let to1 = route_peer(dir.path(), "c3", "c1", l31.local_addr().unwrap().port());
    let (cut13, cut31) = (std::sync::Arc::new(Cut::default()), std::sync::Arc::new(Cut::default()));
    tokio::spawn(cuttable_proxy(l13, to3, cut13.clone()));
    tokio::spawn(cuttable_proxy(l31, to1, cut31.clone()));
    let (_p1, c1) = serve(dir.path(), "c1");
    let (_p2, c2) = serve(dir.path(), "c2");
    let (_p3, c3) = serve(dir.path(), "c3");
    wait_mesh_up(&[&c1, &c2, &c3]).await;

    // Both directions cut: each side sees the other DEGRADED, then
    // INTERRUPTED; writes still reach the far side through c2.
    cut13.set(true);
    cut31.set(true);
    for (c, peer) in [(&c1, "c3"), (&c3, "c1")] {
        wait_until("the cut peer is INTERRUPTED", Duration::from_secs(20), || async {
            state_of(c, peer).await == "INTERRUPTED"
        })
        .await;
    }
    assert_eq!(state_of(&c1, "c2").await, "OPERATIONAL");
    create_agents(&c1, "around", 10, true).await;
    wait_until("c3 has c1's writes through c2", Duration::from_secs(10), || async {
        count(&c3, "/v1/agents?origin=c1&limit=100").await == 10
    })
    .await;

    // One way only: c3's calls reach c1 and their answers carry c1's beat,
    // so c3 holds c1 OPERATIONAL; c1's calls to c3 go unanswered, so c1
    // holds c3 DEGRADED or worse.
    cut31.set(false);
    wait_until("c3 sees c1 again", Duration::from_secs(15), || async {
        state_of(&c3, "c1").await == "OPERATIONAL"
    })
    .await;
    assert_ne!(state_of(&c1, "c3").await, "OPERATIONAL", "c1's own calls still fail");

    // Healed: both OPERATIONAL, and later writes flow directly again.
    cut13.set(false);
    wait_until("c1 sees c3 again", Duration::from_secs(15), || async {
        state_of(&c1, "c3").await == "OPERATIONAL"
    })
    .await;
    create_agents(&c3, "back", 5, true).await;
    wait_until("c1 has c3's writes", Duration::from_secs(10), || async {
        count(&c1, "/v1/agents?origin=c3&limit=100").await == 5
    })
    .await;
    let _ = c2;
}
