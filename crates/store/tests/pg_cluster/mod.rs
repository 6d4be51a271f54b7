//! A throwaway PostgreSQL cluster for tests: `initdb` in a temp dir, then
//! `pg_ctl start` on a free loopback port below the ephemeral range, trust
//! auth, no system service; stopped (immediate mode) and deleted on drop.
//! Shared by the store's conformance test and the bin crate's shared
//! authority tests (`#[path]`). It asserts nothing about regmesh.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running cluster.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    /// As root, PostgreSQL runs as the `postgres` user (initdb refuses root).
    as_user: Option<&'static str>,
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: Debian's
/// `/usr/lib/postgresql/<newest>/bin` (not on PATH), else PATH's.
pub fn bin_dir() -> Option<PathBuf> {
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect();
    debian.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(b) = debian.pop() {
        return Some(b);
    }
    let out = Command::new("sh").args(["-c", "command -v initdb"]).output().ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && p.parent()?.join("pg_ctl").exists()).then(|| p.parent().unwrap().to_path_buf())
}

/// `None` when PostgreSQL is not installed. Under CI (env `CI` set) a
/// missing install is a test failure: scripts/test installs it.
pub fn start_or_skip(tag: &str) -> Option<Cluster> {
    match bin_dir() {
        Some(b) => Some(Cluster::start(b, tag)),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL (initdb, pg_ctl) is not installed; scripts/test installs Debian's postgresql"
            );
            eprintln!("SKIPPED: PostgreSQL is not installed (scripts/test installs it)");
            None
        }
    }
}

fn free_port() -> u16 {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let seed = std::process::id() as usize + 977 * CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for k in 0..2000 {
        let p = 21_000 + (seed * 13 + k * 271) % 11_000;
        if std::net::TcpListener::bind(("127.0.0.1", p as u16)).is_ok() {
            return p as u16;
        }
    }
    panic!("no free port below 32768");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Cluster {
    fn cmd(&self, prog: &str) -> Command {
        let exe = self.bin.join(prog);
        match self.as_user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn run(&self, mut c: Command, what: &str) {
        let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// initdb + pg_ctl start (waits until it accepts connections).
    pub fn start(bin: PathBuf, tag: &str) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix(&format!("regmesh-pg-{tag}-"))
            .tempdir()
            .unwrap();
        let as_user = is_root().then_some("postgres");
        if let Some(u) = as_user {
            let ok = Command::new("chown")
                .arg(format!("{u}:"))
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown {u} {}", dir.path().display());
        }
        let mut c = Cluster {
            bin,
            dir,
            port: 0,
            as_user,
        };
        let data = c.data();
        let mut init = c.cmd("initdb");
        init.args(["-A", "trust", "-U", "regmesh", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data);
        c.run(init, "initdb");
        // A port can be taken between the probe and the start: try a few.
        for attempt in 0..5 {
            c.port = free_port();
            let mut start = c.cmd("pg_ctl");
            start
                .args(["-w", "-t", "60", "-D"])
                .arg(&data)
                .arg("-l")
                .arg(c.dir.path().join("log"))
                .arg("-o")
                .arg(format!(
                    "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200 -c shared_buffers=16MB",
                    c.port,
                    c.dir.path().display()
                ))
                .arg("start");
            if start.output().is_ok_and(|o| o.status.success()) {
                return c;
            }
            assert!(attempt < 4, "pg_ctl start failed: {}", c.log());
        }
        unreachable!()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// URL of database `db` (see [`Cluster::create_db`]).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://regmesh@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database `db`; its URL.
    pub fn create_db(&self, db: &str) -> String {
        let mut c = postgres::Client::connect(&self.url("postgres"), postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE DATABASE \"{db}\"")).unwrap();
        self.url(db)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut stop = self.cmd("pg_ctl");
        stop.args(["-w", "-m", "immediate", "-D"]).arg(self.data()).arg("stop");
        let _ = stop.output();
    }
}
