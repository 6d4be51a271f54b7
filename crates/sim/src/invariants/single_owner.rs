//! No id is acknowledged to two creators: once a center's create of an id
//! was acknowledged, no other center's create of it is acknowledged until
//! the first creator's deletion of it was acknowledged. Every acknowledged
//! create counts, whenever and wherever its vote ran — across partitions,
//! crashes and expired claims alike (PROTOCOL.md, "Votes on new ids").
//!
//! Judged from the acknowledged history alone (the `Acked` and `Granted`
//! notes), never from the claims or tallies it checks.

use super::{Invariant, Step};
use crate::center::{Center, Note};
use crate::msg::Key;
use crate::world::History;
use std::collections::HashMap;

#[derive(Default)]
pub struct OneOwnerAfterAVote {
    /// Per id: the center whose acknowledged create is alive (not deleted
    /// by an acknowledged deletion of its own), and when it was granted.
    live: HashMap<Key, (usize, u64)>,
}

impl Invariant for OneOwnerAfterAVote {
    fn name(&self) -> &'static str {
        "one owner after a vote"
    }

    fn after_step(&mut self, centers: &[Center], _: &History, step: &Step) -> Result<(), String> {
        let c = step.center;
        for n in step.notes {
            match n {
                Note::Acked(r) if r.deleted => {
                    let key = (r.kind.clone(), r.id.clone());
                    if self
                        .live
                        .get(&key)
                        .is_some_and(|(owner, _)| centers[*owner].id == r.origin)
                    {
                        self.live.remove(&key);
                    }
                }
                Note::Granted { key, counter, .. } => {
                    if let Some((other, at)) = self.live.get(key) {
                        if *other != c {
                            return Err(format!(
                                "{}/{} acknowledged to two creators: {} (at {at} ms) and {} (vote {counter}, at {} ms)",
                                key.0, key.1, centers[*other].id, centers[c].id, step.now
                            ));
                        }
                    }
                    self.live.insert(key.clone(), (c, step.now));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
