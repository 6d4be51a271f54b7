//! The RD over IPv4: c1 of a two-center mesh serves CoAP on 127.0.0.1; a
//! registration there without `base` takes the requester's IPv4 address,
//! and c2 (IPv6) shows its links resolved against it. Raw CoAP over UDP.
//! Budget: about 5 s (two processes).

mod peer_harness;
mod rd_harness;

use peer_harness::spawn;
use rd_harness::{coap_msg, code, eventually, exchange, init_rd};
use std::net::UdpSocket;
use std::time::Duration;

#[test]
fn registration_and_lookup_over_ipv4() {
    let dir = tempfile::tempdir().unwrap();
    let base = init_rd(dir.path(), 2);
    let v4 = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let cfg = dir.path().join("c1.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let v6 = format!("listen = \"[::1]:{}\"", base + 2);
    assert!(text.contains(&v6), "{text}");
    std::fs::write(&cfg, text.replace(&v6, &format!("listen = \"{v4}\""))).unwrap();
    let _procs: Vec<_> = ["c1", "c2"].iter().map(|id| spawn(dir.path(), id).0).collect();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = sock.local_addr().unwrap();
    let mut mid = 0x7000u16;
    // A center takes writes once a peer answers (DRiP §5.7).
    eventually(Duration::from_secs(10), || {
        mid += 1;
        let r = exchange(
            &sock,
            &v4.to_string(),
            &coap_msg(0, 0x02, mid, &["rd"], &["ep=four"], b"</t>;rt=\"v4\""),
        );
        (code(&r) == "2.01").then_some(())
    });
    let six = UdpSocket::bind("[::1]:0").unwrap();
    six.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let c2 = format!("[::1]:{}", base + 12);
    let want = format!("<coap://{me}/t>");
    let body = eventually(Duration::from_secs(5), || {
        mid += 1;
        let r = exchange(
            &six,
            &c2,
            &coap_msg(0, 0x01, mid, &["rd-lookup", "res"], &["rt=v4"], b""),
        );
        let body = String::from_utf8_lossy(&r).into_owned();
        body.contains(&want).then_some(body)
    });
    assert!(body.contains(&format!("anchor=\"coap://{me}\"")), "{body}");
}
