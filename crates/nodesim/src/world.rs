//! A mesh of real centers on turmoil: building it (PKI, configs, one host
//! per center), stepping simulated time, faults (partitions one way or
//! both, frozen links, kills and restarts from the store directory), client
//! calls through each center's HTTP API, and read-only views of each
//! center (peer lifecycle states, node state, every stored version).
//!
//! Must never: change a center except through its API or a fault, or keep a
//! killed center's state alive (it holds only weak references, so a restart
//! reopens the store the killed run let go).

use crate::clock::SimClock;
use crate::disk::SimDisk;
use crate::net::SimNet;
use regmesh_core::{Identity, Record};
use regmesh_node::center::Center;
use regmesh_node::client::{Client, Reply};
use regmesh_node::config::{CenterKey, PeerConfig, PeerListenConfig};
use regmesh_node::peer::mesh::Mesh;
use regmesh_node::spawn::Gate;
use regmesh_node::{Config, NodeBuilder};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::{Arc, Weak};
use std::time::{Duration, UNIX_EPOCH};

/// Simulated wall time at the start of every world (2026-09-21), ms since
/// the Unix epoch: fixed, so runs replay.
pub const EPOCH_MS: u64 = 1_790_000_000_000;

/// Port of every center's client API on its host.
pub const API_PORT: u16 = 8080;
/// Port of every center's peer listener on its host.
pub const PEER_PORT: u16 = 7000;

/// The shape of a simulated mesh.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    /// Centers `c1` … `cN`, all peered with each other (one center runs
    /// standalone, without a peer listener).
    pub centers: usize,
    /// Seeds turmoil's network randomness (latencies).
    pub seed: u64,
    pub beat_interval_ms: u64,
    pub vote_timeout_ms: u64,
    /// Simulated time per step.
    pub tick_ms: u64,
    /// Message latency is drawn between 0 and this.
    pub max_latency_ms: u64,
    /// Tombstones are purged this long after their delete (`None`: the
    /// node's default, a week).
    pub tombstone_horizon_s: Option<u64>,
    /// Adds to every center's builder (a test's own front, say).
    pub build: Option<fn(NodeBuilder) -> NodeBuilder>,
    /// Changes every center's config (a test's own `[api]` limits, say)
    /// before its peers are added.
    pub tune: Option<fn(&mut Config)>,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            centers: 3,
            seed: 1,
            beat_interval_ms: 1000,
            vote_timeout_ms: 2000,
            tick_ms: 1,
            max_latency_ms: 5,
            tombstone_horizon_s: None,
            build: None,
            tune: None,
        }
    }
}

/// What the harness sees of a running center (weak: a kill frees it).
#[derive(Default)]
struct Live {
    center: Weak<Center>,
    mesh: Weak<Mesh>,
}

type Lives = Rc<RefCell<HashMap<String, Live>>>;

/// One stored version as the checks compare it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub origin: String,
    pub version: (u64, u32),
    pub deleted: bool,
    pub body: String,
}

impl Held {
    fn of(r: &Record) -> Held {
        Held {
            origin: r.origin.clone(),
            version: (r.version.wall_ms, r.version.logical),
            deleted: r.deleted,
            body: r.body.to_string(),
        }
    }
}

/// Every version one center stores, by (kind, id).
pub type Snapshot = BTreeMap<(String, String), Held>;

/// A call started with [`World::start_call`]; its answer once it came.
pub type Pending = Rc<RefCell<Option<Result<Reply, String>>>>;

/// A client call, run on the client host.
pub(crate) type Job = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// How long the harness's client waits for an answer. A center answers a
/// write within its vote timeout (2 s here) plus a commit, so 5 s is
/// ample; the node client's own 30 s deadline made every call to a dead or
/// paused center cost 30 s of simulated time.
pub const CALL_DEADLINE_MS: u64 = 5_000;

/// The host every client call runs on.
pub const CLIENT_HOST: &str = "clients";

/// A simulated mesh of real centers.
pub struct World {
    pub(crate) sim: turmoil::Sim<'static>,
    pub ids: Vec<String>,
    lives: Lives,
    clock: Arc<SimClock>,
    /// Each center's gate: shut, the center is paused.
    gates: HashMap<String, Arc<Gate>>,
    /// What this run did, for replay (see [`crate::trace`]).
    pub trace: crate::trace::Trace,
    /// Client calls to start on the client host.
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    /// The CA, every center's key and certificate, and the stores.
    pub(crate) dir: tempfile::TempDir,
}

