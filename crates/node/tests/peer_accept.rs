//! The peer listener's bounds before anyone is known (issue 11, item 7), on
//! the real accept loop with shrunken limits: stalled handshakes are evicted
//! and capped per address, connections without a client certificate reach
//! only HELLO, are capped in number and closed after their lifetime, and a
//! peer with a certificate is served throughout. Budget: about 4 s, 20
//! loopback connections.

use axum::routing::{get, post};
use axum::Router;
use regmesh_node::peer::accept::{serve_with, AcceptLimits};
use regmesh_node::peer::pki;
use regmesh_node::serve::ConnTimeouts;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const LIFETIME: Duration = Duration::from_secs(1);

fn limits() -> AcceptLimits {
    AcceptLimits {
        handshake_timeout: Duration::from_secs(5),
        handshakes_max: 4,
        connections_max: 64,
        pending_per_address_max: 3,
        unauthenticated_max: 2,
        unauthenticated_lifetime: LIFETIME,
        timeouts: ConnTimeouts {
            header_read: Duration::from_secs(5),
            idle: Duration::from_secs(30),
        },
    }
}

struct Listener {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    _closing: tokio::sync::watch::Sender<bool>,
}

/// A CA, certificates for c1 and c2, and c2's accept loop on a loopback port
/// serving `/mesh/v1/hello` and `/state`.
async fn listen() -> Listener {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::Ca::generate("test CA").unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
    for id in ["c1", "c2"] {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .unwrap()
            .serialize_pem();
        std::fs::write(dir.path().join(format!("{id}.crt")), ca.issue(id, &key).unwrap()).unwrap();
        std::fs::write(dir.path().join(format!("{id}.key")), key).unwrap();
    }
    let p = |f: &str| dir.path().join(f);
    let tls = pki::server_config(&p("c2.crt"), &p("c2.key"), &p("ca.pem")).unwrap();
    let router = Router::new()
        .route("/mesh/v1/hello", post(|| async { "hello" }))
        .route("/state", get(|| async { "state" }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (closing, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(serve_with(l, tls, router, rx, limits()));
    Listener {
        addr,
        dir,
        _closing: closing,
    }
}

async fn tcp_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// A TLS connection to c2 from `from`, with c1's certificate or none.
async fn tls_from(l: &Listener, from: &str, cert: bool) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let p = |f: &str| l.dir.path().join(f);
    let cfg = pki::client_config(&p("c1.crt"), &p("c1.key"), &p("ca.pem"), cert).unwrap();
    let tcp = tcp_from(from, l.addr).await;
    tokio_rustls::TlsConnector::from(cfg)
        .connect(pki::server_name("c2").unwrap(), tcp)
        .await
}

/// One keep-alive request on `s`; (status, body), or an error once the
/// server has closed the connection.
async fn call<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    method: &str,
    path: &str,
) -> std::io::Result<(u16, String)> {
    let req = format!("{method} {path} HTTP/1.1\r\nhost: c2\r\ncontent-length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("no answer in 3 s"))??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return Ok((head[9..12].parse().unwrap(), body.to_string()));
            }
        }
    }
}

/// True if the server closes `s` within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn without_a_certificate_only_hello_few_and_briefly() {
    let l = listen().await;
    let opened = Instant::now();
    let mut a = tls_from(&l, "127.0.0.2", false).await.unwrap();
    let (status, body) = call(&mut a, "GET", "/state").await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("certificate_required"), "{body}");
    assert_eq!(
        call(&mut a, "POST", "/mesh/v1/hello").await.unwrap(),
        (200, "hello".into())
    );
    let mut b = tls_from(&l, "127.0.0.3", false).await.unwrap();
    assert_eq!(call(&mut b, "POST", "/mesh/v1/hello").await.unwrap().0, 200);
    // A third one at once is over the cap: closed.
    let third = match tls_from(&l, "127.0.0.4", false).await {
        Ok(mut c) => call(&mut c, "POST", "/mesh/v1/hello").await,
        Err(e) => Err(e),
    };
    assert!(third.is_err(), "a third connection without a certificate was served");
    // A peer with a certificate is not counted among them.
    let mut peer = tls_from(&l, "127.0.0.5", true).await.unwrap();
    assert_eq!(call(&mut peer, "GET", "/state").await.unwrap(), (200, "state".into()));
    // A busy connection without a certificate still ends after its lifetime.
    let ended = loop {
        if call(&mut a, "POST", "/mesh/v1/hello").await.is_err() {
            break opened.elapsed();
        }
        assert!(
            opened.elapsed() < LIFETIME * 3,
            "still open after {:?}",
            opened.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(ended >= LIFETIME - Duration::from_millis(100), "ended early: {ended:?}");
    // The peer's connection outlives it.
    assert_eq!(call(&mut peer, "GET", "/state").await.unwrap().0, 200);
}

#[tokio::test]
async fn stalled_handshakes_are_capped_per_address_and_evicted() {
    let l = listen().await;
    // Three stalled handshakes from one address are kept; a fourth is closed at once.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(tcp_from("127.0.0.6", l.addr).await);
    }
    let mut fourth = tcp_from("127.0.0.6", l.addr).await;
    assert!(closed_within(&mut fourth, Duration::from_millis(500)).await);
    // Six more from two other addresses: nine stalled, four allowed in flight,
    // so the oldest five are evicted long before the 5 s handshake deadline.
    for from in ["127.0.0.7", "127.0.0.8"] {
        for _ in 0..3 {
            stalled.push(tcp_from(from, l.addr).await);
        }
    }
    let mut closed = 0;
    for s in &mut stalled[..5] {
        closed += usize::from(closed_within(s, Duration::from_millis(500)).await);
    }
    assert_eq!(closed, 5, "the oldest stalled handshakes were not evicted");
    // A peer's handshake goes through at once, evicting one of the rest.
    let t0 = Instant::now();
    let mut peer = tls_from(&l, "127.0.0.9", true).await.unwrap();
    assert_eq!(call(&mut peer, "GET", "/state").await.unwrap(), (200, "state".into()));
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    drop(stalled);
}
