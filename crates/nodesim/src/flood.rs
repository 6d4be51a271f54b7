//! Connections a broken or hostile client leaves open: from a host of its
//! own (its own source address), `n` TCP connections to one port of a
//! center, each sending a fixed prefix of a request (half a request head,
//! half a TLS ClientHello, or nothing) and then holding still, as slow
//! clients and connection floods do. Notes how many connected and when the
//! center closed each, so a scenario can check that the center's limits
//! and deadlines let go of them while its real callers are served.
//!
//! Must never: send a whole request (these connections are never served),
//! or connect anywhere but the simulated network.

use crate::world::World;
use std::cell::RefCell;
use std::rc::Rc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What became of a flood's connections.
#[derive(Debug, Default)]
pub struct FloodLog {
    /// Connections made (the center's host took them).
    pub opened: usize,
    /// Connections that could not be made.
    pub failed: usize,
    /// When the center closed each that it closed, ms of simulated time.
    pub closed_at_ms: Vec<u64>,
}

/// One flood: where to, how many, and what each sends.
pub struct Flood {
    /// The flood's own host (so its connections share one source address).
    pub host: String,
    pub to: String,
    pub port: u16,
    pub connections: usize,
    /// The prefix the `k`th connection sends (empty: it sends nothing).
    pub prefix: fn(usize) -> &'static [u8],
}

impl World {
    /// Starts `flood` on a new host; its log fills as simulated time runs.
    /// The host holds its connections until the center closes them or the
    /// world ends.
    pub fn flood(&mut self, flood: Flood) -> Rc<RefCell<FloodLog>> {
        let log: Rc<RefCell<FloodLog>> = Rc::default();
        let out = log.clone();
        let Flood {
            host,
            to,
            port,
            connections,
            prefix,
        } = flood;
        self.sim.client(host.as_str(), async move {
            // Every connection at once, each on its own task: a center
            // that does not accept one must not hold back the rest.
            for k in 0..connections {
                let (to, out) = (to.clone(), out.clone());
                tokio::task::spawn_local(async move {
                    let Ok(mut s) = turmoil::net::TcpStream::connect((to.as_str(), port)).await else {
                        out.borrow_mut().failed += 1;
                        return;
                    };
                    out.borrow_mut().opened += 1;
                    let bytes = prefix(k);
                    if bytes.is_empty() || s.write_all(bytes).await.is_ok() {
                        // Held until the center closes it (a read of 0
                        // bytes or an error); nothing more is ever sent.
                        let mut buf = [0u8; 1024];
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                        }
                    }
                    out.borrow_mut()
                        .closed_at_ms
                        .push(turmoil::elapsed().as_millis() as u64);
                });
            }
            std::future::pending::<()>().await;
            Ok(())
        });
        log
    }
}
