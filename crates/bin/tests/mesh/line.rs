//! A line mesh c1 — c2 — c3: replication through the middle, DRiP's calls
//! made with curl and refused when they must be, and failure detection.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_mesh_replicates_refuses_and_detects_failures() {
    let dir = tempfile::tempdir().unwrap();
    let base = init(dir.path(), 3, "line");
    let (_p1, c1) = serve(dir.path(), "c1");
    let (_p2, c2) = serve(dir.path(), "c2");
    let (p3, c3) = serve(dir.path(), "c3");
    wait_until("c2 sees c1 and c3 OPERATIONAL", Duration::from_secs(15), || async {
        peer_states(&c2).await.iter().all(|(_, s)| s == "OPERATIONAL")
    })
    .await;

    // A write at one end arrives at the other, through c2.
    put_agents(&c1, "a", 20, true).await;
    wait_until("all 20 agents at c3", Duration::from_secs(10), || async {
        count(&c3, "/v1/agents?origin=c1&limit=100").await == 20
    })
    .await;
    let (_, a) = get(&c3, "/v1/agents/a07").await;
    assert_eq!(a["origin"], "c1");
    assert_eq!(a["addresses"], json!(["2001:db8::7"]));

    // Only the origin may change its records.
    let r = c3
        .request(hyper::Method::PUT, "/v1/agents/a07", Some(&agent(99)))
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 409);
    assert_eq!(r.json()["error"]["code"], "not_owner");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("c1"));

    // Delete propagates and is not resurrected.
    assert_eq!(delete(&c1, "/v1/agents/a03").await, 204);
    wait_until("a03 deleted at c3", Duration::from_secs(10), || async {
        get(&c3, "/v1/agents/a03").await.0 == 404
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(get(&c3, "/v1/agents/a03").await.0, 404, "resurrected");
    assert_eq!(get(&c2, "/v1/agents/a03").await.0, 404, "resurrected");

    // The draft's curl requests, against c2 with c1's certificate.
    let d = dir.path();
    let c2_addr = format!("c2:{}:127.0.0.1", base + 11);
    let url = |p: &str| format!("https://c2:{}{p}", base + 11);
    let with_cert = [
        "--cacert",
        "ca.pem",
        "--resolve",
        &c2_addr,
        "--cert",
        "c1.crt",
        "--key",
        "c1.key",
    ];
    let t = token(d, "c1", "c2");
    let auth = format!("Authorization: {t}");
    let mut args: Vec<&str> = with_cert.to_vec();
    args.extend(["-H", "DRiP-Node-ID: c1", "-H", &auth]);
    let state_url = url("/state");
    let (code, body) = curl(d, &[args.as_slice(), &[state_url.as_str()]].concat());
    assert_eq!((code.as_str(), body.as_str()), ("200", r#"{"state":"active"}"#));
    let (code, body) = curl(d, &[args.as_slice(), &[state_url.as_str()]].concat());
    assert_eq!(code, "401", "a replayed token: {body}");
    assert!(body.contains("replayed_token"));
    let t = token(d, "c1", "c2");
    let auth = format!("Authorization: Bearer {t}");
    let active_url = url("/node/c1/active");
    let (code, _) = curl(
        d,
        &[
            &with_cert[..],
            &["-H", "DRiP-Node-ID: c1", "-H", &auth, "-X", "POST", &active_url],
        ]
        .concat(),
    );
    assert_eq!(code, "200", "POST /node/c1/active");
    // The vote phase, as the draft sends it (a JSON body naming the id).
    let t = token(d, "c1", "c2");
    let auth = format!("Authorization: {t}");
    let voting_url = url("/voting");
    let (code, body) = curl(
        d,
        &[
            &with_cert[..],
            &[
                "-H",
                "Content-Type: application/json",
                "-H",
                "DRiP-Node-ID: c1",
                "-H",
                "DRiP-Node-Counter: 1234",
                "-H",
                "DRiP-Node-Counter-reset: false",
                "-H",
                &auth,
                "-X",
                "POST",
                "-d",
                r#"{"kind":"agent","id":"curl-vote"}"#,
                &voting_url,
            ],
        ]
        .concat(),
    );
    assert_eq!(code, "200", "POST /voting: {body}");
    for spelling in [
        "/votingphase/node/c1/response/yes",
        "/voting/peernode/c1/response/yes",
        "/node/c1/response/no",
    ] {
        let t = token(d, "c1", "c2");
        let auth = format!("Authorization: {t}");
        let u = url(spelling);
        let (code, body) = curl(
            d,
            &[
                &with_cert[..],
                &[
                    "-H",
                    "DRiP-Node-ID: c1",
                    "-H",
                    "DRiP-Node-Counter: 1234",
                    "-H",
                    &auth,
                    "-X",
                    "POST",
                    &u,
                ],
            ]
            .concat(),
        );
        assert_eq!(code, "200", "{spelling}: {body}");
    }
    // No client certificate.
    let t = token(d, "c1", "c2");
    let auth = format!("Authorization: {t}");
    let (code, body) = curl(
        d,
        &[
            "--cacert",
            "ca.pem",
            "--resolve",
            &c2_addr,
            "-H",
            "DRiP-Node-ID: c1",
            "-H",
            &auth,
            &state_url,
        ],
    );
    assert_eq!(code, "401", "{body}");
    assert!(body.contains("certificate_required"));
    // A forged token (signed by c3's key, claiming c1) with c1's certificate.
    let forged = {
        let t = token(d, "c3", "c2");
        let parts: Vec<&str> = t.split('.').collect();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        claims["iss"] = json!("c1");
        format!("{}.{}.{}", parts[0], b64.encode(claims.to_string()), parts[2])
    };
    let auth = format!("Authorization: {forged}");
    let (code, body) = curl(
        d,
        &[&with_cert[..], &["-H", "DRiP-Node-ID: c1", "-H", &auth, &state_url]].concat(),
    );
    assert_eq!(code, "401", "{body}");
    assert!(body.contains("signature"), "{body}");
    // A center that is not c1's peer (line: c3 is not).
    let c1_addr = format!("c1:{}:127.0.0.1", base + 1);
    let t = token(d, "c3", "c2");
    let auth = format!("Authorization: {t}");
    let c1_state = format!("https://c1:{}/state", base + 1);
    let (code, body) = curl(
        d,
        &[
            "--cacert",
            "ca.pem",
            "--resolve",
            &c1_addr,
            "--cert",
            "c3.crt",
            "--key",
            "c3.key",
            "-H",
            "DRiP-Node-ID: c3",
            "-H",
            &auth,
            &c1_state,
        ],
    );
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("not_a_peer"));
    // Tampered records in a flood are refused and change nothing.
    let before = get(&c2, "/v1/status").await.1["change"].as_u64().unwrap();
    let rec = {
        use base64::Engine;
        let mut r = regmesh_core::codec::decode(&regmesh_core::codec::encode(&regmesh_core::Record {
            kind: "agent".into(),
            id: "evil".into(),
            origin: "c1".into(),
            version: regmesh_core::Hlc::new(u64::MAX / 2, 0),
            seq: 1,
            expires_at_ms: None,
            visibility: regmesh_core::Visibility::Public,
            deleted: false,
            body: r#"{"addresses":["2001:db8::bad"]}"#.into(),
            sig: [7; 64],
        }))
        .unwrap();
        r.seq = 2;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(regmesh_core::codec::encode(&r))
    };
    let t = token(d, "c1", "c2");
    let auth = format!("Authorization: {t}");
    let body = json!({"records": [rec]}).to_string();
    let commit_url = url("/commit");
    let (code, resp) = curl(
        d,
        &[
            &with_cert[..],
            &[
                "-H",
                "Content-Type: application/json",
                "-H",
                "DRiP-Node-ID: c1",
                "-H",
                "DRiP-Node-Counter: 999999",
                "-H",
                "DRiP-Node-Counter-reset: false",
                "-H",
                &auth,
                "-X",
                "POST",
                "-d",
                &body,
                &commit_url,
            ],
        ]
        .concat(),
    );
    assert_eq!(code, "400", "{resp}");
    assert!(resp.contains("does not verify"), "{resp}");
    assert_eq!(
        get(&c2, "/v1/status").await.1["change"].as_u64().unwrap(),
        before,
        "a refused flood changed state"
    );
    // The same message deflated (the content coding peers use for large
    // bodies) is inflated first, then refused just the same; an unknown
    // coding is refused with 415 and the coding to use.
    std::fs::write(d.join("evil.z"), regmesh_node::peer::encoding::deflate(body.as_bytes())).unwrap();
    for (coding, want, says) in [
        ("deflate", "400", "does not verify"),
        ("br", "415", "unsupported_encoding"),
    ] {
        let t = token(d, "c1", "c2");
        let auth = format!("Authorization: {t}");
        let enc = format!("Content-Encoding: {coding}");
        let (code, resp) = curl(
            d,
            &[
                &with_cert[..],
                &[
                    "-H",
                    "Content-Type: application/json",
                    "-H",
                    &enc,
                    "-H",
                    "DRiP-Node-ID: c1",
                    "-H",
                    "DRiP-Node-Counter: 999998",
                    "-H",
                    &auth,
                    "--data-binary",
                    "@evil.z",
                    &commit_url,
                ],
            ]
            .concat(),
        );
        assert_eq!(code, want, "{coding}: {resp}");
        assert!(resp.contains(says), "{coding}: {resp}");
    }
    assert_eq!(get(&c2, "/v1/agents/evil").await.0, 404);
    assert_eq!(get(&c2, "/v1/agents/evil").await.0, 404);

    // A killed center is DEGRADED past 2x its interval, INTERRUPTED past 10x.
    let killed = Instant::now();
    drop(p3);
    wait_until("c3 DEGRADED at c2", Duration::from_secs(6), || async {
        peer_states(&c2)
            .await
            .iter()
            .any(|(id, s)| id == "c3" && s == "DEGRADED")
    })
    .await;
    // Silence counts from the last beat heard, up to one interval (1 s)
    // before the kill, so 2x the interval is at least 1 s after it.
    assert!(
        killed.elapsed() >= Duration::from_millis(1000),
        "degraded too early: {:?}",
        killed.elapsed()
    );
    wait_until("c3 INTERRUPTED at c2", Duration::from_secs(16), || async {
        peer_states(&c2)
            .await
            .iter()
            .any(|(id, s)| id == "c3" && s == "INTERRUPTED")
    })
    .await;
    assert!(
        killed.elapsed() >= Duration::from_secs(9),
        "interrupted too early: {:?}",
        killed.elapsed()
    );
    // c1 is still fine, and c2 still takes writes from it.
    assert!(peer_states(&c2)
        .await
        .iter()
        .any(|(id, s)| id == "c1" && s == "OPERATIONAL"));
    put_agents(&c1, "missed", 15, true).await;
    assert_eq!(delete(&c1, "/v1/agents/a05").await, 204);
    wait_until("writes reach c2 with c3 down", Duration::from_secs(10), || async {
        get(&c2, "/v1/agents/missed14").await.0 == 200
    })
    .await;

    // c3 comes back: anti-entropy brings it everything it missed, deletes too.
    let (_p3, c3) = serve(dir.path(), "c3");
    wait_until("c3 caught up", Duration::from_secs(20), || async {
        count(&c3, "/v1/agents?origin=c1&limit=100").await == 33
    })
    .await;
    assert_eq!(
        get(&c3, "/v1/agents/a05").await.0,
        404,
        "a delete made while c3 was down"
    );
    assert_eq!(get(&c3, "/v1/agents/a03").await.0, 404);
    assert_eq!(
        get(&c3, "/v1/agents/missed07").await.1["addresses"],
        json!(["2001:db8::7"])
    );
    wait_until("c3 active again", Duration::from_secs(10), || async {
        get(&c3, "/v1/peers").await.1["state"] == "active"
    })
    .await;
    let (_, peers) = get(&c3, "/v1/peers").await;
    assert!(
        peers["anti_entropy"]["pulled_records"].as_u64().unwrap() >= 16,
        "{peers}"
    );
}
