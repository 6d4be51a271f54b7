//! One registry center with N agents (default 1,000,000, about 500 bytes each):
//! write rate, lookup-by-id rate and filtered lookup rate, in-process and over
//! HTTP against a real `regmesh serve` process, with p99 latencies and
//! resident memory per agent. Prints figures; asserts nothing.
//!
//! Run: `cargo run --release -p regmesh-bench --bin center-bench -- [--agents N] [--seconds S]`
//! (build `regmesh` in release first: `cargo build --release -p regmesh`).

use anyhow::{bail, Context, Result};
use hyper::Method;
use regmesh_core::Kind;
use regmesh_front_agent::AgentKind;
use regmesh_node::center::{Center, WriteOp};
use regmesh_node::client::Client;
use regmesh_node::Config;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Distinct capability names; each agent has two, so a capability filter
/// matches about 2·N/CAPS agents.
const CAPS: usize = 1000;

struct Opts {
    agents: usize,
    seconds: u64,
    connections: usize,
    /// Keep the data here (and reuse it: `--phases read,http` skips loading).
    data: Option<std::path::PathBuf>,
    phases: Vec<String>,
}

fn parse() -> Result<Opts> {
    let mut o = Opts {
        agents: 1_000_000,
        seconds: 10,
        connections: 32,
        data: None,
        phases: vec!["write".into(), "read".into(), "http".into()],
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .context("missing value")
                .and_then(|v| v.parse::<usize>().context("not a number"))
        };
        match a.as_str() {
            "--agents" => o.agents = val()?,
            "--seconds" => o.seconds = val()? as u64,
            "--connections" => o.connections = val()?,
            "--data" => o.data = Some(args.next().context("--data needs a directory")?.into()),
            "--phases" => o.phases = args.next().context("--phases needs a list")?.split(',').map(String::from).collect(),
            "--quick" => {
                o.agents = 50_000;
                o.seconds = 3;
            }
            _ => bail!(
                "unknown argument {a}; use --agents N --seconds S --connections C --data DIR --phases write,read,http --quick"
            ),
        }
    }
    Ok(o)
}

fn agent_id(i: usize) -> String {
    format!("did:web:agents.example.com:{i:08}")
}

