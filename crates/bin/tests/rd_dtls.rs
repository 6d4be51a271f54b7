//! The Resource Directory over coaps (DTLS 1.2, PSK), driven by libcoap's
//! `coap-client-openssl` (Debian `libcoap3-bin`, installed by
//! `scripts/test`): registration and lookup over DTLS, a wrong key refused
//! with nothing stored, and first-come-first-remembered authorization of
//! endpoint names across two centers, and a client that died without
//! closing its session handshaking again from the same port; c1's log (the
//! default filter) has our INFO lines and none of webrtc-dtls's per-handshake
//! WARNs. Budget: about
//! 15 s (two processes,
//! ~20 client runs).

mod peer_harness;
mod rd_harness;

use peer_harness::spawn;
use rd_harness::{eventually, init_rd, run, spawn_logged, tool};
use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

const CLIENT: &str = "coap-client-openssl";

/// A coaps request as PSK identity `id` with key `key`; its output.
fn coaps(id: &str, key: &str, args: &[&str]) -> String {
    run(Command::new(CLIENT).args(["-u", id, "-k", key, "-B", "5"]).args(args)).1
}

fn coap(args: &[&str]) -> String {
    run(Command::new(CLIENT).args(["-B", "5"]).args(args)).1
}

/// The registration resource path (`rd/...`) of `ep` in an endpoint lookup.
fn location_of(lookup: &str, ep: &str) -> Option<String> {
    lookup
        .split(',')
        .find(|l| l.contains(&format!("ep=\"{ep}\"")))
        .map(|l| {
            let s = l.find("</").unwrap() + 2;
            let e = l.find('>').unwrap();
            l[s..e].to_string()
        })
}

