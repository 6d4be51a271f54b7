//! A split (document 004 §4.4.1, §6.2): the center that owns a registration
//! becomes unreachable; the other centers keep showing it until its
//! lifetime runs out, then drop it — never earlier, never later. Three
//! centers, a 4 s registration at c1, c1 stopped, c2 and c3 polled every
//! 100 ms with raw CoAP. Budget: about 10 s (three processes).

mod peer_harness;
mod rd_harness;

use peer_harness::spawn;
use rd_harness::{coap_msg, code, eventually, exchange, init_rd, lookup_ep};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// The registration's lifetime, seconds.
const LT_S: u64 = 4;
/// Slack for a loaded machine around the expiry instant: a lookup is
/// answered within this of being sent.
const SLACK: Duration = Duration::from_millis(400);

#[test]
fn an_unreachable_owners_registration_lasts_exactly_its_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let base = init_rd(dir.path(), 3);
    let mut procs: Vec<_> = ["c1", "c2", "c3"].iter().map(|id| spawn(dir.path(), id).0).collect();
    let rd1 = format!("[::1]:{}", base + 2);
    let others = [format!("[::1]:{}", base + 12), format!("[::1]:{}", base + 22)];
    let sock = UdpSocket::bind("[::1]:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut mid = 0x6000u16;
    // A center takes writes once a peer answers (DRiP §5.7).
    eventually(Duration::from_secs(10), || {
        mid += 1;
        let r = exchange(&sock, &rd1, &coap_msg(0, 0x02, mid, &["rd"], &["ep=warm-up"], b"</w>"));
        (code(&r) == "2.01").then_some(())
    });
    // The lifetime starts between sending the registration and its 2.01.
    let sent = Instant::now();
    mid += 1;
    let lt = format!("lt={LT_S}");
    let r = exchange(
        &sock,
        &rd1,
        &coap_msg(0, 0x02, mid, &["rd"], &["ep=split", &lt], b"</s>"),
    );
    assert_eq!(code(&r), "2.01");
    let created = Instant::now();
    for rd in &others {
        eventually(Duration::from_secs(2), || {
            lookup_ep(&sock, rd, &mut mid, "split")
                .contains("ep=\"split\"")
                .then_some(())
        });
    }
    drop(procs.remove(0));

    let lifetime = Duration::from_secs(LT_S);
    let mut gone_at = [None, None];
    while gone_at.iter().any(Option::is_none) {
        assert!(
            created.elapsed() < lifetime + Duration::from_secs(3),
            "still shown: {gone_at:?}"
        );
        for (i, rd) in others.iter().enumerate() {
            if gone_at[i].is_some() {
                continue;
            }
            let asked = Instant::now();
            let shown = lookup_ep(&sock, rd, &mut mid, "split").contains("ep=\"split\"");
            let t = asked.duration_since(sent);
            if shown {
                assert!(
                    asked.duration_since(created) < lifetime + SLACK,
                    "{rd} still shows it {t:?} after it was sent (lifetime {lifetime:?})"
                );
            } else {
                assert!(
                    t + SLACK >= lifetime,
                    "{rd} dropped it {t:?} after it was sent, before its lifetime {lifetime:?}"
                );
                gone_at[i] = Some(t);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
