//! This center's DRiP node state (§5.2) as DESIGN.md settles it:
//! - `active`: propagating and accepting updates;
//! - `inactive`: no peer has answered a heartbeat, so there is no propagation
//!   and no updates;
//! - `sync`: a peer answered again and we are catching up (pulling what we
//!   missed); `active` once caught up. Updates and propagation continue.
//!
//! A center with no peers is `active` (a standalone center).

/// DRiP node state (on the wire as `active`, `inactive`, `sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Active,
    Inactive,
    Sync,
}

impl NodeState {
    /// The word `GET /state` answers.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Inactive => "inactive",
            NodeState::Sync => "sync",
        }
    }

    /// Starting state: `active` alone, otherwise `inactive` until a peer answers.
    pub fn initial(has_peers: bool) -> Self {
        if has_peers {
            NodeState::Inactive
        } else {
            NodeState::Active
        }
    }

    /// What to do when the number of peers answering heartbeats changes, or
    /// a catch-up completes. Returns the new state and whether a catch-up
    /// must start now.
    pub fn next(self, reachable_peers: usize, catch_up_done: bool) -> (NodeState, bool) {
        match (self, reachable_peers, catch_up_done) {
            (_, 0, _) => (NodeState::Inactive, false),
            (NodeState::Inactive, _, _) => (NodeState::Sync, true),
            (NodeState::Sync, _, true) => (NodeState::Active, false),
            (s, _, _) => (s, false),
        }
    }

    /// Whether client updates are accepted in this state.
    pub fn accepts_updates(self) -> bool {
        self != NodeState::Inactive
    }

    /// Whether changes are propagated in this state. A center in `sync`
    /// floods its own new writes and relays: catching up concerns what it
    /// missed, and merging makes the order of arrival irrelevant.
    pub fn propagates(self) -> bool {
        self != NodeState::Inactive
    }
}

#[cfg(test)]
mod tests {
    use super::NodeState::*;
    use super::*;

    #[test]
    fn loses_peers_then_catches_up() {
        let s = NodeState::initial(true);
        assert_eq!(s, Inactive);
        assert!(!s.accepts_updates());
        let (s, start) = s.next(1, false);
        assert_eq!((s, start), (Sync, true));
        assert_eq!(s.next(2, false), (Sync, false), "still catching up");
        let (s, _) = s.next(2, true);
        assert_eq!(s, Active);
        assert!(s.propagates());
        assert_eq!(s.next(0, false), (Inactive, false));
        assert!(Sync.propagates() && !Inactive.propagates());
        assert_eq!(NodeState::initial(false), Active);
        assert_eq!(Active.as_str(), "active");
    }
}
