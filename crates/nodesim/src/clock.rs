//! The node's [`Clock`] on turmoil's simulated time: the simulation's epoch
//! plus the virtual time elapsed. Read outside a host's tick (the harness
//! reading records between steps), it gives the last reading taken inside.
//!
//! Must never: read the system clock.

use regmesh_node::clock::Clock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Simulated wall time.
#[derive(Debug, Default)]
pub struct SimClock {
    last_ms: AtomicU64,
}

impl SimClock {
    /// The harness's reading between steps (outside any host).
    pub fn observe_ms(&self, ms: u64) {
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }
}

impl Clock for SimClock {
    fn wall_ms(&self) -> u64 {
        match turmoil::since_epoch() {
            Some(d) => {
                let ms = d.as_millis() as u64;
                self.last_ms.fetch_max(ms, Ordering::Relaxed);
                ms
            }
            None => self.last_ms.load(Ordering::Relaxed),
        }
    }
}
