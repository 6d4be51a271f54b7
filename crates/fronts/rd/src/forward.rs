//! Updates and removals of a registration another center owns (document
//! 004 §6.2.2): this center forwards them to the owner as a peer RFI
//! `rd-forward` and relays its answer, also when the owner is not a direct
//! peer. The mesh carries RFIs one hop only, so every center's RD front
//! relays them: a center that is not the owner sends the request on to the
//! owner if it is its peer, or else to one of its other peers, which does
//! the same. The path so far travels in the message; a request never goes
//! to a center on it, takes at most [`HOPS_MAX`] hops, and the whole route
//! ends within [`BUDGET`] (below the 5 s every peer handler has). Up to
//! [`ROUTES_PER_HOP_MAX`] next hops are tried in turn, the owner first;
//! when none gets through, the requester gets 5.04 Gateway Timeout naming
//! the owner and why each route failed.
//!
//! A request that reached the owner by one route may arrive again by
//! another (the first answer was lost on the way back). Each forwarded
//! request carries an id, and the owner keeps its answers
//! ([`ANSWERED_MAX`], [`ANSWERED_TTL`]) so that it runs it once.
//!
//! Must never: send a request to a center already on its path, write a
//! registration this center does not own, or run one forwarded request
//! twice.

use crate::fcfr;
use crate::handlers::{self, Reply, Request};
use coap_lite::{MessageClass, RequestType, ResponseType};
use regmesh_node::handle::{PeerInfo, PeerState};
use regmesh_node::messages::{PeerAnswer, PeerVerb};
use regmesh_node::NodeHandle;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The peer message type of forwarded updates and removals.
pub const FORWARD_TYPE: &str = "rd-forward";
/// Most hops from the center the request came to, to the owner.
pub const HOPS_MAX: usize = 4;
/// How long a forwarded request may take end to end.
pub const BUDGET: Duration = Duration::from_millis(4000);
/// What each relay keeps back of the time it was given, to answer in.
const HOP_MARGIN: Duration = Duration::from_millis(250);
/// Below this much time left, no further hop is tried.
const BUDGET_MIN: Duration = Duration::from_millis(200);
/// Most next hops tried at one center.
pub const ROUTES_PER_HOP_MAX: usize = 4;
/// Most answers the owner keeps for requests that may arrive again.
pub const ANSWERED_MAX: usize = 1024;
/// How long the owner keeps an answer.
pub const ANSWERED_TTL: Duration = Duration::from_secs(300);
/// Longest reason kept from one failed route (a relay's reason nests its own).
const REASON_BYTES_MAX: usize = 240;
/// Most query arguments a forwarded request carries.
const QUERY_ARGS_MAX: usize = 32;

/// One forwarded request as it travels (the RFI's fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forwarded {
    /// The registration's record id.
    pub id: String,
    /// `post` (update) or `delete` (removal).
    pub method: String,
    #[serde(default)]
    pub query: Vec<String>,
    /// An update has no payload; a nonzero length makes the owner say so.
    #[serde(default)]
    pub payload_len: u64,
    /// The requester's DTLS identity, if it came over coaps.
    #[serde(default)]
    pub identity: Option<String>,
    /// The owning center. Absent (a center from before relaying): the
    /// receiver is the owner.
    #[serde(default)]
    pub owner: Option<String>,
    /// The centers it went through, first the one it came to.
    #[serde(default)]
    pub path: Vec<String>,
    /// Milliseconds left for the rest of the route.
    #[serde(default)]
    pub budget_ms: Option<u64>,
    /// Names this request at the owner, which runs it once.
    #[serde(default)]
    pub rid: Option<String>,
}

/// The owner's answer: a CoAP response code and diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub code: u8,
    #[serde(default)]
    pub payload: String,
}

impl Answer {
    fn of(reply: &Reply) -> Self {
        Answer {
            code: u8::from(MessageClass::Response(reply.code)),
            payload: String::from_utf8_lossy(&reply.payload).into_owned(),
        }
    }
}

/// The next hops toward `owner` from `me`, best first: the owner itself if
/// it is a peer; then, if the path may grow, the other peers in working
/// order (OPERATIONAL, DEGRADED, INTRODUCED; others cannot relay). None on
/// `path`.
pub fn next_hops(me: &str, owner: &str, peers: &[PeerInfo], path: &[String]) -> Vec<String> {
    let fresh = |id: &str| id != me && !path.iter().any(|p| p == id);
    let mut out = Vec::new();
    if peers.iter().any(|p| p.id == owner && p.state != PeerState::Needed) && fresh(owner) {
        out.push(owner.to_string());
    }
    // The path (with me) may take one more relay before the owner.
    if path.len() + 1 < HOPS_MAX {
        let rank = |s: PeerState| match s {
            PeerState::Operational => Some(0),
            PeerState::Degraded => Some(1),
            PeerState::Introduced => Some(2),
            _ => None,
        };
        let mut relays: Vec<(u8, &str)> = peers
            .iter()
            .filter(|p| p.id != owner && fresh(&p.id))
            .filter_map(|p| rank(p.state).map(|r| (r, p.id.as_str())))
            .collect();
        relays.sort();
        out.extend(relays.into_iter().map(|(_, id)| id.to_string()));
    }
    out.truncate(ROUTES_PER_HOP_MAX);
    out
}

