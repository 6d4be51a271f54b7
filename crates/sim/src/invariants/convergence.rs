//! After healing every center holds the same records, as its export
//! policies allow: for each id, a center holds the newest acknowledged
//! version among those whose origin can reach it through links whose
//! policies let that record pass (a tombstone may also be purged), and
//! nothing else. Checked at the end of the liveness phase, which must reach
//! it within a bound.

use super::{show, show_opt, spec, Invariant};
use crate::center::Center;
use crate::world::History;
use regmesh_core::Record;
use std::collections::{HashMap, HashSet, VecDeque};

pub struct SameRecordsEverywhere;

/// Centers a record of `origin` reaches through policies that allow it.
fn reach(centers: &[Center], by_id: &HashMap<&str, usize>, r: &Record) -> HashSet<usize> {
    let mut seen = HashSet::new();
    let Some(&start) = by_id.get(r.origin.as_str()) else {
        return seen;
    };
    let mut todo = VecDeque::from([start]);
    seen.insert(start);
    while let Some(x) = todo.pop_front() {
        for p in &centers[x].peers {
            if spec::may_receive(&p.policy, r) && seen.insert(p.idx) {
                todo.push_back(p.idx);
            }
        }
    }
    seen
}

/// Up to `max` differences between what centers hold and what they should.
pub fn differences(centers: &[Center], history: &History, max: usize) -> Vec<String> {
    let by_id: HashMap<&str, usize> = centers.iter().map(|c| (c.id.as_str(), c.idx)).collect();
    let mut out = Vec::new();
    for c in centers {
        if !c.up {
            out.push(format!("{} is down", c.id));
        }
        for (key, r) in &c.store.current {
            if !history.acked.contains_key(key) {
                out.push(format!("{} holds {} that nobody wrote", c.id, show(r)));
            }
        }
    }
    for (key, versions) in &history.acked {
        let reaches: Vec<HashSet<usize>> = versions.iter().map(|v| reach(centers, &by_id, v)).collect();
        for c in centers {
            let expected = spec::newest(
                versions
                    .iter()
                    .zip(&reaches)
                    .filter(|(_, r)| r.contains(&c.idx))
                    .map(|(v, _)| v),
            );
            let held = c.store.get(key);
            let ok = match (expected, held) {
                (None, None) => true,
                (Some(e), Some(h)) => e == h,
                (Some(e), None) => e.deleted,
                (None, Some(_)) => false,
            };
            if !ok {
                out.push(format!(
                    "{} holds {}, expected {}",
                    c.id,
                    show_opt(held),
                    show_opt(expected)
                ));
            }
            if out.len() >= max {
                return out;
            }
        }
    }
    out.truncate(max);
    out
}

impl Invariant for SameRecordsEverywhere {
    fn name(&self) -> &'static str {
        "convergence"
    }

    fn after_step(&mut self, _: &[Center], _: &History, _: &super::Step) -> Result<(), String> {
        Ok(())
    }

    fn at_end(&mut self, centers: &[Center], history: &History) -> Result<(), String> {
        let d = differences(centers, history, 5);
        if d.is_empty() {
            Ok(())
        } else {
            Err(d.join("; "))
        }
    }
}
