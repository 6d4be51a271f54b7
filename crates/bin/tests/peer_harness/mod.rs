//! Helpers for the multi-process tests (`peer_attacks.rs`, `claims.rs`,
//! `peer_lifecycle.rs`, `ids.rs`, `peer_flood.rs`, `rd.rs`, `mesh/`): real `regmesh` processes set up with `regmesh
//! init`, raw peer calls made with curl exactly as the DRiP draft shows them,
//! and a link proxy the test can freeze. It owns no assertion about the mesh;
//! each test states its own.
#![allow(dead_code)]

use regmesh_node::client::Client;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_regmesh");

/// A running center; killed when dropped.
pub struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A base port with every port a mesh of `n` needs free right now. Bases stay
/// below 32,768, where Linux picks the source ports of outgoing connections:
/// there a restarted center could find its port taken by another test's client.
pub fn free_base(n: usize) -> u16 {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let seed = std::process::id() as usize * 13 + 977 * CALLS.fetch_add(1, Ordering::Relaxed);
    for k in 0..500 {
        let base = 20_000 + ((seed * 7 + k * 131) % 1200) * 10;
        let ok = (0..n)
            .all(|i| (0..2).all(|d| std::net::TcpListener::bind(("127.0.0.1", (base + 10 * i + d) as u16)).is_ok()));
        if ok {
            return base as u16;
        }
    }
    panic!("no free ports");
}

/// `regmesh init` of `n` centers in `dir`; returns the base port (center
/// `ck` has its client API on base+10(k-1) and its peer port one above).
pub fn init(dir: &Path, n: usize, topology: &str) -> u16 {
    let base = free_base(n);
    let out = Command::new(BIN)
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
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    base
}

/// Replaces `key = ...` in the `[peer]` section of `center`'s config.
pub fn set_peer_setting(dir: &Path, center: &str, key: &str, value: &str) {
    let path = dir.join(format!("{center}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("[peer]\n").expect("[peer] section");
    let at = start + text[start..].find(&format!("\n{key} = ")).expect("setting") + 1;
    let end = at + text[at..].find('\n').unwrap();
    std::fs::write(&path, format!("{}{key} = {value}{}", &text[..at], &text[end..])).unwrap();
}

/// Starts `id` from its config in `dir`; returns it and its API URL once
/// it serves.
pub fn spawn(dir: &Path, id: &str) -> (Proc, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(dir.join(format!("{id}.toml")))
        .env("REGMESH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{id}: {line:?}"))
        .to_string();
    (Proc(child), url)
}

/// Starts `id` from its config in `dir`, with a client for its API.
/// Starts centers `ids` from `dir` (made by `init`): for each, its
/// process, its client API's URL and a client for it.
#[allow(dead_code)]
pub fn spawn_all<const N: usize>(dir: &Path, ids: [&str; N]) -> [(Proc, String, Client); N] {
    ids.map(|id| {
        let (p, url) = spawn(dir, id);
        let c = Client::new(&url, None).expect("a client for a center's URL");
        (p, url, c)
    })
}

pub fn serve(dir: &Path, id: &str) -> (Proc, Client) {
    let (p, url) = spawn(dir, id);
    (p, Client::new(&url, None).unwrap())
}

pub async fn get(c: &Client, path: &str) -> (u16, Value) {
    let r = c.request(hyper::Method::GET, path, None).await.unwrap();
    (r.status.as_u16(), r.json())
}

pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < limit, "timed out after {limit:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `peer`'s entry in `c`'s `/v1/peers`.
pub async fn peer_entry(c: &Client, peer: &str) -> Value {
    let (_, v) = get(c, "/v1/peers").await;
    v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == peer)
        .cloned()
        .expect("peer")
}

pub async fn state_of(c: &Client, peer: &str) -> String {
    peer_entry(c, peer).await["state"].as_str().unwrap().to_string()
}

/// Waits until every center is active with every peer OPERATIONAL.
pub async fn wait_mesh_up(clients: &[&Client]) {
    for c in clients {
        wait_until("mesh active", Duration::from_secs(20), || async {
            let (_, v) = get(c, "/v1/peers").await;
            v["state"] == "active"
                && v["peers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|p| p["state"] == "OPERATIONAL")
        })
        .await;
    }
}

/// Creates agents `{prefix}{i}` for i in 0..n at `c`, each a 201.
pub async fn create_agents(c: &Client, prefix: &str, n: usize) {
    for i in 0..n {
        let body = serde_json::json!({"addresses": [format!("2001:db8::{i:x}")]});
        let r = c
            .request(hyper::Method::PUT, &format!("/v1/agents/{prefix}{i}"), Some(&body))
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), 201, "{prefix}{i}: {:?}", r.json());
    }
}

