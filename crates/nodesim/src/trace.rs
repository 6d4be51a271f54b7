//! The event trace of a run, for replay: what must come out the same when
//! one seed runs twice. It holds every peer lifecycle change each center
//! saw (with the simulated time of the step it showed in), every client
//! call with its answer, and at the end every center's whole change log
//! (each committed version with its change number, version and body), so a
//! commit that happened a millisecond later, or in another order, shows.
//!
//! Must never: read anything a run does not also show (no wall clock, no
//! addresses of temp directories).

use crate::world::World;
use std::collections::BTreeMap;

/// The lines of one run's trace.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Trace {
    pub lines: Vec<String>,
    /// Each (center, peer)'s last state noted.
    states: BTreeMap<(String, String), String>,
}

impl Trace {
    pub fn note(&mut self, line: String) {
        self.lines.push(line);
    }

    /// Notes every peer state that changed since the last look.
    pub fn look(&mut self, w: &World) {
        let now = w.now_ms();
        for c in &w.ids {
            for (peer, state) in w.peer_states(c) {
                let key = (c.clone(), peer);
                if self.states.get(&key) != Some(&state) {
                    self.lines.push(format!("{now} {} sees {} {state}", key.0, key.1));
                    self.states.insert(key, state);
                }
            }
        }
    }

    /// Notes every center's change log as it stands.
    pub fn end(&mut self, w: &World) {
        for c in &w.ids {
            let Some(center) = w.center(c) else {
                self.lines.push(format!("{c} down"));
                continue;
            };
            match center.changes_after(0, usize::MAX) {
                Ok(events) => {
                    for e in events {
                        let r = &e.record;
                        self.lines.push(format!(
                            "{c} #{} {} {:?} {}/{} {}:{} {} {}",
                            e.no,
                            e.typ.as_str(),
                            e.reason,
                            r.kind,
                            r.id,
                            r.origin,
                            r.seq,
                            r.version,
                            r.body
                        ));
                    }
                }
                Err(err) => self.lines.push(format!("{c} change log unreadable: {err}")),
            }
        }
    }

    /// The first line where `self` and `other` differ, with its number.
    pub fn first_difference(&self, other: &Trace) -> Option<(usize, String, String)> {
        let n = self.lines.len().max(other.lines.len());
        (0..n).find_map(|i| {
            let (a, b) = (self.lines.get(i), other.lines.get(i));
            (a != b).then(|| {
                (
                    i,
                    a.cloned().unwrap_or_else(|| "<end>".into()),
                    b.cloned().unwrap_or_else(|| "<end>".into()),
                )
            })
        })
    }
}
