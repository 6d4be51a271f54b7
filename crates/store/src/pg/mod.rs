//! The PostgreSQL backend: [`PgStore`], a [`Store`] on a database that
//! several regmesh processes may share (document 004 §4.1, shared
//! authority).
//!
//! Shape: `pool` worker threads, each owning one connection of the
//! synchronous `postgres` client (tokio-postgres driven on a runtime of its
//! own). Callers hand requests to the workers over one bounded queue and
//! block on the answer, as they block on redb's file. The workers are the
//! store's own threads, never a caller's runtime, so the client's rule
//! (never block inside a tokio runtime) holds whoever calls, from a
//! `spawn_blocking` thread or a plain one. A worker whose connection broke
//! connects again on its next request.
//!
//! Must never: acknowledge a batch PostgreSQL has not committed, report a
//! batch whose `COMMIT` may have landed as not committed, or hold more than
//! `pool` connections.

mod sql;

use crate::{Store, StoreError, WriteBatch};
use postgres::{Client, NoTls};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use sql::STORE_FORMAT as PG_STORE_FORMAT;

/// Requests waiting for a worker, per connection; more block the caller.
const QUEUE_PER_CONNECTION: usize = 16;

/// How long connecting may take before the request fails, when the URL does
/// not say (`connect_timeout=`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most connections a store opens (`pool` above it is refused).
pub const POOL_MAX: usize = 256;

/// A request for a worker: runs on its connection, or learns why there is
/// none; true if it failed.
type Job = Box<dyn FnOnce(Result<&mut Client, StoreError>) -> bool + Send>;

/// How long a worker waits to learn whether its connection survived a
/// failed request.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// PostgreSQL-backed [`Store`].
pub struct PgStore {
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db?...`), creates or
    /// checks the schema, and starts `pool` workers, one connection each
    /// (connected lazily after the first). Refuses a database written with an
    /// unknown layout; nothing is written then.
    /// Callable from anywhere, a tokio runtime included: connecting happens
    /// on a thread of its own.
    pub fn open(url: &str, pool: usize) -> Result<Self, StoreError> {
        let url = url.to_string();
        std::thread::Builder::new()
            .name("regmesh-pg-open".into())
            .spawn(move || Self::open_here(&url, pool))
            .map_err(|e| StoreError::Backend(format!("starting a database worker: {e}")))?
            .join()
            .map_err(|_| StoreError::Backend("opening the database panicked".into()))?
    }

    fn open_here(url: &str, pool: usize) -> Result<Self, StoreError> {
        if pool == 0 || pool > POOL_MAX {
            return Err(StoreError::Backend(format!("pool must be 1..={POOL_MAX}, not {pool}")));
        }
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("database url: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let mut first = config.connect(NoTls).map_err(sql::be)?;
        sql::ensure_schema(&mut first)?;
        let (tx, rx) = sync_channel::<Job>(pool * QUEUE_PER_CONNECTION);
        let rx = Arc::new(Mutex::new(rx));
        let mut first = Some(first);
        let workers = (0..pool)
            .map(|i| {
                let (rx, config, conn) = (rx.clone(), config.clone(), first.take());
                std::thread::Builder::new()
                    .name(format!("regmesh-pg-{i}"))
                    .spawn(move || worker(rx, config, conn))
                    .map_err(|e| StoreError::Backend(format!("starting a database worker: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PgStore {
            jobs: Some(tx),
            workers,
        })
    }

    /// Runs `f` on some worker's connection and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = sync_channel(1);
        let job: Job = Box::new(move |c| {
            let r = c.and_then(f);
            let failed = r.is_err();
            let _ = tx.send(r);
            failed
        });
        let gone = || StoreError::Backend("the database workers have stopped".into());
        self.jobs.as_ref().ok_or_else(gone)?.send(job).map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }
}

/// One worker: takes requests until the store is dropped; (re)connects when
/// it has no live connection.
fn worker(rx: Arc<Mutex<Receiver<Job>>>, config: postgres::Config, mut conn: Option<Client>) {
    loop {
        let job = {
            let Ok(q) = rx.lock() else { return };
            match q.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            conn = None;
            match config.connect(NoTls) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    job(Err(sql::be(e)));
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        // After a failure, drop a connection the server closed (its end may
        // not be noticed until it is used again).
        if job(Ok(c)) && c.is_valid(CHECK_TIMEOUT).is_err() {
            conn = None;
        }
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Closing the queue stops every worker after its current request.
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Store for PgStore {
    fn apply(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let b = batch.clone();
        self.call(move |c| sql::apply(c, &b))
    }

    fn get(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (k, i) = (kind.to_string(), id.to_string());
        self.call(move |c| sql::get(c, &k, &i))
    }

    fn get_many(&self, kind: &str, ids: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let k = kind.to_string();
        let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        self.call(move |c| sql::get_many(c, &k, &ids))
    }

    fn scan(&self, f: &mut dyn FnMut(&str, &str, &[u8]) -> bool) -> Result<(), StoreError> {
        let mut after: Option<(String, String)> = None;
        loop {
            let from = after.clone();
            let page = self.call(move |c| sql::scan_page(c, from.as_ref()))?;
            let full = page.len() as i64 == sql::SCAN_PAGE_ROWS;
            for (k, i, v) in &page {
                if !f(k, i, v) {
                    return Ok(());
                }
            }
            match page.into_iter().last() {
                Some((k, i, _)) if full => after = Some((k, i)),
                _ => return Ok(()),
            }
        }
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.call(move |c| sql::changes_after(c, after, limit))
    }

    fn change_bounds(&self) -> Result<Option<(u64, u64)>, StoreError> {
        self.call(sql::change_bounds)
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let k = key.to_string();
        self.call(move |c| sql::meta(c, &k))
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}
