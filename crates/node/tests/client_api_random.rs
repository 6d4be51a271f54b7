//! Structured random requests through the real client API router of a
//! center in a live mesh (see `random/mod.rs`): odd ids and `%XX` escapes,
//! bad query strings and cursors (random bytes as hex), wrong content types,
//! bad tokens and scopes, `If-Match` and `Last-Event-ID` values, oversized,
//! mutated, deeply nested and non-UTF-8 bodies.
//!
//! Every answer must be clear: never 500 for bad input, a JSON
//! `{"error": {"code", "message"}}` body on every refusal, a refusal or a
//! read changes nothing (the change counter does not move), and no task
//! panics. The writer still takes a plain create afterwards.
//!
//! Budget: 250 requests by default, under 1 s in a debug build;
//! `PROPTEST_CASES` overrides it (`scripts/fuzz`).

mod random;

use axum::body::Body;
use axum::http::{Method, Request};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use random::*;
use std::time::Instant;

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
