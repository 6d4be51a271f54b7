//! Structured random calls through the real peer router of a center in a
//! live mesh (see `random/mod.rs`), on every DRiP and `/mesh/v1` route:
//! flood and sync batches of signed records (changed after signing, of
//! unknown origins, signed by the wrong key, with huge seqs and versions),
//! plain and deflated bodies and deflate bombs, beats, pulls, votes and
//! vote answers, hello, notify and rfi, headers with bad counters, and
//! tokens that are stale, replayed, for someone else, on the wrong
//! certificate or garbage.
//!
//! Every answer must be clear: never 500 for bad input, a JSON error on
//! every refusal, and a refused call applies none of the records it refused
//! (the mesh is live, so the change counter alone would also count its
//! beats, pulls and purges); no task panics. c1 still takes a genuine flood
//! afterwards. Inputs that still fail are kept in `peer_regressions.rs`.
//!
//! Budget: 400 calls by default, about 1 s in a debug build;
//! `PROPTEST_CASES` overrides it (`scripts/fuzz`).

mod random;

use axum::body::Body;
use axum::http::{Method, Request};
use axum::Router;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use random::*;
use regmesh_core::{jwt, Record, Visibility};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Instant;

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
        // overflows them (peer_regressions.rs, the two top_of_u64 tests).
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
        // dedup window (peer_regressions.rs: counter_at_the_top_of_u64_is_refused).
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
            // (peer_regressions.rs: a_batch_refused_for_one_record_changes_nothing).
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
            // A 400 `refused` refuses the records it names, each alone
            // (PROTOCOL.md, "Flooding"); the others of its batch may merge.
            let refused_alone = error_code(&a.body).as_deref() == Some("refused");
            let message = String::from_utf8_lossy(&a.body);
            let changed = records
                .iter()
                .zip(&before)
                .filter(|(r, _)| {
                    !refused_alone
                        || message.contains(&format!("{}/{} from {} (seq {})", r.kind, r.id, r.origin, r.seq))
                })
                .find(|(r, b)| b.as_ref() != Some(*r) && held(r).as_ref() == Some(*r))
                .map(|(r, _)| format!("{}/{} of {} was applied", r.kind, r.id, r.origin));
            let what = format!("{} {} ({:?}, {:?})", r.method, r.path, r.auth, r.headers);
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

/// The `error.code` of a JSON refusal, if the body is one.
fn error_code(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.pointer("/error/code")?.as_str().map(str::to_string)
}
