//! regmesh-sim: a deterministic simulator of the regmesh peer mesh.
//!
//! Many centers run in one process on virtual time. Each is
//! [`center::Center`]: the node's mesh runtime with its I/O turned into
//! returned effects, calling the same `regmesh_proto` state machines the
//! node calls. The network ([`world::World`]) delays, loses, duplicates and
//! reorders messages, partitions links (both ways or one way), isolates
//! centers, crashes and restarts them from their durable state; centers'
//! clocks are skewed. One seed ([`world::Plan::from_seed`]) derives the
//! topology, the policies, the timings, the workload and the faults, so a
//! failing seed replays exactly.
//!
//! - `run`: the randomized fault search ([`run_seed`]); the invariants in
//!   [`invariants`] are checked after every step.
//! - `scale`: the scale study of document 000 ([`scale`]).
//!
//! Modelled rather than shared with the node: HTTP and TLS, record
//! signatures, the writer's batching, digest comparison and full sync (the
//! multi-process tests in crates/bin cover those). Flood calls end as soon
//! as they are on a link, so the bounded per-peer flood queues never fill.
//! Ceilings are executed as in the node, against a center that lies about
//! other origins on some seeds (plan fault `Lie`).

pub mod center;
pub mod invariants;
pub mod msg;
pub mod plan;
pub mod rng;
pub mod scale;
pub mod world;

use world::{Outcome, Plan, World};

/// Names of the deliberately broken protocol variants this build can run
/// (empty without the `broken` feature).
pub fn variants() -> Vec<&'static str> {
    #[cfg(feature = "broken")]
    {
        regmesh_proto::broken::Variant::ALL.iter().map(|v| v.as_str()).collect()
    }
    #[cfg(not(feature = "broken"))]
    {
        Vec::new()
    }
}

/// Runs one seed, with a broken variant switched on for this thread if
/// asked (needs the `broken` feature).
pub fn run_seed(seed: u64, variant: Option<&str>, known_gaps: bool) -> Result<(Outcome, World), String> {
    #[cfg(feature = "broken")]
    {
        let v = match variant {
            Some(name) => Some(
                regmesh_proto::broken::Variant::parse(name)
                    .ok_or(format!("unknown variant {name:?}; known: {}", variants().join(", ")))?,
            ),
            None => None,
        };
        regmesh_proto::broken::set(v);
    }
    #[cfg(not(feature = "broken"))]
    if let Some(name) = variant {
        return Err(format!(
            "variant {name:?} needs a build with the `broken` feature (cargo run -p regmesh-sim --features broken)"
        ));
    }
    let out = World::new(Plan::from_seed(seed, known_gaps)).run();
    #[cfg(feature = "broken")]
    regmesh_proto::broken::set(None);
    Ok(out)
}

/// The command that replays `seed` (with `variant`).
pub fn replay_command(seed: u64, variant: Option<&str>, known_gaps: bool) -> String {
    let mixed = if known_gaps { " --known-gaps" } else { "" };
    match variant {
        Some(v) => {
            format!("cargo run --release -p regmesh-sim --features broken -- run --seed {seed}{mixed} --broken {v}")
        }
        None => format!("cargo run --release -p regmesh-sim -- run --seed {seed}{mixed}"),
    }
}
