//! Anti-entropy decisions (DESIGN.md "Anti-entropy", PROTOCOL.md "Pulls" and
//! "Tombstone horizon"): per-origin watermarks, what a peer's beat makes us
//! pull, when a center has caught up, and which records a replacing resync
//! drops.
//!
//! Part `mesh::pulls` strings these into the anti-entropy sequence the
//! node and the simulator both run; neither decides any of it on its own.

use crate::node_state::NodeState;
use std::collections::{HashMap, HashSet};

/// Per origin: every seq up to the mark is applied here or was covered by a
/// message or pull answer that spoke for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    by_origin: HashMap<String, u64>,
}

impl Marks {
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, u64)>) -> Self {
        Marks {
            by_origin: pairs.into_iter().collect(),
        }
    }

    pub fn get(&self, origin: &str) -> u64 {
        self.by_origin.get(origin).copied().unwrap_or(0)
    }

    /// A message or pull answer covered `from..=through` of `origin`: the
    /// mark moves only if that range touches it (no gap may be skipped).
    /// Returns whether it moved.
    pub fn advance(&mut self, origin: &str, from: u64, through: u64) -> bool {
        let w = self.by_origin.entry(origin.to_string()).or_insert(0);
        let contiguous = from <= w.saturating_add(1);
        #[cfg(feature = "broken")]
        let contiguous = contiguous || crate::broken::is(crate::broken::Variant::WatermarkSkipsGaps);
        if contiguous && through > *w {
            *w = through;
            true
        } else {
            false
        }
    }

    /// Sets a mark outright (a resync adopting the peer's purge mark).
    pub fn raise(&mut self, origin: &str, to: u64) -> bool {
        let w = self.by_origin.entry(origin.to_string()).or_insert(0);
        if to > *w {
            *w = to;
            true
        } else {
            false
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_origin.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_origin.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &u64)> {
        self.by_origin.iter()
    }

    pub fn to_map(&self) -> HashMap<String, u64> {
        self.by_origin.clone()
    }
}

impl Marks {
    /// Forgets the mark of `origin`: everything of it is asked for again
    /// (a mark found ahead of anything its origin has shown). Merging is
    /// idempotent, so this costs a re-pull, never data.
    pub fn reset(&mut self, origin: &str) -> bool {
        self.by_origin.remove(origin).is_some_and(|w| w > 0)
    }
}

/// Per origin, the highest seq the origin is known to have reached: what
/// the origin itself said (its beats, its own floods, its pull answers and
/// full-sync marks about itself), and the highest seq of its signed records
/// seen here. No watermark of an origin we hear directly (a peer) may pass
/// it: a relay's claim above it (a flood's counter, a pull's
/// `covered_through`, a full sync's marks) is cut down to it, so one peer
/// cannot make us stop asking for another's changes.
///
/// An origin that is not our peer never speaks to us, and what a relay
/// covers of it by policy (records we may not see) has no record to show
/// for it; for such origins relays are trusted, as before. Bounding them too
/// would need coverage statements signed by the origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ceilings {
    by_origin: HashMap<String, u64>,
    /// The origins we hear directly: only their marks are bounded.
    direct: HashSet<String>,
}

impl Ceilings {
    /// Ceilings for a center whose peers are `direct`.
    pub fn for_peers(direct: impl IntoIterator<Item = String>) -> Self {
        Ceilings {
            by_origin: HashMap::new(),
            direct: direct.into_iter().collect(),
        }
    }

    /// `origin` became a peer at runtime: its marks are bounded from now on.
    /// Returns false (nothing changed) if it already was one.
    pub fn add_direct(&mut self, origin: &str) -> bool {
        self.direct.insert(origin.to_string())
    }

    /// `origin` has reached `seq` (its own word, or a record it signed).
    pub fn witness(&mut self, origin: &str, seq: u64) {
        let c = self.by_origin.entry(origin.to_string()).or_insert(0);
        *c = (*c).max(seq);
    }

    pub fn get(&self, origin: &str) -> u64 {
        self.by_origin.get(origin).copied().unwrap_or(0)
    }

