//! The CoAP/UDP server loop: reads datagrams, drops or answers duplicates
//! (see [`crate::exchange`]), reassembles Block1, hands requests to
//! [`crate::handlers`], frames replies (piggybacked ACK, Block2, Max-Age,
//! Observe), sends notifications to observers, and makes the few requests of
//! its own ([`client`]: simple registration's fetch, and the lookup proxy's
//! observations, [`upstream`]). The same loop serves coap (plain UDP) and
//! coaps ([`dtls`]: one DTLS session per peer, PSK identities).
//!
//! Must never: answer a malformed confirmable message with anything but a
//! Reset, run a duplicate request twice, or send a datagram over 1280 bytes
//! of payload block.

use crate::coap::{self, Block, BLOCK_BYTES_MAX};
use crate::confirm::Confirmables;
use crate::exchange::{Assembly, Block1, Dedup, Seen};
use crate::handlers::{self, Reply, Request};
use crate::kind::REGISTRATION;
use crate::observe::{self, Observer, Observers, RECHECK_INTERVAL};
use crate::proxy;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use regmesh_node::front::Task;
use regmesh_node::NodeHandle;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

mod client;
mod dtls;
mod upstream;

pub use dtls::SESSIONS_MAX;

/// Largest datagram read.
const DATAGRAM_BYTES_MAX: usize = 1500;
/// Most requests handled at once; more are answered 5.03.
const IN_FLIGHT_MAX: usize = 512;
/// How often upstream RDs that do not do Observe are polled (lookup proxy),
/// and how soon one that did not answer is tried again.
const PROXY_POLL: Duration = Duration::from_secs(2);
/// Most requests of ours (simple-registration fetches, proxy polls) in progress at once.
const FETCHES_MAX: usize = 64;
/// Our confirmable request's retransmission waits (RFC 7252 ACK_TIMEOUT 2 s,
/// doubled), after which the fetch has failed.
const FETCH_WAITS: [Duration; 3] = [Duration::from_secs(2), Duration::from_secs(4), Duration::from_secs(8)];

/// Our own request awaiting an answer: (peer, token).
type PendingKey = (SocketAddr, Vec<u8>);

/// How a server's datagrams travel.
enum Transport {
    /// coap: in the clear.
    Udp(UdpSocket),
    /// coaps: through each peer's DTLS session.
    Dtls(dtls::Dtls),
}

struct Server {
    node: NodeHandle,
    transport: Transport,
    dedup: Mutex<Dedup>,
    block1: Mutex<Block1>,
    observers: Mutex<Observers>,
    /// Confirmable notifications awaiting their acknowledgement.
    confirmables: Mutex<Confirmables>,
    next_mid: AtomicU16,
    /// Our own requests (simple registration's fetch) awaiting an answer.
    pending: Mutex<HashMap<PendingKey, client::Route>>,
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Shared by the coap and coaps servers; only the coap one fills it.
    proxy: Arc<proxy::Store>,
    upstreams: Vec<SocketAddr>,
}

/// What `[fronts.rd]` sets besides the socket.
#[derive(Debug)]
pub struct Options {
    /// Third-party RDs to proxy.
    pub upstreams: Vec<SocketAddr>,
    /// RFC 7252's ACK_TIMEOUT for our confirmable notifications.
    pub ack_timeout: Duration,
    /// The coaps socket and the identities it admits.
    pub coaps: Option<(std::net::UdpSocket, Arc<crate::psk::PskTable>)>,
}

/// The server and notifier tasks on `sock`, and on the coaps socket if any.
pub fn tasks(node: NodeHandle, sock: std::net::UdpSocket, options: Options) -> Vec<Task> {
    let proxy = Arc::new(proxy::Store::default());
    let mut out = server_tasks(
        node.clone(),
        sock,
        None,
        proxy.clone(),
        options.upstreams,
        options.ack_timeout,
    );
    if let Some((sock, psk)) = options.coaps {
        out.extend(server_tasks(
            node,
            sock,
            Some(psk),
            proxy,
            Vec::new(),
            options.ack_timeout,
        ));
    }
    out
}

