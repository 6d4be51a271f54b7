//! Part `link` of the mesh machine (see the module docs of `mesh`): every
//! peer's lifecycle and beats, and this center's node state.
//!
//! It sequences the decisions of [`crate::lifecycle`] (the state table),
//! [`crate::node_state`] and [`crate::sync`] (watermark deltas, digest
//! slices, what a beat makes us pull, when a center has caught up):
//! - on the `Beat` timer (every interval): HELLO to a peer not yet
//!   introduced, a heartbeat to the others, whole every
//!   [`crate::sync::FULL_BEAT_EVERY`] beats and otherwise only the marks
//!   changed since the last beat the peer answered, with a rotating slice
//!   of digests. A call still unanswered at the next beat counted as failed
//!   (each call has [`lifecycle::beat_deadline_ms`]); its late answer is
//!   ignored;
//! - a HELLO answered introduces the peer, and its first (whole) heartbeat
//!   leaves at once;
//! - on the `Judge` timer (every [`lifecycle::judge_every_ms`]) every
//!   lifecycle is judged on its deadlines, whatever the calls are doing;
//! - a beat received (a heartbeat, or the answer to ours) updates the
//!   peer's marks, interval (clamped), announced state and lifecycle,
//!   compares digests at equal marks and names the origins to pull;
//! - the node state follows how many peers answer our heartbeats
//!   (`reachable`), and asks a peer for a full sync when this center knows
//!   nothing yet.
//!
//! What it needs of the replica (marks, digests, whether pulls run) it asks
//! through [`Replica`], implemented by the caller. Peers are named by their
//! index in the list given to [`Link::new`].
//!
//! Must never: perform I/O, read a clock, pull, apply records or move a
//! watermark (it emits [`Command::StartPull`], [`Command::Repair`],
//! [`Command::RequestFullSync`] for the parts that do), or build HELLO's
//! body (the runtime does, `wire::hello`).

use crate::constants::{BEAT_INTERVAL_DEFAULT_MS, BEAT_INTERVAL_MAX_MS, BEAT_INTERVAL_MIN_MS, DIGESTS_PER_BEAT};
use crate::digest::SetDigest;
use crate::lifecycle::{self, PeerLifecycle, PeerState, Transition};
use crate::node_state::NodeState;
use crate::policy::ExportPolicy;
use crate::sync::{self as ae, PeerMarks};
use crate::wire::beat::{Beat, BeatPolicy, Digest};
use std::collections::{BTreeMap, HashMap};

#[cfg(test)]
mod tests;

/// The timers of this part; each is armed once at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// Send HELLO or a heartbeat to every peer (every interval).
    Beat,
    /// Judge every lifecycle (every [`lifecycle::judge_every_ms`]).
    Judge,
}

/// What the runtime must do. Peers are indices into [`Link::new`]'s list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Call HELLO on `peer` (its body is the runtime's, `wire::hello`);
    /// report [`Link::on_hello_answered`] or [`Link::on_call_failed`] with
    /// `call`. Give up at `deadline_ms`: the machine already counts it
    /// failed then.
    SendHello { peer: usize, call: u64, deadline_ms: u64 },
    /// Call `POST /heartbeat/node/:me` on `peer` with `beat`; report
    /// [`Link::on_beat_answered`] or [`Link::on_call_failed`] with `call`,
    /// by `deadline_ms` at the latest.
    SendBeat {
        peer: usize,
        call: u64,
        beat: Beat,
        deadline_ms: u64,
    },
    /// Fire `timer` at `at_ms` (this center's clock), replacing any earlier
    /// arming of it.
    Schedule { timer: Timer, at_ms: u64 },
    /// A peer's lifecycle changed (for logs, metrics and views of it).
    LifecycleChanged {
        peer: usize,
        from: PeerState,
        to: PeerState,
    },
    /// This center's node state changed: client writes are accepted iff
    /// [`NodeState::accepts_updates`].
    NodeStateChanged {
        from: NodeState,
        to: NodeState,
        reachable: usize,
    },
    /// `peer` holds `origin` further than we do: pull it from there from
    /// our mark (unless a pull of `origin` runs; the pulls part decides).
    StartPull { peer: usize, origin: String },
    /// `peer`'s digests of `origin` differ from ours at equal marks: a
    /// repair (a re-pull from seq 0) is wanted; the pulls part decides
    /// when.
    Repair { peer: usize, origin: String },
    /// This center knows nothing of the mesh yet: ask `peer` for a full
    /// sync (DRiP §5.6; the pulls part runs it).
    RequestFullSync { peer: usize },
    /// `peer` said in its own beat that it has reached `seq` of its own
    /// origin: its ceiling rises (`sync::Ceilings::witness`), and a mark of
    /// ours above it is reset and re-pulled; report
    /// [`Link::on_mark_reset`] then.
    OriginSpoke { peer: usize, seq: u64 },
}

