//! No center's watermark of a peer passes what that peer, as an origin,
//! has issued: a mark says "every seq up to here is applied or covered",
//! and a seq nobody issued can be covered by nothing. A peer that lies
//! about another origin (plan fault `Lie`) must not move a mark past it
//! (PROTOCOL.md, "Nobody raises a mark past what its origin has shown").
//!
//! Judged from the origin center's own last seq, never from
//! `sync::Ceilings`. Only origins that are direct peers are judged, as the
//! protocol bounds only those.

use super::{Invariant, Step};
use crate::center::Center;
use crate::world::History;

pub struct MarksNeverPassTheOrigin;

impl Invariant for MarksNeverPassTheOrigin {
    fn name(&self) -> &'static str {
        "no mark passes what its origin issued"
    }

    fn after_step(&mut self, centers: &[Center], _: &History, step: &Step) -> Result<(), String> {
        let c = &centers[step.center];
        for p in &c.peers {
            let origin = &centers[p.idx];
            let issued = origin.mark(&origin.id);
            let mark = c.marks.get(&origin.id);
            if mark > issued {
                return Err(format!(
                    "{} holds its mark of {} at {mark}, but {} issued only {issued}",
                    c.id, origin.id, origin.id
                ));
            }
        }
        Ok(())
    }
}
