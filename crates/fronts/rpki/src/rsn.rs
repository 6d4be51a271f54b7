//! A sync node's task receiving, execution and data upload (document 001
//! §3.2): `rpki.fetch` queues a task (at most
//! [`crate::schedule::TASKS_PER_NODE_MAX`] held), a worker downloads its
//! files with the node's own HTTPS client and limits, checks each SHA-256
//! against the task, and keeps the bodies in a content-addressed cache
//! ([`BLOBS_BYTES_MAX`], oldest dropped first) that `rpki.blob` serves as
//! raw bytes by SHA-256 on the node's blob path (no JSON, no base64);
//! `rpki.task` reports progress. Download speed per host is kept for
//! the node's `rpki.node` record. All three messages are answered only for
//! the configured console (the sender is the peer's authenticated id);
//! another peer is refused with the reason and nothing changes.
//!
//! Must never: take a task from a center other than its console, keep a
//! body whose SHA-256 is not the task's, hold more than the cache limit, or
//! run a task past its deadline.

use crate::fetch::{Client, Fetched, Limits};
use crate::schedule::TASKS_PER_NODE_MAX;
use crate::wire::{self, Fetch, Progress, TaskQuery, TaskState};
use bytes::Bytes;
use regmesh_node::messages::{PeerAnswer, PeerBlob, PeerMessage, PeerVerb, PEER_BLOB_BYTES_MAX};
use rpki::rrdp::Hash;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Bytes of downloaded files kept for the console to pull.
pub const BLOBS_BYTES_MAX: u64 = 2 << 30;
/// Finished tasks remembered for `rpki.task`.
pub const TASKS_KEPT_MAX: usize = 1024;
/// Longest deadline a task may ask for, ms.
pub const TASK_WITHIN_MS_MAX: u64 = 60 * 60_000;

#[derive(Default)]
struct Inner {
    tasks: BTreeMap<String, TaskState>,
    finished: VecDeque<String>,
    blobs: BTreeMap<String, Bytes>,
    blob_order: VecDeque<String>,
    blob_bytes: u64,
    /// Host → bytes per second of the last download from it.
    speed_bps: BTreeMap<String, u64>,
    bytes_total: u64,
}

/// The node's task state, shared by its handlers and workers.
#[derive(Clone)]
pub struct Rsn {
    inner: Arc<Mutex<Inner>>,
    client: Client,
    blobs_bytes_max: u64,
    /// The center id of the console, the only sender answered.
    console: Arc<str>,
}

fn parse<T: DeserializeOwned>(mut msg: Value) -> Result<T, PeerAnswer> {
    if let Some(o) = msg.as_object_mut() {
        o.remove("type");
    }
    serde_json::from_value(msg).map_err(|e| PeerAnswer::rejected(format!("bad message: {e}")))
}

impl Rsn {
    /// A sync node that takes tasks from `console` only.
    pub fn new(client: Client, console: &str) -> Rsn {
        Rsn {
            inner: Default::default(),
            client,
            blobs_bytes_max: BLOBS_BYTES_MAX,
            console: console.into(),
        }
    }

    /// The refusal for a sender that is not the console, if it is not.
    fn not_console(&self, from: &str) -> Option<PeerAnswer> {
        (from != &*self.console).then(|| {
            PeerAnswer::rejected(format!(
                "{from} is not this sync node's console ({}); its tasks are refused",
                self.console
            ))
        })
    }

    /// (active, queued) task counts.
    pub fn load(&self) -> (u32, u32) {
        let g = self.inner.lock().expect("rsn lock");
        let count = |p| g.tasks.values().filter(|t| t.progress == p).count() as u32;
        (count(Progress::Running), count(Progress::Queued))
    }

    /// Measured speeds per repository host, bytes per second.
    pub fn speeds(&self) -> BTreeMap<String, u64> {
        self.inner.lock().expect("rsn lock").speed_bps.clone()
    }

    /// Bytes downloaded since start.
    pub fn bytes_total(&self) -> u64 {
        self.inner.lock().expect("rsn lock").bytes_total
    }

