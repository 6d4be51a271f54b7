//! One TCP proxy per directed peer link (center A's calls to center B), with
//! switches the fault schedule turns: cut (open connections dropped, new ones
//! closed at once), freeze the bytes of one direction (held in the proxy, the
//! connection stays open, so callers wait on their deadlines), delay every
//! chunk, and drop the open connections once. Switches count, so faults that
//! overlap on one link compose and each heal undoes only its own part. The
//! proxy owns sockets only; it never reads or changes what it carries.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Bytes read per chunk.
const CHUNK_BYTES: usize = 16 * 1024;
/// How often a frozen direction looks whether it thawed.
const THAW_POLL_MS: u64 = 10;
/// Connections one proxy carries at once; more are closed at once.
const CONNECTIONS_MAX: u32 = 256;

/// The switches of one link. Counters: a fault adds one, its heal takes one.
#[derive(Debug)]
pub struct LinkCtl {
    cut: AtomicU32,
    freeze_fwd: AtomicU32,
    freeze_back: AtomicU32,
    delay_ms: AtomicU64,
    open: AtomicU32,
    /// Bumped to drop every open connection.
    epoch: watch::Sender<u64>,
}

/// Which bytes of a link: the caller's requests or the callee's answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Fwd,
    Back,
}

impl LinkCtl {
    fn new() -> LinkCtl {
        LinkCtl {
            cut: AtomicU32::new(0),
            freeze_fwd: AtomicU32::new(0),
            freeze_back: AtomicU32::new(0),
            delay_ms: AtomicU64::new(0),
            open: AtomicU32::new(0),
            epoch: watch::channel(0).0,
        }
    }

    /// Adds (`on`) or removes one cut. The first cut drops open connections.
    pub fn cut(&self, on: bool) {
        if on {
            if self.cut.fetch_add(1, Ordering::SeqCst) == 0 {
                self.drop_open();
            }
        } else {
            let was = self.cut.fetch_sub(1, Ordering::SeqCst);
            assert!(was > 0, "heal of a cut that was not made");
        }
    }

    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst) > 0
    }

    /// Adds or removes one freeze of the bytes going `dir`.
    pub fn freeze(&self, dir: Dir, on: bool) {
        let c = match dir {
            Dir::Fwd => &self.freeze_fwd,
            Dir::Back => &self.freeze_back,
        };
        if on {
            c.fetch_add(1, Ordering::SeqCst);
        } else {
            let was = c.fetch_sub(1, Ordering::SeqCst);
            assert!(was > 0, "heal of a freeze that was not made");
        }
    }

    fn frozen(&self, dir: Dir) -> bool {
        match dir {
            Dir::Fwd => self.freeze_fwd.load(Ordering::SeqCst) > 0,
            Dir::Back => self.freeze_back.load(Ordering::SeqCst) > 0,
        }
    }

    /// Adds (`on`) or removes `ms` of delay per chunk.
    pub fn delay(&self, ms: u64, on: bool) {
        if on {
            self.delay_ms.fetch_add(ms, Ordering::SeqCst);
        } else {
            self.delay_ms.fetch_sub(ms, Ordering::SeqCst);
        }
    }

    /// Drops every open connection (both ends see them close).
    pub fn drop_open(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Every switch off (the final heal).
    pub fn heal_all(&self) {
        self.cut.store(0, Ordering::SeqCst);
        self.freeze_fwd.store(0, Ordering::SeqCst);
        self.freeze_back.store(0, Ordering::SeqCst);
        self.delay_ms.store(0, Ordering::SeqCst);
    }
}

/// A running proxy: where callers connect, and its switches.
pub struct Link {
    pub from: usize,
    pub to: usize,
    pub port: u16,
    pub ctl: Arc<LinkCtl>,
}

impl Link {
    /// Binds a loopback port and forwards to `target` (`host:port`) from now on.
    pub async fn start(from: usize, to: usize, target: String) -> std::io::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let ctl = Arc::new(LinkCtl::new());
        tokio::spawn(accept_loop(listener, target, ctl.clone()));
        Ok(Link { from, to, port, ctl })
    }
}

async fn accept_loop(listener: TcpListener, target: String, ctl: Arc<LinkCtl>) {
    loop {
        let Ok((caller, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if ctl.is_cut() || ctl.open.load(Ordering::SeqCst) >= CONNECTIONS_MAX {
            drop(caller);
            continue;
        }
        let (target, ctl) = (target.clone(), ctl.clone());
        tokio::spawn(async move {
            ctl.open.fetch_add(1, Ordering::SeqCst);
            carry(caller, &target, &ctl).await;
            ctl.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Carries one connection until either side closes or the link drops it.
async fn carry(caller: TcpStream, target: &str, ctl: &Arc<LinkCtl>) {
    let mut epoch = ctl.epoch.subscribe();
    epoch.mark_unchanged();
    // A cut made since the accept: its drop may have come before we
    // subscribed (a cut counts up before it drops).
    if ctl.is_cut() {
        return;
    }
    let Ok(Ok(callee)) = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(target)).await else {
        return;
    };
    let _ = caller.set_nodelay(true);
    let _ = callee.set_nodelay(true);
    let (cr, cw) = caller.into_split();
    let (tr, tw) = callee.into_split();
    tokio::select! {
        _ = pump(cr, tw, ctl, Dir::Fwd) => {}
        _ = pump(tr, cw, ctl, Dir::Back) => {}
        _ = epoch.changed() => {}
    }
}

/// Copies one direction, holding bytes while it is frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    ctl: &LinkCtl,
    dir: Dir,
) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while ctl.frozen(dir) {
            tokio::time::sleep(Duration::from_millis(THAW_POLL_MS)).await;
        }
        let delay = ctl.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
