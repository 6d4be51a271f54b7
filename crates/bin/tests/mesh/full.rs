//! Full meshes: every write reaches every center once, racing creates of
//! one id, and `regmesh demo`.

use super::*;

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
    // In a full mesh each origin names every peer it sends to reached
    // (RegMesh-Reached), so nobody relays. Without it each flood was relayed
    // by both receivers (relayed = 2 × initiated); a peer judged DEGRADED
    // for a moment on a loaded machine may still earn a relay or two.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut initiated, mut relayed) = (0, 0);
    for c in &clients {
        wait_until("active", Duration::from_secs(10), || async {
            get(c, "/v1/peers").await.1["state"] == "active"
        })
        .await;
        let (_, v) = get(c, "/v1/peers").await;
        initiated += v["floods"]["initiated"].as_u64().unwrap();
        relayed += v["floods"]["relayed"].as_u64().unwrap();
    }
    assert!(initiated > 0);
    assert!(
        relayed * 4 <= initiated,
        "{relayed} relays for {initiated} floods in a full mesh"
    );
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
