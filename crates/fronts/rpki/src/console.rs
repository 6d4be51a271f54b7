//! The console (RCN): one validation cycle every `refresh_s` — trust
//! anchor certificates from the TALs, every known repository refreshed by
//! RRDP, then walks until no CA names a repository not yet fetched this
//! cycle; the VRP set is published to the API and to RTR, and each
//! repository's state is written as an `rpki.repo` record.
//!
//! Owns the repositories' last states, the last good objects per
//! publication point, and the status the API shows. Must never: publish a
//! set from a cycle that has not finished, or fetch one repository twice in
//! a cycle.

use crate::fetch::{Client, Fetched, Limits};
use crate::kinds::{repo_id, task_id, NodeBody, RepoBody, TaskBody, TaskState, NODE, REPO, TASK};
use crate::remote::Remote;
use crate::rrdp::{self, Local, RepoState, RrdpLimits};
use crate::rtr::RtrSource;
use crate::schedule::{NodeView, RepoView, Scheduler};
use crate::validate::{self, PpObjects, PpStatus, WalkResult, Walker};
use crate::vrps::VrpSet;
use bytes::Bytes;
use regmesh_node::NodeHandle;
use rpki::repository::tal::{Tal, TalUri};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// Repositories fetched at once.
pub const FETCH_PARALLEL_MAX: usize = 8;
/// Longest TA certificate, bytes.
pub const TA_CERT_BYTES_MAX: u64 = 1 << 20;
/// Walk-and-fetch rounds in one cycle (one per level of new repositories).
pub const ROUNDS_MAX: usize = validate::DEPTH_MAX + 1;
/// Most repositories the console tracks.
pub const REPOS_MAX: usize = 100_000;
/// Default time a sync node has for one task, ms.
pub const TASK_WITHIN_MS: u64 = 10 * 60_000;
/// Sync nodes one repository is given to in one fetch before the console
/// fetches it itself.
pub const ATTEMPTS_MAX: usize = 3;

/// Writes a task's record: one per repository (its latest task), so the
/// records stay bounded. Best effort: the record is for operators and the
/// mesh; the task itself travels as `rpki.fetch`.
pub(crate) async fn write_task(node: &NodeHandle, rsn: &str, notify: &str, within_ms: u64, state: TaskState) {
    let Some(kind) = node.kind(TASK) else { return };
    let body = TaskBody {
        node: rsn.into(),
        notify: notify.into(),
        session: None,
        serial: None,
        deadline_ms: now_ms() + within_ms,
        state,
    };
    let id = format!("t{}", &repo_id(notify)[1..]);
    match kind.prepare(&id, serde_json::to_value(&body).expect("serializes")) {
        Ok(p) => {
            if let Err(e) = node.put(TASK, &id, p, None).await {
                tracing::debug!(task = %id, error = %e, "task record not written");
            }
        }
        Err(e) => tracing::debug!(task = %id, error = %e, "task record refused"),
    }
}

/// A repository's status, as `/v1/rpki/status` shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RepoStatus {
    pub notify: String,
    pub session: String,
    pub serial: u64,
    pub last_fetch_ms: u64,
    pub last_success_ms: Option<u64>,
    pub last_error: Option<String>,
    pub how: String,
    pub bytes: u64,
    pub duration_ms: u64,
    pub by: String,
    pub objects: usize,
}

/// What the API and RTR read; written once per cycle.
#[derive(Debug, Default)]
pub struct Published {
    pub vrps: Arc<VrpSet>,
    pub aspas: Arc<crate::aspas::AspaSet>,
    pub cycles: u64,
    pub last_cycle_ms: Option<u64>,
    pub last_cycle_duration_ms: u64,
    pub repos: BTreeMap<String, RepoStatus>,
    pub pps_valid: usize,
    pub pps_last_good: usize,
    pub pps_failed: usize,
    pub rsync_only: usize,
    pub ta_errors: BTreeMap<String, String>,
    /// Sync nodes marked for returning wrong hashes.
    pub marked: Vec<String>,
    /// Sync nodes avoided after a stall until they write a newer record.
    pub avoided: Vec<String>,
}