fn clip(mut s: String) -> String {
    if s.len() > REASON_BYTES_MAX {
        let mut end = REASON_BYTES_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Sends `msg` on toward its owner from this center, trying each next hop
/// until one answers for the owner; Err lists why each route failed.
async fn route(node: &NodeHandle, owner: &str, mut msg: Forwarded, deadline: Instant) -> Result<Answer, Vec<String>> {
    let me = node.center_id().to_string();
    let hops = next_hops(&me, owner, &node.peers(), &msg.path);
    msg.path.push(me);
    if hops.is_empty() {
        return Err(vec!["no peer leads there".into()]);
    }
    let mut why = Vec::new();
    for hop in hops {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < BUDGET_MIN {
            why.push("out of time".into());
            break;
        }
        msg.budget_ms = Some(left.saturating_sub(HOP_MARGIN).as_millis() as u64);
        let fields = serde_json::to_value(&msg).expect("serializes");
        let via = if hop == owner {
            hop.clone()
        } else {
            format!("via {hop}")
        };
        match tokio::time::timeout(left, node.send(&hop, PeerVerb::Rfi, FORWARD_TYPE, fields)).await {
            Ok(Ok(a)) if a.accepted => match a.data.map(serde_json::from_value::<Answer>) {
                Some(Ok(ans)) => return Ok(ans),
                _ => why.push(clip(format!("{via}: an answer without a CoAP code"))),
            },
            Ok(Ok(a)) => why.push(clip(format!("{via}: {}", a.reason.unwrap_or_default()))),
            Ok(Err(e)) => why.push(clip(format!("{via}: {e}"))),
            Err(_) => why.push(format!("{via}: no answer within {} ms", left.as_millis())),
        }
    }
    Err(why)
}

/// Distinct ids of the requests this process forwards.
static NEXT_RID: AtomicU64 = AtomicU64::new(0);

/// Forwards an update or removal of registration `id`, owned by `owner`,
/// and returns the owner's answer, or 5.04 when no route reaches it.
pub async fn forward(node: &NodeHandle, owner: &str, req: &Request<'_>, id: &str) -> Reply {
    let started_ms = crate::lookup::now_ms();
    let msg = Forwarded {
        id: id.to_string(),
        method: if req.method == RequestType::Delete {
            "delete"
        } else {
            "post"
        }
        .into(),
        query: req.query.to_vec(),
        payload_len: req.payload.len() as u64,
        identity: req.identity.map(str::to_string),
        owner: Some(owner.to_string()),
        path: Vec::new(),
        budget_ms: None,
        rid: Some(format!(
            "{}.{started_ms:x}.{:x}",
            node.center_id(),
            NEXT_RID.fetch_add(1, Ordering::Relaxed)
        )),
    };
    match route(node, owner, msg, Instant::now() + BUDGET).await {
        Ok(a) => match MessageClass::from(a.code) {
            MessageClass::Response(c) => Reply::diag(c, a.payload),
            _ => Reply::diag(
                ResponseType::BadGateway,
                "the owner answered with no CoAP response code",
            ),
        },
        Err(why) => Reply::diag(
            ResponseType::GatewayTimeout,
            format!(
                "registration is owned by center {owner}, which cannot be reached: {}",
                why.join("; ")
            ),
        ),
    }
}

/// What the owner keeps of one forwarded request.
enum Kept {
    Running,
    Done(Answer),
}

/// Answers to forwarded requests by id, oldest first out.
#[derive(Default)]
struct Answered {
    map: HashMap<String, (Instant, Kept)>,
    order: VecDeque<(Instant, String)>,
}

impl Answered {
    fn prune(&mut self, now: Instant) {
        while let Some((at, rid)) = self.order.front() {
            if now.duration_since(*at) < ANSWERED_TTL && self.order.len() < ANSWERED_MAX {
                break;
            }
            if self.map.get(rid).is_some_and(|(t, _)| t == at) {
                self.map.remove(rid);
            }
            self.order.pop_front();
        }
    }
}

/// The `rd-forward` handler: runs a request this center owns, or sends it on.
pub struct Forwarder {
    node: NodeHandle,
    answered: Mutex<Answered>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Forwarder {
    pub fn new(node: NodeHandle) -> Self {
        Forwarder {
            node,
            answered: Mutex::new(Answered::default()),
        }
    }

    /// Answers an `rd-forward` RFI from peer `from`.
    pub async fn handle(&self, from: String, msg: serde_json::Value) -> PeerAnswer {
        let msg: Forwarded = match serde_json::from_value(msg) {
            Ok(m) => m,
            Err(e) => return PeerAnswer::rejected(format!("malformed rd-forward: {e}")),
        };
        if let Err(why) = check(&msg) {
            return PeerAnswer::rejected(why);
        }
        let me = self.node.center_id();
        let owner = msg.owner.clone().unwrap_or_else(|| me.to_string());
        if owner != me {
            if msg.path.iter().any(|p| p == me) || msg.path.len() >= HOPS_MAX {
                return PeerAnswer::rejected(format!("{me} is already on this request's path or it is too long"));
            }
            let left = Duration::from_millis(msg.budget_ms.unwrap_or(0)).min(BUDGET);
            tracing::debug!(%from, id = %msg.id, %owner, "rd: relaying a forwarded request");
            return match route(&self.node, &owner, msg, Instant::now() + left).await {
                Ok(a) => PeerAnswer::with_data(serde_json::to_value(a).expect("serializes")),
                Err(why) => PeerAnswer::rejected(format!("from {me}: {}", why.join("; "))),
            };
        }
        tracing::debug!(%from, id = %msg.id, "rd: forwarded request");
        let now = Instant::now();
        if let Some(rid) = &msg.rid {
            let mut kept = lock(&self.answered);
            kept.prune(now);
            match kept.map.get(rid) {
                Some((_, Kept::Done(a))) => return PeerAnswer::with_data(serde_json::to_value(a).expect("serializes")),
                Some((_, Kept::Running)) => return PeerAnswer::rejected("this request is running here already"),
                None => {
                    kept.map.insert(rid.clone(), (now, Kept::Running));
                    kept.order.push_back((now, rid.clone()));
                }
            }
        }
        let answer = Answer::of(&self.run(&msg).await);
        if let Some(rid) = &msg.rid {
            if let Some(slot) = lock(&self.answered).map.get_mut(rid) {
                slot.1 = Kept::Done(answer.clone());
            }
        }
        PeerAnswer::with_data(serde_json::to_value(answer).expect("serializes"))
    }

    /// Runs `msg` here, the owner (never forwards it).
    async fn run(&self, msg: &Forwarded) -> Reply {
        let node = &self.node;
        let method = if msg.method == "delete" {
            RequestType::Delete
        } else {
            RequestType::Post
        };
        let req = Request {
            method,
            path: &[],
            query: &msg.query,
            content_format: None,
            payload: if msg.payload_len > 0 { b"x" } else { b"" },
            peer: SocketAddr::from(([0u8; 16], 0)),
            identity: msg.identity.as_deref(),
            proxied: &[],
        };
        match handlers::own(node, &msg.id).and_then(|reg| fcfr::check(reg.auth.as_deref(), req.identity)) {
            Err(r) => r,
            Ok(()) if method == RequestType::Post => handlers::update(node, &req, &msg.id).await,
            Ok(()) => handlers::remove(node, &msg.id).await,
        }
    }
}

/// Refuses what no center sends: an unknown method, too many or too long
/// fields.
fn check(m: &Forwarded) -> Result<(), String> {
    if m.method != "post" && m.method != "delete" {
        return Err("method must be post or delete".into());
    }
    if m.query.len() > QUERY_ARGS_MAX {
        return Err(format!("query must have at most {QUERY_ARGS_MAX} arguments"));
    }
    if m.identity
        .as_ref()
        .is_some_and(|i| i.len() > crate::psk::IDENTITY_BYTES_MAX)
    {
        return Err(format!(
            "identity must be at most {} bytes",
            crate::psk::IDENTITY_BYTES_MAX
        ));
    }
    if m.path.len() > HOPS_MAX || m.rid.as_ref().is_some_and(|r| r.len() > 128) {
        return Err("path or request id too long".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str, state: PeerState) -> PeerInfo {
        PeerInfo { id: id.into(), state }
    }

    #[test]
    fn the_owner_first_then_working_relays_never_back() {
        let peers = [
            peer("c4", PeerState::Degraded),
            peer("c2", PeerState::Operational),
            peer("c5", PeerState::Interrupted),
            peer("c3", PeerState::Operational),
            peer("c6", PeerState::Operational),
        ];
        let path = vec!["c6".to_string()];
        assert_eq!(next_hops("c1", "c3", &peers, &path), ["c3", "c2", "c4"]);
        assert_eq!(next_hops("c1", "c9", &peers, &path), ["c2", "c3", "c4"]);
        let long: Vec<String> = (0..HOPS_MAX - 1).map(|i| format!("x{i}")).collect();
        assert_eq!(
            next_hops("c1", "c3", &peers, &long),
            ["c3"],
            "a path at its length reaches only the owner"
        );
        assert!(next_hops("c1", "c9", &peers, &long).is_empty());
        let hops = next_hops("c2", "c9", &peers, &["c1".into(), "c6".into()]);
        assert!(
            !hops.iter().any(|h| h == "c6" || h == "c2"),
            "never back along the path: {hops:?}"
        );
    }

    #[test]
    fn answers_are_bounded_and_expire() {
        let mut a = Answered::default();
        let t0 = Instant::now();
        for i in 0..ANSWERED_MAX + 10 {
            a.map.insert(i.to_string(), (t0, Kept::Running));
            a.order.push_back((t0, i.to_string()));
            a.prune(t0);
        }
        assert!(a.map.len() < ANSWERED_MAX && a.order.len() < ANSWERED_MAX);
        a.prune(t0 + ANSWERED_TTL);
        assert!(a.map.is_empty());
    }
}