    /// A claim that `origin` is covered through `claimed`, cut to what the
    /// origin has shown if we hear it directly.
    pub fn bound(&self, origin: &str, claimed: u64) -> u64 {
        #[cfg(feature = "broken")]
        if crate::broken::is(crate::broken::Variant::CeilingsTrustRelays) {
            return claimed;
        }
        if self.direct.contains(origin) {
            claimed.min(self.get(origin))
        } else {
            claimed
        }
    }

    /// Whether a flood in `origin`'s name whose counter is `counter` is
    /// backed by what the origin has shown (its own word or a record it
    /// signed). A relayed counter above that is a relay's unbacked claim: its
    /// records are applied (signed, merging is idempotent), but it must not
    /// mark the origin's dedup window (that would make the origin's genuine
    /// floods look old and stop their relaying) nor be relayed; the origin's
    /// own copy, which raises the ceiling first, will be. Only origins we
    /// hear directly are judged, as in [`Ceilings::bound`].
    pub fn backs(&self, origin: &str, counter: u64) -> bool {
        !self.direct.contains(origin) || counter <= self.get(origin)
    }

    /// Whether our mark of `origin` is ahead of everything the origin has
    /// shown, as it can only be if it was raised by a false claim (before
    /// ceilings existed, say): such a mark hides missing records from pulls
    /// and digests alike, and must be reset. Judge it only once the origin
    /// itself has spoken (its beat), so the ceiling holds its own word.
    pub fn exceeded_by(&self, origin: &str, our_mark: u64) -> bool {
        self.direct.contains(origin) && our_mark > self.get(origin)
    }
}

/// Peers' claims about origins that a pull from them could not back (the
/// claim was above what the origin has shown; see [`Ceilings`]). Such a
/// claim no longer starts pulls, keeps a center in `sync`, or counts as
/// records behind, until the peer claims more.
#[derive(Debug, Clone, Default)]
pub struct Unproven {
    by: HashMap<(String, String), u64>,
}

/// Peer-origin pairs [`Unproven`] remembers at most; past it, the oldest
/// notes are not kept (a forgotten note costs one useless pull).
pub const UNPROVEN_MAX: usize = 65_536;

impl Unproven {
    /// A pull from `peer` ended with it claiming `origin` through `claimed`,
    /// which we could not accept.
    pub fn note(&mut self, peer: &str, origin: &str, claimed: u64) {
        if self.by.len() >= UNPROVEN_MAX {
            self.by.clear();
        }
        self.by.insert((peer.to_string(), origin.to_string()), claimed);
    }

    /// Whether `peer` reporting `origin` through `claimed` is news, not a
    /// claim it already failed to back.
    pub fn counts(&self, peer: &str, origin: &str, claimed: u64) -> bool {
        self.by
            .get(&(peer.to_string(), origin.to_string()))
            .is_none_or(|c| claimed > *c)
    }
}

/// How long a requested full sync may take to arrive (its last message).
pub const FULL_SYNC_WINDOW_MS: u64 = 10 * 60 * 1000;

/// The full syncs this center asked for (DRiP §5.6: a node asks a peer with
/// `PUT /sync/node/:me`, and the peer pushes). `sync` messages are taken
/// only from a peer asked, until its complete message arrives or
/// [`FULL_SYNC_WINDOW_MS`] passes; anything else is sync traffic nobody asked
/// for, and is refused.
#[derive(Debug, Clone, Default)]
pub struct SyncRequests {
    asked_ms: HashMap<String, u64>,
}

impl SyncRequests {
    /// We are asking `peer` for a full sync now.
    pub fn asked(&mut self, peer: &str, now_ms: u64) {
        self.asked_ms.insert(peer.to_string(), now_ms);
    }

    /// The request to `peer` failed, or its sync completed.
    pub fn done(&mut self, peer: &str) {
        self.asked_ms.remove(peer);
    }

    /// Whether a `sync` message from `peer` answers one of our requests.
    pub fn admits(&self, peer: &str, now_ms: u64) -> bool {
        self.asked_ms
            .get(peer)
            .is_some_and(|t| now_ms <= t + FULL_SYNC_WINDOW_MS)
    }
}