    /// The three peer message handlers.
    pub fn messages(&self) -> Vec<PeerMessage> {
        let (a, b, c) = (self.clone(), self.clone(), self.clone());
        vec![
            PeerMessage::new(PeerVerb::Rfi, wire::FETCH, move |from: String, msg: Value| {
                let me = a.clone();
                async move { me.on_fetch(&from, msg) }
            }),
            PeerMessage::new(PeerVerb::Rfi, wire::TASK, move |from: String, msg: Value| {
                let me = b.clone();
                async move { me.not_console(&from).unwrap_or_else(|| me.on_task(msg)) }
            }),
            PeerMessage::blobs(wire::BLOB, move |from: &str, key: &str, offset: u64| {
                c.on_blob(from, key, offset)
            }),
        ]
    }

    fn on_fetch(&self, from: &str, msg: Value) -> PeerAnswer {
        if let Some(refused) = self.not_console(from) {
            tracing::warn!(from, console = %self.console, "task from a center that is not the console refused");
            return refused;
        }
        let f: Fetch = match parse(msg) {
            Ok(f) => f,
            Err(a) => return a,
        };
        if f.files.is_empty() || f.files.len() > wire::TASK_FILES_MAX {
            return PeerAnswer::rejected(format!("a task has 1 to {} files", wire::TASK_FILES_MAX));
        }
        if f.within_ms == 0 || f.within_ms > TASK_WITHIN_MS_MAX {
            return PeerAnswer::rejected(format!("within_ms must be 1 to {TASK_WITHIN_MS_MAX}"));
        }
        let mut files = Vec::new();
        for r in &f.files {
            if let Err(e) = self.client.check_uri(&r.uri) {
                return PeerAnswer::rejected(e.to_string());
            }
            let Ok(h) = r.sha256.parse::<Hash>() else {
                return PeerAnswer::rejected(format!("{}: bad sha256", r.uri));
            };
            if !wire::valid_sha256(&r.sha256) {
                return PeerAnswer::rejected(format!("{}: sha256 must be lowercase hex", r.uri));
            }
            files.push((r.uri.clone(), h, r.sha256.clone()));
        }
        {
            let mut g = self.inner.lock().expect("rsn lock");
            if g.tasks.contains_key(&f.task) {
                return PeerAnswer::accepted();
            }
            let held = g
                .tasks
                .values()
                .filter(|t| matches!(t.progress, Progress::Queued | Progress::Running))
                .count();
            if held >= TASKS_PER_NODE_MAX as usize {
                return PeerAnswer::rejected("task queue full");
            }
            g.tasks.insert(
                f.task.clone(),
                TaskState {
                    progress: Progress::Queued,
                    error: None,
                    bytes: 0,
                    elapsed_ms: 0,
                },
            );
        }
        tracing::info!(task = %f.task, from, notify = %f.notify, files = files.len(), "fetch task queued");
        let me = self.clone();
        tokio::spawn(async move { me.run(f.task, files, f.within_ms).await });
        PeerAnswer::accepted()
    }

