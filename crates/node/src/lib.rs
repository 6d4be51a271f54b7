//! regmesh node: runs a registry center. Owns the tokio runtime pieces: the
//! writer thread and lease sweeper of [`Center`], the HTTP client API
//! ([`api`]), configuration, metrics, and a small HTTP client ([`client`])
//! used by the CLI, the tests and the benchmarks. Fronts (the agent registry
//! and later protocols) plug in through [`front::Front`] and talk to the node
//! through [`handle::NodeHandle`]; [`NodeBuilder`] starts a node with them.
//!
//! Must never: hold protocol or merge logic of its own (that is core's), or
//! acknowledge a write the store has not made durable.

pub mod api;
pub mod builder;
pub mod center;
pub mod client;
pub mod clock;
pub mod config;
pub mod diagnose;
pub mod error;
pub mod front;
pub mod handle;
pub mod http;
pub mod id_path;
pub mod latency;
pub mod listener;
pub mod messages;
pub mod metrics;
pub mod openapi;
pub mod peer;
pub mod progress;
pub mod serve;
pub mod spawn;
pub mod transport;
pub mod ui;

pub use builder::NodeBuilder;
pub use center::Center;
pub use config::Config;
pub use front::Front;
pub use handle::NodeHandle;

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
    /// The client API router as it is served (node and front routes behind
    /// the guard), for in-process callers such as tests.
    pub api: axum::Router,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    sweeper: tokio::task::JoinHandle<()>,
}

/// Opens the center with the kinds of the enabled `fronts` and starts
/// serving on `cfg.api.listen` (see [`NodeBuilder`]).
async fn start(
    cfg: &Config,
    fronts: Vec<Box<dyn Front>>,
    store: Option<Arc<dyn regmesh_store::Store>>,
    env: builder::Env,
) -> Result<Running, StartError> {
    cfg.validate()?;
    let fronts = front::select(cfg, fronts)?;
    let kinds = builder::kinds_of(&fronts)?;
    let writer = match env.clock {
        None => center::WriterMode::Thread,
        Some(clock) => {
            if tokio::runtime::Handle::current().runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
                return Err(StartError::ClockNeedsCurrentThread);
            }
            clock::install(clock);
            center::WriterMode::Task
        }
    };
    let center = Center::open_in(cfg, kinds, store, writer)?;
    let transport = env.transport;
    let mut tasks = Vec::new();
    let mut peer_addr = None;
    let mesh = match &cfg.peer {
        None => None,
        Some(p) => {
            let mesh = peer::mesh::Mesh::new_with(center.clone(), cfg, transport.clone())?;
            let tls = peer::pki::server_config_trusting(&p.cert, &p.key, mesh.trust())
                .map_err(peer::mesh::MeshError::ServerTls)?;
            let l = transport
                .listen(p.listen)
                .await
                .map_err(|source| StartError::Listen { addr: p.listen, source })?;
            peer_addr = Some(
                l.local_addr()
                    .map_err(|source| StartError::Listen { addr: p.listen, source })?,
            );
            let router = peer::server::router(mesh.clone());
            // Before the listener serves: the fronts' message types.
            mesh.set_front_messages(Arc::new(builder::peer_messages(&fronts, &center, Some(&mesh), cfg)?));
            tasks.push(crate::spawn::spawn(peer::server::serve(
                l,
                tls,
                router,
                center.closing(),
            )));
            tasks.extend(mesh.spawn());
            tracing::info!(addr = ?peer_addr, peers = cfg.peers.len(), "peer listener serving (mutual TLS)");
            Some(mesh)
        }
    };
    let listener = transport
        .listen(cfg.api.listen)
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
    if mesh.is_none() {
        // Outside a mesh nothing receives peer messages; registrations are
        // still checked, so a clash shows on a standalone center too.
        builder::peer_messages(&fronts, &center, None, cfg)?;
    }
    let (front_routes, front_tasks) = match builder::routes_and_tasks(&fronts, &center, mesh.as_ref(), cfg) {
        Ok(r) => r,
        Err(e) => {
            for t in &tasks {
                t.abort();
            }
            return Err(e);
        }
    };
    let app = api::router(center.clone(), cfg, mesh.clone(), front_routes);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let api = app.clone();
    let server = crate::spawn::spawn(async move {
        listener
            .run(app, async {
                let _ = stopped.await;
            })
            .await
    });
    let sweeper = crate::spawn::spawn(center.clone().run_sweeper());
    tasks.push(crate::spawn::spawn(center.clone().run_shared()));
    tasks.extend(front_tasks.into_iter().map(crate::spawn::spawn));
    tracing::info!(id = center.id(), %addr, key = %center.public_key_hex(), "registry center serving");
    Ok(Running {
        addr,
        peer_addr,
        center,
        mesh,
        api,
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
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Front(#[from] front::FrontError),
    #[error("{0}")]
    Open(#[from] center::OpenError),
    /// The peer mesh could not be set up (see its variants).
    #[error("peer mesh: {0}")]
    Peer(#[from] peer::mesh::MeshError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    /// A clock of its own ([`NodeBuilder::clock`]) was given on a runtime
    /// with several threads. Nothing was opened.
    #[error("a node with a clock of its own must run on a current-thread tokio runtime")]
    ClockNeedsCurrentThread,
}
