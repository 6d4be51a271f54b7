//! Helpers shared by the Resource Directory tests (`rd.rs`, `rd_dtls.rs`,
//! `rd_prefix.rs`, `rd_relay.rs`): free ports for a mesh of rd fronts,
//! `regmesh init --fronts rd`, running an outside CoAP client, raw CoAP
//! messages over UDP, and polling. It owns no assertion about the RD; each
//! test states its own.
#![allow(dead_code)]

use crate::peer_harness::BIN;
use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `name` if it is on PATH; fails the test with how to install it otherwise.
pub fn tool(name: &str) -> &str {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{name} is not installed: run scripts/test (it installs aiocoap-client and aiocoap-rd \
         with `pip install aiocoap`, and the coap-client-* tools with `apt-get install libcoap3-bin`)"
    );
    name
}

/// A base port B with, for each of `n` centers at P = B + 10·(k-1): its client
/// and peer TCP ports (P, P+1), its CoAP port (P+2) and a coaps port (P+5)
/// free on loopback. Bases stay below the kernel's ephemeral range (32,768+).
pub fn free_base(n: usize) -> u16 {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let seed = std::process::id() as usize + 389 * CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for k in 0..500 {
        let base = 20_000 + ((seed * 7 + k * 131) % 1200) * 10;
        let ok = (0..n).all(|i| {
            let p = base + 10 * i;
            (0..2).all(|d| std::net::TcpListener::bind(("127.0.0.1", (p + d) as u16)).is_ok())
                && [2, 5].iter().all(|d| UdpSocket::bind(("::1", (p + d) as u16)).is_ok())
        });
        if ok {
            return base as u16;
        }
    }
    panic!("no free ports");
}

/// `regmesh init --fronts rd` of `n` centers in `dir` on free ports; the base port.
pub fn init_rd(dir: &Path, n: usize) -> u16 {
    init_rd_topology(dir, n, "full")
}

/// As [`init_rd`], peered as `topology` (`full`, `line`, `ring`, `star`).
pub fn init_rd_topology(dir: &Path, n: usize, topology: &str) -> u16 {
    let base = free_base(n);
    let (ok, out) = run(Command::new(BIN)
        .args([
            "init",
            "--centers",
            &n.to_string(),
            "--topology",
            topology,
            "--base-port",
            &base.to_string(),
            "--fronts",
            "rd",
            "--out",
        ])
        .arg(dir));
    assert!(ok, "{out}");
    base
}

/// Runs a client; returns (success, stdout + stderr).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

/// Polls `f` until it returns Some, for up to `within`.
pub fn eventually<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < within, "condition not met within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A CoAP message: type (0 CON), code, message id, token 0x42, Uri-Path,
/// Content-Format 40 if there is a payload, Uri-Query, payload.
pub fn coap_msg(typ: u8, code: u8, mid: u16, path: &[&str], query: &[&str], payload: &[u8]) -> Vec<u8> {
    coap_msg_with(typ, code, mid, path, query, &[], payload)
}

/// As [`coap_msg`], with `extra` options after the Uri-Query ones (numbers
/// 15 to 27, in order).
pub fn coap_msg_with(
    typ: u8,
    code: u8,
    mid: u16,
    path: &[&str],
    query: &[&str],
    extra: &[(u16, &[u8])],
    payload: &[u8],
) -> Vec<u8> {
    let mut m = vec![0x40 | (typ << 4) | 1, code, (mid >> 8) as u8, mid as u8, 0x42];
    let mut last = 0u16;
    let mut opt = |m: &mut Vec<u8>, n: u16, v: &[u8]| {
        let delta = n - last;
        last = n;
        assert!(delta < 13 && v.len() < 269);
        let (l, ext) = if v.len() < 13 {
            (v.len() as u8, None)
        } else {
            (13, Some((v.len() - 13) as u8))
        };
        m.push(((delta as u8) << 4) | l);
        m.extend(ext);
        m.extend_from_slice(v);
    };
    for p in path {
        opt(&mut m, 11, p.as_bytes());
    }
    if !payload.is_empty() {
        opt(&mut m, 12, &[40]);
    }
    for q in query {
        opt(&mut m, 15, q.as_bytes());
    }
    for (n, v) in extra {
        opt(&mut m, *n, v);
    }
    if !payload.is_empty() {
        m.push(0xff);
        m.extend_from_slice(payload);
    }
    m
}

pub fn exchange(sock: &UdpSocket, to: &str, msg: &[u8]) -> Vec<u8> {
    sock.send_to(msg, to).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer");
    buf[..n].to_vec()
}

/// "c.dd" of a response's code byte.
pub fn code(resp: &[u8]) -> String {
    format!("{}.{:02}", resp[1] >> 5, resp[1] & 0x1f)
}

/// Starts center `id` from its config in `dir` with the default log filter
/// (no `REGMESH_LOG`), its log written to `log`; killed when dropped.
pub fn spawn_logged(dir: &Path, id: &str, log: &Path) -> crate::peer_harness::Proc {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(dir.join(format!("{id}.toml")))
        .env_remove("REGMESH_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on "), "{id}: {line:?}");
    crate::peer_harness::Proc(child)
}

/// The answer body of `GET /rd-lookup/ep?ep=<ep>` at `to` (a CON with
/// message id `mid`, raw CoAP over `sock`).
pub fn lookup_ep(sock: &UdpSocket, to: &str, mid: &mut u16, ep: &str) -> String {
    *mid = mid.wrapping_add(1);
    let q = format!("ep={ep}");
    let r = exchange(sock, to, &coap_msg(0, 0x01, *mid, &["rd-lookup", "ep"], &[&q], b""));
    String::from_utf8_lossy(&r).into_owned()
}
