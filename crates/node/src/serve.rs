//! HTTP/1 serving with connection deadlines, for the client API and the peer
//! listener. Owns how one connection is served: the header read deadline (a
//! request's headers must arrive within `header_read` of the connection's
//! opening or of the request's first byte), the idle deadline (a keep-alive
//! connection waits at most `idle` for its next request), and graceful
//! shutdown (stop accepting, let requests in flight finish, close idle
//! connections). Body deadlines are the handlers' (`api::json_body`).
//!
//! hyper measures its header read timeout from the moment it starts reading a
//! request head, which on a keep-alive connection is also the idle time. To
//! tell the two apart, each connection gets its own [`ConnTimer`]: it counts
//! the bytes read, and the deadline it hands hyper is `idle` until a byte of
//! the next request arrives, then `header_read` from that byte.
//!
//! Must never: route or read requests (that is the routers'), or wait on a
//! client without a deadline.

use crate::config::ApiConfig;
use crate::listener::LimitedListener;
use axum::Router;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, watch};

/// Deadlines of one connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnTimeouts {
    /// From the connection's opening, or a request's first byte, to the end
    /// of its headers.
    pub header_read: Duration,
    /// From the end of a response to the first byte of the next request.
    pub idle: Duration,
}

impl ConnTimeouts {
    pub fn of_api(api: &ApiConfig) -> Self {
        ConnTimeouts {
            header_read: Duration::from_millis(api.header_read_timeout_ms),
            idle: Duration::from_millis(api.idle_timeout_ms),
        }
    }
}

/// The client API's listener with its connection limits and deadlines.
pub struct ApiServer {
    listener: LimitedListener,
    timeouts: ConnTimeouts,
}

impl ApiServer {
    pub fn new(listener: impl Into<Box<dyn crate::transport::Listen>>, api: &ApiConfig) -> Self {
        ApiServer {
            listener: LimitedListener::new(listener, api.max_connections, api.max_connections_per_address),
            timeouts: ConnTimeouts::of_api(api),
        }
    }

    /// Serves `router` until `shutdown` resolves, then stops accepting, lets
    /// requests in flight finish and returns once every connection is closed.
    pub async fn run(self, router: Router, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let ApiServer { mut listener, timeouts } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
        tokio::pin!(shutdown);
        loop {
            // `biased` (here and below): a fixed order, so a simulated run
            // replays; tokio draws the order from an unseeded source otherwise.
            tokio::select! {
                biased;
                (io, _addr) = listener.accept() => {
                    let router = router.clone();
                    let stop = stop_rx.clone();
                    let open = open_tx.clone();
                    crate::spawn::spawn(async move {
                        serve_connection(io, router, timeouts, stop).await;
                        drop(open);
                    });
                }
                _ = &mut shutdown => break,
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        drop(open_tx);
        // Every connection task holds a sender; recv ends when the last is gone.
        let _ = open_rx.recv().await;
        Ok(())
    }
}

/// Serves HTTP/1 on one connection under `timeouts` until the client closes,
/// a deadline passes, or `stop` turns true (then requests in flight finish
/// and the connection closes).
pub async fn serve_connection<I>(io: I, router: Router, timeouts: ConnTimeouts, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let reads = Arc::new(AtomicU64::new(0));
    let io = Counted {
        inner: io,
        reads: reads.clone(),
    };
    let svc = hyper_util::service::TowerToHyperService::new(router);
    let conn = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(timeouts.header_read)
        .timer(ConnTimer {
            timeouts,
            reads,
            served: AtomicBool::new(false),
        })
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        biased;
        _ = conn.as_mut() => {}
        _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The connection's reader, counting bytes read so [`ConnTimer`] can tell
/// an idle connection from one sending a request.
struct Counted<I> {
    inner: I,
    reads: Arc<AtomicU64>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.reads.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// One connection's timer. hyper's HTTP/1 server asks a timer only for the
/// header read deadline, once per request head.
struct ConnTimer {
    timeouts: ConnTimeouts,
    reads: Arc<AtomicU64>,
    /// False until the first request head is awaited.
    served: AtomicBool,
}

impl hyper::rt::Timer for ConnTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_for(duration)
    }

    fn sleep_until(&self, _deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        // hyper asks only for the header read deadline, which it set at
        // `Instant::now() + header_read` a moment ago: measured on tokio's
        // clock instead (a paused runtime, in the whole-node simulation,
        // moves it on its own), and without the real microseconds hyper
        // took, so a simulated run replays.
        self.sleep_for(self.timeouts.header_read)
    }
}

impl ConnTimer {
    fn sleep_for(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let first = !self.served.swap(true, Ordering::Relaxed);
        let now = tokio::time::Instant::now();
        let (until, counting) = if first {
            // A new connection: its first request's headers are due now + header_read.
            (now + duration, true)
        } else {
            (now + self.timeouts.idle, false)
        };
        Box::pin(HeadDeadline {
            sleep: Box::pin(tokio::time::sleep_until(until)),
            reads: self.reads.clone(),
            mark: self.reads.load(Ordering::Relaxed),
            header_running: counting,
            header_read: self.timeouts.header_read,
        })
    }
}

/// The deadline of one request head: idle until a byte arrives, then
/// `header_read` from that byte.
struct HeadDeadline {
    sleep: Pin<Box<tokio::time::Sleep>>,
    reads: Arc<AtomicU64>,
    mark: u64,
    header_running: bool,
    header_read: Duration,
}

impl Future for HeadDeadline {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // hyper polls this whenever the connection has read (and is still
        // waiting for the rest of the head), so a first byte is seen here.
        if !self.header_running && self.reads.load(Ordering::Relaxed) != self.mark {
            self.header_running = true;
            let until = tokio::time::Instant::now() + self.header_read;
            self.sleep.as_mut().reset(until);
        }
        self.sleep.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for HeadDeadline {}
