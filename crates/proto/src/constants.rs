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

/// A vote request without `deadline_ms` (a plain DRiP node) is answered
/// within this long of its arrival.
pub const VOTE_DEADLINE_DEFAULT_MS: u64 = 1000;

/// Votes a center collects answers for at once (its own and those it
/// relays); a request beyond is answered at once naming nobody, a create
/// beyond is undecided.
pub const VOTES_COLLECTING_MAX: usize = 10_000;
