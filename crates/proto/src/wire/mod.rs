//! The typed peer wire: one serde type per peer message (DRiP's calls and
//! regmesh's `/mesh/v1` extensions), used by the node's peer server and
//! client and by the simulator. No message is read with `json!` or
//! `pointer()` anywhere else.
//!
//! Files: `hello` (HELLO and its answer, carrying the protocol versions
//! that [`crate::version`] negotiates), `beat`, `vote`,
//! `pull`, `flood`, one per concern of [`crate::mesh`].
//!
//! Must never: perform I/O or decide protocol rules (the `mesh` parts do).

pub mod beat;
pub mod flood;
pub mod hello;
pub mod pull;
pub mod vote;
