//! "Why did latency rise": `/metrics` carries per-peer call latency and
//! per-origin propagation delay histograms. A line c1 — c2 — c3 whose
//! link c2→c1 runs through a proxy that the test slows down: the buckets
//! above the added delay move for c2's calls to c1 and for c1's records
//! from c2 (its only path; c3 keeps c2 active should a slowed beat miss
//! its deadline).

use super::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Forwards every connection on `listen` to `target`, holding each chunk
/// `delay_ms` (read at each chunk) before passing it on.
async fn slow_proxy(listen: tokio::net::TcpListener, target: String, delay_ms: Arc<AtomicU64>) {
    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        delay_ms: Arc<AtomicU64>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            tokio::time::sleep(Duration::from_millis(delay_ms.load(Ordering::SeqCst))).await;
            if to.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    }
    loop {
        let Ok((a, _)) = listen.accept().await else { return };
        let (target, d) = (target.clone(), delay_ms.clone());
        tokio::spawn(async move {
            let Ok(b) = tokio::net::TcpStream::connect(&target).await else {
                return;
            };
            let _ = (a.set_nodelay(true), b.set_nodelay(true));
            let (ar, aw) = a.into_split();
            let (br, bw) = b.into_split();
            tokio::join!(pump(ar, bw, d.clone()), pump(br, aw, d));
        });
    }
}

/// The value of the `/metrics` line `series` (name and labels exactly), or 0.
async fn scrape(c: &Client, series: &str) -> f64 {
    let r = c.request(hyper::Method::GET, "/metrics", None).await.unwrap();
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// Observations of a histogram series above `le` (count minus that bucket).
async fn above(c: &Client, name: &str, labels: &str, le: &str) -> f64 {
    let count = scrape(c, &format!("{name}_count{{{labels}}}")).await;
    let under = scrape(c, &format!("{name}_bucket{{{labels},le=\"{le}\"}}")).await;
    count - under
}

/// Budget: three centers, five writes, under 30 s (mesh up, three beats on a
/// slowed link, one flood).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_histograms_move_when_a_link_slows() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), 3, "line");
    let listen = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let to1 = route_peer(dir.path(), "c2", "c1", listen.local_addr().unwrap().port());
    let delay_ms = Arc::new(AtomicU64::new(0));
    tokio::spawn(slow_proxy(listen, to1, delay_ms.clone()));
    let [(_p1, _url1, c1), (_p2, _url2, c2), (_p3, _url3, c3)] = spawn_all(dir.path(), ["c1", "c2", "c3"]);
    wait_mesh_up(&[&c1, &c2, &c3]).await;

    let beats = "peer=\"c1\",call=\"heartbeat\"";
    let calls = "regmesh_peer_call_seconds";
    let beats_before = scrape(&c2, &format!("{calls}_count{{{beats}}}")).await;
    assert!(beats_before >= 1.0, "c2 has timed its beats to c1");
    let slow_before = above(&c2, calls, beats, "0.1").await;
    let prop = "regmesh_propagation_seconds";
    let from_c2 = "origin=\"c2\"";
    let late_before = above(&c1, prop, from_c2, "0.1").await;

    // Each chunk on c2's link to c1 now waits 150 ms each way.
    delay_ms.store(150, Ordering::SeqCst);
    put_agents(&c2, "slow", 5, false).await;
    wait_until("c1 holds c2's five agents", Duration::from_secs(15), || async {
        count(&c1, "/v1/agents?limit=100").await >= 5
    })
    .await;
    wait_until("three slowed beats timed", Duration::from_secs(15), || async {
        above(&c2, calls, beats, "0.1").await >= slow_before + 3.0
    })
    .await;
    let late = above(&c1, prop, from_c2, "0.1").await - late_before;
    assert!(late >= 5.0, "each of the five floods took over 0.1 s: {late}");
    // c3 got them from c2 directly, and timed them too.
    let at3 = scrape(&c3, &format!("{prop}_count{{{from_c2}}}")).await;
    assert!(at3 >= 5.0, "{at3}");
    // One series per peer and call kind, none for the center itself.
    let r = c2.request(hyper::Method::GET, "/metrics", None).await.unwrap();
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert!(text.contains("# TYPE regmesh_peer_call_seconds histogram"), "{text}");
    assert!(
        !text.contains(&format!("{calls}_count{{peer=\"c2\"")),
        "no series for itself"
    );
}