/// What this part asks of the replica (implemented by the runtime).
pub trait Replica {
    /// Our watermarks, our own origin included (its last issued seq).
    fn marks(&self) -> HashMap<String, u64>;
    /// Our watermark of `origin`.
    fn mark(&self, origin: &str) -> u64;
    /// Our digests of `origin`'s versions, keyed `kind` or `kind@class`
    /// ([`ae::digest_key`]).
    fn class_digests(&self, origin: &str) -> BTreeMap<String, SetDigest>;
    /// Whether no pull runs.
    fn pulls_idle(&self) -> bool;
    /// Whether we hold the key of `origin` (we pull only what we can check).
    fn knows(&self, _origin: &str) -> bool {
        true
    }
    /// Whether `peer` claiming `origin` through `claimed` is news, not a
    /// claim a pull from it already failed to back (`sync::Unproven`).
    fn credible(&self, _peer: &str, _origin: &str, _claimed: u64) -> bool {
        true
    }
    /// Whether a full sync we asked for has arrived.
    fn full_sync_received(&self) -> bool {
        false
    }
}

/// The call to a peer awaiting its answer.
#[derive(Debug, Clone)]
enum Call {
    Hello {
        n: u64,
    },
    /// `sent`: our whole map that the beat described.
    Beat {
        n: u64,
        sent: HashMap<String, u64>,
    },
}

impl Call {
    fn n(&self) -> u64 {
        match self {
            Call::Hello { n } | Call::Beat { n, .. } => *n,
        }
    }
}

/// One peer as this part sees it.
#[derive(Debug, Clone)]
pub struct PeerLink {
    id: String,
    /// What we send it (its beats' digest filter, our beats' `policy`).
    policy: ExportPolicy,
    life: PeerLifecycle,
    /// Whether its last heartbeat (or HELLO) call was answered (DRiP §5.7).
    reachable: bool,
    /// The DRiP state it last announced.
    announced: Option<NodeState>,
    /// Its marks, from its beats.
    marks: PeerMarks,
    /// Whether its digests matched ours at equal marks (last compared).
    digest_match: Option<bool>,
    /// Our marks as of the last beat it answered (deltas start there).
    acked: HashMap<String, u64>,
    beats_sent: u64,
    /// Where the next beat's slice of digests starts.
    digest_cursor: usize,
    call: Option<Call>,
}

impl PeerLink {
    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn lifecycle(&self) -> &PeerLifecycle {
        &self.life
    }
    pub fn state(&self) -> PeerState {
        self.life.state()
    }
    pub fn reachable(&self) -> bool {
        self.reachable
    }
    pub fn announced(&self) -> Option<NodeState> {
        self.announced
    }
    /// Its marks as of its latest beat.
    pub fn marks(&self) -> &HashMap<String, u64> {
        self.marks.latest()
    }
    pub fn digest_match(&self) -> Option<bool> {
        self.digest_match
    }
}

/// Peer lifecycles, beats and node state of one center.
#[derive(Debug, Clone)]
pub struct Link {
    me: String,
    interval_ms: u64,
    peers: Vec<PeerLink>,
    state: NodeState,
    /// When this center entered `sync`, to judge when it has caught up.
    sync_since_ms: Option<u64>,
    /// A full sync was asked for (once per link): until then a center that
    /// knows nothing of the mesh starts no pulls, so it catches up by the
    /// full sync (DRiP §5.6) whether a beat or its own state change comes
    /// first.
    full_sync_asked: bool,
    /// Number of the last call made (HELLO and heartbeats alike).
    last_call: u64,
}

impl Default for Link {
    /// A center without peers (a placeholder while a runtime borrows the
    /// real one).
    fn default() -> Self {
        Link::new("", 1, [])
    }
}

