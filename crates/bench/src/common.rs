//! Pieces shared by the benchmark binaries: child processes, a byte-counting
//! TCP proxy, the regmesh watch reader, sample agents, percentiles.
#![allow(dead_code)]

use anyhow::{bail, Result};
use http_body_util::BodyExt;
use regmesh_node::client::Client;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub struct Kill(pub Vec<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn exe(name: &str) -> Result<PathBuf> {
    let p = std::env::current_exe()?.with_file_name(name);
    if !p.exists() {
        bail!(
            "{} not found: run `cargo build --release -p regmesh` first",
            p.display()
        );
    }
    Ok(p)
}

pub fn free_base(n: usize) -> u16 {
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
pub async fn proxy(listen: std::net::TcpListener, target: String, bytes: Arc<AtomicU64>) {
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

/// Reads SSE events from `/v1/watch`, sending each (id, version) on `tx`.
pub async fn watch(
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

pub fn agent(i: usize, rev: usize) -> Value {
    json!({
        "addresses": [format!("2001:db8:{:x}:{:x}::{:x}", i >> 16, i & 0xffff, rev % 65536)],
        "endpoints": [{"url": format!("https://agents.example.com/a/{i}/a2a"), "protocol": "a2a"}],
        "status": "online",
        "capabilities": [{"name": format!("cap-{}", i % 100), "description": "translates between language pairs", "tags": ["lang", "fast"]}],
        "metadata": {"team": "bench", "rev": rev}
    })
}

pub fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0)
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Resident memory of a process, in bytes (Linux).
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Asks a process to stop (SIGTERM) and waits for it.
pub fn terminate(child: &mut Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// CPU time (user + system) a process has used, in microseconds (Linux).
pub fn cpu_micros(pid: u32) -> u64 {
    static TICK_US: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let tick_us = *TICK_US.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(10_000, |hz| 1_000_000 / hz.max(1))
    });
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces).
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .map_or(0, |ticks| ticks * tick_us)
}

/// Starts `regmesh serve --config <config>` and returns it with a client
/// for the API address it prints once it is serving.
pub fn spawn_serve(config: &std::path::Path) -> Result<(Child, Client)> {
    use anyhow::Context;
    use std::io::BufRead;
    let mut child = std::process::Command::new(exe("regmesh")?)
        .args(["serve", "--config"])
        .arg(config)
        .env("REGMESH_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .context("center did not start")?
        .to_string();
    Ok((child, Client::new(&url, None)?))
}
