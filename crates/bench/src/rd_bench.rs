//! `rd-bench`: registrations/s and lookups/s against a running CoAP Resource
//! Directory (regmesh's rd front or aiocoap-rd), found by discovery. Pipelines
//! up to `--concurrency` confirmable requests on one UDP socket, retransmits
//! after 2 s, and reports rates and lookup latency percentiles. Figures, never
//! assertions; loopback only.
//!
//! `rd-bench --rd [::1]:5683 --registrations 200 --lookups 2000`, and with
//! `--visible-at ADDR` (another center's RD) also the delay until a
//! registration answered 2.01 at `--rd` shows in an endpoint lookup there.
//! `--vs ADDR` (e.g. an aiocoap-rd) runs the same registrations and lookups
//! against that RD too, in the same run, and prints the ratios.
//! `scripts/rd-bench` starts a release mesh and aiocoap-rd and runs it.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// One request to make: code, Uri-Path, Uri-Query, payload.
type Spec = (u8, Vec<String>, Vec<String>, Vec<u8>);

struct Req {
    bytes: Vec<u8>,
    sent: Instant,
    first: Instant,
}

/// CoAP request bytes: CON, `code`, mid, 4-byte token, Uri-Path segments, Uri-Query, payload (CF 40).
fn msg(code: u8, mid: u16, token: u32, path: &[&str], query: &[String], payload: &[u8]) -> Vec<u8> {
    let mut m = vec![0x44, code, (mid >> 8) as u8, mid as u8];
    m.extend_from_slice(&token.to_be_bytes());
    let mut last = 0u16;
    let mut opts: Vec<(u16, Vec<u8>)> = path.iter().map(|p| (11, p.as_bytes().to_vec())).collect();
    if !payload.is_empty() {
        opts.push((12, vec![40]));
    }
    opts.extend(query.iter().map(|q| (15, q.as_bytes().to_vec())));
    for (n, v) in opts {
        let d = n - last;
        last = n;
        let (l, ext) = if v.len() < 13 {
            (v.len() as u8, None)
        } else {
            (13u8, Some((v.len() - 13) as u8))
        };
        m.push(((d as u8) << 4) | l);
        m.extend(ext);
        m.extend_from_slice(&v);
    }
    if !payload.is_empty() {
        m.push(0xff);
        m.extend_from_slice(payload);
    }
    m
}

/// Runs `reqs` with up to `conc` in flight; returns each latency and the response payloads' total bytes.
fn run(sock: &UdpSocket, rd: SocketAddr, reqs: Vec<Spec>, conc: usize, base: u32) -> Result<(Vec<Duration>, usize)> {
    let mut next = 0usize;
    let mut inflight: HashMap<u32, Req> = HashMap::new();
    let mut lat = Vec::with_capacity(reqs.len());
    let mut bytes = 0;
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    while lat.len() < reqs.len() {
        while inflight.len() < conc && next < reqs.len() {
            let (code, path, query, payload) = &reqs[next];
            let token = base.wrapping_add(next as u32);
            let p: Vec<&str> = path.iter().map(String::as_str).collect();
            let b = msg(*code, token as u16, token, &p, query, payload);
            sock.send_to(&b, rd)?;
            let now = Instant::now();
            inflight.insert(
                token,
                Req {
                    bytes: b,
                    sent: now,
                    first: now,
                },
            );
            next += 1;
        }
        match sock.recv_from(&mut buf) {
            Ok((n, _)) if n >= 8 && buf[0] & 0x0f == 4 => {
                let token = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                if let Some(r) = inflight.remove(&token) {
                    if buf[1] >> 5 != 2 {
                        let diag = buf[..n]
                            .iter()
                            .position(|b| *b == 0xff)
                            .map(|i| String::from_utf8_lossy(&buf[i + 1..n]).into_owned());
                        bail!("request {token} answered {}.{:02} {diag:?}", buf[1] >> 5, buf[1] & 0x1f);
                    }
                    lat.push(r.first.elapsed());
                    bytes += n;
                }
            }
            Ok(_) => {}
            Err(_) => {}
        }
        let now = Instant::now();
        for r in inflight.values_mut() {
            if now.duration_since(r.sent) > Duration::from_secs(2) {
                sock.send_to(&r.bytes, rd)?;
                r.sent = now;
            }
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("took more than 10 minutes");
        }
    }
    Ok((lat, bytes))
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)].as_secs_f64() * 1000.0
}

