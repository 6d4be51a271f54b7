//! One chaos run from start to verdicts: plan the schedule, `regmesh init`
//! the mesh, put a proxy on every peer link, start the centers, let writers
//! and the monitor run while the nemesis carries out the schedule, heal,
//! wait for convergence, gather listings and logs, and run the checks. It
//! owns the order of the phases and their time limits; what is checked is
//! `checks`'s, how it is shown `report`'s.

use super::checks::{self, Evidence, Listing};
use super::cluster::Cluster;
use super::nemesis::{self, Clock, Net};
use super::proxy::Link;
use super::report::Outcome;
use super::schedule::Schedule;
use super::writers::{self, parse_version};
use super::{monitor, KNOWN_DEFECTS_WHEN_UNSET};
use anyhow::{bail, Context, Result};
use regmesh_node::client::Client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for a fresh mesh to be active with every peer OPERATIONAL.
const MESH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long listings must stay equal (and deleted ids gone) after converging.
const SETTLE: Duration = Duration::from_secs(2);
/// Fewest acknowledged writes per 10 s of faults for a run to judge anything.
const ACKED_MIN_PER_10S: usize = 50;
/// Per listing request.
const LIST_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Debug)]
pub struct Settings {
    pub seed: u64,
    pub faults_s: u64,
    pub converge_s: u64,
    pub known: Vec<String>,
    pub report: Option<std::path::PathBuf>,
    pub keep: bool,
    /// `CHAOS_FAULTS=none`: writers only, no faults (a control run).
    pub no_faults: bool,
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

impl Settings {
    pub fn from_env() -> Settings {
        let known = std::env::var("CHAOS_KNOWN_DEFECTS").unwrap_or_else(|_| KNOWN_DEFECTS_WHEN_UNSET.to_string());
        let known: Vec<String> = known
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        for k in &known {
            assert!(
                checks::NAMES.contains(&k.as_str()),
                "CHAOS_KNOWN_DEFECTS: no check {k:?} (checks: {:?})",
                checks::NAMES
            );
        }
        Settings {
            seed: env_u64("CHAOS_SEED", 1),
            faults_s: env_u64("CHAOS_SECONDS", 30),
            converge_s: env_u64("CHAOS_CONVERGE_SECONDS", 45),
            known,
            report: std::env::var_os("CHAOS_REPORT").map(Into::into),
            keep: std::env::var("CHAOS_KEEP").is_ok_and(|v| v == "1"),
            no_faults: std::env::var("CHAOS_FAULTS").is_ok_and(|v| v == "none"),
        }
    }

    pub fn reproduce(&self) -> String {
        format!(
            "CHAOS_SEED={} CHAOS_SECONDS={} CHAOS_CONVERGE_SECONDS={}{} cargo nextest run -p regmesh --test chaos --no-capture",
            self.seed,
            self.faults_s,
            self.converge_s,
            if self.no_faults { " CHAOS_FAULTS=none" } else { "" }
        )
    }
}

/// Everything a center lists, paged; None if it does not answer.
async fn listing(c: &Client) -> Option<Listing> {
    let mut out = Listing::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(k) => format!("/v1/agents?limit=1000&cursor={k}"),
            None => "/v1/agents?limit=1000".to_string(),
        };
        let r = tokio::time::timeout(LIST_TIMEOUT, c.request(hyper::Method::GET, &path, None))
            .await
            .ok()?
            .ok()?;
        if !r.status.is_success() {
            return None;
        }
        let v = r.json();
        for it in v["items"].as_array()? {
            let id = it["id"].as_str()?.to_string();
            let origin = it["origin"].as_str()?.to_string();
            let version = parse_version(it["version"].as_str()?)?;
            out.insert(id, (origin, version));
        }
        match v["next_cursor"].as_str() {
            Some(k) => cursor = Some(k.to_string()),
            None => return Some(out),
        }
    }
}

async fn listings(clients: &[Client]) -> Vec<Option<Listing>> {
    let mut out = Vec::new();
    for c in clients {
        out.push(listing(c).await);
    }
    out
}

fn all_equal(l: &[Option<Listing>]) -> bool {
    l.iter().all(Option::is_some) && l.windows(2).all(|w| w[0] == w[1])
}

