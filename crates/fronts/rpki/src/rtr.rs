//! The console's RTR server (RFC 8210, versions 0–2, the `rpki` crate's
//! `rtr` module): routers get the current VRP set, diffs from any of the
//! last [`HISTORY_MAX`] serials (older: a cache reset), and a Serial Notify
//! when the set changes. Connections are limited to [`CONNECTIONS_MAX`].
//!
//! Must never: serve a set that is not the last one published, or hold more
//! than [`HISTORY_MAX`] old sets.

use crate::vrps::VrpSet;
use rpki::resources::addr::{MaxLenPrefix, Prefix};
use rpki::resources::Asn;
use rpki::rtr::payload::{Action, PayloadRef, RouteOrigin, Timing};
use rpki::rtr::server::{NotifySender, PayloadDiff, PayloadSet, PayloadSource, Server, Socket};
use rpki::rtr::State;
use std::collections::{BTreeSet, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Old sets kept for diffs.
pub const HISTORY_MAX: usize = 16;
/// Routers connected at once; more wait in the accept queue.
pub const CONNECTIONS_MAX: usize = 256;

type Origins = Arc<BTreeSet<RouteOrigin>>;

struct Inner {
    state: State,
    ready: bool,
    current: Origins,
    /// (serial, set at that serial), oldest first.
    history: VecDeque<(u32, Origins)>,
    timing: Timing,
}

/// The VRPs routers read; [`RtrSource::publish`] installs a new set.
#[derive(Clone)]
pub struct RtrSource {
    inner: Arc<RwLock<Inner>>,
    notify: Arc<std::sync::Mutex<NotifySender>>,
}

fn origins(vrps: &VrpSet) -> BTreeSet<RouteOrigin> {
    vrps.iter()
        .filter_map(|v| {
            let p = Prefix::new(v.addr, v.len).ok()?;
            let m = MaxLenPrefix::new(p, Some(v.max_len)).ok()?;
            Some(RouteOrigin::new(m, Asn::from_u32(v.asn)))
        })
        .collect()
}

impl RtrSource {
    pub fn new(refresh_s: u32) -> Self {
        RtrSource {
            inner: Arc::new(RwLock::new(Inner {
                state: State::new(),
                ready: false,
                current: Arc::new(BTreeSet::new()),
                history: VecDeque::new(),
                timing: Timing {
                    refresh: refresh_s.max(1),
                    retry: 600,
                    expire: 7200.max(refresh_s * 2),
                },
            })),
            notify: Arc::new(std::sync::Mutex::new(NotifySender::new())),
        }
    }

    /// Installs a validated set. A changed set gets the next serial and a
    /// Serial Notify to every router; an unchanged one changes nothing.
    pub fn publish(&self, vrps: &VrpSet) {
        let new = origins(vrps);
        {
            let mut g = self.inner.write().expect("rtr lock");
            if g.ready && *g.current == new {
                return;
            }
            if g.ready {
                let old = (g.state.serial().0, g.current.clone());
                g.history.push_back(old);
                while g.history.len() > HISTORY_MAX {
                    g.history.pop_front();
                }
                g.state.inc();
            }
            g.current = Arc::new(new);
            g.ready = true;
        }
        self.notify.lock().expect("notify lock").notify();
    }

    /// The serial routers see now.
    pub fn serial(&self) -> u32 {
        self.inner.read().expect("rtr lock").state.serial().0
    }

    /// Serves RTR on `listener` until it fails.
    pub async fn serve(self, listener: tokio::net::TcpListener) {
        let permits = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
        let stream = futures_util::stream::unfold((listener, permits), |(l, p)| async move {
            let permit = p.clone().acquire_owned().await.ok()?;
            let r = l.accept().await.map(|(s, _)| Limited {
                sock: s,
                _permit: permit,
            });
            Some((r, (l, p)))
        });
        let notify = self.notify.lock().expect("notify lock").clone();
        let server = Server::new(Box::pin(stream), notify, self);
        if let Err(e) = server.run().await {
            tracing::warn!(error = %e, "RTR listener failed");
        }
    }
}

/// A router's connection, holding one of the connection permits.
struct Limited {
    sock: tokio::net::TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl AsyncRead for Limited {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.sock).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.sock).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.sock).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.sock).poll_shutdown(cx)
    }
}