impl World {
    /// Builds the mesh and starts every center; returns once each serves.
    pub fn new(wc: WorldConfig) -> World {
        align_task_ids();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut sim = turmoil::Builder::new()
            .simulation_duration(Duration::from_secs(24 * 3600))
            .tick_duration(Duration::from_millis(wc.tick_ms))
            .min_message_latency(Duration::ZERO)
            .max_message_latency(Duration::from_millis(wc.max_latency_ms))
            .rng_seed(wc.seed)
            // Held links release their connection attempts at once; a
            // backlog past this panics inside turmoil.
            .tcp_capacity(4096)
            .epoch(UNIX_EPOCH + Duration::from_millis(EPOCH_MS))
            .build();
        let ids: Vec<String> = (1..=wc.centers).map(|i| format!("c{i}")).collect();
        let cfgs = configs(dir.path(), &ids, &wc);
        let lives: Lives = Rc::default();
        let clock = Arc::new(SimClock::default());
        let mut gates = HashMap::new();
        for cfg in cfgs {
            let (lives, clock, name) = (lives.clone(), clock.clone(), cfg.id.clone());
            let build = wc.build;
            let gate = Gate::new();
            gates.insert(name.clone(), gate.clone());
            sim.host(name.as_str(), move || {
                let (cfg, lives, clock, gate) = (cfg.clone(), lives.clone(), clock.clone(), gate.clone());
                async move {
                    let id = cfg.id.clone();
                    let disk = SimDisk::open(&cfg.data_dir)?;
                    let mut builder = NodeBuilder::new(cfg)
                        .store(Arc::new(disk))
                        .front(regmesh_front_agent::AgentFront::new())
                        .clock(clock)
                        .transport(Arc::new(SimNet))
                        .gate(gate);
                    if let Some(b) = build {
                        builder = b(builder);
                    }
                    let running = builder.start().await?;
                    lives.borrow_mut().insert(
                        id,
                        Live {
                            center: Arc::downgrade(&running.center),
                            mesh: running.mesh.as_ref().map(Arc::downgrade).unwrap_or_default(),
                        },
                    );
                    // Serves until the harness kills the host.
                    std::future::pending::<()>().await;
                    drop(running);
                    Ok(())
                }
            });
        }
        // One client host runs every client call (a host per call would
        // stay in turmoil's tables and slow every later step). It is never
        // cut off or frozen.
        let (jobs, mut queued) = tokio::sync::mpsc::unbounded_channel::<Job>();
        sim.client(CLIENT_HOST, async move {
            while let Some(job) = queued.recv().await {
                tokio::task::spawn_local(job);
            }
            Ok(())
        });
        let mut w = World {
            sim,
            ids,
            lives,
            clock,
            gates,
            trace: Default::default(),
            jobs,
            dir,
        };
        let all = w.ids.clone();
        assert!(
            w.run_until(60_000, |w| all.iter().all(|c| w.center(c).is_some())),
            "every center starts"
        );
        w
    }

    /// Simulated time since the start, ms.
    pub fn now_ms(&self) -> u64 {
        self.sim.elapsed().as_millis() as u64
    }

    /// One tick of every host and the network.
    pub fn step(&mut self) {
        self.sim.step().expect("simulation step");
        self.clock.observe_ms(self.sim.since_epoch().as_millis() as u64);
        let mut trace = std::mem::take(&mut self.trace);
        trace.look(self);
        self.trace = trace;
    }

    /// Runs `ms` of simulated time.
    pub fn run_for(&mut self, ms: u64) {
        let end = self.now_ms() + ms;
        while self.now_ms() < end {
            self.step();
        }
    }

    /// Runs until `done` holds (checked every step) or `max_ms` passed;
    /// whether it held.
    pub fn run_until(&mut self, max_ms: u64, mut done: impl FnMut(&World) -> bool) -> bool {
        let end = self.now_ms() + max_ms;
        loop {
            if done(self) {
                return true;
            }
            if self.now_ms() >= end {
                return false;
            }
            self.step();
        }
    }

    /// Starts a client call to center `at`'s API from a client host of its
    /// own (never partitioned); its answer lands in the returned cell.
    pub fn start_call(
        &mut self,
        at: &str,
        method: hyper::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Pending {
        let out: Pending = Rc::default();
        let (cell, url, path) = (out.clone(), format!("http://{at}:{API_PORT}"), path.to_string());
        self.spawn_client(async move {
            let client = Client::new(&url, None)
                .expect("client url")
                .with_transport(Arc::new(SimNet));
            let call = client.request(method, &path, body.as_ref());
            let r = match tokio::time::timeout(Duration::from_millis(CALL_DEADLINE_MS), call).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {CALL_DEADLINE_MS} ms")),
            };
            *cell.borrow_mut() = Some(r);
        });
        out
    }