/// The console's shared output.
#[derive(Clone, Default)]
pub struct Shared {
    pub published: Arc<RwLock<Published>>,
}

/// A trust anchor: its TAL and its last valid certificate.
struct Anchor {
    name: String,
    tal: Tal,
    cert: Option<Bytes>,
}

/// The console's state across cycles.
pub struct Console {
    anchors: Vec<Anchor>,
    client: Client,
    limits: RrdpLimits,
    repos: BTreeMap<String, Arc<RepoState>>,
    last_good: BTreeMap<String, PpObjects>,
    status: BTreeMap<String, RepoStatus>,
    pub shared: Shared,
    pub rtr: RtrSource,
    center: String,
    scheduler: Scheduler,
    /// Sync nodes that returned wrong hashes: never scheduled again.
    marked: BTreeSet<String>,
    /// Sync nodes that stalled, with the `seq` of their `rpki.node` record
    /// then: avoided until a record with a higher one arrives.
    suspects: BTreeMap<String, u64>,
    /// The `seq` of each sync node's record last seen.
    node_seq: BTreeMap<String, u64>,
    repo_ta: BTreeMap<String, String>,
    tasks: u64,
    /// How long a sync node has for one task, ms.
    pub task_within_ms: u64,
    /// How long the console waits for one answer of a sync node before it
    /// gives the task to another, ms.
    pub task_stall_ms: u64,
    pub metrics: Option<crate::metrics::ConsoleMetrics>,
    /// The state on disk, when `state_dir` is set.
    persist: Option<crate::persist::Persist>,
}

/// A TAL file could not be read. The front did not start.
#[derive(Debug, thiserror::Error)]
#[error("TAL {path}: {why}")]
pub struct TalError {
    pub path: String,
    pub why: String,
}

/// Reads the TAL files; an entry that is a folder stands for every `*.tal`
/// in it (in name order). Each TAL's name is its file stem.
pub fn read_tals(paths: &[PathBuf]) -> Result<Vec<Tal>, TalError> {
    let mut files = Vec::new();
    for p in paths {
        let err = |why: String| TalError {
            path: p.display().to_string(),
            why,
        };
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| err(e.to_string()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "tal"))
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(p.clone());
        }
        if files.len() > crate::config::TALS_MAX {
            return Err(err(format!("more than {} TAL files", crate::config::TALS_MAX)));
        }
    }
    files
        .iter()
        .map(|p| {
            let err = |why: String| TalError {
                path: p.display().to_string(),
                why,
            };
            let name = p
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or_else(|| err("no file name".into()))?
                .to_string();
            let mut f = std::fs::File::open(p).map_err(|e| err(e.to_string()))?;
            Tal::read_named(name, &mut f).map_err(|e| err(e.to_string()))
        })
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The assignments of one [`Console::fetch`], shared by its concurrent
/// jobs: the scheduler, the nodes' views with the tasks given so far, and
/// the nodes found lying or stalled.
struct Board<'a> {
    scheduler: &'a mut Scheduler,
    views: Vec<NodeView>,
    tasks: &'a mut u64,
    lied: BTreeSet<String>,
    stalled: BTreeSet<String>,
}

impl Board<'_> {
    /// A node for `repo` other than those in `tried` and those found
    /// lying or stalled, with a new task id; it counts as queued there.
    fn pick(&mut self, repo: &RepoView, notify: &str, tried: &[String]) -> Option<(String, String)> {
        let open: Vec<NodeView> = self
            .views
            .iter()
            .filter(|v| !tried.contains(&v.id) && !self.lied.contains(&v.id) && !self.stalled.contains(&v.id))
            .cloned()
            .collect();
        let id = self.scheduler.pick(repo, &open)?;
        if let Some(v) = self.views.iter_mut().find(|v| v.id == id) {
            v.queued += 1;
        }
        *self.tasks += 1;
        Some((id.clone(), task_id(notify, &id, *self.tasks)))
    }

    /// The task on `id` ended; what it showed of the node is kept.
    fn release(&mut self, id: &str, remote: &Remote<'_>) {
        if let Some(v) = self.views.iter_mut().find(|v| v.id == id) {
            v.queued = v.queued.saturating_sub(1);
        }
        if remote.lied() {
            self.lied.insert(id.to_string());
        } else if remote.stalled() {
            self.stalled.insert(id.to_string());
        }
    }
}