/// (registration path, resource lookup path) from `/.well-known/core?rt=core.rd*`.
fn discover(sock: &UdpSocket, rd: SocketAddr) -> Result<(Vec<String>, Vec<String>)> {
    let b = msg(
        0x01,
        1,
        0xdd00_0000,
        &[".well-known", "core"],
        &["rt=core.rd*".into()],
        b"",
    );
    sock.send_to(&b, rd)?;
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).context("no answer to discovery")?;
    let text = String::from_utf8_lossy(&buf[..n]);
    let body = text.rsplit('\u{fffd}').next().unwrap_or("");
    let find = |rt: &str| -> Option<Vec<String>> {
        body.split(',')
            .find(|l| {
                l.contains(&format!("rt=\"{rt}\""))
                    || l.contains(&format!("rt={rt};"))
                    || l.ends_with(&format!("rt={rt}"))
            })
            .map(|l| {
                l.split('<')
                    .nth(1)
                    .unwrap_or("")
                    .split('>')
                    .next()
                    .unwrap_or("")
                    .trim_start_matches('/')
                    .split('/')
                    .map(String::from)
                    .collect()
            })
    };
    Ok((
        find("core.rd").context("no core.rd")?,
        find("core.rd-lookup-res").context("no core.rd-lookup-res")?,
    ))
}

/// One confirmable request, waited for (retransmitted every 500 ms, 20 tries).
fn call(
    sock: &UdpSocket,
    to: SocketAddr,
    code: u8,
    token: u32,
    path: &[String],
    query: &[String],
    payload: &[u8],
) -> Result<Vec<u8>> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let b = msg(code, token as u16, token, &p, query, payload);
    let mut buf = [0u8; 2048];
    for _ in 0..20 {
        sock.send_to(&b, to)?;
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                if n >= 8 && u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) == token {
                    return Ok(buf[..n].to_vec());
                }
            }
        }
    }
    bail!("no answer from {to}")
}

