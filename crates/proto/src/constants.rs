//! Protocol constants shared by every runtime of the mesh (the node's
//! `peer` module and the simulator): each is defined here once, so the two
//! cannot drift. Owns numbers only; must never hold state or decisions.

/// Origins whose digests one heartbeat carries, at most (a rotating slice).
pub const DIGESTS_PER_BEAT: usize = 8;

/// Each hop of a vote answers this long before the deadline it was given,
/// and forwards the request with its deadline this much earlier.
pub const VOTE_MARGIN_MS: u64 = 150;

/// A claim a node grants to another initiator is held this long past the
/// vote's deadline, so the winner's record finds it in place.
pub const CLAIM_GRACE_MS: u64 = 2000;

/// A vote request whose deadline lies further ahead than this is malformed
/// (refused, nothing claimed).
pub const VOTE_DEADLINE_MAX_MS: u64 = 60_000;

/// Most centers one vote answer may name (as yes or no); more is malformed.
pub const VOTE_ANSWER_CENTERS_MAX: usize = 4096;

/// Records in one flood message, at most: own changes are flooded in
/// batches of this many.
pub const FLOOD_BATCH_MAX: usize = 256;

/// Records a received flood message may carry; more is malformed (refused
/// whole). Wider than [`FLOOD_BATCH_MAX`] for peers that batch more.
pub const FLOOD_RECORDS_MAX: usize = FLOOD_BATCH_MAX * 4;

/// Flood messages waiting for one peer, at most; more are dropped and
/// counted (anti-entropy repairs what a dropped flood carried).
pub const PEER_QUEUE: usize = 1024;

/// Flood messages in flight to one peer at once (merging makes their order
/// of arrival irrelevant); the rest of a peer's connections stay free for
/// beats and votes.
pub const FLOODS_IN_FLIGHT: usize = 4;

/// Initiators whose flood counters one center tracks (one dedup window,
/// 521 bytes, each); floods of an initiator beyond are applied but never
/// relayed (anti-entropy carries them on).
pub const FLOOD_INITIATORS_MAX: usize = 4096;

/// A vote request without `deadline_ms` (a plain DRiP node) is answered
/// within this long of its arrival.
pub const VOTE_DEADLINE_DEFAULT_MS: u64 = 1000;

/// Votes a center collects answers for at once (its own and those it
/// relays); a request beyond is answered at once naming nobody, a create
/// beyond is undecided.
pub const VOTES_COLLECTING_MAX: usize = 10_000;

/// A peer's announced beat interval is taken within
/// `BEAT_INTERVAL_MIN_MS..=BEAT_INTERVAL_MAX_MS` (a beat announcing 1 ms
/// cannot make us judge it every millisecond, nor one announcing a year
/// keep it OPERATIONAL for ever).
pub const BEAT_INTERVAL_MIN_MS: u64 = 50;
/// See [`BEAT_INTERVAL_MIN_MS`].
pub const BEAT_INTERVAL_MAX_MS: u64 = 3_600_000;
/// The interval assumed for a peer whose beat announces none (DRiP's bare
/// state word).
pub const BEAT_INTERVAL_DEFAULT_MS: u64 = 1000;
