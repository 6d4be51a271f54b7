//! Full sync (DRiP §5.6, PROTOCOL.md "Full sync"): asking a peer for
//! everything we may see, taking `sync` messages only from a peer we asked
//! (within [`crate::sync::FULL_SYNC_WINDOW_MS`]), adopting the complete
//! message's marks, and pushing at most one full sync to a peer at a time.
//! Must never admit sync traffic nobody asked for.

use super::{Command, Pulls, Replica, FULL_SYNC_PAGE_RECORDS, PULL_PAGE_BYTES_MAX};
use std::collections::HashMap;

/// A `sync` message refused (answered `409 unsolicited_sync`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncRefused {
    /// We asked this peer for no full sync (or asked too long ago).
    /// Nothing changed.
    #[error("no full sync was asked of {peer:?}")]
    Unsolicited { peer: String },
}

impl Pulls {
    /// Beats decided this center, knowing nothing yet, should ask `peer`
    /// for a full sync. Nothing is asked once one arrived complete, or while
    /// a request to `peer` is pending. Returns whether it asks.
    pub fn on_full_sync_requested(&mut self, now_ms: u64, peer: &str, out: &mut Vec<Command>) -> bool {
        if self.full_sync_done || self.requests.admits(peer, now_ms) {
            return false;
        }
        // Noted before asking: the first sync message may beat the answer.
        self.requests.asked(peer, now_ms);
        out.push(Command::AskFullSync { peer: peer.to_string() });
        true
    }

    /// `peer` answered our request (`accepted`: 200), or the call failed.
    pub fn on_full_sync_answer(&mut self, _now_ms: u64, peer: &str, accepted: bool) {
        if !accepted {
            self.requests.done(peer);
        }
    }

    /// A `sync` message from `peer` arrived: admitted only if it answers a
    /// request of ours. The runtime merges its records only on `Ok`.
    pub fn on_sync_message(&self, now_ms: u64, peer: &str) -> Result<(), SyncRefused> {
        if self.requests.admits(peer, now_ms) {
            Ok(())
        } else {
            Err(SyncRefused::Unsolicited { peer: peer.to_string() })
        }
    }

    /// The complete `sync` message from `peer` was merged: adopt its marks,
    /// each only for an origin we know and never our own, and the request
    /// is spent.
    pub fn on_sync_complete(
        &mut self,
        now_ms: u64,
        peer: &str,
        marks: HashMap<String, u64>,
        view: &impl Replica,
        out: &mut Vec<Command>,
    ) -> Result<(), SyncRefused> {
        self.on_sync_message(now_ms, peer)?;
        let own = marks.get(peer).copied();
        let mut adopt: Vec<(String, u64)> = marks
            .into_iter()
            .filter(|(o, _)| *o != self.me && view.knows_origin(o))
            .collect();
        adopt.sort();
        out.push(Command::AdoptMarks {
            peer: peer.to_string(),
            own,
            marks: adopt,
        });
        self.full_sync_done = true;
        self.requests.done(peer);
        Ok(())
    }

    /// `peer` asked us for a full sync (`PUT /sync/node/:peer`): push one,
    /// unless one to it runs. Returns whether a push starts.
    pub fn on_full_sync_asked(&mut self, _now_ms: u64, peer: &str, out: &mut Vec<Command>) -> bool {
        if !self.pushing_to.insert(peer.to_string()) {
            return false;
        }
        out.push(Command::PushFullSync {
            peer: peer.to_string(),
            page_records: FULL_SYNC_PAGE_RECORDS,
            message_bytes_max: PULL_PAGE_BYTES_MAX,
        });
        true
    }

    /// The push to `peer` ended (complete or not).
    pub fn on_full_sync_pushed(&mut self, _now_ms: u64, peer: &str) {
        self.pushing_to.remove(peer);
    }
}
