//! Nothing crosses an export policy: every record a center sends a peer —
//! in a flood, relayed or its own, or in a pull answer — is one that peer's
//! policy lets it receive (`local` never leaves its center), judged from
//! the policy's plain data ([`spec::may_receive`]), tombstones alike.

use super::{show, spec, Invariant, Step};
use crate::center::Center;
use crate::world::History;

pub struct NothingCrossesPolicy;

impl Invariant for NothingCrossesPolicy {
    fn name(&self) -> &'static str {
        "export policy"
    }

    fn after_step(&mut self, centers: &[Center], _: &History, step: &Step) -> Result<(), String> {
        for (from, to, msg) in step.sent {
            let Some(peer) = centers[*from].peers.iter().find(|p| p.idx == *to) else {
                return Err(format!(
                    "{} sent to {}, which is not its peer",
                    centers[*from].id, centers[*to].id
                ));
            };
            if let Some(r) = msg.records().iter().find(|r| !spec::may_receive(&peer.policy, r)) {
                return Err(format!(
                    "{} sent {} to {}, whose policy {:?} does not allow it",
                    centers[*from].id,
                    show(r),
                    peer.id,
                    peer.policy
                ));
            }
        }
        Ok(())
    }
}