impl Link {
    /// The part for center `me` beating every `interval_ms` to `peers`
    /// (id, what we send it), all KNOWN (address and key configured).
    pub fn new(me: &str, interval_ms: u64, peers: impl IntoIterator<Item = (String, ExportPolicy)>) -> Self {
        let peers: Vec<PeerLink> = peers
            .into_iter()
            .map(|(id, policy)| PeerLink {
                id,
                policy,
                life: PeerLifecycle::known(interval_ms),
                reachable: false,
                announced: None,
                marks: PeerMarks::default(),
                digest_match: None,
                acked: HashMap::new(),
                beats_sent: 0,
                digest_cursor: 0,
                call: None,
            })
            .collect();
        Link {
            me: me.to_string(),
            interval_ms,
            state: NodeState::initial(!peers.is_empty()),
            peers,
            sync_since_ms: None,
            full_sync_asked: false,
            last_call: 0,
        }
    }

    /// Adds peer `id` (what we send it: `policy`) at runtime, KNOWN: it is
    /// said HELLO at the next beat. Returns its index, or `None` (nothing
    /// changed) if a peer of that id is already here. Peers are never
    /// removed, so indexes stay valid.
    pub fn add_peer(&mut self, id: &str, policy: ExportPolicy) -> Option<usize> {
        if self.position(id).is_some() {
            return None;
        }
        self.peers.push(PeerLink {
            id: id.to_string(),
            policy,
            life: PeerLifecycle::known(self.interval_ms),
            reachable: false,
            announced: None,
            marks: PeerMarks::default(),
            digest_match: None,
            acked: HashMap::new(),
            beats_sent: 0,
            digest_cursor: 0,
            call: None,
        });
        Some(self.peers.len() - 1)
    }

    /// The same part numbering its calls after `last_call`, so a runtime
    /// that restarts it (a simulated restart, where answers to the calls of
    /// the incarnation before may still arrive) never takes an old answer
    /// for a new call.
    pub fn calls_after(mut self, last_call: u64) -> Self {
        self.last_call = last_call;
        self
    }

