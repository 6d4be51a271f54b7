//! Requests of the RD's own (simple registration's fetch of an endpoint's
//! `/.well-known/core`, the lookup proxy's GETs and observations):
//! confirmable, retransmitted, matched to their answers by (peer, token).
//!
//! Must never: have more than [`FETCHES_MAX`] requests in progress, or wait
//! past the last of [`FETCH_WAITS`].

use super::*;

/// Notifications of one observation of ours buffered before they are read;
/// more are dropped (the next one carries the newest state anyway).
const NOTIFICATIONS_QUEUED_MAX: usize = 4;

/// Where answers to one request of ours go.
pub(super) struct Route {
    tx: mpsc::Sender<Packet>,
    /// An observation: the route stays after the first answer.
    observing: bool,
}

impl Server {
    /// Hands an answer to the request of ours it matches; false if none.
    pub(super) fn route_answer(&self, peer: SocketAddr, pkt: Packet) -> bool {
        let key = (peer, pkt.get_token().to_vec());
        let mut pending = lock(&self.pending);
        let Some(route) = pending.get(&key) else {
            return false;
        };
        let _ = route.tx.try_send(pkt);
        if !route.observing {
            pending.remove(&key);
        }
        true
    }

    /// GET `/.well-known/core` from `peer` (one block).
    pub(super) async fn fetch_core(&self, peer: SocketAddr) -> Result<Vec<u8>, String> {
        let r = self.client_get(peer, &[".well-known", "core"], &[], 0).await?;
        if pkt_more_blocks(&r) {
            return Err("the link document is larger than one block".into());
        }
        Ok(r.payload)
    }

    /// GETs a whole resource from `peer`, block by block (at most 256).
    pub(super) async fn get_all(&self, peer: SocketAddr, path: &[&str], query: &[String]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for num in 0..256u32 {
            let r = self.client_get(peer, path, query, num).await?;
            out.extend_from_slice(&r.payload);
            if out.len() > crate::exchange::BLOCK1_BYTES_MAX * 16 {
                return Err("resource too large".into());
            }
            if !pkt_more_blocks(&r) {
                return Ok(out);
            }
        }
        Err("more than 256 blocks".into())
    }

    /// One GET of ours to `peer` (confirmable, retransmitted), block `num`;
    /// the answer if it is 2.05.
    pub(super) async fn client_get(
        &self,
        peer: SocketAddr,
        path: &[&str],
        query: &[String],
        num: u32,
    ) -> Result<Packet, String> {
        let (r, _, _) = self.request_of_ours(peer, path, query, num, false).await?;
        content(r)
    }

    /// Starts observing `path` at `peer` (GET with Observe: 0): the first
    /// answer (2.05; whether it carries Observe says if the observation took),
    /// the token, and later notifications. [`Self::unobserve`] ends it.
    pub(super) async fn observe(
        &self,
        peer: SocketAddr,
        path: &[&str],
    ) -> Result<(Packet, Vec<u8>, mpsc::Receiver<Packet>), String> {
        let (r, token, rx) = self.request_of_ours(peer, path, &[], 0, true).await?;
        match content(r) {
            Ok(r) => Ok((r, token, rx)),
            Err(e) => {
                self.unobserve(peer, &token);
                Err(e)
            }
        }
    }

    /// Forgets an observation of ours: its notifications are no longer routed.
    pub(super) fn unobserve(&self, peer: SocketAddr, token: &[u8]) {
        lock(&self.pending).remove(&(peer, token.to_vec()));
    }

    async fn request_of_ours(
        &self,
        peer: SocketAddr,
        path: &[&str],
        query: &[String],
        num: u32,
        observing: bool,
    ) -> Result<(Packet, Vec<u8>, mpsc::Receiver<Packet>), String> {
        let mid = self.next_mid.fetch_add(1, Ordering::Relaxed);
        let token = blake3::hash(&[&mid.to_be_bytes()[..], &crate::lookup::now_ms().to_be_bytes()].concat()).as_bytes()
            [..8]
            .to_vec();
        let (tx, mut rx) = mpsc::channel(NOTIFICATIONS_QUEUED_MAX);
        {
            let mut p = lock(&self.pending);
            if p.len() >= FETCHES_MAX {
                return Err("too many requests of ours in progress".into());
            }
            p.insert((peer, token.clone()), Route { tx, observing });
        }
        let mut get = Packet::new();
        get.header.set_type(MessageType::Confirmable);
        get.header.message_id = mid;
        get.header.code = MessageClass::Request(RequestType::Get);
        get.set_token(token.clone());
        if observing {
            get.add_option(CoapOption::Observe, Vec::new());
        }
        for seg in path {
            get.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        for q in query {
            get.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        if num > 0 {
            get.add_option(
                CoapOption::Block2,
                Block {
                    num,
                    more: false,
                    size: BLOCK_BYTES_MAX,
                }
                .encode(),
            );
        }
        let bytes = match get.to_bytes() {
            Ok(b) => b,
            Err(e) => {
                lock(&self.pending).remove(&(peer, token));
                return Err(format!("{e:?}"));
            }
        };
        let mut answer = None;
        for wait in FETCH_WAITS {
            self.send(&bytes, peer);
            if let Ok(r) = tokio::time::timeout(wait, rx.recv()).await {
                answer = r;
                break;
            }
        }
        if answer.is_none() || !observing {
            lock(&self.pending).remove(&(peer, token.clone()));
        }
        let r = answer.ok_or("no answer")?;
        Ok((r, token, rx))
    }
}

fn content(r: Packet) -> Result<Packet, String> {
    match r.header.code {
        MessageClass::Response(ResponseType::Content) => Ok(r),
        c => Err(format!("answered {c:?}")),
    }
}
