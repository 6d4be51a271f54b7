//! Slow and idle clients cannot hold the client API (issue 11, item 6):
//! half-sent requests and idle connections from one address are capped and
//! closed after their deadlines, and `/healthz` from another address answers
//! meanwhile. Budget: about 12 s of wall time, at most 100 connections.

mod common;

use common::start_with;
use hyper::StatusCode;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const HEADER_READ_MS: u64 = 1000;
const IDLE_MS: u64 = 3000;

fn limits(cfg: &mut regmesh_node::Config) {
    cfg.api.max_connections = 64;
    cfg.api.max_connections_per_address = 16;
    cfg.api.header_read_timeout_ms = HEADER_READ_MS;
    cfg.api.idle_timeout_ms = IDLE_MS;
}

/// A connection to `server` from the loopback address `from`.
async fn connect_from(from: &str, server: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(format!("{from}:0").parse().unwrap())?;
    s.connect(server).await
}

/// Waits up to `within` for the server to close `c` (EOF or reset).
async fn closed_within(c: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline.into(), c.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Sends one complete `GET /healthz` on `c` and reads its whole answer.
async fn healthz_on(c: &mut TcpStream) -> String {
    c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"}") {
        let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf))
            .await
            .expect("answer in time")
            .unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

#[tokio::test]
async fn half_sent_requests_do_not_take_healthz_down_and_are_closed() {
    let c = start_with(limits).await;
    let server = c.running.as_ref().unwrap().addr;
    // 100 connections from one address: 80 with half a request head, 20 with nothing.
    let sent = Instant::now();
    let mut slow = Vec::new();
    for i in 0..100 {
        let Ok(mut s) = connect_from("127.0.0.2", server).await else {
            continue;
        };
        if i < 80 {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ").await;
        }
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Another address is served at once (the old server held every slot).
    let t0 = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(2), c.get("/healthz")).await;
    assert!(
        r.is_ok(),
        "/healthz did not answer within 2 s behind 100 slow connections"
    );
    assert_eq!(r.unwrap().status, StatusCode::OK);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    // Every slow connection is closed by the header read deadline (plus
    // slack, and well before the idle deadline), the ones over the
    // per-address cap at once.
    let by = sent + Duration::from_millis(HEADER_READ_MS + 1200);
    for s in &mut slow {
        assert!(
            closed_within(s, by.saturating_duration_since(Instant::now())).await,
            "a half-sent request was still open after {:?}",
            sent.elapsed()
        );
    }
    // The per-address count came back: that address is served again.
    let mut again = connect_from("127.0.0.2", server).await.unwrap();
    assert!(healthz_on(&mut again).await.starts_with("HTTP/1.1 200"));
    c.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_close_after_the_idle_deadline() {
    let c = start_with(limits).await;
    let server = c.running.as_ref().unwrap().addr;
    let mut idle = Vec::new();
    for _ in 0..16 {
        let mut s = connect_from("127.0.0.3", server).await.unwrap();
        assert!(healthz_on(&mut s).await.starts_with("HTTP/1.1 200"));
        idle.push(s);
    }
    // The cap holds: a 17th connection from that address is closed at once.
    let mut over = connect_from("127.0.0.3", server).await.unwrap();
    assert!(closed_within(&mut over, Duration::from_millis(500)).await);
    // Idle is not a slow header: past the header deadline a kept-alive
    // connection still takes its next request.
    tokio::time::sleep(Duration::from_millis(HEADER_READ_MS + 300)).await;
    let answered = Instant::now();
    assert!(healthz_on(&mut idle[0]).await.starts_with("HTTP/1.1 200"));
    // Other addresses are served while they idle.
    assert_eq!(c.get("/healthz").await.status, StatusCode::OK);
    // And then it is closed by the idle deadline, not before; so are the others.
    assert!(closed_within(&mut idle[0], Duration::from_millis(IDLE_MS + 2000)).await);
    assert!(
        answered.elapsed() >= Duration::from_millis(IDLE_MS - 200),
        "closed before the idle deadline: {:?}",
        answered.elapsed()
    );
    for s in &mut idle[1..] {
        assert!(closed_within(s, Duration::from_millis(IDLE_MS + 2000)).await);
    }
    c.stop().await;
}
