//! A TCP listener that holds at most `max` connections open at once, and at
//! most `per_address_max` from one source IP address. When the total limit is
//! reached, accepting waits (new connections queue in the kernel's backlog)
//! until a connection closes; a connection over its address's limit is closed
//! at once, so one source cannot fill the total.
//!
//! Must never: read or write a connection's bytes (that is the server's), or
//! let a count outlive its connection.

use crate::transport::{BoxConn, Listen};
use axum::serve::Listener;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct LimitedListener {
    inner: Box<dyn Listen>,
    slots: Arc<Semaphore>,
    per_address: PerAddress,
}

impl LimitedListener {
    pub fn new(inner: impl Into<Box<dyn Listen>>, max: usize, per_address_max: usize) -> Self {
        LimitedListener {
            inner: inner.into(),
            slots: Arc::new(Semaphore::new(max)),
            per_address: PerAddress::new(per_address_max),
        }
    }

    /// The next connection within both limits.
    pub async fn accept(&mut self) -> (LimitedStream, SocketAddr) {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let Some(address_slot) = self.per_address.admit(addr.ip()) else {
                        tracing::debug!(%addr, "connection refused: too many from this address");
                        drop(stream);
                        continue;
                    };
                    return (
                        LimitedStream {
                            stream,
                            _slot: slot,
                            _address_slot: address_slot,
                        },
                        addr,
                    );
                }
                Err(e) => {
                    // Out of file descriptors and similar: back off, do not spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Open connections per source address, with a cap.
#[derive(Clone)]
pub struct PerAddress {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max: usize,
}

impl PerAddress {
    pub fn new(max: usize) -> Self {
        PerAddress {
            counts: Arc::new(Mutex::new(HashMap::new())),
            max,
        }
    }

    /// A slot for one more connection from `ip`, or `None` at the cap. The
    /// slot frees when dropped.
    pub fn admit(&self, ip: IpAddr) -> Option<AddressSlot> {
        let mut counts = self.counts.lock().expect("per-address lock");
        let n = counts.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            counts: self.counts.clone(),
            ip,
        })
    }

    /// Connections open from `ip` now.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.counts
            .lock()
            .expect("per-address lock")
            .get(&ip)
            .copied()
            .unwrap_or(0)
    }
}

/// One connection's place in its address's count.
pub struct AddressSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("per-address lock");
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// A connection and its slots; the slots free when the connection drops.
pub struct LimitedStream {
    stream: BoxConn,
    _slot: OwnedSemaphorePermit,
    _address_slot: AddressSlot,
}

impl Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        LimitedListener::accept(self).await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
