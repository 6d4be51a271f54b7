//! Clients writing at every center while the faults run: each writer owns a
//! few ids at its center and creates, updates, heartbeats and deletes them
//! one op at a time; a racer creates fresh ids at two centers at once and
//! re-claims held ids at random centers. Every op is logged with when it was
//! sent and answered and what came back (status, the version from `ETag`,
//! the error code). An op whose outcome is unknown (timeout, connection lost
//! after sending) retires its id: the writer never touches it again, so every
//! id's ops are sequential and only its last one can be in doubt. Writers
//! judge nothing; `checks` does.

use super::nemesis::Clock;
use super::rng::Rng;
use regmesh_node::client::{Client, ClientError};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The writers' own deadline per request (shorter than the client's).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
pub const WRITERS_PER_CENTER: usize = 2;
/// Ids a writer works on at once.
const SLOTS: usize = 8;
/// Prefix of the racer's ids.
pub const RACE_PREFIX: &str = "race";

/// A hybrid logical clock version `<wall_ms>.<counter>`, ordered.
pub type Version = (u64, u64);

pub fn parse_version(s: &str) -> Option<Version> {
    let (w, c) = s.trim().trim_matches('"').split_once('.')?;
    Some((w.parse().ok()?, c.parse().ok()?))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Put,
    Delete,
    Beat,
}

#[derive(Clone, Debug)]
pub enum Res {
    /// 2xx; the version a put or heartbeat answered.
    Acked { status: u16, version: Option<Version> },
    /// A refusal: nothing changed (the API's contract).
    Refused { status: u16, code: String },
    /// Never reached the center (connection refused): nothing changed.
    NotSent(String),
    /// Sent, no answer: it may or may not have taken effect.
    Unknown(String),
}

#[derive(Clone, Debug)]
pub struct Op {
    pub center: usize,
    pub id: String,
    pub kind: Kind,
    /// Unique per op; carried in the body's `metadata` of puts.
    pub marker: String,
    pub sent_ms: u64,
    pub done_ms: u64,
    pub res: Res,
}

impl Res {
    fn describe(&self) -> String {
        match self {
            Res::Acked { status, version } => match version {
                Some(v) => format!("{status} version {}.{}", v.0, v.1),
                None => status.to_string(),
            },
            Res::Refused { status, code } => format!("{status} {code}"),
            Res::NotSent(why) => format!("not sent: {why}"),
            Res::Unknown(why) => format!("in doubt: {why}"),
        }
    }
}

impl Op {
    pub fn acked(&self) -> bool {
        matches!(self.res, Res::Acked { .. })
    }

    pub fn status(&self) -> u16 {
        match self.res {
            Res::Acked { status, .. } | Res::Refused { status, .. } => status,
            _ => 0,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{:>6}..{:>6} ms c{} {:?} {} [{}] {}",
            self.sent_ms,
            self.done_ms,
            self.center + 1,
            self.kind,
            self.id,
            self.marker,
            self.res.describe()
        )
    }
}

/// The shared op log.
pub type OpLog = Arc<Mutex<Vec<Op>>>;

struct Ctx {
    clients: Vec<Client>,
    log: OpLog,
    clock: Clock,
}

impl Ctx {
    /// Sends one op and logs it.
    async fn send(&self, center: usize, id: &str, kind: Kind, marker: String) -> Op {
        let path = match kind {
            Kind::Beat => format!("/v1/agents/{id}/heartbeat"),
            _ => format!("/v1/agents/{id}"),
        };
        let (method, body) = match kind {
            Kind::Put => (
                hyper::Method::PUT,
                Some(json!({
                    "addresses": ["2001:db8::c4a0"],
                    "status": "online",
                    "lease_s": 600,
                    "metadata": {"marker": marker},
                })),
            ),
            Kind::Delete => (hyper::Method::DELETE, None),
            Kind::Beat => (hyper::Method::POST, None),
        };
        let sent_ms = self.clock.ms();
        let reply = tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.clients[center].request(method, &path, body.as_ref()),
        )
        .await;
        let res = match reply {
            Err(_) => Res::Unknown("no answer in time".into()),
            Ok(Err(ClientError::Connect { msg, .. })) => Res::NotSent(msg),
            Ok(Err(e)) => Res::Unknown(e.to_string()),
            Ok(Ok(r)) if r.status.is_success() => Res::Acked {
                status: r.status.as_u16(),
                version: r
                    .headers
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_version),
            },
            Ok(Ok(r)) => Res::Refused {
                status: r.status.as_u16(),
                code: r.json()["error"]["code"].as_str().unwrap_or("").to_string(),
            },
        };
        let op = Op {
            center,
            id: id.to_string(),
            kind,
            marker,
            sent_ms,
            done_ms: self.clock.ms(),
            res,
        };
        self.log.lock().expect("op log").push(op.clone());
        op
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Belief {
    Absent,
    Present,
}

