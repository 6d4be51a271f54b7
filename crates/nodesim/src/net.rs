//! The node's [`Transport`] over turmoil's simulated TCP. A center listens on
//! every address of its host (the port of its configured address), and
//! reaches another by its host name (`https://c2:7000`).
//!
//! Must never: open a real socket.

use regmesh_node::transport::{BoxConn, BoxFuture, Listen, Transport};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};

/// turmoil's network as a node transport.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimNet;

struct SimListener(turmoil::net::TcpListener);

impl Transport for SimNet {
    fn connect<'a>(&'a self, authority: &'a str) -> BoxFuture<'a, io::Result<BoxConn>> {
        let authority = authority.to_string();
        Box::pin(async move {
            let s = turmoil::net::TcpStream::connect(authority.as_str()).await?;
            Ok(Box::new(s) as BoxConn)
        })
    }

    fn listen(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listen>>> {
        Box::pin(async move {
            let l = turmoil::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, addr.port())).await?;
            Ok(Box::new(SimListener(l)) as Box<dyn Listen>)
        })
    }
}

impl Listen for SimListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxConn, SocketAddr)>> {
        Box::pin(async move {
            let (s, a) = self.0.accept().await?;
            Ok((Box::new(s) as BoxConn, a))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}