/// One server's tasks: coap on `sock`, or coaps when `psk` is given.
fn server_tasks(
    node: NodeHandle,
    sock: std::net::UdpSocket,
    psk: Option<Arc<crate::psk::PskTable>>,
    proxy: Arc<proxy::Store>,
    upstreams: Vec<SocketAddr>,
    ack_timeout: Duration,
) -> Vec<Task> {
    let (tx, rx) = tokio::sync::oneshot::channel::<Arc<Server>>();
    let n = node.clone();
    let serve: Task = Box::pin(async move {
        let sock = match UdpSocket::from_std(sock) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "rd: cannot use the UDP socket");
                return;
            }
        };
        let transport = match psk {
            Some(psk) => Transport::Dtls(dtls::Dtls::new(sock, psk)),
            None => Transport::Udp(sock),
        };
        let seed = (crate::lookup::now_ms() & 0xffff) as u16;
        let s = Arc::new(Server {
            node: n,
            transport,
            dedup: Mutex::new(Dedup::default()),
            block1: Mutex::new(Block1::default()),
            observers: Mutex::new(Observers::default()),
            confirmables: Mutex::new(Confirmables::new(ack_timeout)),
            next_mid: AtomicU16::new(seed),
            pending: Mutex::new(HashMap::new()),
            in_flight: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_MAX)),
            proxy,
            upstreams,
        });
        let _ = tx.send(s.clone());
        s.run().await;
    });
    let notify: Task = Box::pin(async move {
        if let Ok(s) = rx.await {
            s.proxy_upstreams();
            let resend = s.clone();
            tokio::spawn(async move { resend.retransmitter(ack_timeout).await });
            s.notifier().await;
        }
    });
    vec![serve, notify]
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Server {
    async fn run(self: Arc<Self>) {
        let sock = match &self.transport {
            Transport::Udp(sock) => sock,
            Transport::Dtls(d) => return self.clone().run_dtls(d).await,
        };
        let mut closing = self.node.closing();
        let mut buf = vec![0u8; DATAGRAM_BYTES_MAX];
        loop {
            let (n, peer) = tokio::select! {
                r = sock.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!(error = %e, "rd: recv");
                        continue;
                    }
                },
                _ = closing.changed() => return,
            };
            self.datagram(&buf[..n], peer, None);
        }
    }

    fn send(&self, bytes: &[u8], peer: SocketAddr) {
        match &self.transport {
            Transport::Udp(sock) => {
                if let Err(e) = sock.try_send_to(bytes, peer) {
                    tracing::debug!(error = %e, %peer, "rd: send");
                }
            }
            Transport::Dtls(d) => d.send(bytes, peer),
        }
    }

    fn reset(&self, mid: u16, peer: SocketAddr) {
        let mut r = Packet::new();
        r.header.set_type(MessageType::Reset);
        r.header.message_id = mid;
        r.header.code = MessageClass::Empty;
        if let Ok(b) = r.to_bytes() {
            self.send(&b, peer);
        }
    }

    /// One CoAP message from `peer`; `identity` is its DTLS PSK identity
    /// (coaps), None in the clear.
    fn datagram(self: &Arc<Self>, data: &[u8], peer: SocketAddr, identity: Option<Arc<str>>) {
        let pkt = match Packet::from_bytes(data) {
            Ok(p) => p,
            Err(_) => {
                // A malformed CON is rejected with a Reset (RFC 7252 §4.2).
                if data.len() >= 4 && data[0] >> 6 == 1 && (data[0] >> 4) & 3 == 0 {
                    self.reset(u16::from_be_bytes([data[2], data[3]]), peer);
                }
                return;
            }
        };
        let mid = pkt.header.message_id;
        match (pkt.header.code, pkt.header.get_type()) {
            (MessageClass::Empty, MessageType::Confirmable) => return self.reset(mid, peer),
            (MessageClass::Empty, MessageType::Reset) => {
                // A reset of a notification cancels the observation.
                lock(&self.confirmables).settled(peer, mid);
                lock(&self.observers).reset(peer, mid);
                return;
            }
            (MessageClass::Empty, MessageType::Acknowledgement) => {
                let settled = lock(&self.confirmables).settled(peer, mid);
                if let Some(key) = settled {
                    if let Some(o) = lock(&self.observers).map.get_mut(&key) {
                        o.non_in_a_row = 0;
                    }
                }
                return;
            }
            (MessageClass::Request(_), MessageType::Confirmable | MessageType::NonConfirmable) => {}
            (MessageClass::Response(_), t) => {
                let notification = pkt.get_first_option(CoapOption::Observe).is_some();
                let routed = self.route_answer(peer, pkt);
                if !routed && notification && t != MessageType::Acknowledgement {
                    // A notification of an observation we ended: reject it,
                    // which ends it at the sender too (RFC 7641 §3.6).
                    self.reset(mid, peer);
                } else if t == MessageType::Confirmable {
                    self.empty_ack(mid, peer);
                }
                return;
            }
            _ => return,
        }
        // Safe requests (GET, FETCH) are simply run again when retransmitted;
        // the others are run at most once per (peer, message id).
        let safe = matches!(
            pkt.header.code,
            MessageClass::Request(RequestType::Get | RequestType::Fetch)
        );
        let seen = if safe {
            Seen::New
        } else {
            lock(&self.dedup).check(peer, mid, Instant::now())
        };
        match seen {
            Seen::InProgress => return,
            Seen::Answered(b) => return self.send(&b, peer),
            Seen::Full => {
                let mut r = coap::response(&pkt, ResponseType::ServiceUnavailable);
                r.add_option(CoapOption::MaxAge, coap::uint(5));
                if let Ok(b) = r.to_bytes() {
                    self.send(&b, peer);
                }
                return;
            }
            Seen::New => {}
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            let r = coap::response(&pkt, ResponseType::ServiceUnavailable);
            if let Ok(b) = r.to_bytes() {
                self.finish(peer, mid, b);
            }
            return;
        };
        let s = self.clone();
        if is_simple_registration(&pkt) {
            // Separate response: acknowledge now, answer once the endpoint's
            // links are fetched.
            if pkt.header.get_type() == MessageType::Confirmable {
                let mut ack = Packet::new();
                ack.header.set_type(MessageType::Acknowledgement);
                ack.header.message_id = mid;
                ack.header.code = MessageClass::Empty;
                if let Ok(b) = ack.to_bytes() {
                    self.finish(peer, mid, b);
                }
            }
            tokio::spawn(async move {
                let _permit = permit;
                let mut r = s.simple_registration(&pkt, peer, identity.as_deref()).await;
                r.header.set_type(MessageType::NonConfirmable);
                r.header.message_id = s.next_mid.fetch_add(1, Ordering::Relaxed);
                if let Ok(b) = r.to_bytes() {
                    s.send(&b, peer);
                }
            });
            return;
        }
        tokio::spawn(async move {
            let _permit = permit;
            let resp = s.request(&pkt, peer, identity.as_deref()).await;
            let bytes = resp.to_bytes().unwrap_or_else(|_| {
                coap::response(&pkt, ResponseType::InternalServerError)
                    .to_bytes()
                    .unwrap_or_default()
            });
            s.finish(peer, mid, bytes);
        });
    }

    fn empty_ack(&self, mid: u16, peer: SocketAddr) {
        let mut r = Packet::new();
        r.header.set_type(MessageType::Acknowledgement);
        r.header.message_id = mid;
        r.header.code = MessageClass::Empty;
        if let Ok(b) = r.to_bytes() {
            self.send(&b, peer);
        }
    }

    /// `POST /.well-known/rd?ep=...` (RFC 9176 §5.1): fetches the
    /// requester's `/.well-known/core` and registers its links; 2.04.
    async fn simple_registration(&self, pkt: &Packet, peer: SocketAddr, identity: Option<&str>) -> Packet {
        let diag = |code, msg: String| {
            let mut r = coap::response(pkt, code);
            r.payload = msg.into_bytes();
            r
        };
        let Some((_, query)) = coap::path_and_query(pkt) else {
            return diag(ResponseType::BadRequest, "Uri-Query is not UTF-8".into());
        };
        if let Some((code, why)) = coap::option_problem(pkt, false) {
            return diag(code, why);
        }
        if !pkt.payload.is_empty() {
            return diag(ResponseType::BadRequest, "a simple registration has no payload".into());
        }
        let links = match self.fetch_core(peer).await {
            Ok(l) => l,
            Err(why) => {
                return diag(
                    ResponseType::GatewayTimeout,
                    format!("fetching /.well-known/core: {why}"),
                )
            }
        };
        let path = ["rd".to_string()];
        let req = Request {
            method: RequestType::Post,
            path: &path,
            query: &query,
            content_format: Some(coap::LINK_FORMAT),
            payload: &links,
            peer,
            identity,
            proxied: &[],
        };
        let mut reply = handlers::handle(&self.node, &req).await;
        if reply.code == ResponseType::Created {
            reply = Reply::new(ResponseType::Changed);
        }
        let mut r = coap::response(pkt, reply.code);
        frame(&mut r, &reply, None, None);
        r
    }

    fn finish(&self, peer: SocketAddr, mid: u16, bytes: Vec<u8>) {
        lock(&self.dedup).answered(peer, mid, bytes.clone());
        self.send(&bytes, peer);
    }

    /// Handles one request and frames its answer.
    async fn request(&self, pkt: &Packet, peer: SocketAddr, identity: Option<&str>) -> Packet {
        let MessageClass::Request(method) = pkt.header.code else {
            return coap::response(pkt, ResponseType::BadRequest);
        };
        let err = |code, msg: &str| {
            let mut r = coap::response(pkt, code);
            r.payload = msg.as_bytes().to_vec();
            r
        };
        let Some((path, query)) = coap::path_and_query(pkt) else {
            return err(ResponseType::BadRequest, "Uri-Path or Uri-Query is not UTF-8");
        };
        // GETs here answer link format: discovery, a registration, lookups.
        if let Some((code, why)) = coap::option_problem(pkt, method == RequestType::Get) {
            return err(code, &why);
        }
        let content_format = coap::opt_uint(pkt, CoapOption::ContentFormat).map(|c| c as u16);
        // Block1: reassemble the payload first.
        let mut block1_echo = None;
        let assembled;
        let payload: &[u8] = match pkt.get_first_option(CoapOption::Block1) {
            None => &pkt.payload,
            Some(v) => {
                let Some(b) = Block::decode(v) else {
                    return err(ResponseType::BadOption, "malformed Block1");
                };
                let key = (peer, format!("{method:?} {} ? {}", path.join("/"), query.join("&")));
                match lock(&self.block1).add(key, b.num, b.size, b.more, &pkt.payload, Instant::now()) {
                    Assembly::Continue => {
                        let mut r = coap::response(pkt, ResponseType::Continue);
                        r.add_option(CoapOption::Block1, b.encode());
                        return r;
                    }
                    Assembly::Done(all) => {
                        block1_echo = Some(b);
                        assembled = all;
                        &assembled
                    }
                    Assembly::Incomplete(why) => return err(ResponseType::RequestEntityIncomplete, why),
                    Assembly::TooLarge => return err(ResponseType::RequestEntityTooLarge, "payload too large"),
                }
            }
        };
        let observe = coap::opt_uint(pkt, CoapOption::Observe);
        let which = handlers::lookup_of(&path);
        let req = Request {
            method,
            path: &path,
            query: &query,
            content_format,
            payload,
            peer,
            identity,
            proxied: &self.proxy.snapshot(Instant::now()),
        };
        let reply = handlers::handle(&self.node, &req).await;
        let key = (peer, pkt.get_token().to_vec());
        let mut obs_seq = None;
        if let (Some(w), RequestType::Get) = (which, method) {
            match observe {
                Some(0) if reply.code == ResponseType::Content => {
                    let o = Observer {
                        which: w,
                        query: query.clone(),
                        digest: *blake3::hash(&reply.payload).as_bytes(),
                        seq: 2,
                        last_mid: None,
                        non_in_a_row: 0,
                        last_con: None,
                    };
                    obs_seq = lock(&self.observers).add(key, o);
                }
                Some(1) => {
                    lock(&self.confirmables).forget(&key);
                    lock(&self.observers).remove(&key);
                }
                _ => {}
            }
        }
        let mut r = coap::response(pkt, reply.code);
        let block2 = pkt.get_first_option(CoapOption::Block2).and_then(|v| Block::decode(v));
        frame(&mut r, &reply, block2, obs_seq);
        if let Some(b) = block1_echo {
            r.add_option(CoapOption::Block1, b.encode());
        }
        r
    }

    /// Recomputes observed lookups on every registration change and every
    /// [`RECHECK_INTERVAL`], notifying those whose result changed.
    async fn notifier(self: Arc<Self>) {
        let mut sub = self.node.subscribe();
        let mut tick = tokio::time::interval(RECHECK_INTERVAL);
        let mut closing = self.node.closing();
        loop {
            tokio::select! {
                ev = sub.next() => match ev {
                    Ok(Some(ev)) => {
                        if ev.record.kind != REGISTRATION {
                            continue;
                        }
                        if ev.record.origin != self.node.center_id() && !ev.record.deleted {
                            observe::supersede(&self.node, &ev.record).await;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "rd: change feed lost; resubscribing");
                        sub = self.node.subscribe();
                    }
                },
                _ = tick.tick() => {}
                _ = closing.changed() => return,
            }
            self.notify_changed();
        }
    }

    fn notify_changed(&self) {
        let observers: Vec<_> = lock(&self.observers)
            .map
            .iter()
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect();
        let proxied = self.proxy.snapshot(Instant::now());
        for ((peer, token), o) in observers {
            let reply = handlers::lookup_reply(&self.node, o.which, &o.query, &proxied);
            let digest = *blake3::hash(&reply.payload).as_bytes();
            if digest == o.digest {
                continue;
            }
            let mid = self.next_mid.fetch_add(1, Ordering::Relaxed);
            let seq = (o.seq + 1) & 0xff_ffff;
            let now = Instant::now();
            let con = Confirmables::wants_con(o.non_in_a_row, o.last_con, now);
            let mut p = Packet::new();
            p.header.set_type(if con {
                MessageType::Confirmable
            } else {
                MessageType::NonConfirmable
            });
            p.header.message_id = mid;
            p.header.code = MessageClass::Response(reply.code);
            p.set_token(token.clone());
            frame(&mut p, &reply, None, Some(seq));
            let Ok(bytes) = p.to_bytes() else { continue };
            let key = (peer, token);
            if let Some(slot) = lock(&self.observers).map.get_mut(&key) {
                slot.digest = digest;
                slot.seq = seq;
                slot.last_mid = Some(mid);
                if con {
                    slot.last_con = Some(now);
                } else {
                    slot.non_in_a_row += 1;
                }
            }
            if con {
                lock(&self.confirmables).start(key, mid, bytes.clone(), now);
            }
            self.send(&bytes, peer);
        }
    }
}

