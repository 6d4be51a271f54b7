//! The console's side of a task (document 001 §3.1.3–3.1.4): send
//! `rpki.fetch` to the chosen sync node, poll `rpki.task` until it is done,
//! failed or past its deadline, then pull each file by its SHA-256 as raw
//! bytes on the blob path (`rpki.blob`) and check that hash itself. A node that returns bytes whose
//! hash is wrong is reported as lying ([`Remote::lied`]); a node that does
//! not answer one message within `stall_ms` (stopped, or its link frozen)
//! as stalled ([`Remote::stalled`]), after which this download fails at
//! once so the console can give the task to another node.
//!
//! Must never: accept a file whose SHA-256 is not the notification's, wait
//! past the task's deadline or more than `stall_ms` for one answer, or pull
//! more than the file's announced size.

use crate::fetch::Limits;
use crate::rrdp::{Download, RrdpError};
use crate::wire::{self, FileRef, Progress, TaskQuery, TaskState};
use bytes::{Bytes, BytesMut};
use regmesh_node::messages::PeerVerb;
use regmesh_node::NodeHandle;
use rpki::rrdp::Hash;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Time between two `rpki.task` polls.
pub const POLL_MS: u64 = 100;

/// A download through sync node `node_id`.
pub struct Remote<'a> {
    pub node: &'a NodeHandle,
    pub node_id: String,
    pub task: String,
    pub notify: String,
    pub within_ms: u64,
    /// Longest wait for one answer of the node, ms.
    pub stall_ms: u64,
    lied: AtomicBool,
    used: AtomicBool,
    stalled: AtomicBool,
    /// Downloads sent so far (a delta path that fails is followed by the
    /// snapshot: each is its own task at the node).
    sent: AtomicU32,
}

impl<'a> Remote<'a> {
    pub fn new(node: &'a NodeHandle, node_id: &str, task: &str, notify: &str, within_ms: u64, stall_ms: u64) -> Self {
        Remote {
            node,
            node_id: node_id.into(),
            task: task.into(),
            notify: notify.into(),
            within_ms,
            stall_ms,
            lied: AtomicBool::new(false),
            used: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            sent: AtomicU32::new(0),
        }
    }

    /// Whether the node failed to answer a message within `stall_ms`, or
    /// could not be reached at all.
    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    /// Whether a task was sent (the sync had files to download).
    pub fn used(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether the node returned a file whose SHA-256 was wrong.
    pub fn lied(&self) -> bool {
        self.lied.load(Ordering::Relaxed)
    }

    fn err(&self, why: impl Into<String>) -> RrdpError {
        RrdpError::Invalid {
            uri: self.notify.clone(),
            why: format!("sync node {}: {}", self.node_id, why.into()),
        }
    }

    /// Sends one RFI and waits at most `stall_ms` for its answer; no
    /// answer (or no connection) marks the node stalled.
    async fn call(
        &self,
        typ: &str,
        fields: serde_json::Value,
    ) -> Result<regmesh_node::messages::PeerAnswer, RrdpError> {
        let send = self.node.send(&self.node_id, PeerVerb::Rfi, typ, fields);
        match tokio::time::timeout(Duration::from_millis(self.stall_ms), send).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => {
                self.stalled.store(true, Ordering::Relaxed);
                Err(self.err(e.to_string()))
            }
            Err(_) => {
                self.stalled.store(true, Ordering::Relaxed);
                Err(self.err(format!("{typ}: no answer within {} ms", self.stall_ms)))
            }
        }
    }

    async fn rfi<T: serde::de::DeserializeOwned>(&self, typ: &str, fields: serde_json::Value) -> Result<T, RrdpError> {
        let a = self.call(typ, fields).await?;
        if !a.accepted {
            return Err(self.err(format!("{typ} refused: {}", a.reason.unwrap_or_default())));
        }
        serde_json::from_value(a.data.unwrap_or_default()).map_err(|e| self.err(format!("{typ} answer: {e}")))
    }