impl Console {
    pub fn new(tals: Vec<Tal>, client: Client, limits: RrdpLimits, rtr: RtrSource, center: &str) -> Console {
        Console::with_scheduler(
            tals,
            client,
            limits,
            rtr,
            center,
            Scheduler::new(crate::schedule::Algorithm::Sequential, 1, &[]),
        )
    }

    /// With a scheduler for sync nodes (used when the console has a node
    /// handle and sync nodes publish `rpki.node` records).
    pub fn with_scheduler(
        tals: Vec<Tal>,
        client: Client,
        limits: RrdpLimits,
        rtr: RtrSource,
        center: &str,
        scheduler: Scheduler,
    ) -> Console {
        Console {
            anchors: tals
                .into_iter()
                .map(|tal| Anchor {
                    name: tal.info().name().to_string(),
                    tal,
                    cert: None,
                })
                .collect(),
            client,
            limits,
            repos: BTreeMap::new(),
            last_good: BTreeMap::new(),
            status: BTreeMap::new(),
            shared: Shared::default(),
            rtr,
            center: center.into(),
            scheduler,
            marked: BTreeSet::new(),
            suspects: BTreeMap::new(),
            node_seq: BTreeMap::new(),
            repo_ta: BTreeMap::new(),
            tasks: 0,
            task_within_ms: TASK_WITHIN_MS,
            task_stall_ms: crate::config::TASK_STALL_MS_DEFAULT,
            metrics: None,
            persist: None,
        }
    }

    /// Sync nodes that may take tasks now: live `rpki.node` records of
    /// role sync, not marked, and not stalled since their last record.
    fn sync_nodes(&mut self, node: &NodeHandle) -> Vec<NodeView> {
        let q = regmesh_node::handle::ListQuery {
            limit: Some(crate::sync::NODES_LISTED_MAX.min(node.limits().list_limit_max)),
            ..Default::default()
        };
        let Ok(page) = node.list(NODE, &q) else {
            return Vec::new();
        };
        self.node_seq.clear();
        for r in &page.records {
            self.node_seq.insert(r.id.clone(), r.seq);
        }
        let node_seq = &self.node_seq;
        self.suspects
            .retain(|id, seq| node_seq.get(id).is_some_and(|s| s <= seq));
        page.records
            .iter()
            .filter(|r| !node.is_stale(r) && r.id != self.center && !self.suspects.contains_key(&r.id))
            .filter_map(|r| {
                let b: NodeBody = serde_json::from_str(&r.body).ok()?;
                (b.role == crate::config::Role::Sync && !b.expired).then(|| NodeView {
                    id: r.id.clone(),
                    region: b.region,
                    cpu_permille: b.cpu_permille,
                    mem_permille: b.mem_permille,
                    active: b.active,
                    queued: b.queued,
                    speed_bps: b.speed_bps,
                    marked: self.marked.contains(&r.id),
                })
            })
            .collect()
    }