/// What one peer last told us of its marks.
#[derive(Debug, Clone, Default)]
pub struct PeerMarks {
    last: HashMap<String, u64>,
}

impl PeerMarks {
    /// The marks of its latest beat.
    pub fn latest(&self) -> &HashMap<String, u64> {
        &self.last
    }

    /// Records a beat's marks, a whole map (`full`) or only those changed
    /// since the sender's last acknowledged beat; returns the view before.
    pub fn beat(&mut self, marks: HashMap<String, u64>, full: bool) -> HashMap<String, u64> {
        if full {
            std::mem::replace(&mut self.last, marks)
        } else {
            let before = self.last.clone();
            self.last.extend(marks);
            before
        }
    }

    /// Whether it holds some origin further than `ours`.
    pub fn ahead_of(&self, ours: impl Fn(&str) -> u64) -> bool {
        self.last.iter().any(|(o, w)| *w > ours(o))
    }
}

/// Every this many beats to a peer, the whole watermark map goes (also the
/// first after an introduction); the others carry only what changed since
/// the last beat the peer answered. A peer that lost its view (a restart)
/// has it whole again within this many beats.
pub const FULL_BEAT_EVERY: u64 = 30;

/// The watermarks a beat carries: all of `now`, or those that differ from
/// `acked` (what the peer holds from our last answered beat).
pub fn beat_marks(now: &HashMap<String, u64>, acked: &HashMap<String, u64>, full: bool) -> HashMap<String, u64> {
    if full {
        return now.clone();
    }
    now.iter()
        .filter(|(o, w)| acked.get(*o) != Some(*w))
        .map(|(o, w)| (o.clone(), *w))
        .collect()
}

/// Origins to pull from a peer after its beat.
///
/// Floods in flight arrive within milliseconds, so a lead that outlives one
/// beat interval (it was already in the `previous` beat) means records were
/// really missed; pulling on every small lead would race the floods. A
/// center in `sync` has nothing in flight and pulls at the first gap
/// (`latest`). An inactive center takes no updates but may recover its own
/// versions. Origins we hold no key for (`known` false) are skipped.
pub fn origins_to_pull(
    me: &str,
    state: NodeState,
    latest: &HashMap<String, u64>,
    previous: &HashMap<String, u64>,
    ours: impl Fn(&str) -> u64,
    known: impl Fn(&str) -> bool,
) -> Vec<String> {
    let compare = if state == NodeState::Sync { latest } else { previous };
    let mut out: Vec<String> = compare
        .iter()
        .filter(|(o, theirs)| {
            **theirs > ours(o) && (o.as_str() == me || known(o)) && (o.as_str() == me || state.accepts_updates())
        })
        .map(|(o, _)| o.clone())
        .collect();
    out.sort();
    out
}

/// A center in `sync` has caught up when it has been there two beat
/// intervals (so every reachable peer has told it its marks), no pull runs
/// ([`crate::mesh::pulls::Pulls::is_idle`]),
/// and no peer is ahead of it.
pub fn caught_up(sync_since_ms: Option<u64>, now_ms: u64, interval_ms: u64, pulls_idle: bool, behind: bool) -> bool {
    sync_since_ms.is_some_and(|t| now_ms >= t + 2 * interval_ms) && pulls_idle && !behind
}

/// Whether a pull answer may carry a record of seq `seq`: only up to the
/// responder's own watermark. Above it the responder may hold versions that
/// arrived early, but cannot know of later ones (a deletion it missed), and
/// a puller that has purged that deletion would take the stale version back
/// (the simulator found this, seed 4943). The page ends there.
pub fn page_carries(seq: u64, our_mark: u64) -> bool {
    seq <= our_mark
}

/// Through which seq a pull answer page speaks for the origin: never past
/// the responder's own watermark (above it, it may hold some records that
/// arrived early, but not know of the others), and when the page is full,
/// not past its last record (the next page starts there).
pub fn page_covers(after: u64, last_in_page: u64, full: bool, our_mark: u64) -> u64 {
    let covered = if full { last_in_page.min(our_mark) } else { our_mark };
    covered.max(after)
}