async fn wait_mesh_up(clients: &[Client]) -> Result<()> {
    let t0 = Instant::now();
    for c in clients {
        loop {
            let up = match c.request(hyper::Method::GET, "/v1/peers", None).await {
                Ok(r) => {
                    let v = r.json();
                    v["state"] == "active"
                        && v["peers"]
                            .as_array()
                            .is_some_and(|ps| ps.iter().all(|p| p["state"] == "OPERATIONAL"))
                }
                Err(_) => false,
            };
            if up {
                break;
            }
            if t0.elapsed() > MESH_UP_TIMEOUT {
                bail!("the mesh was not up within {MESH_UP_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// One run of `settings.seed`.
pub async fn campaign(settings: Settings, n: usize) -> Result<Outcome> {
    let mut schedule = Schedule::plan(settings.seed, n, settings.faults_s * 1000);
    if settings.no_faults {
        schedule.faults.clear();
    }
    eprintln!("chaos: {schedule}");
    // Kept if anything goes wrong, removed below when every check passed.
    let dir = tempfile::Builder::new().prefix("regmesh-chaos-").tempdir()?.keep();
    eprintln!("chaos: working in {}", dir.display());
    let mut cluster = Cluster::init(&dir, n, schedule.tombstone_horizon_s)?;
    let mut links = Vec::new();
    for from in 0..n {
        for to in (0..n).filter(|&t| t != from) {
            let link = Link::start(from, to, cluster.peer_addrs[to].clone()).await?;
            cluster.route(from, to, link.port)?;
            links.push(link);
        }
    }
    let net = Net { n, links };
    for i in 0..n {
        tokio::task::block_in_place(|| cluster.start(i))?;
    }
    let clients: Vec<Client> = cluster
        .urls
        .iter()
        .map(|u| Client::new(u, None))
        .collect::<Result<_, _>>()?;
    wait_mesh_up(&clients).await?;

    let clock = Clock(Instant::now());
    let stop = Arc::new(AtomicBool::new(false));
    let (ops, writer_tasks) = writers::start(&cluster.urls, settings.seed, clock, stop.clone());
    let (seen, monitor_tasks) = monitor::start(&cluster.urls, clock, stop.clone());
    let tl = nemesis::run(&schedule, &mut cluster, &net, clock, clock.ms()).await?;
    let heal_ms = clock.ms();
    stop.store(true, Ordering::SeqCst);
    for t in writer_tasks.into_iter().chain(monitor_tasks) {
        t.await.context("writer task")?;
    }

    let deadline = Instant::now() + Duration::from_secs(settings.converge_s);
    let mut converged_ms = None;
    let mut finals = listings(&clients).await;
    while Instant::now() < deadline {
        if all_equal(&finals) {
            converged_ms = Some(clock.ms() - heal_ms);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        finals = listings(&clients).await;
    }
    if converged_ms.is_some() {
        tokio::time::sleep(SETTLE).await;
        finals = listings(&clients).await;
        if !all_equal(&finals) {
            converged_ms = None;
        }
    }
    tokio::task::block_in_place(|| cluster.reap(clock.ms()))?;
    let logs: Vec<String> = (0..n)
        .map(|i| std::fs::read_to_string(cluster.log_path(i)).unwrap_or_default())
        .collect();
    let ops = ops.lock().expect("op log").clone();
    let acked = ops.iter().filter(|o| o.acked()).count();
    let acked_min = ACKED_MIN_PER_10S * (settings.faults_s / 10) as usize;
    if acked < acked_min {
        bail!("the writers got {acked} writes acknowledged, fewer than the {acked_min} needed to judge anything");
    }
    let seen = seen.lock().expect("seen log").clone();
    let crashes = std::mem::take(&mut cluster.crashes);
    drop(cluster);
    let evidence = Evidence {
        ops: &ops,
        seen: &seen,
        tl: &tl,
        finals: &finals,
        converged_ms,
        logs: &logs,
        crashes: &crashes,
    };
    let verdicts = checks::run_all(&evidence);
    let outcome = Outcome::new(&schedule, &evidence, verdicts, heal_ms);
    // Kept when the test fails (not for known defects: CI would pile them up).
    let keep = settings.keep || outcome.failure(&settings).is_some();
    if !keep {
        std::fs::remove_dir_all(&dir)?;
    }
    outcome.print(&settings, &tl, keep.then_some(dir.as_path()))?;
    Ok(outcome)
}
