//! Structured random requests against the real routers, in process: the
//! client API router and the peer router of a center (c1) that is in a live
//! two-center mesh with c2 (both started with `regmesh_node::start`, real
//! TLS between them). Requests are built from valid shapes and mutated:
//! odd ids and `%XX` escapes, bad query strings and cursors, wrong content
//! types and encodings, deflate bombs, tokens that are stale, replayed, for
//! someone else or garbage, signed records that were changed, huge
//! numbers, deep nesting, invalid UTF-8.
//!
//! Every response must be a clear answer: never 500 for bad input, a JSON
//! `{"error": {"code", "message"}}` body on every refusal, and a refusal
//! changes nothing (the center's change counter does not move). No panic
//! anywhere in the process, spawned tasks included (a panic hook counts
//! them).
//!
//! Budget: 250 client and 400 peer requests by default, about 2 s in a
//! debug build; `PROPTEST_CASES` overrides both counts (`scripts/fuzz`).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::{Extension, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
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

const API_TOKEN: &str = "fuzz-secret-token";

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Panics by thread name. Tokio catches the panics of spawned tasks, so
/// the hook is the only place they show; each test runs its centers on a
/// runtime whose threads carry the test's own prefix.
static PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn count_panics() {
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
fn panics_on(prefix: &str) -> usize {
    PANICS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|n| n.starts_with(prefix))
        .count()
}

/// A runtime whose worker threads are named `prefix-…`.
fn runtime(prefix: &str) -> tokio::runtime::Runtime {
    count_panics();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(format!("{prefix}-worker"))
        .build()
        .unwrap()
}

// ---- the rig: c1 and c2 in a live mesh ---------------------------------------

struct Rig {
    c1: Running,
    c2: Running,
    api: Router,
    peer: Router,
    /// The router as an unauthenticated caller (no client certificate) sees it.
    peer_anonymous: Router,
    /// c3's certificate: a valid mesh certificate of a center that is not a peer.
    peer_as_c3: Router,
    keys: Keys,
    jti: AtomicU64,
    _dir: tempfile::TempDir,
}

/// Identities of c1 (under test), c2 (its peer), c3 (known, not a peer) and
/// c9 (unknown).
struct Keys {
    c1: Identity,
    c2: Identity,
    c3: Identity,
    c9: Identity,
}

