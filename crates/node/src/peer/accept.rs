//! The peer listener's accept loop: TCP, then TLS, then HTTP/1 with the
//! deadlines of [`crate::serve`]. Owns the bounds that keep a connection
//! flood from delaying real peers:
//! - open connections at most [`PEER_CONNECTIONS_MAX`]; more wait in the
//!   kernel's accept queue;
//! - connections not yet authenticated (in their TLS handshake, or done
//!   without a client certificate) at most
//!   [`PENDING_PER_ADDRESS_MAX`] per source address; more are closed at once;
//! - a TLS handshake gets [`HANDSHAKE_TIMEOUT`], and at most
//!   [`HANDSHAKES_MAX`] run at once: a new one evicts the oldest, so stalled
//!   handshakes cannot make a real peer's wait behind them;
//! - a connection without a client certificate may only call
//!   `/mesh/v1/hello`, at most [`UNAUTHENTICATED_MAX`] are open at once (more
//!   are closed), and each is closed after [`UNAUTHENTICATED_LIFETIME`].
//!
//! Must never: authenticate a request (a certificate only selects the router;
//! the handlers check tokens and names), or wait on a remote without a
//! deadline.

use super::server::PeerCert;
use crate::listener::PerAddress;
use crate::serve::{serve_connection, ConnTimeouts};
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};

/// Deadline for a TLS handshake (a real peer needs a few milliseconds).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// TLS handshakes in flight at once; a new one evicts the oldest.
pub const HANDSHAKES_MAX: usize = 64;
/// Open peer connections at once.
pub const PEER_CONNECTIONS_MAX: usize = 1024;
/// Connections from one source address still in their handshake or without
/// a client certificate.
pub const PENDING_PER_ADDRESS_MAX: usize = 8;
/// Open connections without a client certificate at once.
pub const UNAUTHENTICATED_MAX: usize = 64;
/// How long a connection without a client certificate stays open.
pub const UNAUTHENTICATED_LIFETIME: Duration = Duration::from_secs(10);
/// Header read and idle deadlines of peer connections.
pub const PEER_TIMEOUTS: ConnTimeouts = ConnTimeouts {
    header_read: Duration::from_secs(10),
    idle: Duration::from_secs(30),
};

/// The bounds of the accept loop; [`Default`] gives the constants above
/// (tests shrink them).
#[derive(Clone, Copy, Debug)]
pub struct AcceptLimits {
    pub handshake_timeout: Duration,
    pub handshakes_max: usize,
    pub connections_max: usize,
    pub pending_per_address_max: usize,
    pub unauthenticated_max: usize,
    pub unauthenticated_lifetime: Duration,
    pub timeouts: ConnTimeouts,
}

impl Default for AcceptLimits {
    fn default() -> Self {
        AcceptLimits {
            handshake_timeout: HANDSHAKE_TIMEOUT,
            handshakes_max: HANDSHAKES_MAX,
            connections_max: PEER_CONNECTIONS_MAX,
            pending_per_address_max: PENDING_PER_ADDRESS_MAX,
            unauthenticated_max: UNAUTHENTICATED_MAX,
            unauthenticated_lifetime: UNAUTHENTICATED_LIFETIME,
            timeouts: PEER_TIMEOUTS,
        }
    }
}

/// Accepts TLS connections until `closing` turns true; connections open then
/// finish their requests in flight and close.
pub async fn serve(
    listener: impl Into<Box<dyn crate::transport::Listen>>,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    closing: tokio::sync::watch::Receiver<bool>,
) {
    serve_with(listener, tls, router, closing, AcceptLimits::default()).await
}