/// An agent document of about 500 bytes encoded.
fn agent_doc(i: usize) -> serde_json::Value {
    json!({
        "addresses": [format!("2001:db8:{:x}:{:x}::1", i >> 16, i & 0xffff)],
        "endpoints": [{"url": format!("https://agents.example.com/a/{i}/a2a"), "protocol": "a2a"}],
        "status": if i.is_multiple_of(3) { "offline" } else { "online" },
        "capabilities": [
            {"name": format!("cap-{}", i % CAPS), "description": "translates between language pairs", "tags": ["lang", "fast"]},
            {"name": format!("cap-{}", (i * 7 + 3) % CAPS), "tags": ["batch"]}
        ],
        "metadata": {"team": "bench", "region": format!("r{}", i % 17)}
    })
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn rss_of(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Cheap deterministic pseudo-random numbers (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Figures {
    ops: usize,
    secs: f64,
    p50_us: f64,
    p99_us: f64,
}

impl Figures {
    fn from(mut lat_ns: Vec<u64>, secs: f64) -> Self {
        lat_ns.sort_unstable();
        let pct = |p: f64| {
            lat_ns
                .get(((lat_ns.len() as f64 * p) as usize).min(lat_ns.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0) as f64
                / 1000.0
        };
        Figures {
            ops: lat_ns.len(),
            secs,
            p50_us: pct(0.50),
            p99_us: pct(0.99),
        }
    }
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }
}

fn row(name: &str, f: &Figures) {
    println!(
        "| {name} | {:>10.0} | {:>8.1} | {:>8.1} | {:>9} |",
        f.rate(),
        f.p50_us,
        f.p99_us,
        f.ops
    );
}

/// Runs `op` on `threads` OS threads for `secs`, recording each latency.
fn run_threads(threads: usize, secs: u64, op: impl Fn(&mut Rng) + Sync) -> Figures {
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(secs);
    let lats: Vec<Vec<u64>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let op = &op;
                s.spawn(move || {
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1));
                    let mut lat = Vec::with_capacity(1 << 20);
                    while Instant::now() < deadline {
                        let a = Instant::now();
                        op(&mut rng);
                        lat.push(a.elapsed().as_nanos() as u64);
                    }
                    lat
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    Figures::from(lats.concat(), t0.elapsed().as_secs_f64())
}

async fn write_all_in_process(center: &Arc<Center>, n: usize, concurrency: usize) -> Figures {
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let center = center.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break lat;
                }
                let id = agent_id(i);
                let a = Instant::now();
                let prepared = AgentKind.prepare(&id, agent_doc(i)).expect("valid agent");
                loop {
                    match center
                        .write(
                            "agent",
                            &id,
                            WriteOp::Put {
                                prepared: prepared.clone(),
                                if_version: None,
                                above: None,
                            },
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(regmesh_node::center::WriteError::Overloaded(_)) => tokio::task::yield_now().await,
                        Err(e) => panic!("write failed: {e}"),
                    }
                }
                lat.push(a.elapsed().as_nanos() as u64);
            }
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    Figures::from(all, t0.elapsed().as_secs_f64())
}

/// Builds request `k` of a load phase: method, path, optional JSON body.
type MakeRequest = Arc<dyn Fn(&mut Rng, usize) -> (Method, String, Option<serde_json::Value>) + Send + Sync>;

/// HTTP load: `conns` keep-alive connections issuing requests built by
/// `path` for `secs`. `body` makes PUTs.
async fn http_load(client: &Client, conns: usize, secs: u64, make: MakeRequest) -> Result<(Figures, usize)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let counter = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let mut conn = client.connect().await?;
        let make = make.clone();
        let counter = counter.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ (c as u64 + 1));
            let mut lat = Vec::with_capacity(1 << 18);
            while Instant::now() < deadline {
                let k = counter.fetch_add(1, Ordering::Relaxed);
                let (m, path, body) = make(&mut rng, k);
                let a = Instant::now();
                match conn.request(m, &path, body.as_ref()).await {
                    Ok(r) if r.status.is_success() => lat.push(a.elapsed().as_nanos() as u64),
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    Ok((
        Figures::from(all, t0.elapsed().as_secs_f64()),
        errors.load(Ordering::Relaxed),
    ))
}

fn main() -> Result<()> {
    let o = parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let tmp = tempfile::tempdir()?;
    let dir = o.data.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    // The operator's defaults (page cache included), on a loopback test port.
    let mut cfg = Config::for_test("bench", &dir);
    cfg.store.cache_mib = Config::default().store.cache_mib;
    cfg.leases.sweep_interval_ms = 1000;
    let phase = |p: &str| o.phases.iter().any(|x| x == p);
    println!(
        "# regmesh center benchmark: {} agents, {} s per phase, {} HTTP connections",
        o.agents, o.seconds, o.connections
    );
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model()
    );
    println!();

    // Phase 1: in-process writes (every write durable before it is acknowledged).
    let center = Center::open_with(&cfg, regmesh_front_agent::kinds(), None)?;
    let writes = if phase("write") {
        Some(rt.block_on(write_all_in_process(&center, o.agents, 512)))
    } else {
        None
    };
    let sample = center.get("agent", &agent_id(0))?.context("agent 0 missing")?;
    let record_bytes = regmesh_core::codec::encode(&sample).len();
    println!("encoded agent record: {record_bytes} bytes");
    println!();
    println!("| operation | ops/s | p50 µs | p99 µs | ops |");
    println!("|---|---:|---:|---:|---:|");
    if let Some(w) = &writes {
        row("in-process: put (durable, group commit)", w);
    }

    // Phase 2: in-process reads on 2 threads.
    let n = o.agents;
    if phase("read") {
        let by_id = run_threads(2, o.seconds, |rng| {
            let i = rng.below(n);
            let r = center.get("agent", &agent_id(i)).expect("read");
            assert!(r.is_some());
        });
        row("in-process: get by id", &by_id);
        let filtered = run_threads(2, o.seconds, |rng| {
            let cap = format!("cap-{}", rng.below(CAPS));
            let (items, _) = center
                .list("agent", &[("capability", &cap), ("status", "online")], None, 10)
                .expect("list");
            assert!(!items.is_empty());
        });
        row("in-process: capability+status filter, page of 10", &filtered);
    }
    let head = center.head();
    center.close();
    if !phase("http") {
        return Ok(());
    }

    // Phase 3: a real `regmesh serve` process on the same data directory.
    let exe = std::env::current_exe()?.with_file_name("regmesh");
    if !exe.exists() {
        bail!(
            "{} not found: run `cargo build --release -p regmesh` first",
            exe.display()
        );
    }
    let t0 = Instant::now();
    let mut child = Command::new(&exe)
        .args(["serve", "--id", "bench", "--listen", "127.0.0.1:0", "--data"])
        .arg(&dir)
        .env("REGMESH_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
    let restart = t0.elapsed();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .context("no listen line")?
        .to_string();
    let rss_loaded = rss_of(child.id());
    let client = Client::new(&url, None)?;

    let get_path: MakeRequest =
        Arc::new(move |rng, _| (Method::GET, format!("/v1/agents/{}", agent_id(rng.below(n))), None));
    let (http_get, e1) = rt.block_on(http_load(&client, o.connections, o.seconds, get_path))?;
    let filt_path: MakeRequest = Arc::new(|rng, _| {
        (
            Method::GET,
            format!("/v1/agents?capability=cap-{}&status=online&limit=10", rng.below(CAPS)),
            None,
        )
    });
    let (http_filt, e2) = rt.block_on(http_load(&client, o.connections, o.seconds, filt_path))?;
    let put_path: MakeRequest = Arc::new(move |_, k| {
        (
            Method::PUT,
            format!("/v1/agents/{}", agent_id(n + k)),
            Some(agent_doc(n + k)),
        )
    });
    let (http_put, e3) = rt.block_on(http_load(&client, o.connections.max(64), o.seconds, put_path))?;
    let rss_after = rss_of(child.id());
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    row("HTTP: GET /v1/agents/{id}", &http_get);
    row("HTTP: GET /v1/agents?capability=&status=&limit=10", &http_filt);
    row("HTTP: PUT /v1/agents/{id} (durable)", &http_put);
    println!();
    println!("HTTP errors: {}", e1 + e2 + e3);
    println!(
        "restart with {} agents (verify every signature, rebuild indexes): {:.1} s",
        n,
        restart.as_secs_f64()
    );
    println!(
        "resident memory of `regmesh serve` after restart: {:.1} MiB = {:.0} bytes per agent \
         (after the HTTP phases: {:.1} MiB); this bench process: {:.1} MiB",
        rss_loaded as f64 / (1 << 20) as f64,
        rss_loaded as f64 / n as f64,
        rss_after as f64 / (1 << 20) as f64,
        rss_bytes() as f64 / (1 << 20) as f64
    );
    println!("changes committed in-process: {head}");
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