#[test]
fn coaps_with_psk_and_first_come_first_remembered() {
    tool(CLIENT);
    let dir = tempfile::tempdir().unwrap();
    let base = init_rd(dir.path(), 2);
    let psk = dir.path().join("psk.toml");
    std::fs::write(
        &psk,
        "[identities]\n\"dev-a\" = \"secret-a\"\n\"dev-b\" = { hex = \"73656372657462\" }\n",
    )
    .unwrap();
    let c1_cfg = dir.path().join("c1.toml");
    let mut text = std::fs::read_to_string(&c1_cfg).unwrap();
    text.push_str(&format!(
        "coaps_listen = \"[::1]:{}\"\npsk_file = \"{}\"\n",
        base + 5,
        psk.display()
    ));
    std::fs::write(&c1_cfg, text).unwrap();
    let log = dir.path().join("c1-rd_dtls.log");
    let _c1 = spawn_logged(dir.path(), "c1", &log);
    let (_c2, _) = spawn(dir.path(), "c2");
    let s1 = format!("coaps://[::1]:{}", base + 5);
    let p1 = format!("coap://[::1]:{}", base + 2);
    let p2 = format!("coap://[::1]:{}", base + 12);
    let rd = |ep: &str| format!("{s1}/rd?ep={ep}&lt=600");

    // Registration over coaps (retried while the mesh comes up), then
    // lookups over coaps at c1 and over coap at c2.
    eventually(Duration::from_secs(10), || {
        let out = coaps(
            "dev-a",
            "secret-a",
            &["-m", "post", "-t", "40", "-e", "</t>;rt=temp", &rd("n1")],
        );
        (!out.contains("5.0")).then_some(())
    });
    let res = coaps("dev-a", "secret-a", &[&format!("{s1}/rd-lookup/res?rt=temp")]);
    assert!(res.contains("</t>") || res.contains("/t>;rt=\"temp\""), "{res}");
    assert!(
        res.contains("coaps://"),
        "a coaps registration's default base is coaps: {res}"
    );
    let loc = eventually(Duration::from_secs(5), || {
        location_of(&coap(&[&format!("{p2}/rd-lookup/ep")]), "n1")
    });

    // A wrong key: no session, nothing stored.
    let out = coaps("dev-a", "wrong", &["-m", "post", "-t", "40", "-e", "</x>", &rd("n2")]);
    assert!(!out.contains("2.01"), "{out}");
    let eps = coap(&[&format!("{p1}/rd-lookup/ep")]);
    assert!(!eps.contains("\"n2\""), "a refused handshake stored {eps}");
    // An unknown identity likewise.
    coaps(
        "nobody",
        "secret-a",
        &["-m", "post", "-t", "40", "-e", "</x>", &rd("n2")],
    );
    assert!(!coap(&[&format!("{p1}/rd-lookup/ep")]).contains("\"n2\""));

    // First come, first remembered: n1 is dev-a's.
    let before = coap(&[&format!("{p1}/rd-lookup/res")]);
    let other = coaps(
        "dev-b",
        "secretb",
        &["-m", "post", "-t", "40", "-e", "</evil>", &rd("n1")],
    );
    assert!(other.contains("4.03"), "another identity re-registered n1: {other}");
    let plain = coap(&["-m", "post", "-t", "40", "-e", "</evil>", &format!("{p1}/rd?ep=n1")]);
    assert!(plain.contains("4.01"), "a registration without DTLS took n1: {plain}");
    let plain2 = coap(&["-m", "post", "-t", "40", "-e", "</evil>", &format!("{p2}/rd?ep=n1")]);
    assert!(
        plain2.contains("4.01"),
        "another center let a plain registration take n1: {plain2}"
    );
    let upd = coaps("dev-b", "secretb", &["-m", "post", &format!("{s1}/{loc}?lt=5")]);
    assert!(upd.contains("4.03"), "another identity updated n1: {upd}");
    let del = coaps("dev-b", "secretb", &["-m", "delete", &format!("{s1}/{loc}")]);
    assert!(del.contains("4.03"), "another identity removed n1: {del}");
    let del2 = coap(&["-m", "delete", &format!("{p2}/{loc}")]);
    assert!(del2.contains("4.01"), "a plain request at c2 removed n1: {del2}");
    let after = coap(&[&format!("{p1}/rd-lookup/res")]);
    assert_eq!(before, after, "a refused request changed the directory");
    assert!(!after.contains("evil"), "{after}");

    // The owner keeps every right; dev-b registers a name of its own.
    let own = coaps("dev-a", "secret-a", &["-m", "post", &format!("{s1}/{loc}?lt=900")]);
    assert!(!own.contains("4.0"), "{own}");
    let b = coaps("dev-b", "secretb", &["-m", "post", "-t", "40", "-e", "</b>", &rd("n3")]);
    assert!(!b.contains("4.0") && !b.contains("5.0"), "{b}");
    let eps = eventually(Duration::from_secs(5), || {
        let eps = coap(&[&format!("{p2}/rd-lookup/ep")]);
        (eps.contains("\"n3\"") && eps.contains("lt=900")).then_some(eps)
    });
    assert!(eps.contains("\"n1\""), "{eps}");
    // A client back from the same address and port with a new handshake
    // gets a new session (RFC 6347 §4.2.8), not silence.
    let port = UdpSocket::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    // The first client observes, then dies without closing its session.
    let mut gone = Command::new(CLIENT)
        .args(["-u", "dev-b", "-k", "secretb", "-p", &port, "-s", "20"])
        .arg(format!("{s1}/rd-lookup/ep?ep=n3"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    gone.kill().unwrap();
    gone.wait().unwrap();
    let out = coaps("dev-b", "secretb", &["-p", &port, &format!("{s1}/rd-lookup/ep?ep=n3")]);
    assert!(
        out.contains("\"n3\""),
        "a new handshake from port {port} got no answer: {out}"
    );
    let gone = coaps("dev-a", "secret-a", &["-m", "delete", &format!("{s1}/{loc}")]);
    assert!(!gone.contains("4.0"), "{gone}");
    // Once removed, the name is free again (remembered while registered).
    eventually(Duration::from_secs(5), || {
        let out = coap(&["-m", "post", "-t", "40", "-e", "</open>", &format!("{p1}/rd?ep=n1")]);
        (!out.contains("4.0")).then_some(())
    });
    // Dozens of handshakes, and the log holds no warning about them, while
    // our own lines keep their level.
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("INFO") && log.contains("peer state"), "{log}");
    assert!(
        !log.contains("webrtc_dtls"),
        "webrtc-dtls lines in the default log:\n{log}"
    );
}
