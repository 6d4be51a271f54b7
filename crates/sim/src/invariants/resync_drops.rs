//! A replacing resync drops only what was deleted: every record a center
//! forgets in a resync (PROTOCOL.md, "Tombstone horizon") had a newer
//! acknowledged version somewhere — its origin's tombstone, or another
//! center's later create — by the time it was dropped. A resync that drops
//! a record still current everywhere (a boundary off by one, a page it
//! did not wait for) loses an acknowledged write.
//!
//! Judged from the acknowledged history and the oracle's own merge order
//! ([`super::spec::order`]), never from `sync::Resync`.

use super::{show, spec, Invariant, Step};
use crate::center::{Center, Change};
use crate::world::History;
use std::cmp::Ordering;

pub struct DropsHadNewerVersions;

impl Invariant for DropsHadNewerVersions {
    fn name(&self) -> &'static str {
        "resyncs drop only what was superseded"
    }

    fn after_step(&mut self, centers: &[Center], history: &History, step: &Step) -> Result<(), String> {
        for (key, ch) in step.changes {
            let Change::Forgot(r) = ch else { continue };
            let newer = history
                .acked
                .get(key)
                .and_then(|vs| vs.iter().find(|v| spec::order(v, r) == Ordering::Greater));
            if newer.is_none() {
                return Err(format!(
                    "{} dropped {} in a resync, but no newer version of it was ever acknowledged",
                    centers[step.center].id,
                    show(r)
                ));
            }
        }
        Ok(())
    }
}
