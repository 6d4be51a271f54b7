//! The mesh as sans-io state machines, one part per concern, that both the
//! node (`regmesh-node`, `peer/mesh`) and the simulator (`regmesh-sim`) run.
//!
//! Every part has the same shape:
//! - a struct holding that concern's protocol state for one center, with no
//!   socket, task, lock, clock or store inside;
//! - inputs are methods named `on_*` taking `now_ms` (the center's clock,
//!   read by the caller) and typed messages from [`crate::wire`];
//! - outputs are commands, plain data pushed to a `&mut Vec<Command>` of the
//!   part's own `Command` enum: send a message, apply or persist records,
//!   schedule a timer, answer a caller. The runtime executes them (HTTP and
//!   TLS in the node, virtual time and links in the simulator) and feeds
//!   their results back as inputs (a call answered or failed, a timer
//!   fired).
//! - what a part must ask of the replica (a watermark, a digest, whether a
//!   key is held) it takes as arguments or through a small trait the caller
//!   implements, never by holding the store.
//!
//! Parts: [`link`] (peer lifecycle, HELLO, beats with watermark deltas and
//! digest slices, the judge timer, node state), [`votes`] (claims of new
//! ids: requests, convergecast answers, deadlines, tallies), [`pulls`]
//! (pulls, resyncs, digest repair, full sync), [`floods`] (floods of own
//! changes, receipt, relays, NOTIFY/RFI dispatch).
//!
//! Must never: perform I/O, read a clock, hold a lock, or keep anything
//! without a bound.

pub mod floods;
pub mod link;
pub mod pulls;
pub mod votes;
