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
