//! Shared by the random endpoint tests (`client_api_random.rs`,
//! `peer_api_random.rs`, `peer_regressions.rs`): a center c1 in a live
//! two-center mesh with c2 (both started with `regmesh_node::start`, real
//! TLS between them) whose client API and peer routers the tests call in
//! process; panic counting by thread; the rules every answer keeps; and the
//! pieces random inputs are built from (mutations, ids, agent bodies,
//! signed records).
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::{Extension, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use regmesh_core::codec::{canonical_json, encode};
use regmesh_core::sign::key_hex;
use regmesh_core::{jwt, Hlc, Identity, Record, Visibility};
use regmesh_node::config::{CenterKey, PeerConfig, PeerListenConfig, Scope, TokenConfig};
use regmesh_node::peer::pki::Ca;
use regmesh_node::peer::server::PeerCert;
use regmesh_node::{Config, Running};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

pub const API_TOKEN: &str = "fuzz-secret-token";

pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Panics by thread name. Tokio catches the panics of spawned tasks, so
/// the hook is the only place they show; each test runs its centers on a
/// runtime whose threads carry the test's own prefix.
pub static PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

pub fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().unwrap_or("").to_string();
            PANICS.lock().unwrap_or_else(|e| e.into_inner()).push(name);
            default(info);
        }));
    });
}

/// Panics so far on threads whose name starts with `prefix`.
pub fn panics_on(prefix: &str) -> usize {
    PANICS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|n| n.starts_with(prefix))
        .count()
}

/// A runtime whose worker threads are named `prefix-…`.
pub fn runtime(prefix: &str) -> tokio::runtime::Runtime {
    count_panics();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(format!("{prefix}-worker"))
        .build()
        .unwrap()
}

// ---- the rig: c1 and c2 in a live mesh ---------------------------------------

pub struct Rig {
    pub c1: Running,
    pub c2: Running,
    pub api: Router,
    pub peer: Router,
    /// The router as an unauthenticated caller (no client certificate) sees it.
    pub peer_anonymous: Router,
    /// c3's certificate: a valid mesh certificate of a center that is not a peer.
    pub peer_as_c3: Router,
    pub keys: Keys,
    pub jti: AtomicU64,
    pub _dir: tempfile::TempDir,
}

/// Identities of c1 (under test), c2 (its peer), c3 (known, not a peer) and
/// c9 (unknown).
pub struct Keys {
    pub c1: Identity,
    pub c2: Identity,
    pub c3: Identity,
    pub c9: Identity,
}