    /// Starts `job` on the client host (it runs from the next step on).
    pub(crate) fn spawn_client(&mut self, job: impl std::future::Future<Output = ()> + 'static) {
        self.jobs.send(Box::pin(job)).expect("the client host runs");
    }

    /// A client call, run to its answer (at most [`CALL_DEADLINE_MS`]).
    pub fn call(
        &mut self,
        at: &str,
        method: hyper::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Reply, String> {
        let line = format!("{} call {at} {method} {path}", self.now_ms());
        let p = self.start_call(at, method, path, body);
        assert!(self.run_until(120_000, |_| p.borrow().is_some()), "a client call ends");
        let r = p.borrow_mut().take().expect("answered");
        let answer = match &r {
            Ok(reply) => format!("{} {}", reply.status.as_u16(), String::from_utf8_lossy(&reply.body)),
            Err(e) => format!("failed: {e}"),
        };
        self.trace.note(format!("{line} -> {} {answer}", self.now_ms()));
        r
    }

    /// The running center `id`, if it runs.
    pub fn center(&self, id: &str) -> Option<Arc<Center>> {
        self.lives.borrow().get(id).and_then(|l| l.center.upgrade())
    }

    fn mesh(&self, id: &str) -> Option<Arc<Mesh>> {
        self.lives.borrow().get(id).and_then(|l| l.mesh.upgrade())
    }

    /// `of`'s lifecycle state of its peer `peer` (`OPERATIONAL`, …).
    pub fn peer_state(&self, of: &str, peer: &str) -> Option<String> {
        let m = self.mesh(of)?;
        let states = m.peer_states();
        states
            .into_iter()
            .find(|(p, _)| p == peer)
            .map(|(_, s)| s.as_str().to_string())
    }

    /// Every peer's lifecycle state at `of` (nothing if it is down), in
    /// peer order.
    pub fn peer_states(&self, of: &str) -> Vec<(String, String)> {
        let Some(m) = self.mesh(of) else { return Vec::new() };
        let mut out: Vec<(String, String)> = m
            .peer_states()
            .into_iter()
            .map(|(p, s)| (p, s.as_str().to_string()))
            .collect();
        out.sort();
        out
    }

    /// `of`'s own node state (`active`, `inactive`, `sync`).
    pub fn node_state(&self, of: &str) -> Option<String> {
        Some(self.mesh(of)?.node_state().as_str().to_string())
    }

    /// Every version center `of` stores (tombstones included), by (kind, id).
    pub fn records(&self, of: &str) -> Option<Snapshot> {
        let c = self.center(of)?;
        let mut out = BTreeMap::new();
        for origin in c.known_centers() {
            for r in c.origin_after(&origin, 0, usize::MAX).ok()? {
                out.insert((r.kind.clone(), r.id.clone()), Held::of(&r));
            }
        }
        Some(out)
    }

    /// Kills center `id`: its runtime and every task go at once; nothing
    /// queued is committed. Its store directory stays.
    pub fn kill(&mut self, id: &str) {
        self.sim.crash(id);
        self.lives.borrow_mut().remove(id);
        assert!(self.center(id).is_none(), "a killed center holds nothing");
    }

    /// Kills center `id` as a power loss would: on its restart it finds
    /// only what its store had made durable (see [`crate::disk`]).
    pub fn power_loss(&mut self, id: &str) {
        self.kill(id);
        SimDisk::lose_unsynced(&self.dir.path().join(id)).expect("disk image in place");
    }

    /// Starts center `id` again from its store directory; returns once it
    /// serves.
    pub fn restart(&mut self, id: &str) {
        self.lives.borrow_mut().remove(id);
        // A new process is not stopped.
        self.gates[id].open();
        self.sim.bounce(id);
        let id = id.to_string();
        assert!(self.run_until(60_000, |w| w.center(&id).is_some()), "{id} restarts");
    }

    /// Pauses center `id` as SIGSTOP would: none of its tasks runs and none
    /// of its timers fires while simulated time goes on; its network
    /// still takes bytes in (the kernel's buffers). A no-op on a center
    /// already paused.
    pub fn pause(&mut self, id: &str) {
        self.gates[id].shut();
    }

    /// Continues a paused center (SIGCONT): its tasks run again, each
    /// overdue timer firing at once, late.
    pub fn resume(&mut self, id: &str) {
        self.gates[id].open();
    }

    /// Whether center `id` is paused.
    pub fn is_paused(&self, id: &str) -> bool {
        !self.gates[id].is_open()
    }

    /// Cuts `a`–`b` both ways (bytes in flight are dropped).
    pub fn partition(&mut self, a: &str, b: &str) {
        self.sim.partition(a, b);
    }

    /// Cuts `from` → `to` only.
    pub fn partition_oneway(&mut self, from: &str, to: &str) {
        self.sim.partition_oneway(from, to);
    }

    /// Heals `a`–`b` both ways.
    pub fn repair(&mut self, a: &str, b: &str) {
        self.sim.repair(a, b);
    }

    /// Freezes `a`–`b`: bytes are held, not dropped, until [`World::release`].
    pub fn hold(&mut self, a: &str, b: &str) {
        self.sim.hold(a, b);
    }

    /// Unfreezes `a`–`b`, delivering what was held.
    pub fn release(&mut self, a: &str, b: &str) {
        self.sim.release(a, b);
    }

    /// Heals every link.
    pub fn heal_all(&mut self) {
        let ids = self.ids.clone();
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                self.sim.repair(a.as_str(), b.as_str());
                self.sim.release(a.as_str(), b.as_str());
            }
        }
    }
}

