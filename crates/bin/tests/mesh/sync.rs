//! Catching up: a new center's full sync, digest repair of what watermarks
//! cannot see, and a resync past the tombstone horizon.

use super::*;

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
    put_agents(&c1, "early", 30, true).await;
    assert_eq!(delete(&c1, "/v1/agents/early00").await, 204);
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
    put_agents(&c1, "hidden", 10, false).await;
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