impl Socket for Limited {}

/// A full set, walked in order.
pub struct FullSet {
    set: Origins,
    pos: usize,
    items: Vec<RouteOrigin>,
}

impl PayloadSet for FullSet {
    fn next(&mut self) -> Option<PayloadRef<'_>> {
        if self.items.is_empty() && !self.set.is_empty() {
            self.items = self.set.iter().copied().collect();
        }
        let item = self.items.get(self.pos).copied()?;
        self.pos += 1;
        Some(PayloadRef::Origin(item))
    }
}

/// A diff: announcements then withdrawals.
pub struct Diff {
    items: Vec<(RouteOrigin, Action)>,
    pos: usize,
}

impl PayloadDiff for Diff {
    fn next(&mut self) -> Option<(PayloadRef<'_>, Action)> {
        let (o, a) = self.items.get(self.pos).copied()?;
        self.pos += 1;
        Some((PayloadRef::Origin(o), a))
    }
}

impl PayloadSource for RtrSource {
    type Set = FullSet;
    type Diff = Diff;

    fn ready(&self) -> bool {
        self.inner.read().expect("rtr lock").ready
    }

    fn notify(&self) -> State {
        self.inner.read().expect("rtr lock").state
    }

    fn full(&self) -> (State, FullSet) {
        let g = self.inner.read().expect("rtr lock");
        (
            g.state,
            FullSet {
                set: g.current.clone(),
                pos: 0,
                items: Vec::new(),
            },
        )
    }

    fn diff(&self, state: State) -> Option<(State, Diff)> {
        let g = self.inner.read().expect("rtr lock");
        if state.session() != g.state.session() {
            return None;
        }
        let old = if state.serial() == g.state.serial() {
            g.current.clone()
        } else {
            g.history.iter().find(|(s, _)| *s == state.serial().0)?.1.clone()
        };
        let mut items: Vec<(RouteOrigin, Action)> =
            g.current.difference(&old).map(|o| (*o, Action::Announce)).collect();
        items.extend(old.difference(&g.current).map(|o| (*o, Action::Withdraw)));
        Some((g.state, Diff { items, pos: 0 }))
    }

    fn timing(&self) -> Timing {
        self.inner.read().expect("rtr lock").timing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrps::Vrp;

    fn set(asns: &[u32]) -> VrpSet {
        asns.iter()
            .map(|a| Vrp {
                asn: *a,
                addr: "192.0.2.0".parse().unwrap(),
                len: 24,
                max_len: 24,
                ta: "t".into(),
            })
            .collect()
    }

    #[test]
    fn serials_move_only_on_change_and_diffs_reach_back_through_history() {
        let src = RtrSource::new(60);
        assert!(!src.ready());
        src.publish(&set(&[1, 2]));
        let s0 = src.notify();
        src.publish(&set(&[1, 2]));
        assert_eq!(src.notify().serial(), s0.serial(), "unchanged set, same serial");
        src.publish(&set(&[2, 3]));
        assert_eq!(src.serial(), s0.serial().0 + 1);
        let (_, mut d) = src.diff(s0).unwrap();
        let mut got = Vec::new();
        while let Some((PayloadRef::Origin(o), a)) = d.next() {
            got.push((o.asn.into_u32(), a.is_announce()));
        }
        assert_eq!(got, [(3, true), (1, false)]);
        for i in 0..HISTORY_MAX as u32 + 1 {
            src.publish(&set(&[100 + i]));
        }
        assert!(src.diff(s0).is_none(), "too old: cache reset");
        let (_, mut full) = src.full();
        assert!(full.next().is_some());
    }
}
