//! regmesh side by side with etcd, in one run, on one machine: a
//! three-center regmesh full mesh and a three-member etcd cluster, both with
//! their defaults, on loopback. The same workloads run against each; one
//! markdown table gives both figures and their ratio. Prints figures;
//! asserts nothing.
//!
//! Run: `bench/run [--quick]` (installs etcd if missing, builds, runs this).

use anyhow::{bail, Context, Result};
use regmesh_node::client::{Client, Conn};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common.rs"]
mod common;
mod etcd;
use common::{agent, cpu_micros, exe, free_port, pct, proxy, rss_bytes, spawn_serve, terminate, watch, Kill};
use etcd::Etcd;

const CLIENTS: usize = 16;
/// Keys the write and read phases use (16 clients × 64).
const KEYS: usize = CLIENTS * 64;

struct Sizes {
    prop: usize,
    secs: u64,
    resync: usize,
    memory: usize,
}

/// An etcd value of about 500 bytes, like the agents regmesh stores.
fn etcd_value(i: usize, rev: usize) -> Vec<u8> {
    serde_json::to_vec(&agent(i, rev)).expect("json")
}

/// Starts a counting proxy in front of `target`; returns its port.
fn proxy_to(target: u16, wire: &Arc<AtomicU64>) -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    tokio::spawn(proxy(l, format!("127.0.0.1:{target}"), wire.clone()));
    Ok(port)
}

// ---------------------------------------------------------------- etcd

struct EtcdCluster {
    procs: Kill,
    clients: Vec<String>,
    args: Vec<Vec<String>>,
    wire: Arc<AtomicU64>,
    dir: PathBuf,
}

