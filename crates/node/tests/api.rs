//! The client API against a real center on loopback: every endpoint, every
//! kind of bad input (each must change nothing), auth, load shedding.

mod common;

use common::*;
use hyper::{Method, StatusCode};
use regmesh_node::config::{Scope, TokenConfig};
use serde_json::{json, Value};

/// The observable state that a refused request must leave untouched.
async fn fingerprint(c: &TestCenter) -> (u64, Value) {
    let list = c.get("/v1/agents?limit=1000").await.json();
    (c.center().head(), list)
}

#[tokio::test]
async fn create_read_replace_delete() {
    let c = start().await;
    let r = c.put("/v1/agents/did:web:example.com:a1", agent("2001:db8::1")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    assert_eq!(r.headers["location"], "/v1/agents/did:web:example.com:a1");
    let v = r.json();
    assert_eq!(v["id"], "did:web:example.com:a1");
    assert_eq!(v["origin"], "c1");
    assert_eq!(v["seq"], 1);
    assert!(v["version"].as_str().unwrap().contains('.'));
    assert!(v["updated_at"].as_str().unwrap().ends_with('Z'));
    assert!(v.get("expires_at").is_none(), "no lease, no expires_at");

    let g = c.get("/v1/agents/did:web:example.com:a1").await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json(), v);
    assert_eq!(g.headers["etag"], format!("\"{}\"", v["version"].as_str().unwrap()));

    // Replace: 200, new version and seq; fields sent by the client for
    // origin/version are ignored.
    let mut doc = agent("2001:db8::2");
    doc["origin"] = json!("evil");
    doc["version"] = json!("1.0");
    let r2 = c.put("/v1/agents/did:web:example.com:a1", doc).await;
    assert_eq!(r2.status, StatusCode::OK);
    let v2 = r2.json();
    assert_eq!(v2["origin"], "c1");
    assert_eq!(v2["seq"], 2);
    assert_eq!(v2["addresses"], json!(["2001:db8::2"]));
    assert_ne!(v2["version"], v["version"]);

    assert_eq!(
        c.req(Method::DELETE, "/v1/agents/did:web:example.com:a1", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.get("/v1/agents/did:web:example.com:a1").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.req(Method::DELETE, "/v1/agents/did:web:example.com:a1", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Re-creating after delete is a create.
    assert_eq!(
        c.put("/v1/agents/did:web:example.com:a1", agent("2001:db8::3"))
            .await
            .status,
        StatusCode::CREATED
    );
    let st = c.get("/v1/status").await.json();
    assert_eq!(st["records"]["agent"], 1);
    assert_eq!(st["id"], "c1");
    c.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let c = start().await;
    c.put("/v1/agents/a1", agent("2001:db8::1")).await;
    let before = fingerprint(&c).await;

    let cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "/v1/agents/a1",
            "application/json",
            b"{\"addresses\": [".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "/v1/agents/a1",
            "application/json",
            br#"{"addresses":["::2"],"colour":"red"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "/v1/agents/a1",
            "application/json",
            br#"{"status":"online"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "/v1/agents/a1",
            "application/json",
            br#"{"addresses":["fe80::1"]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "/v1/agents/a1",
            "application/json",
            br#"{"addresses":["::2"],"id":"a2"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "/v1/agents/a1",
            "application/json",
            br#"[1,2]"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "/v1/agents/a%2",
            "application/json",
            br#"{"addresses":["::2"]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            "/v1/agents/a1",
            "text/plain",
            br#"{"addresses":["::2"]}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "/v1/agents/a1",
            "",
            br#"{"addresses":["::2"]}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "/v1/agents/a1",
            "application/json",
            vec![b' '; 200 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
    ];
    for (path, ct, body, status, code) in cases {
        let r = c.put_raw(path, ct, body.clone()).await;
        assert_eq!(r.status, status, "{path} {ct}: {:?}", r.json());
        assert_eq!(r.json()["error"]["code"], code, "{:?}", r.json());
        assert!(!r.json()["error"]["message"].as_str().unwrap().is_empty());
        assert_eq!(fingerprint(&c).await, before, "a refused request changed state: {code}");
    }
    let r = c
        .put_raw(
            "/v1/agents/a1",
            "application/json",
            br#"{"addresses":["::2"],"colour":"red"}"#.to_vec(),
        )
        .await;
    assert!(
        r.json()["error"]["message"].as_str().unwrap().contains("colour"),
        "message names the field"
    );
    let r = c
        .put_raw(
            "/v1/agents/a1",
            "application/json",
            br#"{"addresses":["fe80::1"]}"#.to_vec(),
        )
        .await;
    assert_eq!(r.json()["error"]["field"], "addresses[0]");

    // A record over the record limit (body under the body limit): 413.
    let big = json!({"addresses": ["::2"], "card": {"blob": "x".repeat(30 * 1024)}, "metadata": {"blob": "y".repeat(15 * 1024)}, "capabilities": (0..60).map(|i| json!({"name": format!("c{i}"), "description": "d".repeat(1000)})).collect::<Vec<_>>()});
    let r = c.put("/v1/agents/a1", big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.json());

    // Bad queries.
    for (q, code) in [
        ("/v1/agents?cursor=nope", "bad_cursor"),
        ("/v1/agents?cursor=c1.zz", "bad_cursor"),
        ("/v1/agents?capabilty=x", "bad_query"),
        ("/v1/agents?limit=0", "bad_query"),
        ("/v1/agents?limit=100000", "bad_query"),
        ("/v1/agents?limit=abc", "bad_query"),
        ("/v1/watch?since=999999", "bad_query"),
    ] {
        let r = c.get(q).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(r.json()["error"]["code"], code, "{q}");
    }
    // Unknown ids and endpoints.
    assert_eq!(
        c.req(Method::POST, "/v1/agents/nobody/heartbeat", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(c.get("/v1/nothing").await.json()["error"]["code"], "not_found");
    let r = c.req(Method::PATCH, "/v1/agents/a1", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    // Unchanged since the agent routes moved into their front.
    assert_eq!(r.headers["allow"], "PUT,GET,HEAD,DELETE");
    assert_eq!(r.json()["error"]["code"], "method_not_allowed");
    assert_eq!(fingerprint(&c).await, before);
    c.stop().await;
}

#[tokio::test]
async fn conditional_writes() {
    let c = start().await;
    let v = c.put("/v1/agents/a1", agent("2001:db8::1")).await.json();
    let mut conn = c.client.connect().await.unwrap();
    let stale = conn
        .send_raw(
            conn.builder(Method::PUT, "/v1/agents/a1")
                .header("content-type", "application/json")
                .header("if-match", "\"1.0\"")
                .body(http_body_util::Full::new(
                    serde_json::to_vec(&agent("::9")).unwrap().into(),
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let ok = conn
        .send_raw(
            conn.builder(Method::PUT, "/v1/agents/a1")
                .header("content-type", "application/json")
                .header("if-match", format!("\"{}\"", v["version"].as_str().unwrap()))
                .body(http_body_util::Full::new(
                    serde_json::to_vec(&agent("::9")).unwrap().into(),
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(ok.status, StatusCode::OK);
    c.stop().await;
}

#[tokio::test]
async fn filtered_listing_and_paging() {
    let c = start().await;
    for i in 0..25 {
        let mut a = agent("2001:db8::1");
        a["status"] = json!(if i % 2 == 0 { "online" } else { "offline" });
        a["capabilities"] = if i % 5 == 0 {
            json!([{"name": "summarize", "tags": ["fast"]}])
        } else {
            json!([{"name": "translate", "tags": ["en-fr"]}])
        };
        assert_eq!(
            c.put(&format!("/v1/agents/a{i:02}"), a).await.status,
            StatusCode::CREATED
        );
    }
    let ids = |v: &Value| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let v = c.get("/v1/agents?capability=summarize").await.json();
    assert_eq!(ids(&v), vec!["a00", "a05", "a10", "a15", "a20"]);
    let v = c.get("/v1/agents?capability=summarize&status=online").await.json();
    assert_eq!(ids(&v), vec!["a00", "a10", "a20"]);
    let v = c.get("/v1/agents?tag=en-fr&status=offline&origin=c1").await.json();
    assert_eq!(ids(&v).len(), 10);
    assert!(c.get("/v1/agents?origin=c9").await.json()["items"]
        .as_array()
        .unwrap()
        .is_empty());

    // Page through everything, 7 at a time: every id once, in order.
    let mut seen = Vec::new();
    let mut path = "/v1/agents?limit=7".to_string();
    loop {
        let v = c.get(&path).await.json();
        seen.extend(ids(&v));
        match v["next_cursor"].as_str() {
            Some(cur) => path = format!("/v1/agents?limit=7&cursor={cur}"),
            None => break,
        }
    }
    let want: Vec<String> = (0..25).map(|i| format!("a{i:02}")).collect();
    assert_eq!(seen, want);

    // Deleting moves records out of the indexes.
    c.req(Method::DELETE, "/v1/agents/a00", None).await;
    let v = c.get("/v1/agents?capability=summarize&status=online").await.json();
    assert_eq!(ids(&v), vec!["a10", "a20"]);
    c.stop().await;
}

#[tokio::test]
async fn tokens_and_scopes() {
    let c = start_with(|cfg| {
        cfg.api.tokens = vec![
            TokenConfig {
                name: "reader".into(),
                token: "r".repeat(24),
                scopes: vec![Scope::Read],
            },
            TokenConfig {
                name: "writer".into(),
                token: "w".repeat(24),
                scopes: vec![Scope::Read, Scope::Write],
            },
        ];
    })
    .await;
    let writer =
        regmesh_node::client::Client::new(&format!("http://{}", c.client.authority), Some("w".repeat(24))).unwrap();
    let reader =
        regmesh_node::client::Client::new(&format!("http://{}", c.client.authority), Some("r".repeat(24))).unwrap();
    let anon = regmesh_node::client::Client::new(&format!("http://{}", c.client.authority), None).unwrap();
    let wrong =
        regmesh_node::client::Client::new(&format!("http://{}", c.client.authority), Some("x".repeat(24))).unwrap();
    let body = agent("::5");
    assert_eq!(
        anon.request(Method::GET, "/v1/agents", None).await.unwrap().status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        wrong.request(Method::GET, "/v1/agents", None).await.unwrap().status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        anon.request(Method::GET, "/healthz", None).await.unwrap().status,
        StatusCode::OK
    );
    let r = reader.request(Method::PUT, "/v1/agents/a1", Some(&body)).await.unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reader.request(Method::GET, "/v1/agents/a1", None).await.unwrap().status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        writer
            .request(Method::PUT, "/v1/agents/a1", Some(&body))
            .await
            .unwrap()
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        reader.request(Method::GET, "/v1/agents/a1", None).await.unwrap().status,
        StatusCode::OK
    );
    assert_eq!(
        reader.request(Method::GET, "/metrics", None).await.unwrap().status,
        StatusCode::OK
    );
    c.stop().await;
}

#[tokio::test]
async fn sheds_load_with_503_when_requests_in_flight_reach_the_limit() {
    use tokio::io::AsyncWriteExt;
    let c = start_with(|cfg| cfg.api.max_concurrent_requests = 1).await;
    // Hold the only slot: a PUT whose body never finishes arriving.
    let mut slow = tokio::net::TcpStream::connect(&c.client.authority).await.unwrap();
    slow.write_all(
        b"PUT /v1/agents/slow HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let r = c.get("/v1/agents").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"]["code"], "overloaded");
    assert_eq!(r.headers["retry-after"], "1");
    drop(slow);
    // The slot frees once the slow request is gone.
    let mut ok = false;
    for _ in 0..50 {
        if c.get("/v1/agents").await.status == StatusCode::OK {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ok, "slot never freed");
    assert!(c
        .get("/metrics")
        .await
        .body
        .windows(23)
        .any(|w| w == b"regmesh_load_shed_total"));
    c.stop().await;
}

#[tokio::test]
async fn full_write_queue_refuses_and_loses_nothing_acknowledged() {
    let c = start_with(|cfg| {
        cfg.store.write_queue = 1;
        cfg.store.write_batch_max = 1;
    })
    .await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let client = c.client.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .request(Method::PUT, &format!("/v1/agents/q{i}"), Some(&agent("::7")))
                .await
                .unwrap();
            (i, r.status)
        }));
    }
    let mut created = Vec::new();
    for t in tasks {
        let (i, status) = t.await.unwrap();
        match status {
            StatusCode::CREATED => created.push(i),
            StatusCode::SERVICE_UNAVAILABLE => {}
            s => panic!("unexpected {s}"),
        }
    }
    for i in 0..64 {
        let got = c.get(&format!("/v1/agents/q{i}")).await.status;
        let want = if created.contains(&i) {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(got, want, "q{i}: acknowledged iff stored");
    }
    c.stop().await;
}

#[tokio::test]
async fn metrics_and_health() {
    let c = start().await;
    c.put("/v1/agents/a1", agent("::1")).await;
    let m = String::from_utf8(c.get("/metrics").await.body.to_vec()).unwrap();
    assert!(m.contains("regmesh_records{kind=\"agent\"} 1"), "{m}");
    assert!(m.contains("regmesh_changes_total{type=\"put\"} 1"), "{m}");
    assert!(m.contains("# TYPE regmesh_commits_total counter"));
    assert_eq!(c.get("/healthz").await.json(), json!({"status": "ok"}));
    c.stop().await;
}

#[tokio::test]
async fn slow_bodies_time_out_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = start_with(|cfg| cfg.api.body_timeout_ms = 200).await;
    let mut slow = tokio::net::TcpStream::connect(&c.client.authority).await.unwrap();
    slow.write_all(
        b"PUT /v1/agents/slow HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), slow.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"timeout\""), "{text}");
    assert_eq!(c.get("/v1/agents/slow").await.status, StatusCode::NOT_FOUND);
    c.stop().await;
}

#[tokio::test]
async fn open_connections_are_bounded() {
    let c = start_with(|cfg| cfg.api.max_connections = 2).await;
    let mut a = c.client.connect().await.unwrap();
    let mut b = c.client.connect().await.unwrap();
    assert_eq!(
        a.request(Method::GET, "/healthz", None).await.unwrap().status,
        StatusCode::OK
    );
    assert_eq!(
        b.request(Method::GET, "/healthz", None).await.unwrap().status,
        StatusCode::OK
    );
    // A third connection is not served while both slots are held...
    let third = tokio::spawn({
        let client = c.client.clone();
        async move { client.request(Method::GET, "/healthz", None).await.map(|r| r.status) }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "third connection was served beyond the limit");
    // ...and is served as soon as one closes.
    drop(a);
    let status = tokio::time::timeout(std::time::Duration::from_secs(5), third)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    drop(b);
    c.stop().await;
}

#[tokio::test]
async fn shutdown_ends_watch_streams_and_commits_queued_writes() {
    let c = start().await;
    c.put("/v1/agents/a1", agent("::1")).await;
    let mut conn = c.client.connect().await.unwrap();
    let resp = conn.stream("/v1/watch?since=0").await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let dir = c.dir.path().to_path_buf();
    let t0 = std::time::Instant::now();
    let running = { c.running };
    running.unwrap().shutdown().await;
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(4),
        "shutdown waited on a watcher: {:?}",
        t0.elapsed()
    );
    // The writer was joined (the database is no longer held open), and the
    // write is there.
    let center = regmesh_node::Center::open_with(
        &regmesh_node::Config::for_test("c1", &dir),
        regmesh_front_agent::kinds(),
        None,
    )
    .unwrap();
    assert!(center.get("agent", "a1").unwrap().is_some());
    center.close();
    drop(resp);
}
