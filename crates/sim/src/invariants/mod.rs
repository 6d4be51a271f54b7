//! The invariants, one per file. Each sees every step of the safety phase
//! (after the center that handled the event has ticked its peer
//! lifecycles), keeps whatever it must remember, and may have a final check
//! once the liveness phase has converged.

use crate::center::{Center, Change, Note};
use crate::msg::{Key, Msg};
use crate::world::History;
use regmesh_core::Record;

pub mod acknowledged;
pub mod convergence;
pub mod digests;
pub mod export_policy;
pub mod marks_bounded;
pub mod monotonic;
pub mod no_resurrection;
pub mod peer_states;
pub mod resync_drops;
pub mod single_owner;
pub mod spec;

/// What one step did.
pub struct Step<'a> {
    pub now: u64,
    /// The center that handled the event.
    pub center: usize,
    /// (from, to) when the event delivered a message.
    pub delivered: Option<(usize, usize)>,
    /// Changes of what `center` holds.
    pub changes: &'a [(Key, Change)],
    /// Messages `center` sent: (from, to, message).
    pub sent: &'a [(usize, usize, Msg)],
    pub notes: &'a [Note],
}

pub trait Invariant {
    fn name(&self) -> &'static str;
    fn after_step(&mut self, centers: &[Center], history: &History, step: &Step) -> Result<(), String>;
    /// `c` is about to crash (its durable state is what survives).
    fn on_crash(&mut self, _c: &Center) {}
    /// A message is about to be delivered to `to`.
    fn on_deliver(&mut self, _now: u64, _to: &Center, _from: usize, _msg: &Msg) {}
    /// After the liveness phase converged.
    fn at_end(&mut self, _centers: &[Center], _history: &History) -> Result<(), String> {
        Ok(())
    }
}

pub fn all() -> Vec<Box<dyn Invariant>> {
    vec![
        Box::new(export_policy::NothingCrossesPolicy),
        Box::new(acknowledged::NoAcknowledgedWriteLost::default()),
        Box::new(no_resurrection::NothingDeletedComesBack::default()),
        Box::new(monotonic::VersionsNeverGoBack::default()),
        Box::new(single_owner::OneOwnerAfterAVote::default()),
        Box::new(resync_drops::DropsHadNewerVersions),
        Box::new(marks_bounded::MarksNeverPassTheOrigin),
        Box::new(digests::EqualDigestsEqualSets::default()),
        Box::new(peer_states::PeerStatesFollowIntervals::default()),
        Box::new(convergence::SameRecordsEverywhere),
    ]
}

/// Short description of a version.
pub fn show(r: &Record) -> String {
    format!(
        "{}/{}@{}#{}{} v{}.{}",
        r.kind,
        r.id,
        r.origin,
        r.seq,
        if r.deleted { " (deleted)" } else { "" },
        r.version.wall_ms,
        r.version.logical
    )
}

pub fn show_opt(r: Option<&Record>) -> String {
    r.map_or("nothing".into(), show)
}

/// The keys `map` holds for center `c`.
pub fn keys_of<V>(map: &std::collections::HashMap<(usize, Key), V>, c: usize) -> Vec<Key> {
    map.keys().filter(|(i, _)| *i == c).map(|(_, k)| k.clone()).collect()
}

/// `a` is at least as new as `b` under the merge order (the oracle's own,
/// [`spec::order`]).
pub use spec::at_least;
