//! Anti-entropy in the mesh runtime: an executor of part
//! `regmesh_proto::mesh::pulls`. It feeds the part what beats decide (a
//! pull, a digest repair), the answers of page calls and the results of
//! the commands it emitted, and executes those commands: page calls over
//! TLS bounded by the part's timeout, merges, resync drops, marks bounded
//! by ceilings. It also serves peers' pulls with proto's `serve_page`
//! (digests are compared by the link part, `beats.rs`). Must never decide what to pull, how
//! far a page covers, when a pull ends or what a resync drops (the part
//! does), nor serve a record the asking peer's policy hides.

use super::{Mesh, Peer};
use crate::center::{now_ms, ReadError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hyper::{Method, StatusCode};
use regmesh_core::codec;
use regmesh_core::Record;
use regmesh_proto::mesh::pulls::{self as part, Command, PullEnd, Pulls, Replica, PULL_PAGE_RECORDS_MAX};
use regmesh_proto::policy::ExportPolicy;
use regmesh_proto::wire::pull::{PullPage, PullRequest};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The part's view of this center's replica and marks.
pub(super) struct View<'a>(pub(super) &'a Mesh);

impl Replica for View<'_> {
    fn mark(&self, origin: &str) -> u64 {
        self.0.mark(origin)
    }
    fn purged_through(&self, origin: &str) -> u64 {
        self.0.center.purged_through(origin)
    }
    fn holds(&self, kind: &str, id: &str) -> bool {
        matches!(self.0.center.get_held(kind, id), Ok(Some(_)))
    }
    fn origin_live(&self, origin: &str) -> Vec<(String, String, u64)> {
        self.0.center.origin_live(origin)
    }
    fn still_sendable(&self, origin: &str, kind: &str, id: &str, seq: u64, policy: &ExportPolicy) -> bool {
        matches!(self.0.center.get_held(kind, id),
            Ok(Some(r)) if r.origin == origin && r.seq == seq && !r.deleted && self.0.visible_to(policy, &r))
    }
    fn knows_origin(&self, origin: &str) -> bool {
        self.0.center.key_of(origin).is_some()
    }
}

/// A pull could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServePullError {
    /// The caller is not a configured peer. Nothing changed.
    #[error("{0:?} is not a peer")]
    NotAPeer(String),
    /// Reading the origin's records failed. Nothing changed.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// A record item of a page or sync message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("more than {0} records in one message")]
    TooMany(usize),
    #[error("records[{0}] is not base64url")]
    Base64(usize),
    #[error("records[{0}]: {1}")]
    Record(usize, String),
}

/// Decodes the base64url items of a page or sync message, at most
/// [`PULL_PAGE_RECORDS_MAX`].
pub(super) fn decode_items(items: Vec<String>) -> Result<Vec<Record>, DecodeError> {
    if items.len() > PULL_PAGE_RECORDS_MAX {
        return Err(DecodeError::TooMany(PULL_PAGE_RECORDS_MAX));
    }
    items.iter().enumerate().map(|(i, s)| decode_item(i, s)).collect()
}

/// Decodes item `i` of a message: base64url of a signed record.
fn decode_item(i: usize, s: &str) -> Result<Record, DecodeError> {
    let b = B64.decode(s).map_err(|_| DecodeError::Base64(i))?;
    codec::decode(&b).map_err(|e| DecodeError::Record(i, e.to_string()))
}

/// A page call's outcome, fed back to the part.
enum PageResult {
    Page(PullPage<Record>),
    Failed,
    TimedOut,
}

