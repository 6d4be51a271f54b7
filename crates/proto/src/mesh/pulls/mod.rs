//! Part `pulls` of the mesh machine (see the module docs of `mesh`):
//! anti-entropy sequencing for one center. It owns which pulls run (one per
//! origin at a time), the page loop of each (after, limit, covered, more),
//! the page cap and the page-call timeout, the turn of a catch-up into a
//! replacing resync when the responder purged past our mark and what that
//! resync drops, the pacing of digest repairs, the claims a pull could not
//! back ([`Unproven`]), and the full sync request/accept sequence (sync
//! traffic only from a peer we asked).
//!
//! Inputs: [`Pulls::on_start_pull`], [`Pulls::on_repair`],
//! [`Pulls::on_full_sync_requested`] (what beats decide), the answers of
//! the calls and the results of the commands it emitted (`on_page`,
//! `on_page_failed`, `on_page_timeout`, `on_applied`, `on_forgot`, ...).
//! Outputs: [`Command`]s the runtime executes in order. What it must know
//! of the replica it asks through [`Replica`].
//!
//! Files: `run` (a pull's page loop and resync), `sync` (full sync), `serve`
//! (the page a responder answers with).
//!
//! Must never: perform I/O, read a clock, apply records or move a mark
//! itself (it asks with commands), or keep anything without a bound.

mod run;
mod serve;
mod sync;
#[cfg(test)]
mod tests;

use crate::policy::ExportPolicy;
use crate::sync::{Resync, SyncRequests, Unproven};
use crate::wire::pull::PullRequest;
use regmesh_core::Record;
use std::collections::{BTreeMap, HashMap, HashSet};

pub use serve::{page_limit, serve_page};
pub use sync::SyncRefused;

/// Records one pull page carries at most (a larger `limit` is clamped).
pub const PULL_PAGE_RECORDS_MAX: usize = 1000;
/// A page (and a full-sync message) stops growing at this many bytes of
/// encoded records, whatever `limit` asked: records may be 64 KiB each.
pub const PULL_PAGE_BYTES_MAX: usize = 2 << 20;
/// Keys a page names at most as held above the responder's mark
/// (`wire::pull::PullPage::held_above`); past it, the page says there are
/// more and a resync drops nothing on its word.
pub const HELD_ABOVE_NAMES_MAX: usize = 1000;
/// Pages one catch-up or digest repair takes at most; an origin still
/// behind after them is pulled again at a later beat (its mark moved).
pub const PULL_PAGES_MAX: usize = 100;
/// Pages one replacing resync takes at most: a resync moves the mark only
/// when complete, so it must reach the end of any origin in one go.
pub const RESYNC_PAGES_MAX: usize = 10_000;
/// A page call with no answer for this long is abandoned, and the pull
/// with it (the node and the simulator bound the call by it); a later beat
/// starts another. Short, because a pull lost to a partition keeps its
/// origin from being pulled from anyone else until then: with 5 s or 10 s
/// the simulator's centers caught up after the tombstone horizon on some
/// seeds (320, 399, 868). A page (at most [`PULL_PAGE_BYTES_MAX`] before
/// compression) then needs a link of about 6 Mbit/s.
pub const PULL_PAGE_TIMEOUT_MS: u64 = 3_000;
/// Pulls running at once at most (one per origin).
pub const PULLS_RUNNING_MAX: usize = 4096;
/// (peer, origin) repair turns remembered at most; past it, turns older
/// than [`crate::sync::REPAIR_EVERY_MS`] are forgotten.
pub const REPAIR_TURNS_MAX: usize = 65_536;
/// Watermarks one complete `sync` message may carry at most.
pub const SYNC_MARKS_MAX: usize = 4096;
/// Records of one origin read per step of a full-sync push.
pub const FULL_SYNC_PAGE_RECORDS: usize = 500;

