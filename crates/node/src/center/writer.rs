//! The single writer: one bounded queue, drained in batches of at most
//! `store.write_batch_max` ops, applied in order to an overlay (later ops see
//! earlier ones), signed, committed in one store transaction (group commit),
//! then published to the indexes, deadlines and change feed before anyone is
//! answered.
//!
//! A batch with any write this center originates, or a deadline or purge, is
//! committed durably; one made only of other centers' versions is committed
//! relaxed, and made durable by the next durable commit (at most
//! `RELAXED_FOR_MS` later).
//!
//! Must never: acknowledge before commit; let a failed commit leave the
//! indexes, counters or clock ahead of the store; let the store and the
//! index disagree on what a key holds after a batch.

use super::apply::{Applied, WriteOp};
use super::events::{encode_event, DeleteReason, Event, EventType};
use super::follow::Follower;
use super::{now_ms, Center, Outcome, Shared, WriteError};
use regmesh_core::codec::{self, canonical_json};
use regmesh_core::{HlcClock, Record};
use regmesh_store::{digest, Digest, StoreError, WriteBatch};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Where the writer sends the result of one op.
pub(super) type ReplyTo = oneshot::Sender<Result<Outcome, WriteError>>;

pub(super) struct Op {
    pub(super) kind: String,
    pub(super) id: String,
    pub(super) op: WriteOp,
    /// Canonical JSON of a put's body, computed by the caller's task so the
    /// single writer does not spend its time on it.
    pub(super) canonical: Option<String>,
    pub(super) reply: Option<ReplyTo>,
}

impl Op {
    /// The op without its reply (to build a batch again after a conflict).
    fn copy(&self) -> Op {
        Op {
            kind: self.kind.clone(),
            id: self.id.clone(),
            op: self.op.clone(),
            canonical: self.canonical.clone(),
            reply: None,
        }
    }
}

/// The writer's private clock and counters.
#[derive(Clone)]
pub(super) struct WriterState {
    pub(super) hlc: HlcClock,
    pub(super) seq: u64,
    pub(super) change: u64,
    pub(super) first_change: u64,
    /// Per origin: the highest seq of a tombstone purged here (or of a
    /// deletion this center can no longer prove, after a resync).
    pub(super) purged: BTreeMap<String, u64>,
    pub(super) purged_dirty: bool,
    /// Change numbers up to this are reserved by a durable commit, so a
    /// crash that loses relaxed commits never leads to a number being
    /// reused (the next start resumes above it).
    pub(super) change_reserved: u64,
    /// When the writer last committed durably, on tokio's clock (simulated
    /// time in the whole-node simulation, so a seed replays which commits
    /// were relaxed; the system's monotonic clock otherwise).
    pub(super) last_durable: tokio::time::Instant,
    /// Shared authority only: where this process stands among the others.
    pub(super) follower: Option<Follower>,
}

/// The per-key state of one batch: the record before the batch and after the
/// ops applied so far.
pub(super) struct Slot {
    pub(super) before: Option<Record>,
    pub(super) after: Option<Record>,
    pub(super) after_digest: Option<Digest>,
    pub(super) touched: bool,
}

/// A version waiting for its signature within one batch.
pub(super) struct Pending {
    pub(super) record: Record,
    /// Already signed (by its origin); skip signing.
    pub(super) signed: bool,
    pub(super) typ: EventType,
    pub(super) reason: Option<DeleteReason>,
    pub(super) done: Done,
    /// The op's place in its batch.
    pub(super) at: usize,
}

/// One record change of a batch, in op order.
pub(super) enum Step {
    /// The `n`th pending version (signed later).
    Put(usize),
    /// Remove the key (a purged tombstone, or a forgotten record).
    Remove((String, String)),
}

/// Which [`Outcome`] a write produces once its version is signed.
#[derive(Clone, Copy)]
pub(super) enum Done {
    Created,
    Replaced,
    Renewed,
    Deleted,
    Nothing,
}

