//! Flooding decisions (DRiP §5.4 as DESIGN.md amends it): which peers a
//! message goes to, what each may receive, and whether a received message is
//! relayed.

use crate::dedup::Seen;
use crate::node_state::NodeState;
use crate::policy::ExportPolicy;
use regmesh_core::{Record, Visibility};

/// Whether a message of `initiator`, received from `from` (None: written
/// here), goes to peer `peer` now. Only peers that receive propagation
/// (OPERATIONAL: `PeerLifecycle::receives_propagation`, DRiP §5.7) get it;
/// never back to where it came from or to its initiator; nothing at all
/// while this center is inactive.
pub fn sends_to(state: NodeState, peer: &str, receives_propagation: bool, initiator: &str, from: Option<&str>) -> bool {
    state.propagates() && Some(peer) != from && peer != initiator && receives_propagation
}

/// Whether `r` (with part visibilities `parts`) may go to a peer with
/// `policy`; `relayed` when it is another center's record passing through.
pub fn allowed(policy: &ExportPolicy, r: &Record, parts: &[Visibility], relayed: bool) -> bool {
    #[cfg(feature = "broken")]
    if relayed && crate::broken::is(crate::broken::Variant::RelayIgnoresPolicy) {
        return true;
    }
    let _ = relayed;
    policy.allows(r, parts)
}

/// Whether a received message is relayed: only the first copy. One too old
/// to judge (`Seen::Old`) is applied (merging is idempotent) but not
/// relayed, so a stale copy cannot start a second flood.
pub fn relays(seen: Seen) -> bool {
    seen == Seen::New
}

/// Whether a message with no record left for a peer still goes: one that
/// covers a seq range tells the peer's watermark that nothing in it is for
/// it.
pub fn worth_sending(allowed_records: usize, covers_range: bool) -> bool {
    allowed_records > 0 || covers_range
}