impl Keys {
    fn of(&self, id: &str) -> &Identity {
        match id {
            "c1" => &self.c1,
            "c2" => &self.c2,
            "c3" => &self.c3,
            _ => &self.c9,
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn der(pem: &str) -> Arc<CertificateDer<'static>> {
    Arc::new(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
}

async fn rig() -> Rig {
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
    let (cfg1, c1, c2) = loop {
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
        match regmesh_node::start(&cfg1).await {
            Ok(c1) => match regmesh_node::start(&config(1)).await {
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
        api: regmesh_node::api::router(c1.center.clone(), &cfg1, Some(mesh)),
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
    fn token(&self, iss: &str, aud: &str, iat_off_s: i64) -> String {
        let n = self.jti.fetch_add(1, Ordering::Relaxed);
        let mut jti = [0u8; 16];
        jti[..8].copy_from_slice(&n.to_be_bytes());
        let now = now_s().saturating_add_signed(iat_off_s);
        jwt::issue(self.keys.of(iss), iss, aud, now, 60, jti)
    }

    async fn shutdown(self) {
        self.c1.shutdown().await;
        self.c2.shutdown().await;
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Answers seen, by route shape and status, printed after each run so a
/// reader sees how deep the inputs got.
#[derive(Default)]
struct Tally(std::sync::Mutex<std::collections::BTreeMap<(String, u16), u64>>);

impl Tally {
    fn add(&self, method: &Method, path: &str, status: StatusCode) {
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
    fn print(&self, what: &str) {
        for ((path, status), n) in self.0.lock().unwrap().iter() {
            eprintln!("  {what} {status} {path}: {n}");
        }
    }
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

async fn call(router: &Router, req: Request<Body>) -> Answer {
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
fn check_answer(what: &str, a: &Answer, changed: Option<String>) -> Result<(), TestCaseError> {
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

fn deflate(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

// ---- shared pieces of inputs -------------------------------------------------

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &[T]) -> proptest::sample::Select<T> {
    proptest::sample::select(items.to_vec())
}

/// Bit flips, truncations and insertions of a byte string, chosen by seeds.
fn mutate(mut b: Vec<u8>, seeds: &[(u8, u32, u8)]) -> Vec<u8> {
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

fn seeds() -> impl Strategy<Value = Vec<(u8, u32, u8)>> {
    proptest::collection::vec(any::<(u8, u32, u8)>(), 0..4)
}

const IDS: &[&str] = &[
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

fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => pick(IDS).prop_map(str::to_string),
        8 => "[ab][0-9]",
        1 => "[a-z0-9:.%_~-]{1,300}",
        2 => "([a-z0-9:.]|%[0-9A-Fa-f]{2}){1,12}",
        1 => Just("a".repeat(257)),
    ]
}

fn agent_body() -> impl Strategy<Value = Vec<u8>> {
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

// ---- the client API ----------------------------------------------------------

#[derive(Debug, Clone)]
struct ApiReq {
    method: Method,
    path: String,
    query: String,
    auth: Option<String>,
    content_type: Option<String>,
    if_match: Option<String>,
    last_event_id: Option<String>,
    body: Vec<u8>,
}

const QUERY_PARTS: &[&str] = &[
    "limit=1",
    "limit=0",
    "limit=-1",
    "limit=1.5",
    "limit=99999999999999999999999",
    "limit=1000000",
    "limit=",
    "cursor=c1.6131",
    "cursor=c1.",
    "cursor=c1.6",
    "cursor=c1.zz",
    "cursor=c1.ff",
    "cursor=c1.c3a9",
    "cursor=c1.2f",
    "cursor=c2.6131",
    "cursor=%FF",
    "cursor=c1.%36%31",
    "status=online",
    "status=",
    "capability=translate",
    "tag=en-fr",
    "origin=c2",
    "origin=%00",
    "since=0",
    "since=18446744073709551615",
    "since=18446744073709551616",
    "since=-1",
    "bogus=1",
    "limit=1&limit=2",
    "%=%",
    "&&",
    "=",
    "a=%E0%A4%A",
];

/// One `key=value` of a query string: from the pool, a cursor over random
/// bytes (valid hex of anything, percent-escaped), or random escapes.
fn query_part() -> impl Strategy<Value = String> {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    prop_oneof![
        6 => pick(QUERY_PARTS).prop_map(str::to_string),
        2 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(move |b| format!("cursor=c1.{}", hex(&b))),
        1 => "(limit|cursor|status|since|tag|origin|capability)=([a-z0-9.]|%[0-9A-Fa-f]{2}){0,12}",
        1 => "([a-z%&=+;]|%[0-9A-Fa-f]{2}){0,16}",
    ]
}

fn api_req() -> impl Strategy<Value = ApiReq> {
    let path = prop_oneof![
        6 => id_text().prop_map(|id| format!("/v1/agents/{id}")),
        2 => id_text().prop_map(|id| format!("/v1/agents/{id}/heartbeat")),
        3 => Just("/v1/agents".to_string()),
        1 => pick(&["/v1/watch", "/v1/status", "/v1/peers", "/metrics", "/healthz", "/v1/agents/", "/v1//agents", "/v1/agents/a1/b/c", "/nope"])
            .prop_map(str::to_string),
    ];
    let method = prop_oneof![
        3 => Just(Method::GET),
        4 => Just(Method::PUT),
        1 => Just(Method::DELETE),
        1 => Just(Method::POST),
        1 => pick(&[Method::HEAD, Method::PATCH, Method::OPTIONS]),
    ];
    let auth = prop_oneof![
        8 => Just(Some(format!("Bearer {API_TOKEN}"))),
        1 => pick(&["Bearer reader-token-0123456789", "bearer fuzz-secret-token", "Bearer ", "Basic Zm9vOmJhcg==", API_TOKEN, "Bearer fuzz-secret-tokeN"])
            .prop_map(|s| Some(s.to_string())),
        1 => Just(None),
    ];
    let ct = prop_oneof![
        6 => Just(Some("application/json".to_string())),
        1 => pick(&["application/json; charset=utf-8", "APPLICATION/JSON", "text/plain", "application/jsonx", "", "application/json\u{7f}"])
            .prop_map(|s| Some(s.to_string())),
        1 => Just(None),
    ];
    let if_match = prop_oneof![
        6 => Just(None),
        1 => pick(&["\"1.0\"", "*", "\"+1.+2\"", "1", "\"18446744073709551616.0\"", "W/\"1.0\"", ""])
            .prop_map(|s| Some(s.to_string())),
    ];
    (
        method,
        path,
        proptest::collection::vec(query_part(), 0..3),
        auth,
        ct,
        if_match,
        proptest::option::weighted(0.1, pick(&["0", "x", "18446744073709551615", "-1"])),
        agent_body(),
    )
        .prop_map(|(method, path, q, auth, content_type, if_match, lei, body)| ApiReq {
            method,
            path,
            query: q.join("&"),
            auth,
            content_type,
            if_match,
            last_event_id: lei.map(str::to_string),
            body,
        })
}

fn build_api(r: &ApiReq) -> Option<Request<Body>> {
    let uri = if r.query.is_empty() {
        r.path.clone()
    } else {
        format!("{}?{}", r.path, r.query)
    };
    let mut b = Request::builder().method(r.method.clone()).uri(uri);
    if let Some(a) = &r.auth {
        b = b.header("authorization", a);
    }
    if let Some(c) = &r.content_type {
        b = b.header("content-type", c);
    }
    if let Some(m) = &r.if_match {
        b = b.header("if-match", m);
    }
    if let Some(l) = &r.last_event_id {
        b = b.header("last-event-id", l);
    }
    // A URI or header the HTTP layer itself refuses never reaches the router.
    b.body(Body::from(r.body.clone())).ok()
}

#[test]
fn client_api_answers_every_request_clearly() {
    let rt = runtime("client-api");
    let rig = rt.block_on(rig());
    let started = Instant::now();
    let mut runner = TestRunner::new(RunnerConfig {
        cases: cases(250),
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let tally = Tally::default();
    let result = runner.run(&api_req(), |r| {
        let Some(req) = build_api(&r) else { return Ok(()) };
        let center = rig.c1.center.clone();
        let before = center.head();
        let a = rt.block_on(call(&rig.api, req));
        let after = center.head();
        tally.add(&r.method, &r.path, a.status);
        let what = format!("{} {}?{}", r.method, r.path, r.query);
        if r.method == Method::GET || r.method == Method::HEAD {
            prop_assert_eq!(before, after, "a read changed the store: {}", what);
        }
        let changed = (before != after).then(|| format!("change counter {before} -> {after}"));
        check_answer(&what, &a, changed)
    });
    let panics = panics_on("client-api");
    tally.print("client");
    eprintln!(
        "client API: {} requests in {:?}, {panics} panics",
        cases(250),
        started.elapsed()
    );
    // The writer survived: a plain create still works.
    let ok = rt.block_on(call(
        &rig.api,
        Request::put("/v1/agents/after-fuzz")
            .header("authorization", format!("Bearer {API_TOKEN}"))
            .header("content-type", "application/json")
            .body(Body::from(r#"{"addresses":["2001:db8::9"]}"#))
            .unwrap(),
    ));
    rt.block_on(rig.shutdown());
    result.unwrap();
    assert!(ok.status.is_success(), "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(panics_on("client-api"), 0, "panics in spawned tasks");
}

// ---- the peer API --------------------------------------------------------------

#[derive(Debug, Clone)]
enum Auth {
    /// A fresh token from c2 on c2's certificate.
    Good,
    /// The same token twice.
    Replayed,
    NoToken,
    NoCert,
    /// c3's certificate (a mesh member, not our peer) with its own token.
    NotAPeer,
    /// c2's token on c3's certificate.
    WrongCert,
    /// Tokens that fail one check each.
    Stale,
    WrongAudience,
    SignedByOther,
    Garbage(Vec<u8>),
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        16 => Just(Auth::Good),
        1 => Just(Auth::Replayed),
        1 => Just(Auth::NoToken),
        1 => Just(Auth::NoCert),
        1 => Just(Auth::NotAPeer),
        1 => Just(Auth::WrongCert),
        1 => Just(Auth::Stale),
        1 => Just(Auth::WrongAudience),
        1 => Just(Auth::SignedByOther),
        1 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(Auth::Garbage),
    ]
}

/// A record of some origin, signed by some key, maybe changed afterwards.
#[derive(Debug, Clone)]
struct RecSpec {
    origin: &'static str,
    signer: &'static str,
    kind: &'static str,
    id: String,
    wall_ms: Option<u64>,
    seq: u64,
    deleted: bool,
    body: Value,
    visibility: Visibility,
    expires_at_ms: Option<u64>,
    damage: Vec<(u8, u32, u8)>,
}

fn rec_spec() -> impl Strategy<Value = RecSpec> {
    let origin = prop_oneof![12 => Just("c2"), 1 => Just("c3"), 1 => Just("c1"), 1 => Just("c9")];
    (
        origin,
        prop_oneof![14 => Just(None), 1 => pick(&["c2", "c3", "c9"]).prop_map(Some)],
        prop_oneof![14 => Just("agent"), 1 => pick(&["", "note", "agent\u{0}", "Agent"])],
        prop_oneof![4 => "r[0-9]{1,2}", 1 => id_text()],
        prop_oneof![8 => Just(None), 1 => pick(&[0u64, 1, u64::MAX, 1 << 62]).prop_map(Some)],
        // Seqs near u64::MAX are left out: an origin-signed record with seq
        // u64::MAX becomes that origin's flood counter and watermark and
        // overflows them (see the two ignored tests at the end).
        prop_oneof![4 => 1u64..200, 1 => pick(&[0u64, 1 << 62, u64::MAX / 2])],
        prop_oneof![5 => Just(false), 1 => Just(true)],
        pick(&[
            json!({"addresses": ["2001:db8::1"], "capabilities": [], "endpoints": [], "status": "online"}),
            json!({"addresses": ["2001:db8::2"], "capabilities": [{"name": "t", "tags": [], "visibility": "authorized:g1"}], "endpoints": [], "status": "offline", "lease_s": 30}),
            json!({}),
        ]),
        pick(&[
            Visibility::Public,
            Visibility::Local,
            Visibility::Authorized("g1".into()),
            Visibility::Authorized("".into()),
        ]),
        prop_oneof![4 => Just(None), 1 => pick(&[0u64, u64::MAX]).prop_map(Some)],
        prop_oneof![8 => Just(Vec::new()), 1 => seeds()],
    )
        .prop_map(
            |(origin, signer, kind, id, wall_ms, seq, deleted, body, visibility, expires_at_ms, damage)| RecSpec {
                origin,
                signer: signer.unwrap_or(origin),
                kind,
                id,
                wall_ms,
                seq,
                deleted,
                body,
                visibility,
                expires_at_ms,
                damage,
            },
        )
}

fn make_record(keys: &Keys, s: &RecSpec) -> String {
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

#[derive(Debug, Clone)]
enum PeerBody {
    Records {
        recs: Vec<RecSpec>,
        extra: Vec<Value>,
        watermarks: Option<Value>,
    },
    Json(Value),
    Raw(Vec<u8>),
    /// A deflate stream that inflates past every body limit.
    Bomb,
}

fn peer_json() -> impl Strategy<Value = Value> {
    let number = pick(&[
        json!(0),
        json!(1),
        json!(-1),
        json!(1.5),
        json!(u64::MAX),
        json!(1e300),
        json!("5"),
        json!(null),
    ]);
    let word = pick(&[
        "c1",
        "c2",
        "c3",
        "c9",
        "",
        "agent",
        "active",
        "inactive",
        "sync",
        "state",
        "sync-state",
        "yes",
        "bogus",
    ])
    .prop_map(Value::from);
    let marks = proptest::collection::btree_map(pick(&["c1", "c2", "c3", "c9", ""]), number.clone(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()));
    let digests = proptest::collection::btree_map(
        pick(&["c1", "c2", "c3"]),
        pick(&[
            json!({"agent": "00"}),
            json!({"agent": 5}),
            json!({"agent@authorized:g1+public": "ff".repeat(32)}),
            json!({"": ""}),
            json!([1]),
        ]),
        0..3,
    )
    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()));
    let field = prop_oneof![
        pick(&["state", "type", "id", "origin", "kind", "reason"])
            .prop_flat_map(move |k| word.clone().prop_map(move |w| (k.to_string(), w))),
        pick(&["interval_ms", "after", "limit", "deadline_ms", "full"])
            .prop_flat_map(move |k| number.clone().prop_map(move |n| (k.to_string(), n))),
        marks.prop_map(|m| ("watermarks".to_string(), m)),
        digests.prop_map(|d| ("digests".to_string(), d)),
        pick(&[
            json!({"kinds": ["agent"], "groups": ["g1"]}),
            json!({"kinds": 1}),
            json!([]),
            json!({"kinds": [1, null]})
        ])
        .prop_map(|p| ("policy".to_string(), p)),
    ];
    prop_oneof![
        8 => proptest::collection::vec(field, 0..6).prop_map(|fs| Value::Object(fs.into_iter().collect())),
        1 => pick(&[json!("active"), json!("sleepy"), json!(null), json!(7), json!([{"state": "active"}])]),
    ]
}

fn peer_body() -> impl Strategy<Value = PeerBody> {
    prop_oneof![
        6 => (
            proptest::collection::vec(rec_spec(), 0..4),
            proptest::collection::vec(pick(&[json!(1), json!(null), json!("!!"), json!(""), json!("AQ")]), 0..2),
            proptest::option::weighted(0.3, pick(&[json!({"c2": 5}), json!({"c3": 1000000000u64}), json!({"c1": u64::MAX}), json!([1])])),
        ).prop_map(|(recs, extra, watermarks)| PeerBody::Records { recs, extra, watermarks }),
        6 => peer_json().prop_map(PeerBody::Json),
        1 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(PeerBody::Raw),
        1 => pick(&[
            b"active".to_vec(),
            b"\"sync\"".to_vec(),
            b"".to_vec(),
            b" \n".to_vec(),
            vec![0xff, 0xfe],
            format!("{}{}", "[".repeat(3000), "]".repeat(3000)).into_bytes(),
            format!("{{\"records\":[{}]}}", vec!["\"\""; 1100].join(",")).into_bytes(),
        ]).prop_map(PeerBody::Raw),
        1 => Just(PeerBody::Bomb),
    ]
}

#[derive(Debug, Clone)]
struct PeerReq {
    method: Method,
    path: String,
    auth: Auth,
    headers: Vec<(&'static str, String)>,
    body: PeerBody,
    deflate: bool,
    encoding: Option<&'static str>,
}

fn peer_req() -> impl Strategy<Value = PeerReq> {
    let node = prop_oneof![6 => Just("c2"), 1 => pick(&["c1", "c3", "c9", "", "c2 "])];
    let route = (
        node.clone(),
        pick(&["yes", "no", "maybe", ""]),
        pick(&["active", "inactive", "sync", "x"]),
    )
        .prop_flat_map(|(n, r, st)| {
            pick(&[
                (Method::POST, "/commit".to_string()),
                (Method::POST, "/commit".to_string()),
                (Method::POST, "/commit".to_string()),
                (Method::POST, format!("/heartbeat/node/{n}")),
                (Method::POST, format!("/heartbeat/node/{n}")),
                (Method::POST, "/mesh/v1/pull".to_string()),
                (Method::POST, "/mesh/v1/pull".to_string()),
                (Method::POST, "/mesh/v1/hello".to_string()),
                (Method::POST, "/mesh/v1/notify".to_string()),
                (Method::POST, "/mesh/v1/rfi".to_string()),
                (Method::POST, "/mesh/v1/other".to_string()),
                (Method::POST, "/voting".to_string()),
                (Method::POST, "/voting".to_string()),
                (Method::POST, format!("/votingphase/node/{n}/response/{r}")),
                (Method::POST, format!("/voting/peernode/{n}/response/{r}")),
                (Method::POST, format!("/node/{n}/response/{r}")),
                (Method::POST, format!("/node/{n}/{st}")),
                (Method::PUT, format!("/sync/node/{n}")),
                (Method::GET, "/state".to_string()),
                (Method::GET, "/commit".to_string()),
                (Method::POST, "/nope".to_string()),
            ])
        });
    let counter = prop_oneof![
        4 => (1u64..1_000_000).prop_map(|n| n.to_string()),
        // Counters within 4096 of u64::MAX are left out: they panic in the
        // dedup window (counter_at_the_top_of_u64_is_refused, ignored).
        1 => pick(&["0", "18446744073709547519", "18446744073709551616", "-1", "", "1e3", " 7"]).prop_map(str::to_string),
    ];
    let header = prop_oneof![
        4 => node.prop_map(|n| ("drip-node-id", n.to_string())),
        4 => counter.clone().prop_map(|c| ("drip-node-counter", c)),
        1 => pick(&["true", "false", "TRUE", "1", ""]).prop_map(|v| ("drip-node-counter-reset", v.to_string())),
        2 => pick(&["update", "sync", "Update", "x", ""]).prop_map(|v| ("drip-transaction-type", v.to_string())),
        1 => pick(&["true", "false", "yes"]).prop_map(|v| ("drip-sync-complete", v.to_string())),
        1 => counter.prop_map(|c| ("regmesh-seq-from", c)),
        1 => pick(&["deflate", "gzip", "deflate;q=0", "*"]).prop_map(|v| ("accept-encoding", v.to_string())),
    ];
    let route_and_body = route.prop_flat_map(|(method, path)| {
        let body = prop_oneof![3 => shaped_body(&path), 2 => peer_body()];
        (Just(method), Just(path), body)
    });
    (
        route_and_body,
        auth(),
        proptest::collection::vec(header, 0..6),
        prop_oneof![4 => Just(false), 1 => Just(true)],
        prop_oneof![8 => Just(None), 1 => pick(&["gzip", "DEFLATE", "identity", "deflate, deflate", ""]).prop_map(Some)],
    )
        .prop_map(|((method, path, body), auth, mut headers, deflate, encoding)| {
            // Most calls name the sender as DRiP wants, so they reach the body.
            if !headers.iter().any(|(k, _)| *k == "drip-node-id") {
                headers.push(("drip-node-id", "c2".into()));
            }
            if !headers.iter().any(|(k, _)| *k == "drip-node-counter") {
                headers.push(("drip-node-counter", (now_ms() % 1_000_000_000).to_string()));
            }
            PeerReq {
                method,
                path,
                auth,
                headers,
                body,
                deflate,
                encoding,
            }
        })
}

/// A body of the shape the route expects, with field values from pools of
/// valid and edge values, so most calls get past the first check.
fn shaped_body(path: &str) -> BoxedStrategy<PeerBody> {
    let number = || {
        prop_oneof![
            4 => (0u64..300).prop_map(Value::from),
            1 => pick(&[json!(u64::MAX), json!(-1), json!(1.5), json!("7"), json!(null), json!(1e300)]),
        ]
    };
    let origin = || pick(&["c1", "c2", "c3", "c9", "", "c2\u{0}"]).prop_map(Value::from);
    match path {
        "/commit" => (
            proptest::collection::vec(rec_spec(), 1..4),
            proptest::option::weighted(0.2, pick(&[json!({"c2": 5}), json!({"c3": 7}), json!({"c1": 1})])),
        )
            .prop_map(|(recs, watermarks)| PeerBody::Records {
                recs,
                extra: Vec::new(),
                watermarks,
            })
            .boxed(),
        "/mesh/v1/pull" => (origin(), number(), number())
            .prop_map(|(o, a, l)| PeerBody::Json(json!({"origin": o, "after": a, "limit": l})))
            .boxed(),
        "/mesh/v1/hello" => origin().prop_map(|o| PeerBody::Json(json!({"id": o}))).boxed(),
        "/voting" => (
            pick(&["agent", "agent", "agent", "note", ""]),
            id_text(),
            pick(&[500i64, 900, 0, -1000, 59_000, 61_000, i64::MAX]),
        )
            .prop_map(|(kind, id, off)| {
                let deadline = if off == i64::MAX {
                    json!(u64::MAX)
                } else {
                    json!(now_ms().saturating_add_signed(off))
                };
                PeerBody::Json(json!({"kind": kind, "id": id, "deadline_ms": deadline}))
            })
            .boxed(),
        "/mesh/v1/notify" | "/mesh/v1/rfi" => (
            pick(&["state", "sync-state", "", "other"]),
            pick(&["active", "inactive", "sync", "x"]),
        )
            .prop_map(|(t, st)| PeerBody::Json(json!({"type": t, "state": st})))
            .boxed(),
        _ => peer_json().prop_map(PeerBody::Json).boxed(),
    }
}

fn peer_body_bytes(rig: &Rig, r: &PeerReq) -> Vec<u8> {
    match &r.body {
        PeerBody::Records {
            recs,
            extra,
            watermarks,
        } => {
            // A version far ahead of the clock only alone in its batch: with
            // others, the batch is refused but the others are applied
            // (a_batch_refused_for_one_record_changes_nothing, ignored).
            let alone = recs.len() == 1;
            let mut items: Vec<Value> = recs
                .iter()
                .map(|s| {
                    let mut s = s.clone();
                    if !alone && s.wall_ms.is_some_and(|w| w > now_ms()) {
                        s.wall_ms = None;
                    }
                    Value::String(make_record(&rig.keys, &s))
                })
                .collect();
            items.extend(extra.iter().cloned());
            let mut v = json!({ "records": items });
            if let Some(w) = watermarks {
                v["watermarks"] = w.clone();
            }
            if r.path == "/voting" {
                // A vote of the same shapes: kind, id, deadline.
                v = json!({"kind": "agent", "id": recs.first().map_or("v1".to_string(), |s| s.id.clone()), "deadline_ms": now_ms() + 500});
            }
            serde_json::to_vec(&v).unwrap()
        }
        PeerBody::Json(v) => serde_json::to_vec(v).unwrap(),
        PeerBody::Raw(b) => b.clone(),
        PeerBody::Bomb => vec![b' '; 4 << 20],
    }
}

/// The records a request body carries that decode (signature not checked).
fn carried(body: &[u8]) -> Vec<Record> {
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

fn build_peer(rig: &Rig, r: &PeerReq) -> Option<(Router, Request<Body>, Vec<Record>)> {
    let mut body = peer_body_bytes(rig, r);
    let records = carried(&body);
    let mut b = Request::builder().method(r.method.clone()).uri(&r.path);
    for (k, v) in &r.headers {
        b = b.header(*k, v.as_str());
    }
    let bomb = matches!(r.body, PeerBody::Bomb);
    if r.deflate || bomb {
        body = deflate(&body);
        b = b.header("content-encoding", "deflate");
    } else if let Some(e) = r.encoding {
        b = b.header("content-encoding", e);
    }
    let (router, token) = match &r.auth {
        Auth::Good => (&rig.peer, Some(rig.token("c2", "c1", 0))),
        Auth::Replayed => {
            let t = rig.token("c2", "c1", 0);
            let first = Request::get("/state")
                .header("authorization", &t)
                .header("drip-node-id", "c2")
                .body(Body::empty())
                .unwrap();
            let _ = futures_block(call(&rig.peer, first));
            (&rig.peer, Some(t))
        }
        Auth::NoToken => (&rig.peer, None),
        Auth::NoCert => (&rig.peer_anonymous, Some(rig.token("c2", "c1", 0))),
        Auth::NotAPeer => (&rig.peer_as_c3, Some(rig.token("c3", "c1", 0))),
        Auth::WrongCert => (&rig.peer_as_c3, Some(rig.token("c2", "c1", 0))),
        Auth::Stale => (&rig.peer, Some(rig.token("c2", "c1", -3600))),
        Auth::WrongAudience => (&rig.peer, Some(rig.token("c2", "c3", 0))),
        Auth::SignedByOther => {
            // c9's signature over claims that name c2.
            let n = rig.jti.fetch_add(1, Ordering::Relaxed);
            let mut jti = [0u8; 16];
            jti[..8].copy_from_slice(&n.to_be_bytes());
            let forged = jwt::issue(&rig.keys.c9, "c2", "c1", now_s(), 60, jti);
            (&rig.peer, Some(forged))
        }
        Auth::Garbage(g) => (&rig.peer, Some(format!("Bearer {}", String::from_utf8_lossy(g)))),
    };
    if let Some(t) = token {
        b = b.header("authorization", t);
    }
    b.body(Body::from(body)).ok().map(|req| (router.clone(), req, records))
}

/// Runs a future to completion from inside a runtime's `block_on` (the
/// replay case needs one call before the one under test).
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[test]
fn peer_api_answers_every_request_clearly() {
    let rt = runtime("peer-api");
    let rig = rt.block_on(rig());
    let started = Instant::now();
    let mut runner = TestRunner::new(RunnerConfig {
        cases: cases(400),
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let tally = Tally::default();
    let result = runner.run(&peer_req(), |r| {
        let center = rig.c1.center.clone();
        rt.block_on(async {
            let Some((router, req, records)) = build_peer(&rig, &r) else {
                return Ok(());
            };
            // The mesh is live (beats, pulls, purges run meanwhile), so a
            // refusal is judged by what it carried: none of its records
            // became the stored version.
            let held = |r: &Record| center.get_held(&r.kind, &r.id).ok().flatten();
            let before: Vec<Option<Record>> = records.iter().map(held).collect();
            let a = call(&router, req).await;
            tally.add(&r.method, &r.path, a.status);
            let changed = records
                .iter()
                .zip(&before)
                .find(|(r, b)| b.as_ref() != Some(*r) && held(r).as_ref() == Some(*r))
                .map(|(r, _)| format!("{}/{} of {} was applied", r.kind, r.id, r.origin));
            let what = format!("{} {} ({:?}, {:?})", r.method, r.path, r.auth, r.headers);
            if a.status == StatusCode::METHOD_NOT_ALLOWED && a.body.is_empty() {
                // Known: the peer router answers a wrong method with an
                // empty 405 (peer_wrong_method_gets_a_json_error, ignored).
                prop_assert!(changed.is_none());
                return Ok(());
            }
            check_answer(&what, &a, changed)
        })
    });
    let panics = panics_on("peer-api");
    tally.print("peer");
    eprintln!(
        "peer API: {} requests in {:?}, {panics} panics",
        cases(400),
        started.elapsed()
    );
    // c1 still takes a genuine flood from c2 afterwards.
    let genuine = RecSpec {
        origin: "c2",
        signer: "c2",
        kind: "agent",
        id: "after-fuzz".into(),
        wall_ms: None,
        seq: 1_000_000,
        deleted: false,
        body: json!({"addresses": ["2001:db8::1"], "capabilities": [], "endpoints": [], "status": "online"}),
        visibility: Visibility::Public,
        expires_at_ms: None,
        damage: Vec::new(),
    };
    let body = serde_json::to_vec(&json!({"records": [make_record(&rig.keys, &genuine)]})).unwrap();
    let req = Request::post("/commit")
        .header("authorization", rig.token("c2", "c1", 0))
        .header("drip-node-id", "c2")
        .header("drip-node-counter", "999999999999")
        .body(Body::from(body))
        .unwrap();
    let ok = rt.block_on(call(&rig.peer, req));
    let held = rig.c1.center.get("agent", "after-fuzz").unwrap();
    rt.block_on(rig.shutdown());
    result.unwrap();
    assert!(ok.status.is_success(), "{}", String::from_utf8_lossy(&ok.body));
    assert!(held.is_some(), "the genuine flood was not applied");
    assert_eq!(panics_on("peer-api"), 0, "panics in spawned tasks");
}

/// A record its origin signed whose body is not an agent is applied and
/// then served as one (issue 11, item 5). Kept here as the fuzz regression.
#[test]
#[ignore = "issue 11 item 5: replicated records are not checked against their kind (crates/node/src/center.rs verify_remote); owned by another helper"]
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
#[ignore = "crates/node/src/peer/server.rs router(): no method_not_allowed_fallback, empty 405; owned by another helper"]
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
#[ignore = "panics in crates/proto/src/dedup.rs:136 (counter + 1 overflows); owned by another helper"]
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
#[ignore = "panics in crates/proto/src/sync.rs:35 (watermark + 1 overflows after a sync set it to u64::MAX); owned by another helper"]
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
/// clock is refused with 400 ("remote clock is … ahead"), but its first
/// record has been applied: the writer checks the drift per record, after
/// the earlier ones of the batch were merged (crates/node/src/center.rs,
/// `apply_verified` → `submit_all`). PROTOCOL.md ("Flooding") says one bad
/// record refuses the whole message and nothing changes.
#[test]
#[ignore = "partial apply of a refused /commit batch (crates/node/src/center.rs apply_verified/submit_all); owned by another helper"]
fn a_batch_refused_for_one_record_changes_nothing() {
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
    let before = rig.c1.center.head();
    let req = Request::post("/commit")
        .header("authorization", rig.token("c2", "c1", 0))
        .header("drip-node-id", "c2")
        .header("drip-node-counter", "12")
        .body(Body::from(body))
        .unwrap();
    let a = rt.block_on(call(&rig.peer, req));
    let after = rig.c1.center.head();
    let p1 = rig.c1.center.get("agent", "p1").unwrap();
    rt.block_on(rig.shutdown());
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    assert_eq!(before, after, "a refused batch changed the store");
    assert!(p1.is_none(), "the first record of a refused batch was applied");
}
