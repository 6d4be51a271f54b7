//! How the node opens and accepts connections: the [`Transport`] seam. The
//! default, [`Tcp`], is the operating system's TCP (with `TCP_NODELAY` on
//! every connection); the whole-node simulation (`crates/nodesim`)
//! passes its simulated network instead through
//! [`crate::NodeBuilder::transport`] and [`crate::client::Client::with_transport`].
//!
//! Three places use it: the client API's and the peer listener's binds
//! (`lib.rs`), the peer client's connect (`peer/client.rs`) and the small
//! HTTP client's connect (`client.rs`). TLS, HTTP and every limit and
//! deadline stay above it, the same on every transport.
//!
//! Must never: read or write a connection's bytes, or add a limit or a
//! deadline of its own (callers bound every wait).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// A connected byte stream.
pub trait Conn: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Conn for T {}

/// A boxed connection.
pub type BoxConn = Box<dyn Conn>;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens connections and listeners.
pub trait Transport: Send + Sync + 'static {
    /// A connection to `authority` (`host:port`).
    fn connect<'a>(&'a self, authority: &'a str) -> BoxFuture<'a, io::Result<BoxConn>>;
    /// A listener on `addr` (port 0 picks a free one).
    fn listen(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listen>>>;
}

/// A listening socket.
pub trait Listen: Send + 'static {
    /// The next connection and the address it came from.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxConn, SocketAddr)>>;
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// The system's TCP (the default transport).
#[derive(Clone, Copy, Debug, Default)]
pub struct Tcp;

/// The default transport, shared.
pub fn tcp() -> Arc<dyn Transport> {
    Arc::new(Tcp)
}

impl Transport for Tcp {
    fn connect<'a>(&'a self, authority: &'a str) -> BoxFuture<'a, io::Result<BoxConn>> {
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(authority).await?;
            let _ = s.set_nodelay(true);
            Ok(Box::new(s) as BoxConn)
        })
    }

    fn listen(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listen>>> {
        Box::pin(async move {
            let l = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(l) as Box<dyn Listen>)
        })
    }
}

impl Listen for tokio::net::TcpListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxConn, SocketAddr)>> {
        Box::pin(async move {
            let (s, a) = tokio::net::TcpListener::accept(self).await?;
            let _ = s.set_nodelay(true);
            Ok((Box::new(s) as BoxConn, a))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

impl From<tokio::net::TcpListener> for Box<dyn Listen> {
    fn from(l: tokio::net::TcpListener) -> Self {
        Box::new(l)
    }
}
