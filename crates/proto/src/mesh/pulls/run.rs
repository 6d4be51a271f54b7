//! A pull's page loop (PROTOCOL.md, "Anti-entropy"): starting a pull of an
//! origin once, asking page after page from where the last one covered,
//! advancing the mark page by page, turning into a replacing resync when
//! the responder purged past our mark, and what that resync drops when it
//! completes. Must never advance a mark during a resync (only a complete
//! one raises it), nor run two pulls of one origin.

use super::{Command, PullEnd, Pulls, Replica, Run, Stage};
use super::{
    HELD_ABOVE_NAMES_MAX, PULLS_RUNNING_MAX, PULL_PAGES_MAX, PULL_PAGE_RECORDS_MAX, PULL_PAGE_TIMEOUT_MS,
    REPAIR_TURNS_MAX, RESYNC_PAGES_MAX,
};
use crate::sync::{self as ae, Resync};
use crate::wire::pull::{PullPage, PullRequest};
use regmesh_core::Record;

impl Pulls {
    /// Beats found `peer` ahead of us on `origin`: pull it from our mark,
    /// unless a pull of that origin runs. Returns whether one started.
    pub fn on_start_pull(
        &mut self,
        _now_ms: u64,
        peer: &str,
        origin: &str,
        view: &impl Replica,
        out: &mut Vec<Command>,
    ) -> bool {
        self.start(peer, origin, view.mark(origin), false, out)
    }

    /// Digests of `origin` differ from `peer`'s at equal marks: re-pull it
    /// from seq 0, at most once per [`ae::REPAIR_EVERY_MS`] per (peer,
    /// origin). The turn is spent only on a re-pull that starts, so a
    /// useless repair with one peer cannot starve a useful one with
    /// another. Never for our own origin. Returns whether one started.
    pub fn on_repair(&mut self, now_ms: u64, peer: &str, origin: &str, out: &mut Vec<Command>) -> bool {
        if origin == self.me {
            return false;
        }
        let slot = (peer.to_string(), origin.to_string());
        if !ae::repair_due(self.last_repair_ms.get(&slot).copied(), now_ms) {
            return false;
        }
        if !self.start(peer, origin, 0, true, out) {
            return false;
        }
        if self.last_repair_ms.len() >= REPAIR_TURNS_MAX {
            self.last_repair_ms.retain(|_, t| now_ms < *t + ae::REPAIR_EVERY_MS);
            if self.last_repair_ms.len() >= REPAIR_TURNS_MAX {
                self.last_repair_ms.clear();
            }
        }
        self.last_repair_ms.insert(slot, now_ms);
        self.stats.repairs += 1;
        true
    }

    fn start(&mut self, peer: &str, origin: &str, after: u64, repair: bool, out: &mut Vec<Command>) -> bool {
        if self.runs.contains_key(origin) || self.runs.len() >= PULLS_RUNNING_MAX {
            return false;
        }
        self.stats.pulls += 1;
        let run = Run {
            peer: peer.to_string(),
            call: 0,
            after,
            pages: 0,
            repair,
            resync: None,
            policy: None,
            claimed: 0,
            names_cut: false,
            stage: Stage::Waiting,
        };
        self.runs.insert(origin.to_string(), run);
        self.ask(origin, out);
        true
    }

    /// Sends the next page call of `origin`'s run (from its `after`).
    fn ask(&mut self, origin: &str, out: &mut Vec<Command>) {
        self.next_call += 1;
        let call = self.next_call;
        let Some(run) = self.runs.get_mut(origin) else { return };
        run.call = call;
        run.stage = Stage::Waiting;
        out.push(Command::SendPull {
            peer: run.peer.clone(),
            call,
            request: PullRequest {
                origin: origin.to_string(),
                after: run.after,
                limit: self.page_records,
            },
            timeout_ms: PULL_PAGE_TIMEOUT_MS,
        });
    }

