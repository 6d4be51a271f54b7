//! How the node starts its tasks: [`spawn`], which is `tokio::spawn` unless
//! the spawning task runs under a [`Gate`] (set by
//! [`crate::NodeBuilder::gate`], for the whole-node simulation in
//! `crates/nodesim`). A gated task is spawned gated too, so every task a
//! gated node starts, and every task those start, stops while its gate is
//! shut: woken (by a timer, a socket) it stays parked, and runs once the
//! gate opens, its timers then firing late, as in a process stopped with
//! SIGSTOP and continued.
//!
//! Must never: change what a task does, only whether it may run now;
//! operators (no gate) get plain `tokio::spawn`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::task::JoinHandle;

tokio::task_local! {
    static GATE: Arc<Gate>;
}

/// Whether a node's tasks may run. Shut, each task that wakes is parked
/// (its waker kept, one per task at most) until [`Gate::open`].
#[derive(Debug)]
pub struct Gate {
    open: AtomicBool,
    parked: Mutex<Vec<Waker>>,
}

impl Gate {
    /// A gate, open.
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate {
            open: AtomicBool::new(true),
            parked: Mutex::new(Vec::new()),
        })
    }

    /// Stops every task under this gate at its next wake-up.
    pub fn shut(&self) {
        self.open.store(false, Ordering::SeqCst);
    }

    /// Lets the tasks run again and wakes each one parked.
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        let parked = std::mem::take(&mut *self.parked.lock().expect("gate lock"));
        for w in parked {
            w.wake();
        }
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// Parks `waker` unless the gate is open; whether it was parked.
    fn park(&self, waker: &Waker) -> bool {
        let mut parked = self.parked.lock().expect("gate lock");
        // Checked under the lock: an `open` after this sees the waker.
        if self.is_open() {
            return false;
        }
        if !parked.iter().any(|w| w.will_wake(waker)) {
            parked.push(waker.clone());
        }
        true
    }
}

/// `f` run only while `gate` is open.
struct Gated<F> {
    gate: Arc<Gate>,
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if !self.gate.is_open() && self.gate.park(cx.waker()) {
            return Poll::Pending;
        }
        self.inner.as_mut().poll(cx)
    }
}

/// Spawns `f` as `tokio::spawn` does, under the spawning task's gate if it
/// has one.
pub fn spawn<F>(f: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match GATE.try_with(Arc::clone) {
        Ok(gate) => tokio::spawn(under(gate, f)),
        Err(_) => tokio::spawn(f),
    }
}

/// `f` run under `gate`: it, and every task it spawns with [`spawn`], runs
/// only while the gate is open.
pub fn under<F: Future>(gate: Arc<Gate>, f: F) -> impl Future<Output = F::Output> {
    GATE.scope(
        gate.clone(),
        Gated {
            gate,
            inner: Box::pin(f),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_shut_gate_holds_timers_and_spawned_tasks_until_it_opens() {
        let gate = Gate::new();
        let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let t = ticks.clone();
        let outer = tokio::spawn(under(gate.clone(), async move {
            // A task spawned by a gated task is gated too.
            spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    t.fetch_add(1, Ordering::SeqCst);
                }
            })
            .await
        }));
        tokio::time::sleep(Duration::from_millis(35)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 3);
        gate.shut();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 3, "no progress while shut");
        gate.open();
        tokio::time::sleep(Duration::from_millis(1)).await;
        // The overdue sleep fires at once, late; then the loop goes on.
        assert_eq!(ticks.load(Ordering::SeqCst), 4);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 5);
        outer.abort();
    }
}
