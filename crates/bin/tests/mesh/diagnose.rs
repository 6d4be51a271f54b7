//! `regmesh diagnose record` and `diagnose mesh` against a real mesh of
//! three: a record c3 may not see (filtered by c1's and c2's export
//! policies), a tombstone, c3 cut off from c1 (reached through c2), c3
//! stopped (unreachable); and a line, whose far end is reached by relay.

use super::*;

/// `regmesh diagnose ARGS --server URL`: (exit ok, stdout).
fn diagnose(url: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("diagnose")
        .args(args)
        .args(["--server", url])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn verdicts(report: &Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["center"].as_str().unwrap().into(),
                f["verdict"].as_str().unwrap().into(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// Budget: three centers, six writes, under 30 s (mesh up, propagation,
/// one cut detected by a refused connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_explains_filtered_tombstoned_and_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), 3, "full");
    // c2 is in group partners at c1; c3 is in no group anywhere.
    set_peer_field(dir.path(), "c1", "c2", "groups", r#"["partners"]"#);
    // c1's calls to c3 run through a proxy the test cuts.
    let l13 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let to3 = route_peer(dir.path(), "c1", "c3", l13.local_addr().unwrap().port());
    let cut13 = std::sync::Arc::new(Cut::default());
    tokio::spawn(cuttable_proxy(l13, to3, cut13.clone()));
    let [(_p1, url1, c1), (_p2, url2, c2), (_p3, url3, c3)] = spawn_all(dir.path(), ["c1", "c2", "c3"]);
    wait_mesh_up(&[&c1, &c2, &c3]).await;

    put_agents(&c1, "open", 1, false).await;
    let mut secret = agent(1);
    secret["visibility"] = json!("authorized:partners");
    let r = c1
        .request(hyper::Method::PUT, "/v1/agents/secret", Some(&secret))
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 201);
    put_agents(&c1, "gone", 1, false).await;
    assert_eq!(delete(&c1, "/v1/agents/gone0").await, 204);
    wait_until("c2 and c3 caught up with c1", Duration::from_secs(15), || async {
        let (_, m) = get(&c1, "/v1/diagnose/mesh").await;
        m["lag"].as_object().is_some_and(|rows| {
            rows.len() == 3 && rows.values().all(|r| r.as_object().unwrap().values().all(|n| n == 0))
        })
    })
    .await;

    // Filtered: c1 and c2 hold it; neither's policy sends it to c3.
    let (s, rep) = get(&c2, "/v1/diagnose/record/agent/secret").await;
    assert_eq!(s, 200, "{rep}");
    assert_eq!(
        verdicts(&rep),
        pairs(&[("c2", "current"), ("c1", "current"), ("c3", "filtered")])
    );
    let why = rep["findings"][2]["why"].as_str().unwrap();
    assert!(
        why.contains("c2's export policy to c3") && why.contains("c1's export policy to c3"),
        "{why}"
    );
    assert!(why.contains("authorized:partners"), "{why}");
    assert_eq!(rep["agree"], false);

    // Tombstoned everywhere, and the centers agree.
    let (_, rep) = get(&c1, "/v1/diagnose/record/agent/gone0").await;
    assert_eq!(
        verdicts(&rep),
        pairs(&[("c1", "tombstoned"), ("c2", "tombstoned"), ("c3", "tombstoned")])
    );
    assert_eq!(rep["agree"], true);
    let (ok, text) = diagnose(&url1, &["record", "agent", "gone0"]);
    assert!(ok && text.contains("the centers agree"), "{text}");
    println!("$ regmesh diagnose record agent gone0\n{text}");
    let (ok, text) = diagnose(&url2, &["record", "agent", "secret"]);
    assert!(ok && text.contains("filtered"), "{text}");
    println!("$ regmesh diagnose record agent secret --server <c2>\n{text}");

    // Bad input: a clear error, nothing asked.
    assert_eq!(get(&c1, "/v1/diagnose/record/nosuch/x").await.0, 404);
    let long = "x".repeat(regmesh_core::id::RECORD_ID_BYTES_MAX + 1);
    assert_eq!(get(&c1, &format!("/v1/diagnose/record/agent/{long}")).await.0, 400);

    // The same agent registered at c2 under another id: c1 finds the pair.
    put_agents(&c2, "twin", 1, false).await;
    wait_until(
        "c1 lists open0 and twin0 as duplicates",
        Duration::from_secs(10),
        || async {
            let (_, d) = get(&c1, "/v1/duplicates").await;
            d["groups"].as_array().is_some_and(|g| {
                g.iter().any(|g| {
                    g["ids"] == json!(["open0", "twin0"])
                        && g["origins"] == json!({"open0": "c1", "twin0": "c2"})
                        && g["evidence"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|e| e.as_str().unwrap().starts_with("same address 2001:db8::"))
                })
            })
        },
    )
    .await;

    // c3 cut off from c1: c1 reaches it through c2, and says so.
    cut13.set(true);
    let (_, rep) = get(&c1, "/v1/diagnose/record/agent/open0").await;
    assert_eq!(
        verdicts(&rep),
        pairs(&[("c1", "current"), ("c2", "current"), ("c3", "current")])
    );
    let why = rep["findings"][2]["why"].as_str().unwrap();
    assert!(
        why.contains("no direct answer to c1") && why.contains("reached via c2"),
        "{why}"
    );
    let (s, m) = get(&c1, "/v1/diagnose/mesh").await;
    assert_eq!(s, 200);
    let row = |m: &Value, c: &str| {
        m["centers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["center"] == c)
            .unwrap()
            .clone()
    };
    assert_eq!(row(&m, "c3")["answered"], true, "{m}");
    assert!(
        row(&m, "c3")["note"].as_str().unwrap().contains("reached via c2"),
        "{m}"
    );
    assert!(m["lag"].get("c3").is_some(), "c3's row comes through c2");
    let (ok, text) = diagnose(&url1, &["mesh"]);
    assert!(ok && text.contains("reached via c2"), "{text}");
    println!("$ regmesh diagnose mesh\n{text}");

    // c3 stopped: unreachable by every path.
    drop(_p3);
    let (_, rep) = get(&c1, "/v1/diagnose/record/agent/open0").await;
    assert_eq!(
        verdicts(&rep),
        pairs(&[("c1", "current"), ("c2", "current"), ("c3", "unreachable")])
    );
    let (_, m) = get(&c1, "/v1/diagnose/mesh").await;
    assert_eq!(row(&m, "c3")["answered"], false, "{m}");
    assert!(m["lag"].get("c3").is_none());
    assert!(m["links"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l[0] == "c2" && l[1]["peer"] == "c3"));
    let (ok, text) = diagnose(&url1, &["mesh"]);
    assert!(ok && text.contains("did not answer"), "{text}");
    let (ok, json_text) = diagnose(&url1, &["mesh", "--json"]);
    assert!(ok && serde_json::from_str::<Value>(&json_text).is_ok(), "{json_text}");
    let _ = url3;
}

/// Budget: three centers in a line, one write, under 20 s. c1 and c3 are
/// not peers: c1's diagnoses reach c3 through c2 and name the path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_reaches_centers_beyond_relays() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), 3, "line");
    let [(_p1, url1, c1), (_p2, _url2, c2), (_p3, _url3, c3)] = spawn_all(dir.path(), ["c1", "c2", "c3"]);
    wait_mesh_up(&[&c1, &c2, &c3]).await;
    put_agents(&c3, "far", 1, false).await;
    wait_until("c1 holds c3's agent", Duration::from_secs(15), || async {
        get(&c1, "/v1/agents/far0").await.0 == 200
    })
    .await;
    let (_, rep) = get(&c1, "/v1/diagnose/record/agent/far0").await;
    assert_eq!(
        verdicts(&rep),
        pairs(&[("c1", "current"), ("c2", "current"), ("c3", "current")])
    );
    let why = rep["findings"][2]["why"].as_str().unwrap();
    assert!(why.contains("not a direct peer of c1; reached via c2"), "{why}");
    let (_, m) = get(&c1, "/v1/diagnose/mesh").await;
    let answered: Vec<(&str, bool)> = m["centers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["center"].as_str().unwrap(), c["answered"].as_bool().unwrap()))
        .collect();
    assert_eq!(answered, [("c1", true), ("c2", true), ("c3", true)], "{m}");
    assert_eq!(m["lag"]["c3"]["c3"], 0);
    let (ok, text) = diagnose(&url1, &["record", "agent", "far0"]);
    assert!(ok && text.contains("reached via c2"), "{text}");
}