    /// The run whose call `call` is at `stage`-like point (by predicate).
    fn run_of(&self, call: u64, at: impl Fn(&Stage) -> bool) -> Option<String> {
        self.runs
            .iter()
            .find(|(_, r)| r.call == call && at(&r.stage))
            .map(|(o, _)| o.clone())
    }

    /// Page call `call` was answered 200 by `peer` with `page`, decoded. An
    /// answer to no call in flight (late, or from another peer) changes
    /// nothing; one with more than [`PULL_PAGE_RECORDS_MAX`] records or
    /// another origin's records ends the pull.
    pub fn on_page(
        &mut self,
        _now_ms: u64,
        peer: &str,
        call: u64,
        page: PullPage<Record>,
        view: &impl Replica,
        out: &mut Vec<Command>,
    ) {
        let Some(origin) = self.run_of(call, |s| *s == Stage::Waiting) else {
            return;
        };
        let me = self.me.clone();
        let run = self.runs.get_mut(&origin).expect("run");
        if run.peer != peer {
            return;
        }
        if page.records.len() > PULL_PAGE_RECORDS_MAX
            || page.held_above.len() > HELD_ABOVE_NAMES_MAX
            || page.records.iter().any(|r| r.origin != origin)
        {
            self.end(&origin, PullEnd::BadAnswer, view, out);
            return;
        }
        run.pages += 1;
        let mark = view.mark(&origin);
        let start_resync = run.resync.is_none() && ae::resync_needed(&me, &origin, page.purged_through, mark);
        if start_resync {
            self.stats.resyncs += 1;
            run.resync = Some(Resync::begin(view.origin_live(&origin), page.purged_through));
            out.push(Command::ResyncStarted {
                peer: run.peer.clone(),
                origin: origin.clone(),
                purged_through: page.purged_through,
                mark,
            });
        }
        if let Some(rs) = run.resync.as_mut() {
            for r in &page.records {
                rs.sent(&r.kind, &r.id);
            }
            // Held there above its mark: not gone, only not carried.
            for k in &page.held_above {
                rs.sent(&k.kind, &k.id);
            }
        }
        run.names_cut = page.held_above_more;
        if let Some(p) = page.policy {
            run.policy = Some(p.into());
        }
        let records: Vec<Record> = if run.repair {
            // A repair fills what the peer has and we lack; it never brings
            // back what a purged deletion removed here.
            let purged = view.purged_through(&origin);
            page.records
                .into_iter()
                .filter(|r| ae::repair_may_apply(r.seq, purged, view.holds(&r.kind, &r.id)))
                .collect()
        } else {
            page.records
        };
        let restart = start_resync && run.after > 0;
        let covered = page.covered_through;
        // A resync moves the mark only once complete: one broken off half
        // way must start again, not leave deleted records behind a mark
        // that no longer asks for them.
        let advance = (!restart && run.resync.is_none()).then_some((run.after + 1, covered));
        run.stage = Stage::Applying {
            covered,
            more: page.more,
            records: records.len() as u64,
            restart,
        };
        out.push(Command::Apply {
            call,
            origin: origin.clone(),
            records,
            origin_said: (run.peer == origin).then_some(covered),
            advance,
        });
    }

