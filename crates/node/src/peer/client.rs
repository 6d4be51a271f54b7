//! Outgoing calls to one peer: a small pool of keep-alive mutual-TLS
//! connections (at most [`CONNECTIONS_PER_PEER`] calls in flight, so floods,
//! votes, answers, beats and pulls do not queue behind each other), a fresh
//! token per call, a deadline on everything. A failed or abandoned call
//! (its deadline passed, or its caller gave up) closes its connection, so a
//! frozen link holds no task or socket past the call; the next call opens
//! another.

use super::encoding;
use crate::center::Center;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Deadline for connecting (TCP + TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Deadline for one call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read from a peer (inflated). Pull pages are cut
/// well below it ([`regmesh_proto::mesh::pulls::PULL_PAGE_BYTES_MAX`]).
pub const PEER_RESPONSE_BYTES_MAX: usize = 8 << 20;

/// Calls in flight to one peer at most (and so connections open to it).
pub const CONNECTIONS_PER_PEER: usize = 8;

pub struct PeerClient {
    /// The peer's center id (its TLS name and the token audience).
    pub id: String,
    authority: String,
    tls: tokio_rustls::TlsConnector,
    idle: Mutex<Vec<Conn>>,
    slots: tokio::sync::Semaphore,
    /// False once this peer answered 415 to a deflated body.
    deflate_ok: AtomicBool,
    transport: Arc<dyn crate::transport::Transport>,
}

/// One open connection: its request handle and the task driving it. The
/// task ends when the `Conn` is dropped (not put back in the pool), so a
/// call abandoned half way never leaves a connection behind.
struct Conn {
    send: http1::SendRequest<Full<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a call brought back.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    /// Its `RegMesh-Record-Format` header (protocol version 2), if any.
    pub record_format: Option<String>,
}

impl PeerClient {
    pub fn new(id: &str, url: &str, tls: Arc<rustls::ClientConfig>) -> Self {
        Self::new_with(id, url, tls, crate::transport::tcp())
    }

    /// [`PeerClient::new`] connecting over `transport`.
    pub fn new_with(
        id: &str,
        url: &str,
        tls: Arc<rustls::ClientConfig>,
        transport: Arc<dyn crate::transport::Transport>,
    ) -> Self {
        PeerClient {
            id: id.to_string(),
            authority: url.trim_start_matches("https://").trim_end_matches('/').to_string(),
            tls: tokio_rustls::TlsConnector::from(tls),
            idle: Mutex::new(Vec::new()),
            slots: tokio::sync::Semaphore::new(CONNECTIONS_PER_PEER),
            deflate_ok: AtomicBool::new(true),
            transport,
        }
    }

    async fn connect(&self) -> Result<Conn, String> {
        let name = super::pki::server_name(&self.id).map_err(|e| e.to_string())?;
        let fut = async {
            let tcp = self
                .transport
                .connect(&self.authority)
                .await
                .map_err(|e| e.to_string())?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
            let (send, conn) = http1::handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
            let task = crate::spawn::spawn(async move {
                let _ = conn.await;
            });
            Ok::<_, String>(Conn { send, task })
        };
        tokio::time::timeout(CONNECT_TIMEOUT, fut)
            .await
            .map_err(|_| "connect timed out".to_string())?
    }

    /// One call, all of it (waiting for a connection slot, connecting,
    /// sending, reading the answer) within `deadline`; past it the call
    /// fails and its connection is closed. Heartbeats use their interval,
    /// so a hung call never holds up the next beat.
    pub async fn call_within(
        &self,
        deadline: Duration,
        center: &Center,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Answer, String> {
        tokio::time::timeout(deadline, self.call(center, method, path, headers, body))
            .await
            .map_err(|_| format!("no answer within {} ms", deadline.as_millis()))?
    }

    /// One call. `headers` are added to `Host`, `Authorization` (a fresh
    /// token), `Accept-Encoding: deflate` and, with a body,
    /// `Content-Type: application/json`. A body of [`encoding::COMPRESS_MIN`]
    /// bytes or more is deflated unless this peer refused that once (then the
    /// call is repeated plain). The answer comes back inflated. Its time
    /// and outcome go to `regmesh_peer_call_seconds` (crate::latency).
    pub async fn call(
        &self,
        center: &Center,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Answer, String> {
        let kind = crate::latency::CallKind::of_path(path);
        let mut timer = crate::latency::CallTimer::start(&center.metrics().latency, &self.id, kind);
        let answer = self.call_untimed(center, method, path, headers, body).await;
        if answer.is_ok() {
            timer.ok();
        }
        answer
    }

    async fn call_untimed(
        &self,
        center: &Center,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Answer, String> {
        let body = body.map(Bytes::from);
        let deflated = match &body {
            Some(b) if b.len() >= encoding::COMPRESS_MIN && self.deflate_ok.load(Ordering::Relaxed) => {
                Some(Bytes::from(encoding::deflate(b)))
            }
            _ => None,
        };
        if let Some(z) = deflated {
            let a = self
                .call_once(center, method.clone(), path, headers, Some(z), true)
                .await?;
            if a.status != StatusCode::UNSUPPORTED_MEDIA_TYPE {
                return Ok(a);
            }
            tracing::info!(peer = %self.id, "peer does not read deflated bodies; sending them plain");
            self.deflate_ok.store(false, Ordering::Relaxed);
        }
        self.call_once(center, method, path, headers, body, false).await
    }

    async fn call_once(
        &self,
        center: &Center,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Bytes>,
        deflated: bool,
    ) -> Result<Answer, String> {
        let _slot = self.slots.acquire().await.map_err(|e| e.to_string())?;
        let reuse = {
            let mut idle = self.idle.lock().await;
            let mut found = None;
            while let Some(c) = idle.pop() {
                if !c.send.is_closed() {
                    found = Some(c);
                    break;
                }
            }
            found
        };
        let mut conn = match reuse {
            Some(s) => s,
            None => self.connect().await?,
        };
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|e| e.to_string())?;
        let token = center.token_for(&self.id, crate::center::now_ms() / 1000, jti);
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority)
            .header("authorization", format!("Bearer {token}"))
            .header("accept-encoding", encoding::DEFLATE);
        for (k, v) in headers {
            b = b.header(*k, v);
        }
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        if deflated {
            b = b.header("content-encoding", encoding::DEFLATE);
        }
        let req = b.body(Full::new(body.unwrap_or_default())).map_err(|e| e.to_string())?;
        let send = &mut conn.send;
        let fut = async {
            send.ready().await.map_err(|e| e.to_string())?;
            let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let coded = resp
                .headers()
                .get("content-encoding")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let record_format = resp
                .headers()
                .get(regmesh_proto::version::RECORD_FORMAT_HEADER)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let body = http_body_util::Limited::new(resp.into_body(), PEER_RESPONSE_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            let body = match coded.as_deref() {
                None | Some("identity") => body,
                Some(c) if c.eq_ignore_ascii_case(encoding::DEFLATE) => {
                    Bytes::from(encoding::inflate(&body, PEER_RESPONSE_BYTES_MAX).map_err(|e| e.to_string())?)
                }
                Some(c) => return Err(format!("answer has unknown Content-Encoding {c:?}")),
            };
            Ok::<_, String>(Answer {
                status,
                body,
                record_format,
            })
        };
        match tokio::time::timeout(CALL_TIMEOUT, fut).await {
            Ok(Ok(a)) => {
                self.idle.lock().await.push(conn);
                Ok(a)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err("call timed out".into()),
        }
    }
}