impl Mesh {
    /// Runs `f` on the part with the replica's view, then executes what it
    /// asked for (in a task of its own if it has to wait on anything).
    pub(super) fn with_pulls<T>(self: &Arc<Self>, f: impl FnOnce(&mut Pulls, &View<'_>, &mut Vec<Command>) -> T) -> T {
        let mut cmds = Vec::new();
        let t = f(&mut self.pulls.lock().expect("pulls lock"), &View(self), &mut cmds);
        if !cmds.is_empty() {
            crate::spawn::spawn(self.clone().execute_pulls(cmds));
        }
        t
    }

    /// Beats found `peer` ahead on `origin`: a pull starts unless one runs.
    pub(super) fn start_pull(self: &Arc<Self>, peer: &Peer, origin: &str) {
        self.with_pulls(|p, v, out| p.on_start_pull(now_ms(), &peer.cfg.id, origin, v, out));
    }

    /// Digests of `origin` differ from `peer`'s at equal marks: a re-pull
    /// from seq 0, if the part says its turn is due.
    pub(super) fn repair(self: &Arc<Self>, peer: &Peer, origin: &str) {
        if self.with_pulls(|p, _, out| p.on_repair(now_ms(), &peer.cfg.id, origin, out)) {
            tracing::info!(peer = %peer.cfg.id, %origin, "digests differ at equal watermarks: re-pulling");
        }
    }

    /// Executes the part's commands in order, feeding each result back.
    pub(super) async fn execute_pulls(self: Arc<Self>, cmds: Vec<Command>) {
        let mut queue: VecDeque<Command> = cmds.into();
        // Per origin pulled in this run: its progress in seqs (pages come
        // in seq order, resyncs from seq 0) and the seq it started after.
        let mut progress: HashMap<String, (crate::progress::Progress, u64)> = HashMap::new();
        let mut resyncing: HashMap<String, String> = HashMap::new();
        while let Some(cmd) = queue.pop_front() {
            let mut next = Vec::new();
            match cmd {
                Command::SendPull {
                    peer,
                    call,
                    request,
                    timeout_ms,
                } => {
                    let result = self.call_pull(&peer, &request, timeout_ms).await;
                    let mut p = self.pulls.lock().expect("pulls lock");
                    let view = View(&self);
                    match result {
                        PageResult::Page(page) => p.on_page(now_ms(), &peer, call, page, &view, &mut next),
                        PageResult::Failed => p.on_page_failed(now_ms(), call, &view, &mut next),
                        PageResult::TimedOut => p.on_page_timeout(now_ms(), call, &view, &mut next),
                    }
                }
                Command::Apply {
                    call,
                    origin,
                    records,
                    origin_said,
                    advance,
                } => {
                    let max_seq = records.iter().map(|r| r.seq).max();
                    let reached = max_seq.max(advance.map(|a| a.1));
                    if let (Some(said), Some(reached)) = (origin_said, reached) {
                        let start = advance.map_or(0, |a| a.0.saturating_sub(1));
                        let (p, start) = progress.entry(origin.clone()).or_insert_with(|| {
                            let what = match resyncing.get(&origin) {
                                Some(peer) => format!("resync of {origin} from {peer}"),
                                None => format!("pull of {origin}"),
                            };
                            (
                                crate::progress::Progress::log(&what, Some(said.saturating_sub(start))),
                                start,
                            )
                        });
                        p.set(reached.saturating_sub(*start));
                    }
                    let ok = match self.center.apply_remote(records).await {
                        Ok(_) => true,
                        Err(e) => {
                            tracing::warn!(%origin, "pulled records refused: {e}");
                            false
                        }
                    };
                    if ok {
                        {
                            // Applied, so verified: their seqs are the
                            // origin's word, and so is what it said itself.
                            let mut c = self.ceilings.lock().expect("ceilings lock");
                            if let Some(m) = max_seq {
                                c.witness(&origin, m);
                            }
                            if let Some(s) = origin_said {
                                c.witness(&origin, s);
                            }
                        }
                        if let Some((from, through)) = advance {
                            self.advance(&origin, from, through);
                        }
                    }
                    let mut p = self.pulls.lock().expect("pulls lock");
                    p.on_applied(now_ms(), call, ok, &View(&self), &mut next);
                }
                Command::ResyncStarted {
                    peer,
                    origin,
                    purged_through,
                    mark,
                } => {
                    tracing::info!(%peer, %origin, purged_through, mark,
                        "behind the peer's tombstone horizon: resyncing this origin");
                    progress.remove(&origin);
                    resyncing.insert(origin, peer);
                }
                Command::Forget {
                    call,
                    origin,
                    drops,
                    purged_through,
                } => {
                    let candidates = drops.len();
                    let dropped = match self.center.forget(&origin, drops, purged_through).await {
                        Ok(n) => {
                            tracing::info!(%origin, candidates, dropped = n,
                                "resync complete: dropped records deleted at their origin");
                            Some(n as u64)
                        }
                        Err(e) => {
                            tracing::warn!(%origin, "resync could not drop records: {e}");
                            None
                        }
                    };
                    let mut p = self.pulls.lock().expect("pulls lock");
                    p.on_forgot(now_ms(), call, dropped, &View(&self), &mut next);
                }
                Command::RaiseMark { origin, through } => self.raise_mark(&origin, through),
                Command::PullDone { peer, origin, end } => {
                    if let Some((p, _)) = progress.remove(&origin) {
                        p.finish();
                    }
                    match end {
                        // Failures and refused merges were logged where
                        // they happened.
                        PullEnd::BadAnswer | PullEnd::ResyncUnfinished => {
                            tracing::warn!(%peer, %origin, ?end, "pull broken off")
                        }
                        _ => tracing::debug!(%peer, %origin, ?end, "pull ended"),
                    }
                }
                Command::AskFullSync { peer } => self.ask_full_sync(&peer).await,
                Command::PushFullSync {
                    peer,
                    page_records,
                    message_bytes_max,
                } => {
                    if let Some(p) = self.peer(&peer) {
                        self.push_full_sync(&p, page_records, message_bytes_max).await;
                    }
                    self.pulls
                        .lock()
                        .expect("pulls lock")
                        .on_full_sync_pushed(now_ms(), &peer);
                }
                Command::AdoptMarks { peer, own, marks } => self.adopt_marks(&peer, own, marks),
            }
            queue.extend(next);
        }
    }

    /// One page call, bounded by `timeout_ms`.
    async fn call_pull(&self, peer_id: &str, request: &PullRequest, timeout_ms: u64) -> PageResult {
        let Some(peer) = self.peer(peer_id) else {
            return PageResult::Failed;
        };
        let body = serde_json::to_vec(request).expect("json");
        let call = peer
            .client
            .call(&self.center, Method::POST, "/mesh/v1/pull", &[], Some(body));
        let answer = match tokio::time::timeout(Duration::from_millis(timeout_ms), call).await {
            Err(_) => return PageResult::TimedOut,
            Ok(Err(e)) => {
                tracing::debug!(peer = %peer_id, origin = %request.origin, "pull failed: {e}");
                return PageResult::Failed;
            }
            Ok(Ok(a)) if a.status == StatusCode::OK => match self.record_format_of(a.record_format.as_deref()) {
                Ok(_) => a,
                Err(e) => {
                    tracing::warn!(peer = %peer_id, origin = %request.origin, "pull page refused: {e}");
                    return PageResult::Failed;
                }
            },
            Ok(Ok(a)) => {
                tracing::warn!(peer = %peer_id, origin = %request.origin, status = %a.status, "pull refused");
                return PageResult::Failed;
            }
        };
        let page = serde_json::from_slice::<PullPage<String>>(&answer.body)
            .map_err(|e| e.to_string())
            .and_then(|p| {
                if p.records.len() > PULL_PAGE_RECORDS_MAX {
                    return Err(DecodeError::TooMany(PULL_PAGE_RECORDS_MAX).to_string());
                }
                let mut i = 0;
                p.try_map(|s| {
                    i += 1;
                    decode_item(i - 1, &s)
                })
                .map_err(|e| e.to_string())
            });
        match page {
            Ok(p) => PageResult::Page(p),
            Err(e) => {
                tracing::warn!(peer = %peer_id, origin = %request.origin, "bad pull answer: {e}");
                PageResult::Failed
            }
        }
    }

    /// Sets our mark of `origin` to at least `through`, never past what
    /// the origin has shown.
    fn raise_mark(&self, origin: &str, through: u64) {
        let through = self.ceilings.lock().expect("ceilings lock").bound(origin, through);
        if self.marks.lock().expect("marks lock").raise(origin, through) {
            self.marks_dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Serves a pull from peer `sender`: the page proto's `serve_page`
    /// makes of `origin`'s versions after `after`, as JSON.
    pub fn serve_pull(&self, sender: &str, req: &PullRequest) -> Result<Vec<u8>, ServePullError> {
        let peer = self
            .peer(sender)
            .ok_or_else(|| ServePullError::NotAPeer(sender.to_string()))?;
        let read = |after, n| self.center.origin_after(&req.origin, after, n);
        let page = part::serve_page(
            req.after,
            req.limit,
            read,
            self.mark(&req.origin),
            |r| {
                self.visible_to(&peer.policy, r).then(|| {
                    let item = B64.encode(codec::encode(r));
                    let size = item.len() + 3;
                    (item, size)
                })
            },
            self.center.purged_through(&req.origin),
            &peer.policy,
        )?;
        Ok(serde_json::to_vec(&page).expect("json"))
    }
}