    /// The records of page call `call` were merged (`ok`), or refused.
    pub fn on_applied(&mut self, _now_ms: u64, call: u64, ok: bool, view: &impl Replica, out: &mut Vec<Command>) {
        let Some(origin) = self.run_of(call, |s| matches!(s, Stage::Applying { .. })) else {
            return;
        };
        let run = self.runs.get_mut(&origin).expect("run");
        let Stage::Applying {
            covered,
            more,
            records,
            restart,
        } = run.stage
        else {
            return;
        };
        if !ok {
            self.end(&origin, PullEnd::ApplyFailed, view, out);
            return;
        }
        self.stats.pulled_records += records;
        run.claimed = covered;
        if restart {
            run.after = 0;
            self.ask(&origin, out);
            return;
        }
        let cap = if run.resync.is_some() {
            RESYNC_PAGES_MAX
        } else {
            PULL_PAGES_MAX
        };
        let end = if !more {
            Some(PullEnd::Complete)
        } else if covered <= run.after {
            Some(PullEnd::Stalled)
        } else if run.pages >= cap {
            Some(PullEnd::PageCap)
        } else {
            None
        };
        match end {
            None => {
                run.after = covered;
                self.ask(&origin, out);
            }
            Some(PullEnd::Complete) if run.resync.is_some() => {
                let Some(policy) = run.policy.clone().filter(|_| !run.names_cut) else {
                    // An answer without the responder's policy cannot tell
                    // withheld from gone, nor one naming only some of what
                    // it holds above its mark: drop nothing.
                    self.end(&origin, PullEnd::ResyncUnfinished, view, out);
                    return;
                };
                // Taken: `end` knows a resync by its stage from here on.
                let rs = run.resync.take().expect("resync");
                let purged_through = rs.purged;
                let drops = rs.drops(covered, |k, i, s| view.still_sendable(&origin, k, i, s, &policy));
                run.stage = Stage::Forgetting { covered };
                out.push(Command::Forget {
                    call,
                    origin,
                    drops,
                    purged_through,
                });
            }
            Some(end) => self.end(&origin, end, view, out),
        }
    }

    /// The drops of a complete resync (call `call`) were made, `dropped`
    /// records of them (`None`: they failed, and nothing changed).
    pub fn on_forgot(
        &mut self,
        _now_ms: u64,
        call: u64,
        dropped: Option<u64>,
        view: &impl Replica,
        out: &mut Vec<Command>,
    ) {
        let Some(origin) = self.run_of(call, |s| matches!(s, Stage::Forgetting { .. })) else {
            return;
        };
        let Stage::Forgetting { covered } = self.runs[&origin].stage else {
            return;
        };
        match dropped {
            Some(n) => {
                self.stats.forgot += n;
                out.push(Command::RaiseMark {
                    origin: origin.clone(),
                    through: covered,
                });
                self.end(&origin, PullEnd::Complete, view, out);
            }
            None => self.end(&origin, PullEnd::ResyncUnfinished, view, out),
        }
    }

    /// Page call `call` failed, was refused, or its answer was malformed.
    pub fn on_page_failed(&mut self, _now_ms: u64, call: u64, view: &impl Replica, out: &mut Vec<Command>) {
        if let Some(origin) = self.run_of(call, |s| *s == Stage::Waiting) {
            self.end(&origin, PullEnd::Failed, view, out);
        }
    }

    /// Page call `call` had no answer within [`PULL_PAGE_TIMEOUT_MS`]. A
    /// call already answered is not touched.
    pub fn on_page_timeout(&mut self, _now_ms: u64, call: u64, view: &impl Replica, out: &mut Vec<Command>) {
        if let Some(origin) = self.run_of(call, |s| *s == Stage::Waiting) {
            self.end(&origin, PullEnd::TimedOut, view, out);
        }
    }

    /// Ends `origin`'s run. A catch-up whose last answer claimed more than
    /// our mark could take (the claim was above what the origin has shown)
    /// is noted: that claim starts no more pulls until the peer claims more.
    fn end(&mut self, origin: &str, end: PullEnd, view: &impl Replica, out: &mut Vec<Command>) {
        let Some(run) = self.runs.remove(origin) else { return };
        let resyncing = run.resync.is_some() || matches!(run.stage, Stage::Forgetting { .. });
        if !resyncing && origin != self.me && run.claimed > view.mark(origin) {
            self.unproven.note(&run.peer, origin, run.claimed);
        }
        out.push(Command::PullDone {
            peer: run.peer,
            origin: origin.to_string(),
            end,
        });
    }
}
