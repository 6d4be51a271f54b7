//! The CoAP Resource Directory front in a real mesh of `regmesh` processes
//! (set up with `regmesh init --fronts rd`), driven by clients nobody here
//! wrote: aiocoap's `aiocoap-client` and libcoap's `coap-client-notls`
//! (installed by `scripts/test`), plus a raw UDP socket for retransmissions
//! and malformed input. Budget: about 20 s (three processes, ~25 client runs),
//! and about 12 s for confirmable notifications (two processes).

mod peer_harness;
mod rd_harness;

use peer_harness::{spawn, Proc};
use rd_harness::{coap_msg, coap_msg_with, code, eventually, exchange, init_rd, run, tool};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// POSTs link-format `links` to `uri` with libcoap's client; must succeed.
fn register_libcoap(links: &str, uri: &str) {
    let (ok, out) = libcoap(&["-m", "post", "-t", "40", "-e", links, uri]);
    assert!(ok, "{out}");
}

fn aio(args: &[&str]) -> (bool, String) {
    run(Command::new(tool("aiocoap-client")).args(args))
}

fn libcoap(args: &[&str]) -> (bool, String) {
    run(Command::new(tool("coap-client-notls")).args(args))
}

fn lookup(port: u16, what: &str) -> String {
    let (ok, out) = aio(&[&format!("coap://[::1]:{port}/rd-lookup/{what}")]);
    assert!(ok, "{out}");
    out
}