impl Done {
    pub(super) fn with(self, r: &Record) -> Outcome {
        match self {
            Done::Created => Outcome::Created(r.clone()),
            Done::Replaced => Outcome::Replaced(r.clone()),
            Done::Renewed => Outcome::Renewed(r.clone()),
            Done::Deleted => Outcome::Deleted(r.clone()),
            Done::Nothing => Outcome::Nothing,
        }
    }
}

/// Below this many versions a batch is signed on the writer thread alone.
pub(super) const PARALLEL_SIGN_MIN: usize = 32;

/// Metadata cell holding the per-origin purge marks (JSON object).
pub(super) const PURGED_META: &str = "purged";

/// Metadata cell holding the highest change number reserved (u64 BE).
pub(super) const CHANGE_RESERVED_META: &str = "change.reserved";

/// Change numbers reserved per durable reservation.
pub(super) const CHANGE_RESERVE: u64 = 4096;

/// A relaxed commit (only other centers' versions) is made durable by the
/// next durable one, at the latest this long after the previous.
pub(super) const RELAXED_FOR_MS: u128 = 1000;

/// Shared authority: how often a batch is built again after another process
/// committed first, before its writes fail.
const CONFLICT_RETRIES: usize = 32;

/// The outcome of each op of a batch, by its place in the batch.
pub(super) type Results = Vec<(usize, Result<Outcome, WriteError>)>;

impl Center {
    /// Queues a write and waits for it to be durable. Refuses at once when
    /// the queue is full, and client writes (put, delete, heartbeat) while
    /// the center is `inactive` ([`Center::set_accepting_writes`]).
    pub async fn write(&self, kind: &str, id: &str, op: WriteOp) -> Result<Outcome, WriteError> {
        if matches!(
            op,
            WriteOp::Merge(_) | WriteOp::Forget { .. } | WriteOp::Close | WriteOp::Follow
        ) {
            return Err(WriteError::Invalid(
                "versions from other centers go through apply_remote and forget".into(),
            ));
        }
        if !matches!(op, WriteOp::Sweep) && !self.accepting_writes() {
            return Err(WriteError::Inactive);
        }
        if let WriteOp::Put { prepared, .. } = &op {
            let Some(obj) = prepared.body.as_object() else {
                return Err(WriteError::Invalid(format!("a {kind} body must be a JSON object")));
            };
            if let Some(f) = regmesh_core::kind::ENVELOPE_FIELDS
                .iter()
                .find(|f| obj.contains_key(**f))
            {
                return Err(WriteError::Invalid(format!(
                    "a {kind} body must not carry the envelope field {f:?}"
                )));
            }
        }
        let canonical = match &op {
            WriteOp::Put { prepared, .. } => Some(canonical_json(&prepared.body)),
            _ => None,
        };
        let (reply, rx) = oneshot::channel();
        let op = Op {
            kind: kind.to_string(),
            id: id.to_string(),
            op,
            canonical,
            reply: Some(reply),
        };
        match self.tx.try_send(op) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.metrics.shed.fetch_add(1, Ordering::Relaxed);
                return Err(WriteError::Overloaded(self.shared.settings.write_queue));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(WriteError::ShuttingDown),
        }
        rx.await.unwrap_or(Err(WriteError::ShuttingDown))
    }

    /// Queues internal ops (all of them, waiting for room) and collects
    /// their outcomes in order; the first refusal is returned.
    pub(super) async fn submit_all(
        &self,
        ops: impl Iterator<Item = (String, String, WriteOp)>,
    ) -> Result<Vec<Outcome>, WriteError> {
        let mut waits = Vec::new();
        for (kind, id, op) in ops {
            let (reply, rx) = oneshot::channel();
            let op = Op {
                kind,
                id,
                op,
                canonical: None,
                reply: Some(reply),
            };
            self.tx.send(op).await.map_err(|_| WriteError::ShuttingDown)?;
            waits.push(rx);
        }
        let mut out = Vec::with_capacity(waits.len());
        for w in waits {
            out.push(w.await.unwrap_or(Err(WriteError::ShuttingDown))?);
        }
        Ok(out)
    }
}