    /// Keeps the state in `dir` from now on, starting from what is there:
    /// repositories (so the next cycle fetches only what changed), last
    /// good objects, marked nodes, and each TAL's last valid trust anchor
    /// certificate — used only if it still carries the TAL's key and is
    /// valid now (the walk checks it again every cycle).
    pub fn restore(&mut self, dir: &std::path::Path) -> Result<usize, crate::persist::PersistError> {
        let mut p = crate::persist::Persist::open(dir)?;
        for a in &mut self.anchors {
            let loaded = p.load_ta(&crate::persist::ta_key(&a.tal));
            match loaded.map(|der| der.map(|d| (validate::trust_anchor(&a.tal, d.clone()), d))) {
                Ok(Some((Ok(_), der))) => {
                    tracing::info!(tal = %a.name, "saved trust anchor certificate loaded");
                    a.cert = Some(der);
                }
                Ok(Some((Err(e), _))) => {
                    tracing::warn!(tal = %a.name, error = %e, "saved trust anchor certificate refused")
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(tal = %a.name, error = %e, "saved trust anchor certificate not read"),
            }
        }
        let loaded = p.load();
        let n = loaded.repos.len();
        tracing::info!(
            repositories = n,
            dropped = loaded.dropped,
            marked = loaded.marked.len(),
            "console state loaded"
        );
        self.repos = loaded.repos;
        self.last_good = loaded.last_good;
        self.marked = loaded.marked;
        self.persist = Some(p);
        Ok(n)
    }

    /// Writes what changed to the state folder, off the async threads. A
    /// failure is logged; the state in memory is unaffected.
    async fn save(&mut self) {
        let Some(mut p) = self.persist.take() else { return };
        let (repos, last_good, marked) = (self.repos.clone(), self.last_good.clone(), self.marked.clone());
        let tas: BTreeMap<String, Bytes> = self
            .anchors
            .iter()
            .filter_map(|a| Some((crate::persist::ta_key(&a.tal), a.cert.clone()?)))
            .collect();
        let done = tokio::task::spawn_blocking(move || {
            let r = p.save(&repos, &last_good, &marked, &tas);
            (p, r)
        })
        .await;
        match done {
            Ok((p, r)) => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "console state not saved");
                }
                self.persist = Some(p);
            }
            Err(e) => tracing::error!(error = %e, "console state saver failed; state kept in memory only"),
        }
    }

    /// Nodes marked for wrong hashes.
    pub fn marked(&self) -> &BTreeSet<String> {
        &self.marked
    }

    /// Fetches each TA certificate (first HTTPS URI that answers with one
    /// that validates); keeps the last good one when none does.
    async fn refresh_anchors(&mut self) -> BTreeMap<String, String> {
        let mut errors = BTreeMap::new();
        for a in &mut self.anchors {
            let mut last_err = String::from("the TAL has no https:// URI (rsync is out of scope)");
            for u in a.tal.uris() {
                let TalUri::Https(u) = u else { continue };
                let limits = Limits {
                    body_bytes_max: TA_CERT_BYTES_MAX,
                    ..Limits::NOTIFICATION
                };
                match self.client.get(u.as_str(), None, limits).await {
                    Ok(Fetched::Body { bytes, .. }) => match validate::trust_anchor(&a.tal, bytes.clone()) {
                        Ok(_) => {
                            a.cert = Some(bytes);
                            last_err.clear();
                            break;
                        }
                        Err(e) => last_err = format!("{u}: {e}"),
                    },
                    Ok(Fetched::NotModified) => {}
                    Err(e) => last_err = e.to_string(),
                }
            }
            if !last_err.is_empty() {
                tracing::warn!(tal = %a.name, error = %last_err, "trust anchor certificate not refreshed");
                errors.insert(a.name.clone(), last_err);
            }
        }
        errors
    }

    /// Walks every trust anchor over the repositories held now.
    fn walk(&mut self) -> WalkResult {
        let mut out = WalkResult::default();
        for a in &self.anchors {
            let Some(der) = &a.cert else { continue };
            match validate::trust_anchor(&a.tal, der.clone()) {
                Ok(ta) => Walker::new(&self.repos, &mut self.last_good, &a.name, &mut out).walk(ta),
                Err(e) => tracing::warn!(tal = %a.name, error = %e, "trust anchor no longer valid"),
            }
        }
        out
    }

    /// Syncs `notifies` concurrently (at most [`FETCH_PARALLEL_MAX`] at
    /// once): each through the sync node the scheduler picks (one task per
    /// repository), or locally when none is available. A task that fails,
    /// stalls or returns a wrong hash goes to another node the scheduler
    /// picks (at most [`ATTEMPTS_MAX`] nodes), then to the console itself.
    /// A node that lied is marked for good; one that stalled is avoided
    /// until it writes a newer `rpki.node` record.
    async fn fetch(&mut self, notifies: Vec<String>, node: Option<&NodeHandle>) {
        use futures_util::stream::{self, StreamExt};
        let views = node.map(|n| self.sync_nodes(n)).unwrap_or_default();
        let shared = std::sync::Mutex::new(Board {
            scheduler: &mut self.scheduler,
            views,
            tasks: &mut self.tasks,
            lied: BTreeSet::new(),
            stalled: BTreeSet::new(),
        });
        let jobs: Vec<_> = notifies
            .into_iter()
            .map(|n| {
                let host = self.client.check_uri(&n).map(|h| h.0).unwrap_or_default();
                let region = self
                    .repo_ta
                    .get(&n)
                    .filter(|t| crate::schedule::REGIONS.contains(&t.as_str()))
                    .cloned();
                let held = self.repos.get(&n).cloned();
                (n, RepoView { host, region }, held)
            })
            .collect();
        let client = &self.client;
        let limits = self.limits;
        let (within_ms, stall_ms) = (self.task_within_ms, self.task_stall_ms);
        let metrics = &self.metrics;
        let board = &shared;
        let results: Vec<_> = stream::iter(jobs)
            .map(|(n, repo, held)| async move {
                let mut tried = Vec::new();
                while let (Some(node), true) = (node, tried.len() < ATTEMPTS_MAX) {
                    let Some((id, task)) = board.lock().expect("board lock").pick(&repo, &n, &tried) else {
                        break;
                    };
                    tried.push(id.clone());
                    let remote = Remote::new(node, &id, &task, &n, within_ms, stall_ms);
                    let r = rrdp::sync(client, &remote, &n, held.clone(), limits).await;
                    board.lock().expect("board lock").release(&id, &remote);
                    if !remote.used() {
                        // The console's own notification fetch decided it.
                        return (n, r, "local".to_string());
                    }
                    let state = match (&r, remote.stalled()) {
                        (Ok(_), _) => TaskState::Done,
                        (Err(_), true) => TaskState::Stalled,
                        (Err(_), false) => TaskState::Failed,
                    };
                    if let Some(m) = metrics {
                        match state {
                            TaskState::Done => m.tasks_done.add(1),
                            TaskState::Stalled => m.tasks_stalled.add(1),
                            _ => m.tasks_failed.add(1),
                        }
                    }
                    write_task(node, &id, &n, within_ms, state).await;
                    match r {
                        Ok(ok) => return (n, Ok(ok), id),
                        Err(e) => {
                            if let Some(m) = metrics {
                                m.tasks_reassigned.add(1);
                            }
                            tracing::info!(notify = %n, node = %id, error = %e, "task failed; giving it to another node");
                        }
                    }
                }
                let r = rrdp::sync(client, &Local(client), &n, held, limits).await;
                (n, r, "local".into())
            })
            .buffer_unordered(FETCH_PARALLEL_MAX)
            .collect()
            .await;
        let Board { lied, stalled, .. } = shared.into_inner().expect("board lock");
        for id in lied {
            tracing::warn!(node = %id, "sync node returned a wrong hash; marked");
            self.marked.insert(id);
        }
        for id in stalled {
            let seq = self.node_seq.get(&id).copied().unwrap_or(0);
            tracing::warn!(node = %id, "sync node stalled; avoided until it writes a newer record");
            self.suspects.insert(id, seq);
        }
        let now = now_ms();
        for (n, r, by) in results {
            let st = self.status.entry(n.clone()).or_default();
            st.notify = n.clone();
            st.last_fetch_ms = now;
            st.by = if by == "local" { self.center.clone() } else { by };
            match r {
                Ok((state, report)) => {
                    st.session = state.session.clone();
                    st.serial = state.serial;
                    st.last_success_ms = Some(now);
                    st.last_error = report
                        .fallback
                        .clone()
                        .map(|f| format!("fell back to the snapshot: {f}"));
                    st.how = report.how.into();
                    st.bytes = report.bytes;
                    st.duration_ms = report.elapsed_ms;
                    if let Some(m) = &self.metrics {
                        m.fetched_bytes.add(report.bytes);
                    }
                    st.objects = state.objects.len();
                    if self.repos.len() < REPOS_MAX || self.repos.contains_key(&n) {
                        self.repos.insert(n, state);
                    }
                }
                Err(e) => {
                    tracing::info!(notify = %n, error = %e, "repository fetch failed; its last state stays");
                    st.last_error = Some(e.to_string());
                    st.how = "failed".into();
                }
            }
        }
    }

    /// One full cycle; publishes the result.
    pub async fn cycle(&mut self, node: Option<&NodeHandle>) {
        let started = std::time::Instant::now();
        let ta_errors = self.refresh_anchors().await;
        let mut tried: BTreeSet<String> = self.repos.keys().cloned().collect();
        self.fetch(tried.iter().cloned().collect(), node).await;
        self.save().await;
        let mut result = self.walk();
        self.repo_ta.append(&mut result.repo_ta);
        for _ in 0..ROUNDS_MAX {
            let new: Vec<String> = result.wanted.difference(&tried).cloned().collect();
            if new.is_empty() {
                break;
            }
            tried.extend(new.iter().cloned());
            self.fetch(new, node).await;
            self.save().await;
            result = self.walk();
            self.repo_ta.append(&mut result.repo_ta);
        }
        // Forget last-good points no CA names any more.
        self.last_good.retain(|mft, _| result.pps.contains_key(mft));
        self.save().await;
        let count = |f: fn(&PpStatus) -> bool| result.pps.values().filter(|s| f(s)).count();
        let vrps = Arc::new(std::mem::take(&mut result.vrps));
        self.rtr.publish(&vrps);
        {
            let mut p = self.shared.published.write().expect("published lock");
            p.vrps = vrps;
            p.aspas = Arc::new(std::mem::take(&mut result.aspas));
            p.cycles += 1;
            p.last_cycle_ms = Some(now_ms());
            p.last_cycle_duration_ms = started.elapsed().as_millis() as u64;
            p.repos = self.status.clone();
            p.pps_valid = count(|s| matches!(s, PpStatus::Valid { .. }));
            p.pps_last_good = count(|s| matches!(s, PpStatus::LastGood { .. }));
            p.pps_failed = count(|s| matches!(s, PpStatus::Failed { .. } | PpStatus::Missing { .. }));
            p.rsync_only = result.rsync_only;
            p.ta_errors = ta_errors;
            p.marked = self.marked.iter().cloned().collect();
            p.avoided = self.suspects.keys().cloned().collect();
        }
        if let Some(m) = &self.metrics {
            let p = self.shared.published.read().expect("published lock");
            m.vrps.set(p.vrps.len() as u64);
            m.cycles.add(1);
            m.cycle_duration_ms.set(p.last_cycle_duration_ms);
            let failed = self.status.values().filter(|s| s.how == "failed").count() as u64;
            m.repos_failed.set(failed);
            m.repos_ok.set(self.status.len() as u64 - failed);
            m.nodes_marked.set(self.marked.len() as u64);
        }
        if let Some(node) = node {
            self.write_records(node).await;
        }
    }

    /// Writes each repository's state as an `rpki.repo` record (once per
    /// cycle: its fetch time changes every cycle).
    async fn write_records(&self, node: &NodeHandle) {
        let Some(kind) = node.kind(REPO) else { return };
        for st in self.status.values() {
            let body = RepoBody {
                notify: st.notify.clone(),
                session: st.session.clone(),
                serial: st.serial,
                last_fetch_ms: st.last_fetch_ms,
                last_success_ms: st.last_success_ms,
                last_error: st.last_error.clone(),
                bytes: st.bytes,
                duration_ms: st.duration_ms,
                by: st.by.clone(),
            };
            let id = repo_id(&st.notify);
            let value = serde_json::to_value(&body).expect("a body serializes");
            let prepared = match kind.prepare(&id, value) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(notify = %st.notify, error = %e, "repository state not recorded");
                    continue;
                }
            };
            if let Err(e) = node.put(REPO, &id, prepared, None).await {
                tracing::info!(notify = %st.notify, error = %e, "repository state not recorded");
            }
        }
    }
}