#[test]
fn rd_in_a_mesh_with_outside_clients() {
    tool("aiocoap-client");
    tool("coap-client-notls");
    let dir = tempfile::tempdir().unwrap();
    let base = init_rd(dir.path(), 3);
    // c1 also proxies a real aiocoap-rd (document 004's lookup proxy).
    let upstream_port = {
        let s = UdpSocket::bind("[::1]:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let aiord = Proc(
        Command::new(tool("aiocoap-rd"))
            .args(["--bind", &format!("[::1]:{upstream_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let c1 = dir.path().join("c1.toml");
    let text = std::fs::read_to_string(&c1).unwrap();
    assert!(text.contains("upstreams = []"), "{text}");
    std::fs::write(
        &c1,
        text.replace(
            "upstreams = []",
            &format!("upstreams = [\"coap://[::1]:{upstream_port}\"]"),
        ),
    )
    .unwrap();
    let mut procs: Vec<Proc> = ["c1", "c2", "c3"].iter().map(|id| spawn(dir.path(), id).0).collect();
    let (p1, p2, p3) = (base + 2, base + 12, base + 22);
    let rd1 = format!("coap://[::1]:{p1}");
    // A center takes writes once a peer answers (DRiP §5.7): wait for that.
    let sock = UdpSocket::bind("[::1]:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut mid = 0x4000u16;
    for p in [p1, p2, p3] {
        eventually(Duration::from_secs(10), || {
            mid += 1;
            let r = exchange(
                &sock,
                &format!("[::1]:{p}"),
                &coap_msg(0, 0x02, mid, &["rd"], &["ep=warm-up"], b"</w>"),
            );
            (code(&r) == "2.01").then_some(())
        });
    }
    let rd2 = format!("coap://[::1]:{p2}");

    // Discovery (aiocoap at c2), with rt filtering.
    let (ok, out) = aio(&[&format!("{rd2}/.well-known/core?rt=core.rd*")]);
    assert!(
        ok && out.contains("</rd>;rt=\"core.rd\"") && out.contains("</rd-lookup/res>"),
        "{out}"
    );
    let (ok, out) = aio(&[&format!("{rd2}/.well-known/core?rt=core.rd-lookup-ep")]);
    assert!(ok && out.contains("</rd-lookup/ep>") && !out.contains("</rd>"), "{out}");

    // Observe resource lookups at c2 (libcoap, for 3 s) before anything matches.
    let observer = Command::new(tool("coap-client-notls"))
        .args(["-s", "3", "-m", "get", &format!("{rd2}/rd-lookup/res?rt=observed")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    // Register at c1 with libcoap; look up at c2 with aiocoap.
    register_libcoap(
        "</sensors/temp>;rt=\"temperature-c observed\";if=\"sensor\",</sensors/light>;rt=\"light-lux\"",
        &format!("{rd1}/rd?ep=node1&base=coap://[2001:db8::1]:61616&et=oic.d.sensor&lt=300"),
    );
    let res = eventually(Duration::from_secs(5), || {
        let out = lookup(p2, "res?rt=temperature*&provenance");
        out.contains("<coap://[2001:db8::1]:61616/sensors/temp>").then_some(out)
    });
    assert!(
        res.contains("anchor=\"coap://[2001:db8::1]:61616\"") && res.contains("provenance=\"/rd/"),
        "{res}"
    );
    assert!(!res.contains("light"), "{res}");
    let ep = lookup(p2, "ep?et=oic.d.sensor&lt-remaining");
    assert!(
        ep.contains("ep=\"node1\"") && ep.contains("lt-remaining=") && ep.contains("lt=300"),
        "{ep}"
    );
    let path = ep
        .split('<')
        .nth(1)
        .and_then(|s| s.split('>').next())
        .unwrap()
        .to_string();
    assert!(lookup(p2, "res?ep=node1&if=sensor&href=coap://[2001:db8::1]:61616/sensors/*").contains("sensors/temp"));
    assert!(
        !lookup(p2, "res?ep=node1&rt=light-lux&if=sensor").contains("sensors"),
        "criteria AND"
    );

    // The observer was notified of the replicated registration.
    let out = observer.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("sensors/temp"), "Observe notification missing: {out:?}");

    // Lookup proxy: a registration at aiocoap-rd shows in c1's resource
    // lookup with provenance, and stays when aiocoap-rd goes away.
    let (ok, out) = aio(&[
        "-m",
        "POST",
        "--content-format",
        "application/link-format",
        "--payload",
        "</tp>;rt=\"third-party\"",
        &format!("coap://[::1]:{upstream_port}/resourcedirectory/?ep=tp1&lt=300"),
    ]);
    assert!(ok, "{out}");
    let proxied = eventually(Duration::from_secs(8), || {
        let out = lookup(p1, "res?rt=third*&provenance");
        out.contains("/tp>").then_some(out)
    });
    assert!(
        proxied.contains(&format!("provenance=\"coap://[::1]:{upstream_port}/")),
        "{proxied}"
    );
    // c1 observes aiocoap-rd's resource lookup: a second registration there
    // arrives as a notification (counted in c1's metrics), not by polling.
    let (ok, out) = aio(&[
        "-m",
        "POST",
        "--content-format",
        "application/link-format",
        "--payload",
        "</tq>;rt=\"third-party\"",
        &format!("coap://[::1]:{upstream_port}/resourcedirectory/?ep=tp2&lt=300"),
    ]);
    assert!(ok, "{out}");
    eventually(Duration::from_secs(8), || {
        lookup(p1, "res?rt=third*").contains("/tq>").then_some(())
    });
    let metrics = run(Command::new("curl").args(["-s", &format!("http://127.0.0.1:{base}/metrics")])).1;
    let notified: u64 = metrics
        .lines()
        .find(|l| l.starts_with("regmesh_rd_proxy_notifications_total{"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(notified >= 1, "no notification from aiocoap-rd counted:\n{metrics}");
    drop(aiord);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        lookup(p1, "res?rt=third-party").contains("/tp>"),
        "kept while its lifetime lasts"
    );

    // Simple registration (RFC 9176 §5.1): an aiocoap endpoint asks c1, which
    // fetches its /.well-known/core and answers 2.04 (a separate response).
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rd_endpoint.py");
    let (ok, out) = run(Command::new("python3").args([script, &format!("{rd1}/.well-known/rd?ep=simple1&lt=100")]));
    assert!(ok && out.starts_with("2.04"), "{out}");
    let simple = eventually(Duration::from_secs(5), || {
        let out = lookup(p2, "res?ep=simple1&rt=simple-temp");
        out.contains("/sensors/simple>").then_some(out)
    });
    assert!(simple.contains("<coap://[::1]:"), "{simple}");

    // Update (libcoap) at c2, forwarded to the owner c1: lifetime and an extra attribute.
    let (ok, out) = libcoap(&["-m", "post", &format!("{rd2}{path}?lt=200&et=oic.d.other")]);
    assert!(ok, "{out}");
    eventually(Duration::from_secs(5), || {
        lookup(p2, "ep?ep=node1").contains("lt=200").then_some(())
    });
    // GET of the registration at the other center.
    let (ok, out) = aio(&[&format!("{rd2}{path}")]);
    assert!(ok && out.contains("</sensors/temp>"), "{out}");

    // Block1 registration and Block2 lookups of a large result.
    let big: Vec<String> = (0..60).map(|i| format!("</s/{i:02}>;rt=\"bulk\"")).collect();
    let (ok, out) = libcoap(&[
        "-m",
        "post",
        "-t",
        "40",
        "-b",
        "64",
        "-e",
        &big.join(","),
        &format!("{rd1}/rd?ep=bulk"),
    ]);
    assert!(ok, "{out}");
    let all = eventually(Duration::from_secs(5), || {
        let (ok, out) = libcoap(&["-m", "get", &format!("coap://[::1]:{p2}/rd-lookup/res?rt=bulk")]);
        (ok && out.matches("rt=\"bulk\"").count() == 60).then_some(out)
    });
    assert!(all.len() > 1024, "a result larger than one block");
    let aio_all = lookup(p2, "res?rt=bulk");
    assert_eq!(aio_all.matches("rt=\"bulk\"").count(), 60);
    let page = lookup(p2, "res?rt=bulk&page=2&count=5");
    assert_eq!(page.matches("rt=\"bulk\"").count(), 5);
    assert!(
        page.contains("/s/10>") && page.contains("/s/14>") && !page.contains("/s/15>"),
        "{page}"
    );

    // Retransmitted confirmable requests run once (raw UDP at c1).
    let to = format!("[::1]:{p1}");
    let post = coap_msg(0, 0x02, 0x1234, &["rd"], &["ep=dup"], b"</x>");
    let a = exchange(&sock, &to, &post);
    let b = exchange(&sock, &to, &post);
    assert_eq!(code(&a), "2.01");
    assert_eq!(a, b, "the cached response is re-sent");
    let dup = eventually(Duration::from_secs(5), || {
        let out = lookup(p2, "ep?ep=dup");
        out.contains("ep=\"dup\"").then_some(out)
    });
    assert_eq!(dup.matches("ep=\"dup\"").count(), 1, "{dup}");
    let dpath: Vec<String> = dup
        .split('<')
        .nth(1)
        .unwrap()
        .split('>')
        .next()
        .unwrap()
        .split('/')
        .skip(1)
        .map(String::from)
        .collect();
    let segs: Vec<&str> = dpath.iter().map(String::as_str).collect();
    let del = coap_msg(0, 0x04, 0x1235, &segs, &[], b"");
    let a = exchange(&sock, &to, &del);
    let b = exchange(&sock, &to, &del);
    assert_eq!(
        (code(&a), code(&b)),
        ("2.02".into(), "2.02".into()),
        "a DELETE retransmission is not run again"
    );
    let fresh = exchange(&sock, &to, &coap_msg(0, 0x04, 0x1236, &segs, &[], b""));
    assert_eq!(code(&fresh), "4.04", "a new DELETE runs");

    // Bad input: 4.xx with a diagnostic, nothing stored.
    let long = format!("ep={}", "e".repeat(64));
    for (msg, want) in [
        (coap_msg(0, 0x02, 0x2000, &["rd"], &[&long], b"</x>"), "4.00"),
        (coap_msg(0, 0x02, 0x2001, &["rd"], &["ep=bad1"], b"<rel/x>"), "4.00"),
        (
            coap_msg(
                0,
                0x02,
                0x2002,
                &["rd"],
                &["ep=bad2", "base=coap://[fe80::1%25eth0]"],
                b"</x>",
            ),
            "4.00",
        ),
        (coap_msg(0, 0x02, 0x2003, &["rd"], &["ep=bad\u{1}"], b"</x>"), "4.00"),
        (
            coap_msg(0, 0x01, 0x2004, &["rd-lookup", "res"], &["page=1"], b""),
            "4.00",
        ),
        // Accept other than link format on a lookup; a Block1 given twice.
        (
            coap_msg_with(0, 0x01, 0x2005, &["rd-lookup", "res"], &[], &[(17, &[50])], b""),
            "4.06",
        ),
        (
            coap_msg_with(
                0,
                0x02,
                0x2006,
                &["rd"],
                &["ep=bad3"],
                &[(27, &[0x06]), (27, &[0x16])],
                b"</x>",
            ),
            "4.02",
        ),
    ] {
        let r = exchange(&sock, &to, &msg);
        assert_eq!(code(&r), want);
        assert!(r.len() > 6, "a diagnostic payload");
    }
    let garbage = [0x40u8, 0x01, 0x30, 0x00, 0x35, b'x'];
    let r = exchange(&sock, &to, &garbage);
    assert_eq!(r[0] >> 4 & 3, 3, "a malformed CON is answered with a Reset");
    assert!(!lookup(p1, "ep?ep=bad*").contains("bad"));

    // Handover: the same endpoint registers at c3; lookups show only the newer.
    register_libcoap(
        "</moved>;rt=\"handover\"",
        &format!("coap://[::1]:{p3}/rd?ep=node1&base=coap://[2001:db8::2]"),
    );
    let after = eventually(Duration::from_secs(5), || {
        let out = lookup(p2, "ep?ep=node1");
        out.contains("2001:db8::2").then_some(out)
    });
    assert_eq!(after.matches("ep=\"node1\"").count(), 1, "{after}");
    eventually(Duration::from_secs(5), || {
        let out = lookup(p1, "res?ep=node1");
        (out.contains("/moved>") && !out.contains("sensors/temp")).then_some(())
    });

    // Expiry: a 2 s registration at c1 leaves every center's lookups.
    let (ok, out) = aio(&[
        "-m",
        "POST",
        "--content-format",
        "application/link-format",
        "--payload",
        "</e>",
        &format!("{rd1}/rd?ep=short&lt=2"),
    ]);
    assert!(ok && out.contains("/rd/"), "{out}");
    eventually(Duration::from_secs(3), || {
        lookup(p2, "ep?ep=short").contains("short").then_some(())
    });
    eventually(Duration::from_secs(8), || {
        (!lookup(p2, "ep?ep=short").contains("short")).then_some(())
    });

    // Removal (aiocoap) at c2 of a registration c1 owns: forwarded.
    let bulk = lookup(p2, "ep?ep=bulk");
    let bpath = bulk
        .split('<')
        .nth(1)
        .and_then(|s| s.split('>').next())
        .unwrap()
        .to_string();
    let (ok, out) = aio(&["-m", "DELETE", &format!("{rd2}{bpath}")]);
    assert!(ok, "{out}");
    eventually(Duration::from_secs(5), || {
        (!lookup(p1, "ep?ep=bulk").contains("bulk")).then_some(())
    });

    // Split: c3 (node1's owner now) goes away. Its registration stays visible
    // (its lifetime has not run out); a removal elsewhere cannot reach it: 5.04.
    let path3 = after
        .split('<')
        .nth(1)
        .and_then(|s| s.split('>').next())
        .unwrap()
        .to_string();
    drop(procs.remove(2));
    let segs: Vec<&str> = path3.split('/').skip(1).collect();
    let r = exchange(
        &sock,
        &format!("[::1]:{p2}"),
        &coap_msg(0, 0x04, 0x3000, &segs, &[], b""),
    );
    assert_eq!(code(&r), "5.04", "{}", String::from_utf8_lossy(&r));
    assert!(lookup(p2, "ep?ep=node1").contains("ep=\"node1\""));
}

/// A GET with Observe: 0 (register), token `token`, on `path?query`.
fn observe_msg(mid: u16, token: u8, path: &[&str], query: &[&str]) -> Vec<u8> {
    let mut m = vec![0x41, 0x01, (mid >> 8) as u8, mid as u8, token];
    // Observe (6), empty value = 0.
    m.push(6 << 4);
    let mut last = 6u16;
    for (n, v) in path.iter().map(|p| (11u16, p)).chain(query.iter().map(|q| (15u16, q))) {
        let delta = (n - last) as u8;
        last = n;
        assert!(v.len() < 13);
        m.push((delta << 4) | v.len() as u8);
        m.extend_from_slice(v.as_bytes());
    }
    m
}

/// Every datagram `sock` receives within `wait`.
fn drain(sock: &UdpSocket, wait: Duration) -> Vec<Vec<u8>> {
    let until = Instant::now() + wait;
    let mut out = vec![];
    let mut buf = [0u8; 1500];
    while Instant::now() < until {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            out.push(buf[..n].to_vec());
        }
    }
    out
}

fn msg_type(m: &[u8]) -> u8 {
    (m[0] >> 4) & 3
}

fn msg_id(m: &[u8]) -> u16 {
    u16::from_be_bytes([m[2], m[3]])
}

/// Acknowledges every confirmable message in `msgs`.
fn ack_all(sock: &UdpSocket, to: &str, msgs: &[Vec<u8>]) {
    for m in msgs.iter().filter(|m| msg_type(m) == 0) {
        let id = msg_id(m);
        sock.send_to(&[0x60, 0x00, (id >> 8) as u8, id as u8], to).unwrap();
    }
}

#[test]
fn observers_that_never_acknowledge_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let base = init_rd(dir.path(), 2);
    let c1 = dir.path().join("c1.toml");
    let text = std::fs::read_to_string(&c1).unwrap();
    std::fs::write(
        &c1,
        text.replace("upstreams = []", "upstreams = []\nack_timeout_ms = 100"),
    )
    .unwrap();
    let _procs: Vec<Proc> = ["c1", "c2"].iter().map(|id| spawn(dir.path(), id).0).collect();
    let rd1 = format!("[::1]:{}", base + 2);
    let reg = UdpSocket::bind("[::1]:0").unwrap();
    reg.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut mid = 0x5000u16;
    let mut register = |ep: &str| {
        mid += 1;
        let r = exchange(
            &reg,
            &rd1,
            &coap_msg(
                0,
                0x02,
                mid,
                &["rd"],
                &[&format!("ep={ep}")],
                format!("</s>;rt=\"obs-{ep}\"").as_bytes(),
            ),
        );
        code(&r)
    };
    eventually(Duration::from_secs(10), || {
        (register("warm-up") == "2.01").then_some(())
    });

    // A never acknowledges; B acknowledges every confirmable notification.
    let (a, b) = (UdpSocket::bind("[::1]:0").unwrap(), UdpSocket::bind("[::1]:0").unwrap());
    for (s, token) in [(&a, 0xa1u8), (&b, 0xb1)] {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let r = exchange(
            s,
            &rd1,
            &observe_msg(0x100 + token as u16, token, &["rd-lookup", "res"], &["rt=obs-*"]),
        );
        assert_eq!(code(&r), "2.05");
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    }
    let mut notes_a: Vec<Vec<u8>> = vec![];
    let mut i = 0;
    let con = loop {
        assert!(
            i < 12,
            "no confirmable notification after {i} changes: {:?}",
            notes_a.iter().map(|m| msg_type(m)).collect::<Vec<_>>()
        );
        assert_eq!(register(&format!("n{i}")), "2.01");
        i += 1;
        let got = drain(&a, Duration::from_millis(300));
        ack_all(&b, &rd1, &drain(&b, Duration::from_millis(50)));
        notes_a.extend(got);
        if let Some(m) = notes_a.iter().find(|m| msg_type(m) == 0) {
            break m.clone();
        }
    };
    let non_before = notes_a.iter().take_while(|m| msg_type(m) != 0).count();
    assert!(
        non_before <= 4,
        "at most four non-confirmable notifications before a confirmable one: {non_before}"
    );
    // A stays silent: the notification goes four more times, then A is dropped.
    // Retransmissions that came while the first one was read count too.
    let mut again = notes_a.iter().filter(|m| msg_id(m) == msg_id(&con)).count() - 1;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(6) {
        again += drain(&a, Duration::from_millis(100))
            .iter()
            .filter(|m| msg_id(m) == msg_id(&con))
            .count();
        ack_all(&b, &rd1, &drain(&b, Duration::from_millis(20)));
    }
    assert_eq!(
        again, 4,
        "MAX_RETRANSMIT retransmissions of the unacknowledged notification"
    );
    assert_eq!(register("after"), "2.01");
    let to_b = drain(&b, Duration::from_millis(1500));
    let to_a = drain(&a, Duration::from_millis(100));
    assert!(!to_b.is_empty(), "the observer that acknowledges is still notified");
    assert!(
        to_a.is_empty(),
        "the observer that never acknowledged was dropped: {to_a:?}"
    );
}