impl Shared {
    /// Reads the current version (tombstones included) for the writer.
    pub(super) fn load_for_write(&self, kind: &str, id: &str) -> Result<Option<Record>, WriteError> {
        let Some(entry) = self.index.read().expect("index lock").get(kind, id).cloned() else {
            return Ok(None);
        };
        let bytes = self
            .store
            .get(kind, id)
            .map_err(|e| WriteError::Storage(e.to_string()))?;
        match bytes {
            // Shared authority: the timer owner purged this tombstone (a
            // purge logs no change for the others to follow).
            None if self.shared_authority && entry.deleted => {
                self.index.write().expect("index lock").remove(kind, id, &[]);
                Ok(None)
            }
            Some(b) if digest(&b) == entry.digest => codec::decode(&b)
                .map(Some)
                .map_err(|e| WriteError::Storage(e.to_string())),
            _ => {
                self.metrics.integrity_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    kind,
                    id,
                    "stored record does not match its verified digest; refusing to write over it"
                );
                Err(WriteError::Storage(format!("integrity check failed for {kind}/{id}")))
            }
        }
    }

    pub(super) fn writer_loop(self: Arc<Self>, mut rx: mpsc::Receiver<Op>, mut st: WriterState) {
        while let Some(first) = rx.blocking_recv() {
            if self.writer_round(&mut rx, &mut st, first) {
                break;
            }
        }
        tracing::debug!("writer stopped");
    }

    /// [`Shared::writer_loop`] as a task ([`super::WriterMode::Task`]): it
    /// yields only between batches.
    pub(super) async fn writer_task(self: Arc<Self>, mut rx: mpsc::Receiver<Op>, mut st: WriterState) {
        while let Some(first) = rx.recv().await {
            if self.writer_round(&mut rx, &mut st, first) {
                break;
            }
        }
        tracing::debug!("writer stopped");
    }

    /// One batch: `first` and what else is queued (up to the batch size),
    /// committed. True once a close was in it (then the writer stops).
    fn writer_round(&self, rx: &mut mpsc::Receiver<Op>, st: &mut WriterState, first: Op) -> bool {
        {
            let mut ops = vec![first];
            while ops.len() < self.settings.write_batch_max {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            // Everything queued before a close is committed; nothing after.
            let close = ops.iter().position(|o| matches!(o.op, WriteOp::Close));
            if let Some(at) = close {
                ops.truncate(at);
            }
            self.commit_batch(st, ops);
            if close.is_some() {
                // Make any relaxed commits durable before stopping.
                let flush = WriteBatch {
                    meta: vec![(CHANGE_RESERVED_META.into(), st.change_reserved.to_be_bytes().to_vec())],
                    ..Default::default()
                };
                if let Err(e) = self.store.apply(&flush) {
                    tracing::error!("final flush failed: {e}");
                }
                rx.close();
                while let Ok(op) = rx.try_recv() {
                    if let Some(r) = op.reply {
                        let _ = r.send(Err(WriteError::ShuttingDown));
                    }
                }
                return true;
            }
        }
        false
    }

    /// Applies `ops` in order, commits once, then publishes and answers. In
    /// shared authority mode it first follows the other processes, and
    /// builds the batch again when one of them committed first.
    pub(super) fn commit_batch(&self, st: &mut WriterState, mut ops: Vec<Op>) {
        let reply_to: Vec<Option<ReplyTo>> = ops.iter_mut().map(|o| o.reply.take()).collect();
        let mut attempt = 0;
        let results = loop {
            if let Err(e) = self.follow(st) {
                // Building on a state that may be stale could reuse numbers.
                let err = WriteError::Storage(format!("following the other processes: {e}"));
                break (0..ops.len()).map(|at| (at, Err(err.clone()))).collect();
            }
            let this = match st.follower {
                Some(_) => ops.iter().map(Op::copy).collect(),
                None => std::mem::take(&mut ops),
            };
            match self.try_batch(st, this) {
                Ok(r) => break r,
                Err(e) => {
                    attempt += 1;
                    if attempt > CONFLICT_RETRIES {
                        tracing::error!("batch given up after {attempt} conflicts: {e}");
                        let err = WriteError::Storage(e.to_string());
                        break (0..ops.len()).map(|at| (at, Err(err.clone()))).collect();
                    }
                }
            }
        };
        let mut reply_to = reply_to;
        for (at, res) in results {
            if let Some(r) = reply_to.get_mut(at).and_then(Option::take) {
                let _ = r.send(res);
            }
        }
    }

    /// One attempt at a batch: its results, or the conflict that refused it
    /// (shared authority; nothing of it happened, `st` is as before).
    fn try_batch(&self, st: &mut WriterState, ops: Vec<Op>) -> Result<Results, StoreError> {
        let now = now_ms();
        let before_state = st.clone();
        let mut slots: HashMap<(String, String), Slot> = HashMap::new();
        let mut batch = WriteBatch::default();
        let mut events: Vec<Event> = Vec::new();
        let mut replies: Results = Vec::with_capacity(ops.len());
        // Sweeps that found nothing due (re-arm from the record) and sweeps
        // that could not load the record (look again in a second).
        let mut resweep: Vec<(String, String)> = Vec::new();
        let mut retry: Vec<(String, String)> = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        // The batch's record changes in op order: the store applies them in
        // this order, so a purge followed by a new create of the same id
        // leaves the create (issue 11 item 1).
        let mut steps: Vec<Step> = Vec::new();

        // Only other centers' versions (copies a peer can send again): the
        // commit need not wait for the disk (see RELAXED_FOR_MS).
        let relaxed = ops.iter().all(|o| match &o.op {
            WriteOp::Merge(r) => r.origin != self.id,
            WriteOp::Forget { .. } => true,
            _ => false,
        });
        for (at, op) in ops.into_iter().enumerate() {
            if matches!(op.op, WriteOp::Follow) {
                replies.push((at, Ok(Outcome::Nothing)));
                continue;
            }
            let key = (op.kind.clone(), op.id.clone());
            if !slots.contains_key(&key) {
                match self.load_for_write(&op.kind, &op.id) {
                    Ok(r) => {
                        slots.insert(
                            key.clone(),
                            Slot {
                                before: r.clone(),
                                after: r,
                                after_digest: None,
                                touched: false,
                            },
                        );
                    }
                    Err(e) => {
                        if matches!(op.op, WriteOp::Sweep) {
                            retry.push(key);
                        }
                        replies.push((at, Err(e)));
                        continue;
                    }
                }
            }
            let slot = slots.get_mut(&key).expect("slot present");
            let is_sweep = matches!(op.op, WriteOp::Sweep);
            match self.apply_op(st, now, (&op.kind, &op.id), op.op, op.canonical, slot.after.as_ref()) {
                Ok(Applied::Write {
                    record,
                    typ,
                    reason,
                    outcome,
                    signed,
                }) => {
                    // Later ops in this batch see this version (unsigned as yet).
                    slot.after = Some(record.clone());
                    slot.touched = true;
                    steps.push(Step::Put(pending.len()));
                    pending.push(Pending {
                        record,
                        signed,
                        typ,
                        reason,
                        done: outcome,
                        at,
                    });
                }
                Ok(Applied::Purge) => {
                    if let Some(t) = slot.after.as_ref() {
                        let mark = st.purged.entry(t.origin.clone()).or_insert(0);
                        if t.seq > *mark {
                            *mark = t.seq;
                            st.purged_dirty = true;
                        }
                    }
                    steps.push(Step::Remove(key.clone()));
                    slot.after = None;
                    slot.after_digest = None;
                    slot.touched = true;
                    replies.push((at, Ok(Outcome::Nothing)));
                }
                Ok(Applied::Forget(record)) => {
                    steps.push(Step::Remove(key.clone()));
                    slot.after = None;
                    slot.after_digest = None;
                    slot.touched = true;
                    st.change += 1;
                    let typ = EventType::Delete;
                    let reason = Some(DeleteReason::Resync);
                    batch
                        .changes
                        .push((st.change, encode_event(typ, reason, &codec::encode(&record))));
                    replies.push((at, Ok(Outcome::Deleted(record.clone()))));
                    events.push(Event {
                        no: st.change,
                        typ,
                        reason,
                        record,
                    });
                }
                Ok(Applied::Nothing) => {
                    if is_sweep {
                        resweep.push(key);
                    }
                    replies.push((at, Ok(Outcome::Nothing)));
                }
                Ok(Applied::Deferred) => {
                    retry.push(key);
                    replies.push((at, Ok(Outcome::Nothing)));
                }
                Ok(Applied::Renewed(record)) => {
                    // The lease deadline moves; nothing is written.
                    resweep.push(key);
                    replies.push((at, Ok(Outcome::Renewed(record))));
                }
                Err(e) => replies.push((at, Err(e))),
            }
        }

        // Sign every new version of the batch; the versions and sequence
        // numbers were assigned in order above, signatures are independent.
        self.sign_all(&mut pending);
        let mut signed: Vec<Option<(Record, Vec<u8>, Digest)>> = Vec::with_capacity(pending.len());
        for p in pending {
            let bytes = codec::encode(&p.record);
            st.change += 1;
            batch.changes.push((st.change, encode_event(p.typ, p.reason, &bytes)));
            let d = digest(&bytes);
            signed.push(Some((p.record.clone(), bytes, d)));
            replies.push((p.at, Ok(p.done.with(&p.record))));
            events.push(Event {
                no: st.change,
                typ: p.typ,
                reason: p.reason,
                record: p.record,
            });
        }
        // The store and the index end in the same state: that of the last
        // step on each key.
        for step in steps {
            match step {
                Step::Put(i) => {
                    let (record, bytes, d) = signed[i].take().expect("each version is put once");
                    let slot = slots
                        .get_mut(&(record.kind.clone(), record.id.clone()))
                        .expect("slot present");
                    slot.after_digest = Some(d);
                    slot.after = Some(record.clone());
                    batch.put(record.kind, record.id, bytes);
                }
                Step::Remove((kind, id)) => {
                    let slot = slots.get_mut(&(kind.clone(), id.clone())).expect("slot present");
                    slot.after = None;
                    slot.after_digest = None;
                    batch.remove(kind, id);
                }
            }
        }
        if !batch.records.is_empty() || st.purged_dirty {
            self.seal(st, &mut batch, relaxed);
            self.fence(st, &mut batch);
            let t0 = Instant::now();
            if let Err(e) = self.store.apply(&batch) {
                *st = before_state;
                if matches!(e, StoreError::Conflict(_)) {
                    return Err(e);
                }
                tracing::error!("commit of {} writes failed: {e}", batch.records.len());
                return Ok(self.fail(
                    now,
                    slots.keys().chain(retry.iter()),
                    replies,
                    &WriteError::Storage(e.to_string()),
                ));
            }
            self.fenced_commit_done(st, &batch);
            self.metrics.observe_commit(batch.records.len(), t0.elapsed());
            if !batch.relaxed {
                st.last_durable = tokio::time::Instant::now();
            }
            self.publish(st, &slots, events);
        }
        if !resweep.is_empty() || !retry.is_empty() {
            let mut dl = self.deadlines.lock().expect("deadlines lock");
            for key in resweep {
                let at = slots
                    .get(&key)
                    .and_then(|s| s.after.as_ref())
                    .and_then(|r| self.deadline(r));
                dl.set(&key.0, &key.1, at);
            }
            for (k, i) in retry {
                dl.set(&k, &i, Some(now + 1000));
            }
        }
        Ok(replies)
    }
}
