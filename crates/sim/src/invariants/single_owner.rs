//! No id is acknowledged to two creators: once a center's create of an id
//! was acknowledged, no other center's version of it is acknowledged until
//! the first creator's deletion of it was acknowledged. Every acknowledged
//! version counts, whenever and wherever its vote ran (or whether one ran
//! at all) — across partitions, crashes and expired claims alike
//! (PROTOCOL.md, "Votes on new ids").
//!
//! Judged from the acknowledged history alone (the `Acked` notes), never
//! from the claims, tallies or `Granted` notes of the code it checks.

use super::{Invariant, Step};
use crate::center::{Center, Note};
use crate::msg::Key;
use crate::world::History;
use std::collections::HashMap;

#[derive(Default)]
pub struct OneOwnerAfterAVote {
    /// Per id: the center whose acknowledged create is alive (not deleted
    /// by an acknowledged deletion of its own), and when it was
    /// acknowledged.
    live: HashMap<Key, (usize, u64)>,
}

impl Invariant for OneOwnerAfterAVote {
    fn name(&self) -> &'static str {
        "one owner after a vote"
    }

    fn after_step(&mut self, centers: &[Center], _: &History, step: &Step) -> Result<(), String> {
        let c = step.center;
        for n in step.notes {
            let Note::Acked(r) = n else { continue };
            let key = (r.kind.clone(), r.id.clone());
            match self.live.get(&key) {
                Some((owner, _)) if r.deleted && *owner == c => {
                    self.live.remove(&key);
                }
                Some((owner, at)) if *owner != c => {
                    return Err(format!(
                        "{}/{} acknowledged to two creators: {} (at {at} ms) and {} ({}, at {} ms)",
                        key.0,
                        key.1,
                        centers[*owner].id,
                        centers[c].id,
                        if r.deleted { "a deletion" } else { "a live version" },
                        step.now
                    ));
                }
                Some(_) => {}
                None if r.deleted => {}
                None => {
                    self.live.insert(key, (c, step.now));
                }
            }
        }
        Ok(())
    }
}
