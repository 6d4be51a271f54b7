//! No write acknowledged to a client is lost: from the moment a center
//! acknowledges a version, it holds that version or a newer one — through
//! crashes too — unless a version at least as new left it lawfully: a
//! tombstone purged after the horizon, or a newer version (another
//! center's create of the id) dropped by a resync because its deletion was
//! purged (that such a drop is lawful is the resync invariant's). (That every other center ends up with it is the convergence
//! invariant.) And an origin acknowledges each HLC once.

use super::{at_least, show, show_opt, spec, Invariant, Step};
use crate::center::{Center, Change, Note};
use crate::msg::Key;
use crate::world::History;
use regmesh_core::Record;
use std::collections::HashMap;

#[derive(Default)]
pub struct NoAcknowledgedWriteLost {
    /// (center, key) → the newest version it acknowledged.
    floor: HashMap<(usize, Key), Record>,
    /// (center, key) → a tombstone it purged, or a version a resync
    /// dropped.
    purged: HashMap<(usize, Key), Record>,
}

impl NoAcknowledgedWriteLost {
    fn check(&self, centers: &[Center], c: usize, key: &Key) -> Result<(), String> {
        let Some(floor) = self.floor.get(&(c, key.clone())) else {
            return Ok(());
        };
        let held = centers[c].store.get(key);
        let ok = match held {
            Some(h) => at_least(h, floor),
            None => self.purged.get(&(c, key.clone())).is_some_and(|t| at_least(t, floor)),
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{} acknowledged {} but holds {}",
                centers[c].id,
                show(floor),
                show_opt(held)
            ))
        }
    }
}

impl Invariant for NoAcknowledgedWriteLost {
    fn name(&self) -> &'static str {
        "acknowledged writes"
    }

    fn after_step(&mut self, centers: &[Center], history: &History, step: &Step) -> Result<(), String> {
        let c = step.center;
        for n in step.notes {
            if let Note::Acked(r) = n {
                let key = (r.kind.clone(), r.id.clone());
                if let Some(twin) = history.acked.get(&key).and_then(|vs| spec::one_version_per_hlc(vs, r)) {
                    return Err(format!(
                        "{} acknowledged {} and {} with one HLC",
                        centers[c].id,
                        show(twin),
                        show(r)
                    ));
                }
                self.floor.insert((c, key), r.clone());
            }
        }
        for (key, ch) in step.changes {
            if let Change::Purged(t) | Change::Forgot(t) = ch {
                self.purged.insert((c, key.clone()), t.clone());
            }
        }
        if step.delivered.is_none() && step.changes.is_empty() {
            // A timer or restart: look at everything this center promised.
            let keys = super::keys_of(&self.floor, c);
            for k in keys {
                self.check(centers, c, &k)?;
            }
        }
        for (key, _) in step.changes {
            self.check(centers, c, key)?;
        }
        Ok(())
    }
}