/// Delays (ms) from a 2.01 at `rd` to the endpoint showing in a lookup at `other`.
fn visibility(rd: SocketAddr, other: SocketAddr, reg: &[String], n: usize, base: u32) -> Result<Vec<Duration>> {
    // A socket of its own: (peer, message id) pairs never repeat the first phase's.
    let sock = &UdpSocket::bind(if rd.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" })?;
    sock.set_read_timeout(Some(Duration::from_millis(1)))?;
    let (_, ep_lookup) = {
        let mut ep = None;
        let b = msg(
            0x01,
            2,
            base,
            &[".well-known", "core"],
            &["rt=core.rd-lookup-ep".into()],
            b"",
        );
        sock.send_to(&b, other)?;
        let mut buf = [0u8; 2048];
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until && ep.is_none() {
            if let Ok((k, _)) = sock.recv_from(&mut buf) {
                let t = String::from_utf8_lossy(&buf[..k]).into_owned();
                ep = t.split('<').nth(1).and_then(|x| x.split('>').next()).map(|x| {
                    x.trim_start_matches('/')
                        .split('/')
                        .map(String::from)
                        .collect::<Vec<_>>()
                });
            }
        }
        ((), ep.context("no core.rd-lookup-ep at --visible-at")?)
    };
    let mut out = Vec::with_capacity(n);
    let mut token = base.wrapping_add(1);
    for i in 0..n {
        let ep = format!("ep=vis-{base}-{i}");
        token = token.wrapping_add(1);
        let r = call(sock, rd, 0x02, token, reg, std::slice::from_ref(&ep), b"</v>")?;
        if r[1] != 0x41 {
            bail!("registration answered {}.{:02}", r[1] >> 5, r[1] & 0x1f);
        }
        let t = Instant::now();
        loop {
            token = token.wrapping_add(1);
            let r = call(sock, other, 0x01, token, &ep_lookup, std::slice::from_ref(&ep), b"")?;
            if r.windows(4).any(|w| w == b"vis-") {
                out.push(t.elapsed());
                break;
            }
            if t.elapsed() > Duration::from_secs(10) {
                bail!("{ep} not visible at {other} within 10 s");
            }
        }
    }
    Ok(out)
}

/// What one RD measured.
struct Figures {
    reg_per_s: f64,
    look_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Registers `n` endpoints (two links each) at `rd`, then makes `m`
/// resource lookups by `ep`; prints and returns the figures.
fn measure(rd: SocketAddr, n: usize, m: usize, conc: usize, base: u32) -> Result<(Figures, Vec<String>)> {
    let sock = UdpSocket::bind(if rd.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" })?;
    let (reg, res) = {
        sock.set_read_timeout(Some(Duration::from_secs(3)))?;
        let r = discover(&sock, rd)?;
        sock.set_read_timeout(Some(Duration::from_millis(5)))?;
        r
    };
    let regs = (0..n)
        .map(|i| {
            let payload = format!("</s/{i}/temp>;rt=\"temperature\";if=\"sensor\",</s/{i}/light>;rt=\"light-lux\"");
            (
                0x02,
                reg.clone(),
                vec![format!("ep=bench-{i}"), "lt=3600".into()],
                payload.into_bytes(),
            )
        })
        .collect();
    let t = Instant::now();
    let (_, _) = run(&sock, rd, regs, conc, base)?;
    let reg_s = t.elapsed().as_secs_f64();
    println!(
        "{rd}: {n} registrations in {reg_s:.2} s = {:.0}/s (concurrency {conc})",
        n as f64 / reg_s
    );
    let looks = (0..m)
        .map(|k| {
            (
                0x01,
                res.clone(),
                vec![format!("ep=bench-{}", (k * 7919) % n.max(1))],
                Vec::new(),
            )
        })
        .collect();
    let t = Instant::now();
    let (mut lat, bytes) = run(&sock, rd, looks, conc, base.wrapping_add(n as u32 + 1))?;
    let look_s = t.elapsed().as_secs_f64();
    let f = Figures {
        reg_per_s: n as f64 / reg_s,
        look_per_s: m as f64 / look_s,
        p50_ms: pct(&mut lat, 0.5),
        p99_ms: pct(&mut lat, 0.99),
    };
    println!(
        "{rd}: {m} resource lookups (ep=...) in {look_s:.2} s = {:.0}/s, latency p50 {:.2} ms p99 {:.2} ms, {} bytes",
        f.look_per_s, f.p50_ms, f.p99_ms, bytes
    );
    Ok((f, reg))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let rd: SocketAddr = arg("--rd", "[::1]:5683").parse()?;
    let n: usize = arg("--registrations", "200").parse()?;
    let m: usize = arg("--lookups", "2000").parse()?;
    let conc: usize = arg("--concurrency", "32").parse()?;
    let base = (std::process::id() << 12) ^ 0x5a5a;
    let (ours, reg) = measure(rd, n, m, conc, base)?;
    for (k, vs) in args
        .iter()
        .enumerate()
        .filter(|(_, a)| *a == "--vs")
        .filter_map(|(i, _)| args.get(i + 1))
        .enumerate()
    {
        let vs: SocketAddr = vs.parse()?;
        let (theirs, _) = measure(vs, n, m, conc, base.wrapping_add(0x0200_0000 * (k as u32 + 1)))?;
        println!(
            "ratio {rd} / {vs} at {n} registrations: registrations/s {:.1}x, lookups/s {:.1}x, lookup p50 latency {:.1}x lower",
            ours.reg_per_s / theirs.reg_per_s,
            ours.look_per_s / theirs.look_per_s,
            theirs.p50_ms / ours.p50_ms
        );
    }
    if let Some(other) = args
        .iter()
        .position(|a| a == "--visible-at")
        .and_then(|i| args.get(i + 1))
    {
        let other: SocketAddr = other.parse()?;
        let mut v = visibility(rd, other, &reg, 200, base.wrapping_add(0x0100_0000))?;
        println!(
            "{rd} -> {other}: 200 registrations visible in the other center's endpoint lookup after p50 {:.2} ms, p99 {:.2} ms (polling)",
            pct(&mut v, 0.5),
            pct(&mut v, 0.99)
        );
    }
    Ok(())
}
