//! Whole-node simulation: real regmesh centers, everything from the client
//! API down to the redb store and the mTLS peer calls, run in one process
//! on turmoil's simulated time and network. Time moves only when the
//! harness steps it, so a 10 s deadline costs no 10 s, and a fault schedule
//! drawn from a seed replays the same faults.
//!
//! What is simulated: the network (turmoil's TCP: latency, partitions one
//! way or both, links frozen with their bytes held), wall and timer time
//! (each host's tokio runtime is paused and advanced by turmoil), a kill
//! (the host's runtime is dropped with every task; its store directory
//! stays, like a process killed with its page cache kept), a power loss
//! (a kill whose restart finds only what the store made durable:
//! [`disk::SimDisk`]), and a pause (the
//! node's tasks run under a [`regmesh_node::spawn::Gate`]; shut, none of
//! them runs and no timer of theirs fires, while time goes on, as under
//! SIGSTOP). What is real:
//! every line of `regmesh-node` and the agent front, TLS, JWTs, signatures,
//! redb on disk. The node runs its writer as a task on the host's runtime
//! (`WriterMode::Task`), so time cannot move while a batch commits.
//!
//! `world` builds and drives a mesh; `net` and `clock` are the node's seams
//! filled with turmoil; `rogue` makes a member's calls no honest center
//! would; `flood` holds connections open as slow clients and floods do;
//! `check` holds the invariants, written from the acknowledged
//! history only.
//!
//! Must never: touch a real socket or the wall clock inside a center, or
//! judge the mesh with the node's own code (the checks read records and
//! compare them with what clients were told).

pub mod check;
pub mod clock;
pub mod disk;
pub mod flood;
pub mod net;
pub mod rogue;
pub mod run;
pub mod trace;
pub mod world;

pub use world::{World, WorldConfig};
