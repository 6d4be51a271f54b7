//! The five centers as an operator runs them: `regmesh init` writes the CA,
//! keys and configs, each center's peer URLs are pointed at the link proxies,
//! and `regmesh serve --config cN.toml` runs each as a real process whose
//! output goes to `cN.log` (appended across restarts). This module starts,
//! SIGKILLs, SIGSTOPs and SIGCONTs those processes; it never edits anything
//! but the configs it wrote, and only before the centers start.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_regmesh");
/// Longest a center may take to say it listens (restart included).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One center's process, if running.
struct Proc {
    child: Child,
    stopped: bool,
}

/// The mesh's processes and where they keep config, data and logs.
pub struct Cluster {
    pub dir: PathBuf,
    pub n: usize,
    procs: Vec<Option<Proc>>,
    /// Client API URL of each center (fixed by its config).
    pub urls: Vec<String>,
    /// Each center's peer listener, `127.0.0.1:port`.
    pub peer_addrs: Vec<String>,
    /// Processes that exited without being killed by the schedule.
    pub crashes: Vec<String>,
}

/// A base port with the `n` centers' client and peer ports free right now,
/// below Linux's ephemeral range (32768 and up), so that neither the
/// proxies nor the clients' own connections take a port a center needs when
/// it restarts.
fn free_base(n: usize) -> Result<u16> {
    let mut x = std::process::id() as u64 ^ 0xc4a0;
    for _ in 0..400 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let base = 20_000 + (x >> 33) % 1_200 * 10;
        let free = (0..n as u64)
            .all(|i| (0..2).all(|d| std::net::TcpListener::bind(("127.0.0.1", (base + 10 * i + d) as u16)).is_ok()));
        if free {
            return Ok(base as u16);
        }
    }
    bail!("no free loopback ports for {n} centers")
}

pub fn id(i: usize) -> String {
    format!("c{}", i + 1)
}

impl Cluster {
    /// `regmesh init` of a full mesh of `n` in `dir`, with `[leases]`
    /// `tombstone_horizon_s` set as the schedule chose.
    pub fn init(dir: &Path, n: usize, tombstone_horizon_s: u64) -> Result<Cluster> {
        let base = free_base(n)?;
        let out = Command::new(BIN)
            .args(["init", "--centers", &n.to_string(), "--topology", "full"])
            .args(["--base-port", &base.to_string(), "--out"])
            .arg(dir)
            .output()?;
        if !out.status.success() {
            bail!("regmesh init: {}", String::from_utf8_lossy(&out.stderr));
        }
        for i in 0..n {
            edit(dir, i, |t| {
                set_key(t, "tombstone_horizon_s", &tombstone_horizon_s.to_string())
            })?;
        }
        let port = |i: usize, d: usize| base as usize + 10 * i + d;
        Ok(Cluster {
            dir: dir.to_path_buf(),
            n,
            procs: (0..n).map(|_| None).collect(),
            urls: (0..n).map(|i| format!("http://127.0.0.1:{}", port(i, 0))).collect(),
            peer_addrs: (0..n).map(|i| format!("127.0.0.1:{}", port(i, 1))).collect(),
            crashes: Vec::new(),
        })
    }

    /// Points `from`'s peer entry for `to` at a proxy on `port`.
    pub fn route(&self, from: usize, to: usize, port: u16) -> Result<()> {
        edit(&self.dir, from, |t| {
            let marker = format!("id = \"{}\"\nurl = \"https://", id(to));
            let i = t.find(&marker).context("peer entry")? + marker.len();
            let end = i + t[i..].find('"').context("url end")?;
            Ok(format!("{}127.0.0.1:{port}{}", &t[..i], &t[end..]))
        })
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.log", id(i)))
    }

    /// Starts center `i` on its config and data; returns once it listens.
    pub fn start(&mut self, i: usize) -> Result<()> {
        assert!(self.procs[i].is_none(), "{} already runs", id(i));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))?;
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(self.dir.join(format!("{}.toml", id(i))))
            .env("REGMESH_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log.try_clone()?))
            .spawn()?;
        let out = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the first line, then keeps draining stdout into the log so
        // the center never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            let first = lines.next().and_then(|l| l.ok()).unwrap_or_default();
            let _ = tx.send(first);
            let mut log = log;
            for l in lines.map_while(|l| l.ok()) {
                let _ = writeln!(log, "{l}");
            }
        });
        let first = rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
        if !first.starts_with("listening on ") {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            bail!(
                "{} did not start: {first:?}; its log ({}) ends:\n{}",
                id(i),
                self.log_path(i).display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        self.procs[i] = Some(Proc { child, stopped: false });
        Ok(())
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    fn signal(&mut self, i: usize, sig: &str) {
        if let Some(p) = &mut self.procs[i] {
            let ok = Command::new("kill")
                .args([sig, &p.child.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill {sig} {}", id(i));
            p.stopped = sig == "-STOP";
        }
    }

    pub fn pause(&mut self, i: usize) {
        self.signal(i, "-STOP");
    }

    pub fn resume(&mut self, i: usize) {
        self.signal(i, "-CONT");
    }

    /// Notes and restarts centers that exited on their own.
    pub fn reap(&mut self, at_ms: u64) -> Result<()> {
        for i in 0..self.n {
            let exited = match &mut self.procs[i] {
                Some(p) => p.child.try_wait()?,
                None => None,
            };
            if let Some(status) = exited {
                self.crashes
                    .push(format!("{} exited by itself ({status}) at {at_ms} ms", id(i)));
                self.procs[i] = None;
                self.start(i)?;
            }
        }
        Ok(())
    }

    /// Every center running and not stopped.
    pub fn heal(&mut self) -> Result<()> {
        for i in 0..self.n {
            if self.procs[i].as_ref().is_some_and(|p| p.stopped) {
                self.resume(i);
            }
            if self.procs[i].is_none() {
                self.start(i)?;
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.n {
            if self.procs[i].as_ref().is_some_and(|p| p.stopped) {
                self.resume(i);
            }
            self.kill9(i);
        }
    }
}

fn edit(dir: &Path, i: usize, f: impl FnOnce(&str) -> Result<String>) -> Result<()> {
    let path = dir.join(format!("{}.toml", id(i)));
    let text = std::fs::read_to_string(&path)?;
    std::fs::write(&path, f(&text)?)?;
    Ok(())
}

/// Replaces the value of the first `key = ...` line.
fn set_key(text: &str, key: &str, value: &str) -> Result<String> {
    let i = text.find(&format!("\n{key} = ")).context("key in config")? + 1;
    let end = i + text[i..].find('\n').context("line end")?;
    Ok(format!("{}{key} = {value}{}", &text[..i], &text[end..]))
}