    async fn pull(&self, hex: &str, hash: Hash, deadline: Instant) -> Result<Bytes, RrdpError> {
        let mut buf = BytesMut::new();
        let mut total = None;
        loop {
            if Instant::now() > deadline {
                return Err(self.err("deadline passed while pulling"));
            }
            let get = self.node.fetch_blob(&self.node_id, wire::BLOB, hex, buf.len() as u64);
            let c = match tokio::time::timeout(Duration::from_millis(self.stall_ms), get).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    if matches!(e, regmesh_node::handle::SendError::Call { .. }) {
                        self.stalled.store(true, Ordering::Relaxed);
                    }
                    return Err(self.err(format!("blob {hex}: {e}")));
                }
                Err(_) => {
                    self.stalled.store(true, Ordering::Relaxed);
                    return Err(self.err(format!("blob {hex}: no answer within {} ms", self.stall_ms)));
                }
            };
            let t = *total.get_or_insert(c.total);
            if c.total != t || t > crate::fetch::Limits::BULK.body_bytes_max {
                return Err(self.err("blob size changed or over the limit"));
            }
            let data = c.data;
            if buf.len() as u64 + data.len() as u64 > t {
                return Err(self.err("blob chunk too long"));
            }
            if data.is_empty() && (buf.len() as u64) < t {
                return Err(self.err("empty chunk before the end"));
            }
            buf.extend_from_slice(&data);
            if buf.len() as u64 == t {
                break;
            }
        }
        let b = buf.freeze();
        if !hash.matches(&b) {
            self.lied.store(true, Ordering::Relaxed);
            return Err(self.err(format!("returned {hex} with another hash")));
        }
        Ok(b)
    }
}

impl Download for Remote<'_> {
    async fn download(&self, files: &[(String, Hash)], _limits: Limits) -> Result<Vec<Bytes>, RrdpError> {
        if self.stalled() || self.lied() {
            return Err(self.err("given up on for this task"));
        }
        let deadline = Instant::now() + Duration::from_millis(self.within_ms);
        self.used.store(true, Ordering::Relaxed);
        let task = match self.sent.fetch_add(1, Ordering::Relaxed) {
            0 => self.task.clone(),
            n => format!("{}.{n}", self.task),
        };
        crate::console::write_task(
            self.node,
            &self.node_id,
            &self.notify,
            self.within_ms,
            crate::kinds::TaskState::Assigned,
        )
        .await;
        let refs: Vec<FileRef> = files
            .iter()
            .map(|(u, h)| FileRef {
                uri: u.clone(),
                sha256: h.to_string(),
            })
            .collect();
        let fetch = wire::Fetch {
            task: task.clone(),
            notify: self.notify.clone(),
            files: refs.clone(),
            within_ms: self.within_ms,
        };
        let a = self
            .call(wire::FETCH, serde_json::to_value(fetch).expect("serializes"))
            .await?;
        if !a.accepted {
            return Err(self.err(format!("task refused: {}", a.reason.unwrap_or_default())));
        }
        loop {
            if Instant::now() > deadline {
                return Err(self.err("task deadline passed"));
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
            let q = TaskQuery { task: task.clone() };
            let st: TaskState = self
                .rfi(wire::TASK, serde_json::to_value(q).expect("serializes"))
                .await?;
            match st.progress {
                Progress::Done => break,
                Progress::Failed => return Err(self.err(st.error.unwrap_or_else(|| "failed".into()))),
                Progress::Queued | Progress::Running => {}
            }
        }
        let mut out = Vec::with_capacity(files.len());
        for (r, (_, h)) in refs.iter().zip(files) {
            out.push(self.pull(&r.sha256, *h, deadline).await?);
        }
        Ok(out)
    }

    fn who(&self) -> String {
        self.node_id.clone()
    }
}
