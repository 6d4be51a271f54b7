//! Prefix lookups (`rt=temp*`, `ep=node*`) answered from the rd kind's
//! `_prefix` indexes give exactly what a full scan gives: 60 registrations
//! at c1 of a two-center mesh, each prefix lookup at both centers compared
//! with the unfiltered lookup filtered here. Lookups by libcoap's
//! `coap-client-notls` (Block2). Budget: about 10 s (two processes, ~40
//! client runs).

mod peer_harness;
mod rd_harness;

use peer_harness::spawn;
use rd_harness::init_rd;
use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

/// A confirmable POST to /rd with Uri-Query `query` and a link-format payload.
fn register_msg(mid: u16, query: &[String], payload: &str) -> Vec<u8> {
    let mut m = vec![0x41, 0x02, (mid >> 8) as u8, mid as u8, 0x42];
    let mut last = 0u16;
    let mut opt = |m: &mut Vec<u8>, n: u16, v: &[u8]| {
        let delta = (n - last) as u8;
        last = n;
        assert!(v.len() < 269);
        if v.len() < 13 {
            m.push((delta << 4) | v.len() as u8);
        } else {
            m.push((delta << 4) | 13);
            m.push((v.len() - 13) as u8);
        }
        m.extend_from_slice(v);
    };
    opt(&mut m, 11, b"rd");
    opt(&mut m, 12, &[40]);
    for q in query {
        opt(&mut m, 15, q.as_bytes());
    }
    m.push(0xff);
    m.extend_from_slice(payload.as_bytes());
    m
}

fn lookup(port: u16, what: &str) -> BTreeSet<String> {
    let out = Command::new("coap-client-notls")
        .args(["-B", "5", &format!("coap://[::1]:{port}/rd-lookup/{what}")])
        .output()
        .expect("coap-client-notls (run scripts/test)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(',')
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The value of attribute `name` in one link of a lookup result.
fn attr<'a>(link: &'a str, name: &str) -> Option<&'a str> {
    let at = link.find(&format!(";{name}=\""))? + name.len() + 3;
    link[at..].split('"').next()
}

#[test]
fn prefix_lookups_equal_the_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    let base = init_rd(dir.path(), 2);
    let (_c1, _) = spawn(dir.path(), "c1");
    let (_c2, _) = spawn(dir.path(), "c2");
    let (p1, p2) = (base + 2, base + 12);

    let eps = ["temp", "tempo", "hum", "t", "node-with-a-long-name"];
    let rts = [
        "temperature",
        "temp",
        "tempest",
        "humidity",
        "t",
        "x.y",
        "abcdefghijklmnopqrstu",
    ];
    let sock = UdpSocket::bind("[::1]:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut mid = 0u16;
    for i in 0..60usize {
        let query = vec![format!("ep={}-{i}", eps[i % eps.len()]), "lt=600".into()];
        let payload = format!(
            "</s{i}>;rt=\"{} {}\",</u{i}>;rt=\"{}\"",
            rts[i % rts.len()],
            rts[(i / 3) % rts.len()],
            rts[(i / 7) % rts.len()]
        );
        let t = Instant::now();
        loop {
            // A fresh message id each try: the mesh may still be coming up (5.03).
            mid += 1;
            sock.send_to(&register_msg(mid, &query, &payload), ("::1", p1)).unwrap();
            let mut buf = [0u8; 1500];
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                if n > 1 && buf[1] == 0x41 {
                    break;
                }
            }
            assert!(t.elapsed() < Duration::from_secs(10), "registration {i} not accepted");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    let stems = [
        "temp",
        "te",
        "t",
        "tempe",
        "h",
        "abcdefghijkl",
        "abcdefghijklmnopq",
        "zzz",
        "x.",
    ];
    for port in [p1, p2] {
        let t = Instant::now();
        let all_res = loop {
            let r = lookup(port, "res");
            if r.len() == 120 || t.elapsed() > Duration::from_secs(5) {
                break r;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(all_res.len(), 120, "at port {port}");
        let all_ep = lookup(port, "ep");
        assert_eq!(all_ep.len(), 60);
        for stem in stems {
            let want: BTreeSet<String> = all_res
                .iter()
                .filter(|l| attr(l, "rt").is_some_and(|v| v.split(' ').any(|w| w.starts_with(stem))))
                .cloned()
                .collect();
            assert_eq!(lookup(port, &format!("res?rt={stem}*")), want, "rt={stem}* at {port}");
            let want: BTreeSet<String> = all_ep
                .iter()
                .filter(|l| attr(l, "ep").is_some_and(|v| v.starts_with(stem)))
                .cloned()
                .collect();
            assert_eq!(lookup(port, &format!("ep?ep={stem}*")), want, "ep={stem}* at {port}");
        }
        // A prefix criterion together with others narrows further.
        let both = lookup(port, "res?rt=temp*&ep=hum*");
        assert!(both.iter().all(|l| attr(l, "rt").is_some_and(|v| v.contains("temp"))));
        assert!(!both.is_empty());
    }
}