/// Origins whose digests the next beat to a peer carries: those on which
/// the peer's last reported watermark equals ours, sorted, a slice of `n`
/// starting at `cursor` (round robin from beat to beat).
pub fn digest_slice(
    ours: &HashMap<String, u64>,
    theirs: &HashMap<String, u64>,
    cursor: usize,
    n: usize,
) -> Vec<String> {
    let mut eligible: Vec<&String> = ours
        .iter()
        .filter(|(o, w)| theirs.get(*o) == Some(*w))
        .map(|(o, _)| o)
        .collect();
    if eligible.is_empty() {
        return Vec::new();
    }
    eligible.sort();
    let start = cursor % eligible.len();
    eligible
        .iter()
        .cycle()
        .skip(start)
        .take(n.min(eligible.len()))
        .map(|o| o.to_string())
        .collect()
}

/// A digest's key in a beat: the kind for `public` records, `kind@class`
/// for the others.
pub fn digest_key(kind: &str, class: &str) -> String {
    if class == "public" {
        kind.to_string()
    } else {
        format!("{kind}@{class}")
    }
}

/// The (kind, class) a digest key names.
pub fn split_digest_key(key: &str) -> (&str, &str) {
    key.split_once('@').unwrap_or((key, "public"))
}

/// One digest-triggered re-pull per origin at most this often.
pub const REPAIR_EVERY_MS: u64 = 10_000;

/// Whether digests that differ at equal watermarks may re-pull an origin
/// now (last re-pulled at `last_ms`).
pub fn repair_due(last_ms: Option<u64>, now_ms: u64) -> bool {
    last_ms.is_none_or(|t| now_ms >= t + REPAIR_EVERY_MS)
}

/// Whether a peer's digests of one origin agree with ours: every class it
/// sent matches, and every class we hold that its policy would send us is
/// among them (a class it holds nothing of is absent from its beat).
pub fn digests_agree<'a, D: PartialEq + 'a>(
    theirs: impl IntoIterator<Item = (&'a str, &'a D)>,
    ours: &std::collections::BTreeMap<String, D>,
    they_send: impl Fn(&str) -> bool,
) -> bool {
    let mut seen = HashSet::new();
    for (k, d) in theirs {
        if ours.get(k) != Some(d) {
            return false;
        }
        seen.insert(k.to_string());
    }
    ours.keys().all(|k| seen.contains(k) || !they_send(k))
}

/// Whether a version brought by a digest repair (a re-pull from seq 0) may
/// be merged: always for a key held here (merging keeps the newer), but for
/// a key not held only above this center's purge mark of its origin (`seq >
/// purged_through`): below it, the key may be absent because its deletion
/// was purged here, and the peer's copy is what that deletion removed.
pub fn repair_may_apply(seq: u64, purged_through: u64, held: bool) -> bool {
    held || seq > purged_through
}

/// Whether a tombstone of `origin` with `seq`, past the horizon, may be
/// purged at a center whose (saved) watermark of that origin is `mark`: only
/// once the center has caught up with the origin through it. Before that, an
/// older version of the same key may still arrive by a catch-up pull from a
/// peer that missed the deletion, and without the tombstone nothing here
/// could tell it was deleted. A center's own tombstones are always covered.
pub fn purge_allowed(me: &str, origin: &str, seq: u64, mark: u64) -> bool {
    origin == me || mark >= seq
}

/// Whether a pull answer turns the pull into a replacing resync: the peer
/// purged deletions of `origin` above our mark, so we may hold records
/// deleted since. Never for our own origin.
pub fn resync_needed(me: &str, origin: &str, purged_through: u64, our_mark: u64) -> bool {
    #[cfg(feature = "broken")]
    let our_mark = if crate::broken::is(crate::broken::Variant::ResyncOffByOne) {
        our_mark.saturating_add(1)
    } else {
        our_mark
    };
    origin != me && purged_through > our_mark
}

/// A replacing resync of one origin in progress: the live records we held
/// when it began, less those the peer has sent since.
#[derive(Debug, Clone, Default)]
pub struct Resync {
    held: HashMap<(String, String), u64>,
    /// The peer's purge mark, adopted when the resync completes.
    pub purged: u64,
}