    async fn run(&self, task: String, files: Vec<(String, Hash, String)>, within_ms: u64) {
        let started = Instant::now();
        self.set(&task, |t| t.progress = Progress::Running);
        let work = async {
            let mut bytes = 0u64;
            for (uri, hash, hex) in &files {
                let t0 = Instant::now();
                let body = match self
                    .client
                    .get(uri, None, Limits::BULK)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    Fetched::Body { bytes, .. } => bytes,
                    Fetched::NotModified => return Err(format!("{uri}: 304 to an unconditional GET")),
                };
                if !hash.matches(&body) {
                    return Err(format!("{uri}: hash mismatch"));
                }
                bytes += body.len() as u64;
                let ms = t0.elapsed().as_millis().max(1) as u64;
                let host = self.client.check_uri(uri).map(|h| h.0).unwrap_or_default();
                self.keep(hex, body.clone(), &host, body.len() as u64 * 1000 / ms);
                self.set(&task, |t| t.bytes = bytes);
            }
            Ok::<_, String>(bytes)
        };
        let result = tokio::time::timeout(std::time::Duration::from_millis(within_ms), work).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        self.set(&task, |t| {
            t.elapsed_ms = elapsed_ms;
            match &result {
                Ok(Ok(_)) => t.progress = Progress::Done,
                Ok(Err(e)) => {
                    t.progress = Progress::Failed;
                    t.error = Some(e.clone());
                }
                Err(_) => {
                    t.progress = Progress::Failed;
                    t.error = Some(format!("deadline of {within_ms} ms passed"));
                }
            }
        });
        let mut g = self.inner.lock().expect("rsn lock");
        g.finished.push_back(task);
        while g.finished.len() > TASKS_KEPT_MAX {
            if let Some(old) = g.finished.pop_front() {
                g.tasks.remove(&old);
            }
        }
    }

    fn set(&self, task: &str, f: impl FnOnce(&mut TaskState)) {
        if let Some(t) = self.inner.lock().expect("rsn lock").tasks.get_mut(task) {
            f(t);
        }
    }

    fn keep(&self, hex: &str, body: Bytes, host: &str, bps: u64) {
        let mut g = self.inner.lock().expect("rsn lock");
        g.bytes_total += body.len() as u64;
        if !host.is_empty() && (g.speed_bps.contains_key(host) || g.speed_bps.len() < crate::kinds::SPEEDS_MAX) {
            g.speed_bps.insert(host.to_string(), bps);
        }
        if g.blobs.contains_key(hex) {
            return;
        }
        g.blob_bytes += body.len() as u64;
        g.blob_order.push_back(hex.to_string());
        g.blobs.insert(hex.to_string(), body);
        while g.blob_bytes > self.blobs_bytes_max {
            let Some(old) = g.blob_order.pop_front() else { break };
            if let Some(b) = g.blobs.remove(&old) {
                g.blob_bytes -= b.len() as u64;
            }
        }
    }

    fn on_task(&self, msg: Value) -> PeerAnswer {
        let q: TaskQuery = match parse(msg) {
            Ok(q) => q,
            Err(a) => return a,
        };
        match self.inner.lock().expect("rsn lock").tasks.get(&q.task) {
            Some(t) => PeerAnswer::with_data(serde_json::to_value(t).expect("serializes")),
            None => PeerAnswer::rejected("no such task"),
        }
    }

    /// Part of a downloaded file by its SHA-256 (hex), for the console only.
    fn on_blob(&self, from: &str, sha256: &str, offset: u64) -> Result<PeerBlob, String> {
        if let Some(refused) = self.not_console(from) {
            return Err(refused.reason.unwrap_or_default());
        }
        let Some(b) = self.inner.lock().expect("rsn lock").blobs.get(sha256).cloned() else {
            return Err("no such blob".into());
        };
        let start = (offset.min(b.len() as u64)) as usize;
        let end = (start + PEER_BLOB_BYTES_MAX).min(b.len());
        Ok(PeerBlob {
            total: b.len() as u64,
            data: b.slice(start..end),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn ask(rsn: &Rsn, typ: &str, from: &str, msg: Value) -> PeerAnswer {
        let msgs = rsn.messages();
        let m = msgs.iter().find(|m| m.typ == typ).expect("registered");
        m.handler.handle(from.into(), msg).await
    }

    #[tokio::test]
    async fn only_the_console_gives_tasks_reads_progress_or_pulls_blobs() {
        let rsn = Rsn::new(Client::new(&[] as &[&str], true).unwrap(), "c1");
        let task = json!({"type": wire::FETCH, "task": "t1", "notify": "https://localhost:1/n.xml",
            "files": [{"uri": "https://localhost:1/s.xml", "sha256": "ab".repeat(32)}], "within_ms": 1000});
        let a = ask(&rsn, wire::FETCH, "c3", task.clone()).await;
        assert!(!a.accepted);
        let why = a.reason.unwrap();
        assert!(why.contains("c3 is not this sync node's console (c1)"), "{why}");
        assert_eq!(rsn.load(), (0, 0));
        assert!(
            rsn.inner.lock().unwrap().tasks.is_empty(),
            "a refused task changes nothing"
        );
        let probe = json!({"type": wire::TASK, "task": "t1"});
        let a = ask(&rsn, wire::TASK, "c3", probe.clone()).await;
        assert!(!a.accepted && a.reason.unwrap().contains("not this sync node's console"));
        rsn.keep(&"ab".repeat(32), Bytes::from_static(b"x"), "", 1);
        let why = rsn.on_blob("c3", &"ab".repeat(32), 0).unwrap_err();
        assert!(why.contains("not this sync node's console"), "{why}");
        let part = rsn.on_blob("c1", &"ab".repeat(32), 0).unwrap();
        assert_eq!((part.total, &part.data[..]), (1, &b"x"[..]));

        // The console's own task is taken, and only it may read its state.
        assert!(ask(&rsn, wire::FETCH, "c1", task).await.accepted);
        assert!(ask(&rsn, wire::TASK, "c1", probe.clone()).await.accepted);
        assert!(!ask(&rsn, wire::TASK, "c3", probe).await.accepted);
    }
}
