//! Helpers shared by the Resource Directory tests (`rd.rs`, `rd_dtls.rs`,
//! `rd_prefix.rs`): free ports for a mesh of rd fronts, `regmesh init --fronts
//! rd`, running an outside CoAP client, and polling. It owns no assertion
//! about the RD; each test states its own.
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
    let base = free_base(n);
    let (ok, out) = run(Command::new(BIN)
        .args([
            "init",
            "--centers",
            &n.to_string(),
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
