//! The invariants of a whole-node run, written from what clients were
//! told (the acknowledged history) and what each center stores, never with
//! the node's merge or policy code:
//! - **converged**: every running center stores the same versions;
//! - **no acknowledged write lost**: for each id, the version every center
//!   ends with is the last acknowledged write or one sent after it (whose
//!   answer was lost), never older;
//! - **one creator**: no id was acknowledged as created (201) to clients at
//!   two different centers.
//!
//! Must never: call `Record::supersedes`, a digest, or anything else of the
//! code under test to decide what is right.

use crate::world::{Held, Snapshot, World};
use std::collections::BTreeMap;

/// One client write as the client saw it.
#[derive(Clone, Debug)]
pub struct Write {
    /// The center it was sent to.
    pub at: String,
    pub id: String,
    /// The agent's address it set, or `None` for a delete.
    pub addr: Option<String>,
    /// The HTTP status it got, or `None` if no answer came (it may or may
    /// not have been applied).
    pub status: Option<u16>,
}

impl Write {
    fn acked(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
    fn maybe(&self) -> bool {
        self.acked() || self.status.is_none() || self.status.is_some_and(|s| s >= 500 && s != 503)
    }
}

/// Every running center stores the same versions of everything.
pub fn converged(w: &World) -> Result<(), String> {
    let mut first: Option<(String, Snapshot)> = None;
    for id in &w.ids {
        let Some(r) = w.records(id) else { continue };
        match &first {
            None => first = Some((id.clone(), r)),
            Some((f, fr)) => {
                if *fr != r {
                    let diff: Vec<_> = fr
                        .iter()
                        .filter(|(k, v)| r.get(*k) != Some(*v))
                        .map(|(k, _)| k.1.clone())
                        .chain(r.keys().filter(|k| !fr.contains_key(*k)).map(|k| k.1.clone()))
                        .take(5)
                        .collect();
                    return Err(format!("{f} and {id} differ, e.g. on {diff:?}"));
                }
            }
        }
    }
    Ok(())
}

/// The address an agent body carries (the harness writes exactly one).
fn addr_of(h: &Held) -> Option<String> {
    if h.deleted {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&h.body).ok()?;
    v.pointer("/addresses/0").and_then(|a| a.as_str()).map(str::to_string)
}

/// For each id written, every running center ends with the last
/// acknowledged write's content or a later write's that may have been
/// applied. Writes to one id must come from one client in order.
pub fn no_acked_write_lost(w: &World, history: &[Write]) -> Result<(), String> {
    let mut by_id: BTreeMap<&str, Vec<&Write>> = BTreeMap::new();
    for h in history {
        by_id.entry(h.id.as_str()).or_default().push(h);
    }
    for c in &w.ids {
        let Some(recs) = w.records(c) else { continue };
        for (id, writes) in &by_id {
            let Some(last) = writes.iter().rposition(|x| x.acked()) else {
                continue;
            };
            // What may be there: the last acknowledged, a later write that
            // may have been applied, or an earlier one whose answer never
            // came (it may have committed late).
            let allowed: Vec<Option<String>> = std::iter::once(writes[last].addr.clone())
                .chain(writes[last + 1..].iter().filter(|x| x.maybe()).map(|x| x.addr.clone()))
                .chain(
                    writes[..last]
                        .iter()
                        .filter(|x| x.status.is_none())
                        .map(|x| x.addr.clone()),
                )
                .collect();
            let held = recs.get(&("agent".to_string(), id.to_string()));
            let now = held.and_then(addr_of);
            if !allowed.contains(&now) {
                return Err(format!(
                    "{c}: {id} holds {now:?}, but the last acknowledged write set {:?} (allowed {allowed:?})",
                    writes[last].addr
                ));
            }
        }
    }
    Ok(())
}

/// No id was acknowledged as created (201) at two different centers
/// without an acknowledged delete between the two.
pub fn one_creator(history: &[Write]) -> Result<(), String> {
    let mut creator: BTreeMap<&str, &str> = BTreeMap::new();
    for h in history {
        match (h.status, &h.addr) {
            (Some(201), _) => {
                if let Some(prev) = creator.insert(&h.id, &h.at) {
                    if prev != h.at {
                        return Err(format!("{} was created at both {prev} and {}", h.id, h.at));
                    }
                }
            }
            (Some(s), None) if (200..300).contains(&s) => {
                creator.remove(h.id.as_str());
            }
            _ => {}
        }
    }
    Ok(())
}
