//! `?scope=mesh` over a real mesh of three (document 000 §3.3.2, §4.1.4):
//! an agent its origin keeps home (a `local` capability) fetched on demand
//! from the origin with that part cut out, then answered from the cache;
//! a search merged from every center without duplicates and without
//! leaking through a filter; a record for a group the asker is not in
//! never answered; a stopped center listed as not answering, and a silent
//! one cut off by the deadline.

use super::*;

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

/// Budget: three centers, four writes, one stopped center and one frozen
/// link, under 30 s (mesh up, one propagation, mesh queries bounded by
/// their 2 s deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_scope_fetches_from_the_origin_and_names_who_did_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), 3, "full");
    // c2 is in group partners at c1; c3 is in no group anywhere.
    set_peer_field(dir.path(), "c1", "c2", "groups", r#"["partners"]"#);
    // c2's calls to c1 run through a proxy the test freezes at the end.
    let l21 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let to1 = route_peer(dir.path(), "c2", "c1", l21.local_addr().unwrap().port());
    let freeze21 = std::sync::Arc::new(Freeze::default());
    tokio::spawn(freezable_proxy(l21, to1, freeze21.clone()));
    let [(_p1, _url1, c1), (_p2, url2, c2), (p3, url3, c3)] = spawn_all(dir.path(), ["c1", "c2", "c3"]);
    wait_mesh_up(&[&c1, &c2, &c3]).await;

    // "home": one public capability, one its origin keeps local, so the
    // record never leaves c1. "secret": only for partners.
    let home = json!({"addresses": ["2001:db8::99"], "capabilities": [
        {"name": "translate"}, {"name": "payroll", "visibility": "local"}]});
    let mut secret = agent(7);
    secret["visibility"] = json!("authorized:partners");
    for (id, body) in [("home", &home), ("secret", &secret)] {
        let r = c1
            .request(hyper::Method::PUT, &format!("/v1/agents/{id}"), Some(body))
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), 201, "{id}: {:?}", r.json());
    }
    put_agents(&c1, "open", 1, false).await;
    put_agents(&c2, "other", 1, false).await;
    wait_until(
        "c2 holds secret, open0, other0; c3 open0, other0",
        Duration::from_secs(15),
        || async {
            count(&c2, "/v1/agents?capability=translate").await == 3
                && count(&c3, "/v1/agents?capability=translate").await == 2
        },
    )
    .await;
    assert_eq!(get(&c2, "/v1/agents/home").await.0, 404, "never replicated");

    // Fetched on demand from its origin, with the local part cut out.
    let (s, v) = get(&c2, "/v1/agents/home?scope=mesh").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((&v["origin"], &v["source"]), (&json!("c1"), &json!("c1")), "{v}");
    assert_eq!(
        (&v["partial"], &v["withheld_parts"], &v["stale"]),
        (&json!(true), &json!(1), &json!(false))
    );
    assert_eq!(v["capabilities"].as_array().unwrap().len(), 1, "{v}");
    assert!(!v.to_string().contains("payroll"), "{v}");
    assert_eq!(v["mesh"]["answered"], json!(["c1", "c3"]), "{v}");
    assert_eq!(v["mesh"]["not_answered"], json!([]), "{v}");
    // Within the TTL: from the cache, with its age, asking nobody.
    let (_, v) = get(&c2, "/v1/agents/home?scope=mesh").await;
    assert_eq!(v["mesh"], json!({"cached": true}), "{v}");
    assert!(v["cached_age_ms"].as_u64().is_some(), "{v}");
    // The same through the CLI.
    let out = Command::new(BIN)
        .args(["agent", "get", "home", "--scope", "mesh", "--server", &url2])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("\"source\": \"c1\""), "{text}");
    println!("$ regmesh agent get home --scope mesh --server <c2>\n{text}");
    // Still not a record at c2.
    assert_eq!(get(&c2, "/v1/agents/home").await.0, 404);

    // A search: every center's copy merged, each id once, with its source.
    let (s, v) = get(&c2, "/v1/agents?scope=mesh&capability=translate").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids(&v), ["home", "open0", "other0", "secret"], "{v}");
    let sources: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["c1", "c2", "c2", "c2"], "{v}");
    // A filter on the withheld capability finds nothing.
    let (_, v) = get(&c2, "/v1/agents?scope=mesh&capability=payroll").await;
    assert_eq!(ids(&v), Vec::<String>::new(), "{v}");
    // c3 is in no group: secret is answered by nobody, home without payroll.
    let (_, v) = get(&c3, "/v1/agents?scope=mesh&capability=translate").await;
    assert_eq!(ids(&v), ["home", "open0", "other0"], "{v}");
    assert_eq!(get(&c3, "/v1/agents/secret?scope=mesh").await.0, 404);

    // Bad input: a clear error.
    for q in [
        "scope=everywhere",
        "scope=mesh&cursor=abc",
        "scope=mesh&limit=0",
        "scope=mesh&limit=101",
    ] {
        assert_eq!(get(&c2, &format!("/v1/agents?{q}")).await.0, 400, "{q}");
    }
    assert_eq!(get(&c2, "/v1/agents/home?scope=x").await.0, 400);

    // c3 stopped: c2's mesh search says so, and still answers from c1.
    drop(p3);
    let (s, v) = get(&c2, "/v1/agents?scope=mesh&capability=translate").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["answered"], json!(["c1"]), "{v}");
    let missing = v["not_answered"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "{v}");
    assert_eq!(missing[0]["center"], "c3");
    assert!(!missing[0]["why"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(ids(&v), ["home", "open0", "other0", "secret"], "{v}");
    println!(
        "GET /v1/agents?scope=mesh&capability=translate at c2, c3 stopped:\n{}",
        serde_json::to_string_pretty(&v).unwrap()
    );

    // c1 silent too (its link frozen): the deadline ends the wait, and c2
    // answers from its own copy, naming both.
    freeze21.set(true);
    let t0 = Instant::now();
    let (s, v) = get(&c2, "/v1/agents?scope=mesh&capability=translate").await;
    let waited = t0.elapsed();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["answered"], json!([]), "{v}");
    let missing = v["not_answered"].as_array().unwrap();
    assert_eq!(
        (&missing[0]["center"], &missing[1]["center"]),
        (&json!("c1"), &json!("c3")),
        "{v}"
    );
    assert_eq!(missing[0]["why"], "no answer within 2000 ms", "{v}");
    // The peer call's own timeout is 30 s: only the 2 s deadline ends it this soon.
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert_eq!(ids(&v), ["open0", "other0", "secret"], "{v}");
    freeze21.set(false);
    let _ = url3;
}

