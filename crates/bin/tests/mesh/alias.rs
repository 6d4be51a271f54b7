//! Aliases over a real mesh of three (document 000 §4.1.5): one agent
//! registered at c1 and c2 under two ids, marked an alias at the alias
//! id's origin, answered once at every center, shown resolved by
//! `/v1/duplicates`, and refused at a center that does not own the id.

use super::*;

/// `regmesh agent ARGS --server URL`: (exit ok, stdout, stderr).
fn agent_cli(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("agent")
        .args(args)
        .args(["--server", url])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The ids a list answers.
async fn ids(c: &Client, path: &str) -> Vec<String> {
    get(c, path).await.1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

/// The duplicate group holding `id` at `c`, if any.
async fn group_of(c: &Client, id: &str) -> Option<Value> {
    let (_, d) = get(c, "/v1/duplicates").await;
    d["groups"]
        .as_array()?
        .iter()
        .find(|g| g["ids"].as_array().unwrap().iter().any(|i| i == id))
        .cloned()
}

/// Budget: three centers, four agent writes and two alias writes, under
/// 30 s (mesh up, three propagations waited for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_answers_once_everywhere_and_resolves_the_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), 3, "full");
    let [(_p1, _url1, c1), (_p2, url2, c2), (_p3, _url3, c3)] = spawn_all(dir.path(), ["c1", "c2", "c3"]);
    wait_mesh_up(&[&c1, &c2, &c3]).await;

    // One agent, registered at c1 as "real0" and at c2 as "copy0".
    put_agents(&c1, "real", 1, false).await;
    put_agents(&c2, "copy", 1, false).await;
    wait_until("c3 lists both ids", Duration::from_secs(15), || async {
        ids(&c3, "/v1/agents?capability=translate").await == ["copy0", "real0"]
    })
    .await;
    let g = group_of(&c3, "copy0").await.expect("a duplicate group");
    assert_eq!(g["ids"], json!(["copy0", "real0"]));
    assert_eq!(g["resolved"], false, "{g}");

    // c1 does not own copy0: refused, nothing written.
    let r = c1
        .request(
            hyper::Method::PUT,
            "/v1/agents/copy0/alias",
            Some(&json!({"of": "real0"})),
        )
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 409, "{:?}", r.json());
    assert_eq!(r.json()["error"]["code"], "not_owner");
    assert_eq!(get(&c1, "/v1/agents/copy0/alias").await.0, 404);
    // Bad input: an alias of itself, of an agent that does not exist.
    for (body, status) in [
        (json!({"of": "copy0"}), 400),
        (json!({"of": "nosuch"}), 404),
        (json!({"x": 1}), 400),
    ] {
        let r = c2
            .request(hyper::Method::PUT, "/v1/agents/copy0/alias", Some(&body))
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), status, "{body}: {:?}", r.json());
    }
    assert_eq!(get(&c2, "/v1/agents/copy0/alias").await.0, 404);

    // c2, copy0's origin, marks it (through the CLI, as an operator would).
    let (ok, out, err) = agent_cli(&url2, &["alias", "copy0", "real0"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("\"of\": \"real0\""), "{out}");

    // Every center answers once: copy0 resolves to real0, lists hold real0.
    for (name, c) in [("c1", &c1), ("c2", &c2), ("c3", &c3)] {
        wait_until(&format!("{name} resolves copy0"), Duration::from_secs(15), || async {
            let (s, v) = get(c, "/v1/agents/copy0").await;
            s == 200 && v["id"] == "real0" && v["resolved_from"] == "copy0" && v["origin"] == "c1"
        })
        .await;
        assert_eq!(ids(c, "/v1/agents?capability=translate").await, ["real0"], "{name}");
        let g = group_of(c, "copy0").await.expect("still listed");
        assert_eq!(g["resolved"], true, "{name}: {g}");
        assert_eq!(g["canonical"], "real0", "{name}: {g}");
        assert_eq!(g["aliases"], json!({"copy0": "real0"}), "{name}: {g}");
    }
    let (_, d) = get(&c3, "/v1/duplicates").await;
    println!(
        "GET /v1/duplicates at c3:\n{}",
        serde_json::to_string_pretty(&d).unwrap()
    );
    let (_, v) = get(&c3, "/v1/agents/copy0").await;
    println!(
        "GET /v1/agents/copy0 at c3:\n{}",
        serde_json::to_string_pretty(&v).unwrap()
    );
    let (s, a) = get(&c3, "/v1/agents/copy0/alias").await;
    assert_eq!(s, 200);
    assert_eq!(
        (&a["of"], &a["origin"], &a["counts"]),
        (&json!("real0"), &json!("c2"), &json!(true))
    );
    // The reverse alias would close a cycle: refused.
    let r = c1
        .request(
            hyper::Method::PUT,
            "/v1/agents/real0/alias",
            Some(&json!({"of": "copy0"})),
        )
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 409, "{:?}", r.json());
    assert_eq!(r.json()["error"]["code"], "alias_cycle");

    // Only the origin removes it; then copy0 stands for itself again.
    assert_eq!(delete(&c1, "/v1/agents/copy0/alias").await, 409);
    let (ok, out, err) = agent_cli(&url2, &["alias", "copy0", "--remove"]);
    assert!(ok, "{out}{err}");
    wait_until("c3 lists copy0 again", Duration::from_secs(15), || async {
        ids(&c3, "/v1/agents?capability=translate").await == ["copy0", "real0"]
    })
    .await;
    assert_eq!(get(&c3, "/v1/agents/copy0").await.1["id"], "copy0");
    assert_eq!(group_of(&c3, "copy0").await.unwrap()["resolved"], false);
}
