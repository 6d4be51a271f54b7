//! A simulated center's anti-entropy (the node's `peer/mesh/pulls.rs`):
//! starting and sending pulls, the digests of what it holds, and taking
//! pull answers (resyncs included). Decisions are `regmesh_proto::sync`'s.
//! Must never move a watermark past what an answer covered.

use super::{Center, Change, Out, PullRun, Timer, PULL_TIMEOUT_MS};
use crate::msg::Msg;
use regmesh_core::Record;
use regmesh_proto::digest::{element, SetDigest};
use regmesh_proto::policy::class_of;
use regmesh_proto::policy::ExportPolicy;
use regmesh_proto::sync::{self as ae, Resync};
use std::collections::BTreeMap;

impl Center {
    /// Starts a pull of `origin` from peer slot `pi` unless one runs.
    pub(super) fn start_pull(
        &mut self,
        now: u64,
        pi: usize,
        origin: &str,
        from_zero: bool,
        out: &mut Vec<Out>,
    ) -> bool {
        if !self.pulls.start(origin) {
            return false;
        }
        self.next_run += 1;
        let run = self.next_run;
        let after = if from_zero { 0 } else { self.mark(origin) };
        self.stats.pulls += 1;
        self.pulling.insert(
            origin.to_string(),
            PullRun {
                run,
                peer: self.peers[pi].idx,
                after,
                resync: None,
                pages: 0,
                repair: from_zero,
            },
        );
        self.send_pull(now, run, self.peers[pi].idx, origin, after, out);
        true
    }

    /// Digests of `origin` differ from peer slot `pi`'s at equal marks (the
    /// link part said so): a re-pull from seq 0 if its turn is due.
    pub(super) fn repair(&mut self, now: u64, pi: usize, origin: &str, out: &mut Vec<Out>) {
        let local = self.local(now);
        let slot = (self.peers[pi].idx, origin.to_string());
        // The peer's turn is spent only on a re-pull that starts.
        if ae::repair_due(self.last_repair.get(&slot).copied(), local) && self.start_pull(now, pi, origin, true, out) {
            self.last_repair.insert(slot, local);
            self.stats.repairs += 1;
        }
    }

    /// Digests of `origin`'s versions, tombstones included, per (kind,
    /// visibility class), as the node's index keeps them.
    pub(super) fn class_digests(&self, origin: &str) -> BTreeMap<String, SetDigest> {
        let mut out: BTreeMap<String, SetDigest> = BTreeMap::new();
        for (_, key) in self
            .store
            .by_seq
            .range((origin.to_string(), 0)..)
            .take_while(|((o, _), _)| o == origin)
        {
            let Some(r) = self.store.get(key) else { continue };
            let Some(class) = class_of([&r.visibility]) else {
                continue;
            };
            let k = ae::digest_key(&r.kind, &class);
            let e = element(
                &r.kind,
                &r.id,
                &r.origin,
                r.version.wall_ms,
                r.version.logical,
                r.deleted,
            );
            out.entry(k).or_default().add(&e);
        }
        out
    }

    fn send_pull(&self, now: u64, run: u64, to: usize, origin: &str, after: u64, out: &mut Vec<Out>) {
        out.push(Out::Send {
            to,
            msg: Msg::PullReq {
                run,
                origin: origin.to_string(),
                after,
                limit: self.settings.pull_page,
            },
        });
        out.push(Out::Timer {
            at: now + PULL_TIMEOUT_MS,
            timer: Timer::PullTimeout { run },
        });
    }

    #[allow(clippy::type_complexity)]
    pub(super) fn on_pull_answer(
        &mut self,
        now: u64,
        from: usize,
        run: u64,
        origin: String,
        (records, covered, more, purged, policy): (Vec<Record>, u64, bool, u64, ExportPolicy),
        out: &mut Vec<Out>,
    ) {
        let Some(mut pr) = self.pulling.remove(&origin) else {
            return;
        };
        if pr.run != run || pr.peer != from || records.iter().any(|r| r.origin != origin) {
            self.pulling.insert(origin, pr);
            return;
        }
        pr.pages += 1;
        let start_resync = pr.resync.is_none() && ae::resync_needed(&self.id, &origin, purged, self.mark(&origin));
        if start_resync {
            self.stats.resyncs += 1;
            pr.resync = Some(Resync::begin(self.store.origin_live(&origin), purged));
        }
        if let Some(rs) = pr.resync.as_mut() {
            for r in &records {
                rs.sent(&r.kind, &r.id);
            }
        }
        let records = if pr.repair {
            // A repair fills what a peer has and we lack; it never brings
            // back what a purged deletion may have removed here.
            let purged = self.store.purged.get(&origin).copied().unwrap_or(0);
            records
                .into_iter()
                .filter(|r| {
                    ae::repair_may_apply(r.seq, purged, self.store.get(&(r.kind.clone(), r.id.clone())).is_some())
                })
                .collect()
        } else {
            records
        };
        self.apply_remote(now, records);
        if start_resync && pr.after > 0 {
            pr.after = 0;
            self.next_run += 1;
            pr.run = self.next_run;
            self.send_pull(now, pr.run, from, &origin, 0, out);
            self.pulling.insert(origin, pr);
            return;
        }
        // A resync moves the watermark only once complete.
        if pr.resync.is_none() {
            self.marks.advance(&origin, pr.after + 1, covered);
        }
        if !more || covered <= pr.after || pr.pages >= 10_000 {
            if let (Some(rs), false) = (pr.resync, more) {
                let purged = rs.purged;
                let drops = rs.drops(covered, |k, i, s| {
                    self.store
                        .get(&(k.to_string(), i.to_string()))
                        .is_some_and(|r| r.seq == s && !r.deleted && r.origin == origin && policy.allows(r, &[]))
                });
                for (k, i, _) in drops {
                    let key = (k, i);
                    if let Some(r) = self.store.remove(&key) {
                        self.stats.forgot += 1;
                        self.changes.push((key, Change::Forgot(r)));
                    }
                }
                self.store.raise_purged(&origin, purged);
                self.marks.raise(&origin, covered);
                self.store.flush();
                self.last_flush = now;
            }
            self.pulls.done(&origin);
            return;
        }
        pr.after = covered;
        self.next_run += 1;
        pr.run = self.next_run;
        self.send_pull(now, pr.run, from, &origin, covered, out);
        self.pulling.insert(origin, pr);
    }
}