impl Keys {
    pub fn of(&self, id: &str) -> &Identity {
        match id {
            "c1" => &self.c1,
            "c2" => &self.c2,
            "c3" => &self.c3,
            _ => &self.c9,
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn der(pem: &str) -> Arc<CertificateDer<'static>> {
    Arc::new(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
}

pub async fn rig() -> Rig {
    count_panics();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("fuzz mesh CA").unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
    let keys = Keys {
        c1: Identity::from_seed([1; 32]),
        c2: Identity::from_seed([2; 32]),
        c3: Identity::from_seed([3; 32]),
        c9: Identity::from_seed([9; 32]),
    };
    let mut certs = std::collections::HashMap::new();
    for id in ["c1", "c2", "c3"] {
        let pem = keys.of(id).to_pkcs8_pem().unwrap();
        std::fs::write(dir.path().join(format!("{id}.key")), &pem).unwrap();
        let cert = ca.issue(id, &pem).unwrap();
        std::fs::write(dir.path().join(format!("{id}.crt")), &cert).unwrap();
        certs.insert(id, cert);
    }
    // Ports are picked free, then bound by the centers: another process may
    // take one in between, so a failed start is retried with new ports.
    let mut attempt = 0;
    let (_cfg1, c1, c2) = loop {
        attempt += 1;
        let ports = [free_port(), free_port()];
        let config = |me: usize| {
            let (id, other) = if me == 0 { ("c1", "c2") } else { ("c2", "c1") };
            let mut cfg = Config::for_test(id, &dir.path().join(id));
            cfg.api.max_body_bytes = 64 * 1024;
            cfg.api.tokens = vec![
                TokenConfig {
                    name: "fuzz".into(),
                    token: API_TOKEN.into(),
                    scopes: vec![Scope::Admin],
                },
                TokenConfig {
                    name: "reader".into(),
                    token: "reader-token-0123456789".into(),
                    scopes: vec![Scope::Read],
                },
            ];
            cfg.peer = Some(PeerListenConfig {
                listen: format!("127.0.0.1:{}", ports[me]).parse().unwrap(),
                cert: dir.path().join(format!("{id}.crt")),
                key: dir.path().join(format!("{id}.key")),
                ca: dir.path().join("ca.pem"),
                beat_interval_ms: 200,
                clock_skew_s: 30,
                max_body_bytes: 256 * 1024,
                vote_timeout_ms: 1000,
                claims: Default::default(),
                protocol_min: regmesh_node::config::default_protocol_min(),
                protocol_max: regmesh_node::config::default_protocol_max(),
            });
            cfg.peers = vec![PeerConfig {
                id: other.into(),
                url: format!("https://127.0.0.1:{}", ports[1 - me]),
                kinds: Vec::new(),
                groups: Vec::new(),
            }];
            cfg.centers = ["c1", "c2", "c3"]
                .into_iter()
                .filter(|c| *c != id)
                .map(|c| CenterKey {
                    id: c.into(),
                    public_key: key_hex(&keys.of(c).verifying_key()),
                })
                .collect();
            cfg
        };
        let cfg1 = config(0);
        match start(&cfg1).await {
            Ok(c1) => match start(&config(1)).await {
                Ok(c2) => break (cfg1, c1, c2),
                Err(e) => {
                    c1.shutdown().await;
                    assert!(attempt < 3, "c2 does not start: {e}");
                }
            },
            Err(e) => assert!(attempt < 3, "c1 does not start: {e}"),
        }
    };
    let mesh = c1.mesh.clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while mesh.node_state().as_str() != "active" {
        assert!(Instant::now() < deadline, "c1 never became active");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peer_base = regmesh_node::peer::server::router(mesh.clone());
    Rig {
        api: c1.api.clone(),
        peer: peer_base.clone().layer(Extension(PeerCert(Some(der(&certs["c2"]))))),
        peer_anonymous: peer_base.clone().layer(Extension(PeerCert(None))),
        peer_as_c3: peer_base.layer(Extension(PeerCert(Some(der(&certs["c3"]))))),
        c1,
        c2,
        keys,
        jti: AtomicU64::new(1),
        _dir: dir,
    }
}

impl Rig {
    pub fn token(&self, iss: &str, aud: &str, iat_off_s: i64) -> String {
        let n = self.jti.fetch_add(1, Ordering::Relaxed);
        let mut jti = [0u8; 16];
        jti[..8].copy_from_slice(&n.to_be_bytes());
        let now = now_s().saturating_add_signed(iat_off_s);
        jwt::issue(self.keys.of(iss), iss, aud, now, 60, jti)
    }

    pub async fn shutdown(self) {
        self.c1.shutdown().await;
        self.c2.shutdown().await;
    }
}

pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Answers seen, by route shape and status, printed after each run so a
/// reader sees how deep the inputs got.
#[derive(Default)]
pub struct Tally(pub std::sync::Mutex<std::collections::BTreeMap<(String, u16), u64>>);

impl Tally {
    pub fn add(&self, method: &Method, path: &str, status: StatusCode) {
        let segs: Vec<&str> = path.split('/').collect();
        let shape = match segs.as_slice() {
            ["", "v1", "agents", _] => "/v1/agents/{id}".to_string(),
            ["", "v1", "agents", _, "heartbeat"] => "/v1/agents/{id}/heartbeat".to_string(),
            ["", "heartbeat", "node", _] => "/heartbeat/node/{id}".to_string(),
            ["", "sync", "node", _] => "/sync/node/{id}".to_string(),
            ["", "node", _, "response", _] => "/node/{id}/response/{r}".to_string(),
            ["", "node", _, _] => "/node/{id}/{state}".to_string(),
            ["", "votingphase", "node", _, "response", _] => "/votingphase/node/{id}/response/{r}".to_string(),
            ["", "voting", "peernode", _, "response", _] => "/voting/peernode/{id}/response/{r}".to_string(),
            _ => path.to_string(),
        };
        *self
            .0
            .lock()
            .unwrap()
            .entry((format!("{method} {shape}"), status.as_u16()))
            .or_default() += 1;
    }
    pub fn print(&self, what: &str) {
        for ((path, status), n) in self.0.lock().unwrap().iter() {
            eprintln!("  {what} {status} {path}: {n}");
        }
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Vec<u8>,
}

pub async fn call(router: &Router, req: Request<Body>) -> Answer {
    use hyper::service::Service;
    let svc = hyper_util::service::TowerToHyperService::new(router.clone());
    let resp = tokio::time::timeout(Duration::from_secs(20), svc.call(req))
        .await
        .expect("a request hung for 20 s")
        .expect("routers are infallible");
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let deflated = resp
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"deflate"));
    let body = if content_type.starts_with("text/event-stream") {
        // A watch stream never ends; its opening is enough.
        Vec::new()
    } else {
        let b = tokio::time::timeout(
            Duration::from_secs(20),
            axum::body::to_bytes(resp.into_body(), 64 << 20),
        )
        .await
        .expect("a response body hung")
        .expect("response body");
        if deflated {
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(&b[..])
                .read_to_end(&mut out)
                .expect("a deflated answer inflates");
            out
        } else {
            b.to_vec()
        }
    };
    Answer {
        status,
        content_type,
        body,
    }
}

/// The rules every answer keeps. `changed` names what the request changed
/// in the store, if anything. A HEAD answer has no body by definition.
pub fn check_answer(what: &str, a: &Answer, changed: Option<String>) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(&a.body);
    prop_assert!(a.status != StatusCode::INTERNAL_SERVER_ERROR, "500 for {what}: {text}");
    if !a.status.is_success() {
        if let Some(c) = changed {
            return Err(TestCaseError::fail(format!(
                "a refused request ({}: {text:.300}) changed the store ({c}): {what}",
                a.status
            )));
        }
        if what.starts_with("HEAD ") {
            return Ok(());
        }
        let v: Value = serde_json::from_slice(&a.body)
            .map_err(|e| TestCaseError::fail(format!("{} for {what} is not JSON ({e}): {text:.300}", a.status)))?;
        prop_assert!(
            v.pointer("/error/code").and_then(Value::as_str).is_some()
                || v.get("accepted") == Some(&Value::Bool(false)),
            "{} for {what} has no error code: {text:.300}",
            a.status
        );
    } else if a.content_type.starts_with("application/json") && !a.body.is_empty() {
        serde_json::from_slice::<Value>(&a.body)
            .map_err(|e| TestCaseError::fail(format!("2xx JSON for {what} does not parse ({e}): {text:.300}")))?;
    }
    Ok(())
}

pub fn deflate(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

// ---- shared pieces of inputs -------------------------------------------------

pub fn pick<T: Clone + std::fmt::Debug + 'static>(items: &[T]) -> proptest::sample::Select<T> {
    proptest::sample::select(items.to_vec())
}

/// Bit flips, truncations and insertions of a byte string, chosen by seeds.
pub fn mutate(mut b: Vec<u8>, seeds: &[(u8, u32, u8)]) -> Vec<u8> {
    for &(op, at, x) in seeds {
        let n = b.len();
        let at = at as usize;
        match op % 5 {
            0 if n > 0 => b[at % n] ^= 1 << (x % 8),
            1 => b.truncate(at % (n + 1)),
            2 => {
                let i = at % (n + 1);
                b.insert(i, x);
            }
            3 if n > 0 => {
                let i = at % n;
                let end = (i + 1 + (x as usize % 8)).min(n);
                b[i..end].fill(0xff);
            }
            4 if n > 0 => {
                let i = at % n;
                let end = (i + 1 + (x as usize % 16)).min(n);
                b.drain(i..end);
            }
            _ => {}
        }
    }
    b
}

pub fn seeds() -> impl Strategy<Value = Vec<(u8, u32, u8)>> {
    proptest::collection::vec(any::<(u8, u32, u8)>(), 0..4)
}

pub const IDS: &[&str] = &[
    "did:web:example.com:a1",
    "a1",
    "a2",
    "did:web:example.com%3A8080:a1",
    "did%3Aweb",
    "%2F",
    "%2e%2e",
    "..",
    ".",
    "%zz",
    "%",
    "%C3%A9",
    "%FF%FE",
    "%00",
    "a%20b",
    "a b",
    "é",
    "",
    "~:@+=",
];

pub fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => pick(IDS).prop_map(str::to_string),
        8 => "[ab][0-9]",
        1 => "[a-z0-9:.%_~-]{1,300}",
        2 => "([a-z0-9:.]|%[0-9A-Fa-f]{2}){1,12}",
        1 => Just("a".repeat(257)),
    ]
}