/// Budget: three centers in a line, one write, two mesh lookups bounded by
/// their 2 s deadline, under 20 s. A lookup at c1 reaches c3 through c2:
/// an agent c3 keeps home (a `local` capability) is never replicated, so
/// only c3 itself can show it, and the answer names the path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_scope_reaches_centers_beyond_the_peers() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), 3, "line");
    let [(_p1, _url1, c1), (_p2, url2, c2), (p3, url3, c3)] = spawn_all(dir.path(), ["c1", "c2", "c3"]);
    wait_mesh_up(&[&c1, &c2, &c3]).await;
    let far = json!({"addresses": ["2001:db8::98"], "capabilities": [
        {"name": "translate"}, {"name": "payroll", "visibility": "local"}]});
    let r = c3
        .request(hyper::Method::PUT, "/v1/agents/far", Some(&far))
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.json());

    let (s, v) = get(&c1, "/v1/agents/far?scope=mesh").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((&v["origin"], &v["source"]), (&json!("c3"), &json!("c3")), "{v}");
    assert_eq!((&v["partial"], &v["withheld_parts"]), (&json!(true), &json!(1)), "{v}");
    assert!(!v.to_string().contains("payroll"), "{v}");
    assert_eq!(v["mesh"]["asked"], json!(["c2"]), "{v}");
    assert_eq!(v["mesh"]["answered"], json!(["c2", "c3"]), "{v}");
    assert_eq!(v["mesh"]["via"], json!({"c3": ["c2"]}), "{v}");
    assert_eq!(v["mesh"]["not_answered"], json!([]), "{v}");
    // A search reaches it too, and a filter on the withheld part does not.
    let (_, v) = get(&c1, "/v1/agents?scope=mesh&capability=translate").await;
    assert_eq!(ids(&v), ["far"], "{v}");
    let (_, v) = get(&c1, "/v1/agents?scope=mesh&capability=payroll").await;
    assert_eq!(ids(&v), Vec::<String>::new(), "{v}");

    // c3 stopped: c1's search names it, reached through c2, as not answering.
    drop(p3);
    let (s, v) = get(&c1, "/v1/agents?scope=mesh&capability=translate").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["answered"], json!(["c2"]), "{v}");
    assert_eq!(v["not_answered"][0]["center"], "c3", "{v}");
    assert_eq!(v["via"], json!({"c3": ["c2"]}), "{v}");
    let _ = (url2, url3);
}
