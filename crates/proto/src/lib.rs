//! regmesh proto: the protocol logic of the peer mesh as sans-io state
//! machines. Each takes inputs (a message, a timer firing, a clock reading
//! passed in as milliseconds) and returns decisions; none owns a socket, a
//! task or a clock, so the node and the deterministic simulator drive the
//! very same code.
//!
//! Building blocks (this crate grows into the full mesh machine):
//! - [`dedup`]: which flooded messages are new, per initiator, tolerant of
//!   reordering (DRiP §5.4 as DESIGN.md amends it), and the own counter.
//! - [`lifecycle`]: per-peer state NEEDED → KNOWN → INTRODUCED → OPERATIONAL
//!   ⇄ DEGRADED ⇄ INTERRUPTED (document 003).
//! - [`digest`]: order-independent digest of a set of record versions.
//! - [`node_state`]: this center's DRiP state (active / inactive / sync).
//! - [`replay`]: refusal of replayed peer-call tokens.
//! - [`policy`]: per-peer export policy.
//! - [`vote`]: claims for the two-phase vote on new ids, and the check of a
//!   request's deadline.
//! - [`tally`]: what each hop of a vote reports, and the initiator's quorum
//!   (majority of all configured centers, or all).
//! - [`constants`]: every protocol constant the node and the simulator share.
//! - [`flood`]: who a flooded message goes to, what each peer may receive,
//!   whether a received one is relayed.
//! - [`sync`]: anti-entropy: watermarks, what a beat makes us pull, when a
//!   center has caught up, what a replacing resync drops.
//! - [`mesh`]: the mesh machine, one sans-io part per concern, run by the
//!   node and the simulator alike.
//! - [`wire`]: the typed, versioned peer messages.
//! - [`version`]: protocol versions, their negotiation in HELLO, and what
//!   each version adds to the wire.
//! - `broken` (feature `broken` only): known-wrong variants of some of the
//!   decisions above, for the simulator's self-checks.
//!
//! Must never: perform I/O, read a clock, or grow without a bound.

#[cfg(feature = "broken")]
pub mod broken;
pub mod constants;
pub mod dedup;
pub mod digest;
pub mod flood;
pub mod lifecycle;
pub mod mesh;
pub mod node_state;
pub mod policy;
pub mod reach;
pub mod replay;
pub mod sync;
pub mod tally;
pub mod version;
pub mod vote;
pub mod wire;