impl Server {
    /// Sends confirmable notifications again until acknowledged, and drops
    /// the observers that never acknowledge (RFC 7641 §4.5).
    async fn retransmitter(self: Arc<Self>, ack_timeout: Duration) {
        let mut tick = tokio::time::interval((ack_timeout / 4).max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut closing = self.node.closing();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = closing.changed() => return,
            }
            let due = lock(&self.confirmables).due(Instant::now());
            for (peer, bytes) in &due.resend {
                self.send(bytes, *peer);
            }
            if !due.gave_up.is_empty() {
                let mut observers = lock(&self.observers);
                for key in &due.gave_up {
                    tracing::info!(peer = %key.0, "rd: observer acknowledged no notification; dropped");
                    observers.remove(key);
                }
            }
        }
    }
}

fn is_simple_registration(p: &Packet) -> bool {
    matches!(p.header.code, MessageClass::Request(RequestType::Post))
        && coap::path_and_query(p).is_some_and(|(path, _)| path == [".well-known", "rd"])
}

fn pkt_more_blocks(p: &Packet) -> bool {
    p.get_first_option(CoapOption::Block2)
        .and_then(|v| Block::decode(v))
        .is_some_and(|b| b.more)
}

/// Puts `reply` into `r`: options, and the payload or the asked block of it.
fn frame(r: &mut Packet, reply: &Reply, block2: Option<Block>, observe_seq: Option<u32>) {
    if let Some(s) = observe_seq {
        r.add_option(CoapOption::Observe, coap::uint(s));
    }
    for seg in &reply.location {
        r.add_option(CoapOption::LocationPath, seg.as_bytes().to_vec());
    }
    if let Some(cf) = reply.content_format {
        r.add_option(CoapOption::ContentFormat, coap::uint(u32::from(cf)));
    }
    if let Some(m) = reply.max_age_s {
        r.add_option(CoapOption::MaxAge, coap::uint(m));
    }
    let size = block2.map_or(BLOCK_BYTES_MAX, |b| b.size.min(BLOCK_BYTES_MAX));
    let num = block2.map_or(0, |b| b.num) as usize;
    if reply.payload.len() <= size && num == 0 && block2.is_none() {
        r.payload = reply.payload.clone();
        return;
    }
    let start = num.saturating_mul(size);
    if start >= reply.payload.len() && num > 0 {
        r.header.code = MessageClass::Response(ResponseType::BadOption);
        r.clear_all_options();
        r.payload = b"Block2 number past the end".to_vec();
        return;
    }
    let end = (start + size).min(reply.payload.len());
    r.add_option(CoapOption::ETag, blake3::hash(&reply.payload).as_bytes()[..8].to_vec());
    r.add_option(
        CoapOption::Block2,
        Block {
            num: num as u32,
            more: end < reply.payload.len(),
            size,
        }
        .encode(),
    );
    r.add_option(CoapOption::Size2, coap::uint(reply.payload.len() as u32));
    r.payload = reply.payload[start..end].to_vec();
}