/// What the part must ask of this center's replica; the runtime implements
/// it over its store and marks. Reads only.
pub trait Replica {
    /// Our watermark of `origin` (for ourselves, the last seq we issued).
    fn mark(&self, origin: &str) -> u64;
    /// The highest seq of `origin` whose tombstone was purged here.
    fn purged_through(&self, origin: &str) -> u64;
    /// Whether a version of (kind, id) is held here (tombstones included).
    fn holds(&self, kind: &str, id: &str) -> bool;
    /// (kind, id, seq) of every live record of `origin` held here.
    fn origin_live(&self, origin: &str) -> Vec<(String, String, u64)>;
    /// Whether we still hold `origin`'s live version `seq` of (kind, id) and
    /// a peer with `policy` may send it to us (by the record and its parts).
    fn still_sendable(&self, origin: &str, kind: &str, id: &str, seq: u64, policy: &ExportPolicy) -> bool;
    /// Whether we know `origin` (hold its key): only such marks are adopted.
    fn knows_origin(&self, origin: &str) -> bool;
}

/// How a pull ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullEnd {
    /// The responder had nothing more (a resync: its drops are done).
    Complete,
    /// The page cap was reached; a later beat pulls on.
    PageCap,
    /// The answer covered nothing new.
    Stalled,
    /// The page call failed or was refused.
    Failed,
    /// No answer within [`PULL_PAGE_TIMEOUT_MS`].
    TimedOut,
    /// The answer was malformed or held another origin's records.
    BadAnswer,
    /// Merging the page's records failed.
    ApplyFailed,
    /// A complete resync could not drop (no policy in the answer, or the
    /// drop failed): the mark stays, the next pull resyncs again.
    ResyncUnfinished,
}

/// What the runtime must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Call `POST /mesh/v1/pull` on `peer`, bounded by `timeout_ms`. Feed
    /// its page to [`Pulls::on_page`]; a refusal, a failure or a malformed
    /// answer to [`Pulls::on_page_failed`]; no answer in time to
    /// [`Pulls::on_page_timeout`].
    SendPull {
        peer: String,
        call: u64,
        request: PullRequest,
        timeout_ms: u64,
    },
    /// Verify and merge `records` (like a flood, never relayed). Only if
    /// that succeeds: take their seqs and `origin_said` (the origin's own
    /// word on how far it reached) as evidence of `origin`'s reach, and
    /// advance our mark of `origin` over `advance` (from, through), bounded
    /// by that evidence. Then feed [`Pulls::on_applied`].
    Apply {
        call: u64,
        origin: String,
        records: Vec<Record>,
        origin_said: Option<u64>,
        advance: Option<(u64, u64)>,
    },
    /// A pull of `origin` from `peer` became a replacing resync: the peer
    /// purged deletions through `purged_through`, above our `mark`.
    ResyncStarted {
        peer: String,
        origin: String,
        purged_through: u64,
        mark: u64,
    },
    /// A complete resync: drop these (kind, id, seq) of `origin` (a delete
    /// change with reason `resync`, never relayed) and raise our purge mark
    /// of it to `purged_through`. Feed [`Pulls::on_forgot`].
    Forget {
        call: u64,
        origin: String,
        drops: Vec<(String, String, u64)>,
        purged_through: u64,
    },
    /// Set our mark of `origin` to at least `through` (bounded by what the
    /// origin has shown).
    RaiseMark { origin: String, through: u64 },
    /// The pull of `origin` ended (for logs).
    PullDone { peer: String, origin: String, end: PullEnd },
    /// Ask `peer` for a full sync (`PUT /sync/node/:me`); feed whether it
    /// accepted to [`Pulls::on_full_sync_answer`].
    AskFullSync { peer: String },
    /// Push a full sync to `peer`: every record its policy allows, origin
    /// by origin, `page_records` read at a time, messages of at most
    /// `message_bytes_max`, then the complete one carrying our marks. Feed
    /// [`Pulls::on_full_sync_pushed`] when done.
    PushFullSync {
        peer: String,
        page_records: usize,
        message_bytes_max: usize,
    },
    /// A complete full sync from `peer`: take `own` as its word on its own
    /// origin, then raise our mark of each origin in `marks` (bounded by
    /// what it has shown).
    AdoptMarks {
        peer: String,
        own: Option<u64>,
        marks: Vec<(String, u64)>,
    },
}

