//! The per-host bandwidth model (issue 13, "Measure"): every RP host —
//! the console, each sync node, the single-host peer — is a network
//! namespace whose link to the repositories is shaped with `tbf` to
//! `HOST_RATE_BYTES_S` each way, while each repository also answers after
//! `LATENCY_MS` and at most `CONN_RATE_BYTES_S` per connection. Console
//! and sync nodes talk over a separate, unshaped backbone (document 001:
//! sync nodes sit near the repositories, the console aggregates).
//!
//! One full sync by snapshots (new sessions, a filler object in each
//! repository) is timed for rpki-client and for `regmesh` processes: the
//! console alone, and with 1, 2 and 4 sync nodes. The VRP sets must be
//! identical; bytes each host downloaded are read from its link; the
//! console itself downloads notification files only, no sync node more
//! than half, and 4 sync nodes are faster than the best single host by a
//! set factor. Figures are printed as a table.
//!
//! Needs root for the namespaces: skipped on a machine where they cannot
//! be made, a failure under CI (env `CI`). Budget of the CI test: one
//! world (8 RSA keys), five full syncs of 8 x 1 MiB (11.4 MB as RRDP's
//! base64) at 1 MB/s per host, each bounded by `SYNC_WAIT`: ~70 s, at most
//! ~6 min. The ignored bench (`bench/rpki-netns`) runs 4 MiB per
//! repository and says whether the issue's aim (3x) is met.

mod netns;
mod peer_harness;
#[path = "../../fronts/rpki/tests/world/mod.rs"]
mod world;

use netns::{Net, REPOS_IP};
use peer_harness::{get, Proc, BIN};
use regmesh_node::client::Client;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use world::{CaSpec, Lab, Link, RoaSpec};

const REPOS: usize = 8;
const HOST_RATE_BYTES_S: u64 = 1_000_000;
const CONN_RATE_BYTES_S: u64 = 1_000_000;
const LATENCY_MS: u64 = 100;
const SYNC_NODES: [usize; 3] = [1, 2, 4];
const SYNC_WAIT: Duration = Duration::from_secs(240);
/// The API listens off loopback (on the backbone), so it needs a token.
const TOKEN: &str = "wt-rpki-netns-read-token";

type Triples = BTreeSet<(u32, String, u8)>;

fn specs() -> Vec<CaSpec> {
    (1..REPOS)
        .map(|i| {
            let a: IpAddr = format!("10.{i}.0.0").parse().unwrap();
            CaSpec {
                name: format!("ca{i}"),
                repo: i,
                parent: None,
                v4: vec![(a, 16)],
                v6: vec![],
                asns: (64500 + i as u32, 64500 + i as u32),
                roas: vec![RoaSpec {
                    asn: 64500 + i as u32,
                    prefixes: vec![(a, 16, Some(24))],
                }],
            }
        })
        .collect()
}

/// Largest filler object: rpki-client refuses files over 4 MB.
const FILLER_OBJECT_BYTES: usize = 1 << 20;

/// New sessions everywhere (a full sync by snapshots), each repository
/// carrying `filler_bytes` of random data in objects of at most
/// `FILLER_OBJECT_BYTES`.
fn reset(lab: &mut Lab, filler_bytes: usize) {
    for i in 0..REPOS {
        lab.world.objects[i].retain(|u, _| !u.contains("/filler"));
        for n in 0..filler_bytes.div_ceil(FILLER_OBJECT_BYTES) {
            let len = FILLER_OBJECT_BYTES.min(filler_bytes - n * FILLER_OBJECT_BYTES);
            let mut f = vec![0u8; len];
            getrandom::fill(&mut f).unwrap();
            lab.world.objects[i].insert(format!("rsync://localhost/repo{i}/filler{n}.bin"), f.into());
        }
        lab.publishers[i] = world::Publisher::new_on(&lab.world.host, lab.world.ports[i]);
    }
    lab.republish();
}

fn triples(v: &Value) -> Triples {
    v["roas"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|r| {
            let asn = match &r["asn"] {
                Value::String(s) => s.trim_start_matches("AS").parse().unwrap(),
                n => n.as_u64().unwrap() as u32,
            };
            (
                asn,
                r["prefix"].as_str().unwrap().to_string(),
                r["maxLength"].as_u64().unwrap() as u8,
            )
        })
        .collect()
}

