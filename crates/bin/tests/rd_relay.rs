//! Updates and removals reach a registration's owner that is not a peer of
//! the center they came to (document 004 §6.2.2): a line mesh c1 — c2 — c3,
//! a registration at c1, its update and removal sent to c3, which relays
//! them through c2; and 5.04 naming the owner once c2, the only way there,
//! is gone. Raw CoAP over UDP. Budget: about 10 s (three processes).

mod peer_harness;
mod rd_harness;

use peer_harness::spawn;
use rd_harness::{coap_msg, code, eventually, exchange, init_rd_topology, lookup_ep};
use std::net::UdpSocket;
use std::time::Duration;

/// The registration path (`/rd/...`) of `ep` in an endpoint lookup at `to`, once it shows.
fn path_of(sock: &UdpSocket, to: &str, mid: &mut u16, ep: &str) -> String {
    eventually(Duration::from_secs(8), || {
        *mid += 1;
        let q = format!("ep={ep}");
        let r = exchange(sock, to, &coap_msg(0, 0x01, *mid, &["rd-lookup", "ep"], &[&q], b""));
        let body = String::from_utf8_lossy(&r).into_owned();
        let start = body.find("</rd/")?;
        let end = body[start..].find('>')? + start;
        Some(body[start + 1..end].to_string())
    })
}

#[test]
fn updates_and_removals_reach_an_owner_through_relays() {
    let dir = tempfile::tempdir().unwrap();
    let base = init_rd_topology(dir.path(), 3, "line");
    let mut procs: Vec<_> = ["c1", "c2", "c3"].iter().map(|id| spawn(dir.path(), id).0).collect();
    let (rd1, rd3) = (format!("[::1]:{}", base + 2), format!("[::1]:{}", base + 22));
    let sock = UdpSocket::bind("[::1]:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let mut mid = 0x5000u16;
    // A center takes writes once a peer answers (DRiP §5.7).
    for (rd, ep) in [(&rd1, "relayed"), (&rd1, "cut-off")] {
        eventually(Duration::from_secs(10), || {
            mid += 1;
            let q = format!("ep={ep}");
            let r = exchange(&sock, rd, &coap_msg(0, 0x02, mid, &["rd"], &[&q, "lt=300"], b"</s>"));
            (code(&r) == "2.01").then_some(())
        });
    }

    // c3 sees c1's registration (replicated through c2) and updates it: c1,
    // not a peer of c3, gets the update through c2.
    let path = path_of(&sock, &rd3, &mut mid, "relayed");
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    mid += 1;
    let r = exchange(&sock, &rd3, &coap_msg(0, 0x02, mid, &segs, &["lt=200"], b""));
    assert_eq!(code(&r), "2.04", "{}", String::from_utf8_lossy(&r));
    assert!(
        lookup_ep(&sock, &rd1, &mut mid, "relayed").contains("lt=200"),
        "the owner changed it"
    );
    eventually(Duration::from_secs(5), || {
        lookup_ep(&sock, &rd3, &mut mid, "relayed")
            .contains("lt=200")
            .then_some(())
    });

    // Removal at c3, the same way.
    mid += 1;
    let r = exchange(&sock, &rd3, &coap_msg(0, 0x04, mid, &segs, &[], b""));
    assert_eq!(code(&r), "2.02", "{}", String::from_utf8_lossy(&r));
    assert!(!lookup_ep(&sock, &rd1, &mut mid, "relayed").contains("ep=\"relayed\""));
    eventually(Duration::from_secs(5), || {
        (!lookup_ep(&sock, &rd3, &mut mid, "relayed").contains("ep=\"relayed\"")).then_some(())
    });

    // c2 goes away: nothing leads from c3 to c1 any more. 5.04, naming the
    // owner; the registration stays visible at c3 (its lifetime runs on).
    let cut = path_of(&sock, &rd3, &mut mid, "cut-off");
    drop(procs.remove(1));
    let segs: Vec<&str> = cut.split('/').skip(1).collect();
    mid += 1;
    let r = exchange(&sock, &rd3, &coap_msg(0, 0x04, mid, &segs, &[], b""));
    let diag = String::from_utf8_lossy(&r[5..]).into_owned();
    assert_eq!(code(&r), "5.04", "{diag}");
    assert!(diag.contains("center c1") && diag.contains("c2"), "{diag}");
    assert!(lookup_ep(&sock, &rd3, &mut mid, "cut-off").contains("ep=\"cut-off\""));
}
