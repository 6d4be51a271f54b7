//! A cut link: the peer degrades, floods route around it, and it heals.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_degrades_floods_route_around_it_and_it_heals() {
    // A full mesh of three whose c1–c3 link runs through two proxies (one
    // per direction of calls), which the test cuts and restores: the real
    // nodes, TLS and storage under a partitioned network.
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), 3, "full");
    let (l13, l31) = (
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let to3 = route_peer(dir.path(), "c1", "c3", l13.local_addr().unwrap().port());
    let to1 = route_peer(dir.path(), "c3", "c1", l31.local_addr().unwrap().port());
    let (cut13, cut31) = (std::sync::Arc::new(Cut::default()), std::sync::Arc::new(Cut::default()));
    tokio::spawn(cuttable_proxy(l13, to3, cut13.clone()));
    tokio::spawn(cuttable_proxy(l31, to1, cut31.clone()));
    let (_p1, c1) = serve(dir.path(), "c1");
    let (_p2, c2) = serve(dir.path(), "c2");
    let (_p3, c3) = serve(dir.path(), "c3");
    wait_mesh_up(&[&c1, &c2, &c3]).await;

    // Both directions cut: each side sees the other DEGRADED, then
    // INTERRUPTED; writes still reach the far side through c2.
    cut13.set(true);
    cut31.set(true);
    for (c, peer) in [(&c1, "c3"), (&c3, "c1")] {
        wait_until("the cut peer is INTERRUPTED", Duration::from_secs(20), || async {
            state_of(c, peer).await == "INTERRUPTED"
        })
        .await;
    }
    assert_eq!(state_of(&c1, "c2").await, "OPERATIONAL");
    put_agents(&c1, "around", 10, true).await;
    wait_until("c3 has c1's writes through c2", Duration::from_secs(10), || async {
        count(&c3, "/v1/agents?origin=c1&limit=100").await == 10
    })
    .await;

    // One way only: c3's calls reach c1 and their answers carry c1's beat,
    // so c3 holds c1 OPERATIONAL; c1's calls to c3 go unanswered, so c1
    // holds c3 DEGRADED or worse.
    cut31.set(false);
    wait_until("c3 sees c1 again", Duration::from_secs(15), || async {
        state_of(&c3, "c1").await == "OPERATIONAL"
    })
    .await;
    assert_ne!(state_of(&c1, "c3").await, "OPERATIONAL", "c1's own calls still fail");

    // Healed: both OPERATIONAL, and later writes flow directly again.
    cut13.set(false);
    wait_until("c1 sees c3 again", Duration::from_secs(15), || async {
        state_of(&c1, "c3").await == "OPERATIONAL"
    })
    .await;
    put_agents(&c3, "back", 5, true).await;
    wait_until("c1 has c3's writes", Duration::from_secs(10), || async {
        count(&c1, "/v1/agents?origin=c3&limit=100").await == 5
    })
    .await;
    let _ = c2;
}