pub fn agent_body() -> impl Strategy<Value = Vec<u8>> {
    let good = || {
        json!({
            "addresses": ["2001:db8::1"],
            "endpoints": [{"url": "https://a.example.com/a2a", "protocol": "a2a"}],
            "status": "online",
            "capabilities": [{"name": "translate", "tags": ["en-fr"]}],
            "lease_s": 30
        })
    };
    prop_oneof![
        8 => Just(serde_json::to_vec(&good()).unwrap()),
        4 => (prop_oneof![2 => Just(Vec::new()), 1 => seeds()], pick(&[
            json!(null),
            json!({"addresses": ["fe80::1"]}),
            json!({"addresses": ["2001:db8::1"], "metadata": {"x": [1.5e300, -0.0, 18446744073709551615u64]}}),
            json!({"addresses": ["2001:db8::1"], "lease_s": 18446744073709551615u64}),
            json!({"addresses": ["2001:db8::1"], "id": "someone-else"}),
            json!({"addresses": ["2001:db8::1"], "visibility": "authorized:partners"}),
            json!({"addresses": ["2001:db8::1"], "capabilities": [{"name": "a"}, {"name": "a"}]}),
            json!([1, 2]),
        ])).prop_map(move |(s, extra)| {
            let mut v = good();
            if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                for (k, x) in e {
                    m.insert(k.clone(), x.clone());
                }
            } else if !extra.is_null() {
                v = extra;
            }
            mutate(serde_json::to_vec(&v).unwrap(), &s)
        }),
        1 => Just(b"{\"addresses\":[\"2001:db8::1\"],\"addresses\":[\"::1\"]}".to_vec()),
        1 => Just(format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes()),
        1 => Just(format!("{{\"addresses\":[\"2001:db8::1\"],\"metadata\":{}1{}}}", "{\"a\":".repeat(100), "}".repeat(100)).into_bytes()),
        1 => Just(vec![0xff, 0xfe, b'{', b'}']),
        1 => Just(vec![b' '; 70 * 1024]),
        1 => proptest::collection::vec(any::<u8>(), 0..64),
    ]
}

