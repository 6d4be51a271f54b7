//! A peer that stops answering is judged on its deadlines (issue 11, item
//! 3): real `regmesh` processes, with the c1–c2 link running through
//! proxies the test freezes (bytes are taken but not forwarded, as with a
//! paused process or a black-holed link). Budget: about 20 s on two cores.

mod peer_harness;

use peer_harness::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

const INTERVAL_MS: u64 = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_link_degrades_at_2x_and_interrupts_at_10x() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init(d, 3, "full");
    for c in ["c1", "c2", "c3"] {
        set_peer_setting(d, c, "beat_interval_ms", &INTERVAL_MS.to_string());
    }
    let (l12, l21) = (
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let to2 = route_peer(d, "c1", "c2", l12.local_addr().unwrap().port());
    let to1 = route_peer(d, "c2", "c1", l21.local_addr().unwrap().port());
    let freeze = Arc::new(Freeze::default());
    tokio::spawn(freezable_proxy(l12, to2, freeze.clone()));
    tokio::spawn(freezable_proxy(l21, to1, freeze.clone()));
    let (_p1, c1) = serve(d, "c1");
    let (_p2, c2) = serve(d, "c2");
    let (_p3, c3) = serve(d, "c3");
    wait_mesh_up(&[&c1, &c2, &c3]).await;

    // Freeze both directions: nothing c1 and c2 send each other arrives,
    // and no call between them fails; they just hang.
    freeze.set(true);
    let frozen = Instant::now();
    let mut states: Vec<(Duration, String)> = Vec::new();
    while frozen.elapsed() < Duration::from_millis(16 * INTERVAL_MS) {
        let s = state_of(&c1, "c2").await;
        if states.last().map(|(_, l)| l) != Some(&s) {
            states.push((frozen.elapsed(), s.clone()));
        }
        if s == "INTERRUPTED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("c1's view of c2 after the freeze: {states:?}");
    let at = |s: &str| states.iter().find(|(_, x)| x == s).map(|(t, _)| *t);
    let degraded = at("DEGRADED").unwrap_or_else(|| panic!("never DEGRADED: {states:?}"));
    let interrupted = at("INTERRUPTED").unwrap_or_else(|| panic!("never INTERRUPTED: {states:?}"));
    // The last good beat was about one interval or less before the freeze,
    // so DEGRADED is due between 1× and 2× after it, INTERRUPTED between 9×
    // and 10×. Lower bounds allow a beat late by half an interval, upper
    // bounds 1.5 s of slack for a loaded machine.
    let ms = Duration::from_millis;
    let slack = ms(1500);
    assert!(degraded <= ms(2 * INTERVAL_MS) + slack, "DEGRADED too late: {states:?}");
    assert!(degraded >= ms(INTERVAL_MS / 2), "DEGRADED too early: {states:?}");
    assert!(
        interrupted >= ms(8 * INTERVAL_MS + INTERVAL_MS / 2) && interrupted <= ms(10 * INTERVAL_MS) + slack,
        "INTERRUPTED off its deadline: {states:?}"
    );
    wait_until("c2 judges c1 the same way", Duration::from_secs(2), || async {
        state_of(&c2, "c1").await == "INTERRUPTED"
    })
    .await;
    assert_eq!(state_of(&c1, "c3").await, "OPERATIONAL");

    // c2 gets no propagation but still gets beats: a create at c1 is not
    // held up by it, and once the link thaws both sides are OPERATIONAL.
    let t0 = Instant::now();
    create_agents(&c1, "while-frozen", 1).await;
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "create waited {:?}",
        t0.elapsed()
    );
    freeze.set(false);
    wait_until("c1 and c2 OPERATIONAL again", Duration::from_secs(10), || async {
        state_of(&c1, "c2").await == "OPERATIONAL" && state_of(&c2, "c1").await == "OPERATIONAL"
    })
    .await;
    wait_until("c2 has the create", Duration::from_secs(10), || async {
        get(&c2, "/v1/agents/while-frozen0").await.0 == 200
    })
    .await;
}