    /// The number of the last call made.
    pub fn last_call(&self) -> u64 {
        self.last_call
    }

    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
    }
    pub fn node_state(&self) -> NodeState {
        self.state
    }
    pub fn peers(&self) -> &[PeerLink] {
        &self.peers
    }
    pub fn peer(&self, peer: usize) -> &PeerLink {
        &self.peers[peer]
    }
    /// The index of the peer named `id`.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.peers.iter().position(|p| p.id == id)
    }

    /// Arms the timers: the first beat now, the first judgment a judge
    /// step later.
    pub fn start(&mut self, now_ms: u64, out: &mut Vec<Command>) {
        out.push(Command::Schedule {
            timer: Timer::Beat,
            at_ms: now_ms,
        });
        out.push(Command::Schedule {
            timer: Timer::Judge,
            at_ms: now_ms + lifecycle::judge_every_ms(self.interval_ms),
        });
    }

    /// For a mesh that has been up a while (the simulator's scale study):
    /// every peer introduced, beating both ways and answering; `active`.
    pub fn bootstrap(&mut self, now_ms: u64) {
        for p in &mut self.peers {
            p.life.hello_answered(now_ms);
            p.life.beat_received(now_ms, self.interval_ms);
            p.life.beat_acked(now_ms);
            p.reachable = true;
        }
        self.state = NodeState::Active;
    }

    /// A timer fired.
    pub fn on_timer(&mut self, now_ms: u64, timer: Timer, replica: &impl Replica, out: &mut Vec<Command>) {
        match timer {
            Timer::Beat => {
                for i in 0..self.peers.len() {
                    self.beat_peer(now_ms, i, replica, out);
                }
                out.push(Command::Schedule {
                    timer: Timer::Beat,
                    at_ms: now_ms + self.interval_ms,
                });
            }
            Timer::Judge => {
                self.judge(now_ms, out);
                out.push(Command::Schedule {
                    timer: Timer::Judge,
                    at_ms: now_ms + lifecycle::judge_every_ms(self.interval_ms),
                });
            }
        }
        self.reassess(now_ms, replica, out);
    }

    /// Judges every lifecycle on its deadlines now (the `Judge` timer does;
    /// a runtime may also before it looks at the states).
    pub fn judge(&mut self, now_ms: u64, out: &mut Vec<Command>) {
        for i in 0..self.peers.len() {
            let t = self.peers[i].life.tick(now_ms);
            changed(i, t, out);
        }
    }

    /// The beat tick of one peer: the previous call, if still unanswered,
    /// failed; then HELLO or a heartbeat.
    fn beat_peer(&mut self, now_ms: u64, i: usize, replica: &impl Replica, out: &mut Vec<Command>) {
        if self.peers[i].call.take().is_some() {
            // Unanswered within its interval (beat_deadline_ms).
            self.peers[i].reachable = false;
        }
        if self.peers[i].life.state() <= PeerState::Known {
            self.peers[i].reachable = false;
            let n = self.next_call();
            self.peers[i].call = Some(Call::Hello { n });
            out.push(Command::SendHello {
                peer: i,
                call: n,
                deadline_ms: now_ms + lifecycle::beat_deadline_ms(self.interval_ms),
            });
        } else {
            let full = self.peers[i].beats_sent.is_multiple_of(ae::FULL_BEAT_EVERY);
            self.send_beat(now_ms, i, full, replica, out);
        }
        let t = self.peers[i].life.tick(now_ms);
        changed(i, t, out);
    }

    fn next_call(&mut self) -> u64 {
        self.last_call += 1;
        self.last_call
    }

    fn send_beat(&mut self, now_ms: u64, i: usize, full: bool, replica: &impl Replica, out: &mut Vec<Command>) {
        let (beat, sent) = self.beat_for(i, full, replica);
        let n = self.next_call();
        let p = &mut self.peers[i];
        p.beats_sent += 1;
        p.call = Some(Call::Beat { n, sent });
        out.push(Command::SendBeat {
            peer: i,
            call: n,
            beat,
            deadline_ms: now_ms + lifecycle::beat_deadline_ms(self.interval_ms),
        });
    }

    /// A beat for peer `i`: whole, or the marks changed since the last beat
    /// it answered; a slice of digests; with our whole map it describes.
    fn beat_for(&mut self, i: usize, full: bool, replica: &impl Replica) -> (Beat, HashMap<String, u64>) {
        let now = replica.marks();
        let digests = self.digests_for(i, &now, replica);
        let p = &self.peers[i];
        let full = full || p.acked.is_empty();
        let beat = Beat {
            state: Some(self.state),
            interval_ms: Some(self.interval_ms),
            watermarks: ae::beat_marks(&now, &p.acked, full).into_iter().collect(),
            full,
            digests,
            policy: Some(BeatPolicy::from(&p.policy)),
        };
        (beat, now)
    }

    /// Our digests for a slice of the origins on which peer `i` last
    /// reported our mark (round robin), for the classes it receives.
    fn digests_for(
        &mut self,
        i: usize,
        ours: &HashMap<String, u64>,
        replica: &impl Replica,
    ) -> BTreeMap<String, BTreeMap<String, Digest>> {
        let p = &mut self.peers[i];
        let cursor = p.digest_cursor;
        p.digest_cursor = p.digest_cursor.wrapping_add(DIGESTS_PER_BEAT);
        let p = &self.peers[i];
        ae::digest_slice(ours, p.marks.latest(), cursor, DIGESTS_PER_BEAT)
            .into_iter()
            .map(|origin| {
                let d = replica
                    .class_digests(&origin)
                    .into_iter()
                    .filter(|(k, _)| {
                        let (kind, class) = ae::split_digest_key(k);
                        p.policy.sees_class(kind, class)
                    })
                    .map(|(k, d)| (k, Digest(d)))
                    .collect();
                (origin, d)
            })
            .collect()
    }

    /// `peer` answered our HELLO `call` positively: it is introduced, and
    /// its first heartbeat (whole) leaves now.
    pub fn on_hello_answered(
        &mut self,
        now_ms: u64,
        peer: usize,
        call: u64,
        replica: &impl Replica,
        out: &mut Vec<Command>,
    ) {
        let p = &mut self.peers[peer];
        if !matches!(p.call, Some(Call::Hello { n }) if n == call) {
            return; // a late answer: that call already counted as failed
        }
        p.call = None;
        let t = p.life.hello_answered(now_ms);
        changed(peer, t, out);
        if p.life.state() < PeerState::Introduced {
            return;
        }
        p.reachable = true;
        // A (re)introduced peer gets our whole map.
        p.acked.clear();
        self.send_beat(now_ms, peer, true, replica, out);
        self.reassess(now_ms, replica, out);
    }

    /// Our `call` to `peer` failed (refused, an error, or its deadline).
    pub fn on_call_failed(
        &mut self,
        now_ms: u64,
        peer: usize,
        call: u64,
        replica: &impl Replica,
        out: &mut Vec<Command>,
    ) {
        let p = &mut self.peers[peer];
        if p.call.as_ref().map(Call::n) != Some(call) {
            return;
        }
        p.call = None;
        p.reachable = false;
        let t = p.life.tick(now_ms);
        changed(peer, t, out);
        self.reassess(now_ms, replica, out);
    }

    /// `peer` answered our heartbeat `call` positively; `answer` is its own
    /// beat, when it sent one (a plain DRiP node answers with none).
    pub fn on_beat_answered(
        &mut self,
        now_ms: u64,
        peer: usize,
        call: u64,
        answer: Option<Beat>,
        replica: &impl Replica,
        out: &mut Vec<Command>,
    ) {
        let p = &mut self.peers[peer];
        let sent = match p.call.take() {
            Some(Call::Beat { n, sent }) if n == call => sent,
            other => {
                p.call = other; // a late answer: that call already failed
                return;
            }
        };
        p.acked = sent;
        p.reachable = true;
        let t = p.life.beat_acked(now_ms);
        changed(peer, t, out);
        if let Some(b) = answer.filter(|b| b.state.is_some()) {
            self.receive(now_ms, peer, b, replica, out);
        }
        self.reassess(now_ms, replica, out);
    }

    /// A heartbeat from `peer`; returns our answer, our own beat for it.
    /// The answer is made before the heartbeat is taken in: its digest
    /// slice follows the marks the peer reported before. (Made after, the
    /// slice lands on origins whose floods are still in flight, and in the
    /// simulator the re-pulls of such transient differences held catch-ups
    /// back: convergence after healing went from 250 ms to 1.5 s and more.)
    pub fn on_beat_received(
        &mut self,
        now_ms: u64,
        peer: usize,
        beat: Beat,
        replica: &impl Replica,
        out: &mut Vec<Command>,
    ) -> Beat {
        let answer = self.beat_for(peer, false, replica).0;
        self.receive(now_ms, peer, beat, replica, out);
        answer
    }

    /// `peer` introduced itself to us (its HELLO): it may have lost its view
    /// of our marks, so our next beat to it is whole.
    pub fn on_hello_received(&mut self, peer: usize) {
        self.peers[peer].acked.clear();
    }

    /// `peer` announced its state (`POST /node/:id/active|inactive`).
    pub fn on_announce(&mut self, peer: usize, state: NodeState) {
        self.peers[peer].announced = Some(state);
    }

    /// After [`Command::OriginSpoke`], the runtime reset our mark of
    /// `peer`'s origin: our digests no longer match its.
    pub fn on_mark_reset(&mut self, peer: usize) {
        self.peers[peer].digest_match = Some(false);
    }

    /// A beat from `peer` (a heartbeat, or the answer to ours).
    fn receive(&mut self, now_ms: u64, peer: usize, beat: Beat, replica: &impl Replica, out: &mut Vec<Command>) {
        let Beat {
            state,
            interval_ms,
            watermarks,
            full,
            digests,
            policy,
        } = beat;
        let interval_ms = clamp_interval_ms(interval_ms);
        let p = &mut self.peers[peer];
        let prev = p.marks.beat(watermarks.into_iter().collect(), full);
        let latest = p.marks.latest().clone();
        if let Some(&own) = latest.get(&p.id) {
            out.push(Command::OriginSpoke { peer, seq: own });
        }
        self.compare_digests(peer, &latest, &digests, policy.map(ExportPolicy::from), replica, out);
        let p = &mut self.peers[peer];
        let t = p.life.beat_received(now_ms, interval_ms);
        changed(peer, t, out);
        if state.is_some() {
            p.announced = state;
        }
        // A claim a pull from this peer could not back starts no more pulls.
        let id = p.id.clone();
        let credible = |m: &HashMap<String, u64>| -> HashMap<String, u64> {
            m.iter()
                .filter(|(o, w)| replica.credible(&id, o, **w))
                .map(|(o, w)| (o.clone(), *w))
                .collect()
        };
        let origins = ae::origins_to_pull(
            &self.me,
            self.state,
            &credible(&latest),
            &credible(&prev),
            |o| replica.mark(o),
            |o| replica.knows(o),
        );
        if self.awaits_full_sync(replica) {
            return;
        }
        for origin in origins {
            out.push(Command::StartPull { peer, origin });
        }
    }

    /// Compares `peer`'s digests with ours where both hold the same mark;
    /// a difference on another origin than ours asks for a repair.
    fn compare_digests(
        &mut self,
        peer: usize,
        their_marks: &HashMap<String, u64>,
        digests: &BTreeMap<String, BTreeMap<String, Digest>>,
        their_policy: Option<ExportPolicy>,
        replica: &impl Replica,
        out: &mut Vec<Command>,
    ) {
        let mut all_match = None;
        for (origin, theirs) in digests {
            if their_marks.get(origin) != Some(&replica.mark(origin)) {
                continue;
            }
            let ours = replica.class_digests(origin);
            // A class it holds nothing of is absent from its beat: compare
            // ours too where its policy (sent along) would send it to us.
            let same = ae::digests_agree(theirs.iter().map(|(k, d)| (k.as_str(), &d.0)), &ours, |k| {
                let (kind, class) = ae::split_digest_key(k);
                their_policy.as_ref().is_some_and(|p| p.sees_class(kind, class))
            });
            all_match = Some(all_match.unwrap_or(true) && same);
            if !same && *origin != self.me {
                out.push(Command::Repair {
                    peer,
                    origin: origin.clone(),
                });
            }
        }
        if all_match.is_some() {
            self.peers[peer].digest_match = all_match;
        }
    }

    /// Whether some peer has told us of an origin it holds further than we
    /// (claims its pulls could not back aside).
    pub fn behind(&self, replica: &impl Replica) -> bool {
        self.peers.iter().any(|p| {
            p.marks
                .latest()
                .iter()
                .any(|(o, w)| *w > replica.mark(o) && replica.credible(&p.id, o, *w))
        })
    }

    /// Records `peer` reports that we lack (claims its pulls could not back
    /// aside), for operators.
    pub fn records_behind(&self, peer: usize, replica: &impl Replica) -> u64 {
        let p = &self.peers[peer];
        p.marks
            .latest()
            .iter()
            .filter(|(o, w)| replica.credible(&p.id, o, **w))
            .map(|(o, w)| w.saturating_sub(replica.mark(o)))
            .sum()
    }

    /// A center that knows nothing of the mesh yet and has not asked for a
    /// full sync.
    fn awaits_full_sync(&self, replica: &impl Replica) -> bool {
        !self.full_sync_asked && !replica.full_sync_received() && replica.marks().values().all(|w| *w == 0)
    }

    /// Re-judges the node state from how many peers answer, and whether a
    /// catch-up is done.
    fn reassess(&mut self, now_ms: u64, replica: &impl Replica, out: &mut Vec<Command>) {
        let reachable = self.peers.iter().filter(|p| p.reachable).count();
        // Caught up: in sync for two beat intervals (so every reachable peer
        // has told us its marks), no pull running, and nobody ahead.
        let caught_up = ae::caught_up(
            self.sync_since_ms,
            now_ms,
            self.interval_ms,
            replica.pulls_idle(),
            self.behind(replica),
        );
        let (next, start_sync) = self.state.next(reachable, caught_up);
        if start_sync {
            self.sync_since_ms = Some(now_ms);
            // A center that knows nothing of the mesh yet (a new one) asks a
            // peer for a full sync (DRiP §5.6); others catch up by pulls.
            if self.awaits_full_sync(replica) {
                if let Some(peer) = self.peers.iter().position(|p| p.reachable) {
                    out.push(Command::RequestFullSync { peer });
                    self.full_sync_asked = true;
                }
            }
        }
        if next != self.state {
            out.push(Command::NodeStateChanged {
                from: self.state,
                to: next,
                reachable,
            });
            self.state = next;
        }
    }
}

/// The interval a peer's beat is judged by: what it announced, within
/// [`BEAT_INTERVAL_MIN_MS`]..=[`BEAT_INTERVAL_MAX_MS`], or
/// [`BEAT_INTERVAL_DEFAULT_MS`] when it announced none.
pub fn clamp_interval_ms(announced: Option<u64>) -> u64 {
    announced
        .unwrap_or(BEAT_INTERVAL_DEFAULT_MS)
        .clamp(BEAT_INTERVAL_MIN_MS, BEAT_INTERVAL_MAX_MS)
}

fn changed(peer: usize, t: Option<Transition>, out: &mut Vec<Command>) {
    if let Some(Transition { from, to }) = t {
        out.push(Command::LifecycleChanged { peer, from, to });
    }
}