/// A record of some origin, signed by some key, maybe changed afterwards.
#[derive(Debug, Clone)]
pub struct RecSpec {
    pub origin: &'static str,
    pub signer: &'static str,
    pub kind: &'static str,
    pub id: String,
    pub wall_ms: Option<u64>,
    pub seq: u64,
    pub deleted: bool,
    pub body: Value,
    pub visibility: Visibility,
    pub expires_at_ms: Option<u64>,
    pub damage: Vec<(u8, u32, u8)>,
}

pub fn make_record(keys: &Keys, s: &RecSpec) -> String {
    let mut r = Record {
        kind: s.kind.into(),
        id: s.id.chars().take(200).collect(),
        origin: s.origin.into(),
        // An old tombstone is purged by c1's sweeper in the background
        // (version time + horizon), which would look like a refused request
        // changing the store: tombstones are always recent.
        version: Hlc::new(
            s.wall_ms.filter(|w| !s.deleted || *w > now_ms()).unwrap_or_else(now_ms),
            0,
        ),
        seq: s.seq,
        // c1's sweeper would expire its own records with a lease in the
        // background, which would look like a refused request changing the
        // store.
        expires_at_ms: s.expires_at_ms.filter(|_| s.origin != "c1"),
        visibility: s.visibility.clone(),
        deleted: s.deleted,
        body: if s.deleted {
            "{}".into()
        } else {
            canonical_json(&s.body)
        },
        sig: [0; 64],
    };
    keys.of(s.signer).sign_record(&mut r);
    B64.encode(mutate(encode(&r), &s.damage))
}

/// The records a request body carries that decode (signature not checked).
pub fn carried(body: &[u8]) -> Vec<Record> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    v.get("records")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|it| B64.decode(it.as_str()?).ok())
        .filter_map(|b| regmesh_core::codec::decode(&b).ok())
        .collect()
}

/// Starts a center with the agent front, as the binary does.
async fn start(cfg: &Config) -> Result<regmesh_node::Running, regmesh_node::StartError> {
    regmesh_node::NodeBuilder::new(cfg.clone())
        .front(regmesh_front_agent::AgentFront::new())
        .start()
        .await
}