/// [`serve`] under `limits`.
pub async fn serve_with(
    listener: impl Into<Box<dyn crate::transport::Listen>>,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    mut closing: tokio::sync::watch::Receiver<bool>,
    limits: AcceptLimits,
) {
    let mut listener = listener.into();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(limits.connections_max));
    let pending = PerAddress::new(limits.pending_per_address_max);
    let handshakes = Handshakes::new(limits.handshakes_max);
    let unauthenticated = Arc::new(Semaphore::new(limits.unauthenticated_max));
    let hello_only = router.clone().layer(middleware::from_fn(only_hello));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // `biased` (here and below): a fixed order, so a simulated run
        // replays; tokio draws the order from an unseeded source otherwise.
        let (tcp, addr) = tokio::select! {
            biased;
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("peer accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = closing.changed() => return,
        };
        let Some(pending_slot) = pending.admit(addr.ip()) else {
            tracing::debug!(%addr, "peer connection closed: too many unauthenticated from this address");
            continue;
        };
        let acceptor = acceptor.clone();
        let (router, hello_only) = (router.clone(), hello_only.clone());
        let (handshake, evicted) = handshakes.admit();
        let unauthenticated = unauthenticated.clone();
        let closing = closing.clone();
        crate::spawn::spawn(async move {
            let _slot = slot;
            let tls = tokio::select! {
                biased;
                r = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)) => match r {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        tracing::debug!(%addr, "peer TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%addr, "peer TLS handshake timed out");
                        return;
                    }
                },
                _ = evicted => {
                    tracing::debug!(%addr, "peer TLS handshake evicted by newer ones");
                    return;
                }
            };
            drop(handshake);
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Arc::new(c.clone().into_owned()));
            if cert.is_some() {
                drop(pending_slot);
                let router = router.layer(Extension(PeerCert(cert)));
                serve_connection(tls, router, limits.timeouts, closing).await;
                return;
            }
            let Ok(_unauthenticated) = unauthenticated.try_acquire_owned() else {
                tracing::debug!(%addr, "peer connection closed: too many without a certificate");
                return;
            };
            let router = hello_only.layer(Extension(PeerCert(None)));
            let served = serve_connection(tls, router, limits.timeouts, closing);
            let _ = tokio::time::timeout(limits.unauthenticated_lifetime, served).await;
            drop(pending_slot);
        });
    }
}

/// Without a client certificate, only HELLO is served.
async fn only_hello(req: Request, next: Next) -> Response {
    if req.uri().path() == "/mesh/v1/hello" {
        return next.run(req).await;
    }
    crate::error::ApiError::new(
        StatusCode::UNAUTHORIZED,
        "certificate_required",
        "this call needs a client certificate",
    )
    .into_response()
}

/// TLS handshakes in flight, oldest first, each with a way to evict it.
#[derive(Clone)]
struct Handshakes {
    inner: Arc<Mutex<InFlight>>,
    max: usize,
}

struct InFlight {
    next: u64,
    evict: BTreeMap<u64, oneshot::Sender<()>>,
}

/// One handshake's place; dropping it frees the place.
struct HandshakeSlot {
    inner: Arc<Mutex<InFlight>>,
    id: u64,
}

impl Handshakes {
    fn new(max: usize) -> Self {
        Handshakes {
            inner: Arc::new(Mutex::new(InFlight {
                next: 0,
                evict: BTreeMap::new(),
            })),
            max,
        }
    }

    /// A place for one more handshake, evicting the oldest at the cap. The
    /// receiver resolves when this one is evicted.
    fn admit(&self) -> (HandshakeSlot, oneshot::Receiver<()>) {
        let mut f = self.inner.lock().expect("handshakes lock");
        while f.evict.len() >= self.max {
            // Dropping the sender resolves the oldest handshake's receiver.
            f.evict.pop_first();
        }
        let id = f.next;
        f.next += 1;
        let (tx, rx) = oneshot::channel();
        f.evict.insert(id, tx);
        (
            HandshakeSlot {
                inner: self.inner.clone(),
                id,
            },
            rx,
        )
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.inner.lock().expect("handshakes lock").evict.remove(&self.id);
    }
}