/// One writer: ids `cCwWsSgG`; generation G moves on when an op is in doubt.
async fn writer(ctx: Arc<Ctx>, center: usize, w: usize, mut rng: Rng, stop: Arc<AtomicBool>) {
    let mut slots = [(0u32, Belief::Absent); SLOTS];
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let s = rng.below(SLOTS as u64) as usize;
        let (g, belief) = slots[s];
        let id = format!("c{}w{w}s{s}g{g}", center + 1);
        let kind = match belief {
            Belief::Absent => Kind::Put,
            Belief::Present => [Kind::Put, Kind::Beat, Kind::Delete][rng.weighted(&[45, 35, 20])],
        };
        n += 1;
        let op = ctx.send(center, &id, kind, format!("c{}w{w}#{n}", center + 1)).await;
        slots[s].1 = match (&op.res, kind) {
            (Res::Acked { .. }, Kind::Delete) => Belief::Absent,
            (Res::Acked { .. }, _) => Belief::Present,
            (Res::Refused { status: 404, .. }, _) => Belief::Absent,
            (Res::Unknown(_), _) => {
                slots[s].0 += 1;
                Belief::Absent
            }
            _ => belief,
        };
        tokio::time::sleep(Duration::from_millis(rng.range(20, 120))).await;
    }
}

/// Creates fresh ids at two centers at once, and re-claims ids at random
/// centers (only their owner may answer 2xx, and never 201 again).
async fn racer(ctx: Arc<Ctx>, n: usize, mut rng: Rng, stop: Arc<AtomicBool>) {
    let mut k = 0u64;
    while !stop.load(Ordering::SeqCst) {
        k += 1;
        if k > 1 && rng.chance(40) {
            let id = format!("{RACE_PREFIX}{}", rng.below(k - 1));
            let c = rng.below(n as u64) as usize;
            ctx.send(c, &id, Kind::Put, format!("reclaim#{k}")).await;
        } else {
            let id = format!("{RACE_PREFIX}{}", k - 1);
            let a = rng.below(n as u64) as usize;
            let b = (a + 1 + rng.below(n as u64 - 1) as usize) % n;
            tokio::join!(
                ctx.send(a, &id, Kind::Put, format!("race#{k}a")),
                ctx.send(b, &id, Kind::Put, format!("race#{k}b")),
            );
        }
        tokio::time::sleep(Duration::from_millis(rng.range(150, 600))).await;
    }
}

/// Starts every writer and the racer; they run until `stop` is set.
pub fn start(
    urls: &[String],
    seed: u64,
    clock: Clock,
    stop: Arc<AtomicBool>,
) -> (OpLog, Vec<tokio::task::JoinHandle<()>>) {
    let log: OpLog = Arc::default();
    let ctx = Arc::new(Ctx {
        clients: urls.iter().map(|u| Client::new(u, None).expect("client url")).collect(),
        log: log.clone(),
        clock,
    });
    let mut rng = Rng::new(seed).fork(2);
    let mut tasks = Vec::new();
    for c in 0..urls.len() {
        for w in 0..WRITERS_PER_CENTER {
            let r = rng.fork((c * 16 + w) as u64);
            tasks.push(tokio::spawn(writer(ctx.clone(), c, w, r, stop.clone())));
        }
    }
    let r = rng.fork(999);
    tasks.push(tokio::spawn(racer(ctx, urls.len(), r, stop)));
    (log, tasks)
}