/// A token from center `from` to center `to` (`regmesh token`).
pub fn token(dir: &Path, from: &str, to: &str) -> String {
    let out = Command::new(BIN)
        .args(["token", "--to", to, "--config"])
        .arg(dir.join(format!("{from}.toml")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// One raw peer call with curl, as the draft's examples make them.
pub struct PeerCall<'a> {
    pub dir: &'a Path,
    pub base: u16,
    /// The center called (`c2` …).
    pub to: &'a str,
    /// Whose client certificate the connection presents.
    pub cert: &'a str,
    /// Who issues the token (signed with its key, `aud` = `to`).
    pub token_from: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub headers: Vec<String>,
    pub body: Option<String>,
}

impl PeerCall<'_> {
    /// (status, body).
    pub fn send(&self) -> (String, String) {
        let k: u16 = self.to.trim_start_matches('c').parse().unwrap();
        let port = self.base + 10 * (k - 1) + 1;
        let resolve = format!("{}:{port}:127.0.0.1", self.to);
        let url = format!("https://{}:{port}{}", self.to, self.path);
        let auth = format!("Authorization: {}", token(self.dir, self.token_from, self.to));
        let (crt, key) = (format!("{}.crt", self.cert), format!("{}.key", self.cert));
        let mut args: Vec<String> = ["--cacert", "ca.pem", "--resolve", &resolve]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend([
            "--cert".into(),
            crt,
            "--key".into(),
            key,
            "-H".into(),
            auth,
            "-X".into(),
            self.method.into(),
        ]);
        for h in &self.headers {
            args.extend(["-H".into(), h.clone()]);
        }
        if let Some(b) = &self.body {
            args.extend([
                "-H".into(),
                "Content-Type: application/json".into(),
                "-d".into(),
                b.clone(),
            ]);
        }
        args.push(url);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(self.dir, &args)
    }
}

/// Runs curl in `dir` with `args` (after `-s`, and a status line it adds);
/// returns (status, body).
pub fn curl(dir: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .current_dir(dir)
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.to_string(), body.to_string())
}

/// Points `center`'s peer entry for `peer` at 127.0.0.1:`port`; returns the
/// address it pointed at.
pub fn route_peer(dir: &Path, center: &str, peer: &str, port: u16) -> String {
    let path = dir.join(format!("{center}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let marker = format!("id = \"{peer}\"\nurl = \"https://");
    let i = text.find(&marker).expect("peer entry") + marker.len();
    let end = i + text[i..].find('"').unwrap();
    let old = text[i..end].to_string();
    std::fs::write(&path, format!("{}127.0.0.1:{port}{}", &text[..i], &text[end..])).unwrap();
    old
}

/// A switch that freezes a proxied link: while on, connections are still
/// accepted and bytes still read, but nothing is forwarded (a paused
/// process, a link that black-holes traffic). Turned off, held bytes flow.
#[derive(Default)]
pub struct Freeze {
    on: AtomicBool,
    changed: tokio::sync::Notify,
}

impl Freeze {
    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    async fn thawed(&self) {
        loop {
            let changed = self.changed.notified();
            if !self.on.load(Ordering::SeqCst) {
                return;
            }
            changed.await;
        }
    }
}

/// Copies `from` to `to`, holding every chunk while the link is frozen.
async fn pump(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, f: Arc<Freeze>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        f.thawed().await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Forwards every connection on `listen` to `target`, through `freeze`.
pub async fn freezable_proxy(listen: tokio::net::TcpListener, target: String, freeze: Arc<Freeze>) {
    loop {
        let Ok((a, _)) = listen.accept().await else { return };
        let (target, f) = (target.clone(), freeze.clone());
        tokio::spawn(async move {
            let Ok(b) = tokio::net::TcpStream::connect(&target).await else {
                return;
            };
            let _ = (a.set_nodelay(true), b.set_nodelay(true));
            let (ar, aw) = a.into_split();
            let (br, bw) = b.into_split();
            tokio::join!(pump(ar, bw, f.clone()), pump(br, aw, f));
        });
    }
}

/// A switch that cuts a proxied link: open connections drop, new ones are
/// closed at once.
#[derive(Default)]
pub struct Cut {
    on: std::sync::atomic::AtomicBool,
    now: tokio::sync::Notify,
}

impl Cut {
    pub fn set(&self, on: bool) {
        self.on.store(on, std::sync::atomic::Ordering::SeqCst);
        if on {
            self.now.notify_waiters();
        }
    }
}

/// Forwards every connection to `target` unless the link is cut.
pub async fn cuttable_proxy(listen: tokio::net::TcpListener, target: String, cut: std::sync::Arc<Cut>) {
    loop {
        let Ok((mut a, _)) = listen.accept().await else { return };
        if cut.on.load(std::sync::atomic::Ordering::SeqCst) {
            continue;
        }
        let (target, cut) = (target.clone(), cut.clone());
        tokio::spawn(async move {
            let Ok(mut b) = tokio::net::TcpStream::connect(&target).await else {
                return;
            };
            let cutting = cut.now.notified();
            if cut.on.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                _ = cutting => {}
            }
        });
    }
}
