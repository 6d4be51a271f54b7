//! The mesh: propagation latency (p50/p99) from a write at c1 until the
//! farthest center's watch stream shows it, replicated writes/s under 16
//! concurrent writers, and bytes on the wire per replicated agent, measured by a
//! TCP proxy the harness puts between c1 and c2. Real `regmesh` processes on
//! loopback, set up by `regmesh init`. Prints figures; asserts nothing.
//!
//! Run: `cargo build --release -p regmesh -p regmesh-bench && ./target/release/mesh-bench [--quick]`

use anyhow::{bail, Context, Result};
use regmesh_node::client::Client;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common.rs"]
mod common;
use common::{agent, exe, free_base, pct, proxy, spawn_serve, watch, Kill};

struct Mesh {
    _procs: Kill,
    clients: Vec<Client>,
    wire: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
}

async fn start_mesh(n: usize, topology: &str) -> Result<Mesh> {
    let dir = tempfile::tempdir()?;
    let base = free_base(n);
    let bin = exe("regmesh")?;
    let out = Command::new(&bin)
        .args([
            "init",
            "--centers",
            &n.to_string(),
            "--topology",
            topology,
            "--base-port",
            &base.to_string(),
            "--out",
        ])
        .arg(dir.path())
        .output()?;
    if !out.status.success() {
        bail!("init: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Route c1 → c2 through the counting proxy.
    let wire = Arc::new(AtomicU64::new(0));
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let proxy_port = l.local_addr()?.port();
    tokio::spawn(proxy(l, format!("127.0.0.1:{}", base as usize + 11), wire.clone()));
    let c1 = dir.path().join("c1.toml");
    let mut cfg: toml::Value = toml::from_str(&std::fs::read_to_string(&c1)?)?;
    for p in cfg.get_mut("peers").and_then(|p| p.as_array_mut()).context("peers")? {
        if p.get("id").and_then(|v| v.as_str()) == Some("c2") {
            p["url"] = toml::Value::String(format!("https://127.0.0.1:{proxy_port}"));
        }
    }
    std::fs::write(&c1, toml::to_string(&cfg)?)?;
    let mut procs = Kill(Vec::new());
    let mut clients = Vec::new();
    for i in 1..=n {
        let (child, client) = spawn_serve(&dir.path().join(format!("c{i}.toml")))?;
        procs.0.push(child);
        clients.push(client);
    }
    let t0 = Instant::now();
    for c in &clients {
        loop {
            let v = c.request(hyper::Method::GET, "/v1/peers", None).await?.json();
            if v["state"] == "active"
                && v["peers"]
                    .as_array()
                    .is_some_and(|p| p.iter().all(|p| p["state"] == "OPERATIONAL"))
            {
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("mesh did not come up");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(Mesh {
        _procs: procs,
        clients,
        wire,
        _dir: dir,
    })
}

async fn run_case(n: usize, topology: &str, writes: usize, secs: u64) -> Result<String> {
    let m = start_mesh(n, topology).await?;
    let c1 = m.clients[0].clone();
    let far = m.clients[n - 1].clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let ready = Arc::new(AtomicBool::new(false));
    tokio::spawn(watch(far.clone(), tx, ready.clone()));
    while !ready.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Latency: one agent updated `writes` times, one at a time.
    let r = c1
        .request(hyper::Method::PUT, "/v1/agents/lat", Some(&agent(0, 0)))
        .await?;
    if !r.status.is_success() {
        bail!("create: {}", r.status);
    }
    let json_bytes = c1.request(hyper::Method::GET, "/v1/agents/lat", None).await?.body.len();
    loop {
        if rx.recv().await.context("watch ended")?.0 == "lat" {
            break;
        }
    }
    let mut conn = c1.connect().await?;
    let wire0 = m.wire.load(Ordering::Relaxed);
    let mut lat = Vec::with_capacity(writes);
    for i in 0..writes {
        let t0 = Instant::now();
        let r = conn
            .request(hyper::Method::PUT, "/v1/agents/lat", Some(&agent(0, i + 1)))
            .await?;
        if !r.status.is_success() {
            bail!("update: {}", r.status);
        }
        loop {
            let (id, t1) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await?
                .context("watch ended")?;
            if id == "lat" {
                lat.push((t1 - t0).as_secs_f64() * 1000.0);
                break;
            }
        }
    }
    let single_wire = (m.wire.load(Ordering::Relaxed) - wire0) as f64 / writes as f64;

    // Throughput: 16 writers updating 1,000 agents for `secs`.
    let pool = 1000;
    let created = Arc::new(AtomicUsize::new(0));
    let tc = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let c = c1.clone();
        let created = created.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = c.connect().await.unwrap();
            for i in (w..pool).step_by(16) {
                let r = conn
                    .request(hyper::Method::PUT, &format!("/v1/agents/t{i:04}"), Some(&agent(i, 0)))
                    .await
                    .unwrap();
                if r.status.is_success() {
                    created.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    eprintln!(
        "  [{n} {topology}] {}/{pool} creates in {:.1} s (16 writers, each a mesh-wide vote)",
        created.load(Ordering::Relaxed),
        tc.elapsed().as_secs_f64(),
    );
    // Let the creates settle at the far end.
    let settle = Instant::now();
    let mut seen = 0;
    while seen < created.load(Ordering::Relaxed) && settle.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            seen += 1;
        }
    }
    while rx.try_recv().is_ok() {}
    let wire1 = m.wire.load(Ordering::Relaxed);
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let c = c1.clone();
        let acked = acked.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = c.connect().await.unwrap();
            let mut rev = 1;
            while !stop.load(Ordering::Relaxed) {
                for i in (w..pool).step_by(16) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let r = conn
                        .request(hyper::Method::PUT, &format!("/v1/agents/t{i:04}"), Some(&agent(i, rev)))
                        .await
                        .unwrap();
                    if r.status.is_success() {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
                rev += 1;
            }
        }));
    }
    let mut arrived = 0usize;
    let mut last = t0;
    let deadline = t0 + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Ok(Some((_, t))) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            arrived += 1;
            last = t;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let total = acked.load(Ordering::Relaxed);
    while arrived < total {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some((_, t))) => {
                arrived += 1;
                last = t;
            }
            _ => break,
        }
    }
    let elapsed = (last - t0).as_secs_f64();
    let load_wire = (m.wire.load(Ordering::Relaxed) - wire1) as f64 / total.max(1) as f64;
    let p50 = pct(&mut lat, 0.50);
    let p99 = pct(&mut lat, 0.99);
    Ok(format!(
        "| {n} centers, {topology} (watch at c{n}) | {p50:.2} | {p99:.2} | {:.0} | {arrived}/{total} | {json_bytes} | {single_wire:.0} ({:.2}×) | {load_wire:.0} ({:.2}×) |",
        arrived as f64 / elapsed,
        single_wire / json_bytes as f64,
        load_wire / json_bytes as f64
    ))
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (writes, secs) = if quick { (200, 3) } else { (1000, 10) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "# regmesh mesh benchmark: {writes} sequential updates for latency, 16 writers for {secs} s for throughput"
    );
    println!("Latency: PUT at c1 until the farthest center's watch stream shows it. Wire: bytes both ways on the c1→c2 peer link (TLS, HTTP, tokens, heartbeats included), per replicated agent update; the ratio is to the agent's JSON size.\n");
    println!("| mesh | p50 ms | p99 ms | replicated writes/s | arrived/acked | agent JSON bytes | wire bytes/agent, one at a time | wire bytes/agent, under load |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (n, t) in [(3, "full"), (5, "full"), (5, "line")] {
        match rt.block_on(run_case(n, t, writes, secs)) {
            Ok(row) => println!("{row}"),
            Err(e) => println!("| {n} centers, {t} | failed: {e:#} |"),
        }
    }
    Ok(())
}