impl Resync {
    /// `held`: (kind, id, seq) of every live record of the origin held now.
    pub fn begin(held: impl IntoIterator<Item = (String, String, u64)>, purged: u64) -> Self {
        Resync {
            held: held.into_iter().map(|(k, i, s)| ((k, i), s)).collect(),
            purged,
        }
    }

    /// The peer sent a version of (kind, id).
    pub fn sent(&mut self, kind: &str, id: &str) {
        self.held.remove(&(kind.to_string(), id.to_string()));
    }

    /// After the peer sent everything through `covered`: the records to
    /// drop. `still(kind, id, seq)` answers whether we still hold that very
    /// version and the peer's policy would have sent it to us (otherwise it
    /// is withheld, not gone).
    pub fn drops(self, covered: u64, still: impl Fn(&str, &str, u64) -> bool) -> Vec<(String, String, u64)> {
        let mut out: Vec<(String, String, u64)> = self
            .held
            .into_iter()
            .filter(|((k, i), s)| *s <= covered && still(k, i, *s))
            .map(|((k, i), s)| (k, i, s))
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_tombstone_waits_for_the_watermark_to_cover_it() {
        assert!(!super::purge_allowed("c2", "c1", 96, 40), "behind the tombstone: kept");
        assert!(super::purge_allowed("c2", "c1", 96, 96));
        assert!(super::purge_allowed("c2", "c1", 96, 120));
        assert!(super::purge_allowed("c1", "c1", 96, 0), "own tombstones");
    }

    #[test]
    fn a_relayed_counter_is_backed_only_up_to_what_a_direct_origin_showed() {
        let mut c = Ceilings::for_peers(["c3".to_string()]);
        assert!(c.backs("c3", 0));
        assert!(!c.backs("c3", 1), "nothing shown yet");
        c.witness("c3", 5);
        assert!(c.backs("c3", 5));
        assert!(!c.backs("c3", 6));
        assert!(!c.backs("c3", 1_000_000_000));
        assert!(
            c.backs("c9", u64::MAX / 2),
            "origins heard only through relays are not judged"
        );
    }

    #[test]
    fn an_origin_added_as_a_peer_is_bounded_from_then_on() {
        let mut c = Ceilings::for_peers([]);
        assert!(c.backs("c3", 9), "not a peer: relays trusted");
        assert!(c.add_direct("c3"));
        assert!(!c.add_direct("c3"), "duplicate: unchanged");
        assert!(!c.backs("c3", 9));
        assert_eq!(c.bound("c3", 9), 0);
    }

    use super::*;

    #[test]
    fn marks_never_skip_a_gap() {
        let mut m = Marks::default();
        assert!(m.advance("a", 1, 5));
        assert!(!m.advance("a", 7, 9), "6 is missing");
        assert_eq!(m.get("a"), 5);
        assert!(m.advance("a", 6, 9));
        assert!(!m.advance("a", 2, 4), "never backwards");
        assert_eq!(m.get("a"), 9);
    }

    #[test]
    fn claims_never_pass_what_the_origin_has_shown() {
        let mut c = Ceilings::for_peers(["c3".to_string(), "c4".to_string()]);
        let mut m = Marks::default();
        // c3 announced 40 in its own beat; a relay claims 1e9.
        c.witness("c3", 40);
        assert!(m.advance("c3", 1, c.bound("c3", 1_000_000_000)));
        assert_eq!(m.get("c3"), 40);
        // A signed record of seq 45 is evidence too.
        c.witness("c3", 45);
        assert!(m.advance("c3", 41, c.bound("c3", 1_000_000_000)));
        assert_eq!(m.get("c3"), 45);
        // Nothing shown of c4: no claim moves its mark.
        assert!(!m.advance("c4", 1, c.bound("c4", 9)));
        // A mark raised before (persisted poison) is found ahead.
        let mut poisoned = Marks::from_pairs([("c3".to_string(), 1_000_000_000)]);
        assert!(c.exceeded_by("c3", poisoned.get("c3")));
        assert!(!c.exceeded_by("c3", 45));
        assert!(poisoned.reset("c3"));
        assert_eq!(poisoned.get("c3"), 0);
        // An origin that is not our peer never speaks to us: relays are
        // trusted for it (its filtered seqs have nothing to show).
        assert_eq!(c.bound("c9", 70), 70);
        assert!(!c.exceeded_by("c9", 70));
    }

    #[test]
    fn an_unbacked_claim_counts_once() {
        let mut u = Unproven::default();
        assert!(u.counts("c1", "c3", 20));
        u.note("c1", "c3", 20);
        assert!(!u.counts("c1", "c3", 20));
        assert!(!u.counts("c1", "c3", 19));
        assert!(u.counts("c1", "c3", 21), "a higher claim is news");
        assert!(u.counts("c2", "c3", 20), "per peer");
    }

    #[test]
    fn sync_messages_only_answer_a_request() {
        let mut r = SyncRequests::default();
        assert!(!r.admits("c1", 0), "nobody asked");
        r.asked("c1", 1000);
        assert!(r.admits("c1", 2000));
        assert!(!r.admits("c2", 2000), "another peer was not asked");
        assert!(!r.admits("c1", 1000 + FULL_SYNC_WINDOW_MS + 1), "too late");
        r.done("c1");
        assert!(!r.admits("c1", 2000), "complete: the request is spent");
    }

    #[test]
    fn pull_waits_one_beat_unless_syncing() {
        let prev: HashMap<String, u64> = [("b".to_string(), 3)].into();
        let latest: HashMap<String, u64> = [("b".to_string(), 9), ("c".to_string(), 4)].into();
        let ours = |_: &str| 3;
        let known = |_: &str| true;
        assert!(origins_to_pull("a", NodeState::Active, &latest, &prev, ours, known).is_empty());
        assert_eq!(
            origins_to_pull("a", NodeState::Sync, &latest, &prev, ours, known),
            vec!["b".to_string(), "c".to_string()]
        );
        assert!(origins_to_pull("a", NodeState::Inactive, &latest, &latest, ours, known).is_empty());
        let own: HashMap<String, u64> = [("a".to_string(), 9)].into();
        assert_eq!(
            origins_to_pull("a", NodeState::Inactive, &own, &own, ours, |_| false),
            vec!["a".to_string()]
        );
    }

    #[test]
    fn a_page_never_covers_past_the_responders_mark() {
        // Records 79, 83, 88 held, but only 1..=80 known complete.
        assert_eq!(page_covers(77, 88, true, 80), 80);
        assert_eq!(page_covers(77, 79, true, 80), 79);
        assert_eq!(page_covers(77, 88, false, 90), 90);
        assert_eq!(page_covers(77, 88, true, 10), 77, "never below where the page started");
    }

    #[test]
    fn delta_beats_rebuild_the_whole_view() {
        let now: HashMap<String, u64> = [("a".to_string(), 5), ("b".to_string(), 7)].into();
        let acked: HashMap<String, u64> = [("a".to_string(), 5), ("b".to_string(), 6)].into();
        let delta = beat_marks(&now, &acked, false);
        assert_eq!(delta, [("b".to_string(), 7)].into());
        let mut view = PeerMarks::default();
        view.beat(acked.clone(), true);
        let before = view.beat(delta, false);
        assert_eq!(before, acked);
        assert_eq!(view.latest(), &now);
        assert_eq!(beat_marks(&now, &acked, true), now);
    }

    #[test]
    fn resync_drops_only_unsent_covered_and_still_held() {
        let held = [
            ("agent".to_string(), "x".to_string(), 2),
            ("agent".to_string(), "y".to_string(), 3),
            ("agent".to_string(), "z".to_string(), 9),
            ("agent".to_string(), "w".to_string(), 4),
        ];
        let mut r = Resync::begin(held, 5);
        r.sent("agent", "y");
        let drops = r.drops(8, |_, id, _| id != "w");
        assert_eq!(drops, vec![("agent".to_string(), "x".to_string(), 2)]);
    }
}
