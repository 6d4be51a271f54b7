//! Equal digests mean equal sets: whenever two digests a center sends in
//! its beats are equal, the (key, version, tombstone) sets they speak for
//! are equal too. The oracle recomputes each set from what the sender
//! holds ([`super::spec::digested`]) and treats the digest as an opaque
//! value: a digest that leaves out a field, or a slice that leaves out a
//! record, maps two different sets to one value and is caught the first
//! time both are sent, whether or not a repair happened to be needed.
//!
//! Never calls the digest code: it only compares the values sent. And
//! the other way: one set is always sent with one digest.

use super::{spec, Invariant, Step};
use crate::center::Center;
use crate::msg::Msg;
use crate::world::History;
use regmesh_proto::digest::SetDigest;
use std::collections::{BTreeSet, HashMap};

/// Digests held per run at most (a bound; past it new values are not
/// remembered, old ones still checked).
const DIGESTS_MAX: usize = 200_000;

#[derive(Default)]
pub struct EqualDigestsEqualSets {
    /// Digest → (who sent it, of which origin and key, the set).
    seen: HashMap<SetDigest, (usize, String, String, BTreeSet<spec::Element>)>,
    /// Set → its digest (one set has one digest, whatever the order its
    /// versions arrived in).
    of_set: HashMap<BTreeSet<spec::Element>, SetDigest>,
}

impl Invariant for EqualDigestsEqualSets {
    fn name(&self) -> &'static str {
        "equal digests mean equal sets"
    }

    fn after_step(&mut self, centers: &[Center], _: &History, step: &Step) -> Result<(), String> {
        if !step.changes.is_empty() {
            // The store moved during the step: what the digests were taken
            // from is no longer in view.
            return Ok(());
        }
        for (from, _, msg) in step.sent {
            let (Msg::Beat { body, .. } | Msg::BeatOk { body, .. }) = msg else {
                continue;
            };
            for (origin, classes) in &body.digests {
                for (dkey, d) in classes {
                    let d = &d.0;
                    let set = spec::digested(&centers[*from].store.current, origin, dkey);
                    match self.of_set.get(&set) {
                        Some(other) if other != d => {
                            return Err(format!(
                                "{} sent two digests for one set of {} versions of {origin} {dkey}: {other:?} and {d:?}",
                                centers[*from].id,
                                set.len()
                            ));
                        }
                        Some(_) => {}
                        None if self.of_set.len() < DIGESTS_MAX => {
                            self.of_set.insert(set.clone(), *d);
                        }
                        None => {}
                    }
                    match self.seen.get(d) {
                        Some((who, o, k, s)) if *s != set => {
                            let only_a: Vec<_> = s.difference(&set).take(2).collect();
                            let only_b: Vec<_> = set.difference(s).take(2).collect();
                            return Err(format!(
                                "{} sent digest {d:?} of {origin} {dkey} over {} versions; {} sent the same for {o} {k} over {} versions (only there: {only_a:?}; only here: {only_b:?})",
                                centers[*from].id,
                                set.len(),
                                centers[*who].id,
                                s.len()
                            ));
                        }
                        Some(_) => {}
                        None if self.seen.len() < DIGESTS_MAX => {
                            self.seen.insert(*d, (*from, origin.clone(), dkey.clone(), set));
                        }
                        None => {}
                    }
                }
            }
        }
        Ok(())
    }
}
