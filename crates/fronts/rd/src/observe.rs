//! Observe (RFC 7641) on the lookup resources: the observer table keyed by
//! (peer, token) on the full URI with its query, and the notifier that
//! recomputes each observed lookup when registrations change (locally, by
//! replication, by expiry) and notifies when the result differs. The same
//! task supersedes this center's registrations when a newer one of the
//! same (ep, d) arrives from another center (handover).
//!
//! Must never: hold more than [`OBSERVERS_MAX`] observers, or notify an
//! observer whose result did not change.

use crate::kind::{Registration, REGISTRATION};
use crate::lookup::LookupKind;
use regmesh_node::handle::ListQuery;
use regmesh_node::NodeHandle;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Most observers at once.
pub const OBSERVERS_MAX: usize = 1024;
/// How often observed lookups are recomputed without a change event (for
/// lifetimes of other centers' registrations running out here).
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(2);

/// One observation.
#[derive(Debug, Clone)]
pub struct Observer {
    pub which: LookupKind,
    pub query: Vec<String>,
    /// Digest of the last result sent.
    pub digest: [u8; 32],
    /// Observe sequence number last sent.
    pub seq: u32,
    /// Message id of the last notification (an RST with it cancels).
    pub last_mid: Option<u16>,
    /// Non-confirmable notifications since the last confirmable one.
    pub non_in_a_row: u32,
    /// When the last confirmable notification went (None: never).
    pub last_con: Option<std::time::Instant>,
}

/// Observers by (peer, token).
#[derive(Default)]
pub struct Observers {
    pub map: HashMap<(SocketAddr, Vec<u8>), Observer>,
}

impl Observers {
    /// Adds or refreshes an observation; returns the Observe sequence number
    /// to answer with (a refresh goes on from the last one sent, so the
    /// client never sees it go back), or None if the table is full.
    pub fn add(&mut self, key: (SocketAddr, Vec<u8>), mut o: Observer) -> Option<u32> {
        match self.map.get(&key) {
            Some(old) => o.seq = (old.seq + 1) & 0xff_ffff,
            None if self.map.len() >= OBSERVERS_MAX => return None,
            None => {}
        }
        let seq = o.seq;
        self.map.insert(key, o);
        Some(seq)
    }

    pub fn remove(&mut self, key: &(SocketAddr, Vec<u8>)) {
        self.map.remove(key);
    }

    /// Removes the observer whose last notification to `peer` had `mid`;
    /// returns its key.
    pub fn reset(&mut self, peer: SocketAddr, mid: u16) -> Option<(SocketAddr, Vec<u8>)> {
        let key = self
            .map
            .iter()
            .find(|((p, _), o)| *p == peer && o.last_mid == Some(mid))
            .map(|(k, _)| k.clone())?;
        self.map.remove(&key);
        Some(key)
    }
}

/// Deletes this center's registrations of the (ep, d) of `newer` that are
/// older than it: the registration moved to another center.
pub async fn supersede(node: &NodeHandle, newer: &regmesh_core::Record) {
    let Some(reg) = Registration::from_body(&newer.body) else {
        return;
    };
    let key = Registration::epd(&reg.ep, &reg.d);
    let q = ListQuery {
        filters: vec![("epd", &key)],
        cursor: None,
        limit: Some(16.min(node.limits().list_limit_max)),
    };
    let Ok(page) = node.list(REGISTRATION, &q) else {
        return;
    };
    for old in page.records {
        if old.origin == node.center_id() && old.id != newer.id && crate::lookup::newer(newer, &old) {
            match node.delete(REGISTRATION, &old.id, Some(old.version)).await {
                Ok(()) => {
                    tracing::info!(id = %old.id, by = %newer.origin, "rd registration superseded by another center")
                }
                Err(e) => tracing::warn!(id = %old.id, error = %e, "could not remove superseded registration"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs() -> Observer {
        Observer {
            which: LookupKind::Resource,
            query: vec![],
            digest: [0; 32],
            seq: 2,
            last_mid: None,
            non_in_a_row: 0,
            last_con: None,
        }
    }

    #[test]
    fn refresh_goes_on_and_the_table_is_bounded() {
        let mut t = Observers::default();
        let p: SocketAddr = "[::1]:1".parse().unwrap();
        assert_eq!(t.add((p, vec![1]), obs()), Some(2));
        t.map.get_mut(&(p, vec![1])).unwrap().seq = 9;
        assert_eq!(
            t.add((p, vec![1]), obs()),
            Some(10),
            "a re-registration does not go back"
        );
        for i in 1..OBSERVERS_MAX {
            assert!(t.add((p, (i as u32).to_be_bytes().to_vec()), obs()).is_some());
        }
        assert_eq!(t.add((p, vec![0xff; 8]), obs()), None, "full");
        t.map.get_mut(&(p, vec![1])).unwrap().last_mid = Some(77);
        assert_eq!(t.reset(p, 77), Some((p, vec![1])));
        assert!(!t.map.contains_key(&(p, vec![1])), "an RST of a notification cancels");
    }
}