/// rpki-client on host 0 (as in tests/rpki.rs: RRDP only, our HTTPS CA
/// bind-mounted over the bundle its libtls reads); its VRPs. Its timeout
/// is 900 s: it gives each repository a quarter of it, and 4 MiB per
/// repository over a shared 1 MB/s link takes more than 30 s.
fn rpki_client(net: &Net, dir: &Path, tal: &Path, ca: &Path) -> Triples {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (cache, out) = (dir.join("rc-cache"), dir.join("rc-out"));
    for d in [&cache, &out] {
        std::fs::create_dir_all(d).unwrap();
        let ok = Command::new("chown").arg("_rpki-client").arg(d).status().unwrap();
        assert!(ok.success(), "chown _rpki-client (scripts/test installs rpki-client)");
    }
    let script = format!(
        "mount --bind {} /usr/lib/ssl/cert.pem && exec rpki-client -j -e /bin/false -s 900 -t {} -d {} {}",
        ca.display(),
        tal.display(),
        cache.display(),
        out.display()
    );
    let o = net
        .command(0, "unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "rpki-client: {log}");
    let text = std::fs::read_to_string(out.join("json")).unwrap_or_else(|e| panic!("{e}: {log}"));
    let got = triples(&serde_json::from_str(&text).unwrap());
    if got.len() != REPOS - 1 {
        eprintln!("rpki-client's log: {log}");
    }
    got
}

/// Routinator on host 0 (`--rrdp-root-cert` for our HTTPS CA, rsync off);
/// its VRPs. Only where it is installed (`bench/routinator` installs it).
fn routinator(net: &Net, dir: &Path, tal: &Path, ca: &Path) -> Triples {
    let tals = dir.join("routinator-tals");
    std::fs::create_dir_all(&tals).unwrap();
    std::fs::copy(tal, tals.join("lab.tal")).unwrap();
    let out = dir.join("routinator.json");
    let o = net
        .command(0, "routinator")
        .arg("--no-rir-tals")
        .arg("--extra-tals-dir")
        .arg(&tals)
        .arg("-r")
        .arg(dir.join("routinator-cache"))
        .args(["--disable-rsync", "--allow-dubious-hosts", "--rrdp-root-cert"])
        .arg(ca)
        .args(["vrps", "-f", "json", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "routinator: {}", String::from_utf8_lossy(&o.stderr));
    triples(&serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap())
}

fn installed(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .status()
        .is_ok_and(|s| s.success())
}

/// `regmesh init` for `1 + k` centers, rewritten so center `i` lives on
/// host `i` (its API, peer and RTR listeners on its backbone address).
fn init(dir: &Path, k: usize, tal: &Path, ca: &Path) {
    let n = 1 + k;
    let base = peer_harness::free_base(n);
    let o = Command::new(BIN)
        .args(["init", "--centers", &n.to_string(), "--fronts", "rpki", "--base-port"])
        .arg(base.to_string())
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::create_dir_all(dir.join("tals")).unwrap();
    std::fs::copy(tal, dir.join("tals/lab.tal")).unwrap();
    for i in 0..n {
        let p = dir.join(format!("c{}.toml", i + 1));
        let mut text = std::fs::read_to_string(&p).unwrap();
        for j in 0..n {
            // `regmesh init`'s layout: center j's peer port is base + 10 j + 1.
            let from = format!("https://127.0.0.1:{}", base as usize + 10 * j + 1);
            let to = format!("https://{}:{}", Net::near_ip(j), base as usize + 10 * j + 1);
            text = text.replace(&from, &to);
        }
        text = text.replace("127.0.0.1", &Net::near_ip(i).to_string());
        text = text.replace(
            "tokens = []",
            &format!("tokens = [{{ name = \"bench\", token = \"{TOKEN}\", scopes = [\"read\"] }}]"),
        );
        text = text.replace(
            "[fronts.rpki]\n",
            &format!("[fronts.rpki]\nallow_local_hosts = true\nca_certs = [{ca:?}]\nrefresh_s = 1\n"),
        );
        std::fs::write(&p, text).unwrap();
    }
}

/// Starts center `i` of `dir` on host `i`; returns it and its API client.
fn spawn(net: &Net, dir: &Path, i: usize) -> (Proc, Client) {
    let mut child = net
        .command(i, BIN)
        .args(["serve", "--config"])
        .arg(dir.join(format!("c{}.toml", i + 1)))
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
        .unwrap_or_else(|| panic!("c{}: {line:?}", i + 1))
        .to_string();
    (Proc(child), Client::new(&url, Some(TOKEN.to_string())).unwrap())
}

/// What one run measured.
struct Run {
    name: String,
    took: Duration,
    /// Bytes each host received on its far link, then on its near link.
    far: Vec<u64>,
    near: Vec<u64>,
    vrps: Triples,
    by: Vec<String>,
}

fn counters(net: &Net, hosts: usize) -> (Vec<u64>, Vec<u64>) {
    (0..hosts).map(|i| net.bytes_to(i).unwrap()).unzip()
}

fn delta(after: &[u64], before: &[u64]) -> Vec<u64> {
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

/// The console with `k` sync nodes (k = 0: alone): started on small
/// repositories, then timed from the reset to the console's status showing
/// every repository at its new session.
async fn regmesh_run(net: &Net, lab: &mut Lab, tal: &Path, ca: &Path, k: usize, filler_bytes: usize) -> Run {
    reset(lab, 0);
    let dir = tempfile::Builder::new().prefix("wt-rpki-netns").tempdir().unwrap();
    init(dir.path(), k, tal, ca);
    let mut procs = Vec::new();
    let (p, c1) = spawn(net, dir.path(), 0);
    procs.push(p);
    for i in 1..=k {
        procs.push(spawn(net, dir.path(), i).0);
    }
    let t0 = Instant::now();
    loop {
        let (_, s) = get(&c1, "/v1/rpki/status").await;
        let known = s["sync_nodes"].as_array().map(Vec::len).unwrap_or(0);
        if known == k && s["cycles"].as_u64() >= Some(1) {
            break;
        }
        assert!(t0.elapsed() < SYNC_WAIT, "console and {k} sync nodes not ready: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = counters(net, 1 + k);
    reset(lab, filler_bytes);
    let sessions: BTreeSet<String> = lab.publishers.iter().map(|p| p.session.to_string()).collect();
    let t = Instant::now();
    let s = loop {
        let (_, s) = get(&c1, "/v1/rpki/status").await;
        let repos = s["repositories"].as_array().cloned().unwrap_or_default();
        let fresh = repos
            .iter()
            .filter(|r| sessions.contains(r["session"].as_str().unwrap_or("")))
            .count();
        if fresh == REPOS && s["vrps"].as_u64() == Some(REPOS as u64 - 1) {
            break s;
        }
        assert!(t.elapsed() < SYNC_WAIT, "no full sync with {k} sync nodes: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = t.elapsed();
    let after = counters(net, 1 + k);
    let (_, v) = get(&c1, "/v1/rpki/vrps").await;
    let by = s["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["by"].as_str().unwrap_or("").to_string())
        .collect();
    drop(procs);
    Run {
        name: if k == 0 {
            "console alone".into()
        } else {
            format!("console + {k} sync nodes")
        },
        took,
        far: delta(&after.0, &before.0),
        near: delta(&after.1, &before.1),
        vrps: triples(&v),
        by,
    }
}

fn mb(b: u64) -> String {
    format!("{:.2}", b as f64 / 1e6)
}

/// The issue's aim: 4 sync nodes at least this many times faster than the
/// best single-host peer.
const AIM_SPEEDUP: f64 = 3.0;

/// Every run with `filler_bytes` per repository; asserts identical VRPs,
/// the spread of downloads and, if given, `speedup_min` for 4 sync nodes.
async fn measure(net: &Net, filler_bytes: usize, speedup_min: Option<f64>) {
    let hosts = 1 + SYNC_NODES.iter().max().unwrap();
    for i in 0..hosts {
        net.shape(i, Some(HOST_RATE_BYTES_S)).unwrap();
    }
    let mut lab = Lab::start_on(REPOS_IP, REPOS, specs());
    for s in &lab.servers {
        *s.link.lock().unwrap() = Link {
            latency_ms: LATENCY_MS,
            rate_bps: CONN_RATE_BYTES_S,
            gzip: false,
            unreachable: false,
        };
    }
    let dir = tempfile::Builder::new().prefix("wt-rpki-netns").tempdir().unwrap();
    let (tal, ca) = lab.write_trust(dir.path());
    let mut runs = Vec::new();

    // rpki-client on host 0.
    reset(&mut lab, filler_bytes);
    let before = counters(net, 1);
    let t = Instant::now();
    let (d, tl, c) = (dir.path().to_path_buf(), tal.clone(), ca.clone());
    let vrps = tokio::task::block_in_place(|| rpki_client(net, &d, &tl, &c));
    let took = t.elapsed();
    let after = counters(net, 1);
    runs.push(Run {
        name: "rpki-client".into(),
        took,
        far: delta(&after.0, &before.0),
        near: delta(&after.1, &before.1),
        vrps,
        by: Vec::new(),
    });

    if installed("routinator") {
        reset(&mut lab, filler_bytes);
        let before = counters(net, 1);
        let t = Instant::now();
        let (d, tl, c) = (dir.path().to_path_buf(), tal.clone(), ca.clone());
        let vrps = tokio::task::block_in_place(|| routinator(net, &d, &tl, &c));
        let took = t.elapsed();
        let after = counters(net, 1);
        runs.push(Run {
            name: "routinator".into(),
            took,
            far: delta(&after.0, &before.0),
            near: delta(&after.1, &before.1),
            vrps,
            by: Vec::new(),
        });
    }
    for k in std::iter::once(0).chain(SYNC_NODES) {
        let r = regmesh_run(net, &mut lab, &tal, &ca, k, filler_bytes).await;
        runs.push(r);
    }

    println!(
        "per-host model: {REPOS} repositories x {} MiB, host links {} MB/s (tbf), {} MB/s and {LATENCY_MS} ms per connection",
        filler_bytes >> 20,
        mb(HOST_RATE_BYTES_S),
        mb(CONN_RATE_BYTES_S)
    );
    println!(
        "| run | full sync s | MB down per host (far link: console/peer, sync nodes) | MB to console over backbone |"
    );
    println!("|---|---|---|---|");
    for r in &runs {
        let far: Vec<String> = r.far.iter().map(|b| mb(*b)).collect();
        println!(
            "| {} | {:.2} | {} | {} |",
            r.name,
            r.took.as_secs_f64(),
            far.join(" / "),
            mb(r.near[0])
        );
    }
    let want = &runs[0].vrps;
    assert_eq!(want.len(), REPOS - 1, "rpki-client validated the lab");
    for r in &runs {
        assert_eq!(&r.vrps, want, "{}: identical to rpki-client's VRPs", r.name);
    }
    let best_single = runs
        .iter()
        .filter(|r| r.by.is_empty() || r.name == "console alone")
        .map(|r| r.took)
        .min()
        .unwrap();
    let four = runs.last().unwrap();
    let speedup = best_single.as_secs_f64() / four.took.as_secs_f64();
    println!(
        "4 sync nodes: {speedup:.2}x the best single host (aim {AIM_SPEEDUP}x: {}); repositories by {:?}",
        if speedup >= AIM_SPEEDUP { "met" } else { "not met" },
        four.by
    );
    let filler_total = (REPOS * filler_bytes) as u64;
    assert!(
        four.far[0] < filler_total / 10,
        "the console itself downloads notification files only: {:?}",
        four.far
    );
    for (i, b) in four.far.iter().enumerate().skip(1) {
        assert!(
            *b < filler_total / 2,
            "sync node {i} downloaded {b} of {filler_total} bytes: the load is not spread"
        );
    }
    if let Some(min) = speedup_min {
        assert!(
            speedup >= min,
            "4 sync nodes took {:?}, the best single host {best_single:?}",
            four.took
        );
    }
}

/// Namespaces, tools, the hub entered, a runtime: runs `measure`.
fn in_namespaces(filler_bytes: usize, speedup_min: Option<f64>) {
    let Some(net) = Net::create_or_skip("rpki", 1 + SYNC_NODES.iter().max().unwrap()) else {
        return;
    };
    for tool in ["rpki-client", "unshare", "tc"] {
        assert!(installed(tool), "{tool} is not installed: run scripts/test");
    }
    net.enter_hub().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(measure(&net, filler_bytes, speedup_min));
}

/// CI: 1 MiB per repository. Measured 2.1x here (debug build, a loaded
/// 2-core machine, per-task overheads of ~3 s); 1.5x leaves room for
/// CI's load while still failing if sync nodes stop adding bandwidth.
#[test]
fn sync_nodes_on_their_own_links_add_up_their_bandwidth() {
    in_namespaces(1 << 20, Some(1.5));
}

/// The issue's measurement (`bench/rpki-netns`): 4 MiB per repository;
/// prints whether the aim is met.
#[test]
#[ignore]
fn bench_full_sync_per_host_links() {
    in_namespaces(4 << 20, None);
}
