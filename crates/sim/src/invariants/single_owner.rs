//! No id is owned by two centers after a vote: two creates of one id by
//! different centers are never both granted while each vote was running at
//! the same time and each initiator took part in (said yes to) the other's
//! vote. That is the two-phase vote's promise (DRiP §5.5.1; proto::vote).
//!
//! Not promised, and not checked: creates on both sides of a partition, once
//! each side has stopped asking the other (DEGRADED peers are not asked,
//! DRiP §5.7); the merge keeps one owner after healing (PROTOCOL.md).

use super::{Invariant, Step};
use crate::center::{Center, Note};
use crate::msg::Key;
use crate::world::History;
use std::collections::{HashMap, HashSet};

struct Grant {
    initiator: usize,
    counter: u64,
    started: u64,
    ended: u64,
}

#[derive(Default)]
pub struct OneOwnerAfterAVote {
    /// (initiator id, counter) → centers that claimed the id for it.
    yes: HashMap<(String, u64), HashSet<usize>>,
    grants: HashMap<Key, Vec<Grant>>,
}

impl Invariant for OneOwnerAfterAVote {
    fn name(&self) -> &'static str {
        "one owner after a vote"
    }

    fn after_step(&mut self, centers: &[Center], _: &History, step: &Step) -> Result<(), String> {
        let c = step.center;
        for n in step.notes {
            match n {
                Note::VotedYes { initiator, counter, .. } => {
                    self.yes.entry((initiator.clone(), *counter)).or_default().insert(c);
                }
                Note::Granted { key, counter, started } => {
                    let me = &centers[c].id;
                    let mine = self.yes.get(&(me.clone(), *counter)).cloned().unwrap_or_default();
                    for g in self.grants.get(key).into_iter().flatten() {
                        let overlap = g.started <= step.now && *started <= g.ended;
                        let theirs = self
                            .yes
                            .get(&(centers[g.initiator].id.clone(), g.counter))
                            .cloned()
                            .unwrap_or_default();
                        if g.initiator != c && overlap && mine.contains(&g.initiator) && theirs.contains(&c) {
                            return Err(format!(
                                "{}/{} granted to both {} (vote {}) and {} (vote {}), each having said yes to the other",
                                key.0, key.1, centers[g.initiator].id, g.counter, me, counter
                            ));
                        }
                    }
                    self.grants.entry(key.clone()).or_default().push(Grant {
                        initiator: c,
                        counter: *counter,
                        started: *started,
                        ended: step.now,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }
}
