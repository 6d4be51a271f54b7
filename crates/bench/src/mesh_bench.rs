//! The mesh: propagation latency (p50/p99) from a write at c1 until the
//! farthest center's watch stream shows it, replicated writes/s under 16
//! concurrent writers, and bytes on the wire per replicated agent, measured by a
//! TCP proxy the harness puts between c1 and c2. Real `regmesh` processes on
//! loopback, set up by `regmesh init`. Prints figures; asserts nothing.
//!
//! Run: `cargo build --release -p regmesh -p regmesh-bench && ./target/release/mesh-bench [--quick]`

use anyhow::{bail, Context, Result};
use http_body_util::BodyExt;
use regmesh_node::client::Client;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Kill(Vec<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn exe(name: &str) -> Result<PathBuf> {
    let p = std::env::current_exe()?.with_file_name(name);
    if !p.exists() {
        bail!(
            "{} not found: run `cargo build --release -p regmesh` first",
            p.display()
        );
    }
    Ok(p)
}

fn free_base(n: usize) -> u16 {
    for k in 0..400 {
        let base = 30_000 + ((std::process::id() as usize * 13 + k * 173) % 3000) * 10;
        if (0..n)
            .all(|i| (0..2).all(|d| std::net::TcpListener::bind(("127.0.0.1", (base + 10 * i + d) as u16)).is_ok()))
        {
            return base as u16;
        }
    }
    panic!("no free ports");
}

/// A TCP forwarder counting bytes in both directions.
async fn proxy(listen: std::net::TcpListener, target: String, bytes: Arc<AtomicU64>) {
    listen.set_nonblocking(true).unwrap();
    let l = tokio::net::TcpListener::from_std(listen).unwrap();
    loop {
        let Ok((mut a, _)) = l.accept().await else { return };
        let target = target.clone();
        let bytes = bytes.clone();
        tokio::spawn(async move {
            let Ok(mut b) = tokio::net::TcpStream::connect(&target).await else {
                return;
            };
            let (mut ar, mut aw) = a.split();
            let (mut br, mut bw) = b.split();
            let count = |n: u64| bytes.fetch_add(n, Ordering::Relaxed);
            let up = async {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match tokio::io::AsyncReadExt::read(&mut ar, &mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    count(n as u64);
                    if tokio::io::AsyncWriteExt::write_all(&mut bw, &buf[..n]).await.is_err() {
                        break;
                    }
                }
            };
            let down = async {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match tokio::io::AsyncReadExt::read(&mut br, &mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    count(n as u64);
                    if tokio::io::AsyncWriteExt::write_all(&mut aw, &buf[..n]).await.is_err() {
                        break;
                    }
                }
            };
            tokio::join!(up, down);
        });
    }
}

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
        let mut child = Command::new(&bin)
            .args(["serve", "--config"])
            .arg(dir.path().join(format!("c{i}.toml")))
            .env("REGMESH_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .context("center did not start")?
            .to_string();
        procs.0.push(child);
        clients.push(Client::new(&url, None)?);
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

/// Reads SSE events from `/v1/watch`, sending each (id, version) on `tx`.
async fn watch(
    c: Client,
    tx: tokio::sync::mpsc::UnboundedSender<(String, Instant)>,
    ready: Arc<AtomicBool>,
) -> Result<()> {
    let mut conn = c.connect().await?;
    let resp = conn.stream("/v1/watch").await?;
    ready.store(true, Ordering::Relaxed);
    let mut body = resp.into_body();
    let mut buf = String::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(d) = frame.data_ref() {
            buf.push_str(&String::from_utf8_lossy(d));
        }
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                if let Ok(v) = serde_json::from_str::<Value>(data) {
                    let _ = tx.send((v["id"].as_str().unwrap_or("").to_string(), Instant::now()));
                }
            }
        }
    }
    Ok(())
}

fn agent(i: usize, rev: usize) -> Value {
    json!({
        "addresses": [format!("2001:db8:{:x}::{:x}", i, rev % 65536)],
        "endpoints": [{"url": format!("https://agents.example.com/a/{i}/a2a"), "protocol": "a2a"}],
        "status": "online",
        "capabilities": [{"name": format!("cap-{}", i % 100), "description": "translates between language pairs", "tags": ["lang", "fast"]}],
        "metadata": {"team": "bench", "rev": rev}
    })
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0)
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
