//! regmesh node: runs a registry center. Owns the tokio runtime pieces: the
//! writer thread and lease sweeper of [`Center`], the HTTP client API
//! ([`api`]), configuration, metrics, and a small HTTP client ([`client`])
//! used by the CLI, the tests and the benchmarks.
//!
//! Must never: hold protocol or merge logic of its own (that is core's), or
//! acknowledge a write the store has not made durable.

pub mod api;
pub mod center;
pub mod client;
pub mod config;
pub mod error;
pub mod id_path;
pub mod listener;
pub mod metrics;
pub mod peer;
pub mod serve;

pub use center::Center;
pub use config::Config;

use std::net::SocketAddr;
use std::sync::Arc;

/// A center serving its API. Dropping it does not stop it; call
/// [`Running::shutdown`].
pub struct Running {
    pub addr: SocketAddr,
    /// The peer listener's address, when the center is in a mesh.
    pub peer_addr: Option<SocketAddr>,
    pub center: Arc<Center>,
    pub mesh: Option<Arc<peer::mesh::Mesh>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    sweeper: tokio::task::JoinHandle<()>,
}

/// Opens the center and starts serving on `cfg.api.listen`.
pub async fn start(cfg: &Config) -> Result<Running, StartError> {
    let center = Center::open(cfg)?;
    let mut tasks = Vec::new();
    let mut peer_addr = None;
    let mesh = match &cfg.peer {
        None => None,
        Some(p) => {
            let (mesh, queues) = peer::mesh::Mesh::new(center.clone(), cfg).map_err(StartError::Peer)?;
            let tls = peer::pki::server_config(&p.cert, &p.key, &p.ca).map_err(|e| StartError::Peer(e.to_string()))?;
            let l = tokio::net::TcpListener::bind(p.listen)
                .await
                .map_err(|source| StartError::Listen { addr: p.listen, source })?;
            peer_addr = Some(
                l.local_addr()
                    .map_err(|source| StartError::Listen { addr: p.listen, source })?,
            );
            let router = peer::server::router(mesh.clone());
            tasks.push(tokio::spawn(peer::server::serve(l, tls, router, center.closing())));
            tasks.extend(mesh.spawn(queues));
            tracing::info!(addr = ?peer_addr, peers = cfg.peers.len(), "peer listener serving (mutual TLS)");
            Some(mesh)
        }
    };
    let listener = tokio::net::TcpListener::bind(cfg.api.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: cfg.api.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: cfg.api.listen,
        source,
    })?;
    let listener = serve::ApiServer::new(listener, &cfg.api);
    let app = api::router(center.clone(), cfg, mesh.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        listener
            .run(app, async {
                let _ = stopped.await;
            })
            .await
    });
    let sweeper = tokio::spawn(center.clone().run_sweeper());
    tracing::info!(id = center.id(), %addr, key = %center.public_key_hex(), "registry center serving");
    Ok(Running {
        addr,
        peer_addr,
        center,
        mesh,
        stop,
        server,
        sweeper,
        tasks,
    })
}

impl Running {
    /// Stops accepting requests, lets in-flight ones finish (watch streams
    /// are cut after a grace period), and commits everything queued.
    pub async fn shutdown(self) {
        self.center.begin_close();
        let _ = self.stop.send(());
        self.sweeper.abort();
        let _ = self.sweeper.await;
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
        drop(self.mesh);
        let mut server = self.server;
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
        let center = self.center;
        // Requests still holding the center finish within the timeout above.
        let _ = tokio::task::spawn_blocking(move || center.close()).await;
    }
}

/// The center could not start. Nothing is running.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Open(#[from] center::OpenError),
    #[error("peer mesh: {0}")]
    Peer(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}