/// Counters for `/v1/peers` (the simulator keeps its own across crashes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullStats {
    pub pulls: u64,
    pub repairs: u64,
    pub resyncs: u64,
    pub pulled_records: u64,
    pub forgot: u64,
}

/// Where a run stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// Page call `call` in flight.
    Waiting,
    /// The records of the page answered are being merged.
    Applying {
        covered: u64,
        more: bool,
        records: u64,
        /// The page turned the pull into a resync: start again at 0.
        restart: bool,
    },
    /// A complete resync's drops are being made.
    Forgetting { covered: u64 },
}

/// One pull of one origin from one peer.
#[derive(Debug, Clone)]
struct Run {
    peer: String,
    /// The page call in flight or being applied.
    call: u64,
    after: u64,
    pages: usize,
    /// Started because digests differed (from seq 0).
    repair: bool,
    resync: Option<Resync>,
    /// What the responder sends us, from its last page.
    policy: Option<ExportPolicy>,
    /// `covered_through` of the last applied page.
    claimed: u64,
    /// The last page said the responder holds more above its mark than it
    /// named: a complete resync must not drop on its word.
    names_cut: bool,
    stage: Stage,
}

/// The part: anti-entropy state of one center.
#[derive(Debug, Clone)]
pub struct Pulls {
    me: String,
    /// Records asked per page.
    page_records: usize,
    runs: BTreeMap<String, Run>,
    next_call: u64,
    /// When each (peer, origin) was last re-pulled because digests differed.
    last_repair_ms: HashMap<(String, String), u64>,
    unproven: Unproven,
    requests: SyncRequests,
    /// A full sync we asked for has arrived complete.
    full_sync_done: bool,
    /// Peers we push a full sync to right now.
    pushing_to: HashSet<String>,
    stats: PullStats,
}

impl Pulls {
    /// The part of center `me`, asking `page_records` per page (clamped to
    /// [`PULL_PAGE_RECORDS_MAX`]).
    pub fn new(me: impl Into<String>, page_records: usize) -> Self {
        Pulls {
            me: me.into(),
            page_records: page_limit(page_records),
            runs: BTreeMap::new(),
            next_call: 0,
            last_repair_ms: HashMap::new(),
            unproven: Unproven::default(),
            requests: SyncRequests::default(),
            full_sync_done: false,
            pushing_to: HashSet::new(),
            stats: PullStats::default(),
        }
    }

    /// No pull runs.
    pub fn is_idle(&self) -> bool {
        self.runs.is_empty()
    }

    /// A pull of `origin` runs.
    pub fn is_running(&self, origin: &str) -> bool {
        self.runs.contains_key(origin)
    }

    pub fn stats(&self) -> PullStats {
        self.stats
    }

    /// Whether `peer` reporting `origin` through `claimed` may start pulls
    /// and count as being behind: not a claim a pull from it could not back.
    pub fn credible(&self, peer: &str, origin: &str, claimed: u64) -> bool {
        self.unproven.counts(peer, origin, claimed)
    }

    /// Whether a full sync we asked for has arrived complete.
    pub fn full_sync_done(&self) -> bool {
        self.full_sync_done
    }

    /// A crash: nothing of the part survives (pulls, repair turns, requests
    /// and unproven claims are all relearnt) but the call numbers, so an
    /// answer to a call from before is never taken for a new one's.
    pub fn reset(&mut self) {
        let next_call = self.next_call;
        *self = Pulls::new(std::mem::take(&mut self.me), self.page_records);
        self.next_call = next_call;
    }
}
