//! The wall clock the node reads ([`now_ms`]): the system clock unless a
//! [`Clock`] of its own was installed on the running thread (by
//! [`crate::NodeBuilder::clock`], for the whole-node simulation in
//! `crates/nodesim`, which runs every center on one thread).
//!
//! Timers and deadlines are tokio's (`tokio::time`), which a paused runtime
//! already drives on simulated time; only the wall reading (record versions,
//! leases, tokens, vote deadlines) needs this seam.
//!
//! Must never: read anything but a clock, or change the reading of a thread
//! that did not install a clock (operators always get the system clock).

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall time, in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    fn wall_ms(&self) -> u64;
}

/// The system clock (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

thread_local! {
    static INSTALLED: RefCell<Option<Arc<dyn Clock>>> = const { RefCell::new(None) };
}

/// Milliseconds since the Unix epoch: the clock installed on this thread,
/// else the system clock.
pub fn now_ms() -> u64 {
    let own = INSTALLED.with(|c| c.borrow().clone());
    match own {
        Some(c) => c.wall_ms(),
        None => SystemClock.wall_ms(),
    }
}

/// Whether this thread reads a clock of its own (the whole-node
/// simulation): then blocking work runs inline, on the simulated thread,
/// since a real thread's finishing time would decide when its waiter wakes
/// and a seed would not replay.
pub fn installed() -> bool {
    INSTALLED.with(|c| c.borrow().is_some())
}

/// Makes `clock` the reading of [`now_ms`] on this thread from now on.
pub fn install(clock: Arc<dyn Clock>) {
    INSTALLED.with(|c| *c.borrow_mut() = Some(clock));
}