impl EtcdCluster {
    async fn start(dir: &Path) -> Result<EtcdCluster> {
        let wire = Arc::new(AtomicU64::new(0));
        let mut ports = Vec::new();
        for _ in 0..3 {
            let (client, peer) = (free_port(), free_port());
            ports.push((client, peer, proxy_to(peer, &wire)?));
        }
        let cluster: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, _, px))| format!("m{}=http://127.0.0.1:{px}", i + 1))
            .collect();
        let mut c = EtcdCluster {
            procs: Kill(Vec::new()),
            clients: Vec::new(),
            args: Vec::new(),
            wire,
            dir: dir.to_path_buf(),
        };
        for (i, (client, peer, px)) in ports.iter().enumerate() {
            let name = format!("m{}", i + 1);
            let args = vec![
                format!("--name={name}"),
                format!("--data-dir={}", dir.join(&name).display()),
                format!("--listen-client-urls=http://127.0.0.1:{client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                // Peers reach each other through the counting proxies.
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{px}"),
                format!("--initial-cluster={}", cluster.join(",")),
                "--initial-cluster-state=new".into(),
                "--initial-cluster-token=regmesh-bench".into(),
            ];
            c.clients.push(format!("127.0.0.1:{client}"));
            c.args.push(args);
            let child = c.spawn(i)?;
            c.procs.0.push(child);
        }
        for i in 0..3 {
            c.wait_ready(i, Duration::from_secs(30)).await?;
        }
        Ok(c)
    }

    fn spawn(&self, i: usize) -> Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("m{}.log", i + 1)))?;
        Command::new("etcd")
            .args(&self.args[i])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("etcd not found: install Debian's etcd-server (bench/run does)")
    }

    async fn wait_ready(&self, i: usize, limit: Duration) -> Result<()> {
        let t0 = Instant::now();
        loop {
            if let Ok(mut e) = Etcd::connect(&self.clients[i]).await {
                if e.get(b"ready").await.is_ok() {
                    return Ok(());
                }
            }
            if t0.elapsed() > limit {
                bail!("etcd member {} did not come up", i + 1);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// ---------------------------------------------------------------- regmesh

struct MeshCluster {
    procs: Kill,
    clients: Vec<Client>,
    wire: Arc<AtomicU64>,
    dir: PathBuf,
}

impl MeshCluster {
    async fn start(dir: &Path) -> Result<MeshCluster> {
        let bin = exe("regmesh")?;
        let base = common::free_base(3);
        let out = Command::new(&bin)
            .args(["init", "--centers", "3", "--topology", "full", "--base-port"])
            .arg(base.to_string())
            .arg("--out")
            .arg(dir)
            .output()?;
        if !out.status.success() {
            bail!("regmesh init: {}", String::from_utf8_lossy(&out.stderr));
        }
        // Every peer link goes through a counting proxy in front of its target.
        let wire = Arc::new(AtomicU64::new(0));
        let mut proxied = Vec::new();
        for i in 0..3u16 {
            proxied.push(proxy_to(base + 10 * i + 1, &wire)?);
        }
        for i in 1..=3 {
            let path = dir.join(format!("c{i}.toml"));
            let mut cfg: toml::Value = toml::from_str(&std::fs::read_to_string(&path)?)?;
            for p in cfg.get_mut("peers").and_then(|p| p.as_array_mut()).context("peers")? {
                let id = p.get("id").and_then(|v| v.as_str()).context("peer id")?;
                let n: usize = id.trim_start_matches('c').parse()?;
                p["url"] = toml::Value::String(format!("https://127.0.0.1:{}", proxied[n - 1]));
            }
            std::fs::write(&path, toml::to_string(&cfg)?)?;
        }
        let mut m = MeshCluster {
            procs: Kill(Vec::new()),
            clients: Vec::new(),
            wire,
            dir: dir.to_path_buf(),
        };
        for i in 0..3 {
            let (child, client) = m.spawn(i)?;
            m.procs.0.push(child);
            m.clients.push(client);
        }
        for i in 0..3 {
            m.wait_up(i).await?;
        }
        Ok(m)
    }

    fn spawn(&self, i: usize) -> Result<(Child, Client)> {
        spawn_serve(&self.dir.join(format!("c{}.toml", i + 1)))
    }

    /// Waits until center `i` is active with every peer OPERATIONAL.
    async fn wait_up(&self, i: usize) -> Result<()> {
        let t0 = Instant::now();
        loop {
            let v = self.clients[i]
                .request(hyper::Method::GET, "/v1/peers", None)
                .await?
                .json();
            if v["state"] == "active"
                && v["peers"]
                    .as_array()
                    .is_some_and(|p| p.iter().all(|p| p["state"] == "OPERATIONAL"))
            {
                return Ok(());
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("center c{} did not come up", i + 1);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn agents_at(&self, i: usize) -> Result<u64> {
        let v = self.clients[i]
            .request(hyper::Method::GET, "/v1/status", None)
            .await?
            .json();
        Ok(v["records"]["agent"].as_u64().unwrap_or(0))
    }
}

/// PUT with retries while the mesh cannot decide a create (503: a peer that
/// just stopped is not yet marked DEGRADED). Fails with the last answer.
async fn mesh_put(conn: &mut regmesh_node::client::Conn, id: &str, body: &Value) -> Result<bool> {
    let t0 = Instant::now();
    loop {
        let r = conn
            .request(hyper::Method::PUT, &format!("/v1/agents/{id}"), Some(body))
            .await?;
        if r.status.is_success() {
            return Ok(true);
        }
        if r.status != hyper::StatusCode::SERVICE_UNAVAILABLE || t0.elapsed() > Duration::from_secs(30) {
            bail!("PUT {id}: {} {}", r.status, String::from_utf8_lossy(&r.body));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------- workloads

/// Runs `CLIENTS` clients against one system for `secs` and returns
/// completed operations per second. Client `w` connects first with
/// `connect(w)` (not timed), then calls `op(connection, w, n)` for n = 0, 1,
/// 2, … The
/// connection goes in and comes back, so `op` can be a plain async closure.
async fn measure<Conn, C, CF, O, OF>(secs: u64, connect: C, op: O) -> Result<f64>
where
    Conn: Send + 'static,
    C: Fn(usize) -> CF + Send + Sync + Clone + 'static,
    CF: std::future::Future<Output = Result<Conn>> + Send,
    O: Fn(Conn, usize, usize) -> OF + Send + Sync + Clone + 'static,
    OF: std::future::Future<Output = Result<Conn>> + Send,
{
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(tokio::sync::Barrier::new(CLIENTS + 1));
    let mut tasks = Vec::new();
    for w in 0..CLIENTS {
        let (done, stop, start) = (done.clone(), stop.clone(), start.clone());
        let (connect, op) = (connect.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let conn = connect(w).await;
            start.wait().await;
            let mut conn = conn?;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                conn = op(conn, w, n).await?;
                done.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    start.wait().await;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let ops = done.load(Ordering::Relaxed);
    let el = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    Ok(ops as f64 / el)
}

/// When the next event arrived at both watchers (the later of the two).
async fn seen_at_both<K>(
    a: &mut tokio::sync::mpsc::UnboundedReceiver<(K, Instant)>,
    b: &mut tokio::sync::mpsc::UnboundedReceiver<(K, Instant)>,
) -> Result<Instant> {
    let mut last = None;
    for rx in [a, b] {
        let (_, t) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await?
            .context("watch ended")?;
        last = Some(last.map_or(t, |l: Instant| l.max(t)));
    }
    last.context("no watchers")
}

/// Everything measured on one system.
#[derive(Default)]
struct Figures {
    p50: f64,
    p99: f64,
    writes: f64,
    reads: f64,
    lookups: f64,
    /// CPU time of all three members per acknowledged write, µs.
    cpu_per_write_us: f64,
    /// Writes/s with client w at member w % 3.
    writes_spread: f64,
    cpu_per_write_spread_us: f64,
    resync_s: f64,
    resync_bytes: f64,
    missed_bytes: f64,
    rss_per_record: f64,
}

async fn etcd_run(dir: &Path, z: &Sizes) -> Result<Figures> {
    let mut f = Figures::default();
    let mut c = EtcdCluster::start(dir).await?;
    eprintln!("  etcd: cluster up");

    // 1. Propagation: put at m1, until both m2's and m3's watches show it.
    let (tx2, mut rx2) = tokio::sync::mpsc::unbounded_channel();
    let (tx3, mut rx3) = tokio::sync::mpsc::unbounded_channel();
    Etcd::connect(&c.clients[1]).await?.watch(b"prop/", tx2).await?;
    Etcd::connect(&c.clients[2]).await?.watch(b"prop/", tx3).await?;
    let mut m1 = Etcd::connect(&c.clients[0]).await?;
    let mut lat = Vec::with_capacity(z.prop);
    for i in 0..z.prop {
        let t0 = Instant::now();
        m1.put(b"prop/k", &etcd_value(0, i)).await?;
        lat.push((seen_at_both(&mut rx2, &mut rx3).await? - t0).as_secs_f64() * 1000.0);
    }
    (f.p50, f.p99) = (pct(&mut lat, 0.50), pct(&mut lat, 0.99));
    eprintln!("  etcd: propagation done");

    // 2. Writes: 16 clients at m1, each over its own keys.
    let m1_addr = c.clients[0].clone();
    let connect = move |_| {
        let a = m1_addr.clone();
        async move { Etcd::connect(&a).await }
    };
    let cpu0: u64 = c.procs.0.iter().map(|p| cpu_micros(p.id())).sum();
    f.writes = measure(z.secs, connect.clone(), |mut e: Etcd, w, n| async move {
        let i = w * 64 + n % 64;
        e.put(format!("w/{i:04}").as_bytes(), &etcd_value(i, n)).await?;
        Ok(e)
    })
    .await?;
    let cpu1: u64 = c.procs.0.iter().map(|p| cpu_micros(p.id())).sum();
    f.cpu_per_write_us = (cpu1 - cpu0) as f64 / (f.writes * z.secs as f64);
    // 2b. The same writes with client w at member w % 3 (followers forward
    // to the leader).
    let members = c.clients.clone();
    let spread = move |w: usize| {
        let a = members[w % 3].clone();
        async move { Etcd::connect(&a).await }
    };
    let cpu0: u64 = c.procs.0.iter().map(|p| cpu_micros(p.id())).sum();
    f.writes_spread = measure(z.secs, spread, |mut e: Etcd, w, n| async move {
        let i = w * 64 + n % 64;
        e.put(format!("s/{i:04}").as_bytes(), &etcd_value(i, n)).await?;
        Ok(e)
    })
    .await?;
    let cpu1: u64 = c.procs.0.iter().map(|p| cpu_micros(p.id())).sum();
    f.cpu_per_write_spread_us = (cpu1 - cpu0) as f64 / (f.writes_spread * z.secs as f64);
    eprintln!("  etcd: writes done");

    // 3. Reads by key, and prefix lookups (the keys carry the capability).
    for i in 0..KEYS {
        m1.put(format!("lookup/cap-{}/{i:04}", i % 100).as_bytes(), &etcd_value(i, 0))
            .await?;
    }
    f.reads = measure(z.secs, connect.clone(), |mut e: Etcd, w, n| async move {
        if e.get(format!("w/{:04}", (w * 7919 + n * 13) % KEYS).as_bytes())
            .await?
            .is_none()
        {
            bail!("etcd lost a key");
        }
        Ok(e)
    })
    .await?;
    f.lookups = measure(z.secs, connect, |mut e: Etcd, w, n| async move {
        e.prefix(format!("lookup/cap-{}/", (w + n) % 100).as_bytes(), 10)
            .await?;
        Ok(e)
    })
    .await?;
    eprintln!("  etcd: reads done");

    // 4. Resync: stop m3, write `resync` records at m1, restart m3.
    terminate(&mut c.procs.0[2]);
    let missed = load_etcd(&c.clients[0], "resync/", z.resync).await?;
    f.missed_bytes = missed as f64;
    let wire0 = c.wire.load(Ordering::Relaxed);
    let t0 = Instant::now();
    c.procs.0[2] = c.spawn(2)?;
    loop {
        if let Ok(mut e) = Etcd::connect(&c.clients[2]).await {
            if e.count_local(b"resync/").await.unwrap_or(0) >= z.resync as u64 {
                break;
            }
        }
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("etcd m3 did not catch up");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f.resync_s = t0.elapsed().as_secs_f64();
    f.resync_bytes = (c.wire.load(Ordering::Relaxed) - wire0) as f64;
    eprintln!("  etcd: resync done");

    // 5. Memory: resident growth of m1 per record over `memory` records.
    let pid = c.procs.0[0].id();
    let before = rss_bytes(pid);
    load_etcd(&c.clients[0], "mem/", z.memory).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    f.rss_per_record = (rss_bytes(pid).saturating_sub(before)) as f64 / z.memory as f64;
    eprintln!("  etcd: memory done");
    Ok(f)
}

/// Puts `n` records under `prefix` at `addr` with 16 clients; returns the
/// bytes of keys and values written.
async fn load_etcd(addr: &str, prefix: &str, n: usize) -> Result<usize> {
    let mut tasks = Vec::new();
    for w in 0..CLIENTS {
        let (addr, prefix) = (addr.to_string(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut e = Etcd::connect(&addr).await?;
            let mut bytes = 0;
            for i in (w..n).step_by(CLIENTS) {
                let (k, v) = (format!("{prefix}{i:07}"), etcd_value(i, 0));
                e.put(k.as_bytes(), &v).await?;
                bytes += k.len() + v.len();
            }
            Ok::<_, anyhow::Error>(bytes)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total)
}

async fn mesh_run(dir: &Path, z: &Sizes) -> Result<Figures> {
    let mut f = Figures::default();
    let mut m = MeshCluster::start(dir).await?;
    eprintln!("  regmesh: mesh up");

    // 1. Propagation: PUT at c1, until both c2's and c3's watches show it.
    let (tx2, mut rx2) = tokio::sync::mpsc::unbounded_channel();
    let (tx3, mut rx3) = tokio::sync::mpsc::unbounded_channel();
    for (c, tx) in [(m.clients[1].clone(), tx2), (m.clients[2].clone(), tx3)] {
        let ready = Arc::new(AtomicBool::new(false));
        tokio::spawn(watch(c, tx, ready.clone()));
        while !ready.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut c1 = m.clients[0].connect().await?;
    if !mesh_put(&mut c1, "prop", &agent(0, 0)).await? {
        bail!("create refused");
    }
    for rx in [&mut rx2, &mut rx3] {
        tokio::time::timeout(Duration::from_secs(10), rx.recv()).await?;
    }
    let mut lat = Vec::with_capacity(z.prop);
    for i in 0..z.prop {
        let t0 = Instant::now();
        if !mesh_put(&mut c1, "prop", &agent(0, i + 1)).await? {
            bail!("update refused");
        }
        lat.push((seen_at_both(&mut rx2, &mut rx3).await? - t0).as_secs_f64() * 1000.0);
    }
    (f.p50, f.p99) = (pct(&mut lat, 0.50), pct(&mut lat, 0.99));
    eprintln!("  regmesh: propagation done");

    // 2. Writes: the agents exist (created once, each by a mesh-wide
    // vote), then 16 clients update their own at c1.
    load_mesh(&m.clients[0], "w", 0, KEYS).await?;
    let c1_client = m.clients[0].clone();
    let connect = move |_| {
        let c = c1_client.clone();
        async move { Ok(c.connect().await?) }
    };
    (f.writes, f.cpu_per_write_us) = mesh_updates(&m, z.secs, connect.clone(), "w").await?;
    // 2b. The same writes with client w at center w % 3, over agents that
    // center created (only a record's origin may change it).
    load_mesh_spread(&m.clients, "s").await?;
    let centers = m.clients.clone();
    let spread = move |w: usize| {
        let c = centers[w % 3].clone();
        async move { Ok(c.connect().await?) }
    };
    (f.writes_spread, f.cpu_per_write_spread_us) = mesh_updates(&m, z.secs, spread, "s").await?;
    eprintln!("  regmesh: writes done");

    // 3. Reads by id, and capability lookups (10 agents per capability).
    f.reads = measure(z.secs, connect.clone(), |mut conn: Conn, w, n| async move {
        let path = format!("/v1/agents/w{:07}", (w * 7919 + n * 13) % KEYS);
        let r = conn.request(hyper::Method::GET, &path, None).await?;
        if !r.status.is_success() {
            bail!("read: {}", r.status);
        }
        Ok(conn)
    })
    .await?;
    f.lookups = measure(z.secs, connect, |mut conn: Conn, w, n| async move {
        let path = format!("/v1/agents?capability=cap-{}&limit=10", (w + n) % 100);
        let r = conn.request(hyper::Method::GET, &path, None).await?;
        if !r.status.is_success() {
            bail!("lookup: {}", r.status);
        }
        Ok(conn)
    })
    .await?;
    eprintln!("  regmesh: reads done");

    // 4. Resync: stop c3, create `resync` agents at c1, restart c3.
    terminate(&mut m.procs.0[2]);
    f.missed_bytes = load_mesh(&m.clients[0], "r", 0, z.resync).await? as f64;
    let want = m.agents_at(0).await?;
    let wire0 = m.wire.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let (child, client) = m.spawn(2)?;
    m.procs.0[2] = child;
    m.clients[2] = client;
    while m.agents_at(2).await.unwrap_or(0) < want {
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("c3 did not catch up");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f.resync_s = t0.elapsed().as_secs_f64();
    f.resync_bytes = (m.wire.load(Ordering::Relaxed) - wire0) as f64;
    m.wait_up(2).await?;
    eprintln!("  regmesh: resync done");

    // 5. Memory: c1's resident growth per record over `memory` agents,
    // loaded as an operator would load that many (`regmesh import` into
    // the stopped center), then held by the whole mesh again.
    let before = rss_bytes(m.procs.0[0].id());
    terminate(&mut m.procs.0[0]);
    let file = dir.join("agents.jsonl");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&file)?);
        for i in 0..z.memory {
            let mut a = agent(i, 0);
            a["id"] = Value::String(format!("m{i:07}"));
            serde_json::to_writer(&mut w, &a)?;
            w.write_all(b"\n")?;
        }
    }
    let out = Command::new(exe("regmesh")?)
        .args(["import", "--config"])
        .arg(dir.join("c1.toml"))
        .arg(&file)
        .output()?;
    if !out.status.success() {
        bail!("import: {}", String::from_utf8_lossy(&out.stderr));
    }
    let _ = std::fs::remove_file(&file);
    let (child, client) = m.spawn(0)?;
    m.procs.0[0] = child;
    m.clients[0] = client;
    let want = m.agents_at(0).await?;
    let t0 = Instant::now();
    for i in 1..3 {
        while m.agents_at(i).await.unwrap_or(0) < want && t0.elapsed() < Duration::from_secs(900) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    f.rss_per_record = rss_bytes(m.procs.0[0].id()).saturating_sub(before) as f64 / z.memory as f64;
    eprintln!("  regmesh: memory done");
    Ok(f)
}

/// Creates agents `{prefix}{i}` for i in `from..to` at `c` with 16
/// clients; returns the JSON bytes sent.
async fn load_mesh(c: &Client, prefix: &str, from: usize, to: usize) -> Result<usize> {
    let mut tasks = Vec::new();
    for w in 0..CLIENTS {
        let (c, prefix) = (c.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut conn = c.connect().await?;
            let mut bytes = 0;
            for i in (from + w..to).step_by(CLIENTS) {
                let a = agent(i, 0);
                if !mesh_put(&mut conn, &format!("{prefix}{i:07}"), &a).await? {
                    bail!("create {prefix}{i:07} refused");
                }
                bytes += serde_json::to_vec(&a)?.len();
            }
            Ok::<_, anyhow::Error>(bytes)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total)
}

/// 16 clients (client w connected by `connect(w)`) updating their own 64
/// agents `{prefix}{w * 64 + k}` for `secs`: writes/s and the CPU time of
/// all three centers per write, µs.
async fn mesh_updates<C, CF>(m: &MeshCluster, secs: u64, connect: C, prefix: &'static str) -> Result<(f64, f64)>
where
    C: Fn(usize) -> CF + Send + Sync + Clone + 'static,
    CF: std::future::Future<Output = Result<Conn>> + Send,
{
    let cpu0: u64 = m.procs.0.iter().map(|p| cpu_micros(p.id())).sum();
    let writes = measure(secs, connect, move |mut conn: Conn, w, n| async move {
        let i = w * 64 + n % 64;
        let r = conn
            .request(
                hyper::Method::PUT,
                &format!("/v1/agents/{prefix}{i:07}"),
                Some(&agent(i, n + 1)),
            )
            .await?;
        if !r.status.is_success() {
            bail!("update refused: {}", r.status);
        }
        Ok(conn)
    })
    .await?;
    let cpu1: u64 = m.procs.0.iter().map(|p| cpu_micros(p.id())).sum();
    Ok((writes, (cpu1 - cpu0) as f64 / (writes * secs as f64)))
}

/// Creates agents `{prefix}{i}` for the spread writes: client w's 64 ids
/// (`w * 64 ..`) at center w % 3, so each center originates the ones its
/// clients update.
async fn load_mesh_spread(centers: &[Client], prefix: &str) -> Result<()> {
    let mut tasks = Vec::new();
    for w in 0..CLIENTS {
        let (c, prefix) = (centers[w % centers.len()].clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut conn = c.connect().await?;
            for i in w * 64..(w + 1) * 64 {
                if !mesh_put(&mut conn, &format!("{prefix}{i:07}"), &agent(i, 0)).await? {
                    bail!("create {prefix}{i:07} refused");
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let z = if quick {
        Sizes {
            prop: 300,
            secs: 3,
            resync: 2_000,
            memory: 20_000,
        }
    } else {
        Sizes {
            prop: 1_000,
            secs: 10,
            resync: 10_000,
            memory: 1_000_000,
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("etcd"))?;
    std::fs::create_dir_all(dir.path().join("regmesh"))?;
    let etcd_version = Command::new("etcd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.trim_start_matches("etcd Version: ").to_string())
        })
        .unwrap_or_else(|| "?".into());
    eprintln!(
        "running regmesh, then etcd {etcd_version} ({})",
        if quick { "quick" } else { "full" }
    );
    let r = rt.block_on(mesh_run(&dir.path().join("regmesh"), &z))?;
    let e = rt.block_on(etcd_run(&dir.path().join("etcd"), &z))?;
    println!(
        "# regmesh {} vs etcd {etcd_version}: 3-center full mesh vs 3-member cluster, loopback, defaults",
        env!("CARGO_PKG_VERSION")
    );
    println!(
        "{CLIENTS} clients at member 1 (or spread, client w at member w mod 3); ~500-byte records; {} s per rate; {} propagation writes; {} missed records; {} records for memory.\n",
        z.secs, z.prop, z.resync, z.memory
    );
    println!("| workload | regmesh | etcd | regmesh / etcd | better |");
    println!("|---|---:|---:|---:|---|");
    let row = |name: &str, a: f64, b: f64, unit: &str, higher: bool| {
        println!(
            "| {name} | {a:.2}{unit} | {b:.2}{unit} | {:.2}× | {} |",
            a / b,
            if higher { "higher" } else { "lower" }
        );
        a / b
    };
    let p50 = row(
        "propagation p50, write at 1 → readable at 2 and 3",
        r.p50,
        e.p50,
        " ms",
        false,
    );
    let p99 = row("propagation p99", r.p99, e.p99, " ms", false);
    let w = row("writes/s, 16 clients (updates)", r.writes, e.writes, "", true);
    row(
        "CPU per write, all three members",
        r.cpu_per_write_us,
        e.cpu_per_write_us,
        " µs",
        false,
    );
    let ws = row(
        "writes/s, 16 clients spread over the three members",
        r.writes_spread,
        e.writes_spread,
        "",
        true,
    );
    row(
        "CPU per write, spread, all three members",
        r.cpu_per_write_spread_us,
        e.cpu_per_write_spread_us,
        " µs",
        false,
    );
    let rd = row("reads by key/s", r.reads, e.reads, "", true);
    let lk = row(
        "filtered lookups/s (capability vs prefix, 10 results)",
        r.lookups,
        e.lookups,
        "",
        true,
    );
    let rs = row(
        "resync time after restart of member 3",
        r.resync_s,
        e.resync_s,
        " s",
        false,
    );
    let rb = row(
        "resync bytes on the wire",
        r.resync_bytes / 1e6,
        e.resync_bytes / 1e6,
        " MB",
        false,
    );
    let (rbx, ebx) = (r.resync_bytes / r.missed_bytes, e.resync_bytes / e.missed_bytes);
    row("resync bytes ÷ size of the missed records", rbx, ebx, "×", false);
    let mem = row(
        "resident memory growth per record",
        r.rss_per_record,
        e.rss_per_record,
        " B",
        false,
    );
    let _ = (p50, rb);
    println!(
        "\nsummary (regmesh/etcd): propagation p99 {p99:.2}×, writes {w:.2}× (spread {ws:.2}×), reads {rd:.2}×, lookups {lk:.2}×, resync time {rs:.2}×, resync bytes {rbx:.2}× missed size (etcd {ebx:.2}×), memory/record {mem:.2}×"
    );
    Ok(())
}