/// Task ids are aligned to a multiple of this at the start of each world.
const TASK_ID_ALIGN: u64 = 256;

/// Moves tokio's process-wide task id counter to a multiple of
/// [`TASK_ID_ALIGN`]. A runtime keeps its tasks in lists chosen by task id
/// (id mod 4 in tokio 1.x's current-thread runtime), and a killed center's
/// runtime drops them list by list, so the order in which its sockets close
/// (and the network's latency draws after that) would depend on how many
/// tasks the process ran before this world: a second run of one seed in the
/// same process would not replay.
fn align_task_ids() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime to align task ids");
    rt.block_on(async {
        loop {
            let task = tokio::spawn(async {});
            let id: u64 = task.id().to_string().parse().expect("a task id is a number");
            let _ = task.await;
            if id % TASK_ID_ALIGN == TASK_ID_ALIGN - 1 {
                break;
            }
        }
    });
}

/// The signing key of the `i`th center (from 0), fixed so runs replay.
pub(crate) fn identity(i: usize) -> Identity {
    Identity::from_seed([i as u8 + 1; 32])
}

/// A CA, a key and certificate per center, and each center's config: all
/// peered, beats and votes as `wc` says, listening on fixed ports of its
/// host.
fn configs(dir: &std::path::Path, ids: &[String], wc: &WorldConfig) -> Vec<Config> {
    let ca = regmesh_node::peer::pki::Ca::generate("nodesim CA").expect("CA");
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem).expect("write CA");
    let mut keys = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let identity = identity(i);
        let pem = identity.to_pkcs8_pem().expect("key PEM");
        std::fs::write(dir.join(format!("{id}.key")), &pem).expect("write key");
        std::fs::write(dir.join(format!("{id}.crt")), ca.issue(id, &pem).expect("cert")).expect("write cert");
        keys.push(regmesh_core::sign::key_hex(&identity.verifying_key()));
    }
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let mut cfg = Config::for_test(id, &dir.join(id));
            if let Some(h) = wc.tombstone_horizon_s {
                cfg.leases.tombstone_horizon_s = h;
            }
            cfg.api.listen = format!("127.0.0.1:{API_PORT}").parse().expect("addr");
            if let Some(tune) = wc.tune {
                tune(&mut cfg);
            }
            if ids.len() == 1 {
                // A world of one center runs it standalone: no peer
                // listener, no mesh, no votes.
                return cfg;
            }
            cfg.peer = Some(PeerListenConfig {
                listen: format!("127.0.0.1:{PEER_PORT}").parse().expect("addr"),
                cert: dir.join(format!("{id}.crt")),
                key: dir.join(format!("{id}.key")),
                ca: dir.join("ca.pem"),
                beat_interval_ms: wc.beat_interval_ms,
                clock_skew_s: 30,
                max_body_bytes: 1 << 20,
                vote_timeout_ms: wc.vote_timeout_ms,
                claims: Default::default(),
                protocol_min: regmesh_node::config::default_protocol_min(),
                protocol_max: regmesh_node::config::default_protocol_max(),
            });
            for (j, other) in ids.iter().enumerate() {
                if j == i {
                    continue;
                }
                cfg.peers.push(PeerConfig {
                    id: other.clone(),
                    url: format!("https://{other}:{PEER_PORT}"),
                    kinds: Vec::new(),
                    groups: Vec::new(),
                });
                cfg.centers.push(CenterKey {
                    id: other.clone(),
                    public_key: keys[j].clone(),
                });
            }
            cfg
        })
        .collect()
}
